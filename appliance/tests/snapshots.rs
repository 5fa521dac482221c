//! Snapshots through the appliance: the CLI, a snapshot exported read-only
//! to several initiators while the origin is written, and a `kill -9`
//! during heavy writes after a snapshot.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread;

use reservoir_initiator::{Initiator, Pattern};
use serde_json::Value;
use support::{Backend, Config, Daemon, INITIATOR_1, INITIATOR_2};

const IQN: &str = "iqn.2026-11.io.reservoir:snap";
const EXPORT: &str = "iqn.2026-11.io.reservoir:snap-s1";
const BLOCK: u32 = 512;
/// The default snapshot chunk, in blocks.
const CHUNK_BLOCKS: u64 = (64 << 10) / BLOCK as u64;
const VOLUME_MIB: u64 = 16;

fn cli_json(daemon: &Daemon, args: &[&str]) -> Value {
    let mut args = args.to_vec();
    args.push("--json");
    let output = daemon.cli(&args);
    assert!(
        output.status.success(),
        "reservoir {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON output")
}

fn fill(host: &mut Initiator, pattern: Pattern, lba: u64, blocks: u64) {
    for start in (lba..lba + blocks).step_by(256) {
        let n = 256.min(lba + blocks - start);
        let mut data = vec![0; (n * u64::from(BLOCK)) as usize];
        pattern.fill(start, BLOCK as usize, &mut data);
        host.write(start, &data, BLOCK, false).unwrap();
    }
}

fn check(host: &mut Initiator, pattern: Pattern, lba: u64, blocks: u64) -> Option<u64> {
    (lba..lba + blocks).step_by(256).find_map(|start| {
        let n = 256.min(lba + blocks - start) as u32;
        let data = host.read(start, n, BLOCK).unwrap();
        pattern.first_mismatch(start, BLOCK as usize, &data)
    })
}

#[test]
fn snapshot_commands_and_a_read_only_export() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", VOLUME_MIB, IQN));
    let mut host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
    let blocks = (VOLUME_MIB << 20) / u64::from(BLOCK);
    fill(&mut host, Pattern::new(1), 0, blocks);

    let created = cli_json(&daemon, &["snapshot", "create", "vol0", "s1"]);
    assert_eq!(created["name"], "s1", "{created}");
    // Change three chunks after the snapshot.
    for chunk in [0, 7, 100] {
        fill(&mut host, Pattern::new(2), chunk * CHUNK_BLOCKS, 1);
    }
    let diff = cli_json(&daemon, &["snapshot", "diff", "vol0", "s1"]);
    assert_eq!(diff["method"], "tracked", "{diff}");
    let offsets: Vec<u64> = diff["extents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["offset"].as_u64().unwrap() / (CHUNK_BLOCKS * u64::from(BLOCK)))
        .collect();
    assert_eq!(offsets, [0, 7, 100], "{diff}");

    let list = cli_json(&daemon, &["snapshot", "list", "vol0"]);
    assert_eq!(list["snapshots"][0]["copied_chunks"], 3, "{list}");

    cli_json(
        &daemon,
        &["snapshot", "export", "vol0", "s1", "--target", EXPORT],
    );
    let mut reader = support::connect(&daemon.url(EXPORT, 0), INITIATOR_2);
    assert_eq!(check(&mut reader, Pattern::new(1), 0, blocks), None);
    let refused = reader
        .write(0, &[0; 512], BLOCK, false)
        .expect_err("read-only");
    let sense = refused.sense().expect("sense");
    assert_eq!(
        (sense.key, sense.asc),
        (reservoir_initiator::SenseKey::DataProtect, 0x27)
    );

    // An exported snapshot cannot be deleted; unexported, it can.
    assert!(!daemon
        .cli(&["snapshot", "delete", "vol0", "s1"])
        .status
        .success());
    cli_json(&daemon, &["snapshot", "unexport", "vol0", "s1"]);
    // Its sessions end with the export (at the connections' next timer
    // tick), and the target no longer takes logins.
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(reader.read(0, 1, BLOCK).is_err(), "the session was closed");
    assert!(reader.reconnect().is_err(), "the target is gone");
    cli_json(&daemon, &["snapshot", "delete", "vol0", "s1"]);
    let list = cli_json(&daemon, &["snapshot", "list", "vol0"]);
    assert_eq!(list["snapshots"], serde_json::json!([]));
    assert_eq!(list["diff_area"]["used_bytes"], 0);
}

#[test]
fn passive_readers_see_the_snapshot_while_the_origin_is_written() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", VOLUME_MIB, IQN));
    let blocks = (VOLUME_MIB << 20) / u64::from(BLOCK);
    let mut host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
    fill(&mut host, Pattern::new(1), 0, blocks);
    cli_json(&daemon, &["snapshot", "create", "vol0", "s1"]);
    cli_json(
        &daemon,
        &["snapshot", "export", "vol0", "s1", "--target", EXPORT],
    );

    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (stop, written) = (stop.clone(), written.clone());
        thread::spawn(move || {
            // Every chunk in turn, partial and whole, until the readers are done.
            let mut round = 0u64;
            while !stop.load(Ordering::Relaxed) {
                for chunk in (round % 3..blocks / CHUNK_BLOCKS).step_by(3) {
                    let lba = chunk * CHUNK_BLOCKS + round % 5;
                    fill(&mut host, Pattern::new(10 + round), lba, 8);
                    written.fetch_add(1, Ordering::Relaxed);
                }
                round += 1;
            }
        })
    };
    let readers: Vec<_> = [
        "iqn.2026-11.io.reservoir.test:reader-a",
        "iqn.2026-11.io.reservoir.test:reader-b",
    ]
    .into_iter()
    .map(|name| {
        let url = daemon.url(EXPORT, 0);
        thread::spawn(move || {
            let mut reader = support::connect(&url, name);
            for _ in 0..3 {
                assert_eq!(
                    check(&mut reader, Pattern::new(1), 0, blocks),
                    None,
                    "{name}"
                );
            }
        })
    })
    .collect();
    for reader in readers {
        reader.join().expect("reader saw the snapshot's content");
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    assert!(
        written.load(Ordering::Relaxed) > 0,
        "the origin was written meanwhile"
    );
}

#[test]
fn kill_9_during_writes_keeps_the_snapshot_and_distrusts_tracking() {
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
    let blocks = (VOLUME_MIB << 20) / u64::from(BLOCK);
    let chunks = blocks / CHUNK_BLOCKS;
    let mut host = support::connect(&daemon.url(IQN, 0), INITIATOR_1);
    fill(&mut host, Pattern::new(1), 0, blocks);
    host.synchronize_cache().unwrap();
    cli_json(&daemon, &["snapshot", "create", "vol0", "s1"]);

    // Write odd chunks until the daemon dies under the writer.
    let acknowledged = Arc::new(AtomicU64::new(0));
    let writer = {
        let acknowledged = acknowledged.clone();
        thread::spawn(move || {
            for chunk in (1..chunks).step_by(2) {
                let mut data = vec![0; (8 * BLOCK) as usize];
                Pattern::new(2).fill(chunk * CHUNK_BLOCKS, BLOCK as usize, &mut data);
                if host
                    .write(chunk * CHUNK_BLOCKS, &data, BLOCK, true)
                    .is_err()
                {
                    return;
                }
                acknowledged.store(chunk, Ordering::Release);
            }
        })
    };
    while acknowledged.load(Ordering::Acquire) < chunks / 4 {
        thread::yield_now();
    }
    daemon.kill_hard();
    writer.join().unwrap();
    let last_acknowledged = acknowledged.load(Ordering::Acquire);
    daemon.restart();

    // The snapshot reads back exactly as it was taken.
    cli_json(
        &daemon,
        &["snapshot", "export", "vol0", "s1", "--target", EXPORT],
    );
    let mut reader = support::connect(&daemon.url(EXPORT, 0), INITIATOR_2);
    assert_eq!(check(&mut reader, Pattern::new(1), 0, blocks), None);

    // Tracking is untrusted, so the set comes from a full compare: every
    // acknowledged chunk, and nothing the writer never touched.
    let diff = cli_json(&daemon, &["snapshot", "diff", "vol0", "s1"]);
    assert_eq!(diff["method"], "full-compare", "{diff}");
    let changed: Vec<u64> = diff["extents"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| {
            let chunk = CHUNK_BLOCKS * u64::from(BLOCK);
            let first = e["offset"].as_u64().unwrap() / chunk;
            first..first + e["len"].as_u64().unwrap() / chunk
        })
        .collect();
    for chunk in (1..=last_acknowledged).step_by(2) {
        assert!(
            changed.contains(&chunk),
            "acknowledged chunk {chunk} missing from {diff}"
        );
    }
    assert!(
        changed.iter().all(|c| c % 2 == 1),
        "an untouched chunk reported: {diff}"
    );
}

#[test]
fn snapshot_chunk_and_differential_area_are_configurable() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", VOLUME_MIB, IQN));
    let area = daemon.root().join("diff-areas");
    let area_arg = area.to_str().unwrap();
    cli_json(
        &daemon,
        &[
            "volume",
            "create",
            "tuned",
            "--size",
            "8MiB",
            "--snapshot-chunk-size",
            "16KiB",
            "--diff-area",
            area_arg,
            "--diff-area-size",
            "1MiB",
        ],
    );
    let created = cli_json(&daemon, &["snapshot", "create", "tuned", "s1"]);
    assert_eq!(created["chunk_size"], 16 << 10, "{created}");
    assert!(
        area.join("tuned").is_dir(),
        "snapshot state not under the configured area"
    );
    let list = cli_json(&daemon, &["snapshot", "list", "tuned"]);
    assert_eq!(list["diff_area"]["capacity_bytes"], 1 << 20, "{list}");

    let refused = daemon.cli(&[
        "volume",
        "create",
        "bad",
        "--size",
        "8MiB",
        "--snapshot-chunk-size",
        "48KiB",
    ]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("snapshot_chunk_size"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
