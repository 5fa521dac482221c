//! `reservoir-bench`: Reservoir, tgt and istgt side by side on loopback,
//! measured with fio's libiscsi engine and libiscsi's iscsi-perf.
//!
//! One run: find or build the tools, measure the loopback TCP floor (a
//! ping-pong between this process and a re-executed copy of itself), start
//! every target with identical 1 GiB LUNs on free 127.0.0.1 ports, write
//! each LUN once, then run every point against each target in turn
//! (interleaved, so drift in a noisy machine hits all targets alike),
//! repeated, and report medians as Markdown, JSON and PNG charts under
//! `bench/results/`. Everything started is stopped on exit, error or Ctrl-C.
//!
//! `--suite snapshot` and `--suite backup` measure the snapshot engine's
//! and the backup engine's figures instead (issues 5 and 6), as Markdown
//! and JSON in the same directory.

mod backup_suite;
mod chart;
mod error;
mod figures;
mod fio;
mod iscsi_perf;
mod loopback;
mod matrix;
mod process;
mod procfs;
mod report;
mod runner;
mod setup;
mod snapshot_suite;
mod stats;
mod targets;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};

use crate::matrix::{Backing, TargetKind};

/// Benchmark Reservoir against tgt and istgt on this machine (loopback).
#[derive(Debug, Parser)]
#[command(name = "reservoir-bench", version, after_help = AFTER_HELP)]
pub struct Args {
    /// What to measure: the iSCSI targets side by side, the snapshot
    /// engine's figures, or the backup engine's.
    #[arg(long, value_enum, default_value_t = Suite::Targets)]
    pub suite: Suite,
    /// A minute or two: the goal points only, shorter runs, one repetition.
    #[arg(long)]
    pub quick: bool,
    /// Targets to compare, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "reservoir,tgt,istgt")]
    pub targets: Vec<TargetKind>,
    /// Backings to measure, comma separated: `ram` (a RAM LUN on every
    /// target), `file` (a 1 GiB O_DIRECT file on --scratch, reservoir and
    /// tgt only). `--backing file` reruns the file matrix alone.
    #[arg(long, value_delimiter = ',', default_value = "ram,file")]
    pub backing: Vec<Backing>,
    /// Only these points, comma separated: randread-qd1, randread-qd32,
    /// randread-qd128, randwrite-qd32, randrw-qd32, seqread-qd8,
    /// seqwrite-qd8, randread-qd32-x4 (fio), iscsi-perf [default: all of
    /// the matrix, or of the --quick matrix].
    #[arg(long, value_delimiter = ',', value_name = "IDS")]
    pub workloads: Option<Vec<String>>,
    /// Seconds per fio run [default: 15, or 5 with --quick].
    #[arg(long, value_name = "SECS", value_parser = clap::value_parser!(u64).range(1..=600))]
    pub runtime: Option<u64>,
    /// Repetitions per point (per figure for the snapshot and backup
    /// suites); the report shows medians [default: 3, or 1 with --quick].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=20))]
    pub reps: Option<u32>,
    /// fio with the libiscsi engine (default: found, or built into bench/.cache).
    #[arg(long, value_name = "PATH")]
    pub fio: Option<PathBuf>,
    /// The release `reservoir` binary (default: target/release/reservoir, rebuilt if out of date).
    #[arg(long, value_name = "PATH")]
    pub reservoir: Option<PathBuf>,
    /// Directory for results [default: bench/results].
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Directory on local disk (not tmpfs) for the file LUNs' images.
    #[arg(long, value_name = "DIR", default_value = "/var/tmp")]
    pub scratch: PathBuf,
    /// Backup suite: the RAM volume's size [default: 4096, or 1024 with --quick].
    #[arg(long, value_name = "MIB", value_parser = clap::value_parser!(u64).range(64..=65536))]
    pub volume_mib: Option<u64>,
    /// Internal: serve the loopback floor's echo on 127.0.0.1:PORT (the
    /// bench re-executes itself with this, so client and server are two
    /// processes).
    #[arg(long, value_name = "PORT", hide = true)]
    pub loopback_server: Option<u16>,
    /// Internal: pin that echo server to this CPU.
    #[arg(long, value_name = "CPU", hide = true, requires = "loopback_server")]
    pub loopback_cpu: Option<usize>,
}

const AFTER_HELP: &str = "\
Targets suite, full matrix (no --quick): on RAM and on file, 4 KiB randread QD1/QD32/QD128,
4 KiB randwrite QD32, 4 KiB 70/30 randrw QD32, 128 KiB seq read and write QD8, 4 KiB randread
QD32 from 4 sessions (fio, libiscsi engine), and iscsi-perf 4 KiB randread with 32 in flight;
3 reps of 15 s on reservoir, tgt, istgt: about 40 min (each run prints its estimate at start).

Examples:
  reservoir-bench --quick                      a couple of minutes, the goal points
  reservoir-bench                              the full matrix
  reservoir-bench --backing file --targets reservoir,tgt
                                               the file matrix only (about 15 min)
  reservoir-bench --workloads randread-qd1,seqwrite-qd8 --backing ram";

/// The benchmark suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Suite {
    /// fio and iscsi-perf against reservoir, tgt and istgt.
    Targets,
    /// Snapshot creation, changed-block sets, first-write overhead through iSCSI.
    Snapshot,
    /// Full and incremental backup, CRC32C, restore.
    Backup,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match (args.loopback_server, args.suite) {
        (Some(port), _) => loopback::serve(port, args.loopback_cpu),
        (None, Suite::Targets) => runner::run(&args),
        (None, Suite::Snapshot) => snapshot_suite::run(&args),
        (None, Suite::Backup) => backup_suite::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("\nreservoir-bench: {error:#}");
            ExitCode::FAILURE
        }
    }
}
