//! kill -9 during heavy writes after snapshots: a child process (this test
//! binary, re-run in child mode) writes a file-backed volume through the
//! origin and is SIGKILLed; the parent reopens and checks that every
//! snapshot reported created is intact, tracking is untrusted, and the
//! full-compare sets equal the true sets.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use reservoir_bdev::{Bdev, BlockSize, Durability, FileBdev, Lba};
use reservoir_snapshot::{ChangeMethod, SnapshotEngine, SnapshotOptions, TrackingState};

const BLOCK: u64 = 512;
const BYTES: u64 = 4 << 20;
const CHUNK: u64 = 65536;
const CHILD_DIR: &str = "RESERVOIR_SNAPSHOT_CRASH_CHILD";

fn rng(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed | 1;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// The deterministic phase between the two snapshots, applied to `image`
/// (the parent) or written through `origin` (the child).
fn phase_one(mut apply: impl FnMut(u64, &[u8])) {
    let mut next = rng(11);
    for i in 0..200u64 {
        let blocks = 1 + next() % 256;
        let lba = next() % (BYTES / BLOCK - blocks);
        apply(lba, &vec![(i % 250) as u8 + 1; (blocks * BLOCK) as usize]);
    }
}

/// Opens the volume file. After a SIGKILL the kernel tears the dead
/// process's io_uring down asynchronously, so its file lock may outlive the
/// reaped process briefly: retry for a while.
fn open_volume(dir: &Path, create: bool) -> Arc<dyn Bdev> {
    let path = dir.join("volume");
    let mut tries = 0;
    loop {
        match FileBdev::open_file("vol", &path, BlockSize::B512, Some(BYTES), create) {
            Ok(bdev) => return Arc::new(bdev),
            Err(e) if tries < 100 && format!("{e:?}").contains("in use") => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("open volume: {e:?}"),
        }
    }
}

/// Child mode: only runs when the parent set the environment variable.
#[test]
fn crash_child() {
    let Some(dir) = std::env::var_os(CHILD_DIR) else {
        return;
    };
    let dir = Path::new(&dir);
    let base = open_volume(dir, true);
    let (engine, _) =
        SnapshotEngine::open("vol", base, &dir.join("snap"), SnapshotOptions::default()).unwrap();
    let origin = engine.origin();
    engine.create("s1").unwrap();
    println!("created s1");
    phase_one(|lba, data| origin.write(Lba(lba), data, Durability::Cached).unwrap());
    engine.create("s2").unwrap();
    println!("created s2");
    let mut next = rng(99);
    loop {
        let blocks = 1 + next() % 256;
        let lba = next() % (BYTES / BLOCK - blocks);
        let data = vec![(next() % 255) as u8 + 1; (blocks * BLOCK) as usize];
        origin.write(Lba(lba), &data, Durability::Cached).unwrap();
    }
}

/// The child, SIGKILLed and reaped when dropped (also when an assertion
/// fails first, so no writer is left running).
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill(); // SIGKILL
        let _ = self.0.wait();
    }
}

fn differing_chunks(a: &[u8], b: &[u8]) -> Vec<u64> {
    (0..BYTES / CHUNK)
        .filter(|&c| {
            let r = (c * CHUNK) as usize..((c + 1) * CHUNK) as usize;
            a[r.clone()] != b[r]
        })
        .collect()
}

fn chunks_of(set: &reservoir_snapshot::ChangedSet) -> Vec<u64> {
    set.extents
        .iter()
        .flat_map(|e| e.offset / CHUNK..(e.offset + e.len) / CHUNK)
        .collect()
}

#[test]
fn kill_9_during_writes_keeps_snapshots_and_distrusts_tracking() {
    for round in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Killed(
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
                .env(CHILD_DIR, dir.path())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let mut created = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            // The harness may have printed "test crash_child ... " first.
            if let Some((_, name)) = line.split_once("created ") {
                created.push(name.to_owned());
                if name == "s2" {
                    break;
                }
            }
        }
        assert_eq!(created, ["s1", "s2"]);
        // Let it write (and copy chunks) for a while, differently each round.
        std::thread::sleep(Duration::from_millis(50 + 100 * round));
        drop(child);

        let base = open_volume(dir.path(), false);
        let (engine, report) = SnapshotEngine::open(
            "vol",
            base.clone(),
            &dir.path().join("snap"),
            SnapshotOptions::default(),
        )
        .unwrap();
        assert_eq!(report.snapshots, 2);
        assert!(
            matches!(report.tracking, TrackingState::Untrusted { .. }),
            "{report:?}"
        );

        let s1 = vec![0u8; BYTES as usize];
        let mut s2 = s1.clone();
        phase_one(|lba, data| {
            let at = (lba * BLOCK) as usize;
            s2[at..at + data.len()].copy_from_slice(data);
        });
        let mut live = vec![0u8; BYTES as usize];
        base.read(Lba(0), &mut live).unwrap();
        for (name, want) in [("s1", &s1), ("s2", &s2)] {
            let mut got = vec![0u8; BYTES as usize];
            engine.view(name).unwrap().read(Lba(0), &mut got).unwrap();
            assert!(got == *want, "round {round}: snapshot {name} is not intact");
        }
        for (from, to, a, b) in [
            ("s1", Some("s2"), &s1, &s2),
            ("s2", None, &s2, &live),
            ("s1", None, &s1, &live),
        ] {
            let set = engine.changed(from, to).unwrap();
            assert_eq!(set.method, ChangeMethod::FullCompare);
            assert_eq!(
                chunks_of(&set),
                differing_chunks(a, b),
                "round {round}: {from}..{to:?}"
            );
        }
        // A clean close after the restart makes tracking trusted again for
        // what happens next, while the crashed intervals stay untrusted.
        engine.create("s3").unwrap();
        engine
            .origin()
            .write(Lba(0), &[7; 512], Durability::Cached)
            .unwrap();
        engine.close().unwrap();
        drop(engine);
        let (engine, _) = SnapshotEngine::open(
            "vol",
            base,
            &dir.path().join("snap"),
            SnapshotOptions::default(),
        )
        .unwrap();
        let set = engine.changed("s3", None).unwrap();
        assert_eq!(
            (set.method, set.total_bytes),
            (ChangeMethod::Tracked, CHUNK)
        );
        assert_eq!(
            engine.changed("s2", Some("s3")).unwrap().method,
            ChangeMethod::FullCompare
        );
    }
}
