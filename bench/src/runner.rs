//! The run: setup, targets, the interleaved measurement loop, output.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};

use crate::matrix::{self, Backing, Plan, Point, TargetKind, Workload};
use crate::process::{check_interrupted, install_interrupt_handler, run_bounded};
use crate::report::{Client, Measurement, Parameters, Repetition, RunRecord};
use crate::targets::{RunningTarget, StartContext};
use crate::{chart, fio, iscsi_perf, loopback, procfs, report, setup, Args};

/// A client gets this long beyond its runtime before it is killed.
const CLIENT_SLACK: Duration = Duration::from_secs(60);
/// Writing a whole 1 GiB LUN once.
const FILL_LIMIT: Duration = Duration::from_secs(300);
/// In-flight requests for the iscsi-perf point (4 KiB random read).
const ISCSI_PERF_REQUESTS: u32 = 32;
/// Wall-time estimate, printed at start: login, logout and process start
/// around each client run; writing a 1 GiB LUN once in RAM and on disk;
/// starting a target.
const PER_RUN_OVERHEAD: Duration = Duration::from_secs(1);
const FILL_RAM_ESTIMATE: Duration = Duration::from_secs(5);
const FILL_FILE_ESTIMATE: Duration = Duration::from_secs(15);
const START_ESTIMATE: Duration = Duration::from_secs(3);

pub fn run(args: &Args) -> Result<()> {
    install_interrupt_handler()?;
    let started = SystemTime::now();
    let (started_utc, stamp) = setup::utc_timestamp(started);
    let runtime = Duration::from_secs(args.runtime.unwrap_or(if args.quick { 5 } else { 15 }));
    let reps = args.reps.unwrap_or(if args.quick { 1 } else { 3 });
    let plan = Plan::new(args.quick, &args.backing, args.workloads.as_deref())
        .map_err(anyhow::Error::msg)?;
    let mut kinds = args.targets.clone();
    kinds.sort();
    kinds.dedup();
    for kind in kinds.iter().filter(|&&k| !plan.involves(k)) {
        progress_note(&format!(
            "{kind} serves none of the chosen points; not started"
        ));
    }
    kinds.retain(|&k| plan.involves(k));
    if kinds.is_empty() {
        bail!("no target in --targets serves the chosen points");
    }
    let floor_duration = Duration::from_secs(if args.quick { 1 } else { 3 });
    let runs = plan.runs_per_rep(&kinds) * reps as usize;
    progress_note(&format!(
        "{} client runs of {} s on {}: about {} in all",
        runs,
        runtime.as_secs(),
        kinds
            .iter()
            .map(|k| k.name())
            .collect::<Vec<_>>()
            .join(", "),
        minutes(estimate(&plan, &kinds, runtime, reps, floor_duration))
    ));

    // Tools. The fio build script installs its own build dependencies.
    let mut packages = vec!["libiscsi-bin", "fonts-dejavu-core"];
    packages.extend(kinds.iter().filter_map(|k| match k {
        TargetKind::Reservoir => None,
        TargetKind::Tgt => Some("tgt"),
        TargetKind::Istgt => Some("istgt"),
    }));
    setup::ensure_debian_packages(&packages)?;
    let cache = setup::bench_dir().join(".cache");
    let fio_path = setup::find_or_build_fio(args.fio.as_deref(), &cache)?;
    let reservoir = if kinds.contains(&TargetKind::Reservoir) {
        Some(setup::find_or_build_reservoir(args.reservoir.as_deref())?)
    } else {
        None
    };
    let out_dir = setup::out_dir(args)?;

    // Scratch space; dropped (deleted) after the targets, which are declared later.
    let run_dir = tempfile::Builder::new()
        .prefix("reservoir-bench.")
        .tempdir()?;
    let shm_dir = tempfile::Builder::new()
        .prefix("reservoir-bench.")
        .tempdir_in("/dev/shm")
        .context("creating a directory in /dev/shm for the RAM-backed LUNs")?;
    let disk_dir = tempfile::Builder::new()
        .prefix("reservoir-bench.")
        .tempdir_in(&args.scratch)
        .with_context(|| {
            format!(
                "creating a directory under --scratch {}",
                args.scratch.display()
            )
        })?;

    progress_note("measuring the loopback TCP floor (two processes)");
    let floor = loopback::measure(floor_duration, run_dir.path())?;

    let reservoir_binary = reservoir.clone().unwrap_or_default();
    let ctx = StartContext {
        run_dir: run_dir.path(),
        shm_dir: shm_dir.path(),
        disk_dir: Some(disk_dir.path()),
        reservoir_binary: &reservoir_binary,
    };
    let mut targets: Vec<RunningTarget> = Vec::new();
    for &kind in &kinds {
        progress_note(&format!("starting {kind}"));
        targets
            .push(crate::targets::start(kind, &ctx).with_context(|| format!("starting {kind}"))?);
    }
    for target in &targets {
        for backing in plan.backings() {
            if let Some(url) = target.url(backing) {
                progress_note(&format!(
                    "writing {} {} LUN once",
                    target.kind,
                    backing.name()
                ));
                fill(&fio_path, &url, run_dir.path())
                    .with_context(|| format!("filling {}'s {} LUN", target.kind, backing.name()))?;
            }
        }
    }

    let mut bench = Bench {
        fio: &fio_path,
        run_dir: run_dir.path(),
        runtime,
        reps,
        measurements: Vec::new(),
        failures: Vec::new(),
        progress: Progress::new(runs, runtime),
    };
    for point in &plan.fio {
        bench.fio_point(point, &mut targets)?;
    }
    for &backing in &plan.iscsi_perf {
        bench.iscsi_perf_point(backing, &mut targets)?;
    }
    progress_note("stopping targets");
    drop(targets);

    let record = RunRecord {
        started_utc,
        git_revision: setup::git_revision(),
        machine: setup::machine(),
        parameters: Parameters {
            quick: args.quick,
            backings: plan.backings().collect(),
            workloads: args.workloads.clone(),
            runtime_seconds: runtime.as_secs(),
            repetitions: reps,
            targets: kinds,
            lun_bytes: crate::targets::LUN_BYTES,
            fio: setup::fio_version(&fio_path),
            reservoir_binary: reservoir
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            command: command_line(),
        },
        loopback_floor: floor,
        measurements: bench.measurements,
        failures: bench.failures,
    };
    write_outputs(&record, &out_dir, &stamp)
}

/// The run's wall time, roughly: the client runs dominate.
fn estimate(
    plan: &Plan,
    kinds: &[TargetKind],
    runtime: Duration,
    reps: u32,
    floor_duration: Duration,
) -> Duration {
    let runs = (plan.runs_per_rep(kinds) * reps as usize) as u32;
    let fills: Duration = plan
        .backings()
        .map(|backing| {
            let luns = kinds
                .iter()
                .filter(|k| backing == Backing::Ram || k.serves_file())
                .count() as u32;
            luns * match backing {
                Backing::Ram => FILL_RAM_ESTIMATE,
                Backing::File => FILL_FILE_ESTIMATE,
            }
        })
        .sum();
    (runtime + PER_RUN_OVERHEAD) * runs
        + fills
        + START_ESTIMATE * kinds.len() as u32
        + floor_duration * (4 + crate::loopback::STREAMS as u32)
}

pub fn command_line() -> String {
    let args: Vec<String> = std::env::args().skip(1).collect();
    format!("reservoir-bench {}", args.join(" "))
        .trim_end()
        .to_owned()
}

pub fn fill(fio: &Path, url: &str, run_dir: &Path) -> Result<()> {
    let mut command = Command::new(fio);
    command.args(fio::fill_args(url));
    let (status, output) = run_bounded(command, &run_dir.join("fill.out"), FILL_LIMIT)?;
    if !status.success() {
        bail!("fio exited with {status}: {}", tail(&output));
    }
    fio::parse_output(&output)?;
    Ok(())
}

pub fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" / ")
}

struct Bench<'a> {
    fio: &'a Path,
    run_dir: &'a Path,
    runtime: Duration,
    reps: u32,
    measurements: Vec<Measurement>,
    failures: Vec<String>,
    progress: Progress,
}

/// What a client run returns before the target-side numbers are added.
struct ClientResult {
    iops: f64,
    bytes_per_second: f64,
    total_ios: f64,
    latency_ns: Option<[f64; 3]>,
    /// fio's own user and system CPU, percent of one core.
    fio_cpu_percent: Option<(f64, f64)>,
}

impl Bench<'_> {
    fn fio_point(&mut self, point: &Point, targets: &mut [RunningTarget]) -> Result<()> {
        let serving: Vec<usize> = (0..targets.len())
            .filter(|&i| targets[i].url(point.backing).is_some())
            .collect();
        let first = self.measurements.len();
        for &i in &serving {
            self.measurements.push(Measurement {
                client: Client::Fio,
                backing: point.backing,
                workload: point.workload,
                target: targets[i].kind,
                repetitions: Vec::new(),
            });
        }
        for rep in 1..=self.reps {
            for (slot, &i) in serving.iter().enumerate() {
                let target = &mut targets[i];
                let url = target
                    .url(point.backing)
                    .context("target serves this backing")?;
                let label = format!(
                    "{} {} · {} · rep {rep}/{}",
                    point.backing.name(),
                    point.workload.name,
                    target.kind,
                    self.reps
                );
                self.progress.start(&label);
                let args = fio::job_args(&point.workload, &url, self.runtime);
                let result = self.measure(target, || {
                    let mut command = Command::new(self.fio);
                    command.args(&args);
                    let (status, output) = run_bounded(
                        command,
                        &self.run_dir.join("fio.out"),
                        self.runtime + CLIENT_SLACK,
                    )?;
                    if !status.success() {
                        bail!("fio exited with {status}: {}", tail(&output));
                    }
                    let r = fio::parse_output(&output)?;
                    Ok(ClientResult {
                        iops: r.iops,
                        bytes_per_second: r.bytes_per_second,
                        total_ios: r.total_ios as f64,
                        latency_ns: Some([r.lat_p50_ns, r.lat_p99_ns, r.lat_p999_ns]),
                        fio_cpu_percent: Some((r.usr_cpu_percent, r.sys_cpu_percent)),
                    })
                });
                self.record(first + slot, &label, result)?;
            }
        }
        Ok(())
    }

    fn iscsi_perf_point(&mut self, backing: Backing, targets: &mut [RunningTarget]) -> Result<()> {
        let workload: Workload = matrix::RANDREAD_QD32;
        let serving: Vec<usize> = (0..targets.len())
            .filter(|&i| targets[i].url(backing).is_some())
            .collect();
        let first = self.measurements.len();
        for &i in &serving {
            self.measurements.push(Measurement {
                client: Client::IscsiPerf,
                backing,
                workload,
                target: targets[i].kind,
                repetitions: Vec::new(),
            });
        }
        for rep in 1..=self.reps {
            for (slot, &i) in serving.iter().enumerate() {
                let target = &mut targets[i];
                let url = target.url(backing).context("target serves this backing")?;
                let label = format!(
                    "iscsi-perf {} 4k randread qd32 · {} · rep {rep}/{}",
                    backing.name(),
                    target.kind,
                    self.reps
                );
                self.progress.start(&label);
                let args = iscsi_perf::args(&url, ISCSI_PERF_REQUESTS, self.runtime);
                let runtime = self.runtime;
                let result = self.measure(target, || {
                    let mut command = Command::new("iscsi-perf");
                    command.args(&args);
                    let (status, output) = run_bounded(
                        command,
                        &self.run_dir.join("iscsi-perf.out"),
                        runtime + CLIENT_SLACK,
                    )?;
                    if !status.success() {
                        bail!("iscsi-perf exited with {status}: {}", tail(&output));
                    }
                    let r = iscsi_perf::parse_output(&output)?;
                    Ok(ClientResult {
                        iops: r.iops,
                        bytes_per_second: r.megabytes_per_second * 1e6,
                        // iscsi-perf prints averages only.
                        total_ios: r.iops * runtime.as_secs_f64(),
                        latency_ns: None,
                        fio_cpu_percent: None,
                    })
                });
                self.record(first + slot, &label, result)?;
            }
        }
        Ok(())
    }

    /// Runs one client against `target`, sampling the target's CPU and
    /// memory and the client's CPU around it.
    fn measure(
        &self,
        target: &mut RunningTarget,
        client: impl FnOnce() -> Result<ClientResult>,
    ) -> Result<Repetition> {
        target.process.check_alive()?;
        let before = procfs::sample(target.pid())?;
        let client_before = procfs::children_cpu_seconds();
        let start = Instant::now();
        let result = client()?;
        let wall_seconds = start.elapsed().as_secs_f64();
        let client_cpu_seconds = procfs::children_cpu_seconds() - client_before;
        target.process.check_alive()?;
        let after = procfs::sample(target.pid())?;
        let [p50, p99, p999] = result.latency_ns.map_or([None; 3], |l| l.map(Some));
        let (fio_usr, fio_sys) = result
            .fio_cpu_percent
            .map_or((None, None), |(usr, sys)| (Some(usr), Some(sys)));
        Ok(Repetition {
            iops: result.iops,
            bytes_per_second: result.bytes_per_second,
            lat_p50_ns: p50,
            lat_p99_ns: p99,
            lat_p999_ns: p999,
            total_ios: result.total_ios,
            wall_seconds,
            target_cpu_seconds: after.cpu_seconds - before.cpu_seconds,
            client_cpu_seconds,
            fio_usr_cpu_percent: fio_usr,
            fio_sys_cpu_percent: fio_sys,
            target_peak_rss_kib: after.peak_rss_kib,
        })
    }

    /// Keeps a repetition, or notes its failure and goes on: one target
    /// failing a point must not cost the others' numbers. Ctrl-C aborts.
    fn record(&mut self, index: usize, label: &str, result: Result<Repetition>) -> Result<()> {
        check_interrupted()?;
        match result {
            Ok(rep) => self.measurements[index].repetitions.push(rep),
            Err(error) => {
                let message = format!("{label}: {error:#}");
                progress_note(&format!("FAILED {message}"));
                self.failures.push(message);
            }
        }
        Ok(())
    }
}

/// The progress line on stderr: rewritten in place on a terminal, one line
/// per run otherwise.
struct Progress {
    total: usize,
    done: usize,
    per_run: Duration,
    started: Instant,
}

impl Progress {
    fn new(total: usize, runtime: Duration) -> Self {
        Progress {
            total,
            done: 0,
            // fio's login, logout and process start add about a second.
            per_run: runtime + PER_RUN_OVERHEAD,
            started: Instant::now(),
        }
    }

    fn start(&mut self, label: &str) {
        self.done += 1;
        let left = self.per_run * (self.total + 1 - self.done) as u32;
        let line = format!(
            "[{}/{}] {label} · {} elapsed, ~{} left",
            self.done,
            self.total,
            minutes(self.started.elapsed()),
            minutes(left)
        );
        if std::io::stderr().is_terminal() {
            eprint!("\r\x1b[K{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

fn minutes(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

pub fn progress_note(message: &str) {
    if std::io::stderr().is_terminal() {
        eprintln!("\r\x1b[Kreservoir-bench: {message}");
    } else {
        eprintln!("reservoir-bench: {message}");
    }
}

fn write_outputs(record: &RunRecord, out_dir: &Path, stamp: &str) -> Result<()> {
    let markdown = report::render_markdown(record);
    let write = |name: String, text: &str| -> Result<PathBuf> {
        let path = out_dir.join(name);
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    };
    let mut written = vec![
        write(format!("{stamp}.md"), &markdown)?,
        write(format!("{stamp}.json"), &record.to_json())?,
    ];
    match chart::load_font() {
        Ok(()) => {
            for (name, data) in chart::chart_data(record) {
                written.push(chart::draw(
                    &data,
                    &out_dir.join(format!("{stamp}-{name}.png")),
                )?);
            }
        }
        Err(error) => progress_note(&format!("no charts: {error:#}")),
    }
    println!("{markdown}");
    for path in written {
        eprintln!("reservoir-bench: wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_matrix_estimate() {
        let plan = Plan::new(false, &Backing::ALL, None).unwrap();
        let e = estimate(
            &plan,
            &TargetKind::ALL,
            Duration::from_secs(15),
            3,
            Duration::from_secs(3),
        );
        // 45 runs × 3 reps × 16 s, 3 RAM and 2 file fills, 3 starts, the
        // floor's four round trips and five streams.
        assert_eq!(e.as_secs(), 135 * 16 + 15 + 30 + 9 + 27);
        assert_eq!(minutes(e), "37m21s");
    }
}
