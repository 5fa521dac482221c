//! Figures for issue 6: full backup of a RAM volume over loopback against a
//! local file write of the same bytes, a 1 % incremental, CRC32C cost per
//! GiB, and restore with parallel fetch against one stream.
//!
//! `cargo run --release -p reservoir-backup --example backup_figures -- [MiB]`
//! (default 4096). Prints one JSON object.

use std::io::Write;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use rand::{Rng, SeedableRng};
use reservoir_backup::{
    restore, send_backup, BackupServer, BackupSource, ChangedChunks, ChunkBytes, Client,
    RestoreOptions, RestoreTarget, ServerOptions, Token, VolumeIdentity,
};
use reservoir_bdev::{Bdev, BlockCount, BlockSize, Durability, Lba, MallocBdev};
use reservoir_snapshot::{ChangeMethod, ChangedExtent, ChangedSet, ChunkSize};

const CHUNK: u64 = 64 << 10;

fn mbps(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / 1e6 / secs
}

fn main() {
    let mib: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("size in MiB"))
        .unwrap_or(4096);
    let size = mib << 20;
    let tmp = tempfile::tempdir().expect("temp dir");
    let repo = tmp.path().join("repo");

    // Incompressible content in every chunk: the worst case for a backup.
    let bdev: Arc<dyn Bdev> =
        Arc::new(MallocBdev::new("bench", BlockSize::B512, BlockCount(size / 512)).unwrap());
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut buf = vec![0u8; 64 << 20];
    for at in (0..size).step_by(buf.len()) {
        rng.fill(&mut buf[..]);
        let n = buf.len().min((size - at) as usize);
        bdev.write(Lba(at / 512), &buf[..n], Durability::Cached)
            .unwrap();
    }

    // Local ceiling: the same bytes read from the volume into a file, fsynced.
    let t = Instant::now();
    let path = tmp.path().join("dd.img");
    let mut f = std::fs::File::create(&path).unwrap();
    for at in (0..size).step_by(buf.len()) {
        let n = buf.len().min((size - at) as usize);
        bdev.read(Lba(at / 512), &mut buf[..n]).unwrap();
        f.write_all(&buf[..n]).unwrap();
    }
    f.sync_all().unwrap();
    let dd_secs = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path).unwrap();

    // CRC32C cost per GiB (one core).
    let t = Instant::now();
    let mut crc = 0u32;
    for _ in 0..16 {
        crc = crc32c::crc32c_append(crc, &buf);
    }
    let crc_secs_per_gib =
        t.elapsed().as_secs_f64() * (1u64 << 30) as f64 / (16 * buf.len()) as f64;
    std::hint::black_box(crc);

    let token = Token::new(b"bench-token-0123456789").unwrap();
    let server = BackupServer::spawn(
        TcpListener::bind("127.0.0.1:0").unwrap(),
        &repo,
        token.clone(),
        ServerOptions::default(),
    )
    .unwrap();
    let client = Client::new(server.local_addr(), token).unwrap();
    let volume = VolumeIdentity::new("bench", 512).unwrap();

    let t = Instant::now();
    let full = send_backup(
        &client,
        &BackupSource {
            volume: volume.clone(),
            snapshot: "s0".into(),
            view: bdev.clone(),
            parent: None,
            changes: ChangedChunks::full(size, ChunkBytes::new(CHUNK as u32).unwrap()),
        },
        &mut |_| {},
    )
    .unwrap();
    let full_secs = t.elapsed().as_secs_f64();

    // 1 % of the chunks rewritten.
    let chunks = size / CHUNK;
    let mut changed: Vec<u64> = (0..chunks / 100)
        .map(|_| rng.gen_range(0..chunks))
        .collect();
    changed.sort();
    changed.dedup();
    let mut chunk = vec![0u8; CHUNK as usize];
    for &c in &changed {
        rng.fill(&mut chunk[..]);
        bdev.write(Lba(c * CHUNK / 512), &chunk, Durability::Cached)
            .unwrap();
    }
    let set = ChangedSet {
        extents: changed
            .iter()
            .map(|&c| ChangedExtent {
                offset: c * CHUNK,
                len: CHUNK,
            })
            .collect(),
        chunk_size: ChunkSize::new(CHUNK as u32).unwrap(),
        total_bytes: changed.len() as u64 * CHUNK,
        method: ChangeMethod::Tracked,
    };
    let t = Instant::now();
    let inc = send_backup(
        &client,
        &BackupSource {
            volume,
            snapshot: "s1".into(),
            view: bdev.clone(),
            parent: Some(full.id),
            changes: ChangedChunks::from_changed_set(&set).unwrap(),
        },
        &mut |_| {},
    )
    .unwrap();
    let inc_secs = t.elapsed().as_secs_f64();

    let mut restore_mbps = Vec::new();
    for parallel in [1usize, 2, 4] {
        let out = tmp.path().join(format!("restore-{parallel}.img"));
        let t = Instant::now();
        restore(
            &client,
            inc.id,
            &RestoreTarget::File(out.clone()),
            RestoreOptions {
                parallel,
                ..RestoreOptions::default()
            },
            &mut |_| {},
        )
        .unwrap();
        restore_mbps.push((parallel, mbps(size, t.elapsed().as_secs_f64())));
        std::fs::remove_file(out).unwrap();
    }

    let one = restore_mbps[0].1;
    let report = serde_json::json!({
        "volume_mib": mib,
        "chunk_bytes": CHUNK,
        "cores": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "full_backup": { "seconds": full_secs, "mb_per_s": mbps(size, full_secs), "bytes_sent": full.bytes_sent },
        "local_file_ceiling": { "seconds": dd_secs, "mb_per_s": mbps(size, dd_secs) },
        "incremental_1pct": {
            "changed_chunks": inc.changed_chunks,
            "seconds": inc_secs,
            "bytes_sent": inc.bytes_sent,
            "bytes_ratio_to_full": inc.bytes_sent as f64 / full.bytes_sent as f64,
            "time_ratio_to_full": inc_secs / full_secs,
        },
        "crc32c_seconds_per_gib": crc_secs_per_gib,
        "restore": restore_mbps.iter().map(|&(p, m)| serde_json::json!({
            "parallel": p, "mb_per_s": m, "speedup_vs_one": m / one,
        })).collect::<Vec<_>>(),
    });
    println!("{}", serde_json::to_string_pretty(&report).unwrap());
}
