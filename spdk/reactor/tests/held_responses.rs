//! A reactor holds responses back while the rest of a PDU is on its way
//! (a 4 KiB write whose data segment trails its header), so that they
//! leave in one write. Holding must never strand them: they go out when
//! the rest arrives, or after the hold limit (1 ms) when it does not.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use reservoir_bdev::{BlockCount, BlockSize, MallocBdev};
use reservoir_iscsi::{Access, PortalContext, Sessions, TargetNode, Targets};
use reservoir_reactor::ReactorPool;
use reservoir_scsi::{Lun, LunIdentity, LunOptions};

const TARGET: &str = "iqn.2026-01.io.test:held";
const BLOCK: usize = 512;

fn serve() -> (ReactorPool, SocketAddr) {
    let bdev = Arc::new(MallocBdev::new("vol0", BlockSize::B512, BlockCount(2048)).unwrap());
    let options = LunOptions {
        read_only: false,
        identity: LunIdentity {
            serial: "HELD0".into(),
            naa: [0x60; 16],
        },
        reservations: None,
    };
    let lun = Arc::new(Lun::new(bdev, options));
    let targets = Arc::new(Targets::new());
    targets.insert(TargetNode::new(
        TARGET,
        vec![(0, lun)],
        Access::default(),
        1,
    ));
    // A free port: bound, released, then bound by the pool.
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let context = Arc::new(PortalContext::new(
        targets,
        Arc::new(Sessions::new()),
        1,
        vec![addr],
    ));
    let pool = ReactorPool::start(Some(&[0]), 1, &[addr], context).unwrap();
    (pool, addr)
}

/// A blocking initiator that speaks just enough iSCSI for the test.
struct Initiator {
    stream: TcpStream,
    cmd_sn: u32,
    itt: u32,
}

fn pdu(h: [u8; 48], data: &[u8]) -> Vec<u8> {
    let mut h = h;
    h[5..8].copy_from_slice(&(data.len() as u32).to_be_bytes()[1..]);
    let mut v = h.to_vec();
    v.extend_from_slice(data);
    v.resize(48 + data.len().div_ceil(4) * 4, 0);
    v
}

impl Initiator {
    fn connect(addr: SocketAddr) -> Initiator {
        let stream = TcpStream::connect(addr).unwrap();
        stream.set_nodelay(true).unwrap();
        // Generous: only a stranded response runs into it.
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut i = Initiator {
            stream,
            cmd_sn: 1,
            itt: 0,
        };
        let security = [
            "InitiatorName=iqn.2026-01.io.test:host",
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            "AuthMethod=None",
        ];
        assert_eq!(i.login(0x81, &security)[1], 0x81, "to operational");
        assert_eq!(
            i.login(0x87, &["ImmediateData=Yes"])[1],
            0x87,
            "to full feature"
        );
        // The unit attention every new nexus starts with.
        while i.command(0x80, 0, &[0; 6], &[])[3] != 0 {}
        i
    }

    fn login(&mut self, flags: u8, keys: &[&str]) -> [u8; 48] {
        let mut h = [0u8; 48];
        h[0] = 0x43;
        h[1] = flags;
        h[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 7]);
        h[16..20].copy_from_slice(&1u32.to_be_bytes());
        h[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        let data: Vec<u8> = keys.iter().flat_map(|k| k.bytes().chain([0])).collect();
        self.stream.write_all(&pdu(h, &data)).unwrap();
        let (h, _) = self.recv();
        assert_eq!((h[0] & 0x3f, h[36], h[37]), (0x23, 0, 0), "login accepted");
        h
    }

    /// A SCSI Command PDU (and its immediate data), unsent.
    fn command_pdu(&mut self, flags: u8, edtl: u32, cdb: &[u8], data: &[u8]) -> Vec<u8> {
        self.itt += 1;
        let mut h = [0u8; 48];
        h[0] = 0x01;
        h[1] = flags;
        h[16..20].copy_from_slice(&self.itt.to_be_bytes());
        h[20..24].copy_from_slice(&edtl.to_be_bytes());
        h[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        h[32..32 + cdb.len()].copy_from_slice(cdb);
        self.cmd_sn += 1;
        pdu(h, data)
    }

    /// Sends a command and returns its final PDU's header.
    fn command(&mut self, flags: u8, edtl: u32, cdb: &[u8], data: &[u8]) -> [u8; 48] {
        let bytes = self.command_pdu(flags, edtl, cdb, data);
        self.stream.write_all(&bytes).unwrap();
        self.recv().0
    }

    fn recv(&mut self) -> ([u8; 48], Vec<u8>) {
        let mut h = [0u8; 48];
        self.stream.read_exact(&mut h).unwrap();
        let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
        let mut data = vec![0u8; len.div_ceil(4) * 4];
        self.stream.read_exact(&mut data).unwrap();
        data.truncate(len);
        (h, data)
    }
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x2a;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = write10(lba, blocks);
    c[0] = 0x28;
    c
}

#[test]
fn responses_held_for_a_trailing_data_segment_still_go_out() {
    let (pool, addr) = serve();
    let mut i = Initiator::connect(addr);
    let a = vec![0xa5u8; 8 * BLOCK];
    let b = vec![0x5au8; 8 * BLOCK];

    // Write A whole, then only the header of write B: A's response is
    // held for B's data, which does not come; the hold limit sends it
    // anyway, long before the reactor's 100 ms tick would.
    let mut bytes = i.command_pdu(0xa0, a.len() as u32, &write10(0, 8), &a);
    let a_itt = i.itt;
    let b_pdu = i.command_pdu(0xa0, b.len() as u32, &write10(8, 8), &b);
    let b_itt = i.itt;
    bytes.extend_from_slice(&b_pdu[..48]);
    let sent = std::time::Instant::now();
    i.stream.write_all(&bytes).unwrap();
    let (h, _) = i.recv();
    let waited = sent.elapsed();
    assert!(waited < Duration::from_millis(50), "held for {waited:?}");
    assert_eq!((h[0] & 0x3f, h[3]), (0x21, 0), "write A: GOOD");
    assert_eq!(u32::from_be_bytes(h[16..20].try_into().unwrap()), a_itt);

    // B's data segment arrives: B completes and answers.
    i.stream.write_all(&b_pdu[48..]).unwrap();
    let (h, _) = i.recv();
    assert_eq!((h[0] & 0x3f, h[3]), (0x21, 0), "write B: GOOD");
    assert_eq!(u32::from_be_bytes(h[16..20].try_into().unwrap()), b_itt);

    // Both landed.
    let bytes = i.command_pdu(0xc0, 16 * BLOCK as u32, &read10(0, 16), &[]);
    i.stream.write_all(&bytes).unwrap();
    let mut back = Vec::new();
    while back.len() < 16 * BLOCK {
        let (h, data) = i.recv();
        assert_eq!(h[0] & 0x3f, 0x25, "Data-In");
        back.extend_from_slice(&data);
    }
    assert!(back[..a.len()] == a[..] && back[a.len()..] == b[..]);
    drop(i);
    pool.stop();
}
