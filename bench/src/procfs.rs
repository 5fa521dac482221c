//! What the bench reads about a target process from /proc: CPU time
//! (`/proc/PID/stat`, proc(5)) and peak resident memory
//! (`VmHWM` in `/proc/PID/status`).

use std::path::PathBuf;

use anyhow::{Context, Result};

/// CPU time a process has used, in clock ticks (user + system, all threads).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks(pub u64);

/// Parses utime + stime out of a `/proc/PID/stat` line. The command name
/// (field 2) is in parentheses and may itself contain spaces or ')', so
/// fields are counted after the *last* ')'. utime and stime are fields 14
/// and 15 (1-based), i.e. the 12th and 13th after the name.
pub fn parse_stat_cpu(stat: &str) -> Option<CpuTicks> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(CpuTicks(utime + stime))
}

/// Parses `VmHWM` (peak resident set size) from `/proc/PID/status`, in KiB.
pub fn parse_vm_hwm_kib(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let mut words = line["VmHWM:".len()..].split_ascii_whitespace();
    let value = words.next()?.parse().ok()?;
    (words.next()? == "kB").then_some(value)
}

/// One reading of a live process.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcSample {
    pub cpu_seconds: f64,
    pub peak_rss_kib: u64,
}

/// Reads a live process's CPU time and peak RSS.
pub fn sample(pid: u32) -> Result<ProcSample> {
    let dir = PathBuf::from(format!("/proc/{pid}"));
    let stat = std::fs::read_to_string(dir.join("stat"))
        .with_context(|| format!("reading /proc/{pid}/stat (did the target exit?)"))?;
    let status = std::fs::read_to_string(dir.join("status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let ticks = parse_stat_cpu(&stat).with_context(|| format!("parsing /proc/{pid}/stat"))?;
    let peak_rss_kib =
        parse_vm_hwm_kib(&status).with_context(|| format!("no VmHWM in /proc/{pid}/status"))?;
    Ok(ProcSample {
        cpu_seconds: ticks.0 as f64 / clock_ticks_per_second(),
        peak_rss_kib,
    })
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a configuration value; no pointers involved.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // USER_HZ is 100 on every Linux ABI; the fallback only guards a failed call.
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

/// CPU seconds this process's waited-for children (fio, iscsi-perf and
/// their job processes) have used so far: the client side's cost.
pub fn children_cpu_seconds() -> f64 {
    // SAFETY: an all-zero rusage is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage for the call's duration.
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    // A real tgtd line, with a name holding spaces and ')' spliced in.
    const STAT: &str = "4242 (tgt d) x) S 1 4242 4242 0 -1 4194560 2216 0 0 0 \
                        1234 567 0 0 20 0 5 0 123456 123 456 18446744073709551615";

    #[test]
    fn stat_cpu_is_utime_plus_stime_after_the_last_paren() {
        assert_eq!(parse_stat_cpu(STAT), Some(CpuTicks(1234 + 567)));
    }

    #[test]
    fn stat_without_fields_is_rejected() {
        assert_eq!(parse_stat_cpu("1 (x) S 1 2"), None);
        assert_eq!(parse_stat_cpu("no parens"), None);
    }

    #[test]
    fn stat_of_this_process_parses() {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
        assert!(parse_stat_cpu(&stat).is_some());
    }

    #[test]
    fn vm_hwm_in_kib() {
        let status = "Name:\ttgtd\nVmPeak:\t  300000 kB\nVmHWM:\t   12345 kB\nVmRSS:\t 100 kB\n";
        assert_eq!(parse_vm_hwm_kib(status), Some(12345));
        assert_eq!(parse_vm_hwm_kib("VmHWM:\t12 MB\n"), None);
        assert_eq!(parse_vm_hwm_kib("Name:\tx\n"), None);
    }
}
