//! Behaviour every bdev must show, run against each implementation by its
//! own test module, plus a model-based property test.

use std::sync::Arc;

use proptest::prelude::*;

use crate::{Bdev, BlockCount, Durability, ErrorKind, Lba, Provisioning};

fn bs(bdev: &dyn Bdev) -> usize {
    bdev.geometry().block_size.bytes() as usize
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .collect()
}

pub(crate) fn read_vec(bdev: &dyn Bdev, lba: u64, blocks: usize) -> Vec<u8> {
    let mut buf = vec![0xAA; blocks * bs(bdev)];
    bdev.read(Lba(lba), &mut buf).unwrap();
    buf
}

/// Round trips at the start, middle and end, with misaligned buffers too.
pub(crate) fn round_trip(bdev: &dyn Bdev) {
    let cap = bdev.geometry().block_count.0;
    let bs = bs(bdev);
    for (i, (lba, blocks)) in [(0, 1), (3, 8), (cap / 2, 9), (cap - 1, 1), (cap - 16, 16)]
        .into_iter()
        .enumerate()
    {
        let data = pattern(blocks * bs, i as u8);
        bdev.write(Lba(lba), &data, Durability::Cached).unwrap();
        assert_eq!(read_vec(bdev, lba, blocks), data, "lba {lba}");
        // A buffer one byte off any alignment, for both directions.
        let mut backing = vec![0u8; blocks * bs + 1];
        backing[1..].copy_from_slice(&pattern(blocks * bs, i as u8 + 100));
        bdev.write(Lba(lba), &backing[1..], Durability::Cached)
            .unwrap();
        let mut out = vec![0u8; blocks * bs + 1];
        bdev.read(Lba(lba), &mut out[1..]).unwrap();
        assert_eq!(out[1..], backing[1..]);
    }
    bdev.write(Lba(0), &[], Durability::Cached).unwrap();
}

pub(crate) fn rejects_bad_requests(bdev: &dyn Bdev) {
    let cap = bdev.geometry().block_count;
    let bs = bs(bdev);
    let mut two = vec![0u8; 2 * bs];
    let kind = |r: Result<(), crate::BdevError>| r.unwrap_err().kind();
    assert_eq!(
        kind(bdev.read(Lba(cap.0 - 1), &mut two)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(bdev.write(Lba(cap.0), &two, Durability::Cached)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(bdev.write(Lba(u64::MAX), &two, Durability::Fua)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(bdev.unmap(Lba(cap.0 - 1), BlockCount(2))),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(bdev.provisioning(Lba(cap.0)).map(drop)),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        kind(bdev.read(Lba(0), &mut two[..bs - 1])),
        ErrorKind::Misaligned
    );
    assert_eq!(
        kind(bdev.write(Lba(0), &two[..bs + 1], Durability::Cached)),
        ErrorKind::Misaligned
    );
}

/// Every run reported deallocated reads as zeroes; runs tile the device.
pub(crate) fn check_provisioning_reads_zero(bdev: &dyn Bdev) {
    let cap = bdev.geometry().block_count.0;
    let mut lba = 0;
    while lba < cap {
        let (state, run) = bdev.provisioning(Lba(lba)).unwrap();
        assert!(run.0 >= 1 && lba + run.0 <= cap, "run {run:?} at {lba}");
        if state == Provisioning::Deallocated {
            let blocks = run.0.min(4096) as usize;
            assert!(
                read_vec(bdev, lba, blocks).iter().all(|&b| b == 0),
                "lba {lba}"
            );
        }
        lba += run.0;
    }
}

pub(crate) fn unmap_zeroes(bdev: &dyn Bdev) {
    let bs = bs(bdev);
    let data = pattern(64 * bs, 9);
    bdev.write(Lba(0), &data, Durability::Cached).unwrap();
    assert_eq!(bdev.provisioning(Lba(0)).unwrap().0, Provisioning::Mapped);
    // Unaligned to any chunk: blocks 3..45.
    bdev.unmap(Lba(3), BlockCount(42)).unwrap();
    let back = read_vec(bdev, 0, 64);
    assert_eq!(back[..3 * bs], data[..3 * bs]);
    assert!(back[3 * bs..45 * bs].iter().all(|&b| b == 0));
    assert_eq!(back[45 * bs..], data[45 * bs..]);
    check_provisioning_reads_zero(bdev);
    // Unmapping everything deallocates everything.
    let cap = bdev.geometry().block_count;
    bdev.unmap(Lba(0), cap).unwrap();
    assert_eq!(
        bdev.provisioning(Lba(0)).unwrap(),
        (Provisioning::Deallocated, cap)
    );
    bdev.unmap(Lba(0), BlockCount(0)).unwrap();
}

pub(crate) fn fua_and_flush(bdev: &dyn Bdev) {
    let bs = bs(bdev);
    let data = pattern(4 * bs, 3);
    bdev.write(Lba(5), &data, Durability::Fua).unwrap();
    bdev.flush().unwrap();
    assert_eq!(read_vec(bdev, 5, 4), data);
}

/// Resizing keeps the retained blocks; regrown blocks read as zeroes.
pub(crate) fn resize_keeps_data(bdev: &dyn Bdev) {
    let cap = bdev.geometry().block_count.0;
    let bs = bs(bdev);
    let data = pattern(cap as usize * bs, 5);
    bdev.write(Lba(0), &data, Durability::Cached).unwrap();
    bdev.resize(BlockCount(cap * 2)).unwrap();
    assert_eq!(bdev.geometry().block_count, BlockCount(cap * 2));
    assert_eq!(read_vec(bdev, 0, cap as usize), data);
    assert!(read_vec(bdev, cap, cap as usize).iter().all(|&b| b == 0));
    let half = cap / 2 + 1;
    bdev.resize(BlockCount(half)).unwrap();
    assert_eq!(read_vec(bdev, 0, half as usize), data[..half as usize * bs]);
    let mut one = vec![0u8; bs];
    assert_eq!(
        bdev.read(Lba(half), &mut one).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    bdev.resize(BlockCount(cap)).unwrap();
    assert_eq!(read_vec(bdev, 0, half as usize), data[..half as usize * bs]);
    assert!(read_vec(bdev, half, (cap - half) as usize)
        .iter()
        .all(|&b| b == 0));
    check_provisioning_reads_zero(bdev);
}

/// Several threads write whole requests of one byte value each, over
/// overlapping or disjoint ranges; afterwards every block holds one
/// writer's value whole.
pub(crate) fn concurrent_writers(bdev: Arc<dyn Bdev>, overlapping: bool) {
    const THREADS: u8 = 4;
    const ROUNDS: u64 = 50;
    let bs = bs(&*bdev);
    let cap = bdev.geometry().block_count.0;
    let span = 24u64; // blocks per request, crossing chunk and region edges
    let threads: Vec<_> = (1..=THREADS)
        .map(|t| {
            let bdev = Arc::clone(&bdev);
            std::thread::spawn(move || {
                let buf = vec![t; span as usize * bs];
                let mut out = vec![0u8; span as usize * bs];
                for round in 0..ROUNDS {
                    let lba = if overlapping {
                        (round * 7 + u64::from(t) * 3) % (cap - span)
                    } else {
                        u64::from(t - 1) * span
                    };
                    bdev.write(Lba(lba), &buf, Durability::Cached).unwrap();
                    bdev.read(Lba(lba), &mut out).unwrap();
                    if round % 10 == 0 {
                        bdev.unmap(Lba(lba), BlockCount(1)).unwrap();
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = read_vec(&*bdev, 0, cap as usize);
    for (i, block) in all.chunks(bs).enumerate() {
        assert!(block.iter().all(|&b| b == block[0]), "block {i} is torn");
        assert!(block[0] <= THREADS, "block {i} holds {}", block[0]);
    }
    if !overlapping {
        for t in 1..=THREADS {
            let lba = u64::from(t - 1) * span;
            assert!(read_vec(&*bdev, lba + 1, span as usize - 1)
                .iter()
                .all(|&b| b == t));
        }
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Op {
    Write {
        lba: u64,
        blocks: u64,
        seed: u8,
        fua: bool,
    },
    Unmap {
        lba: u64,
        blocks: u64,
    },
    Read {
        lba: u64,
        blocks: u64,
    },
    Flush,
}

pub(crate) fn ops(cap: u64) -> impl Strategy<Value = Vec<Op>> {
    // Ranges may reach past the end, to check errors against the model.
    let range = (0..cap + 2, 0..24u64);
    let op = prop_oneof![
        4 => (range.clone(), any::<u8>(), any::<bool>())
            .prop_map(|((lba, blocks), seed, fua)| Op::Write { lba, blocks, seed, fua }),
        2 => range.clone().prop_map(|(lba, blocks)| Op::Unmap { lba, blocks }),
        3 => range.prop_map(|(lba, blocks)| Op::Read { lba, blocks }),
        1 => Just(Op::Flush),
    ];
    proptest::collection::vec(op, 1..40)
}

/// Applies `ops` to `bdev` and to a byte-vector model; they must agree.
pub(crate) fn against_model(bdev: &dyn Bdev, ops: &[Op]) -> Result<(), TestCaseError> {
    let bs = bs(bdev);
    let cap = bdev.geometry().block_count.0;
    let mut model = vec![0u8; cap as usize * bs];
    bdev.unmap(Lba(0), BlockCount(cap)).unwrap();
    for op in ops {
        let (lba, blocks) = match *op {
            Op::Write { lba, blocks, .. }
            | Op::Unmap { lba, blocks }
            | Op::Read { lba, blocks } => (lba, blocks),
            Op::Flush => (0, 0),
        };
        let in_range = lba + blocks <= cap;
        let bytes = lba as usize * bs..(lba + blocks) as usize * bs;
        let result = match *op {
            Op::Write { seed, fua, .. } => {
                let data = pattern(blocks as usize * bs, seed);
                let durability = if fua {
                    Durability::Fua
                } else {
                    Durability::Cached
                };
                let r = bdev.write(Lba(lba), &data, durability);
                if in_range {
                    model[bytes].copy_from_slice(&data);
                }
                r
            }
            Op::Unmap { .. } => {
                let r = bdev.unmap(Lba(lba), BlockCount(blocks));
                if in_range {
                    model[bytes].fill(0);
                }
                r
            }
            Op::Read { .. } => {
                let mut buf = vec![0xEE; blocks as usize * bs];
                let r = bdev.read(Lba(lba), &mut buf);
                if in_range {
                    prop_assert_eq!(&buf[..], &model[bytes]);
                }
                r
            }
            Op::Flush => bdev.flush(),
        };
        match result {
            Ok(()) => prop_assert!(in_range, "{op:?} succeeded out of range"),
            Err(e) => {
                prop_assert!(!in_range, "{op:?} failed: {e}");
                prop_assert_eq!(e.kind(), ErrorKind::OutOfRange);
            }
        }
    }
    prop_assert_eq!(read_vec(bdev, 0, cap as usize), model);
    check_provisioning_reads_zero(bdev);
    Ok(())
}
