//! `Device::start` + `BlockIo::run` on another thread, or a lent read,
//! gives what `Device::execute` gives inline: completions, data-in and
//! the medium.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;
use reservoir_bdev::{BlockCount, BlockSize, MallocBdev};
use reservoir_scsi::{AlignedBuf, Completion, Device, InitiatorPort, Nexus, Started, Status};

/// How `start` left a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    Inline,
    Offloaded,
    Lent,
}

/// Runs one command through `start`, finishing a returned `BlockIo` on a
/// thread of its own and taking a lent read's data from the volume. Also
/// says which way it went.
fn run_split(
    device: &Device,
    n: &mut Nexus,
    cdb: &[u8],
    data_out: &[u8],
) -> (Completion, Vec<u8>, Path) {
    let cmd = match device.parse(1, cdb) {
        Ok(cmd) => cmd,
        Err(c) => return (c, Vec::new(), Path::Inline),
    };
    let mut data_in = AlignedBuf::new();
    match device.start(n, &cmd, data_out, &mut data_in) {
        Started::Done(c) => (c, data_in.to_vec(), Path::Inline),
        Started::Lent(read) => {
            let data = read.lend().unwrap().to_vec();
            assert_eq!(data.len(), read.len());
            assert!(data.len() as u64 <= cmd.transfer().bytes);
            let tried = read.try_lend().unwrap().expect("no writer waits");
            assert_eq!(*tried, data[..]);
            drop(tried);
            let mut copied = AlignedBuf::new();
            assert_eq!(read.copy_into(&mut copied), Completion::good());
            assert_eq!(copied.to_vec(), data, "copy_into gives the lent data");
            (Completion::good(), data, Path::Lent)
        }
        Started::Io(io) => {
            let data_out = data_out.to_vec();
            let (c, data_in) = thread::spawn(move || {
                let mut data_in = data_in;
                let c = io.run(&data_out, &mut data_in);
                (c, data_in)
            })
            .join()
            .unwrap();
            assert!(data_in.len() as u64 <= cmd.transfer().bytes);
            (c, data_in.to_vec(), Path::Offloaded)
        }
    }
}

fn pattern(seed: u8, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(13) ^ seed)
        .collect()
}

fn wav(lba: u32, blocks: u16, bytchk: bool) -> Vec<u8> {
    cdb10(0x2E, if bytchk { 0x02 } else { 0 }, lba, blocks)
}

#[test]
fn split_execution_equals_inline_execution() {
    // (CDB, data-out, a block transfer that leaves the reactor)
    let script: Vec<(Vec<u8>, Vec<u8>, bool)> = vec![
        (cdb10(0x2A, 0, 0, 4), pattern(1, 4 * BS), true),
        (cdb10(0x28, 0, 0, 4), vec![], true),
        (cdb16(0x88, 0, 2, 2), vec![], true),
        (cdb12(0xA8, 0, 1, 1), vec![], true),
        (vec![0x08, 0, 0, 3, 1, 0], vec![], true),
        (vec![0x0A, 0, 0, 8, 1, 0], pattern(2, BS), true),
        (cdb16(0x8A, 0x08, 16, 2), pattern(3, 2 * BS), true),
        (cdb12(0xAA, 0, 20, 1), pattern(4, BS), true),
        // Fewer blocks than the CDB: the whole blocks that came.
        (cdb10(0x2A, 0, 30, 4), pattern(5, BS + 100), true),
        (wav(40, 2, true), pattern(6, 2 * BS), true),
        (wav(42, 1, false), pattern(7, BS), true),
        (cdb10(0x35, 0, 0, 0), vec![], true),
        (cdb16(0x91, 0, 0, 0), vec![], true),
        (cdb10(0x28, 0, 0, 64), vec![], true),
        // Out of range: CHECK CONDITION from the worker, no data.
        (cdb10(0x28, 0, BLOCKS as u32 - 1, 2), vec![], true),
        (cdb10(0x2A, 0, BLOCKS as u32, 1), pattern(8, BS), true),
        (cdb10(0x35, 0, BLOCKS as u32, 0), vec![], true),
        // Commands that never leave the transport's thread.
        (vec![0x12, 0, 0, 0, 36, 0], vec![], false),
        (cdb10(0x25, 0, 0, 0), vec![], false),
        (cdb10(0x2F, 0, 0, 4), vec![], false),
        (
            cdb16(0x89, 0, 0, 0)
                .into_iter()
                .enumerate()
                .map(|(i, b)| if i == 13 { 1 } else { b })
                .collect(),
            [pattern(1, BS), pattern(9, BS)].concat(),
            false,
        ),
    ];
    let inline = fixture(Opts::default());
    let split = offloaded_fixture(Opts::default());
    let mut a = inline.nexus("iqn.inline");
    let mut b = split.nexus("iqn.split");
    for (cdb, data_out, offloads) in &script {
        let (want, want_in) = inline.run(&mut a, 1, cdb, data_out);
        let (got, got_in, path) = run_split(&split.device, &mut b, cdb, data_out);
        assert_eq!(path == Path::Offloaded, *offloads, "{cdb:02x?}");
        assert_eq!(got, want, "{cdb:02x?}");
        assert_eq!(got_in, want_in, "{cdb:02x?}");
    }
    assert!(*inline.bdev.data.lock().unwrap() == *split.bdev.data.lock().unwrap());
    assert_eq!(
        *inline.bdev.fua_writes.lock().unwrap(),
        *split.bdev.fua_writes.lock().unwrap()
    );
    assert_eq!(
        *inline.bdev.flushes.lock().unwrap(),
        *split.bdev.flushes.lock().unwrap()
    );
}

#[test]
fn a_lun_that_does_not_ask_runs_inline_through_start() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("iqn.a");
    let (c, data, path) = run_split(&f.device, &mut n, &cdb10(0x28, 0, 0, 1), &[]);
    assert_eq!(path, Path::Inline);
    assert_good(&c);
    assert_eq!(data.len(), BS);
}

/// A LUN whose bdev lends its memory answers READs with a lent read whose
/// data is what inline execution reads; everything else, out-of-range and
/// empty reads included, completes at once as it would inline.
#[test]
fn lent_reads_give_what_inline_reads_give() {
    let bdev = MallocBdev::new("m0", BlockSize::B512, BlockCount(BLOCKS)).unwrap();
    let device = device_with(Arc::new(device_lun(Arc::new(bdev), false)));
    let mut n = device.new_nexus(InitiatorPort {
        name: "iqn.lending".into(),
        isid: [0x80, 0, 0, 0, 0, 1],
    });
    let execute = |n: &mut Nexus, cdb: &[u8], data_out: &[u8]| {
        let mut data_in = AlignedBuf::new();
        let cmd = device.parse(1, cdb).unwrap();
        let c = device.execute(n, &cmd, data_out, &mut data_in);
        (c, data_in.to_vec())
    };
    let (power_on, _) = execute(&mut n, &[0; 6], &[]);
    assert_eq!(power_on.status, Status::CheckCondition);
    let script: Vec<(Vec<u8>, Vec<u8>, Path)> = vec![
        (cdb10(0x2A, 0, 0, 8), pattern(1, 8 * BS), Path::Inline),
        (cdb10(0x28, 0, 0, 8), vec![], Path::Lent),
        (cdb16(0x88, 0, 3, 2), vec![], Path::Lent),
        (cdb12(0xA8, 0, 7, 1), vec![], Path::Lent),
        (vec![0x08, 0, 0, 2, 1, 0], vec![], Path::Lent),
        (cdb10(0x28, 0, 0, 0), vec![], Path::Inline),
        (cdb10(0x28, 0, BLOCKS as u32 - 1, 2), vec![], Path::Inline),
        (vec![0x12, 0, 0, 0, 36, 0], vec![], Path::Inline),
    ];
    for (cdb, data_out, expected) in &script {
        let (want, want_in) = execute(&mut n, cdb, data_out);
        let (got, got_in, path) = run_split(&device, &mut n, cdb, data_out);
        assert_eq!(path, *expected, "{cdb:02x?}");
        assert_eq!(got, want, "{cdb:02x?}");
        assert_eq!(got_in, want_in, "{cdb:02x?}");
    }
}

fn register(key: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[8..16].copy_from_slice(&key.to_be_bytes());
    p
}

fn preempt(key: u64, victim: u64) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&victim.to_be_bytes());
    p
}

fn pr_out(sa: u8, rtype: u8, len: u32) -> Vec<u8> {
    let mut c = vec![0x5F, sa, rtype, 0, 0, 0, 0, 0, 0, 0];
    c[5..9].copy_from_slice(&len.to_be_bytes());
    c
}

/// A PREEMPT AND ABORT completes only after the victim's write that was
/// already on the medium's way has ended (SPC-4 5.13.11.5): nothing of the
/// preempted nexus lands after the preemption is reported.
#[test]
fn preempt_and_abort_waits_for_a_running_transfer() {
    let f = std::sync::Arc::new(offloaded_fixture(Opts::default()));
    let mut a = f.nexus("iqn.a");
    let mut b = f.nexus("iqn.b");
    assert_good(&f.run(&mut a, 1, &pr_out(0, 0, 24), &register(0xA)).0);
    assert_good(&f.run(&mut b, 1, &pr_out(0, 0, 24), &register(0xB)).0);
    let cmd = f.device.parse(1, &cdb10(0x2A, 0, 5, 1)).unwrap();
    let mut data_in = AlignedBuf::new();
    let Started::Io(io) = f.device.start(&mut a, &cmd, &[7; BS], &mut data_in) else {
        panic!("a write on an offloading LUN is offloaded");
    };
    f.bdev.stall_writes.store(true, Ordering::SeqCst);
    let writer = thread::spawn(move || io.run(&[7; BS], &mut data_in));
    while f.bdev.writes_started.load(Ordering::SeqCst) == 0 {
        thread::sleep(Duration::from_millis(1));
    }
    let preempted = std::sync::Arc::new(AtomicBool::new(false));
    let preemptor = {
        let (f, preempted) = (f.clone(), preempted.clone());
        thread::spawn(move || {
            let c = f.run(&mut b, 1, &pr_out(5, 1, 24), &preempt(0xB, 0xA)).0;
            preempted.store(true, Ordering::SeqCst);
            c
        })
    };
    thread::sleep(Duration::from_millis(100));
    assert!(
        !preempted.load(Ordering::SeqCst),
        "PREEMPT AND ABORT completed while the victim's write still ran"
    );
    f.bdev.stall_writes.store(false, Ordering::SeqCst);
    assert_good(&writer.join().unwrap());
    assert_good(&preemptor.join().unwrap());
    assert!(f.bdev.data.lock().unwrap()[5 * BS..6 * BS]
        .iter()
        .all(|&b| b == 7));
}

/// A write that passed the gate and then lost its nexus's registration to
/// PREEMPT AND ABORT (SPC-4 5.13.11.5) never reaches the medium.
#[test]
fn preempt_and_abort_ends_a_started_io_with_task_aborted() {
    let f = offloaded_fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    let mut b = f.nexus("iqn.b");
    assert_good(&f.run(&mut a, 1, &pr_out(0, 0, 24), &register(0xA)).0);
    assert_good(&f.run(&mut b, 1, &pr_out(0, 0, 24), &register(0xB)).0);
    let cmd = f.device.parse(1, &cdb10(0x2A, 0, 5, 1)).unwrap();
    let data = pattern(9, BS);
    let mut data_in = AlignedBuf::new();
    let Started::Io(io) = f.device.start(&mut a, &cmd, &data, &mut data_in) else {
        panic!("a write on an offloading LUN is offloaded");
    };
    assert!(!io.aborted());
    // B preempts A's registration and aborts A's tasks (WRITE EXCLUSIVE).
    assert_good(&f.run(&mut b, 1, &pr_out(5, 1, 24), &preempt(0xB, 0xA)).0);
    assert!(io.aborted());
    let c = thread::spawn(move || io.run(&data, &mut data_in))
        .join()
        .unwrap();
    assert_eq!(c.status, Status::TaskAborted);
    assert!(f.bdev.data.lock().unwrap()[5 * BS..6 * BS]
        .iter()
        .all(|&b| b == 0));
}

/// LOGICAL UNIT RESET aborts the tasks of every nexus on the LU (SAM-5
/// 7.7): another nexus's write that passed the gate ends with TASK ABORTED
/// (TAS = 1) and never reaches the medium; a reset of another LUN, or a
/// command started after the reset, is untouched.
#[test]
fn a_lun_reset_ends_other_nexuses_started_io_with_task_aborted() {
    let f = offloaded_fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    let cmd = f.device.parse(1, &cdb10(0x2A, 0, 5, 1)).unwrap();
    let data = pattern(9, BS);
    let mut data_in = AlignedBuf::new();
    let Started::Io(io) = f.device.start(&mut a, &cmd, &data, &mut data_in) else {
        panic!("a write on an offloading LUN is offloaded");
    };
    assert!(f.device.lun_reset(2).is_err(), "no LUN 2");
    assert!(!io.aborted());
    f.device.lun_reset(1).unwrap();
    assert!(io.aborted());
    assert_eq!(io.run(&data, &mut data_in).status, Status::TaskAborted);
    assert!(f.bdev.data.lock().unwrap()[5 * BS..6 * BS]
        .iter()
        .all(|&b| b == 0));
    // The reset's unit attention, then a write that runs.
    let (c, _) = f.run(&mut a, 1, &cdb10(0x2A, 0, 5, 1), &data);
    assert_eq!(c.status, Status::CheckCondition);
    let Started::Io(io) = f.device.start(&mut a, &cmd, &data, &mut data_in) else {
        panic!("a write on an offloading LUN is offloaded");
    };
    assert_good(&io.run(&data, &mut data_in));
    assert_eq!(f.bdev.data.lock().unwrap()[5 * BS..6 * BS], data[..]);
}
