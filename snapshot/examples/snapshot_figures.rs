//! Prints snapshot-engine figures (not a test): creation time at 1 GiB and
//! 64 GiB thin volumes, the changed set of a 64 GiB volume with 1 % of its
//! chunks written, and rayon's speed-up over one thread.
//!
//! `cargo run -p reservoir-snapshot --example snapshot_figures`

use std::sync::Arc;
use std::time::{Duration, Instant};

use reservoir_bdev::{BlockCount, BlockSize, Durability, Lba, MallocBdev};
use reservoir_snapshot::{SnapshotEngine, SnapshotOptions};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    const GIB: u64 = 1 << 30;
    const CHUNK: u64 = 64 << 10;
    let dir = tempfile::tempdir()?;
    let mut engines = Vec::new();
    for gib in [1u64, 64] {
        let base = Arc::new(MallocBdev::new(
            format!("v{gib}"),
            BlockSize::B512,
            BlockCount(gib * GIB / 512),
        )?);
        let (engine, _) = SnapshotEngine::open(
            &format!("v{gib}"),
            base,
            &dir.path().join(format!("v{gib}")),
            SnapshotOptions::default(),
        )?;
        let times: Vec<Duration> = (0..9)
            .map(|i| {
                let t = Instant::now();
                engine.create(&format!("s{i}")).map(|_| t.elapsed())
            })
            .collect::<Result<_, _>>()?;
        println!(
            "create snapshot, {gib:>2} GiB thin volume: median {:.3} ms (of 9, includes journal fsync)",
            median(times).as_secs_f64() * 1e3
        );
        engines.push(engine);
    }

    // 64 GiB, 1 % of chunks written between two snapshots.
    let engine = &engines[1];
    for i in 0..9 {
        engine.delete(&format!("s{i}"))?;
    }
    let origin = engine.origin();
    engine.create("from")?;
    let chunks = 64 * GIB / CHUNK;
    let block = vec![0x5au8; 512];
    let mut x = 0x9e3779b97f4a7c15u64;
    let written = chunks / 100;
    let t = Instant::now();
    for _ in 0..written {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let chunk = x % chunks;
        origin.write(Lba(chunk * CHUNK / 512), &block, Durability::Cached)?;
    }
    println!(
        "wrote {written} chunks (1 % of {chunks}) with first-write copies in {:.2} s",
        t.elapsed().as_secs_f64()
    );
    engine.create("to")?;
    let run = |threads: usize| -> Result<(Duration, u64), Box<dyn std::error::Error>> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()?;
        let mut times = Vec::new();
        let mut total = 0;
        for _ in 0..15 {
            let t = Instant::now();
            let set = pool.install(|| engine.changed("from", Some("to")))?;
            times.push(t.elapsed());
            total = set.total_bytes;
        }
        Ok((median(times), total))
    };
    let (one, total) = run(1)?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (many, _) = run(cores)?;
    println!(
        "changed set, 64 GiB, {} MiB changed: 1 thread {:.2} ms, {cores} threads {:.2} ms, speed-up {:.2}x",
        total >> 20,
        one.as_secs_f64() * 1e3,
        many.as_secs_f64() * 1e3,
        one.as_secs_f64() / many.as_secs_f64()
    );
    Ok(())
}
