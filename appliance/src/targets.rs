//! The appliance's iSCSI targets: the ones the config file defines and the
//! read-only ones that export snapshots, kept in the registry the reactors
//! serve, together with what `target_list` reports of each.
//!
//! Snapshot exports are made at run time (`snapshot export`) and recorded in
//! `<data_dir>/exports.json`, so they are back after a restart.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use reservoir_iscsi::{Access, TargetNode, Targets};
use reservoir_scsi::{Lun, LunIdentity, LunOptions};
use serde::{Deserialize, Serialize};

use crate::store;
use crate::volumes::Volumes;

/// The one portal group every portal belongs to (RFC 7143 §4.4.1).
pub const PORTAL_GROUP_TAG: u16 = 1;

/// What `target_list` reports of one target.
#[derive(Debug, Clone, Serialize)]
pub struct TargetView {
    pub iqn: String,
    pub luns: Vec<LunView>,
    pub allowed_initiators: Option<Vec<String>>,
    pub chap: bool,
    pub mutual_chap: bool,
    pub read_only: bool,
    /// `volume@snapshot` for a snapshot export.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LunView {
    pub lun: u64,
    pub volume: String,
}

/// One snapshot exported as LUN 0 of its own read-only target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotExport {
    pub volume: String,
    pub snapshot: String,
    pub iqn: String,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct StoredExports {
    exports: Vec<SnapshotExport>,
}

#[derive(Debug)]
pub struct TargetRegistry {
    nodes: Arc<Targets>,
    views: Mutex<Vec<TargetView>>,
    exports: Mutex<Vec<SnapshotExport>>,
    exports_path: PathBuf,
}

impl TargetRegistry {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            nodes: Arc::new(Targets::new()),
            views: Mutex::new(Vec::new()),
            exports: Mutex::new(Vec::new()),
            exports_path: data_dir.join("exports.json"),
        }
    }

    /// The registry the iSCSI layer logs initiators in to.
    pub fn nodes(&self) -> Arc<Targets> {
        self.nodes.clone()
    }

    pub fn views(&self) -> Vec<TargetView> {
        self.views.lock().expect("target views lock").clone()
    }

    /// Serves `luns` as target `iqn`.
    pub fn add(&self, iqn: &str, luns: Vec<(u64, Arc<Lun>)>, access: Access, view: TargetView) {
        self.nodes
            .insert(TargetNode::new(iqn, luns, access, PORTAL_GROUP_TAG));
        self.views.lock().expect("target views lock").push(view);
    }

    /// The export of `volume@snapshot`, if it has one.
    pub fn export_of(&self, volume: &str, snapshot: &str) -> Option<SnapshotExport> {
        self.exports
            .lock()
            .expect("exports lock")
            .iter()
            .find(|e| e.volume == volume && e.snapshot == snapshot)
            .cloned()
    }

    /// `snapshot export`: a read-only target `iqn` whose LUN 0 is the
    /// snapshot. It admits the initiators (and asks the CHAP secrets) of the
    /// first target that exports the volume itself, if any.
    pub fn export_snapshot(
        &self,
        volumes: &Volumes,
        volume: &str,
        snapshot: &str,
        iqn: &str,
    ) -> Result<TargetView> {
        let iqn: String = iqn
            .parse::<reservoir_target_config::Iqn>()
            .with_context(|| format!("{iqn:?} is not a valid iSCSI name"))?
            .to_string();
        if self.nodes.get(&iqn).is_some() {
            bail!("a target named {iqn} already exists");
        }
        if let Some(export) = self.export_of(volume, snapshot) {
            bail!("{volume}@{snapshot} is already exported as {}", export.iqn);
        }
        let view = self.serve_export(volumes, volume, snapshot, &iqn)?;
        let mut exports = self.exports.lock().expect("exports lock");
        exports.push(SnapshotExport {
            volume: volume.to_owned(),
            snapshot: snapshot.to_owned(),
            iqn,
        });
        self.save(&exports)?;
        Ok(view)
    }

    /// `snapshot unexport`: new logins to the target are refused; sessions
    /// already logged in keep reading until they log out.
    /// Stops serving `volume@snapshot`; returns the target name it had.
    pub fn unexport_snapshot(&self, volume: &str, snapshot: &str) -> Result<String> {
        let mut exports = self.exports.lock().expect("exports lock");
        let Some(at) = exports
            .iter()
            .position(|e| e.volume == volume && e.snapshot == snapshot)
        else {
            bail!("{volume}@{snapshot} is not exported");
        };
        let export = exports.remove(at);
        self.save(&exports)?;
        self.nodes.remove(&export.iqn);
        self.views
            .lock()
            .expect("target views lock")
            .retain(|v| v.iqn != export.iqn);
        Ok(export.iqn)
    }

    /// Serves again the exports recorded before the last stop. An export
    /// whose snapshot is gone is dropped with a warning.
    pub fn restore_exports(&self, volumes: &Volumes) -> Result<()> {
        let stored: StoredExports = store::read_record(&self.exports_path)?.unwrap_or_default();
        let mut kept = Vec::new();
        for export in stored.exports {
            match self.serve_export(volumes, &export.volume, &export.snapshot, &export.iqn) {
                Ok(_) => kept.push(export),
                Err(error) => tracing::warn!(
                    target = %export.iqn,
                    "snapshot export dropped: {error:#}"
                ),
            }
        }
        let mut exports = self.exports.lock().expect("exports lock");
        *exports = kept;
        self.save(&exports)
    }

    fn serve_export(
        &self,
        volumes: &Volumes,
        volume: &str,
        snapshot: &str,
        iqn: &str,
    ) -> Result<TargetView> {
        let source = volumes
            .get(volume)
            .with_context(|| format!("no volume named {volume:?}"))?;
        let bdev = source
            .snapshots
            .view(snapshot)
            .with_context(|| format!("cannot export {volume}@{snapshot}"))?;
        let lun = Lun::new(
            bdev,
            LunOptions {
                read_only: true,
                identity: snapshot_identity(&source.identity, volume, snapshot),
                reservations: None,
            },
        );
        let access = self.access_of(volume);
        let view = TargetView {
            iqn: iqn.to_owned(),
            luns: vec![LunView {
                lun: 0,
                volume: volume.to_owned(),
            }],
            allowed_initiators: access.allowed_initiators.clone(),
            chap: access.chap.is_some(),
            mutual_chap: access.mutual_chap.is_some(),
            read_only: true,
            snapshot: Some(format!("{volume}@{snapshot}")),
        };
        self.add(iqn, vec![(0, Arc::new(lun))], access, view.clone());
        Ok(view)
    }

    fn access_of(&self, volume: &str) -> Access {
        let views = self.views.lock().expect("target views lock");
        views
            .iter()
            .filter(|v| v.snapshot.is_none())
            .find(|v| v.luns.iter().any(|l| l.volume == volume))
            .and_then(|v| self.nodes.get(&v.iqn))
            .map(|node| node.access.clone())
            .unwrap_or_default()
    }

    fn save(&self, exports: &[SnapshotExport]) -> Result<()> {
        store::write_record(
            &self.exports_path,
            &StoredExports {
                exports: exports.to_vec(),
            },
        )
    }
}

/// A snapshot is a different logical unit from its volume, so it gets its
/// own serial number and designator, derived from the volume's and the
/// snapshot's name so they are the same after a restart.
fn snapshot_identity(volume: &LunIdentity, volume_name: &str, snapshot: &str) -> LunIdentity {
    let tag = crc32c::crc32c(format!("{volume_name}@{snapshot}").as_bytes());
    let mut naa = volume.naa;
    for (byte, t) in naa[12..].iter_mut().zip(tag.to_be_bytes()) {
        *byte ^= t;
    }
    // Never equal to the volume's own designator.
    naa[11] ^= 0x5a;
    LunIdentity {
        serial: format!("{}-{tag:08x}", volume.serial),
        naa,
    }
}
