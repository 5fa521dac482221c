//! `--suite backup`: the backup engine's figures (issue 6), in process: a
//! `BackupServer` on 127.0.0.1 with its repository under --scratch, and
//! the sender reading a RAM volume filled with incompressible bytes.
//!
//! Per repetition, on a fresh repository: the local ceiling (the volume's
//! bytes written into a file and fsynced, as `dd` would), CRC32C over
//! 1 GiB, a full backup, 1 % of the chunks rewritten, the incremental
//! backup, and restores of the incremental into a file with one fetch
//! stream and with the default number of parallel fetches.

use std::io::Write as _;
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use anyhow::{Context, Result};
use rand::{Rng, SeedableRng};
use reservoir_backup::{
    restore, send_backup, BackupServer, BackupSource, ChangedChunks, ChunkBytes, Client,
    RestoreOptions, RestoreTarget, ServerOptions, Token, VolumeIdentity,
};
use reservoir_bdev::{Bdev, BlockCount, BlockSize, Durability, Lba, MallocBdev};
use reservoir_snapshot::{ChangeMethod, ChangedExtent, ChangedSet, ChunkSize};

use crate::figures::{FigureRecord, Section};
use crate::process::{check_interrupted, install_interrupt_handler};
use crate::runner::progress_note;
use crate::{setup, Args};

const CHUNK: u64 = 64 << 10;
const BUFFER: usize = 64 << 20;

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    bytes as f64 / 1e6 / seconds
}

pub fn run(args: &Args) -> Result<()> {
    install_interrupt_handler()?;
    let (started_utc, stamp) = setup::utc_timestamp(SystemTime::now());
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    let mib = args
        .volume_mib
        .unwrap_or(if args.quick { 1024 } else { 4096 });
    let size = mib << 20;
    let out_dir = setup::out_dir(args)?;
    let scratch = tempfile::Builder::new()
        .prefix("reservoir-bench.")
        .tempdir_in(&args.scratch)
        .with_context(|| {
            format!(
                "creating a directory under --scratch {}",
                args.scratch.display()
            )
        })?;
    let restore_parallel = RestoreOptions::default().parallel;

    progress_note(&format!("filling a {mib} MiB RAM volume with random bytes"));
    let bdev: Arc<dyn Bdev> = Arc::new(MallocBdev::new(
        "bench",
        BlockSize::B512,
        BlockCount(size / 512),
    )?);
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut buf = vec![0u8; BUFFER];
    for at in (0..size).step_by(BUFFER) {
        let n = BUFFER.min(usize::try_from(size - at)?);
        rng.fill(&mut buf[..n]);
        bdev.write(Lba(at / 512), &buf[..n], Durability::Cached)?;
    }

    let mut full = Section::new(
        format!("Full backup of a {mib} MiB RAM volume over loopback"),
        "`send_backup` to a `BackupServer` on 127.0.0.1 (token auth, repository under --scratch, \
         fsync per 64 MiB checkpoint); the ceiling writes the same bytes from the volume into a \
         file on the same disk and fsyncs it, as `dd` would.",
    );
    let mut incremental = Section::new(
        "Incremental backup after 1 % of chunks changed",
        "1 % of the 64 KiB chunks (random, distinct per repetition) rewritten with random bytes, \
         then the incremental backup of those chunks against the full one; CRC32C is one core over \
         a 64 MiB buffer, scaled to 1 GiB.",
    );
    let mut restores = Section::new(
        "Restore of the incremental (full + 1 %) into an image file",
        format!(
            "`restore` to a file under --scratch (written as .part, fsynced, renamed), one fetch \
             stream against {restore_parallel} parallel fetches (the default), 64 MiB segments."
        ),
    );
    let mut failures = Vec::new();
    for rep in 1..=reps {
        check_interrupted()?;
        progress_note(&format!("backup repetition {rep}/{reps}"));
        let dir = scratch.path().join(format!("rep{rep}"));
        std::fs::create_dir_all(&dir)?;
        let result = repetition(
            &bdev,
            size,
            &dir,
            rep,
            &mut rng,
            &mut buf,
            [&mut full, &mut incremental, &mut restores],
        );
        if let Err(error) = result {
            let message = format!("repetition {rep}: {error:#}");
            progress_note(&format!("FAILED {message}"));
            failures.push(message);
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
    full.derive(
        "backup / local ceiling",
        "full_mb_per_s",
        "ceiling_mb_per_s",
    );
    restores.derive(
        "parallel fetch speed-up",
        "restore_parallel_mb_per_s",
        "restore_one_mb_per_s",
    );
    // The ratios to the full backup need its figures beside the
    // incremental's.
    for key in ["full_s", "full_bytes_sent_mib"] {
        if let Some(figure) = full.figure(key).cloned() {
            incremental.figures.insert(0, figure);
        }
    }
    incremental.derive(
        "incremental / full, bytes sent",
        "inc_bytes_sent_mib",
        "full_bytes_sent_mib",
    );
    incremental.derive("incremental / full, time", "inc_s", "full_s");

    let record = FigureRecord {
        suite: "backup",
        title: "Reservoir backup figures".to_owned(),
        started_utc,
        git_revision: setup::git_revision(),
        machine: setup::machine(),
        command: crate::runner::command_line(),
        parameters: vec![
            (
                "volume".into(),
                format!("{mib} MiB RAM (malloc), random bytes"),
            ),
            ("chunk".into(), format!("{} KiB", CHUNK >> 10)),
            ("repetitions".into(), reps.to_string()),
            ("restore parallel".into(), restore_parallel.to_string()),
            (
                "checkpoint".into(),
                format!("{} MiB", ServerOptions::default().checkpoint_bytes >> 20),
            ),
            ("scratch".into(), args.scratch.display().to_string()),
        ],
        sections: vec![full, incremental, restores],
        failures,
    };
    crate::figures::write_outputs(&record, &out_dir, &format!("{stamp}-backup"))
}

fn repetition(
    bdev: &Arc<dyn Bdev>,
    size: u64,
    dir: &Path,
    rep: u32,
    rng: &mut rand::rngs::StdRng,
    buf: &mut [u8],
    [full, incremental, restores]: [&mut Section; 3],
) -> Result<()> {
    // The local ceiling: the volume's bytes into a file, fsynced.
    let image = dir.join("dd.img");
    let t = Instant::now();
    let mut file = std::fs::File::create(&image)?;
    for at in (0..size).step_by(buf.len()) {
        let n = buf.len().min(usize::try_from(size - at)?);
        bdev.read(Lba(at / 512), &mut buf[..n])?;
        file.write_all(&buf[..n])?;
    }
    file.sync_all()?;
    let ceiling_s = t.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(&image)?;

    let t = Instant::now();
    let mut crc = 0u32;
    for _ in 0..16 {
        crc = crc32c::crc32c_append(crc, buf);
    }
    let crc_s_per_gib = t.elapsed().as_secs_f64() * GIB_F / (16 * buf.len()) as f64;
    std::hint::black_box(crc);

    let token = Token::new(b"reservoir-bench-token-0123456789")?;
    let server = BackupServer::spawn(
        TcpListener::bind("127.0.0.1:0")?,
        &dir.join("repo"),
        token.clone(),
        ServerOptions::default(),
    )?;
    let client = Client::new(server.local_addr(), token)?;
    let volume = VolumeIdentity::new("bench", 512)?;
    let chunk = ChunkBytes::new(u32::try_from(CHUNK)?)?;

    let t = Instant::now();
    let base = send_backup(
        &client,
        &BackupSource {
            volume: volume.clone(),
            snapshot: format!("full{rep}"),
            view: bdev.clone(),
            parent: None,
            changes: ChangedChunks::full(size, chunk),
        },
        &mut |_| {},
    )?;
    let full_s = t.elapsed().as_secs_f64();

    let chunks = size / CHUNK;
    let mut changed: Vec<u64> = rand::seq::index::sample(
        rng,
        usize::try_from(chunks)?,
        usize::try_from(chunks / 100)?,
    )
    .iter()
    .map(|c| c as u64)
    .collect();
    changed.sort_unstable();
    let mut data = vec![0u8; usize::try_from(CHUNK)?];
    for &c in &changed {
        rng.fill(&mut data[..]);
        bdev.write(Lba(c * CHUNK / 512), &data, Durability::Cached)?;
    }
    let set = ChangedSet {
        extents: changed
            .iter()
            .map(|&c| ChangedExtent {
                offset: c * CHUNK,
                len: CHUNK,
            })
            .collect(),
        chunk_size: ChunkSize::new(u32::try_from(CHUNK)?)?,
        total_bytes: changed.len() as u64 * CHUNK,
        method: ChangeMethod::Tracked,
    };
    let t = Instant::now();
    let inc = send_backup(
        &client,
        &BackupSource {
            volume,
            snapshot: format!("inc{rep}"),
            view: bdev.clone(),
            parent: Some(base.id),
            changes: ChangedChunks::from_changed_set(&set)?,
        },
        &mut |_| {},
    )?;
    let inc_s = t.elapsed().as_secs_f64();

    let mut restore_mb_per_s = Vec::new();
    for parallel in [1, RestoreOptions::default().parallel] {
        check_interrupted()?;
        let out = dir.join(format!("restore-{parallel}.img"));
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
        )?;
        restore_mb_per_s.push(mb_per_s(size, t.elapsed().as_secs_f64()));
        std::fs::remove_file(out)?;
    }
    drop(server);

    let mib = |bytes: u64| bytes as f64 / f64::from(1 << 20);
    full.push("full_s", "full backup, time", "s", full_s);
    full.push(
        "full_mb_per_s",
        "full backup, throughput",
        "MB/s",
        mb_per_s(size, full_s),
    );
    full.push(
        "full_bytes_sent_mib",
        "full backup, bytes sent",
        "MiB",
        mib(base.bytes_sent),
    );
    full.push(
        "ceiling_mb_per_s",
        "local ceiling (volume → file, fsync)",
        "MB/s",
        mb_per_s(size, ceiling_s),
    );
    incremental.push(
        "changed_chunks",
        "changed chunks",
        "chunks",
        inc.changed_chunks as f64,
    );
    incremental.push("inc_s", "incremental backup, time", "s", inc_s);
    incremental.push(
        "inc_bytes_sent_mib",
        "incremental backup, bytes sent",
        "MiB",
        mib(inc.bytes_sent),
    );
    incremental.push(
        "crc32c_s_per_gib",
        "CRC32C, one core",
        "s/GiB",
        crc_s_per_gib,
    );
    restores.push(
        "restore_one_mb_per_s",
        "restore, one stream",
        "MB/s",
        restore_mb_per_s[0],
    );
    restores.push(
        "restore_parallel_mb_per_s",
        &format!(
            "restore, {} parallel fetches",
            RestoreOptions::default().parallel
        ),
        "MB/s",
        restore_mb_per_s[1],
    );
    Ok(())
}

const GIB_F: f64 = (1u64 << 30) as f64;
