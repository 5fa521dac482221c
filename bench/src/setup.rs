//! Finding (or building) the tools a run needs, and describing the machine.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};

use crate::fio::lists_libiscsi;
use crate::report::Machine;

/// This crate's directory (`bench/`); the suite runs from a source tree.
pub fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn workspace_dir() -> PathBuf {
    bench_dir()
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `--out`, or bench/results; created if missing.
pub fn out_dir(args: &crate::Args) -> Result<PathBuf> {
    let dir = args
        .out
        .clone()
        .unwrap_or_else(|| bench_dir().join("results"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn has_libiscsi_engine(fio: &Path) -> bool {
    Command::new(fio)
        .arg("--enghelp")
        .output()
        .is_ok_and(|o| o.status.success() && lists_libiscsi(&String::from_utf8_lossy(&o.stdout)))
}

/// A fio that has the libiscsi engine: `explicit`, then the bench's cache,
/// then /opt/fio-libiscsi, then `fio` on PATH. Without one, builds it from
/// the distribution's source package into the cache (bench/scripts/build-fio.sh).
pub fn find_or_build_fio(explicit: Option<&Path>, cache: &Path) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if has_libiscsi_engine(path) {
            return Ok(path.to_owned());
        }
        bail!(
            "{} has no libiscsi ioengine (fio --enghelp)",
            path.display()
        );
    }
    let prefix = cache.join("fio");
    let candidates = [
        prefix.join("bin/fio"),
        PathBuf::from("/opt/fio-libiscsi/bin/fio"),
        PathBuf::from("fio"),
    ];
    if let Some(found) = candidates.iter().find(|p| has_libiscsi_engine(p)) {
        return Ok(found.clone());
    }
    let script = bench_dir().join("scripts/build-fio.sh");
    eprintln!(
        "reservoir-bench: no fio with the libiscsi engine; building one ({})",
        script.display()
    );
    let status = Command::new("bash")
        .arg(&script)
        .arg(&prefix)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        bail!("{} failed ({status})", script.display());
    }
    let built = prefix.join("bin/fio");
    if !has_libiscsi_engine(&built) {
        bail!("{} was built without the libiscsi engine", built.display());
    }
    Ok(built)
}

pub fn fio_version(fio: &Path) -> String {
    Command::new(fio)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|_| "fio (unknown version)".to_owned())
}

/// Installs the Debian packages that are missing (as root), or says which
/// to install.
pub fn ensure_debian_packages(packages: &[&str]) -> Result<()> {
    let missing: Vec<&str> = packages
        .iter()
        .copied()
        .filter(|p| {
            !Command::new("dpkg-query")
                .args(["-W", "-f=${Status}", p])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("install ok installed"))
        })
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        bail!(
            "missing Debian packages: {0}; install them with: sudo apt-get install -y {0}",
            missing.join(" ")
        );
    }
    eprintln!("reservoir-bench: installing {}", missing.join(" "));
    let ok = |mut c: Command| c.status().is_ok_and(|s| s.success());
    let mut update = Command::new("apt-get");
    update.args(["update", "-q"]);
    let mut install = Command::new("apt-get");
    install
        .env("DEBIAN_FRONTEND", "noninteractive")
        .args(["install", "-y", "-q", "--no-install-recommends"])
        .args(&missing);
    if !ok(update) || !ok(install) {
        bail!("apt-get could not install {}", missing.join(" "));
    }
    Ok(())
}

/// The release `reservoir` binary: `explicit`, else the one in this bench
/// binary's target directory, always brought up to date with `cargo build
/// --release -p reservoir` first (a no-op when it is), so a run never
/// measures a binary older than the revision it reports.
pub fn find_or_build_reservoir(explicit: Option<&Path>) -> Result<PathBuf> {
    if let Some(path) = explicit {
        if path.is_file() {
            return Ok(path.to_owned());
        }
        bail!("--reservoir {}: no such file", path.display());
    }
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .or_else(|| {
            // <target>/<profile>/reservoir-bench -> <target>
            let exe = std::env::current_exe().ok()?;
            Some(exe.parent()?.parent()?.to_path_buf())
        })
        .unwrap_or_else(|| workspace_dir().join("target"));
    let binary = target_dir.join("release/reservoir");
    eprintln!(
        "reservoir-bench: bringing {} up to date (cargo build --release -p reservoir)",
        binary.display()
    );
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(workspace_dir())
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--release", "-p", "reservoir"])
        .status()
        .context("running cargo")?;
    if !status.success() || !binary.is_file() {
        bail!("cargo build --release -p reservoir failed ({status})");
    }
    Ok(binary)
}

/// The workspace's git revision, with "-dirty" for uncommitted changes to
/// tracked files.
pub fn git_revision() -> String {
    let git = |args: &[&str]| {
        Command::new("git")
            .arg("-C")
            .arg(workspace_dir())
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    match git(&["rev-parse", "--short=12", "HEAD"]) {
        None => "unknown".to_owned(),
        Some(rev) => match git(&["status", "--porcelain", "--untracked-files=no"]) {
            Some(changes) if !changes.is_empty() => format!("{rev}-dirty"),
            _ => rev,
        },
    }
}

pub fn machine() -> Machine {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    Machine {
        nproc: std::thread::available_parallelism().map_or(1, usize::from),
        cpu_model: cpu_model(&cpuinfo).unwrap_or("unknown CPU").to_owned(),
        kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_else(|_| "unknown".to_owned()),
    }
}

fn cpu_model(cpuinfo: &str) -> Option<&str> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim())
}

/// Seconds since the epoch as `YYYY-MM-DDTHH:MM:SSZ`, and a file-name form
/// `YYYYMMDDTHHMMSSZ`.
pub fn utc_timestamp(now: SystemTime) -> (String, String) {
    let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let (y, m, d) = civil_from_days(i64::try_from(secs / 86_400).unwrap_or(0));
    let (hh, mm, ss) = (secs % 86_400 / 3600, secs % 3600 / 60, secs % 60);
    (
        format!("{y:04}-{m:02}-{d:02}T{hh:02}:{mm:02}:{ss:02}Z"),
        format!("{y:04}{m:02}{d:02}T{hh:02}{mm:02}{ss:02}Z"),
    )
}

/// Proleptic Gregorian date of a day count since 1970-01-01 (Howard
/// Hinnant's days-to-civil algorithm, eras of 400 years).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn timestamps_in_utc() {
        let at = |s| utc_timestamp(UNIX_EPOCH + Duration::from_secs(s));
        assert_eq!(at(0).0, "1970-01-01T00:00:00Z");
        assert_eq!(at(951_782_400).0, "2000-02-29T00:00:00Z");
        let (iso, file) = at(1_795_602_044);
        assert_eq!(iso, "2026-11-25T10:20:44Z");
        assert_eq!(file, "20261125T102044Z");
    }

    #[test]
    fn cpu_model_from_cpuinfo() {
        let text = "processor\t: 0\nvendor_id\t: X\nmodel name\t: Example CPU @ 2.0GHz\n";
        assert_eq!(cpu_model(text), Some("Example CPU @ 2.0GHz"));
        assert_eq!(cpu_model(""), None);
    }
}
