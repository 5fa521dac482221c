//! Writes acknowledged as durable survive `kill -9` of the daemon
//! (ARCHITECTURE.md, Persistence): data written through a real initiator
//! (libiscsi, through `reservoir-initiator`) to a `file` volume with FUA,
//! or followed by SYNCHRONIZE CACHE, reads back unchanged after a hard kill
//! and restart.

mod support;

use reservoir_initiator::{Initiator, Pattern};
use support::{Backend, Config, Daemon, INITIATOR_1};

const IQN: &str = "iqn.2026-11.io.reservoir:durability";
const VOLUME_MIB: u64 = 64;
/// Largest single WRITE/READ this test issues, well under any block limit.
const MAX_TRANSFER: usize = 128 << 10;

/// A run of blocks written with one pattern.
#[derive(Debug, Clone, Copy)]
struct Extent {
    lba: u64,
    blocks: u64,
    pattern: Pattern,
    fua: bool,
}

/// The first and last blocks of the volume, an unaligned run in the middle,
/// and single blocks scattered across it; about half written with FUA.
fn extents(blocks: u64, block_size: u32) -> Vec<Extent> {
    let per_transfer = (MAX_TRANSFER / block_size as usize) as u64;
    let extent = |lba, blocks, seed, fua| Extent {
        lba,
        blocks,
        pattern: Pattern::new(seed),
        fua,
    };
    let mut extents = vec![
        extent(0, per_transfer * 2, 1, true),
        extent(blocks / 2 + 3, per_transfer / 2 + 5, 2, false),
        extent(blocks - 8, 8, 3, true),
    ];
    let stride = blocks / 20;
    extents.extend((1..16).map(|i| extent(i * stride + 1, 1, 10 + i, i % 2 == 0)));
    extents
}

/// Splits `extent` into transfers of at most MAX_TRANSFER bytes.
fn transfers(extent: Extent, block_size: u32) -> impl Iterator<Item = (u64, u32)> {
    let per_transfer = (MAX_TRANSFER / block_size as usize) as u64;
    (0..extent.blocks)
        .step_by(per_transfer as usize)
        .map(move |done| {
            (
                extent.lba + done,
                per_transfer.min(extent.blocks - done) as u32,
            )
        })
}

fn write_extent(session: &mut Initiator, extent: Extent, block_size: u32) {
    for (lba, blocks) in transfers(extent, block_size) {
        let mut data = vec![0u8; blocks as usize * block_size as usize];
        extent.pattern.fill(lba, block_size as usize, &mut data);
        session
            .write(lba, &data, block_size, extent.fua)
            .unwrap_or_else(|e| panic!("write of {extent:?} at {lba} failed: {e}"));
    }
}

fn verify(session: &mut Initiator, extents: &[Extent], block_size: u32, when: &str) {
    for &extent in extents {
        for (lba, blocks) in transfers(extent, block_size) {
            let data = session
                .read(lba, blocks, block_size)
                .unwrap_or_else(|e| panic!("{when}: read at {lba} failed: {e}"));
            if let Some(bad) = extent
                .pattern
                .first_mismatch(lba, block_size as usize, &data)
            {
                panic!("{when}: block {bad} of {extent:?} did not read back as written");
            }
        }
    }
    // Never written: a fresh sparse file reads as zeroes.
    let untouched = extents[0].lba + extents[0].blocks + 7;
    let zeroes = session.read(untouched, 16, block_size).unwrap();
    assert!(
        zeroes.iter().all(|&b| b == 0),
        "{when}: unwritten blocks at {untouched} are not zero"
    );
}

#[test]
fn acknowledged_writes_survive_kill_9() {
    let config = Config::default()
        .volume(
            "vol0",
            Backend::File {
                file_name: "vol0.img".to_owned(),
            },
            VOLUME_MIB,
        )
        .target(IQN, &["vol0"]);
    let mut daemon = Daemon::start(&config);
    let url = daemon.url(IQN, 0);

    let mut session = support::connect(&url, INITIATOR_1);
    let capacity = session.read_capacity().unwrap();
    assert_eq!(
        capacity.blocks * u64::from(capacity.block_size),
        VOLUME_MIB << 20,
        "LUN size"
    );
    let extents = extents(capacity.blocks, capacity.block_size);
    for &extent in &extents {
        write_extent(&mut session, extent, capacity.block_size);
    }
    // The extents written without FUA become durable here (SBC-4 SYNCHRONIZE CACHE).
    session.synchronize_cache().unwrap();
    verify(
        &mut session,
        &extents,
        capacity.block_size,
        "before kill -9",
    );

    // The session stays logged in while the target dies, as a host's would.
    daemon.kill_hard();
    drop(session);
    daemon.restart();

    let mut session = support::connect(&url, INITIATOR_1);
    verify(
        &mut session,
        &extents,
        capacity.block_size,
        "after kill -9 and restart",
    );
}
