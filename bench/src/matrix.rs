//! What is measured: workloads, the LUN behind them, and the targets.

use std::fmt;
use std::str::FromStr;

use serde::Serialize;

/// The iSCSI targets compared side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetKind {
    Reservoir,
    Tgt,
    Istgt,
}

impl TargetKind {
    pub const ALL: [TargetKind; 3] = [TargetKind::Reservoir, TargetKind::Tgt, TargetKind::Istgt];

    pub fn name(self) -> &'static str {
        match self {
            TargetKind::Reservoir => "reservoir",
            TargetKind::Tgt => "tgt",
            TargetKind::Istgt => "istgt",
        }
    }

    /// Whether the target takes part in the file-backed matrix. The issue
    /// compares Reservoir's O_DIRECT `file` volume with tgt's file backing
    /// store; istgt has no direct-I/O backing store to compare.
    pub fn serves_file(self) -> bool {
        matches!(self, TargetKind::Reservoir | TargetKind::Tgt)
    }
}

impl fmt::Display for TargetKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for TargetKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TargetKind::ALL
            .into_iter()
            .find(|t| t.name() == s)
            .ok_or_else(|| format!("unknown target {s:?}: choose from reservoir, tgt, istgt"))
    }
}

/// Where the LUN's blocks live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backing {
    /// 1 GiB in RAM: Reservoir's malloc bdev, a /dev/shm file for the peers.
    Ram,
    /// 1 GiB file on local disk, opened with O_DIRECT by both targets.
    File,
}

impl Backing {
    pub fn name(self) -> &'static str {
        match self {
            Backing::Ram => "ram",
            Backing::File => "file",
        }
    }
}

/// fio's access pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pattern {
    RandRead,
    RandWrite,
    /// Random mix; the share of reads in percent.
    RandRw {
        read_percent: u8,
    },
    SeqRead,
    SeqWrite,
}

impl Pattern {
    /// fio's `--rw` value.
    pub fn fio_rw(self) -> &'static str {
        match self {
            Pattern::RandRead => "randread",
            Pattern::RandWrite => "randwrite",
            Pattern::RandRw { .. } => "randrw",
            Pattern::SeqRead => "read",
            Pattern::SeqWrite => "write",
        }
    }
}

/// Charts and tables group workloads by what their numbers mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Group {
    /// Small random I/O: compared in IOPS.
    Random,
    /// Large sequential I/O: compared in MB/s.
    Sequential,
}

impl Group {
    pub fn name(self) -> &'static str {
        match self {
            Group::Random => "random",
            Group::Sequential => "sequential",
        }
    }
}

/// One fio job shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Workload {
    pub name: &'static str,
    pub group: Group,
    pub pattern: Pattern,
    pub block_size: u32,
    pub iodepth: u32,
    /// fio jobs; each libiscsi job logs in its own session.
    pub sessions: u32,
}

const KIB: u32 = 1024;

const fn random(name: &'static str, pattern: Pattern, iodepth: u32, sessions: u32) -> Workload {
    Workload {
        name,
        group: Group::Random,
        pattern,
        block_size: 4 * KIB,
        iodepth,
        sessions,
    }
}

const fn sequential(name: &'static str, pattern: Pattern) -> Workload {
    Workload {
        name,
        group: Group::Sequential,
        pattern,
        block_size: 128 * KIB,
        iodepth: 8,
        sessions: 1,
    }
}

pub const RANDREAD_QD1: Workload = random("4k randread qd1", Pattern::RandRead, 1, 1);
pub const RANDREAD_QD32: Workload = random("4k randread qd32", Pattern::RandRead, 32, 1);
pub const RANDREAD_QD128: Workload = random("4k randread qd128", Pattern::RandRead, 128, 1);
pub const RANDWRITE_QD32: Workload = random("4k randwrite qd32", Pattern::RandWrite, 32, 1);
pub const RANDRW_QD32: Workload = random(
    "4k randrw 70/30 qd32",
    Pattern::RandRw { read_percent: 70 },
    32,
    1,
);
pub const SEQREAD_QD8: Workload = sequential("128k read qd8", Pattern::SeqRead);
pub const SEQWRITE_QD8: Workload = sequential("128k write qd8", Pattern::SeqWrite);
pub const RANDREAD_QD32_X4: Workload =
    random("4k randread qd32 x4 sessions", Pattern::RandRead, 32, 4);

/// The full matrix, run on every backing.
pub const FULL: [Workload; 8] = [
    RANDREAD_QD1,
    RANDREAD_QD32,
    RANDREAD_QD128,
    RANDWRITE_QD32,
    RANDRW_QD32,
    SEQREAD_QD8,
    SEQWRITE_QD8,
    RANDREAD_QD32_X4,
];

/// `--quick`: the points the goals are stated in, RAM only (plus one
/// file point), so a development run takes a minute or two.
pub const QUICK_RAM: [Workload; 4] = [RANDREAD_QD1, RANDREAD_QD32, RANDWRITE_QD32, SEQREAD_QD8];
pub const QUICK_FILE: [Workload; 1] = [RANDREAD_QD32];

/// One cell of the matrix: a workload on one backing (each target runs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    pub backing: Backing,
    pub workload: Workload,
}

/// The points of a run, in the order they are measured.
pub fn points(quick: bool) -> Vec<Point> {
    let (ram, file): (&[Workload], &[Workload]) = if quick {
        (&QUICK_RAM, &QUICK_FILE)
    } else {
        (&FULL, &FULL)
    };
    let at = |backing| move |&workload| Point { backing, workload };
    ram.iter()
        .map(at(Backing::Ram))
        .chain(file.iter().map(at(Backing::File)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_matrix_covers_both_backings() {
        let points = points(false);
        assert_eq!(points.len(), 16);
        assert!(points
            .iter()
            .any(|p| p.backing == Backing::File && p.workload == RANDREAD_QD32_X4));
    }

    #[test]
    fn quick_matrix_is_small() {
        assert_eq!(points(true).len(), 5);
    }

    #[test]
    fn target_names_round_trip() {
        for t in TargetKind::ALL {
            assert_eq!(t.name().parse::<TargetKind>(), Ok(t));
        }
        assert!("lio".parse::<TargetKind>().is_err());
    }
}
