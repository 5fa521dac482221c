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
    pub const ALL: [Backing; 2] = [Backing::Ram, Backing::File];

    pub fn name(self) -> &'static str {
        match self {
            Backing::Ram => "ram",
            Backing::File => "file",
        }
    }
}

impl FromStr for Backing {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Backing::ALL
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backing {s:?}: choose from ram, file"))
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
    /// What `--workloads` selects it by.
    pub id: &'static str,
    pub name: &'static str,
    pub group: Group,
    pub pattern: Pattern,
    pub block_size: u32,
    pub iodepth: u32,
    /// fio jobs; each libiscsi job logs in its own session.
    pub sessions: u32,
}

const KIB: u32 = 1024;

const fn random(
    id: &'static str,
    name: &'static str,
    pattern: Pattern,
    iodepth: u32,
    sessions: u32,
) -> Workload {
    Workload {
        id,
        name,
        group: Group::Random,
        pattern,
        block_size: 4 * KIB,
        iodepth,
        sessions,
    }
}

const fn sequential(id: &'static str, name: &'static str, pattern: Pattern) -> Workload {
    Workload {
        id,
        name,
        group: Group::Sequential,
        pattern,
        block_size: 128 * KIB,
        iodepth: 8,
        sessions: 1,
    }
}

pub const RANDREAD_QD1: Workload =
    random("randread-qd1", "4k randread qd1", Pattern::RandRead, 1, 1);
pub const RANDREAD_QD32: Workload = random(
    "randread-qd32",
    "4k randread qd32",
    Pattern::RandRead,
    32,
    1,
);
pub const RANDREAD_QD128: Workload = random(
    "randread-qd128",
    "4k randread qd128",
    Pattern::RandRead,
    128,
    1,
);
pub const RANDWRITE_QD32: Workload = random(
    "randwrite-qd32",
    "4k randwrite qd32",
    Pattern::RandWrite,
    32,
    1,
);
pub const RANDRW_QD32: Workload = random(
    "randrw-qd32",
    "4k randrw 70/30 qd32",
    Pattern::RandRw { read_percent: 70 },
    32,
    1,
);
pub const SEQREAD_QD8: Workload = sequential("seqread-qd8", "128k read qd8", Pattern::SeqRead);
pub const SEQWRITE_QD8: Workload = sequential("seqwrite-qd8", "128k write qd8", Pattern::SeqWrite);
pub const RANDREAD_QD32_X4: Workload = random(
    "randread-qd32-x4",
    "4k randread qd32 x4 sessions",
    Pattern::RandRead,
    32,
    4,
);

/// What `--workloads` calls the iscsi-perf point (4 KiB random read, 32
/// in flight: libiscsi's own client as a second opinion on fio).
pub const ISCSI_PERF_ID: &str = "iscsi-perf";

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
/// file point and iscsi-perf on RAM), so a development run takes a minute
/// or two.
pub const QUICK_RAM: [Workload; 4] = [RANDREAD_QD1, RANDREAD_QD32, RANDWRITE_QD32, SEQREAD_QD8];
pub const QUICK_FILE: [Workload; 1] = [RANDREAD_QD32];

/// One cell of the matrix: a workload on one backing (each target runs it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    pub backing: Backing,
    pub workload: Workload,
}

/// What a run measures, in order: the fio points, then iscsi-perf on each
/// of `iscsi_perf`'s backings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub fio: Vec<Point>,
    pub iscsi_perf: Vec<Backing>,
}

impl Plan {
    /// The full or the `--quick` matrix, narrowed to `backings` and, when
    /// given, to the workloads named in `only` (ids, or `iscsi-perf`).
    pub fn new(quick: bool, backings: &[Backing], only: Option<&[String]>) -> Result<Plan, String> {
        if let Some(ids) = only {
            for id in ids {
                if id != ISCSI_PERF_ID && !FULL.iter().any(|w| w.id == id) {
                    let known: Vec<&str> = FULL.iter().map(|w| w.id).collect();
                    return Err(format!(
                        "unknown workload {id:?}: choose from {}, {ISCSI_PERF_ID}",
                        known.join(", ")
                    ));
                }
            }
        }
        let wanted = |id: &str| only.is_none_or(|ids| ids.iter().any(|i| i == id));
        let mut fio = Vec::new();
        let mut iscsi_perf = Vec::new();
        for backing in Backing::ALL {
            if !backings.contains(&backing) {
                continue;
            }
            let workloads: &[Workload] = match (quick, backing) {
                (true, Backing::Ram) => &QUICK_RAM,
                (true, Backing::File) => &QUICK_FILE,
                (false, _) => &FULL,
            };
            fio.extend(
                workloads
                    .iter()
                    .filter(|w| wanted(w.id))
                    .map(|&workload| Point { backing, workload }),
            );
            if wanted(ISCSI_PERF_ID) && (!quick || backing == Backing::Ram) {
                iscsi_perf.push(backing);
            }
        }
        if fio.is_empty() && iscsi_perf.is_empty() {
            return Err("--backing and --workloads leave nothing to measure".to_owned());
        }
        Ok(Plan { fio, iscsi_perf })
    }

    /// Whether a target of `kind` takes part in any point.
    pub fn involves(&self, kind: TargetKind) -> bool {
        self.backings()
            .any(|b| b == Backing::Ram || kind.serves_file())
    }

    /// The backings any point uses.
    pub fn backings(&self) -> impl Iterator<Item = Backing> + '_ {
        Backing::ALL
            .into_iter()
            .filter(|b| self.fio.iter().any(|p| p.backing == *b) || self.iscsi_perf.contains(b))
    }

    /// Client runs per repetition when `kinds` are the targets.
    pub fn runs_per_rep(&self, kinds: &[TargetKind]) -> usize {
        let serving = |backing: Backing| {
            kinds
                .iter()
                .filter(|k| backing == Backing::Ram || k.serves_file())
                .count()
        };
        self.fio.iter().map(|p| serving(p.backing)).sum::<usize>()
            + self.iscsi_perf.iter().map(|&b| serving(b)).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn full_matrix_covers_what_the_issue_lists() {
        let plan = Plan::new(false, &Backing::ALL, None).unwrap();
        assert_eq!(plan.fio.len(), 16);
        for backing in Backing::ALL {
            for w in [
                RANDREAD_QD1,
                RANDREAD_QD32,
                RANDREAD_QD128,
                RANDWRITE_QD32,
                RANDRW_QD32,
                SEQREAD_QD8,
                SEQWRITE_QD8,
                RANDREAD_QD32_X4,
            ] {
                assert!(plan.fio.contains(&Point {
                    backing,
                    workload: w
                }));
            }
        }
        assert_eq!(plan.iscsi_perf, Backing::ALL);
        // 8 RAM points on 3 targets, 8 file points on 2, iscsi-perf on both.
        assert_eq!(plan.runs_per_rep(&TargetKind::ALL), 24 + 16 + 3 + 2);
    }

    #[test]
    fn workload_ids_are_unique() {
        for (i, a) in FULL.iter().enumerate() {
            assert!(FULL[i + 1..]
                .iter()
                .all(|b| b.id != a.id && b.name != a.name));
            assert_ne!(a.id, ISCSI_PERF_ID);
        }
    }

    #[test]
    fn quick_matrix_is_small() {
        let plan = Plan::new(true, &Backing::ALL, None).unwrap();
        assert_eq!(plan.fio.len(), 5);
        assert_eq!(plan.iscsi_perf, [Backing::Ram]);
    }

    #[test]
    fn file_only_subset_leaves_istgt_out() {
        let plan = Plan::new(false, &[Backing::File], None).unwrap();
        assert!(plan.fio.iter().all(|p| p.backing == Backing::File));
        assert_eq!(plan.fio.len(), 8);
        assert_eq!(plan.iscsi_perf, [Backing::File]);
        assert!(plan.involves(TargetKind::Tgt));
        assert!(!plan.involves(TargetKind::Istgt));
    }

    #[test]
    fn workload_filter() {
        let plan = Plan::new(
            false,
            &Backing::ALL,
            Some(&ids(&["randread-qd1", "seqwrite-qd8"])),
        )
        .unwrap();
        assert_eq!(plan.fio.len(), 4);
        assert!(plan.iscsi_perf.is_empty());
        let plan = Plan::new(false, &[Backing::Ram], Some(&ids(&["iscsi-perf"]))).unwrap();
        assert!(plan.fio.is_empty());
        assert_eq!(plan.iscsi_perf, [Backing::Ram]);
        assert!(Plan::new(false, &Backing::ALL, Some(&ids(&["randread-qd2"]))).is_err());
        // Quick has no file iscsi-perf and no QD128: nothing left.
        assert!(Plan::new(true, &[Backing::File], Some(&ids(&["randread-qd128"]))).is_err());
    }

    #[test]
    fn backing_names_round_trip() {
        for b in Backing::ALL {
            assert_eq!(b.name().parse::<Backing>(), Ok(b));
        }
        assert!("disk".parse::<Backing>().is_err());
    }

    #[test]
    fn target_names_round_trip() {
        for t in TargetKind::ALL {
            assert_eq!(t.name().parse::<TargetKind>(), Ok(t));
        }
        assert!("lio".parse::<TargetKind>().is_err());
    }
}
