//! Writes acknowledged as durable survive `kill -9` of the daemon
//! (ARCHITECTURE.md, Persistence): data written through a real initiator
//! (libiscsi) to a `file` volume with FUA, or followed by SYNCHRONIZE CACHE,
//! reads back unchanged after a hard kill and restart.

mod libiscsi;
mod support;

use libiscsi::Session;
use support::{Backend, Config, Daemon, INITIATOR_1};

const IQN: &str = "iqn.2026-11.io.reservoir:durability";
const VOLUME_MIB: u64 = 64;
/// Largest single WRITE/READ this test issues, well under any sane block limit.
const MAX_TRANSFER: usize = 128 << 10;

/// A run of blocks written with one seed.
#[derive(Debug, Clone, Copy)]
struct Extent {
    lba: u64,
    blocks: u32,
    seed: u64,
    fua: bool,
}

/// Deterministic bytes that differ per seed and per position (xorshift64*).
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        out.extend_from_slice(&state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn portal(daemon: &Daemon) -> String {
    format!("127.0.0.1:{}", daemon.port())
}

/// The extents: the first and last blocks of the volume, an unaligned run in
/// the middle, and single blocks scattered across it; about half with FUA.
fn extents(session: &Session) -> Vec<Extent> {
    let blocks = session.blocks();
    let per_transfer = (MAX_TRANSFER / session.block_size() as usize) as u32;
    let mut extents = vec![
        Extent {
            lba: 0,
            blocks: per_transfer * 2,
            seed: 1,
            fua: true,
        },
        Extent {
            lba: blocks / 2 + 3,
            blocks: per_transfer / 2 + 5,
            seed: 2,
            fua: false,
        },
        Extent {
            lba: blocks - 8,
            blocks: 8,
            seed: 3,
            fua: true,
        },
    ];
    let stride = blocks / 20;
    for i in 1..16 {
        extents.push(Extent {
            lba: i * stride + 1,
            blocks: 1,
            seed: 10 + i,
            fua: i % 2 == 0,
        });
    }
    extents
}

fn write_extent(session: &mut Session, extent: Extent) {
    let block = session.block_size() as usize;
    let data = pattern(extent.seed, extent.blocks as usize * block);
    for (i, chunk) in data.chunks(MAX_TRANSFER).enumerate() {
        let lba = extent.lba + (i * MAX_TRANSFER / block) as u64;
        session.write(lba, chunk, extent.fua);
    }
}

fn read_extent(session: &mut Session, lba: u64, blocks: u32) -> Vec<u8> {
    let block = session.block_size() as usize;
    let per_transfer = (MAX_TRANSFER / block) as u32;
    let mut data = Vec::with_capacity(blocks as usize * block);
    let mut done = 0;
    while done < blocks {
        let n = per_transfer.min(blocks - done);
        data.extend(session.read(lba + u64::from(done), n));
        done += n;
    }
    data
}

fn assert_same(what: &str, extent: Extent, expected: &[u8], got: &[u8]) {
    if let Some(offset) = expected.iter().zip(got).position(|(a, b)| a != b) {
        panic!(
            "{what}: extent {extent:?} differs first at byte {offset} (expected {:#04x}, read {:#04x})",
            expected[offset], got[offset]
        );
    }
    assert_eq!(
        expected.len(),
        got.len(),
        "{what}: short read of {extent:?}"
    );
}

fn verify(session: &mut Session, extents: &[Extent], what: &str) {
    let block = session.block_size() as usize;
    for &extent in extents {
        let got = read_extent(session, extent.lba, extent.blocks);
        assert_same(
            what,
            extent,
            &pattern(extent.seed, extent.blocks as usize * block),
            &got,
        );
    }
    // Never written: a fresh sparse file reads as zeros.
    let untouched = Extent {
        lba: extents[0].lba + u64::from(extents[0].blocks) + 7,
        blocks: 16,
        seed: 0,
        fua: false,
    };
    let zeros = read_extent(session, untouched.lba, untouched.blocks);
    assert_same(what, untouched, &vec![0; 16 * block], &zeros);
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

    let mut session = Session::login(INITIATOR_1, &portal(&daemon), IQN, 0);
    assert_eq!(
        session.blocks() * u64::from(session.block_size()),
        VOLUME_MIB << 20,
        "LUN size"
    );
    let extents = extents(&session);
    for &extent in &extents {
        write_extent(&mut session, extent);
    }
    // The non-FUA extents become durable here (SBC-4 5.23).
    session.synchronize_cache();
    verify(&mut session, &extents, "before kill -9");

    // The session stays logged in while the target dies, as a host's would.
    daemon.kill_hard();
    drop(session);
    daemon.restart();

    let mut session = Session::login(INITIATOR_1, &portal(&daemon), IQN, 0);
    verify(&mut session, &extents, "after kill -9 and restart");
}

#[test]
fn pattern_is_deterministic_and_seed_dependent() {
    assert_eq!(pattern(7, 4096), pattern(7, 4096));
    assert_ne!(pattern(7, 4096), pattern(8, 4096));
    assert_eq!(pattern(7, 13).len(), 13);
    assert!(pattern(7, 4096).iter().any(|&b| b != 0));
}
