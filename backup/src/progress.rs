//! Progress of a long transfer, and its two renderings: a bar for a
//! terminal, a plain line for logs and pipes.

use std::fmt;
use std::time::{Duration, Instant};

/// A snapshot of a running backup or restore.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// Bytes of the volume handled (including what an earlier, resumed run
    /// already delivered).
    pub done_bytes: u64,
    pub total_bytes: u64,
    /// Bytes put on the wire by this run.
    pub wire_bytes: u64,
    pub elapsed: Duration,
    /// Volume bytes per second in this run.
    pub rate: f64,
    pub eta: Option<Duration>,
    pub finished: bool,
}

/// Builds [`Progress`] values and throttles them to a few per second.
#[derive(Debug)]
pub(crate) struct Meter {
    start: Instant,
    last: Option<Instant>,
    base: u64,
    total: u64,
}

impl Meter {
    const EVERY: Duration = Duration::from_millis(250);

    pub(crate) fn new(base: u64, total: u64) -> Meter {
        Meter {
            start: Instant::now(),
            last: None,
            base,
            total,
        }
    }

    /// `Some` when it is time to report (or when `finished`).
    pub(crate) fn tick(&mut self, done: u64, wire: u64, finished: bool) -> Option<Progress> {
        let now = Instant::now();
        if !finished && self.last.is_some_and(|l| now - l < Self::EVERY) {
            return None;
        }
        self.last = Some(now);
        let elapsed = now - self.start;
        let secs = elapsed.as_secs_f64();
        let rate = if secs > 0.0 {
            done.saturating_sub(self.base) as f64 / secs
        } else {
            0.0
        };
        let left = self.total.saturating_sub(done);
        let eta = (rate > 0.0).then(|| Duration::from_secs_f64(left as f64 / rate));
        Some(Progress {
            done_bytes: done,
            total_bytes: self.total,
            wire_bytes: wire,
            elapsed,
            rate,
            eta: if finished { Some(Duration::ZERO) } else { eta },
            finished,
        })
    }
}

fn mib(b: f64) -> f64 {
    b / (1024.0 * 1024.0)
}

impl Progress {
    pub fn fraction(&self) -> f64 {
        if self.total_bytes == 0 {
            1.0
        } else {
            (self.done_bytes as f64 / self.total_bytes as f64).min(1.0)
        }
    }

    /// `[=====>     ]  42%  1.2 GiB / 4.0 GiB  310.4 MiB/s  ETA 9s`, for a
    /// terminal (redraw with `\r`).
    pub fn bar(&self, width: usize) -> String {
        let filled = (self.fraction() * width as f64) as usize;
        let mut bar = "=".repeat(filled.min(width));
        if filled < width {
            bar.push('>');
            bar.push_str(&" ".repeat(width - filled - 1));
        }
        format!("[{bar}] {self}")
    }
}

impl fmt::Display for Progress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:3.0}%  {:.1} / {:.1} MiB  {:.1} MiB/s",
            self.fraction() * 100.0,
            mib(self.done_bytes as f64),
            mib(self.total_bytes as f64),
            mib(self.rate)
        )?;
        match self.eta {
            Some(eta) if !self.finished => write!(f, "  ETA {}s", eta.as_secs()),
            _ if self.finished => write!(f, "  done in {:.1}s", self.elapsed.as_secs_f64()),
            _ => Ok(()),
        }
    }
}
