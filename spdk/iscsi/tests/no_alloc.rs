//! The I/O path allocates nothing in steady state: a counting global
//! allocator watches a logged-in `Connection` serve READ and WRITE commands
//! (immediate data, R2T-solicited Data-Out, several in flight at once) and
//! the count must not grow with the number of commands — inline, and
//! with the block I/O offloaded (run here rather than on a worker, so
//! that its buffers are counted too).

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use reservoir_bdev::{
    Bdev, BdevError, BlockCount, BlockSize, Durability, Geometry, Lba, MallocBdev, Provisioning,
};
use reservoir_iscsi::{Access, Connection, PortalContext, Sessions, TargetNode, Targets};
use reservoir_scsi::{Lun, LunIdentity, LunOptions};

/// Counts the allocations of the thread that armed it, so the test
/// harness's other threads do not disturb the count.
struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

fn note_allocation() {
    // try_with: the thread-locals may already be gone while a thread exits.
    let _ = ARMED.try_with(|armed| {
        if armed.get() {
            let _ = COUNT.try_with(|c| c.set(c.get() + 1));
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator; the
// counting touches only thread-local cells and never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Allocations `f` makes on this thread.
fn allocations(f: impl FnOnce()) -> u64 {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    f();
    ARMED.with(|a| a.set(false));
    COUNT.with(Cell::get)
}

const TARGET: &str = "iqn.2026-01.io.reservoir:alloc";
const BLOCK: usize = 512;
const BLOCKS: u64 = 64 * 1024;
/// Small (immediate data only) and large (immediate data, then an R2T).
const SMALL: usize = 4096;
const LARGE: usize = 128 * 1024;
const FIRST_BURST: usize = 64 * 1024;
/// Commands in flight at once.
const DEPTH: u32 = 8;

/// RAM that asks to be offloaded, as a file bdev does.
#[derive(Debug)]
struct Offloading(MallocBdev);

impl Bdev for Offloading {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn geometry(&self) -> Geometry {
        self.0.geometry()
    }
    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError> {
        self.0.read(lba, buf)
    }
    fn write(&self, lba: Lba, buf: &[u8], durability: Durability) -> Result<(), BdevError> {
        self.0.write(lba, buf, durability)
    }
    fn flush(&self) -> Result<(), BdevError> {
        self.0.flush()
    }
    fn unmap(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        self.0.unmap(lba, count)
    }
    fn provisioning(&self, lba: Lba) -> Result<(Provisioning, BlockCount), BdevError> {
        self.0.provisioning(lba)
    }
    fn resize(&self, blocks: BlockCount) -> Result<(), BdevError> {
        self.0.resize(blocks)
    }
    fn prefers_offload(&self) -> bool {
        true
    }
}

fn context(offload: bool) -> Arc<PortalContext> {
    let malloc = MallocBdev::new("alloc", BlockSize::B512, BlockCount(BLOCKS)).unwrap();
    let bdev: Arc<dyn Bdev> = match offload {
        true => Arc::new(Offloading(malloc)),
        false => Arc::new(malloc),
    };
    let options = LunOptions {
        read_only: false,
        identity: LunIdentity {
            serial: "ALLOC0".into(),
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
    let portal: SocketAddr = "192.0.2.1:3260".parse().unwrap();
    Arc::new(PortalContext::new(
        targets,
        Arc::new(Sessions::new()),
        1,
        vec![portal],
    ))
}

/// A minimal initiator that reuses its buffers, so that it allocates
/// nothing itself once warmed up.
struct Initiator {
    conn: Connection,
    cmd_sn: u32,
    itt: u32,
    wire: Vec<u8>,
    payload: Vec<u8>,
    /// What the target sent, taken from the connection.
    output: Vec<u8>,
    /// Commands whose I/O the connection offloaded.
    offloaded: u64,
}

fn word(h: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(h[at..at + 4].try_into().unwrap())
}

impl Initiator {
    fn send(&mut self, mut header: [u8; 48], data_len: usize) {
        header[5..8].copy_from_slice(&(data_len as u32).to_be_bytes()[1..]);
        self.wire.clear();
        self.wire.extend_from_slice(&header);
        self.wire.extend_from_slice(&self.payload[..data_len]);
        self.wire.resize(48 + data_len.next_multiple_of(4), 0);
        self.conn.receive(&self.wire);
    }

    fn login(&mut self, csg: u8, nsg: u8, keys: &[&str]) {
        let mut h = [0u8; 48];
        h[0] = 0x43;
        h[1] = 0x80 | (csg << 2) | nsg;
        h[8..14].copy_from_slice(&[0x80, 0, 0, 0, 0, 1]);
        h[16..20].copy_from_slice(&1u32.to_be_bytes());
        h[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        let text: Vec<u8> = keys
            .iter()
            .flat_map(|k| [k.as_bytes(), b"\0"].concat())
            .collect();
        self.payload[..text.len()].copy_from_slice(&text);
        self.send(h, text.len());
        let out = self.take_output();
        assert_eq!(out[0] & 0x3f, 0x23, "login response");
        assert_eq!((out[36], out[37]), (0, 0), "login status");
    }

    fn command(&mut self, write: bool, lba: u32, bytes: usize) -> u32 {
        self.itt += 1;
        let mut h = [0u8; 48];
        h[0] = 0x01;
        h[1] = 0x80 | if write { 0x20 } else { 0x40 };
        h[16..20].copy_from_slice(&self.itt.to_be_bytes());
        h[20..24].copy_from_slice(&(bytes as u32).to_be_bytes());
        h[24..28].copy_from_slice(&self.cmd_sn.to_be_bytes());
        self.cmd_sn += 1;
        let blocks = (bytes / BLOCK) as u16;
        h[32] = if write { 0x2a } else { 0x28 };
        h[34..38].copy_from_slice(&lba.to_be_bytes());
        h[39..41].copy_from_slice(&blocks.to_be_bytes());
        let immediate = if write { bytes.min(FIRST_BURST) } else { 0 };
        self.send(h, immediate);
        self.itt
    }

    /// Runs the offloaded I/O, handles what the target sent: answers
    /// R2Ts, counts statuses.
    fn drain(&mut self) -> u32 {
        while let Some(io) = self.conn.next_offloaded() {
            let finished = io.run();
            self.conn.complete(finished);
            self.offloaded += 1;
        }
        let mut statuses = 0;
        let mut r2ts = [(0u32, 0u32, 0u32, 0u32); DEPTH as usize];
        let mut pending = 0;
        {
            self.output.clear();
            self.conn.take_output(&mut self.output).unwrap();
            let mut out = &self.output[..];
            while !out.is_empty() {
                let h = &out[..48];
                let len = word(h, 4) as usize & 0xff_ffff;
                match h[0] & 0x3f {
                    0x25 if h[1] & 0x01 != 0 => {
                        assert_eq!(h[3], 0, "GOOD");
                        statuses += 1;
                    }
                    0x25 => {}
                    0x21 => {
                        assert_eq!(h[3], 0, "GOOD");
                        statuses += 1;
                    }
                    0x31 => {
                        r2ts[pending] = (word(h, 16), word(h, 20), word(h, 40), word(h, 44));
                        pending += 1;
                    }
                    op => panic!("unexpected opcode {op:#x}"),
                }
                out = &out[48 + len.next_multiple_of(4)..];
            }
        }
        for &(itt, ttt, offset, len) in &r2ts[..pending] {
            let mut h = [0u8; 48];
            h[0] = 0x05;
            h[1] = 0x80;
            h[16..20].copy_from_slice(&itt.to_be_bytes());
            h[20..24].copy_from_slice(&ttt.to_be_bytes());
            h[40..44].copy_from_slice(&offset.to_be_bytes());
            self.send(h, len as usize);
        }
        statuses
    }

    fn take_output(&mut self) -> &[u8] {
        self.output.clear();
        self.conn.take_output(&mut self.output).unwrap();
        &self.output
    }

    /// `rounds` rounds of DEPTH commands in flight: reads and writes,
    /// small and large, at moving addresses.
    fn run(&mut self, rounds: u32) {
        for round in 0..rounds {
            for i in 0..DEPTH {
                let write = i % 2 == 1;
                let bytes = if i % 4 >= 2 { LARGE } else { SMALL };
                let lba = ((round * DEPTH + i) * 256) % (BLOCKS as u32 - 256);
                self.command(write, lba, bytes);
            }
            let mut done = 0;
            while done < DEPTH {
                done += self.drain();
            }
        }
    }
}

#[test]
fn steady_state_io_allocates_nothing() {
    steady_state(false);
}

#[test]
fn steady_state_offloaded_io_allocates_nothing() {
    steady_state(true);
}

fn steady_state(offload: bool) {
    let mut init = Initiator {
        conn: Connection::new(
            context(offload),
            "192.0.2.1:3260".parse().unwrap(),
            "198.51.100.7:50000".parse().unwrap(),
            Instant::now(),
        ),
        cmd_sn: 1,
        itt: 0x100,
        wire: Vec::new(),
        payload: vec![0x5a; LARGE],
        output: Vec::new(),
        offloaded: 0,
    };
    init.login(
        0,
        1,
        &[
            "InitiatorName=iqn.2026-01.io.test:alloc",
            &format!("TargetName={TARGET}"),
            "SessionType=Normal",
            "AuthMethod=None",
        ],
    );
    init.login(
        1,
        3,
        &[
            "MaxRecvDataSegmentLength=262144",
            "ImmediateData=Yes",
            "InitialR2T=Yes",
            "FirstBurstLength=65536",
            "MaxBurstLength=262144",
        ],
    );
    // TEST UNIT READY until the power-on unit attention is consumed.
    for _ in 0..4 {
        init.itt += 1;
        let mut h = [0u8; 48];
        h[0] = 0x01;
        h[1] = 0x80;
        h[16..20].copy_from_slice(&init.itt.to_be_bytes());
        h[24..28].copy_from_slice(&init.cmd_sn.to_be_bytes());
        init.cmd_sn += 1;
        init.send(h, 0);
        if init.take_output()[3] == 0 {
            break;
        }
    }
    assert_eq!(
        allocations(|| drop(std::hint::black_box(vec![0u8; 16]))),
        1,
        "the counter sees this thread's allocations"
    );
    // Warm-up: buffers, the task table and the output buffer reach their size.
    init.run(16);
    let few = allocations(|| init.run(10));
    let many = allocations(|| init.run(200));
    assert_eq!(
        (few, many),
        (0, 0),
        "allocations for 80 and 1600 commands after warm-up"
    );
    let commands = u64::from(226 * DEPTH);
    assert_eq!(init.offloaded, if offload { commands } else { 0 });
}
