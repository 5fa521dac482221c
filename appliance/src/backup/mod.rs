//! Backups of the appliance's volumes to a `reservoir backup-server`: the
//! daemon's side of `backup run` (it owns the volumes and their snapshot
//! engines) and of `backup restore` into a volume.
//!
//! ```text
//!   backup run VOL:  read <data_dir>/backups/VOL.json ─▶ plan (state.rs)
//!                    record pending ─▶ snapshot bk-<time> ─▶ send_backup
//!                    ─▶ record {last_snapshot, last_backup_id} ─▶ delete the older snapshot
//! ```
//!
//! The library (`reservoir-backup`) does the streaming, resume, restore,
//! verify and prune; this module decides which snapshot and parent a run
//! uses and keeps that decision across crashes.

mod state;
mod token;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use reservoir_backup::{
    restore, send_backup, BackupErrorKind, BackupId, BackupInfo, BackupSource, ChangedChunks,
    ChunkBytes, Client, Progress, RestoreOptions, RestoreSummary, RestoreTarget, Token,
    VolumeIdentity,
};
use reservoir_iscsi::Sessions;
use reservoir_snapshot::SnapshotEngine;

use crate::store;
use crate::targets::TargetRegistry;
use crate::volumes::{Volume, Volumes};
use state::{BackupState, Pending};

pub use token::{
    load_or_create as load_or_create_token, read as read_token, read_text as read_token_text,
};

/// A progress callback that may be called from the restore's fetch threads.
pub type ProgressFn<'a> = &'a mut (dyn FnMut(&Progress) + Send);

#[derive(Debug)]
pub struct Backups {
    /// `<data_dir>/backups`: one record per volume.
    dir: PathBuf,
    volumes: Arc<Volumes>,
    sessions: Arc<Sessions>,
    targets: Arc<TargetRegistry>,
    /// Volumes with a backup or restore running: one at a time per volume.
    busy: Mutex<BTreeSet<String>>,
}

/// What one `backup run` did.
#[derive(Debug, Clone)]
pub struct RunOutcome {
    pub info: BackupInfo,
    /// The backup's parent was gone from the server (pruned, or another
    /// server), so this run sent a full backup instead.
    pub fell_back_to_full: bool,
    /// The previous backup's snapshot, deleted now that this one is the base.
    pub retired_snapshot: Option<String>,
    /// Why the previous snapshot was kept instead (exported, or the delete failed).
    pub kept_snapshot: Option<String>,
    /// Bytes this run put on the wire (less than the backup's own total
    /// when it resumed an interrupted run).
    pub wire_bytes_this_run: u64,
}

/// Removes the volume from the busy set when the operation ends.
struct Claim<'a> {
    busy: &'a Mutex<BTreeSet<String>>,
    volume: String,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.busy.lock().expect("busy lock").remove(&self.volume);
    }
}

impl Backups {
    pub fn new(
        data_dir: &Path,
        volumes: Arc<Volumes>,
        sessions: Arc<Sessions>,
        targets: Arc<TargetRegistry>,
    ) -> Self {
        Self {
            dir: data_dir.join("backups"),
            volumes,
            sessions,
            targets,
            busy: Mutex::default(),
        }
    }

    fn volume(&self, name: &str) -> Result<Arc<Volume>> {
        self.volumes.get(name).with_context(|| {
            format!("no volume named {name:?}; `reservoir volume list` shows them")
        })
    }

    fn claim(&self, volume: &str) -> Result<Claim<'_>> {
        if !self
            .busy
            .lock()
            .expect("busy lock")
            .insert(volume.to_owned())
        {
            bail!(
                "a backup or restore of volume {volume} is already running; wait for it to finish"
            );
        }
        Ok(Claim {
            busy: &self.busy,
            volume: volume.to_owned(),
        })
    }

    fn record_path(&self, volume: &str) -> PathBuf {
        self.dir.join(format!("{volume}.json"))
    }

    fn save(&self, volume: &str, state: &BackupState) -> Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        store::write_record(&self.record_path(volume), state)
    }

    /// `backup run`: backs `volume` up to the server at `to`, incrementally
    /// on the last backup when its snapshot still exists.
    pub fn run(
        &self,
        volume: &str,
        to: &str,
        token: Token,
        progress: ProgressFn<'_>,
    ) -> Result<RunOutcome> {
        let vol = self.volume(volume)?;
        let _claim = self.claim(volume)?;
        let client = Client::new(to, token)?;
        let engine = &vol.snapshots;
        let mut state: BackupState =
            store::read_record(&self.record_path(volume))?.unwrap_or_default();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default();
        let plan = state.plan(|name| engine.get(name).is_ok(), now);
        let snapshot = plan.pending.snapshot.clone();
        // Recorded before the snapshot exists, so a crash in between leaves
        // no snapshot that nothing remembers.
        if state.pending.as_ref() != Some(&plan.pending) {
            state.pending = Some(plan.pending.clone());
            self.save(volume, &state)?;
        }
        if plan.take_snapshot {
            engine
                .create(&snapshot)
                .with_context(|| format!("cannot snapshot volume {volume} for the backup"))?;
        }
        let identity = VolumeIdentity::new(volume, vol.bdev.geometry().block_size.bytes())?;
        let mut wire_bytes_this_run = 0;
        let mut report = |p: &Progress| {
            wire_bytes_this_run = p.wire_bytes;
            progress(p);
        };
        let mut fell_back_to_full = false;
        let first = send(
            engine,
            &client,
            &identity,
            &snapshot,
            plan.pending.parent,
            plan.base.as_deref(),
            &mut report,
        );
        let info = match first {
            Err(e) if e.kind() == BackupErrorKind::NotFound && plan.pending.parent.is_some() => {
                // The parent is not on this server (pruned, or another
                // server): a full backup, recorded as such so that a retry
                // resumes it.
                fell_back_to_full = true;
                state.pending = Some(Pending {
                    snapshot: snapshot.clone(),
                    parent: None,
                });
                self.save(volume, &state)?;
                send(
                    engine,
                    &client,
                    &identity,
                    &snapshot,
                    None,
                    None,
                    &mut report,
                )
            }
            other => other,
        }
        .map_err(|e| {
            self.abandon(volume, &mut state, e.kind());
            anyhow::Error::new(e).context(format!("backup of volume {volume} to {to}"))
        })?;
        let previous = state.last_snapshot.take();
        self.save(
            volume,
            &BackupState {
                last_snapshot: Some(snapshot.clone()),
                last_backup_id: Some(info.id),
                pending: None,
            },
        )?;
        let (mut retired_snapshot, mut kept_snapshot) = (None, None);
        if let Some(old) = previous.filter(|old| *old != snapshot && engine.get(old).is_ok()) {
            if let Some(export) = self.targets.export_of(volume, &old) {
                kept_snapshot = Some(format!("{old} is kept: exported as {}", export.iqn));
            } else {
                match engine.delete(&old) {
                    Ok(()) => retired_snapshot = Some(old),
                    Err(e) => kept_snapshot = Some(format!("{old} could not be deleted: {e}")),
                }
            }
        }
        Ok(RunOutcome {
            info,
            fell_back_to_full,
            retired_snapshot,
            kept_snapshot,
            wire_bytes_this_run,
        })
    }

    /// After a failed run: keeps the pending snapshot when a retry can
    /// resume the stream (the server or the connection failed); otherwise
    /// (refused token, refused stream) a retry is a new backup, so the
    /// snapshot goes, and the next run takes a fresh one.
    fn abandon(&self, volume: &str, state: &mut BackupState, kind: BackupErrorKind) {
        use BackupErrorKind::{Busy, Disconnected, Io};
        let (Some(pending), Some(vol)) = (&state.pending, self.volumes.get(volume)) else {
            return;
        };
        if matches!(kind, Disconnected | Busy | Io)
            || self.targets.export_of(volume, &pending.snapshot).is_some()
        {
            return;
        }
        let snapshot = pending.snapshot.clone();
        state.pending = None;
        if self.save(volume, state).is_ok() {
            let _ = vol.snapshots.delete(&snapshot);
        }
    }

    /// `backup restore --to VOLUME`: rewrites the volume with backup `id`
    /// (through the snapshot origin, so the volume's own snapshots keep
    /// their content). Refused while an initiator is logged in to a target
    /// that exports the volume, unless `force`.
    pub fn restore(
        &self,
        volume: &str,
        from: &str,
        id: BackupId,
        token: Token,
        force: bool,
        progress: ProgressFn<'_>,
    ) -> Result<RestoreSummary> {
        let vol = self.volume(volume)?;
        let _claim = self.claim(volume)?;
        let users = self.logged_in(volume);
        if !users.is_empty() && !force {
            bail!(
                "volume {volume} is in use: {} logged in ({}); log the initiators out first, \
                 or pass --force to overwrite the volume under them",
                users.len(),
                users.join(", ")
            );
        }
        let client = Client::new(from, token)?;
        restore(
            &client,
            id,
            &RestoreTarget::Bdev(vol.bdev.clone()),
            RestoreOptions::default(),
            progress,
        )
        .with_context(|| format!("restore of backup {id} into volume {volume}"))
    }

    /// `initiator (target)` of every session logged in to a target that
    /// exports `volume` itself (snapshot exports read the snapshot, which a
    /// restore does not change).
    fn logged_in(&self, volume: &str) -> Vec<String> {
        let targets: BTreeSet<String> = self
            .targets
            .views()
            .into_iter()
            .filter(|t| t.snapshot.is_none() && t.luns.iter().any(|l| l.volume == volume))
            .map(|t| t.iqn)
            .collect();
        self.sessions
            .list()
            .into_iter()
            .filter_map(|s| {
                let target = s.target?;
                targets
                    .contains(&target)
                    .then(|| format!("{} to {target}", s.initiator))
            })
            .collect()
    }
}

/// One attempt at sending `snapshot`: incremental on `base` when given.
fn send(
    engine: &Arc<SnapshotEngine>,
    client: &Client,
    volume: &VolumeIdentity,
    snapshot: &str,
    parent: Option<BackupId>,
    base: Option<&str>,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BackupInfo, reservoir_backup::BackupError> {
    let view = engine.view(snapshot)?;
    let changes = match (parent, base) {
        (Some(_), Some(base)) => {
            ChangedChunks::from_changed_set(&engine.changed(base, Some(snapshot))?)?
        }
        _ => ChangedChunks::full(
            view.geometry().size_bytes(),
            ChunkBytes::new(engine.chunk_size().bytes())?,
        ),
    };
    send_backup(
        client,
        &BackupSource {
            volume: volume.clone(),
            snapshot: snapshot.to_owned(),
            view,
            parent,
            changes,
        },
        progress,
    )
}
