//! Concurrency, differential-area exhaustion, read-only views, and changed
//! sets against a full compare.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use reservoir_bdev::{BlockCount, BlockSize, Durability, ErrorKind, Lba, MallocBdev};
use reservoir_snapshot::{
    ChangeMethod, ChunkSize, InvalidReason, SnapshotEngine, SnapshotErrorKind, SnapshotOptions,
};

const BLOCK: usize = 512;

fn volume(blocks: u64) -> Arc<MallocBdev> {
    Arc::new(MallocBdev::new("vol", BlockSize::B512, BlockCount(blocks)).unwrap())
}

fn options(chunk: u32, capacity: Option<u64>) -> SnapshotOptions {
    SnapshotOptions {
        chunk_size: ChunkSize::new(chunk).unwrap(),
        diff_area_capacity: capacity,
        diff_area_device: None,
    }
}

/// xorshift, so threads get cheap independent streams.
fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

#[test]
fn readers_of_a_view_see_the_frozen_content_while_the_origin_is_written() {
    const BLOCKS: u64 = 8 << 11; // 8 MiB
    let dir = tempfile::tempdir().unwrap();
    let base = volume(BLOCKS);
    let (engine, _) =
        SnapshotEngine::open("vol", base.clone(), dir.path(), options(65536, None)).unwrap();
    let origin = engine.origin();
    let mut next = rng(7);
    let frozen: Vec<u8> = (0..BLOCKS as usize * BLOCK).map(|_| next() as u8).collect();
    origin.write(Lba(0), &frozen, Durability::Cached).unwrap();
    engine.create("frozen").unwrap();
    let frozen = Arc::new(frozen);
    let stop = Arc::new(AtomicBool::new(false));

    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (origin, stop) = (origin.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut next = rng(100 + w);
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) && n < 3000 {
                    let blocks = 1 + next() % 300; // sub-chunk to multi-chunk
                    let lba = next() % (BLOCKS - blocks);
                    let data = vec![(n % 251) as u8 ^ 0xa5; blocks as usize * BLOCK];
                    origin.write(Lba(lba), &data, Durability::Cached).unwrap();
                    n += 1;
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (view, frozen) = (engine.view("frozen").unwrap(), frozen.clone());
            std::thread::spawn(move || {
                let mut next = rng(200 + r);
                for _ in 0..3000 {
                    let blocks = 1 + next() % 400;
                    let lba = next() % (BLOCKS - blocks);
                    let mut buf = vec![0u8; blocks as usize * BLOCK];
                    view.read(Lba(lba), &mut buf).unwrap();
                    let at = lba as usize * BLOCK;
                    assert!(
                        buf == frozen[at..at + buf.len()],
                        "view differs at lba {lba}+{blocks}"
                    );
                }
            })
        })
        .collect();
    for r in readers {
        r.join().unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join().unwrap();
    }
    let mut all = vec![0u8; frozen.len()];
    engine
        .view("frozen")
        .unwrap()
        .read(Lba(0), &mut all)
        .unwrap();
    assert!(all == *frozen);
}

#[test]
fn a_snapshot_taken_during_writes_is_a_consistent_point() {
    // One writer writes sequence n to block A, then to block B (another
    // chunk). Any point-in-time image has A == B or A == B + 1.
    const A: u64 = 0;
    const B: u64 = 1024;
    let dir = tempfile::tempdir().unwrap();
    let base = volume(4096);
    let (engine, _) = SnapshotEngine::open("vol", base, dir.path(), options(4096, None)).unwrap();
    let origin = engine.origin();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (origin, stop) = (origin.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let mut block = vec![0u8; BLOCK];
                block[..8].copy_from_slice(&n.to_le_bytes());
                origin.write(Lba(A), &block, Durability::Cached).unwrap();
                origin.write(Lba(B), &block, Durability::Cached).unwrap();
            }
        })
    };
    for i in 0..40 {
        std::thread::sleep(std::time::Duration::from_millis(2));
        engine.create(&format!("s{i}")).unwrap();
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    for i in 0..40 {
        let view = engine.view(&format!("s{i}")).unwrap();
        let read = |lba| {
            let mut b = vec![0u8; BLOCK];
            view.read(Lba(lba), &mut b).unwrap();
            u64::from_le_bytes(b[..8].try_into().unwrap())
        };
        let (a, b) = (read(A), read(B));
        assert!(a == b || a == b + 1, "snapshot s{i}: A={a} B={b}");
    }
}

#[test]
fn a_full_diff_area_invalidates_the_snapshot_and_the_origin_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let base = volume(1024); // 128 chunks of 4 KiB
    let opts = options(4096, Some(2 * 4096));
    let (engine, _) = SnapshotEngine::open("vol", base.clone(), dir.path(), opts.clone()).unwrap();
    let origin = engine.origin();
    engine.create("small").unwrap();
    for chunk in 0..3u64 {
        origin
            .write(Lba(chunk * 8), &[0xee; 4096], Durability::Cached)
            .unwrap();
    }
    let info = engine.get("small").unwrap();
    assert_eq!(info.invalid, Some(InvalidReason::DiffAreaFull));
    let usage = engine.diff_area_usage();
    assert_eq!(
        (
            usage.used_bytes,
            usage.capacity_bytes,
            usage.invalid_snapshots
        ),
        (8192, Some(8192), 1)
    );
    assert_eq!(
        engine.view("small").unwrap_err().kind(),
        SnapshotErrorKind::SnapshotInvalid
    );
    assert_eq!(
        engine.changed("small", None).unwrap_err().kind(),
        SnapshotErrorKind::SnapshotInvalid
    );
    // The origin was written in full and stays writable.
    origin
        .write(Lba(100), &[0x11; 512], Durability::Cached)
        .unwrap();
    let mut buf = vec![0u8; 3 * 4096];
    origin.read(Lba(0), &mut buf).unwrap();
    assert!(buf.iter().all(|&b| b == 0xee));

    // The invalid state survives a crash; deleting frees the space and a
    // new snapshot works.
    drop(origin);
    drop(engine);
    let (engine, _) = SnapshotEngine::open("vol", base, dir.path(), opts).unwrap();
    assert_eq!(
        engine.get("small").unwrap().invalid,
        Some(InvalidReason::DiffAreaFull)
    );
    engine.delete("small").unwrap();
    assert_eq!(engine.diff_area_usage().used_bytes, 0);
    engine.create("again").unwrap();
    engine
        .origin()
        .write(Lba(0), &[0x22; 4096], Durability::Cached)
        .unwrap();
    let mut old = vec![0u8; 4096];
    engine
        .view("again")
        .unwrap()
        .read(Lba(0), &mut old)
        .unwrap();
    assert!(old.iter().all(|&b| b == 0xee));
}

#[test]
fn a_view_that_was_open_fails_once_its_snapshot_is_invalidated_or_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) =
        SnapshotEngine::open("vol", volume(64), dir.path(), options(4096, Some(0))).unwrap();
    engine.create("a").unwrap();
    engine.create("b").unwrap();
    let (va, vb) = (engine.view("a").unwrap(), engine.view("b").unwrap());
    let mut buf = vec![0u8; 512];
    vb.read(Lba(0), &mut buf).unwrap();
    engine
        .origin()
        .write(Lba(0), &[1; 512], Durability::Cached)
        .unwrap();
    let e = va.read(Lba(0), &mut buf).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::ReadFailed);
    assert!(e.to_string().contains("read snapshot"), "{e}");
    engine.delete("b").unwrap();
    assert_eq!(
        vb.read(Lba(0), &mut buf).unwrap_err().kind(),
        ErrorKind::ReadFailed
    );
}

#[test]
fn views_are_read_only_and_names_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) =
        SnapshotEngine::open("vol", volume(64), dir.path(), SnapshotOptions::default()).unwrap();
    engine.create("s").unwrap();
    let view = engine.view("s").unwrap();
    assert_eq!(view.name(), "vol@s");
    assert_eq!(
        view.write(Lba(0), &[0; 512], Durability::Fua)
            .unwrap_err()
            .kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(
        view.unmap(Lba(0), BlockCount(1)).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    assert_eq!(
        view.read(Lba(64), &mut [0; 512]).unwrap_err().kind(),
        ErrorKind::OutOfRange
    );
    assert_eq!(
        engine.create("s").unwrap_err().kind(),
        SnapshotErrorKind::AlreadyExists
    );
    assert_eq!(
        engine.create("../x").unwrap_err().kind(),
        SnapshotErrorKind::InvalidArgument
    );
    assert_eq!(
        engine.delete("nope").unwrap_err().kind(),
        SnapshotErrorKind::NotFound
    );
    // Resizing under a snapshot is refused; without one it passes through.
    let origin = engine.origin();
    assert_eq!(
        origin.resize(BlockCount(128)).unwrap_err().kind(),
        ErrorKind::Unsupported
    );
    engine.delete("s").unwrap();
    origin.resize(BlockCount(128)).unwrap();
    assert_eq!(origin.geometry().block_count, BlockCount(128));
    engine.close().unwrap();
    assert_eq!(
        origin
            .write(Lba(0), &[0; 512], Durability::Cached)
            .unwrap_err()
            .kind(),
        ErrorKind::WriteFailed
    );
}

#[test]
fn tracked_sets_equal_a_full_compare_of_the_same_data() {
    const BLOCKS: u64 = 16384; // 8 MiB, 128 chunks of 64 KiB
    let dir = tempfile::tempdir().unwrap();
    let base = volume(BLOCKS);
    let (engine, _) =
        SnapshotEngine::open("vol", base.clone(), dir.path(), SnapshotOptions::default()).unwrap();
    let origin = engine.origin();
    let mut next = rng(3);
    let mut tag = 0u8;
    let mut write_some = |n: usize| {
        for _ in 0..n {
            let blocks = 1 + next() % 200;
            let lba = next() % (BLOCKS - blocks);
            tag = tag.wrapping_add(1).max(1); // never the zero the volume starts with
            origin
                .write(
                    Lba(lba),
                    &vec![tag; blocks as usize * BLOCK],
                    Durability::Cached,
                )
                .unwrap();
        }
    };
    engine.create("a").unwrap();
    write_some(20);
    engine.create("b").unwrap();
    write_some(20);
    engine.create("c").unwrap();
    write_some(5);
    let pairs = [
        ("a", Some("b")),
        ("a", Some("c")),
        ("b", None),
        ("a", None),
        ("c", Some("c")),
    ];
    let tracked: Vec<_> = pairs
        .iter()
        .map(|(f, t)| engine.changed(f, *t).unwrap())
        .collect();
    assert!(tracked.iter().all(|s| s.method == ChangeMethod::Tracked));
    assert!(tracked[4].extents.is_empty());
    // An unclean stop makes tracking untrusted; the same sets come back by
    // full compare (each write changed its bytes, so written == differs).
    drop(engine);
    let (engine, report) =
        SnapshotEngine::open("vol", base, dir.path(), SnapshotOptions::default()).unwrap();
    assert!(matches!(
        report.tracking,
        reservoir_snapshot::TrackingState::Untrusted { .. }
    ));
    for ((f, t), want) in pairs.iter().zip(&tracked) {
        let got = engine.changed(f, *t).unwrap();
        // An empty interval is exact without reading anything.
        let method = if Some(*f) == *t {
            ChangeMethod::Tracked
        } else {
            ChangeMethod::FullCompare
        };
        assert_eq!(got.method, method);
        assert_eq!(got.extents, want.extents, "{f}..{t:?}");
        assert_eq!(got.total_bytes, want.total_bytes);
    }
}

/// A differential area on a device (here a preallocated file standing in
/// for one): the device's size bounds the area.
#[test]
fn differential_area_on_a_device_is_bounded_by_its_size() {
    const CHUNK: u32 = 4096;
    let dir = tempfile::tempdir().unwrap();
    let device = dir.path().join("diff-device");
    std::fs::File::create(&device)
        .unwrap()
        .set_len(4 * u64::from(CHUNK))
        .unwrap();
    let base = Arc::new(MallocBdev::new("vol", BlockSize::B512, BlockCount(1024)).unwrap());
    let options = SnapshotOptions {
        diff_area_device: Some(device.clone()),
        ..options(CHUNK, None)
    };
    let (engine, _) = SnapshotEngine::open("vol", base, &dir.path().join("snap"), options).unwrap();
    assert!(!dir.path().join("snap").join("diff.area").exists());
    assert_eq!(
        engine.diff_area_usage().capacity_bytes,
        Some(4 * u64::from(CHUNK))
    );
    engine.create("s1").unwrap();
    let origin = engine.origin();
    let chunk_blocks = u64::from(CHUNK) / 512;
    for chunk in 0..5 {
        origin
            .write(Lba(chunk * chunk_blocks), &[7; 512], Durability::Cached)
            .unwrap();
    }
    // Four chunks fit on the device; the fifth invalidates the snapshot,
    // and the volume kept every write.
    let info = engine.get("s1").unwrap();
    assert!(info.invalid.is_some(), "{info:?}");
    let mut back = [0u8; 512];
    origin.read(Lba(4 * chunk_blocks), &mut back).unwrap();
    assert_eq!(back, [7; 512]);
}

/// The origin lends its base's memory (reads of the origin are reads of
/// the base); a view, which combines the diff area and the base, does not.
#[test]
fn the_origin_lends_the_volume_and_a_view_does_not() {
    let dir = tempfile::tempdir().unwrap();
    let (engine, _) =
        SnapshotEngine::open("vol", volume(256), dir.path(), options(65536, None)).unwrap();
    let origin = engine.origin();
    origin
        .write(Lba(0), &[1u8; 8 * BLOCK], Durability::Cached)
        .unwrap();
    engine.create("s").unwrap();
    origin
        .write(Lba(4), &[2u8; 2 * BLOCK], Durability::Cached)
        .unwrap();
    assert!(origin.lends_memory());
    let mut read = vec![0u8; 3 * BLOCK];
    origin.read(Lba(3), &mut read).unwrap();
    assert_eq!(*origin.lend(Lba(3), 3 * BLOCK).unwrap(), read[..]);
    assert_eq!(read[BLOCK..], [2u8; 2 * BLOCK]);
    let tried = origin.try_lend(Lba(3), 3 * BLOCK).unwrap();
    assert_eq!(*tried.expect("no writer waits"), read[..]);
    let view = engine.view("s").unwrap();
    assert!(!view.lends_memory());
    let refused = view.lend(Lba(0), BLOCK).unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Unsupported);
}
