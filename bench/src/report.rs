//! A run's record (serialised as the JSON result) and its Markdown report.

use std::fmt::Write as _;

use serde::Serialize;

use crate::loopback::{Floor, RoundTrip};
use crate::matrix::{Backing, Pattern, TargetKind, Workload};
use crate::stats::{median, ratio};

/// Which client produced a measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Client {
    Fio,
    IscsiPerf,
}

/// One repetition of one point on one target.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Repetition {
    pub iops: f64,
    pub bytes_per_second: f64,
    /// Latency percentiles in nanoseconds; iscsi-perf reports none.
    pub lat_p50_ns: Option<f64>,
    pub lat_p99_ns: Option<f64>,
    pub lat_p999_ns: Option<f64>,
    pub total_ios: f64,
    pub wall_seconds: f64,
    /// CPU the target process used during the run (user + system).
    pub target_cpu_seconds: f64,
    /// CPU the client (fio and its job processes) used during the run,
    /// from the bench's own accounting of its reaped children.
    pub client_cpu_seconds: f64,
    /// fio's own report of its jobs' CPU (`usr_cpu`, `sys_cpu`: percent of
    /// one core over the job's runtime); iscsi-perf reports none.
    pub fio_usr_cpu_percent: Option<f64>,
    pub fio_sys_cpu_percent: Option<f64>,
    /// The target's VmHWM after the run.
    pub target_peak_rss_kib: u64,
}

/// All repetitions of one point on one target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Measurement {
    pub client: Client,
    pub backing: Backing,
    pub workload: Workload,
    pub target: TargetKind,
    pub repetitions: Vec<Repetition>,
}

/// Medians over a measurement's repetitions, in report units.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Summary {
    pub iops: f64,
    pub megabytes_per_second: f64,
    pub lat_p50_us: Option<f64>,
    pub lat_p99_us: Option<f64>,
    pub lat_p999_us: Option<f64>,
    /// Target CPU seconds per million I/Os (numerically, µs per I/O).
    pub target_cpu_s_per_million_ios: Option<f64>,
    /// Client CPU as a percentage of one core.
    pub client_cpu_percent: Option<f64>,
    /// fio's self-reported user and system CPU, percent of one core.
    pub fio_usr_cpu_percent: Option<f64>,
    pub fio_sys_cpu_percent: Option<f64>,
    pub target_peak_rss_mib: f64,
}

impl Measurement {
    pub fn summary(&self) -> Summary {
        let of = |f: &dyn Fn(&Repetition) -> Option<f64>| -> Option<f64> {
            let values: Vec<f64> = self.repetitions.iter().filter_map(f).collect();
            median(&values)
        };
        let us = |ns: Option<f64>| ns.map(|v| v / 1e3);
        Summary {
            iops: of(&|r| Some(r.iops)).unwrap_or(0.0),
            megabytes_per_second: of(&|r| Some(r.bytes_per_second / 1e6)).unwrap_or(0.0),
            lat_p50_us: of(&|r| us(r.lat_p50_ns)),
            lat_p99_us: of(&|r| us(r.lat_p99_ns)),
            lat_p999_us: of(&|r| us(r.lat_p999_ns)),
            target_cpu_s_per_million_ios: of(&|r| {
                ratio(r.target_cpu_seconds, r.total_ios).map(|x| x * 1e6)
            }),
            client_cpu_percent: of(&|r| {
                ratio(r.client_cpu_seconds, r.wall_seconds).map(|x| x * 100.0)
            }),
            fio_usr_cpu_percent: of(&|r| r.fio_usr_cpu_percent),
            fio_sys_cpu_percent: of(&|r| r.fio_sys_cpu_percent),
            target_peak_rss_mib: of(&|r| Some(r.target_peak_rss_kib as f64 / 1024.0))
                .unwrap_or(0.0),
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Parameters {
    pub quick: bool,
    pub backings: Vec<Backing>,
    /// `--workloads`, when the run measured a subset.
    pub workloads: Option<Vec<String>>,
    pub runtime_seconds: u64,
    pub repetitions: u32,
    pub targets: Vec<TargetKind>,
    pub lun_bytes: u64,
    pub fio: String,
    pub reservoir_binary: String,
    pub command: String,
}

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub started_utc: String,
    pub git_revision: String,
    pub machine: Machine,
    pub parameters: Parameters,
    pub loopback_floor: Floor,
    pub measurements: Vec<Measurement>,
    /// Repetitions that did not complete, with the reason.
    pub failures: Vec<String>,
}

#[derive(Serialize)]
struct MeasurementJson<'a> {
    #[serde(flatten)]
    measurement: &'a Measurement,
    median: Summary,
}

/// The JSON layout: the record with each measurement's medians added.
#[derive(Serialize)]
struct RunJson<'a> {
    started_utc: &'a str,
    git_revision: &'a str,
    machine: &'a Machine,
    parameters: &'a Parameters,
    loopback_floor: &'a Floor,
    measurements: Vec<MeasurementJson<'a>>,
    failures: &'a [String],
}

impl RunRecord {
    /// The JSON result: the record plus each measurement's medians.
    pub fn to_json(&self) -> String {
        let json = RunJson {
            started_utc: &self.started_utc,
            git_revision: &self.git_revision,
            machine: &self.machine,
            parameters: &self.parameters,
            loopback_floor: &self.loopback_floor,
            measurements: self
                .measurements
                .iter()
                .map(|m| MeasurementJson {
                    measurement: m,
                    median: m.summary(),
                })
                .collect(),
            failures: &self.failures,
        };
        let mut text = serde_json::to_string_pretty(&json).expect("the run record serialises");
        text.push('\n');
        text
    }

    fn find(
        &self,
        client: Client,
        backing: Backing,
        workload: &Workload,
        target: TargetKind,
    ) -> Option<&Measurement> {
        self.measurements.iter().find(|m| {
            m.client == client
                && m.backing == backing
                && m.workload == *workload
                && m.target == target
        })
    }
}

fn opt(value: Option<f64>, decimals: usize) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.decimals$}"))
}

fn times(value: Option<f64>) -> String {
    value.map_or_else(|| "–".to_owned(), |v| format!("{v:.2}×"))
}

fn usr_sys(s: &Summary) -> String {
    match (s.fio_usr_cpu_percent, s.fio_sys_cpu_percent) {
        (Some(usr), Some(sys)) => format!("{usr:.0}/{sys:.0}"),
        _ => "–".to_owned(),
    }
}

const TABLE_HEAD: &str = "| workload | target | IOPS | MB/s | p50 µs | p99 µs | p99.9 µs | target CPU s/M I/O | client CPU % | fio usr/sys % | target peak RSS MiB | ×tgt | ×istgt |\n\
|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n";

/// The Markdown report: header, one table per client and backing, and the
/// loopback floor with each target's QD1 latency above it.
pub fn render_markdown(record: &RunRecord) -> String {
    let mut out = String::new();
    let p = &record.parameters;
    let _ = writeln!(out, "# Reservoir benchmark, {}\n", record.started_utc);
    let _ = writeln!(
        out,
        "git `{}` · {} × {} · Linux {} · {} · runtime {} s × {} rep(s), medians · 1 GiB LUNs on 127.0.0.1\n",
        record.git_revision,
        record.machine.nproc,
        record.machine.cpu_model,
        record.machine.kernel,
        p.fio,
        p.runtime_seconds,
        p.repetitions,
    );
    let _ = writeln!(out, "Command: `{}`\n", p.command);
    let _ = writeln!(
        out,
        "Client CPU % is fio and its job processes by the bench's accounting of reaped \
         children (% of one core over the wall time); fio usr/sys % is fio's own report of its \
         jobs (`usr_cpu`/`sys_cpu`).\n"
    );
    let sections = [
        (
            Client::Fio,
            Backing::Ram,
            "fio (libiscsi engine), RAM-backed LUN",
        ),
        (
            Client::Fio,
            Backing::File,
            "fio (libiscsi engine), file on local disk (O_DIRECT)",
        ),
        (
            Client::IscsiPerf,
            Backing::Ram,
            "iscsi-perf (libiscsi), RAM-backed LUN",
        ),
        (
            Client::IscsiPerf,
            Backing::File,
            "iscsi-perf (libiscsi), file on local disk (O_DIRECT)",
        ),
    ];
    for (client, backing, title) in sections {
        let rows: Vec<&Measurement> = record
            .measurements
            .iter()
            .filter(|m| m.client == client && m.backing == backing)
            .collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(out, "## {title}\n");
        out.push_str(TABLE_HEAD);
        for m in &rows {
            let s = m.summary();
            let vs = |peer| {
                if m.target != TargetKind::Reservoir {
                    return None;
                }
                let peer = record.find(m.client, m.backing, &m.workload, peer)?;
                ratio(s.iops, peer.summary().iops)
            };
            let _ = writeln!(
                out,
                "| {} | {} | {:.0} | {:.1} | {} | {} | {} | {} | {} | {} | {:.1} | {} | {} |",
                m.workload.name,
                m.target,
                s.iops,
                s.megabytes_per_second,
                opt(s.lat_p50_us, 1),
                opt(s.lat_p99_us, 1),
                opt(s.lat_p999_us, 1),
                opt(s.target_cpu_s_per_million_ios, 1),
                opt(s.client_cpu_percent, 0),
                usr_sys(&s),
                s.target_peak_rss_mib,
                times(vs(TargetKind::Tgt)),
                times(vs(TargetKind::Istgt)),
            );
        }
        out.push('\n');
        render_client_bound(&mut out, &rows);
    }
    render_floor(&mut out, record);
    render_stream_share(&mut out, record);
    if !record.failures.is_empty() {
        let _ = writeln!(out, "## Failed repetitions\n");
        for failure in &record.failures {
            let _ = writeln!(out, "- {failure}");
        }
        out.push('\n');
    }
    out
}

/// Sequential write is limited by the client, not the target: the report
/// states what fio spent to drive it.
fn render_client_bound(out: &mut String, rows: &[&Measurement]) {
    let writes: Vec<&&Measurement> = rows
        .iter()
        .filter(|m| m.workload.pattern == Pattern::SeqWrite)
        .collect();
    if writes.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "Sequential write is limited by the client (fio builds and sends every byte): its CPU use per target:\n"
    );
    for m in writes {
        let s = m.summary();
        let _ = writeln!(
            out,
            "- {} {}: {:.1} MB/s with fio at {} % user + {} % system of one core (fio and children: {} %)",
            m.workload.name,
            m.target,
            s.megabytes_per_second,
            opt(s.fio_usr_cpu_percent, 1),
            opt(s.fio_sys_cpu_percent, 1),
            opt(s.client_cpu_percent, 0),
        );
    }
    out.push('\n');
}

fn round_trip_row(out: &mut String, placement: &str, what: &str, r: &RoundTrip) {
    let _ = writeln!(
        out,
        "| {placement} | {what} | {} → {} | {:.1} | {:.1} | {:.1} | {} |",
        r.request_bytes, r.reply_bytes, r.p50_us, r.p99_us, r.min_us, r.round_trips
    );
}

/// The goal: a QD1 4 KiB read's median latency within this much of
/// the loopback round trip measured in the same run.
const QD1_GOAL_MARGIN_US: f64 = 15.0;

fn render_floor(out: &mut String, record: &RunRecord) {
    let f = &record.loopback_floor;
    let _ = writeln!(out, "## Loopback TCP floor (same run)\n");
    let _ = writeln!(out, "Method: {}.\n", f.method);
    let _ = writeln!(
        out,
        "| placement | round trip | bytes out → back | p50 µs | p99 µs | min µs | round trips |\n|---|---|---|--:|--:|--:|--:|"
    );
    const UNPINNED: &str = "unpinned";
    const HEADER: &str = "one iSCSI header each way";
    const READ_4K: &str = "header out, header + 4 KiB back";
    round_trip_row(out, UNPINNED, HEADER, &f.header_round_trip);
    round_trip_row(out, UNPINNED, READ_4K, &f.read_4k_round_trip);
    if let Some(c) = &f.cross_cpu {
        let placement = format!("client CPU {}, server CPU {}", c.client_cpu, c.server_cpu);
        round_trip_row(out, &placement, HEADER, &c.header_round_trip);
        round_trip_row(out, &placement, READ_4K, &c.read_4k_round_trip);
    }
    let samples: Vec<String> = f
        .stream_samples
        .iter()
        .map(|s| format!("{:.2}", s / 1e9))
        .collect();
    let _ = writeln!(
        out,
        "\nOne stream, client to server process: {:.2} GB/s (median of {}).\n",
        f.stream_bytes_per_second / 1e9,
        samples.join(", ")
    );
    let _ = writeln!(
        out,
        "A QD1 4 KiB read sends a 48-byte SCSI Command PDU and gets back at least a 48-byte \
         Data-In header and the 4 KiB block (RFC 7143 §11.7; the status may ride on the Data-In \
         PDU), so the header + 4 KiB round trip is the physical floor of that read: the goal is \
         its median within {QD1_GOAL_MARGIN_US:.0} µs of it. The 48-byte round trip is shown too: \
         it is the floor of a header-only exchange and omits copying 4 KiB through the socket \
         on both sides. Unpinned is how the bench starts fio and the targets (Reservoir's \
         reactors pin their own threads), so the goal is checked against it; the scheduler \
         tends to wake the echo server on the client's CPU. The pinned rows force a wake-up on \
         another CPU, which is what a client and a target on different cores pay.\n"
    );
    let qd1: Vec<&Measurement> = record
        .measurements
        .iter()
        .filter(|m| m.client == Client::Fio && m.workload == crate::matrix::RANDREAD_QD1)
        .collect();
    if qd1.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "| backing | target | 4k randread QD1 p50 µs | minus 4 KiB RTT p50 µs | minus 48 B RTT p50 µs | minus cross-CPU 4 KiB RTT p50 µs | within {QD1_GOAL_MARGIN_US:.0} µs |\n|---|---|--:|--:|--:|--:|---|"
    );
    for m in qd1 {
        let p50 = m.summary().lat_p50_us;
        let over = p50.map(|v| v - f.read_4k_round_trip.p50_us);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} |",
            m.backing.name(),
            m.target,
            opt(p50, 1),
            opt(over, 1),
            opt(p50.map(|v| v - f.header_round_trip.p50_us), 1),
            opt(
                p50.zip(f.cross_cpu)
                    .map(|(v, c)| v - c.read_4k_round_trip.p50_us),
                1
            ),
            match over {
                Some(o) if o <= QD1_GOAL_MARGIN_US => "yes",
                Some(_) => "no",
                None => "–",
            }
        );
    }
    out.push('\n');
}

/// The goal: 128 KiB sequential read at least this share of one
/// loopback stream measured in the same run.
const STREAM_GOAL_SHARE: f64 = 0.9;

fn render_stream_share(out: &mut String, record: &RunRecord) {
    let stream_mb = record.loopback_floor.stream_bytes_per_second / 1e6;
    let reads: Vec<&Measurement> = record
        .measurements
        .iter()
        .filter(|m| m.client == Client::Fio && m.workload == crate::matrix::SEQREAD_QD8)
        .collect();
    if reads.is_empty() || stream_mb <= 0.0 {
        return;
    }
    let _ = writeln!(
        out,
        "128 KiB sequential read against one loopback stream ({stream_mb:.0} MB/s, the median \
         above); the goal is at least {:.0} % of it.\n",
        STREAM_GOAL_SHARE * 100.0
    );
    let _ = writeln!(
        out,
        "| backing | target | 128k read qd8 MB/s | share of one stream | at least {:.0} % |\n|---|---|--:|--:|---|",
        STREAM_GOAL_SHARE * 100.0
    );
    for m in reads {
        let share = m.summary().megabytes_per_second / stream_mb;
        let _ = writeln!(
            out,
            "| {} | {} | {:.1} | {:.0} % | {} |",
            m.backing.name(),
            m.target,
            m.summary().megabytes_per_second,
            share * 100.0,
            if share >= STREAM_GOAL_SHARE {
                "yes"
            } else {
                "no"
            }
        );
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::matrix::{RANDREAD_QD1, RANDREAD_QD32, SEQREAD_QD8, SEQWRITE_QD8};

    fn rep(iops: f64, p50_ns: f64) -> Repetition {
        Repetition {
            iops,
            bytes_per_second: iops * 4096.0,
            lat_p50_ns: Some(p50_ns),
            lat_p99_ns: Some(p50_ns * 2.0),
            lat_p999_ns: Some(p50_ns * 3.0),
            total_ios: iops * 10.0,
            wall_seconds: 10.0,
            target_cpu_seconds: iops * 10.0 * 20e-6,
            client_cpu_seconds: 5.0,
            fio_usr_cpu_percent: Some(12.0),
            fio_sys_cpu_percent: Some(30.0),
            target_peak_rss_kib: 2048,
        }
    }

    fn measurement(target: TargetKind, workload: Workload, reps: Vec<Repetition>) -> Measurement {
        Measurement {
            client: Client::Fio,
            backing: Backing::Ram,
            workload,
            target,
            repetitions: reps,
        }
    }

    fn record() -> RunRecord {
        RunRecord {
            started_utc: "2026-11-25T10:00:00Z".into(),
            git_revision: "abc1234".into(),
            machine: Machine {
                nproc: 2,
                cpu_model: "Test CPU".into(),
                kernel: "6.1.0".into(),
            },
            parameters: Parameters {
                quick: true,
                backings: Backing::ALL.to_vec(),
                workloads: None,
                runtime_seconds: 10,
                repetitions: 3,
                targets: TargetKind::ALL.to_vec(),
                lun_bytes: 1 << 30,
                fio: "fio-3.33".into(),
                reservoir_binary: "target/release/reservoir".into(),
                command: "reservoir-bench --quick".into(),
            },
            loopback_floor: Floor::fixture(),
            measurements: vec![
                measurement(
                    TargetKind::Reservoir,
                    RANDREAD_QD32,
                    vec![
                        rep(90_000.0, 300e3),
                        rep(80_000.0, 350e3),
                        rep(100_000.0, 280e3),
                    ],
                ),
                measurement(TargetKind::Tgt, RANDREAD_QD32, vec![rep(40_000.0, 800e3)]),
                measurement(TargetKind::Istgt, RANDREAD_QD32, vec![rep(60_000.0, 500e3)]),
                measurement(
                    TargetKind::Reservoir,
                    RANDREAD_QD1,
                    vec![rep(20_000.0, 30e3)],
                ),
                measurement(TargetKind::Tgt, SEQWRITE_QD8, vec![rep(5_000.0, 1e6)]),
                measurement(TargetKind::Reservoir, SEQREAD_QD8, vec![rep(20_000.0, 4e5)]),
            ],
            failures: vec![],
        }
    }

    #[test]
    fn summary_takes_medians_in_report_units() {
        let s = record().measurements[0].summary();
        assert_eq!(s.iops, 90_000.0);
        assert_eq!(s.lat_p50_us, Some(300.0));
        assert!((s.megabytes_per_second - 90_000.0 * 4096.0 / 1e6).abs() < 1e-9);
        // 20 µs of target CPU per I/O is 20 s per million I/Os.
        assert!((s.target_cpu_s_per_million_ios.unwrap() - 20.0).abs() < 1e-9);
        assert_eq!(s.client_cpu_percent, Some(50.0));
        assert_eq!(s.target_peak_rss_mib, 2.0);
    }

    #[test]
    fn markdown_has_ratios_on_reservoir_rows_only() {
        let md = render_markdown(&record());
        let row = |target: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| 4k randread qd32 | {target} |")))
                .unwrap_or_else(|| panic!("no {target} row in\n{md}"))
                .to_owned()
        };
        assert!(
            row("reservoir").ends_with("| 2.25× | 1.50× |"),
            "{}",
            row("reservoir")
        );
        assert!(row("tgt").ends_with("| – | – |"));
        assert!(row("reservoir")
            .contains("| 90000 | 368.6 | 300.0 | 600.0 | 900.0 | 20.0 | 50 | 12/30 | 2.0 |"));
        assert!(md.contains("## fio (libiscsi engine), RAM-backed LUN"));
        assert!(
            !md.contains("file on local disk"),
            "no file rows, no file table"
        );
        assert!(
            md.contains("| ram | reservoir | 30.0 | 5.0 | 10.0 | -30.0 | yes |"),
            "QD1 minus the floors:\n{md}"
        );
        assert!(md.contains(
            "| unpinned | one iSCSI header each way | 48 → 48 | 20.0 | 40.0 | 10.0 | 1000 |"
        ));
        assert!(md.contains("| unpinned | header out, header + 4 KiB back | 48 → 4144 | 25.0 |"));
        assert!(md.contains(
            "| client CPU 0, server CPU 1 | header out, header + 4 KiB back | 48 → 4144 | 60.0 |"
        ));
        assert!(md.contains("Method: two processes"));
        assert!(md.contains(
            "One stream, client to server process: 2.90 GB/s (median of 2.70, 2.80, 2.90, 3.00, 3.10)."
        ));
        // rep() counts 4 KiB per I/O: 20000 I/Os are 81.9 MB/s of a 2900 MB/s stream.
        assert!(
            md.contains("| ram | reservoir | 81.9 | 3 % | no |"),
            "sequential read against the stream:\n{md}"
        );
        assert!(
            md.contains("- 128k write qd8 tgt: 20.5 MB/s with fio at 12.0 % user + 30.0 % system"),
            "sequential write's client CPU:\n{md}"
        );
    }

    #[test]
    fn json_has_every_repetition_and_the_medians() {
        let json: serde_json::Value = serde_json::from_str(&record().to_json()).unwrap();
        assert_eq!(json["git_revision"], "abc1234");
        assert_eq!(json["machine"]["nproc"], 2);
        let first = &json["measurements"][0];
        assert_eq!(first["target"], "reservoir");
        assert_eq!(first["repetitions"].as_array().unwrap().len(), 3);
        assert_eq!(first["median"]["iops"], 90_000.0);
        assert_eq!(json["measurements"].as_array().unwrap().len(), 6);
        assert_eq!(first["repetitions"][0]["fio_sys_cpu_percent"], 30.0);
        assert_eq!(first["median"]["fio_usr_cpu_percent"], 12.0);
        let floor = &json["loopback_floor"];
        assert!(floor["method"]
            .as_str()
            .unwrap()
            .starts_with("two processes"));
        assert_eq!(floor["read_4k_round_trip"]["reply_bytes"], 4144);
        assert_eq!(floor["header_round_trip"]["p50_us"], 20.0);
        assert_eq!(floor["cross_cpu"]["server_cpu"], 1);
        assert_eq!(floor["cross_cpu"]["read_4k_round_trip"]["p50_us"], 60.0);
        assert_eq!(floor["stream_samples"].as_array().unwrap().len(), 5);
    }
}
