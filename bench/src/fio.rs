//! fio with its libiscsi engine: the job's command line, and its JSON
//! output parsed once into the numbers the report uses.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::ParseError;
use crate::matrix::{Pattern, Workload};

/// fio's `--filename` for the libiscsi engine: an iscsi:// URL with every
/// ':' escaped, because fio splits file names on ':'.
pub fn libiscsi_filename(url: &str) -> String {
    url.replace(':', "\\:")
}

/// The arguments of one measured run. Stats are merged over directions
/// (`unified_rw_reporting=mixed`) and jobs (`group_reporting`), so a mixed
/// or multi-session workload yields one set of numbers with exact
/// percentiles. No ramp time: the target CPU measured around the run then
/// covers exactly the I/Os fio counts.
pub fn job_args(workload: &Workload, url: &str, runtime: Duration) -> Vec<String> {
    let mut args = vec![
        format!("--name={}", workload.name.replace(' ', "_")),
        "--ioengine=libiscsi".to_owned(),
        format!("--filename={}", libiscsi_filename(url)),
        format!("--rw={}", workload.pattern.fio_rw()),
        format!("--bs={}", workload.block_size),
        format!("--iodepth={}", workload.iodepth),
        format!("--numjobs={}", workload.sessions),
        "--group_reporting".to_owned(),
        "--time_based".to_owned(),
        format!("--runtime={}s", runtime.as_secs().max(1)),
        "--unified_rw_reporting=mixed".to_owned(),
        "--lat_percentiles=1".to_owned(),
        "--percentile_list=50:99:99.9".to_owned(),
        "--output-format=json".to_owned(),
    ];
    if let Pattern::RandRw { read_percent } = workload.pattern {
        args.push(format!("--rwmixread={read_percent}"));
    }
    args
}

/// Arguments that write the whole LUN once before measuring, so reads hit
/// allocated blocks on every target (a sparse tmpfs file, or a lazily
/// zeroed malloc buffer, would make reads artificially cheap).
pub fn fill_args(url: &str) -> Vec<String> {
    vec![
        "--name=fill".to_owned(),
        "--ioengine=libiscsi".to_owned(),
        format!("--filename={}", libiscsi_filename(url)),
        "--rw=write".to_owned(),
        "--bs=1m".to_owned(),
        "--iodepth=4".to_owned(),
        "--unified_rw_reporting=mixed".to_owned(),
        "--output-format=json".to_owned(),
    ]
}

/// One write at the start of each `stride`-byte chunk of the first
/// `region` bytes, in order, `iodepth` in flight: every write touches a
/// different chunk, so right after a snapshot every one of them is a
/// first write (the snapshot engine copies the chunk), and a second run
/// over the same chunks finds them all copied. Sequential with a hole
/// after each write (`rw=write:HOLE`), bounded by `number_ios` so fio
/// never wraps around to a chunk it already wrote.
pub fn strided_write_args(
    name: &str,
    url: &str,
    block_size: u32,
    stride: u64,
    region: u64,
    iodepth: u32,
) -> Vec<String> {
    let hole = stride.saturating_sub(u64::from(block_size));
    vec![
        format!("--name={}", name.replace(' ', "_")),
        "--ioengine=libiscsi".to_owned(),
        format!("--filename={}", libiscsi_filename(url)),
        format!("--rw=write:{hole}"),
        format!("--bs={block_size}"),
        format!("--iodepth={iodepth}"),
        format!("--size={region}"),
        format!("--number_ios={}", region / stride.max(1)),
        "--unified_rw_reporting=mixed".to_owned(),
        "--lat_percentiles=1".to_owned(),
        "--percentile_list=50:99:99.9".to_owned(),
        "--output-format=json".to_owned(),
    ]
}

/// One fio run, reduced to what the bench reports.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FioResult {
    pub iops: f64,
    pub bytes_per_second: f64,
    /// I/Os completed in the run (all jobs, both directions).
    pub total_ios: u64,
    pub runtime_ms: u64,
    /// Total (submission + completion) latency percentiles, nanoseconds.
    pub lat_p50_ns: f64,
    pub lat_p99_ns: f64,
    pub lat_p999_ns: f64,
    /// fio's own CPU use (its job processes, all jobs summed), percent of
    /// one core over the job's runtime: `usr_cpu` and `sys_cpu`.
    pub usr_cpu_percent: f64,
    pub sys_cpu_percent: f64,
}

// fio's JSON, only the fields used. With unified_rw_reporting=mixed each
// job carries one "mixed" section instead of "read"/"write"/"trim".
#[derive(Deserialize)]
struct Output {
    jobs: Vec<Job>,
}

#[derive(Deserialize)]
struct Job {
    jobname: String,
    error: i64,
    mixed: Option<Direction>,
    usr_cpu: f64,
    sys_cpu: f64,
}

#[derive(Deserialize)]
struct Direction {
    iops: f64,
    bw_bytes: f64,
    total_ios: u64,
    runtime: u64,
    lat_ns: Option<Latency>,
    clat_ns: Option<Latency>,
}

#[derive(Deserialize)]
struct Latency {
    percentile: Option<std::collections::BTreeMap<String, f64>>,
}

const TOOL: &str = "fio";

/// Parses fio's `--output-format=json` stdout. fio may print note lines
/// ("note: both iodepth >= 1 and synchronous I/O engine ...") before the
/// JSON document, so parsing starts at the first line that opens an object.
pub fn parse_output(stdout: &str) -> Result<FioResult, ParseError> {
    let start = json_start(stdout).ok_or(ParseError::NoJson { tool: TOOL })?;
    let output: Output = serde_json::from_str(&stdout[start..])
        .map_err(|source| ParseError::Json { tool: TOOL, source })?;
    let job = output.jobs.into_iter().next().ok_or(ParseError::Missing {
        tool: TOOL,
        what: "a job",
    })?;
    if job.error != 0 {
        return Err(ParseError::FioJobError {
            job: job.jobname,
            code: job.error,
        });
    }
    let mixed = job.mixed.ok_or(ParseError::Missing {
        tool: TOOL,
        what: "the \"mixed\" section (unified_rw_reporting=mixed)",
    })?;
    // lat_percentiles=1 puts percentiles under lat_ns; older fio builds
    // report them only for completion latency.
    let percentiles = [mixed.lat_ns, mixed.clat_ns]
        .into_iter()
        .flatten()
        .find_map(|l| l.percentile)
        .ok_or(ParseError::Missing {
            tool: TOOL,
            what: "latency percentiles",
        })?;
    let at = |key: &str| {
        percentiles.get(key).copied().ok_or(ParseError::Missing {
            tool: TOOL,
            what: "a requested percentile (50, 99, 99.9)",
        })
    };
    Ok(FioResult {
        iops: mixed.iops,
        bytes_per_second: mixed.bw_bytes,
        total_ios: mixed.total_ios,
        runtime_ms: mixed.runtime,
        lat_p50_ns: at("50.000000")?,
        lat_p99_ns: at("99.000000")?,
        lat_p999_ns: at("99.900000")?,
        usr_cpu_percent: job.usr_cpu,
        sys_cpu_percent: job.sys_cpu,
    })
}

fn json_start(text: &str) -> Option<usize> {
    let mut offset = 0;
    for line in text.split_inclusive('\n') {
        if line.trim_start().starts_with('{') {
            return Some(offset + (line.len() - line.trim_start().len()));
        }
        offset += line.len();
    }
    None
}

/// Whether `fio --enghelp` output lists the libiscsi engine.
pub fn lists_libiscsi(enghelp: &str) -> bool {
    enghelp.split_ascii_whitespace().any(|w| w == "libiscsi")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{RANDREAD_QD32_X4, RANDRW_QD32};

    /// Captured from fio 3.33 (Debian source, --enable-libiscsi) against
    /// tgt: 4 KiB 70/30 randrw, QD32, 2 jobs, with its note lines first.
    const SAMPLE: &str = include_str!("../testdata/fio-randrw-libiscsi.json");

    #[test]
    fn parses_the_captured_sample_after_note_lines() {
        assert!(SAMPLE.starts_with("note:"));
        let r = parse_output(SAMPLE).unwrap();
        assert_eq!(r.total_ios, 53950);
        assert_eq!(r.runtime_ms, 2002);
        assert!((r.iops - 26948.051948).abs() < 1e-6);
        assert_eq!(r.bytes_per_second, 110379220.0);
        assert_eq!(r.lat_p50_ns, 2056192.0);
        assert_eq!(r.lat_p99_ns, 8028160.0);
        assert_eq!(r.lat_p999_ns, 15400960.0);
        assert_eq!(r.usr_cpu_percent, 3.423288);
        assert_eq!(r.sys_cpu_percent, 21.614193);
    }

    #[test]
    fn rejects_output_without_json() {
        assert!(matches!(
            parse_output("fio: engine libiscsi not loadable\n"),
            Err(ParseError::NoJson { .. })
        ));
    }

    #[test]
    fn rejects_truncated_json() {
        let cut = &SAMPLE[..SAMPLE.len() / 2];
        assert!(matches!(parse_output(cut), Err(ParseError::Json { .. })));
    }

    #[test]
    fn requires_the_cpu_figures() {
        let without = SAMPLE.replacen("\"usr_cpu\"", "\"usr_cpu_gone\"", 1);
        assert!(matches!(
            parse_output(&without),
            Err(ParseError::Json { .. })
        ));
    }

    #[test]
    fn reports_a_failed_job() {
        let failed = SAMPLE.replacen("\"error\" : 0", "\"error\" : 5", 1);
        assert!(matches!(
            parse_output(&failed),
            Err(ParseError::FioJobError { code: 5, .. })
        ));
    }

    #[test]
    fn filename_escapes_colons() {
        assert_eq!(
            libiscsi_filename("iscsi://127.0.0.1:3260/iqn.2026-11.io.reservoir:vol0/0"),
            "iscsi\\://127.0.0.1\\:3260/iqn.2026-11.io.reservoir\\:vol0/0"
        );
    }

    #[test]
    fn job_args_carry_the_workload() {
        let args = job_args(
            &RANDRW_QD32,
            "iscsi://127.0.0.1:1/iqn.x:y/0",
            Duration::from_secs(5),
        );
        for expected in [
            "--rw=randrw",
            "--rwmixread=70",
            "--iodepth=32",
            "--bs=4096",
            "--runtime=5s",
        ] {
            assert!(
                args.iter().any(|a| a == expected),
                "{expected} missing from {args:?}"
            );
        }
        let args = job_args(
            &RANDREAD_QD32_X4,
            "iscsi://h/iqn.x:y/0",
            Duration::from_secs(1),
        );
        assert!(args.iter().any(|a| a == "--numjobs=4"));
        assert!(!args.iter().any(|a| a.starts_with("--rwmixread")));
    }

    #[test]
    fn strided_writes_touch_each_chunk_once() {
        let args = strided_write_args(
            "first write",
            "iscsi://h/iqn.x:y/0",
            4096,
            65536,
            1 << 30,
            32,
        );
        for expected in [
            "--name=first_write",
            "--rw=write:61440",
            "--bs=4096",
            "--iodepth=32",
            "--size=1073741824",
            "--number_ios=16384",
            "--output-format=json",
        ] {
            assert!(
                args.iter().any(|a| a == expected),
                "{expected} missing from {args:?}"
            );
        }
        assert!(!args.iter().any(|a| a.starts_with("--time_based")));
    }

    #[test]
    fn enghelp_detection() {
        assert!(lists_libiscsi(
            "Available IO engines:\n\tcpuio\n\tlibiscsi\n\tnull\n"
        ));
        assert!(!lists_libiscsi("Available IO engines:\n\tlibaio\n\tnbd\n"));
    }
}
