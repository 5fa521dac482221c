//! The RPC method table. Each method takes named params and returns a
//! JSON value; the names and shapes are documented in docs/rpc.md.

use std::sync::Arc;

use reservoir_iscsi::Sessions;
use reservoir_target_config::ByteSize;
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};

use super::backups::Notify;
use super::protocol::{self, RpcError};
use crate::backup::Backups;
use crate::reservations::Reservations;
use crate::targets::TargetRegistry;
use crate::volumes::{Volume, VolumeSpec, Volumes};

#[derive(Debug)]
pub struct Api {
    volumes: Arc<Volumes>,
    sessions: Arc<Sessions>,
    targets: Arc<TargetRegistry>,
    reservations: Arc<Reservations>,
    /// `None` until [`Api::with_backups`] names the data directory.
    backups: Option<Backups>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct VolumeParams {
    pub(super) volume: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NameParams {
    name: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResizeParams {
    name: String,
    size: ByteSize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateParams {
    name: String,
    backend: String,
    #[serde(default)]
    path: Option<std::path::PathBuf>,
    #[serde(default)]
    size: Option<ByteSize>,
    #[serde(default)]
    block_size: Option<u32>,
    #[serde(default)]
    snapshot_chunk_size: Option<ByteSize>,
    #[serde(default)]
    diff_area: Option<std::path::PathBuf>,
    #[serde(default)]
    diff_area_size: Option<ByteSize>,
    #[serde(default)]
    diff_area_device: Option<std::path::PathBuf>,
}

impl Api {
    pub fn new(
        volumes: Arc<Volumes>,
        sessions: Arc<Sessions>,
        targets: Arc<TargetRegistry>,
    ) -> Self {
        Self {
            volumes,
            sessions,
            targets,
            reservations: Arc::default(),
            backups: None,
        }
    }

    /// Enables the `backup_*` methods; their records live under `data_dir`.
    pub fn with_backups(mut self, data_dir: &std::path::Path) -> Self {
        self.backups = Some(Backups::new(
            data_dir,
            self.volumes.clone(),
            self.sessions.clone(),
            self.targets.clone(),
        ));
        self
    }

    /// The LUNs' reservation tables, for `reservation_show` and `reservation_clear`.
    pub fn with_reservations(mut self, reservations: Arc<Reservations>) -> Self {
        self.reservations = reservations;
        self
    }

    /// Answers one request. A long method may send notifications (its
    /// progress) through `notify` before it returns.
    pub fn call(&self, method: &str, params: Value, notify: Notify<'_>) -> Result<Value, RpcError> {
        if let Some(backups) = self
            .backups
            .as_ref()
            .filter(|_| method.starts_with("backup_"))
        {
            return super::backups::call(backups, method, params, notify);
        }
        match method {
            "volume_list" => {
                no_params(&params)?;
                Ok(Value::Array(
                    self.volumes
                        .list()
                        .iter()
                        .map(|v| self.describe(v))
                        .collect(),
                ))
            }
            "volume_create" => {
                let p: CreateParams = parse(params)?;
                let spec = VolumeSpec {
                    name: p.name,
                    backend: p.backend,
                    path: p.path,
                    size_bytes: p.size.map(ByteSize::bytes),
                    block_size: p.block_size.unwrap_or(512),
                    snapshot_chunk_size: p
                        .snapshot_chunk_size
                        .map(|c| u32::try_from(c.bytes()).unwrap_or(u32::MAX)),
                    diff_area: p.diff_area,
                    diff_area_size: p.diff_area_size.map(ByteSize::bytes),
                    diff_area_device: p.diff_area_device,
                };
                spec.validate()
                    .map_err(|e| RpcError::invalid_params(format!("{e:#}")))?;
                let volume = self
                    .volumes
                    .create(spec)
                    .map_err(|e| RpcError::failed(&e))?;
                Ok(self.describe(&volume))
            }
            "volume_delete" => {
                let p: NameParams = parse(params)?;
                self.volumes
                    .delete(&p.name)
                    .map_err(|e| RpcError::failed(&e))?;
                Ok(json!(true))
            }
            "volume_resize" => {
                let p: ResizeParams = parse(params)?;
                let volume = self
                    .volumes
                    .resize(&p.name, p.size.bytes())
                    .map_err(|e| RpcError::failed(&e))?;
                Ok(self.describe(&volume))
            }
            "target_list" => {
                no_params(&params)?;
                let sessions = self.sessions.list();
                Ok(Value::Array(
                    self.targets
                        .views()
                        .iter()
                        .map(|t| {
                            let mut value = serde_json::to_value(t).expect("views serialize");
                            let count = sessions
                                .iter()
                                .filter(|s| s.target.as_deref() == Some(t.iqn.as_str()))
                                .count();
                            value["sessions"] = json!(count);
                            value
                        })
                        .collect(),
                ))
            }
            "session_list" => {
                no_params(&params)?;
                Ok(Value::Array(
                    self.sessions
                        .list()
                        .into_iter()
                        .map(|s| {
                            json!({
                                "initiator": s.initiator,
                                "isid": s.isid.to_string(),
                                "tsih": s.tsih,
                                "target": s.target,
                                "portal": s.portal.to_string(),
                                "peer": s.peer.to_string(),
                                "params": s.params.into_iter().map(|(k, v)| (k, Value::String(v))).collect::<serde_json::Map<_, _>>(),
                            })
                        })
                        .collect(),
                ))
            }
            "reservation_show" => {
                let p: VolumeParams = parse(params)?;
                self.reservations
                    .show(&p.volume)
                    .map_err(|e| RpcError::failed(&e.into()))
            }
            "reservation_clear" => {
                let p: VolumeParams = parse(params)?;
                self.reservations
                    .clear(&p.volume)
                    .map_err(|e| RpcError::failed(&e.into()))
            }
            other => {
                super::snapshots::call(&self.volumes, &self.targets, &self.sessions, other, params)
                    .unwrap_or_else(|| {
                        Err(RpcError::new(
                            protocol::METHOD_NOT_FOUND,
                            format!("no method {other:?}; see docs/rpc.md for the list"),
                        ))
                    })
            }
        }
    }

    fn describe(&self, volume: &Volume) -> Value {
        let geometry = volume.bdev.geometry();
        let exported_by: Vec<String> = self
            .targets
            .views()
            .iter()
            .filter(|t| t.snapshot.is_none())
            .flat_map(|t| {
                t.luns
                    .iter()
                    .filter(|l| l.volume == volume.spec.name)
                    .map(move |l| format!("{}/{}", t.iqn, l.lun))
            })
            .collect();
        json!({
            "name": volume.spec.name,
            "backend": volume.spec.backend,
            "path": volume.spec.path,
            "size_bytes": geometry.size_bytes(),
            "block_size": geometry.block_size.bytes(),
            "thin_provisioned": geometry.thin_provisioned,
            "origin": volume.origin,
            "serial": volume.identity.serial,
            "exported_by": exported_by,
        })
    }
}

pub(super) fn parse<T: DeserializeOwned>(params: Value) -> Result<T, RpcError> {
    if !params.is_object() {
        return Err(RpcError::invalid_params(
            "params must be an object of named values",
        ));
    }
    serde_json::from_value(params).map_err(|e| RpcError::invalid_params(e.to_string()))
}

fn no_params(params: &Value) -> Result<(), RpcError> {
    match params {
        Value::Null => Ok(()),
        Value::Object(map) if map.is_empty() => Ok(()),
        Value::Array(list) if list.is_empty() => Ok(()),
        _ => Err(RpcError::invalid_params("this method takes no params")),
    }
}
