//! What the appliance remembers between backups of one volume, and the
//! pure decision of what the next `backup run` sends.
//!
//! The record is `<data_dir>/backups/<volume>.json`, written crash-atomically
//! before the snapshot is taken and after the server commits, so a run that
//! dies anywhere is retried with the same snapshot and parent, which is what
//! lets the server resume it (resume matches an identical stream header).

use reservoir_backup::BackupId;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupState {
    /// The snapshot the last complete backup was taken from: the base of
    /// the next incremental.
    pub last_snapshot: Option<String>,
    pub last_backup_id: Option<BackupId>,
    /// A backup started but not known to be committed.
    pub pending: Option<Pending>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    pub snapshot: String,
    /// `None`: a full backup.
    pub parent: Option<BackupId>,
}

/// What the next run does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub pending: Pending,
    /// The snapshot does not exist yet: record `pending`, then take it.
    pub take_snapshot: bool,
    /// The snapshot the changed set is computed from; `None` for a full backup.
    pub base: Option<String>,
}

impl BackupState {
    /// Decides the next run. `exists` says whether the volume has a snapshot
    /// of that name; `now_unix` names a new one.
    pub fn plan(&self, exists: impl Fn(&str) -> bool, now_unix: u64) -> Plan {
        // An incremental needs both the parent backup and the snapshot it
        // was taken from; without the snapshot there is no changed set.
        let base = match (&self.last_snapshot, self.last_backup_id) {
            (Some(snapshot), Some(id)) if exists(snapshot) => Some((snapshot.clone(), id)),
            _ => None,
        };
        match &self.pending {
            // A retry: same snapshot, same parent, so the same header.
            Some(p) if exists(&p.snapshot) => {
                let base = base.filter(|_| p.parent.is_some());
                Plan {
                    pending: Pending {
                        snapshot: p.snapshot.clone(),
                        parent: base.as_ref().and(p.parent),
                    },
                    take_snapshot: false,
                    base: base.map(|(s, _)| s),
                }
            }
            // First run, or the pending snapshot was never taken (or was
            // deleted): a new name, never the old one, so a server-side
            // partial of other content cannot be resumed into it.
            stale => {
                let taken =
                    |name: &str| exists(name) || stale.as_ref().is_some_and(|p| p.snapshot == name);
                let mut snapshot = format!("bk-{now_unix}");
                let mut n = 1;
                while taken(&snapshot) {
                    snapshot = format!("bk-{now_unix}-{n}");
                    n += 1;
                }
                Plan {
                    pending: Pending {
                        snapshot,
                        parent: base.as_ref().map(|&(_, id)| id),
                    },
                    take_snapshot: true,
                    base: base.map(|(s, _)| s),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(last: Option<(&str, u64)>, pending: Option<(&str, Option<u64>)>) -> BackupState {
        BackupState {
            last_snapshot: last.map(|(s, _)| s.to_owned()),
            last_backup_id: last.map(|(_, id)| BackupId(id)),
            pending: pending.map(|(s, p)| Pending {
                snapshot: s.to_owned(),
                parent: p.map(BackupId),
            }),
        }
    }

    #[test]
    fn first_backup_is_full_under_a_new_snapshot() {
        let plan = BackupState::default().plan(|_| false, 100);
        assert_eq!(plan.pending.snapshot, "bk-100");
        assert_eq!(plan.pending.parent, None);
        assert!(plan.take_snapshot);
        assert_eq!(plan.base, None);
    }

    #[test]
    fn next_backup_is_incremental_on_the_last_one() {
        let plan = state(Some(("bk-100", 7)), None).plan(|s| s == "bk-100", 200);
        assert_eq!(plan.pending.snapshot, "bk-200");
        assert_eq!(plan.pending.parent, Some(BackupId(7)));
        assert_eq!(plan.base.as_deref(), Some("bk-100"));
    }

    #[test]
    fn a_retry_reuses_the_pending_snapshot_and_parent() {
        let s = state(Some(("bk-100", 7)), Some(("bk-200", Some(7))));
        let plan = s.plan(|n| n == "bk-100" || n == "bk-200", 300);
        assert_eq!(plan.pending, s.pending.clone().unwrap());
        assert!(!plan.take_snapshot);
        assert_eq!(plan.base.as_deref(), Some("bk-100"));
        // A pending full backup (after a pruned parent) stays full.
        let s = state(Some(("bk-100", 7)), Some(("bk-200", None)));
        let plan = s.plan(|n| n == "bk-100" || n == "bk-200", 300);
        assert_eq!(plan.pending.parent, None);
        assert_eq!(plan.base, None);
    }

    #[test]
    fn a_lost_base_snapshot_means_a_full_backup() {
        let plan = state(Some(("bk-100", 7)), None).plan(|_| false, 200);
        assert_eq!(plan.pending.parent, None);
        assert_eq!(plan.base, None);
        let s = state(Some(("bk-100", 7)), Some(("bk-200", Some(7))));
        let plan = s.plan(|n| n == "bk-200", 300);
        assert_eq!(
            plan.pending.parent, None,
            "the header changes: a new stream"
        );
        assert_eq!(plan.base, None);
    }

    #[test]
    fn a_vanished_pending_snapshot_is_never_reused_by_name() {
        let s = state(None, Some(("bk-100", None)));
        let plan = s.plan(|n| n == "bk-100-1", 100);
        assert_eq!(plan.pending.snapshot, "bk-100-2");
        assert!(plan.take_snapshot);
    }
}
