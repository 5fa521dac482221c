//! A file volume serves many commands in flight on one connection: its
//! block I/O runs on the appliance's worker threads, responses come back in
//! whatever order the device finishes them, and every byte is where it was
//! written. A daemon stopped with I/O in flight still exits cleanly.

#[allow(dead_code)] // the held-write half is for the reservation tests
mod raw_iscsi;
mod support;

use std::net::SocketAddr;

use raw_iscsi::{Outcome, PipelinedOp, RawSession};
use support::{Backend, Config, Daemon, INITIATOR_1};

const IQN: &str = "iqn.2026-11.io.reservoir:queue-depth";
const BLOCK: u32 = 512;
/// Two sessions of one initiator, each its own I_T nexus.
const ISIDS: [[u8; 6]; 2] = [[0x80, 0, 0, 0, 0x51, 1], [0x80, 0, 0, 0, 0x51, 2]];
/// The bench's queue depth.
const DEPTH: usize = 32;
/// 4 KiB commands.
const BLOCKS: u16 = 8;
const COMMANDS: u32 = 256;

fn file_daemon() -> Daemon {
    Daemon::start(&file_config())
}

fn file_config() -> Config {
    Config::default()
        .volume(
            "vol0",
            Backend::File {
                file_name: "vol0.img".to_owned(),
            },
            64,
        )
        .target(IQN, &["vol0"])
}

/// Threads of process `pid` whose name starts with `prefix`.
fn threads_named(pid: u32, prefix: &str) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .expect("the daemon's threads")
        .filter_map(|task| std::fs::read_to_string(task.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with(prefix))
        .count()
}

fn login(daemon: &Daemon, isid: [u8; 6]) -> RawSession {
    let portal = SocketAddr::from(([127, 0, 0, 1], daemon.port()));
    let mut session = RawSession::login(portal, INITIATOR_1, isid, IQN).expect("raw login");
    session.clear_unit_attentions().expect("unit attentions");
    session
}

/// Block `i`'s LBA: scattered over the volume, never overlapping.
fn lba(i: u32) -> u32 {
    (i * 7919 % COMMANDS) * u32::from(BLOCKS) * 61
}

fn pattern(i: u32) -> Vec<u8> {
    let bytes = usize::from(BLOCKS) * BLOCK as usize;
    (0..bytes)
        .map(|n| (n as u32).wrapping_mul(2_654_435_761).wrapping_add(i) as u8 ^ (i >> 3) as u8)
        .collect()
}

/// A write of `pattern(i)` at `lba(i)` for each `i`.
fn writes(blocks: impl Iterator<Item = u32>) -> Vec<PipelinedOp> {
    blocks
        .map(|i| PipelinedOp::Write {
            lba: lba(i),
            data: pattern(i),
        })
        .collect()
}

/// A read of block run `i` for each `i`.
fn reads(blocks: impl Iterator<Item = u32>) -> Vec<PipelinedOp> {
    blocks
        .map(|i| PipelinedOp::Read {
            lba: lba(i),
            blocks: BLOCKS,
        })
        .collect()
}

#[test]
fn many_commands_in_flight_on_a_file_volume_read_back_what_was_written() {
    let daemon = file_daemon();
    let mut session = login(&daemon, ISIDS[0]);
    let write_ops = writes(0..COMMANDS);
    let (outcomes, peak) = session
        .pipelined(&write_ops, BLOCK, DEPTH)
        .expect("pipelined writes");
    assert!(
        peak >= DEPTH,
        "only {peak} commands were outstanding at once"
    );
    for (i, outcome) in outcomes.iter().enumerate() {
        assert_eq!(outcome.status, Outcome::GOOD, "write {i}: {outcome:?}");
    }
    // Reads in a different order from the writes, and two per block size.
    let read_ops = reads((0..COMMANDS).rev());
    let (outcomes, peak) = session
        .pipelined(&read_ops, BLOCK, DEPTH)
        .expect("pipelined reads");
    assert!(peak >= DEPTH, "only {peak} reads were outstanding at once");
    for (k, outcome) in outcomes.iter().enumerate() {
        let i = COMMANDS - 1 - k as u32;
        assert_eq!(outcome.status, Outcome::GOOD, "read of {i}: {outcome:?}");
        assert!(
            outcome.data_in == pattern(i),
            "block run {i} did not read back as written"
        );
    }
    // Out of range while others are in flight: CHECK CONDITION for that one only.
    let mixed = vec![
        PipelinedOp::Read {
            lba: lba(0),
            blocks: BLOCKS,
        },
        PipelinedOp::Read {
            lba: u32::MAX - 1,
            blocks: BLOCKS,
        },
        PipelinedOp::Read {
            lba: lba(1),
            blocks: BLOCKS,
        },
    ];
    let (outcomes, _) = session.pipelined(&mixed, BLOCK, DEPTH).expect("mixed");
    assert_eq!(outcomes[0].data_in, pattern(0));
    assert_eq!(outcomes[1].status, Outcome::CHECK_CONDITION);
    assert_eq!(outcomes[1].sense.map(|s| (s.0, s.1)), Some((0x05, 0x21)));
    assert_eq!(outcomes[2].data_in, pattern(1));
}

/// `io_workers` sets how many threads run file I/O; a queue deeper than
/// that waits its turn and every command still completes as written.
#[test]
fn io_workers_bounds_the_file_io_threads() {
    let daemon = Daemon::start(&file_config().io_workers(2));
    assert_eq!(threads_named(daemon.pid(), "bdev-worker-"), 2);
    let mut session = login(&daemon, ISIDS[0]);
    let write_ops = writes(0..64);
    let (outcomes, _) = session.pipelined(&write_ops, BLOCK, DEPTH).expect("writes");
    assert!(outcomes.iter().all(|o| o.status == Outcome::GOOD));
    let read_ops = reads(0..64);
    let (outcomes, _) = session.pipelined(&read_ops, BLOCK, DEPTH).expect("reads");
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(outcome.data_in == pattern(i as u32), "block run {i}");
    }
    assert_eq!(
        threads_named(file_daemon().pid(), "bdev-worker-"),
        reservoir_target_config::DEFAULT_IO_WORKERS
    );
}

#[test]
fn sigterm_with_io_in_flight_exits_cleanly_and_keeps_acknowledged_data() {
    let mut daemon = file_daemon();
    let mut session = login(&daemon, ISIDS[0]);
    let write_ops = writes(0..COMMANDS);
    let (outcomes, _) = session.pipelined(&write_ops, BLOCK, DEPTH).expect("writes");
    assert!(outcomes.iter().all(|o| o.status == Outcome::GOOD));
    // A burst of reads left unanswered on our side while the daemon stops.
    let read_ops = reads(0..DEPTH as u32);
    let mut racing = login(&daemon, ISIDS[1]);
    let reader = std::thread::spawn(move || racing.pipelined(&read_ops, BLOCK, DEPTH).is_ok());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let status = daemon.stop();
    assert!(
        status.success(),
        "daemon exit: {status:?}\n{}",
        daemon.log()
    );
    let _ = reader.join().expect("reader thread");
    drop(session);
    daemon.restart();
    let mut session = login(&daemon, ISIDS[0]);
    let read_ops = reads(0..COMMANDS);
    let (outcomes, _) = session
        .pipelined(&read_ops, BLOCK, DEPTH)
        .expect("reads after restart");
    for (i, outcome) in outcomes.iter().enumerate() {
        assert!(
            outcome.data_in == pattern(i as u32),
            "block run {i} lost across a stop"
        );
    }
}
