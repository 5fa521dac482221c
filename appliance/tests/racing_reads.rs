//! READs of a RAM volume are sent straight from the volume's memory, under
//! its locks, while WRITEs from another connection land on the same blocks.
//! Whatever order they run in, a read returns each extent as one write left
//! it: never part old, part new, also when the reader lets its socket fill
//! (a read cut short keeps the rest of its data as it was).

#[allow(dead_code)] // the held-write half is for the reservation tests
mod raw_iscsi;
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use raw_iscsi::{Outcome, PipelinedOp, RawSession};
use support::{Config, Daemon, INITIATOR_1, INITIATOR_2};

const IQN: &str = "iqn.2026-11.io.reservoir:racing";
const BLOCK: u32 = 512;
/// 64 KiB extents, each inside one of the volume's 1 MiB lock regions.
const EXTENT_BLOCKS: u16 = 128;
const EXTENTS: u32 = 32;
const DEPTH: usize = 32;

fn login(daemon: &Daemon, initiator: &str) -> RawSession {
    let portal = SocketAddr::from(([127, 0, 0, 1], daemon.port()));
    let isid = [0x80, 0, 0, 0, 0x52, 1];
    let mut session = RawSession::login(portal, initiator, isid, IQN).expect("raw login");
    session.clear_unit_attentions().expect("unit attentions");
    session
}

fn lba(extent: u32) -> u32 {
    extent * u32::from(EXTENT_BLOCKS)
}

/// Extent `extent` as round `round` writes it: one byte value throughout.
fn write(extent: u32, round: u32) -> PipelinedOp {
    let fill = 1 + ((round * EXTENTS + extent) % 255) as u8;
    PipelinedOp::Write {
        lba: lba(extent),
        data: vec![fill; usize::from(EXTENT_BLOCKS) * BLOCK as usize],
    }
}

#[test]
fn reads_racing_writes_see_whole_extents() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", 8, IQN));
    let mut writer = login(&daemon, INITIATOR_1);
    let first: Vec<PipelinedOp> = (0..EXTENTS).map(|e| write(e, 0)).collect();
    let (outcomes, _) = writer.pipelined(&first, BLOCK, DEPTH).expect("writes");
    assert!(outcomes.iter().all(|o| o.status == Outcome::GOOD));

    let done = Arc::new(AtomicBool::new(false));
    let writing = {
        let done = Arc::clone(&done);
        std::thread::spawn(move || {
            let mut round = 1;
            while !done.load(Ordering::Relaxed) {
                let ops: Vec<PipelinedOp> = (0..EXTENTS).map(|e| write(e, round)).collect();
                let (outcomes, _) = writer.pipelined(&ops, BLOCK, DEPTH).expect("writes");
                assert!(outcomes.iter().all(|o| o.status == Outcome::GOOD));
                round += 1;
            }
            round
        })
    };
    let mut reader = login(&daemon, INITIATOR_2);
    let reads: Vec<PipelinedOp> = (0..EXTENTS)
        .map(|e| PipelinedOp::Read {
            lba: lba(e),
            blocks: EXTENT_BLOCKS,
        })
        .collect();
    for pass in 0..40 {
        let (outcomes, _) = reader.pipelined(&reads, BLOCK, DEPTH).expect("reads");
        for (extent, outcome) in outcomes.iter().enumerate() {
            assert_eq!(outcome.status, Outcome::GOOD);
            let fill = outcome.data_in[0];
            assert!(
                fill != 0 && outcome.data_in.iter().all(|&b| b == fill),
                "pass {pass}: extent {extent} is torn"
            );
        }
    }
    done.store(true, Ordering::Relaxed);
    let rounds = writing.join().expect("writer");
    assert!(rounds > 1, "the writes ran alongside the reads");
}
