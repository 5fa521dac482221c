//! Commands whose block I/O is offloaded: the connection keeps them in
//! flight until `complete`, and answers exactly as it does inline.

use std::sync::atomic::{AtomicUsize, Ordering};

use reservoir_bdev::{BdevError, Durability, Geometry, Lba, Provisioning};

use super::*;
use crate::Finished;

/// Whole-page transfers [`Slow`] was handed, and how many of those were
/// not page aligned (an O_DIRECT file would have bounced them).
static PAGE_IO: AtomicUsize = AtomicUsize::new(0);
static MISALIGNED_PAGE_IO: AtomicUsize = AtomicUsize::new(0);

fn count_alignment(buf: &[u8]) {
    if !buf.is_empty() && buf.len().is_multiple_of(4096) {
        PAGE_IO.fetch_add(1, Ordering::Relaxed);
        if !(buf.as_ptr() as usize).is_multiple_of(4096) {
            MISALIGNED_PAGE_IO.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A RAM bdev that asks to be offloaded, as a file bdev does, and checks
/// the alignment of the buffers it is given.
#[derive(Debug)]
struct Slow(MallocBdev);

impl Bdev for Slow {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn geometry(&self) -> Geometry {
        self.0.geometry()
    }
    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError> {
        count_alignment(buf);
        self.0.read(lba, buf)
    }
    fn write(&self, lba: Lba, buf: &[u8], durability: Durability) -> Result<(), BdevError> {
        count_alignment(buf);
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

fn context_over(offload: bool) -> Arc<PortalContext> {
    let malloc = MallocBdev::new("vol0", BlockSize::B512, BlockCount(2048)).unwrap();
    let bdev: Arc<dyn Bdev> = match offload {
        true => Arc::new(Slow(malloc)),
        false => Arc::new(malloc),
    };
    let targets = Arc::new(Targets::new());
    targets.insert(node(TARGET, bdev, Access::default()));
    Arc::new(PortalContext::new(
        targets,
        Arc::new(Sessions::new()),
        1,
        vec![portal()],
    ))
}

fn login(offload: bool) -> Init {
    let mut i = Init::login_normal(
        context_over(offload),
        &[
            ("ImmediateData", "Yes"),
            ("MaxRecvDataSegmentLength", "4096"),
        ],
    );
    i.clear_unit_attention();
    i
}

/// Runs every I/O the connection has offloaded, in order.
fn run_all(i: &mut Init) -> usize {
    let mut n = 0;
    while let Some(io) = i.conn.next_offloaded() {
        let finished = io.run();
        i.conn.complete(finished);
        n += 1;
    }
    n
}

/// Takes the offloaded I/O without completing it.
fn take_all(i: &mut Init) -> Vec<crate::Offloaded> {
    std::iter::from_fn(|| i.conn.next_offloaded()).collect()
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|n| (n as u8).wrapping_mul(31) ^ seed)
        .collect()
}

fn sync_cache10() -> [u8; 10] {
    let mut c = [0u8; 10];
    c[0] = 0x35;
    c
}

/// Writes, reads (short and long, with residuals), an out-of-range read
/// and SYNCHRONIZE CACHE; the offloaded connection, completing each I/O
/// as soon as it is offered, sends byte for byte what the inline one does.
#[test]
fn offloaded_responses_equal_inline_responses() {
    let script = |i: &mut Init| -> Vec<Resp> {
        let mut out = Vec::new();
        let mut step = |i: &mut Init, flags: u8, edtl: u32, cdb: &[u8], data: &[u8]| {
            i.scsi(flags, edtl, cdb, data);
            run_all(i);
            out.extend(i.recv());
        };
        step(i, 0xa0, 4096, &write10(16, 8), &pattern(1, 4096));
        step(i, 0xc0, 4096, &read10(16, 8), &[]);
        step(i, 0xc0, 200, &read10(16, 1), &[]);
        step(i, 0xc0, 10000, &read10(18, 2), &[]);
        step(i, 0xc0, 512, &read10(4000, 1), &[]);
        step(i, 0x80, 0, &sync_cache10(), &[]);
        // Fewer bytes than the CDB asks for: the whole blocks that came.
        step(i, 0xa0, 1024, &write10(40, 4), &pattern(2, 1024));
        step(i, 0xc0, 2048, &read10(40, 4), &[]);
        out
    };
    let inline = script(&mut login(false));
    let mut offloaded = login(true);
    let offloaded = script(&mut offloaded);
    assert_eq!(inline.len(), 8, "one PDU per step");
    assert!(offloaded == inline, "offloaded and inline responses differ");
}

/// Data-Out (immediate, unsolicited and solicited) and Data-In buffers reach
/// the bdev page aligned, so a file LUN needs no bounce copy for them.
#[test]
fn whole_page_transfers_reach_the_bdev_page_aligned() {
    let mut i = login(true);
    let before = PAGE_IO.load(Ordering::Relaxed);
    let one = pattern(5, 4096);
    i.scsi(0xa0, 4096, &write10(64, 8), &one);
    assert_eq!(run_all(&mut i), 1);
    i.recv();
    // 16 KiB: 4 KiB immediate, the rest solicited by R2T.
    let four = pattern(6, 16384);
    let itt = i.scsi(0xa0, 16384, &write10(128, 32), &four[..4096]);
    let r = i.recv();
    assert_eq!(r[0].op(), 0x31, "R2T: {r:?}");
    let ttt = r[0].word(20);
    for (sn, off) in (4096..16384).step_by(4096).enumerate() {
        let last = off + 4096 == 16384;
        i.data_out(
            itt,
            ttt,
            sn as u32,
            off as u32,
            last,
            &four[off..off + 4096],
        );
    }
    assert_eq!(run_all(&mut i), 1);
    i.recv();
    i.scsi(0xc0, 4096, &read10(64, 8), &[]);
    i.scsi(0xc0, 16384, &read10(128, 32), &[]);
    assert_eq!(run_all(&mut i), 2);
    let back: Vec<u8> = i.recv().into_iter().flat_map(|p| p.data).collect();
    assert!(back[..4096] == one[..] && back[4096..] == four[..]);
    assert!(PAGE_IO.load(Ordering::Relaxed) >= before + 4);
    assert_eq!(MISALIGNED_PAGE_IO.load(Ordering::Relaxed), 0);
}

#[test]
fn a_task_stays_in_flight_until_its_io_completes() {
    let mut i = login(true);
    let data = pattern(3, 2048);
    let w = i.scsi(0xa0, 2048, &write10(0, 4), &data);
    assert!(i.recv().is_empty(), "no response before the I/O ends");
    assert_eq!(i.conn.in_flight(), 1);
    // The ITT stays taken while its I/O runs (§11.17.1 reason 07h).
    i.itt = w - 1;
    i.scsi(0xa0, 512, &write10(0, 1), &pattern(4, 512));
    let r = i.recv();
    assert_eq!(
        (r[0].op(), r[0].h[2]),
        (0x3f, 0x07),
        "task in progress: {r:?}"
    );
    let ios = take_all(&mut i);
    assert_eq!(ios.len(), 1);
    // The I/O runs on another thread, as it does under the reactor.
    let finished: Finished = std::thread::spawn(move || {
        let mut ios = ios;
        ios.pop().unwrap().run()
    })
    .join()
    .unwrap();
    i.conn.complete(finished);
    let r = i.recv();
    assert_eq!(r.len(), 1);
    assert_eq!((r[0].op(), r[0].word(16), r[0].h[3]), (0x21, w, 0), "GOOD");
    assert_eq!(i.conn.in_flight(), 0);
    i.scsi(0xc0, 2048, &read10(0, 4), &[]);
    run_all(&mut i);
    let back: Vec<u8> = i.recv().into_iter().flat_map(|p| p.data).collect();
    assert_eq!(back, data);
}

#[test]
fn completions_in_any_order_answer_their_own_tasks() {
    let mut i = login(true);
    for n in 0..4u8 {
        i.scsi(0xa0, 512, &write10(u32::from(n), 1), &pattern(n, 512));
    }
    run_all(&mut i);
    i.recv();
    let itts: Vec<u32> = (0..4)
        .map(|n| i.scsi(0xc0, 512, &read10(n, 1), &[]))
        .collect();
    let mut ios = take_all(&mut i);
    assert_eq!(ios.len(), 4);
    assert!(i.recv().is_empty());
    // Complete 2, 0, 3, 1.
    let mut finished: Vec<Option<Finished>> = ios.drain(..).map(|io| Some(io.run())).collect();
    let mut stat_sns = Vec::new();
    for k in [2usize, 0, 3, 1] {
        i.conn.complete(finished[k].take().unwrap());
        let r = i.recv();
        assert_eq!(r.len(), 1, "one Data-In with status: {r:?}");
        assert_eq!(r[0].op(), 0x25);
        assert_eq!(r[0].h[1] & 0x81, 0x81, "F and S");
        assert_eq!(r[0].word(16), itts[k]);
        assert_eq!(r[0].data, pattern(k as u8, 512));
        stat_sns.push(r[0].word(24));
    }
    assert!(
        stat_sns.windows(2).all(|w| w[1] == w[0] + 1),
        "{stat_sns:?}"
    );
}

#[test]
fn abort_task_of_an_in_flight_io_waits_for_it() {
    let mut i = login(true);
    let w = i.scsi(0xa0, 512, &write10(9, 1), &pattern(9, 512));
    let ios = take_all(&mut i);
    assert_eq!(ios.len(), 1);
    let ref_sn = i.cmd_sn - 1;
    let r = tmf_with_ref(&mut i, 1, 0, w, ref_sn);
    assert!(r.is_empty(), "the TMF response waits for the I/O: {r:?}");
    // A command behind the TMF is not held up by it.
    i.scsi(0x80, 0, &[0; 6], &[]);
    let r = i.recv();
    assert_eq!((r.len(), r[0].op(), r[0].h[3]), (1, 0x21, 0));
    for io in ios {
        i.conn.complete(io.run());
    }
    let r = i.recv();
    assert_eq!(r.len(), 1, "only the TMF response, not the write's: {r:?}");
    assert_eq!((r[0].op(), r[0].h[2]), (0x22, 0), "FUNCTION COMPLETE");
    assert_eq!(r[0].word(16), 0x777);
    assert_eq!(i.conn.in_flight(), 0);
}

#[test]
fn lun_reset_and_abort_task_set_wait_for_every_io_of_the_lun() {
    for function in [2u8, 5, 6] {
        let mut i = login(true);
        i.scsi(0xa0, 512, &write10(1, 1), &pattern(1, 512));
        i.scsi(0xc0, 512, &read10(2, 1), &[]);
        let mut ios = take_all(&mut i);
        assert_eq!(ios.len(), 2);
        assert!(tmf_request(&mut i, function, 0, 0).is_empty());
        i.conn.complete(ios.pop().unwrap().run());
        assert!(i.recv().is_empty(), "one I/O still runs");
        i.conn.complete(ios.pop().unwrap().run());
        let r = i.recv();
        assert_eq!(r.len(), 1, "function {function}: {r:?}");
        assert_eq!((r[0].op(), r[0].h[2]), (0x22, 0));
    }
}

#[test]
fn the_window_does_not_grow_while_io_is_in_flight() {
    let mut i = login(true);
    // MaxCmdSN - ExpCmdSN.
    let max = |r: &Resp| r.word(32).wrapping_sub(r.word(28));
    i.scsi(0x80, 0, &[0; 6], &[]);
    assert_eq!(max(&i.recv()[0]), 127, "full window when idle");
    for n in 0..3 {
        i.scsi(0xa0, 512, &write10(n, 1), &pattern(0, 512));
    }
    let ios = take_all(&mut i);
    assert_eq!(ios.len(), 3);
    i.scsi(0x80, 0, &[0; 6], &[]);
    let r = i.recv();
    assert_eq!(max(&r[0]), 127 - 3, "three commands still hold their place");
    let max_then = r[0].word(32);
    for io in ios {
        i.conn.complete(io.run());
    }
    let r = i.recv();
    assert_eq!(r.len(), 3);
    assert!(r.iter().all(|p| p.word(32) >= max_then), "never moves back");
    assert_eq!(max(&r[2]), 127);
}

#[test]
fn io_outliving_its_connection_is_harmless() {
    let mut i = login(true);
    let data = pattern(7, 1024);
    i.scsi(0xa0, 1024, &write10(100, 2), &data);
    let ios = take_all(&mut i);
    // Logout while the write runs: the response is sent, the session ends.
    let mut h = [0u8; 48];
    h[0] = 0x06;
    h[1] = 0x80;
    h[16..20].copy_from_slice(&0x55u32.to_be_bytes());
    h[24..28].copy_from_slice(&i.cmd_sn.to_be_bytes());
    i.send(h, &[]);
    let r = i.recv();
    assert_eq!((r.len(), r[0].op()), (1, 0x26), "{r:?}");
    assert!(i.conn.is_closed());
    // The completion finds nothing to answer.
    for io in ios {
        i.conn.complete(io.run());
    }
    assert!(i.recv().is_empty());
    // A connection dropped outright: its worker still owns the buffers
    // and finishes the write.
    let ctx = context_over(true);
    let mut j = Init::login_normal(ctx.clone(), &[("ImmediateData", "Yes")]);
    j.clear_unit_attention();
    j.scsi(0xa0, 1024, &write10(100, 2), &data);
    let ios = take_all(&mut j);
    drop(j);
    let finished: Vec<Finished> = ios.into_iter().map(|io| io.run()).collect();
    drop(finished);
    let mut k = Init::login_normal(ctx, &[]);
    k.clear_unit_attention();
    k.scsi(0xc0, 1024, &read10(100, 2), &[]);
    run_all(&mut k);
    let back: Vec<u8> = k.recv().into_iter().flat_map(|p| p.data).collect();
    assert_eq!(back, data);
}
