//! libiscsi's SCSI/iSCSI conformance suite (`iscsi-test-cu`) against the real
//! daemon, once with RAM volumes and once with file volumes (whose transfers
//! take the worker-thread offload path). Every test named in
//! `conformance/must-pass.txt` must pass on both; the full per-test result goes
//! to `target/conformance-results{,-file}.txt` and each suite's raw output to
//! `target/conformance-logs{,-file}/`.
//!
//! Debugging aids, read only here:
//! - `RESERVOIR_CONFORMANCE_URL=iscsi://host:port/iqn/lun` runs the suite
//!   against that LUN instead of starting the daemon (e.g. tgt, to check the
//!   runner); `RESERVOIR_CONFORMANCE_RO_URL` adds a read-only LUN for the
//!   `ReadOnly` suite, which is otherwise not run in that mode. The backing is
//!   then the other target's, so only the RAM run is made.
//! - `RESERVOIR_CONFORMANCE_SUITES=Inquiry,Read10` runs only those suites and
//!   checks only their must-pass tests.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use support::{Backend, Config, Daemon, INITIATOR_1, INITIATOR_2};

/// libiscsi's test family that holds every suite exactly once.
const FAMILY: &str = "ALL";
/// A suite that has not finished by then is killed and its missing tests fail.
/// The slowest suite against tgt (Reserve6) takes about 6 s.
const SUITE_TIMEOUT: Duration = Duration::from_secs(60);
/// Once the run has taken this long, the remaining suites are not started
/// (their tests fail), so a target that hangs every suite cannot hold CI for
/// an hour. The whole run against tgt takes about 22 s.
const RUN_BUDGET: Duration = Duration::from_secs(10 * 60);
/// Suites that need a read-only LUN.
const READ_ONLY_SUITES: &[&str] = &["ReadOnly"];
/// Suites that log in twice to the same LUN (given as a second URL).
const MULTIPATH_SUITES: &[&str] = &["MultipathIO"];

const RW_IQN: &str = "iqn.2026-11.io.reservoir:conformance";
const RO_IQN: &str = "iqn.2026-11.io.reservoir:conformance-ro";

/// What the daemon's volumes are backed by; each backing is a separate run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backing {
    /// Malloc volumes: transfers run inline on the connection's thread.
    Ram,
    /// Sparse files in the daemon's scratch directory: READ, WRITE and
    /// SYNCHRONIZE CACHE run on worker threads and complete out of line.
    File,
}

impl Backing {
    fn backend(self, volume: &str) -> Backend {
        match self {
            Backing::Ram => Backend::Malloc,
            Backing::File => Backend::File {
                file_name: format!("{volume}.img"),
            },
        }
    }

    fn label(self) -> &'static str {
        match self {
            Backing::Ram => "RAM volumes",
            Backing::File => "file volumes",
        }
    }

    /// Appended to the result file and log directory names, so the two runs
    /// (which cargo may run at the same time) keep apart.
    fn suffix(self) -> &'static str {
        match self {
            Backing::Ram => "",
            Backing::File => "-file",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Pass,
    Fail,
    /// CUnit counts these as passed; libiscsi marks them `[SKIPPED]` because
    /// the target lacks a feature the test needs.
    Skip,
}

impl Outcome {
    fn label(self) -> &'static str {
        match self {
            Outcome::Pass => "PASS",
            Outcome::Fail => "FAIL",
            Outcome::Skip => "SKIP",
        }
    }
}

/// One test's verdict as CUnit printed it: `Suite.Test`.
#[derive(Debug, PartialEq, Eq)]
struct Verdict {
    suite: String,
    test: String,
    outcome: Outcome,
}

/// Parses `iscsi-test-cu`'s verbose CUnit output.
///
/// CUnit prints `Suite: S`, then per test `  Test: T ...` followed by the
/// test's own log lines and finally `passed` or `FAILED` — right after the
/// `...` or at the start of a line (libiscsi's log lines are indented, and
/// its messages say `[FAILED]` in brackets). A `[SKIPPED]` message between
/// the test line and a `passed` verdict makes it a skip.
fn parse_cunit(output: &str) -> Vec<Verdict> {
    let mut verdicts = Vec::new();
    let mut suite: Option<&str> = None;
    let mut open: Option<(&str, bool)> = None; // (test, saw [SKIPPED])
    for line in output.lines() {
        if let Some(name) = line.strip_prefix("Suite: ") {
            suite = Some(name.trim());
            open = None;
            continue;
        }
        let rest = if let Some(test_line) = line.strip_prefix("  Test: ") {
            let Some((test, rest)) = test_line.split_once(" ...") else {
                continue;
            };
            open = Some((test, false));
            rest
        } else {
            line
        };
        let (Some(suite), Some((test, skipped))) = (suite, open.as_mut()) else {
            continue;
        };
        let outcome = if rest.starts_with("passed") {
            Some(if *skipped {
                Outcome::Skip
            } else {
                Outcome::Pass
            })
        } else if rest.starts_with("FAILED") {
            Some(Outcome::Fail)
        } else {
            *skipped |= rest.contains("[SKIPPED]");
            None
        };
        if let Some(outcome) = outcome {
            verdicts.push(Verdict {
                suite: suite.to_owned(),
                test: (*test).to_owned(),
                outcome,
            });
            open = None;
        }
    }
    verdicts
}

/// The suites of [`FAMILY`] and their tests, from `iscsi-test-cu --list`.
fn list_suites(tool: &Path) -> Vec<(String, Vec<String>)> {
    let output = support::run(Command::new(tool).arg("--list"));
    assert!(
        output.status.success(),
        "{} --list failed: {}",
        tool.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    let mut suites: Vec<(String, Vec<String>)> = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let mut parts = line.trim().split('.');
        if parts.next() != Some(FAMILY) {
            continue;
        }
        match (parts.next(), parts.next(), parts.next()) {
            (Some(suite), None, None) => suites.push((suite.to_owned(), Vec::new())),
            (Some(suite), Some(test), None) => match suites.last_mut() {
                Some((last, tests)) if last == suite => tests.push(test.to_owned()),
                _ => panic!("--list printed test {line} outside its suite"),
            },
            _ => {}
        }
    }
    assert!(
        !suites.is_empty(),
        "iscsi-test-cu --list printed no {FAMILY} suites"
    );
    suites
}

/// `conformance/must-pass.txt`: one `ALL.Suite.Test` per line, `#` comments.
fn must_pass() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conformance/must-pass.txt");
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
        .collect()
}

/// The cargo target directory (parent of `CARGO_TARGET_TMPDIR`).
fn target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("CARGO_TARGET_TMPDIR has a parent")
        .to_owned()
}

/// The LUNs under test: the daemon's, or those named in the environment.
struct Luns {
    read_write: String,
    read_only: Option<String>,
    /// Keeps the daemon running for the whole run when we started it.
    daemon: Option<Daemon>,
}

impl Luns {
    /// The LUNs named in the environment, if any (see the module comment).
    fn from_env() -> Option<Luns> {
        let url = std::env::var("RESERVOIR_CONFORMANCE_URL").ok()?;
        Some(Luns {
            read_write: url,
            read_only: std::env::var("RESERVOIR_CONFORMANCE_RO_URL").ok(),
            daemon: None,
        })
    }

    fn daemon(backing: Backing) -> Luns {
        // 1 GiB like the tgt baseline; malloc pages and sparse file blocks are
        // only allocated when written.
        let config = Config::default()
            .volume("vol0", backing.backend("vol0"), 1024)
            .volume("vol1", backing.backend("vol1"), 64)
            .target(RW_IQN, &["vol0"])
            .target(RO_IQN, &["vol1"])
            .read_only();
        let daemon = Daemon::start(&config);
        Luns {
            read_write: daemon.url(RW_IQN, 0),
            read_only: Some(daemon.url(RO_IQN, 0)),
            daemon: Some(daemon),
        }
    }

    /// The URL arguments for one suite, or `None` if it cannot run here.
    fn urls_for(&self, suite: &str) -> Option<Vec<&str>> {
        if READ_ONLY_SUITES.contains(&suite) {
            return self.read_only.as_deref().map(|url| vec![url]);
        }
        let url = self.read_write.as_str();
        if MULTIPATH_SUITES.contains(&suite) {
            Some(vec![url, url])
        } else {
            Some(vec![url])
        }
    }
}

/// Runs one suite; returns its verdicts and why some are missing, if any.
fn run_suite(
    tool: &Path,
    suite: &str,
    urls: &[&str],
    log: &Path,
) -> (Vec<Verdict>, Option<String>) {
    let log_file = File::create(log).expect("create suite log");
    let mut child = Command::new(tool)
        .arg("--dataloss")
        .arg(format!("--initiator-name={INITIATOR_1}"))
        .arg(format!("--initiator-name-2={INITIATOR_2}"))
        .arg(format!("--test={FAMILY}.{suite}"))
        .args(urls)
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("clone log handle"))
        .stderr(log_file)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tool.display()));
    let deadline = Instant::now() + SUITE_TIMEOUT;
    let problem = loop {
        if let Some(status) = child.try_wait().expect("poll iscsi-test-cu") {
            break (!status.success()).then(|| format!("iscsi-test-cu exited with {status}"));
        }
        if Instant::now() > deadline {
            child.kill().expect("kill iscsi-test-cu");
            child.wait().expect("reap iscsi-test-cu");
            break Some(format!("timed out after {SUITE_TIMEOUT:?}"));
        }
        thread::sleep(Duration::from_millis(20));
    };
    let output = fs::read(log).expect("read suite log");
    (parse_cunit(&String::from_utf8_lossy(&output)), problem)
}

#[test]
fn libiscsi_conformance() {
    run_conformance(Backing::Ram);
}

#[test]
fn libiscsi_conformance_file_volumes() {
    run_conformance(Backing::File);
}

/// Runs every suite against a daemon with `backing` volumes (or the LUNs in
/// the environment) and fails unless every must-pass test passed.
fn run_conformance(backing: Backing) {
    let env_luns = Luns::from_env();
    if env_luns.is_some() && backing != Backing::Ram {
        println!(
            "RESERVOIR_CONFORMANCE_URL is set: the run on {} is not made",
            backing.label()
        );
        return;
    }
    let tool = support::require_tool("iscsi-test-cu");
    let suites = list_suites(&tool);
    let known: BTreeSet<String> = suites
        .iter()
        .flat_map(|(suite, tests)| tests.iter().map(move |t| format!("{FAMILY}.{suite}.{t}")))
        .collect();
    let must_pass = must_pass();
    let unknown: Vec<&String> = must_pass.iter().filter(|t| !known.contains(*t)).collect();
    assert!(
        unknown.is_empty(),
        "must-pass.txt names tests iscsi-test-cu does not have: {unknown:?}"
    );

    let only: Option<Vec<String>> = std::env::var("RESERVOIR_CONFORMANCE_SUITES")
        .ok()
        .map(|list| list.split(',').map(|s| s.trim().to_owned()).collect());
    if let Some(only) = &only {
        let unknown: Vec<&String> = only
            .iter()
            .filter(|name| !suites.iter().any(|(suite, _)| suite == *name))
            .collect();
        assert!(
            unknown.is_empty(),
            "RESERVOIR_CONFORMANCE_SUITES names unknown suites: {unknown:?}"
        );
    }
    let mut luns = env_luns.unwrap_or_else(|| Luns::daemon(backing));
    let log_dir = target_dir().join(format!("conformance-logs{}", backing.suffix()));
    fs::create_dir_all(&log_dir).expect("create log dir");

    let started = Instant::now();
    let mut results: Vec<(String, Outcome, Option<String>)> = Vec::new();
    let mut timings = String::new();
    let mut skipped_suites = Vec::new();
    for (suite, tests) in &suites {
        if only.as_ref().is_some_and(|only| !only.contains(suite)) {
            continue;
        }
        let Some(urls) = luns.urls_for(suite) else {
            skipped_suites.push(suite.clone());
            continue;
        };
        let suite_started = Instant::now();
        let log = log_dir.join(format!("{suite}.log"));
        let (verdicts, problem) = if started.elapsed() > RUN_BUDGET {
            let why = format!("not started: the run exceeded its {RUN_BUDGET:?} budget");
            (Vec::new(), Some(why))
        } else {
            run_suite(&tool, suite, &urls, &log)
        };
        writeln!(
            timings,
            "{suite} {:.2}s",
            suite_started.elapsed().as_secs_f64()
        )
        .unwrap();
        let by_test: BTreeMap<&str, Outcome> = verdicts
            .iter()
            .filter(|v| v.suite == *suite)
            .map(|v| (v.test.as_str(), v.outcome))
            .collect();
        for test in tests {
            let name = format!("{FAMILY}.{suite}.{test}");
            match by_test.get(test.as_str()) {
                Some(outcome) => results.push((name, *outcome, None)),
                None => {
                    let why = problem
                        .clone()
                        .unwrap_or_else(|| "no verdict printed".to_owned());
                    results.push((name, Outcome::Fail, Some(why)));
                }
            }
        }
        if let Some(daemon) = luns.daemon.as_mut() {
            assert!(
                daemon.is_running(),
                "reservoir serve died during suite {suite}; see {}",
                log.display()
            );
        }
    }
    let elapsed = started.elapsed();

    let outcome_of: BTreeMap<&str, Outcome> = results
        .iter()
        .map(|(name, outcome, _)| (name.as_str(), *outcome))
        .collect();
    let checked: Vec<&String> = must_pass
        .iter()
        .filter(|name| outcome_of.contains_key(name.as_str()) || only.is_none())
        .collect();
    let missed: Vec<String> = checked
        .iter()
        .filter(|name| outcome_of.get(name.as_str()) != Some(&Outcome::Pass))
        .map(|name| {
            let got = outcome_of
                .get(name.as_str())
                .map_or("NOT RUN", |o| o.label());
            format!("{name} {got}")
        })
        .collect();
    let passed = results
        .iter()
        .filter(|(_, o, _)| *o == Outcome::Pass)
        .count();
    let summary = format!(
        "conformance on {}: {} of {} must-pass tests passed; {passed} of {} in the families run",
        backing.label(),
        checked.len() - missed.len(),
        checked.len(),
        results.len()
    );

    let mut report = String::new();
    writeln!(report, "# {summary}").unwrap();
    writeln!(report, "# target: {}", luns.read_write).unwrap();
    for (label, outcome) in [
        ("PASS", Outcome::Pass),
        ("FAIL", Outcome::Fail),
        ("SKIP", Outcome::Skip),
    ] {
        let n = results.iter().filter(|(_, o, _)| *o == outcome).count();
        writeln!(report, "# {label} {n}").unwrap();
    }
    writeln!(
        report,
        "# took {:.1}s; suites not run: {skipped_suites:?}",
        elapsed.as_secs_f64()
    )
    .unwrap();
    for (name, outcome, note) in &results {
        match note {
            Some(note) => writeln!(report, "{name} {} # {note}", outcome.label()).unwrap(),
            None => writeln!(report, "{name} {}", outcome.label()).unwrap(),
        }
    }
    let report_path = target_dir().join(format!("conformance-results{}.txt", backing.suffix()));
    fs::write(&report_path, &report).expect("write conformance results");

    println!("{summary}");
    println!("took {:.1}s; per suite:\n{timings}", elapsed.as_secs_f64());
    println!(
        "results: {}; logs: {}",
        report_path.display(),
        log_dir.display()
    );
    assert!(
        missed.is_empty(),
        "{summary}\nmust-pass tests that did not pass (logs in {}):\n{}",
        log_dir.display(),
        missed.join("\n")
    );
}

#[cfg(test)]
mod parser {
    use super::{parse_cunit, Outcome, Verdict};

    fn verdict(suite: &str, test: &str, outcome: Outcome) -> Verdict {
        Verdict {
            suite: suite.to_owned(),
            test: test.to_owned(),
            outcome,
        }
    }

    #[test]
    fn pass_fail_and_skip() {
        let output = [
            "     CUnit - A unit testing framework for C - Version 2.1-3",
            "",
            "Suite: GetLBAStatus",
            "  Test: Simple ...passed",
            "  Test: BeyondEol ...    [FAILED] GET_LBA_STATUS successful but should have failed",
            "FAILED",
            "    1. test_get_lba_status_beyond_eol.c:38  - CU_ASSERT_EQUAL(_r,0)",
            "  Test: UnmapSingle ...    [SKIPPED] Logical unit is fully provisioned. Skipping test",
            "passed",
            "Suite: iSCSIdatasn",
            "  Test: iSCSIDataSnInvalid ...FAILED",
            "    1. test_iscsi_datasn_invalid.c:98  - CU_ASSERT_NOT_EQUAL(ret,0)",
            "",
            "Run Summary:    Type  Total    Ran Passed Failed Inactive",
            "               tests      4      4      2      2        0",
        ]
        .join("\n");
        assert_eq!(
            parse_cunit(&output),
            vec![
                verdict("GetLBAStatus", "Simple", Outcome::Pass),
                verdict("GetLBAStatus", "BeyondEol", Outcome::Fail),
                verdict("GetLBAStatus", "UnmapSingle", Outcome::Skip),
                verdict("iSCSIdatasn", "iSCSIDataSnInvalid", Outcome::Fail),
            ]
        );
    }

    #[test]
    fn bracketed_failed_message_is_not_a_verdict() {
        // libiscsi may log "[FAILED]" yet CUnit records the test as passed.
        let output = [
            "Suite: WriteSame10",
            "  Test: UnmapVPD ...    [FAILED] WRITESAME10 command failed with status 2",
            "passed",
            "  Test: Check ...passed",
        ]
        .join("\n");
        assert_eq!(
            parse_cunit(&output),
            vec![
                verdict("WriteSame10", "UnmapVPD", Outcome::Pass),
                verdict("WriteSame10", "Check", Outcome::Pass),
            ]
        );
    }

    #[test]
    fn multi_line_log_and_trailing_text() {
        let output = [
            "Suite: Reserve6",
            "  Test: 2Initiators ...    Take out a RESERVE6 from the first initiator",
            "    [FAILED] MODESENSE6 successful but should have failed",
            "    RELEASE6 from the second initiator",
            "FAILED",
            "    1. test_reserve6_2initiators.c:70  - CU_ASSERT_EQUAL(_r,0)",
            "  Test: Logout ...    Take out a RESERVE6 from the first initiator",
            "passed",
            // Text after the verdict belongs to the suite's cleanup.
            "  Test: LUNReset ...passed    [SKIPPED] cleanup message",
            "",
            "Suite: Sanitize",
            "  Test: BlockErase ...    [SKIPPED] --allow-sanitize flag is not set. Skipping test.",
            "passed",
        ]
        .join("\n");
        assert_eq!(
            parse_cunit(&output),
            vec![
                verdict("Reserve6", "2Initiators", Outcome::Fail),
                verdict("Reserve6", "Logout", Outcome::Pass),
                verdict("Reserve6", "LUNReset", Outcome::Pass),
                verdict("Sanitize", "BlockErase", Outcome::Skip),
            ]
        );
    }

    #[test]
    fn test_without_verdict_is_dropped() {
        // A crash mid-test leaves no verdict; the runner reports it as a failure.
        let output = "Suite: Read10\n  Test: Simple ...passed\n  Test: BeyondEol ...";
        assert_eq!(
            parse_cunit(output),
            vec![verdict("Read10", "Simple", Outcome::Pass)]
        );
    }
}
