//! End-to-end tests: a scripted initiator drives a `Connection` over a
//! real `reservoir_scsi::Device` on a RAM bdev. No sockets.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;
use reservoir_bdev::{Bdev, BlockCount, BlockSize, MallocBdev};
use reservoir_scsi::{Lun, LunIdentity, LunOptions};

use crate::login::{chap_response, decode_binary, encode_hex, keys};
use crate::pdu::Digests;
use crate::{Access, Connection, Credentials, PortalContext, Sessions, TargetNode, Targets};

mod offload;

const TARGET: &str = "iqn.2026-01.io.reservoir:vol0";
const OTHER: &str = "iqn.2026-01.io.reservoir:secret";
const INITIATOR: &str = "iqn.2026-01.io.test:host1";
const ISID: [u8; 6] = [0x80, 0, 0, 0, 0, 1];
const BLOCK: usize = 512;

/// Target `iqn` with `bdev` as LUN 0.
fn node(iqn: &str, bdev: Arc<dyn Bdev>, access: Access) -> TargetNode {
    let options = LunOptions {
        read_only: false,
        identity: LunIdentity {
            serial: "RSV0".into(),
            naa: [0x60; 16],
        },
        reservations: None,
    };
    TargetNode::new(iqn, vec![(0, Arc::new(Lun::new(bdev, options)))], access, 1)
}

fn ram() -> Arc<dyn Bdev> {
    Arc::new(MallocBdev::new("vol0", BlockSize::B512, BlockCount(2048)).unwrap())
}

fn portal() -> SocketAddr {
    "192.0.2.1:3260".parse().unwrap()
}

fn context(access: Access) -> Arc<PortalContext> {
    let targets = Arc::new(Targets::new());
    targets.insert(node(TARGET, ram(), access));
    targets.insert(node(
        OTHER,
        ram(),
        Access {
            allowed_initiators: Some(vec!["iqn.2026-01.io.test:other".into()]),
            ..Access::default()
        },
    ));
    Arc::new(PortalContext::new(
        targets,
        Arc::new(Sessions::new()),
        1,
        vec![portal()],
    ))
}

/// One PDU as the target sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Resp {
    h: [u8; 48],
    data: Vec<u8>,
}

impl Resp {
    fn op(&self) -> u8 {
        self.h[0] & 0x3f
    }
    fn word(&self, off: usize) -> u32 {
        u32::from_be_bytes(self.h[off..off + 4].try_into().unwrap())
    }
    fn keys(&self) -> Vec<(String, String)> {
        keys::parse(&self.data).unwrap()
    }
    fn key(&self, k: &str) -> Option<String> {
        self.keys()
            .into_iter()
            .find(|(a, _)| a == k)
            .map(|(_, v)| v)
    }
    fn login_status(&self) -> (u8, u8) {
        (self.h[36], self.h[37])
    }
}

/// A scripted initiator.
struct Init {
    conn: Connection,
    cmd_sn: u32,
    digests: Digests,
    itt: u32,
    now: Instant,
}

fn kv(pairs: &[(&str, &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in pairs {
        keys::push(&mut out, k, v);
    }
    out
}

impl Init {
    fn new(ctx: Arc<PortalContext>) -> Init {
        let now = Instant::now();
        Init {
            conn: Connection::new(ctx, portal(), "198.51.100.7:50000".parse().unwrap(), now),
            cmd_sn: 1,
            digests: Digests::default(),
            itt: 0x100,
            now,
        }
    }

    fn next_itt(&mut self) -> u32 {
        self.itt += 1;
        self.itt
    }

    /// Header + data with padding and the session's digests.
    fn frame(&self, h: [u8; 48], data: &[u8]) -> Vec<u8> {
        let mut h = h;
        let len = data.len() as u32;
        h[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
        let mut v = h.to_vec();
        if self.digests.header {
            v.extend_from_slice(&crc32c::crc32c(&h).to_le_bytes());
        }
        if !data.is_empty() {
            let start = v.len();
            v.extend_from_slice(data);
            v.resize(start + data.len().div_ceil(4) * 4, 0);
            if self.digests.data {
                let crc = crc32c::crc32c(&v[start..]);
                v.extend_from_slice(&crc.to_le_bytes());
            }
        }
        v
    }

    fn send(&mut self, h: [u8; 48], data: &[u8]) {
        let bytes = self.frame(h, data);
        self.conn.receive(&bytes);
    }

    /// Parses and consumes everything the target has written.
    fn recv(&mut self) -> Vec<Resp> {
        let mut out = Vec::new();
        self.conn.take_output(&mut out).unwrap();
        parse_output(&out, self.digests)
    }

    fn login(&mut self, csg: u8, nsg: u8, transit: bool, pairs: &[(&str, &str)]) -> Resp {
        let mut h = [0u8; 48];
        h[0] = 0x43;
        h[1] = (u8::from(transit) << 7) | (csg << 2) | nsg;
        h[8..14].copy_from_slice(&ISID);
        h[16..20].copy_from_slice(&1u32.to_be_bytes());
        h[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        self.send(h, &kv(pairs));
        let mut r = self.recv();
        assert_eq!(r.len(), 1, "{r:?}");
        let r = r.remove(0);
        assert_eq!(r.op(), 0x23);
        r
    }

    /// Logs in without authentication and with `ops` operational keys.
    fn login_normal(ctx: Arc<PortalContext>, ops: &[(&str, &str)]) -> Init {
        let mut i = Init::new(ctx);
        let r = i.login(
            0,
            1,
            true,
            &[
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("SessionType", "Normal"),
                ("AuthMethod", "None"),
            ],
        );
        assert_eq!(r.login_status(), (0, 0));
        assert_eq!(r.h[1], 0x81, "T=1 CSG=0 NSG=1");
        assert_eq!(r.key("TargetPortalGroupTag").as_deref(), Some("1"));
        assert_eq!(r.key("AuthMethod").as_deref(), Some("None"));
        let r = i.login(1, 3, true, ops);
        assert_eq!(r.login_status(), (0, 0));
        assert_eq!(r.h[1], 0x87, "T=1 CSG=1 NSG=3");
        assert_ne!(u16::from_be_bytes([r.h[14], r.h[15]]), 0, "TSIH assigned");
        for (k, v) in ops {
            if k.ends_with("Digest") && v.starts_with("CRC32C") {
                if *k == "HeaderDigest" {
                    i.digests.header = true;
                } else {
                    i.digests.data = true;
                }
            }
        }
        i
    }

    fn scsi(&mut self, flags: u8, edtl: u32, cdb: &[u8], data: &[u8]) -> u32 {
        let itt = self.next_itt();
        let mut h = [0u8; 48];
        h[0] = 0x01;
        h[1] = flags;
        h[16..20].copy_from_slice(&itt.to_be_bytes());
        h[20..24].copy_from_slice(&edtl.to_be_bytes());
        h[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        h[32..32 + cdb.len()].copy_from_slice(cdb);
        self.cmd_sn += 1;
        self.send(h, data);
        itt
    }

    fn data_out(
        &mut self,
        itt: u32,
        ttt: u32,
        data_sn: u32,
        offset: u32,
        final_: bool,
        data: &[u8],
    ) {
        let mut h = [0u8; 48];
        h[0] = 0x05;
        h[1] = u8::from(final_) << 7;
        h[16..20].copy_from_slice(&itt.to_be_bytes());
        h[20..24].copy_from_slice(&ttt.to_be_bytes());
        h[36..40].copy_from_slice(&data_sn.to_be_bytes());
        h[40..44].copy_from_slice(&offset.to_be_bytes());
        self.send(h, data);
    }

    /// Consumes the unit attention every new nexus starts with.
    fn clear_unit_attention(&mut self) {
        for _ in 0..4 {
            self.scsi(0x80, 0, &[0; 6], &[]);
            let r = self.recv();
            assert_eq!(r[0].op(), 0x21);
            if r[0].h[3] == 0 {
                return;
            }
        }
        panic!("unit attention never cleared");
    }
}

fn parse_output(mut out: &[u8], digests: Digests) -> Vec<Resp> {
    let mut v = Vec::new();
    while !out.is_empty() {
        let h: [u8; 48] = out[..48].try_into().unwrap();
        let len = u32::from_be_bytes([0, h[5], h[6], h[7]]) as usize;
        let mut at = 48;
        if digests.header {
            assert_eq!(crc32c::crc32c(&h).to_le_bytes(), out[48..52]);
            at += 4;
        }
        let data = out[at..at + len].to_vec();
        let padded = &out[at..at + len.div_ceil(4) * 4];
        at += padded.len();
        if digests.data && len > 0 {
            assert_eq!(crc32c::crc32c(padded).to_le_bytes(), out[at..at + 4]);
            at += 4;
        }
        v.push(Resp { h, data });
        out = &out[at..];
    }
    v
}

fn read10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x28;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&blocks.to_be_bytes());
    c
}

fn write10(lba: u32, blocks: u16) -> [u8; 10] {
    let mut c = read10(lba, blocks);
    c[0] = 0x2a;
    c
}

#[test]
fn login_none_negotiates_and_registers() {
    let ctx = context(Access::default());
    let mut i = Init::new(ctx.clone());
    let r = i.login(
        0,
        1,
        true,
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "CHAP,None"),
        ],
    );
    assert_eq!(r.key("AuthMethod").as_deref(), Some("None"));
    let r = i.login(
        1,
        3,
        true,
        &[
            ("MaxRecvDataSegmentLength", "65536"),
            ("MaxBurstLength", "262144"),
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
            ("ErrorRecoveryLevel", "1"),
            ("X-com.example.Foo", "1"),
            ("MaxConnections", "abc"),
        ],
    );
    assert_eq!(r.login_status(), (0, 0));
    assert_eq!(r.key("MaxBurstLength").as_deref(), Some("262144"));
    assert_eq!(r.key("InitialR2T").as_deref(), Some("No"));
    assert_eq!(r.key("ErrorRecoveryLevel").as_deref(), Some("0"));
    assert_eq!(r.key("X-com.example.Foo").as_deref(), Some("NotUnderstood"));
    assert_eq!(r.key("MaxConnections").as_deref(), Some("Reject"));
    assert_eq!(r.key("MaxRecvDataSegmentLength").as_deref(), Some("262144"));
    let list = ctx.sessions.list();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0].initiator, INITIATOR);
    assert_eq!(list[0].target.as_deref(), Some(TARGET));
    assert_eq!(list[0].isid.to_string(), "800000000001");
    assert!(!i.conn.is_closed());
    drop(i);
    assert!(
        ctx.sessions.list().is_empty(),
        "dropping the connection unregisters"
    );
}

fn login_fails(ctx: Arc<PortalContext>, pairs: &[(&str, &str)]) -> (u8, u8) {
    let mut i = Init::new(ctx);
    let r = i.login(0, 1, true, pairs);
    assert!(i.conn.is_closed());
    assert!(i.conn.output_len() > 0 || r.login_status() != (0, 0));
    r.login_status()
}

#[test]
fn login_refusals() {
    let ctx = context(Access::default());
    assert_eq!(
        login_fails(
            ctx.clone(),
            &[("InitiatorName", INITIATOR), ("TargetName", "iqn.nope")]
        ),
        (2, 3)
    );
    assert_eq!(
        login_fails(
            ctx.clone(),
            &[("InitiatorName", INITIATOR), ("TargetName", OTHER)]
        ),
        (2, 2)
    );
    assert_eq!(login_fails(ctx.clone(), &[("TargetName", TARGET)]), (2, 7));
    assert_eq!(login_fails(ctx, &[("InitiatorName", INITIATOR)]), (2, 7));
}

fn chap_access(mutual: bool) -> Access {
    Access {
        allowed_initiators: None,
        chap: Some(Credentials {
            user: "host1".into(),
            secret: b"initiator-secret".to_vec(),
        }),
        mutual_chap: mutual.then(|| Credentials {
            user: "target1".into(),
            secret: b"target-secret-12".to_vec(),
        }),
    }
}

/// Runs CHAP up to the initiator's response; returns the target's answer.
fn chap_login(ctx: Arc<PortalContext>, secret: &[u8], mutual: Option<(u8, &[u8])>) -> (Init, Resp) {
    let mut i = Init::new(ctx);
    let r = i.login(
        0,
        1,
        false,
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "None,CHAP"),
        ],
    );
    assert_eq!(r.key("AuthMethod").as_deref(), Some("CHAP"), "{r:?}");
    let r = i.login(0, 1, false, &[("CHAP_A", "7,5")]);
    assert_eq!(r.key("CHAP_A").as_deref(), Some("5"));
    let id: u8 = r.key("CHAP_I").unwrap().parse().unwrap();
    let challenge = decode_binary(&r.key("CHAP_C").unwrap()).unwrap();
    assert!(challenge.len() >= 16);
    let resp = encode_hex(&chap_response(id, secret, &challenge));
    let mut pairs = vec![("CHAP_N", "host1".to_string()), ("CHAP_R", resp)];
    if let Some((mid, mc)) = mutual {
        pairs.push(("CHAP_I", mid.to_string()));
        pairs.push(("CHAP_C", encode_hex(mc)));
    }
    let pairs: Vec<(&str, &str)> = pairs.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let r = i.login(0, 1, true, &pairs);
    (i, r)
}

#[test]
fn chap_accepts_the_right_secret() {
    let (mut i, r) = chap_login(context(chap_access(false)), b"initiator-secret", None);
    assert_eq!(r.login_status(), (0, 0));
    assert_eq!(r.h[1], 0x81);
    let r = i.login(1, 3, true, &[]);
    assert_eq!(r.login_status(), (0, 0));
}

#[test]
fn chap_refuses_a_wrong_secret() {
    let (i, r) = chap_login(context(chap_access(false)), b"wrong", None);
    assert_eq!(r.login_status(), (2, 1));
    assert!(i.conn.is_closed());
}

#[test]
fn chap_none_refused_when_target_requires_chap() {
    let ctx = context(chap_access(false));
    assert_eq!(
        login_fails(
            ctx,
            &[
                ("InitiatorName", INITIATOR),
                ("TargetName", TARGET),
                ("AuthMethod", "None")
            ]
        ),
        (2, 1)
    );
}

#[test]
fn mutual_chap_answers_the_initiator() {
    let challenge = [7u8; 16];
    let (_, r) = chap_login(
        context(chap_access(true)),
        b"initiator-secret",
        Some((9, &challenge)),
    );
    assert_eq!(r.login_status(), (0, 0));
    assert_eq!(r.key("CHAP_N").as_deref(), Some("target1"));
    let expected = chap_response(9, b"target-secret-12", &challenge);
    assert_eq!(
        decode_binary(&r.key("CHAP_R").unwrap()).unwrap(),
        expected.to_vec()
    );
}

#[test]
fn discovery_lists_only_permitted_targets() {
    let ctx = context(Access::default());
    let mut i = Init::new(ctx);
    let r = i.login(
        0,
        3,
        true,
        &[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
        ],
    );
    assert_eq!(r.login_status(), (0, 0));
    let mut h = [0u8; 48];
    h[0] = 0x44;
    h[1] = 0x80;
    h[16..20].copy_from_slice(&5u32.to_be_bytes());
    h[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    h[24..28].copy_from_slice(&1u32.to_be_bytes());
    i.send(h, &kv(&[("SendTargets", "All")]));
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].op(), 0x24);
    assert_eq!(
        r[0].keys(),
        vec![
            ("TargetName".to_string(), TARGET.to_string()),
            ("TargetAddress".to_string(), "192.0.2.1:3260,1".to_string()),
        ]
    );
    // SCSI commands have no place in a discovery session.
    i.cmd_sn = 2;
    i.scsi(0x80, 0, &[0; 6], &[]);
    let r = i.recv();
    assert_eq!(r[0].op(), 0x3f);
    assert_eq!(r[0].h[2], 0x04);
    assert_eq!(r[0].data[0], 0x01, "the offending header comes back");
}

#[test]
fn write_with_immediate_unsolicited_and_r2t_then_read_back() {
    let ctx = context(Access::default());
    let mut i = Init::login_normal(
        ctx,
        &[
            ("ImmediateData", "Yes"),
            ("InitialR2T", "No"),
            ("FirstBurstLength", "4096"),
            ("MaxBurstLength", "4096"),
            ("MaxRecvDataSegmentLength", "4096"),
        ],
    );
    i.clear_unit_attention();
    let payload: Vec<u8> = (0..16 * 1024).map(|n| (n * 7 % 251) as u8).collect();
    let itt = i.scsi(
        0x20,
        payload.len() as u32,
        &write10(8, 32),
        &payload[..1024],
    );
    assert!(i.recv().is_empty(), "unsolicited burst still open");
    i.data_out(itt, u32::MAX, 0, 1024, false, &payload[1024..2048]);
    i.data_out(itt, u32::MAX, 1, 2048, true, &payload[2048..4096]);
    let mut offset = 4096;
    for r2t_sn in 0..3u32 {
        let r = i.recv();
        assert_eq!(r.len(), 1, "one outstanding R2T at a time: {r:?}");
        assert_eq!(r[0].op(), 0x31);
        assert_eq!(r[0].word(36), r2t_sn);
        assert_eq!(r[0].word(40), offset);
        assert_eq!(r[0].word(44), 4096);
        let ttt = r[0].word(20);
        let o = offset as usize;
        i.data_out(itt, ttt, 0, offset, false, &payload[o..o + 2048]);
        i.data_out(
            itt,
            ttt,
            1,
            offset + 2048,
            true,
            &payload[o + 2048..o + 4096],
        );
        offset += 4096;
    }
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].op(), 0x21);
    assert_eq!(r[0].h[3], 0, "GOOD");
    assert_eq!(r[0].word(36), 3, "ExpDataSN counts R2Ts");

    let itt = i.scsi(0xc0, payload.len() as u32, &read10(8, 32), &[]);
    let r = i.recv();
    assert_eq!(r.len(), 4);
    let mut back = Vec::new();
    for (n, pdu) in r.iter().enumerate() {
        assert_eq!(pdu.op(), 0x25);
        assert_eq!(pdu.word(16), itt);
        assert_eq!(pdu.word(36), n as u32, "DataSN");
        assert_eq!(pdu.word(40) as usize, back.len(), "buffer offset");
        back.extend_from_slice(&pdu.data);
    }
    assert_eq!(r[3].h[1] & 0x81, 0x81, "final PDU carries status");
    assert_eq!(r[2].h[1] & 0x01, 0);
    assert_eq!(back, payload);
}

/// Logs in with immediate data, writes `fill` to blocks 0..8, and
/// returns the initiator.
fn with_blocks_filled(fill: u8) -> Init {
    let mut i = Init::login_normal(context(Access::default()), &[("ImmediateData", "Yes")]);
    i.clear_unit_attention();
    i.scsi(0xa0, 4096, &write10(0, 8), &[fill; 4096]);
    assert_eq!(i.recv()[0].h[3], 0, "GOOD");
    i
}

/// A READ's data comes straight from the RAM volume; when the socket
/// takes only part of it, the rest is kept as it was, and a WRITE that
/// runs before the rest goes out does not show in it.
#[test]
fn a_partly_written_read_keeps_its_data() {
    let mut i = with_blocks_filled(0xaa);
    i.scsi(0xc0, 4096, &read10(0, 8), &[]);
    let mut wire = Vec::new();
    let taken = i
        .conn
        .write_output(&mut |slices| {
            let first = &slices[0][..];
            assert_eq!(first.len(), 48, "the Data-In header, then the data");
            wire.extend_from_slice(first);
            wire.extend_from_slice(&slices[1][..1000]);
            Ok(1048)
        })
        .unwrap();
    assert_eq!(taken, 1048);
    i.scsi(0xa0, 4096, &write10(0, 8), &[0xbb; 4096]);
    i.conn.take_output(&mut wire).unwrap();
    let r = parse_output(&wire, i.digests);
    assert_eq!(r[0].op(), 0x25);
    assert_eq!(r[0].data, vec![0xaa; 4096], "the read's data as it started");
    assert_eq!((r[1].op(), r[1].h[3]), (0x21, 0), "the write is GOOD");
    i.scsi(0xc0, 4096, &read10(0, 8), &[]);
    assert_eq!(i.recv()[0].data, vec![0xbb; 4096]);
}

/// Several reads' data, lent by the volume, go out in one `writev`.
#[test]
fn lent_reads_share_one_writev() {
    let mut i = with_blocks_filled(0xaa);
    for lba in [0, 4, 2] {
        i.scsi(0xc0, 2048, &read10(lba, 4), &[]);
    }
    let mut wire = Vec::new();
    let mut calls = 0;
    while i.conn.output_len() > 0 {
        i.conn
            .write_output(&mut |slices| {
                calls += 1;
                let before = wire.len();
                slices.iter().for_each(|s| wire.extend_from_slice(s));
                Ok(wire.len() - before)
            })
            .unwrap();
    }
    assert_eq!(calls, 1);
    let r = parse_output(&wire, i.digests);
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|pdu| pdu.data == vec![0xaa; 2048]));
}

/// An ORDERED write runs only after the READ before it has ended (SAM-5
/// 8.6), so it never shows in that read's data, even when both arrive
/// before any output is written.
#[test]
fn an_ordered_write_does_not_show_in_an_earlier_read() {
    let mut i = with_blocks_filled(0xaa);
    i.scsi(0xc1, 4096, &read10(0, 8), &[]);
    i.scsi(0xa2, 4096, &write10(0, 8), &[0xbb; 4096]);
    let r = i.recv();
    assert_eq!(r[0].data, vec![0xaa; 4096]);
    assert_eq!((r[1].op(), r[1].h[3]), (0x21, 0));
    i.scsi(0xc1, 4096, &read10(0, 8), &[]);
    assert_eq!(i.recv()[0].data, vec![0xbb; 4096]);
}

/// With data digests the read is copied when it runs and its digest
/// covers exactly what is sent.
#[test]
fn reads_with_data_digests_carry_the_right_digest() {
    let mut i = Init::login_normal(
        context(Access::default()),
        &[("DataDigest", "CRC32C"), ("ImmediateData", "Yes")],
    );
    assert!(i.digests.data);
    i.clear_unit_attention();
    let payload: Vec<u8> = (0..4096).map(|n| (n * 31 % 255) as u8).collect();
    i.scsi(0xa0, 4096, &write10(0, 8), &payload);
    assert_eq!(i.recv()[0].h[3], 0);
    // EDTL shorter than the transfer: 1001 bytes, padded on the wire.
    i.scsi(0xc0, 1001, &read10(0, 8), &[]);
    let r = i.recv();
    assert_eq!(r[0].data, payload[..1001]);
}

#[test]
fn cmdsn_window_orders_and_drops() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    i.clear_unit_attention();
    let first = i.cmd_sn;
    // CmdSN first+1 arrives before first: held.
    i.cmd_sn = first + 1;
    let later = i.scsi(0x80, 0, &[0; 6], &[]);
    assert!(i.recv().is_empty());
    i.cmd_sn = first;
    let earlier = i.scsi(0x80, 0, &[0; 6], &[]);
    let r = i.recv();
    assert_eq!(
        r.iter().map(|p| p.word(16)).collect::<Vec<_>>(),
        vec![earlier, later]
    );
    assert_eq!(r[1].word(28), first + 2, "ExpCmdSN");
    let max = r[1].word(32);
    // Already used, and beyond MaxCmdSN: both silently dropped.
    i.cmd_sn = first;
    i.scsi(0x80, 0, &[0; 6], &[]);
    i.cmd_sn = max + 1;
    i.scsi(0x80, 0, &[0; 6], &[]);
    assert!(i.recv().is_empty());
    // Immediate commands bypass the window.
    i.cmd_sn = first + 2;
    let imm = i.scsi(0x80, 0, &[0; 6], &[]);
    let r = i.recv();
    assert_eq!(r[0].word(16), imm);
    let _ = imm;
}

#[test]
fn nop_ping_both_ways() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    let mut h = [0u8; 48];
    h[0] = 0x40;
    h[1] = 0x80;
    h[16..20].copy_from_slice(&77u32.to_be_bytes());
    h[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    h[24..28].copy_from_slice(&i.cmd_sn.to_be_bytes());
    i.send(h, b"ping data");
    let r = i.recv();
    assert_eq!(r[0].op(), 0x20);
    assert_eq!(r[0].word(16), 77);
    assert_eq!(r[0].data, b"ping data");

    // Idle: the target pings with a TTT; an answer keeps the connection.
    // Traffic is noticed at the tick that follows it.
    let t0 = i.now;
    i.conn.tick(t0);
    i.conn.tick(t0 + Duration::from_secs(11));
    let r = i.recv();
    assert_eq!(r[0].op(), 0x20);
    assert_eq!(r[0].word(16), u32::MAX);
    let ttt = r[0].word(20);
    assert_ne!(ttt, u32::MAX);
    let mut h = [0u8; 48];
    h[0] = 0x40;
    h[1] = 0x80;
    h[16..20].copy_from_slice(&u32::MAX.to_be_bytes());
    h[20..24].copy_from_slice(&ttt.to_be_bytes());
    i.send(h, &[]);
    assert!(i.recv().is_empty());
    i.conn.tick(t0 + Duration::from_secs(15));
    assert!(!i.conn.is_closed());
    // Silence after the next ping: dead.
    i.conn.tick(t0 + Duration::from_secs(26));
    assert_eq!(i.recv()[0].op(), 0x20);
    i.conn.tick(t0 + Duration::from_secs(37));
    assert!(i.conn.is_closed());
}

#[test]
fn abort_task_removes_a_write_waiting_for_data() {
    let mut i = Init::login_normal(context(Access::default()), &[("ImmediateData", "No")]);
    i.clear_unit_attention();
    let itt = i.scsi(0x20, 1024, &write10(0, 2), &[]);
    let r = i.recv();
    assert_eq!(r[0].op(), 0x31, "R2T");
    let ttt = r[0].word(20);
    let tmf = |i: &mut Init, rtt: u32, ref_sn: u32| {
        let mut h = [0u8; 48];
        h[0] = 0x42;
        h[1] = 0x81;
        h[16..20].copy_from_slice(&0x999u32.to_be_bytes());
        h[20..24].copy_from_slice(&rtt.to_be_bytes());
        h[24..28].copy_from_slice(&i.cmd_sn.to_be_bytes());
        h[32..36].copy_from_slice(&ref_sn.to_be_bytes());
        i.send(h, &[]);
        let r = i.recv();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].op(), 0x22);
        r[0].h[2]
    };
    let ref_sn = i.cmd_sn - 1;
    assert_eq!(tmf(&mut i, itt, ref_sn), 0, "function complete");
    // Late data for the aborted task is dropped without a response.
    i.data_out(itt, ttt, 0, 0, true, &[0u8; 1024]);
    assert!(i.recv().is_empty());
    assert_eq!(tmf(&mut i, 0xdead, ref_sn), 1, "task does not exist");
}

#[test]
fn residual_overflow_and_underflow() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    i.clear_unit_attention();
    i.scsi(0xc0, 200, &read10(0, 1), &[]);
    let r = i.recv();
    let last = r.last().unwrap();
    assert_eq!(r.iter().map(|p| p.data.len()).sum::<usize>(), 200);
    assert_eq!(last.h[1] & 0x05, 0x05, "S and O bits");
    assert_eq!(last.word(44), 312);
    i.scsi(0xc0, 10000, &read10(0, 1), &[]);
    let r = i.recv();
    let last = r.last().unwrap();
    assert_eq!(last.h[1] & 0x03, 0x03, "S and U bits");
    assert_eq!(last.word(44), 10000 - BLOCK as u32);
    // EDTL 0 on a read: no data, overflow in the SCSI Response.
    i.scsi(0x80, 0, &read10(0, 1), &[]);
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].op(), 0x21);
    assert_eq!(r[0].h[1] & 0x04, 0x04);
    assert_eq!(r[0].word(44), BLOCK as u32);
}

#[test]
fn check_condition_carries_sense() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    i.clear_unit_attention();
    i.scsi(0xc0, 512, &read10(1 << 30, 1), &[]);
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].op(), 0x21);
    assert_eq!(r[0].h[3], 0x02, "CHECK CONDITION");
    let len = u16::from_be_bytes([r[0].data[0], r[0].data[1]]) as usize;
    assert_eq!(r[0].data.len(), 2 + len);
    assert_eq!(r[0].data[2] & 0x7f, 0x70, "fixed format sense");
    assert_eq!(r[0].data[2 + 12], 0x21, "LBA OUT OF RANGE");
}

#[test]
fn oversized_segment_is_rejected_then_dropped() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    let mut h = [0u8; 48];
    h[0] = 0x01;
    h[1] = 0xa0;
    h[5..8].copy_from_slice(&[0x10, 0, 0]); // 1 MiB > our 256 KiB
    i.conn.receive(&h);
    let r = i.recv();
    assert_eq!(r[0].op(), 0x3f);
    assert_eq!(r[0].h[2], 0x04);
    assert!(i.conn.is_closed());
}

#[test]
fn bad_data_digest_rejects_without_executing() {
    let ctx = context(Access::default());
    let mut i = Init::login_normal(
        ctx,
        &[("HeaderDigest", "CRC32C,None"), ("DataDigest", "CRC32C")],
    );
    i.clear_unit_attention();
    let mut bytes = {
        let mut h = [0u8; 48];
        h[0] = 0x01;
        h[1] = 0xa0;
        h[16..20].copy_from_slice(&0x4242u32.to_be_bytes());
        h[20..24].copy_from_slice(&512u32.to_be_bytes());
        h[24..28].copy_from_slice(&i.cmd_sn.to_be_bytes());
        h[32..42].copy_from_slice(&write10(0, 1));
        i.frame(h, &[0xaa; 512])
    };
    let n = bytes.len();
    bytes[n - 1] ^= 0xff;
    i.conn.receive(&bytes);
    i.cmd_sn += 1;
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].op(), 0x3f);
    assert_eq!(r[0].h[2], 0x02);
    // The block was not written, and the session goes on.
    i.scsi(0xc0, 512, &read10(0, 1), &[]);
    let r = i.recv();
    assert_eq!(r[0].data, vec![0u8; 512]);
    // A bad header digest ends the connection.
    let mut h = [0u8; 48];
    h[0] = 0x40;
    let mut bytes = i.frame(h, &[]);
    bytes[50] ^= 1;
    i.conn.receive(&bytes);
    assert!(i.conn.is_closed());
}

#[test]
fn logout_closes_after_response() {
    let ctx = context(Access::default());
    let mut i = Init::login_normal(ctx.clone(), &[]);
    let mut h = [0u8; 48];
    h[0] = 0x46;
    h[1] = 0x80;
    h[16..20].copy_from_slice(&9u32.to_be_bytes());
    h[24..28].copy_from_slice(&i.cmd_sn.to_be_bytes());
    i.send(h, &[]);
    let r = i.recv();
    assert_eq!(r[0].op(), 0x26);
    assert_eq!(r[0].h[2], 0);
    assert!(i.conn.is_closed());
    drop(i);
    assert!(ctx.sessions.list().is_empty());
}

#[test]
fn reinstatement_closes_the_old_session() {
    let ctx = context(Access::default());
    let mut old = Init::login_normal(ctx.clone(), &[]);
    let new = Init::login_normal(ctx.clone(), &[]);
    old.conn.tick(old.now);
    assert!(old.conn.is_closed());
    assert!(!new.conn.is_closed());
    assert_eq!(ctx.sessions.list().len(), 1);
}

#[test]
fn unknown_opcode_and_snack_are_rejected() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    for (op, reason) in [(0x1f, 0x05), (0x10, 0x04)] {
        let mut h = [0u8; 48];
        h[0] = op;
        h[1] = 0x80;
        i.send(h, &[]);
        let r = i.recv();
        assert_eq!(r[0].op(), 0x3f);
        assert_eq!(r[0].h[2], reason);
        assert_eq!(r[0].data[0], op);
    }
}

/// A whole session as initiator bytes: login, write, read, logout.
fn script() -> Vec<Vec<u8>> {
    let ctx = context(Access::default());
    let i = Init::new(ctx);
    let mut out = Vec::new();
    let mut login = |csg: u8, nsg: u8, pairs: &[(&str, &str)]| {
        let mut h = [0u8; 48];
        h[0] = 0x43;
        h[1] = 0x80 | (csg << 2) | nsg;
        h[8..14].copy_from_slice(&ISID);
        h[16..20].copy_from_slice(&1u32.to_be_bytes());
        h[24..28].copy_from_slice(&1u32.to_be_bytes());
        out.push(i.frame(h, &kv(pairs)));
    };
    login(
        0,
        1,
        &[
            ("InitiatorName", INITIATOR),
            ("TargetName", TARGET),
            ("AuthMethod", "None"),
        ],
    );
    login(1, 3, &[("ImmediateData", "Yes"), ("InitialR2T", "No")]);
    let mut cmd = |itt: u32, sn: u32, flags: u8, edtl: u32, cdb: &[u8], data: &[u8]| {
        let mut h = [0u8; 48];
        h[0] = 0x01;
        h[1] = flags;
        h[16..20].copy_from_slice(&itt.to_be_bytes());
        h[20..24].copy_from_slice(&edtl.to_be_bytes());
        h[24..28].copy_from_slice(&sn.to_be_bytes());
        h[32..32 + cdb.len()].copy_from_slice(cdb);
        out.push(i.frame(h, data));
    };
    cmd(1, 1, 0x80, 0, &[0; 6], &[]);
    cmd(2, 2, 0xa0, 1024, &write10(4, 2), &[0x5a; 1024]);
    cmd(3, 3, 0xc0, 1024, &read10(4, 2), &[]);
    out
}

#[test]
fn byte_at_a_time_matches_all_at_once() {
    let pdus: Vec<u8> = script().concat();
    let run = |chunk: usize| {
        let mut i = Init::new(context(Access::default()));
        let mut out = Vec::new();
        for piece in pdus.chunks(chunk) {
            i.conn.receive(piece);
            i.conn.take_output(&mut out).unwrap();
        }
        out
    };
    let whole = run(pdus.len());
    assert_eq!(run(1), whole);
    assert_eq!(run(7), whole);
    let r = parse_output(&whole, Digests::default());
    let last = r.last().unwrap();
    assert_eq!(last.op(), 0x25);
    assert_eq!(last.data, vec![0x5a; 1024]);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn receive_never_panics(noise in proptest::collection::vec(any::<u8>(), 0..2048), cut in 0usize..4) {
        let mut i = Init::new(context(Access::default()));
        // Sometimes after a valid login, so full feature decoding is reached.
        for pdu in script().into_iter().take(cut) {
            i.conn.receive(&pdu);
        }
        i.conn.receive(&noise);
        i.conn.take_output(&mut Vec::new()).unwrap();
        i.conn.tick(i.now + Duration::from_secs(60));
    }

    #[test]
    fn fuzz_entry_points_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..1024)) {
        crate::fuzzing::decode_pdu(&bytes);
        crate::fuzzing::parse_login_keys(&bytes);
    }
}

fn tmf_request(i: &mut Init, function: u8, lun: u8, rtt: u32) -> Vec<Resp> {
    let ref_sn = i.cmd_sn;
    tmf_with_ref(i, function, lun, rtt, ref_sn)
}

fn tmf_with_ref(i: &mut Init, function: u8, lun: u8, rtt: u32, ref_sn: u32) -> Vec<Resp> {
    let mut h = [0u8; 48];
    h[0] = 0x42;
    h[1] = 0x80 | function;
    h[9] = lun;
    h[16..20].copy_from_slice(&0x777u32.to_be_bytes());
    h[20..24].copy_from_slice(&rtt.to_be_bytes());
    h[24..28].copy_from_slice(&i.cmd_sn.to_be_bytes());
    h[32..36].copy_from_slice(&ref_sn.to_be_bytes());
    i.send(h, &[]);
    i.recv()
}

#[test]
fn task_management_functions() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    i.clear_unit_attention();
    // ABORT TASK SET removes a write waiting for its R2T data.
    let itt = i.scsi(0x20, 512, &write10(0, 1), &[]);
    assert_eq!(i.recv()[0].op(), 0x31);
    assert_eq!(tmf_request(&mut i, 2, 0, 0)[0].h[2], 0);
    i.data_out(itt, 0, 0, 0, true, &[1u8; 512]);
    assert!(i.recv().is_empty());
    assert_eq!(
        tmf_request(&mut i, 2, 9, 0)[0].h[2],
        2,
        "LUN does not exist"
    );
    assert_eq!(tmf_request(&mut i, 5, 0, 0)[0].h[2], 0, "LUN reset");
    assert_eq!(tmf_request(&mut i, 5, 9, 0)[0].h[2], 2);
    assert_eq!(
        tmf_request(&mut i, 3, 0, 0)[0].h[2],
        5,
        "CLEAR ACA not supported"
    );
    assert_eq!(
        tmf_request(&mut i, 8, 0, 0)[0].h[2],
        4,
        "no reassignment at ERL 0"
    );
    assert_eq!(tmf_request(&mut i, 6, 0, 0)[0].h[2], 0, "warm reset");
    assert!(!i.conn.is_closed());
    assert_eq!(tmf_request(&mut i, 7, 0, 0)[0].h[2], 0, "cold reset");
    assert!(
        i.conn.is_closed(),
        "cold reset drops the connection after the response"
    );
}

#[test]
fn abort_of_a_command_not_yet_arrived_consumes_its_cmdsn() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    i.clear_unit_attention();
    // RefCmdSN = ExpCmdSN: in the window, not received yet (§11.5.1 c).
    let next = i.cmd_sn;
    assert_eq!(tmf_request(&mut i, 1, 0, 0x5150)[0].h[2], 0);
    // That command arrives late and must not execute.
    i.scsi(0x80, 0, &[0; 6], &[]);
    assert!(i.recv().is_empty());
    assert_eq!(i.cmd_sn, next + 1);
    i.scsi(0x80, 0, &[0; 6], &[]);
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].word(28),
        next + 2,
        "ExpCmdSN moved past the aborted CmdSN"
    );
}

#[test]
fn login_text_split_over_pdus_with_c_bit() {
    let mut i = Init::new(context(Access::default()));
    let text = kv(&[
        ("InitiatorName", INITIATOR),
        ("TargetName", TARGET),
        ("AuthMethod", "None"),
    ]);
    let (a, b) = text.split_at(20);
    let mut h = [0u8; 48];
    h[0] = 0x43;
    h[1] = 0x40 | 0x01; // C=1, CSG=0, NSG=1
    h[8..14].copy_from_slice(&ISID);
    i.send(h, a);
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert!(r[0].data.is_empty(), "empty response asks for the rest");
    assert_eq!(r[0].login_status(), (0, 0));
    h[1] = 0x81;
    i.send(h, b);
    let r = i.recv();
    assert_eq!(r[0].login_status(), (0, 0));
    assert_eq!(r[0].key("AuthMethod").as_deref(), Some("None"));
    assert_eq!(r[0].h[1], 0x81);
}

#[test]
fn long_text_response_is_continued() {
    let ctx = context(Access::default());
    for n in 0..40 {
        ctx.targets.insert(node(
            &format!("iqn.2026-01.io.reservoir:many-volumes-with-long-names-{n:03}"),
            ram(),
            Access::default(),
        ));
    }
    let mut i = Init::new(ctx);
    i.login(
        0,
        3,
        true,
        &[
            ("InitiatorName", INITIATOR),
            ("SessionType", "Discovery"),
            ("AuthMethod", "None"),
        ],
    );
    let mut h = [0u8; 48];
    h[0] = 0x44;
    h[1] = 0x80;
    h[16..20].copy_from_slice(&5u32.to_be_bytes());
    h[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    h[24..28].copy_from_slice(&1u32.to_be_bytes());
    i.send(h, &kv(&[("SendTargets", "All")]));
    let mut text = Vec::new();
    loop {
        let r = i.recv();
        assert_eq!(r.len(), 1);
        assert!(
            r[0].data.len() <= 8192,
            "within the initiator's default limit"
        );
        text.extend_from_slice(&r[0].data);
        if r[0].h[1] & 0x80 != 0 {
            break;
        }
        assert_eq!(r[0].h[1] & 0x40, 0x40, "C bit while more follows");
        // An empty Text request with the TTT asks for the next piece.
        h[20..24].copy_from_slice(&r[0].h[20..24]);
        i.send(h, &[]);
    }
    let names = keys::parse(&text)
        .unwrap()
        .into_iter()
        .filter(|(k, _)| k == "TargetName")
        .count();
    assert_eq!(names, 41, "every permitted target, none of the refused one");
}

#[test]
fn full_feature_text_renegotiates_max_recv_data_segment_length() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    i.clear_unit_attention();
    let mut h = [0u8; 48];
    h[0] = 0x04;
    h[1] = 0x80;
    h[16..20].copy_from_slice(&6u32.to_be_bytes());
    h[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    h[24..28].copy_from_slice(&i.cmd_sn.to_be_bytes());
    i.cmd_sn += 1;
    i.send(
        h,
        &kv(&[
            ("MaxRecvDataSegmentLength", "1024"),
            ("MaxBurstLength", "4096"),
        ]),
    );
    let r = i.recv();
    assert_eq!(r[0].key("MaxBurstLength").as_deref(), Some("Irrelevant"));
    i.scsi(0xc0, 4096, &read10(0, 8), &[]);
    let r = i.recv();
    assert_eq!(
        r.len(),
        4,
        "Data-In split at the new 1024-byte limit: {r:?}"
    );
}

#[test]
fn adding_a_connection_is_refused() {
    let ctx = context(Access::default());
    let first = Init::login_normal(ctx.clone(), &[]);
    let tsih = first.conn.tsih().unwrap();
    for (tsih, detail) in [(tsih, 0x06), (tsih.wrapping_add(100), 0x0a)] {
        let mut i = Init::new(ctx.clone());
        let mut h = [0u8; 48];
        h[0] = 0x43;
        h[1] = 0x81;
        h[8..14].copy_from_slice(&ISID);
        h[14..16].copy_from_slice(&tsih.to_be_bytes());
        i.send(
            h,
            &kv(&[("InitiatorName", INITIATOR), ("TargetName", TARGET)]),
        );
        let r = i.recv();
        assert_eq!(r[0].login_status(), (2, detail));
        assert!(i.conn.is_closed());
    }
}

#[test]
fn bidirectional_command_is_rejected_and_login_times_out() {
    let mut i = Init::login_normal(context(Access::default()), &[]);
    i.scsi(0xe0, 512, &write10(0, 1), &[]);
    let r = i.recv();
    assert_eq!(r[0].op(), 0x3f);
    assert_eq!(r[0].h[2], 0x05);
    // The rejected command's CmdSN is used up: the next one runs.
    i.scsi(0x80, 0, &[0; 6], &[]);
    assert_eq!(i.recv()[0].op(), 0x21);

    let mut idle = Init::new(context(Access::default()));
    idle.conn.tick(idle.now + Duration::from_secs(29));
    assert!(!idle.conn.is_closed());
    idle.conn.tick(idle.now + Duration::from_secs(31));
    assert!(idle.conn.is_closed());
}
