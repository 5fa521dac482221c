//! libiscsi's `iscsi-perf`, a second client for one point: its command
//! line and its summary line.

use std::time::Duration;

use crate::error::ParseError;

/// Random 4 KiB reads (iscsi-perf's default transfer of 8 × 512-byte
/// blocks) with `requests` in flight for `runtime`.
pub fn args(url: &str, requests: u32, runtime: Duration) -> Vec<String> {
    vec![
        "-t".to_owned(),
        runtime.as_secs().max(1).to_string(),
        "-m".to_owned(),
        requests.to_string(),
        "-r".to_owned(),
        url.to_owned(),
    ]
}

/// iscsi-perf's result: average IOPS and MB/s over the run.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PerfResult {
    pub iops: f64,
    pub megabytes_per_second: f64,
}

const TOOL: &str = "iscsi-perf";

/// Parses the last "iops average N (M MB/s)" of iscsi-perf's output. Its
/// progress lines are separated by '\r', and the final summary repeats the
/// phrase, so the last occurrence is the whole run's average.
pub fn parse_output(output: &str) -> Result<PerfResult, ParseError> {
    let missing = ParseError::Missing {
        tool: TOOL,
        what: "an \"iops average N (M MB/s)\" summary",
    };
    let (_, tail) = output.rsplit_once("iops average").ok_or(missing)?;
    let mut words = tail.split_ascii_whitespace();
    let parsed = (|| {
        let iops = words.next()?.parse().ok()?;
        let mb = words.next()?.strip_prefix('(')?.parse().ok()?;
        (words.next()? == "MB/s)").then_some(PerfResult {
            iops,
            megabytes_per_second: mb,
        })
    })();
    parsed.ok_or(ParseError::Missing {
        tool: TOOL,
        what: "an \"iops average N (M MB/s)\" summary",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured against tgt (QD32, 3 s); progress lines end in '\r'.
    const OUTPUT: &str = "capacity is 2097152 blocks or 1073741824 byte (1024 MB)\n\
        performing RANDOM READ with 32 parallel requests\n\
        FIXED transfer size of 8 blocks (4096 byte)\n\
        will run for 3 seconds.\n\n\
        00:00:02 - lba 1527713, iops current 24558 (95 MB/s), iops average 24558 (95 MB/s), in_flight 32, busy 0        \r\
        00:00:01 - lba 281626, iops current 27756 (108 MB/s), iops average 26153 (102 MB/s), in_flight 32, busy 0        \r\
        iops average 26894 (105 MB/s)                                                        \n\nfinished.\n";

    #[test]
    fn takes_the_final_average() {
        assert_eq!(
            parse_output(OUTPUT).unwrap(),
            PerfResult {
                iops: 26894.0,
                megabytes_per_second: 105.0
            }
        );
    }

    #[test]
    fn rejects_output_without_summary() {
        assert!(parse_output("Failed to login to target\n").is_err());
        assert!(parse_output("iops average x (1 MB/s)").is_err());
    }

    #[test]
    fn args_name_runtime_and_depth() {
        let a = args(
            "iscsi://127.0.0.1:3260/iqn.x:y/0",
            32,
            Duration::from_secs(7),
        );
        assert_eq!(
            a,
            [
                "-t",
                "7",
                "-m",
                "32",
                "-r",
                "iscsi://127.0.0.1:3260/iqn.x:y/0"
            ]
        );
    }
}
