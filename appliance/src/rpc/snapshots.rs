//! The `snapshot_*` RPC methods: snapshots of a volume, their changed-block
//! sets, and exporting one read-only over iSCSI.

use std::sync::Arc;
use std::time::UNIX_EPOCH;

use reservoir_iscsi::Sessions;
use reservoir_snapshot::{ChangeMethod, SnapshotInfo};
use serde::Deserialize;
use serde_json::{json, Value};

use super::methods::{parse, VolumeParams};
use super::protocol::RpcError;
use crate::targets::TargetRegistry;
use crate::volumes::{Volume, Volumes};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotParams {
    volume: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiffParams {
    volume: String,
    from: String,
    #[serde(default)]
    to: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExportParams {
    volume: String,
    name: String,
    target: String,
}

/// Answers `method` if it is a snapshot method; `None` otherwise.
pub(super) fn call(
    volumes: &Volumes,
    targets: &TargetRegistry,
    sessions: &Sessions,
    method: &str,
    params: Value,
) -> Option<Result<Value, RpcError>> {
    let snapshots = Snapshots {
        volumes,
        targets,
        sessions,
    };
    Some(match method {
        "snapshot_create" => parse(params).and_then(|p| snapshots.create(p)),
        "snapshot_list" => parse(params).and_then(|p| snapshots.list(p)),
        "snapshot_show" => parse(params).and_then(|p| snapshots.show(p)),
        "snapshot_delete" => parse(params).and_then(|p| snapshots.delete(p)),
        "snapshot_diff" => parse(params).and_then(|p| snapshots.diff(p)),
        "snapshot_export" => parse(params).and_then(|p| snapshots.export(p)),
        "snapshot_unexport" => parse(params).and_then(|p| snapshots.unexport(p)),
        _ => return None,
    })
}

struct Snapshots<'a> {
    volumes: &'a Volumes,
    targets: &'a TargetRegistry,
    sessions: &'a Sessions,
}

fn failed(error: impl Into<anyhow::Error>) -> RpcError {
    RpcError::failed(&error.into())
}

impl Snapshots<'_> {
    fn volume(&self, name: &str) -> Result<Arc<Volume>, RpcError> {
        self.volumes
            .get(name)
            .ok_or_else(|| RpcError::invalid_params(format!("no volume named {name:?}")))
    }

    fn create(&self, p: SnapshotParams) -> Result<Value, RpcError> {
        let info = self
            .volume(&p.volume)?
            .snapshots
            .create(&p.name)
            .map_err(failed)?;
        Ok(describe(self.targets, &p.volume, &info))
    }

    fn list(&self, p: VolumeParams) -> Result<Value, RpcError> {
        let source = self.volume(&p.volume)?;
        let snapshots: Vec<Value> = source
            .snapshots
            .list()
            .iter()
            .map(|info| describe(self.targets, &p.volume, info))
            .collect();
        Ok(json!({ "snapshots": snapshots, "diff_area": usage(&source) }))
    }

    fn show(&self, p: SnapshotParams) -> Result<Value, RpcError> {
        let info = self
            .volume(&p.volume)?
            .snapshots
            .get(&p.name)
            .map_err(failed)?;
        Ok(describe(self.targets, &p.volume, &info))
    }

    fn delete(&self, p: SnapshotParams) -> Result<Value, RpcError> {
        if let Some(export) = self.targets.export_of(&p.volume, &p.name) {
            return Err(failed(anyhow::anyhow!(
                "{}@{} is exported as {}; unexport it first",
                p.volume,
                p.name,
                export.iqn
            )));
        }
        self.volume(&p.volume)?
            .snapshots
            .delete(&p.name)
            .map_err(failed)?;
        Ok(json!(true))
    }

    fn diff(&self, p: DiffParams) -> Result<Value, RpcError> {
        let set = self
            .volume(&p.volume)?
            .snapshots
            .changed(&p.from, p.to.as_deref())
            .map_err(failed)?;
        let extents: Vec<Value> = set
            .extents
            .iter()
            .map(|e| json!({"offset": e.offset, "len": e.len}))
            .collect();
        Ok(json!({
            "volume": p.volume,
            "from": p.from,
            "to": p.to,
            "method": match set.method {
                ChangeMethod::Tracked => "tracked",
                ChangeMethod::FullCompare => "full-compare",
            },
            "chunk_size": set.chunk_size.bytes(),
            "total_bytes": set.total_bytes,
            "extents": extents,
        }))
    }

    fn export(&self, p: ExportParams) -> Result<Value, RpcError> {
        let view = self
            .targets
            .export_snapshot(self.volumes, &p.volume, &p.name, &p.target)
            .map_err(failed)?;
        Ok(serde_json::to_value(view).expect("views serialize"))
    }

    /// Stops serving the snapshot's target and ends the sessions still
    /// logged in to it, so that nobody reads a snapshot that may be
    /// deleted next.
    fn unexport(&self, p: SnapshotParams) -> Result<Value, RpcError> {
        let iqn = self
            .targets
            .unexport_snapshot(&p.volume, &p.name)
            .map_err(failed)?;
        let closed = self.sessions.close_target(&iqn);
        tracing::info!(%iqn, closed, "snapshot unexported; its sessions closed");
        Ok(json!(true))
    }
}

fn describe(targets: &TargetRegistry, volume: &str, info: &SnapshotInfo) -> Value {
    json!({
        "volume": volume,
        "name": info.name.as_str(),
        "id": info.id.0,
        "created_unix": info.created.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or_default(),
        "size_bytes": info.size_bytes,
        "chunk_size": info.chunk_size.bytes(),
        "copied_chunks": info.copied_chunks,
        "diff_bytes": info.diff_bytes,
        "valid": info.invalid.is_none(),
        "invalid_reason": info.invalid.as_ref().map(ToString::to_string),
        "exported_as": targets.export_of(volume, info.name.as_str()).map(|e| e.iqn),
    })
}

fn usage(volume: &Volume) -> Value {
    let usage = volume.snapshots.diff_area_usage();
    json!({
        "used_bytes": usage.used_bytes,
        "capacity_bytes": usage.capacity_bytes,
        "chunk_size": usage.chunk_size.bytes(),
        "invalid_snapshots": usage.invalid_snapshots,
    })
}
