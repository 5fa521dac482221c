//! `--suite snapshot`: the snapshot engine's figures (issue 5).
//!
//! - Creation time on thin 1 GiB and 64 GiB malloc volumes, in process.
//! - The changed-block set between two snapshots of a 64 GiB volume with
//!   1 % of its chunks written, on a one-thread rayon pool and on the
//!   default (global) pool.
//! - Origin write IOPS and latency through iSCSI, as users see them: fio
//!   (libiscsi) against `reservoir serve`, with no snapshot, right after
//!   `reservoir snapshot create` (every write is a chunk's first, so it
//!   copies), and again once those chunks are copied.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use reservoir_bdev::{BlockCount, BlockSize, Durability, Lba, MallocBdev};
use reservoir_snapshot::{ChangeMethod, SnapshotEngine, SnapshotOptions};

use crate::error::ParseError;
use crate::figures::{FigureRecord, Section};
use crate::matrix::{Backing, TargetKind};
use crate::process::{check_interrupted, install_interrupt_handler, run_bounded};
use crate::runner::{fill, progress_note, tail};
use crate::targets::{RunningTarget, StartContext, LUN_BYTES};
use crate::{fio, setup, Args};

const GIB: u64 = 1 << 30;
/// The engine's default chunk (`SnapshotOptions::default()`), which
/// `reservoir serve` uses too.
const CHUNK: u64 = 64 << 10;
/// Snapshot creations timed per volume size.
const CREATIONS: usize = 9;
/// Changed-set computations timed per pool.
const CHANGED_SAMPLES: usize = 15;
/// A strided fio run writes at most 16 Ki chunks; minutes are plenty.
const FIO_LIMIT: Duration = Duration::from_secs(300);
const CLI_LIMIT: Duration = Duration::from_secs(60);

/// One fio shape of the copy-on-write comparison.
#[derive(Debug, Clone, Copy)]
struct CowWorkload {
    iodepth: u32,
    /// Bytes at the start of the LUN written, one 4 KiB write per chunk.
    region: u64,
}

const COW_WORKLOADS: [CowWorkload; 2] = [
    CowWorkload {
        iodepth: 32,
        region: LUN_BYTES,
    },
    CowWorkload {
        iodepth: 1,
        region: 128 << 20,
    },
];
const WRITE_BYTES: u32 = 4096;

pub fn run(args: &Args) -> Result<()> {
    install_interrupt_handler()?;
    let (started_utc, stamp) = setup::utc_timestamp(SystemTime::now());
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    setup::ensure_debian_packages(&["libiscsi-bin"])?;
    let fio_path =
        setup::find_or_build_fio(args.fio.as_deref(), &setup::bench_dir().join(".cache"))?;
    let reservoir = setup::find_or_build_reservoir(args.reservoir.as_deref())?;
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

    let mut failures = Vec::new();
    let mut sections = Vec::new();
    progress_note("snapshot engine: creation and changed sets (in process)");
    let (creation, changed) = engine_figures(&scratch.path().join("engine"))?;
    sections.push(creation);
    sections.push(changed);

    progress_note("starting reservoir serve for the copy-on-write runs");
    let run_dir = scratch.path().join("serve");
    std::fs::create_dir_all(&run_dir)?;
    let ctx = StartContext {
        run_dir: &run_dir,
        shm_dir: &run_dir,
        disk_dir: Some(&run_dir),
        reservoir_binary: &reservoir,
    };
    let mut target = crate::targets::start(TargetKind::Reservoir, &ctx)?;
    let cli = Cli {
        binary: &reservoir,
        config: run_dir.join("reservoir.toml"),
        run_dir: &run_dir,
    };
    let volumes = [
        (Backing::Ram, "ram0", "malloc volume"),
        (
            Backing::File,
            "file0",
            "file volume on local disk (O_DIRECT)",
        ),
    ];
    for (backing, _, _) in volumes {
        let url = target
            .url(backing)
            .context("reservoir serves both backings")?;
        progress_note(&format!("writing the {} LUN once", backing.name()));
        fill(&fio_path, &url, &run_dir)?;
    }
    let mut cow: Vec<Section> = Vec::new();
    for (_, volume, what) in volumes {
        for w in COW_WORKLOADS {
            cow.push(Section::new(
                format!(
                    "Origin writes through iSCSI: {what}, 4 KiB QD{}, one write per 64 KiB chunk of the first {} MiB",
                    w.iodepth,
                    w.region >> 20
                ),
                format!(
                    "fio (libiscsi) against `reservoir serve`, volume `{volume}`. Per repetition: no snapshot; \
                     `reservoir snapshot create`, then the same writes (each one a chunk's first: it copies); \
                     then the same writes again (chunks already copied); the snapshot is deleted after."
                ),
            ));
        }
    }
    for rep in 1..=reps {
        for (v, (backing, volume, _)) in volumes.iter().enumerate() {
            for (w, workload) in COW_WORKLOADS.iter().enumerate() {
                check_interrupted()?;
                let section = &mut cow[v * COW_WORKLOADS.len() + w];
                let label = format!("{volume} QD{} · rep {rep}/{reps}", workload.iodepth);
                progress_note(&format!("copy-on-write {label}"));
                let url = target
                    .url(*backing)
                    .context("reservoir serves this backing")?;
                let snapshot = format!("bench-r{rep}-qd{}", workload.iodepth);
                let result = cow_repetition(
                    &fio_path,
                    &cli,
                    &mut target,
                    &url,
                    volume,
                    &snapshot,
                    *workload,
                    section,
                );
                if let Err(error) = result {
                    let message = format!("{label}: {error:#}");
                    progress_note(&format!("FAILED {message}"));
                    failures.push(message);
                    // Leave no snapshot behind for the next repetition.
                    let _ = cli.run(&["snapshot", "delete", volume, &snapshot]);
                }
            }
        }
    }
    drop(target);
    for section in &mut cow {
        section.derive(
            "first-write IOPS overhead (no snapshot / first writes)",
            "none_iops",
            "first_iops",
        );
        section.derive(
            "first-write p50 latency overhead (first / no snapshot)",
            "first_p50_us",
            "none_p50_us",
        );
        section.derive("copied IOPS / no snapshot IOPS", "copied_iops", "none_iops");
    }
    sections.extend(cow);

    let record = FigureRecord {
        suite: "snapshot",
        title: "Reservoir snapshot figures".to_owned(),
        started_utc,
        git_revision: setup::git_revision(),
        machine: setup::machine(),
        command: crate::runner::command_line(),
        parameters: vec![
            ("chunk".into(), format!("{} KiB", CHUNK >> 10)),
            ("creations per size".into(), CREATIONS.to_string()),
            (
                "changed-set samples per pool".into(),
                CHANGED_SAMPLES.to_string(),
            ),
            (
                "rayon default threads".into(),
                rayon::current_num_threads().to_string(),
            ),
            ("iSCSI repetitions".into(), reps.to_string()),
            ("LUN".into(), format!("{} MiB", LUN_BYTES >> 20)),
            ("fio".into(), setup::fio_version(&fio_path)),
            ("reservoir".into(), reservoir.display().to_string()),
            ("scratch".into(), args.scratch.display().to_string()),
        ],
        sections,
        failures,
    };
    crate::figures::write_outputs(&record, &out_dir, &format!("{stamp}-snapshot"))
}

/// Creation on thin volumes, then the 64 GiB changed set.
fn engine_figures(dir: &Path) -> Result<(Section, Section)> {
    let mut creation = Section::new(
        "Snapshot creation (engine, in process)",
        format!(
            "`SnapshotEngine::create` on thin malloc volumes (MAP_NORESERVE), metadata under --scratch; \
             includes the journal fdatasync. Each of {CREATIONS} creations starts from no snapshot \
             (the previous one is deleted, untimed)."
        ),
    );
    let mut engines = Vec::new();
    for gib in [1u64, 64] {
        let name = format!("thin{gib}g");
        let base = Arc::new(MallocBdev::new(
            name.clone(),
            BlockSize::B512,
            BlockCount(gib * GIB / 512),
        )?);
        let (engine, _) =
            SnapshotEngine::open(&name, base, &dir.join(&name), SnapshotOptions::default())?;
        let (key, label): (&'static str, &str) = if gib == 1 {
            ("create_1g_ms", "create, 1 GiB thin volume")
        } else {
            ("create_64g_ms", "create, 64 GiB thin volume")
        };
        for i in 0..CREATIONS {
            check_interrupted()?;
            let snapshot = format!("c{i}");
            let t = Instant::now();
            engine.create(&snapshot)?;
            creation.push(key, label, "ms", t.elapsed().as_secs_f64() * 1e3);
            engine.delete(&snapshot)?;
        }
        engines.push(engine);
    }
    creation.derive(
        "64 GiB / 1 GiB (O(1): about 1)",
        "create_64g_ms",
        "create_1g_ms",
    );

    let mut changed = Section::new(
        "Changed-block set, 64 GiB volume, 1 % of chunks written",
        format!(
            "Snapshot `from`, one 512-byte write at the start of 1 % of the 64 KiB chunks (distinct, random; \
             each a first write that copies), snapshot `to`; then `changed(from, to)` timed \
             {CHANGED_SAMPLES} times on a dedicated one-thread rayon pool and on rayon's default pool, interleaved."
        ),
    );
    let engine = engines.pop().context("the 64 GiB engine")?;
    drop(engines);
    let origin = engine.origin();
    engine.create("from")?;
    let chunks = 64 * GIB / CHUNK;
    let written = usize::try_from(chunks / 100)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let picks = rand::seq::index::sample(&mut rng, usize::try_from(chunks)?, written);
    let block = vec![0x5a_u8; 512];
    let t = Instant::now();
    for chunk in picks.iter() {
        origin.write(Lba(chunk as u64 * CHUNK / 512), &block, Durability::Cached)?;
    }
    changed.push(
        "write_1pct_s",
        &format!("writing {written} chunks (1 %), first writes with copies"),
        "s",
        t.elapsed().as_secs_f64(),
    );
    engine.create("to")?;
    let one = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
    let mut expected = None;
    for _ in 0..CHANGED_SAMPLES {
        check_interrupted()?;
        let t = Instant::now();
        let set = one.install(|| engine.changed("from", Some("to")))?;
        changed.push(
            "changed_1t_ms",
            "changed set, 1 thread",
            "ms",
            t.elapsed().as_secs_f64() * 1e3,
        );
        let t = Instant::now();
        let again = engine.changed("from", Some("to"))?;
        changed.push(
            "changed_default_ms",
            &format!(
                "changed set, default pool ({} threads)",
                rayon::current_num_threads()
            ),
            "ms",
            t.elapsed().as_secs_f64() * 1e3,
        );
        if set != again || set.method != ChangeMethod::Tracked {
            bail!("the two pools' changed sets differ, or tracking was not used");
        }
        expected = Some(set.total_bytes);
    }
    let total = expected.unwrap_or_default();
    if total != written as u64 * CHUNK {
        bail!(
            "changed set holds {total} bytes, expected {}",
            written as u64 * CHUNK
        );
    }
    changed.push(
        "changed_mib",
        "changed bytes in the set",
        "MiB",
        total as f64 / f64::from(1 << 20),
    );
    changed.derive(
        "rayon speed-up (1 thread / default pool)",
        "changed_1t_ms",
        "changed_default_ms",
    );
    Ok((creation, changed))
}

/// The appliance's CLI against the daemon's control socket.
struct Cli<'a> {
    binary: &'a Path,
    config: std::path::PathBuf,
    run_dir: &'a Path,
}

impl Cli<'_> {
    fn run(&self, args: &[&str]) -> Result<String> {
        let mut command = Command::new(self.binary);
        command.arg("--config").arg(&self.config).args(args);
        let (status, output) = run_bounded(command, &self.run_dir.join("cli.out"), CLI_LIMIT)?;
        if !status.success() {
            bail!(
                "reservoir {} exited with {status}: {}",
                args.join(" "),
                tail(&output)
            );
        }
        Ok(output)
    }
}

/// `copied_chunks` of `reservoir --json snapshot show`.
pub fn copied_chunks(json: &str) -> Result<u64, ParseError> {
    const TOOL: &str = "reservoir snapshot show --json";
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|source| ParseError::Json { tool: TOOL, source })?;
    value["copied_chunks"].as_u64().ok_or(ParseError::Missing {
        tool: TOOL,
        what: "copied_chunks",
    })
}

#[allow(clippy::too_many_arguments)]
fn cow_repetition(
    fio_path: &Path,
    cli: &Cli<'_>,
    target: &mut RunningTarget,
    url: &str,
    volume: &str,
    snapshot: &str,
    w: CowWorkload,
    section: &mut Section,
) -> Result<()> {
    let writes = w.region / CHUNK;
    let fio_run = |phase: &str, target: &mut RunningTarget| -> Result<fio::FioResult> {
        target.process.check_alive()?;
        let mut command = Command::new(fio_path);
        command.args(fio::strided_write_args(
            phase,
            url,
            WRITE_BYTES,
            CHUNK,
            w.region,
            w.iodepth,
        ));
        let (status, output) = run_bounded(command, &cli.run_dir.join("fio.out"), FIO_LIMIT)?;
        if !status.success() {
            bail!("fio exited with {status}: {}", tail(&output));
        }
        let r = fio::parse_output(&output)?;
        if r.total_ios != writes {
            bail!("fio wrote {} times, expected {writes}", r.total_ios);
        }
        Ok(r)
    };
    let none = fio_run("no snapshot", target)?;
    let t = Instant::now();
    cli.run(&["snapshot", "create", volume, snapshot])?;
    let create_ms = t.elapsed().as_secs_f64() * 1e3;
    let first = fio_run("first writes", target)?;
    let copied = copied_chunks(&cli.run(&["--json", "snapshot", "show", volume, snapshot])?)?;
    if copied != writes {
        bail!("the snapshot copied {copied} chunks, expected {writes}: not every write was a first write");
    }
    let again = fio_run("copied", target)?;
    cli.run(&["snapshot", "delete", volume, snapshot])?;

    section.push(
        "create_cli_ms",
        "`reservoir snapshot create` (CLI process, RPC)",
        "ms",
        create_ms,
    );
    for (key_iops, key_p50, key_p99, phase, r) in [
        (
            "none_iops",
            "none_p50_us",
            "none_p99_us",
            "no snapshot",
            none,
        ),
        (
            "first_iops",
            "first_p50_us",
            "first_p99_us",
            "right after a snapshot (first writes copy)",
            first,
        ),
        (
            "copied_iops",
            "copied_p50_us",
            "copied_p99_us",
            "chunks already copied",
            again,
        ),
    ] {
        section.push(key_iops, &format!("IOPS, {phase}"), "IOPS", r.iops);
        section.push(
            key_p50,
            &format!("p50 latency, {phase}"),
            "µs",
            r.lat_p50_ns / 1e3,
        );
        section.push(
            key_p99,
            &format!("p99 latency, {phase}"),
            "µs",
            r.lat_p99_ns / 1e3,
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copied_chunks_from_snapshot_show() {
        let json = r#"{"volume":"ram0","name":"s","id":3,"copied_chunks":16384,"diff_bytes":1073741824,"valid":true}"#;
        assert_eq!(copied_chunks(json).unwrap(), 16384);
        assert!(matches!(
            copied_chunks(r#"{"name":"s"}"#),
            Err(ParseError::Missing {
                what: "copied_chunks",
                ..
            })
        ));
        assert!(matches!(
            copied_chunks("error: no daemon"),
            Err(ParseError::Json { .. })
        ));
    }

    #[test]
    fn cow_workloads_fit_the_lun_in_whole_chunks() {
        for w in COW_WORKLOADS {
            assert!(w.region <= LUN_BYTES);
            assert_eq!(w.region % CHUNK, 0);
        }
    }
}
