//! Client commands: each sends one RPC and shows the answer as a table or,
//! with `--json`, as the JSON the daemon returned.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use crate::rpc::Client;
use crate::table;

mod backup;
mod node;
mod snapshot;

pub use backup::{backup, backup_server, BackupCommand, BackupServerArgs};
pub use node::{node, NodeCommand};
pub use snapshot::{snapshot, SnapshotCommand};

#[derive(Debug, Clone, Copy)]
pub struct Output {
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum VolumeCommand {
    /// List volumes.
    List,
    /// Create a volume (kept across restarts).
    Create {
        name: String,
        /// malloc (RAM), file or device.
        #[arg(long, default_value = "malloc")]
        backend: String,
        /// Backing file or block device (file and device backends).
        #[arg(long)]
        path: Option<std::path::PathBuf>,
        /// Size such as 1GiB (a device defaults to its own size).
        #[arg(long)]
        size: Option<String>,
        /// Logical block size: 512 or 4096.
        #[arg(long, default_value_t = 512)]
        block_size: u32,
        /// Snapshot copy-on-write unit, a power of two such as 64KiB.
        #[arg(long)]
        snapshot_chunk_size: Option<String>,
        /// Directory under which the volume's snapshot state is kept.
        #[arg(long)]
        diff_area: Option<std::path::PathBuf>,
        /// Cap of the snapshot differential area, such as 16GiB.
        #[arg(long)]
        diff_area_size: Option<String>,
        /// A block device to hold the differential area instead of a file.
        #[arg(long)]
        diff_area_device: Option<std::path::PathBuf>,
    },
    /// Delete a volume created with `volume create` (backing files are kept).
    Delete { name: String },
    /// Grow or shrink a volume; initiators get CAPACITY DATA HAS CHANGED.
    Resize { name: String, size: String },
}

#[derive(Debug, Subcommand)]
pub enum TargetCommand {
    /// List targets and their LUNs.
    List,
}

#[derive(Debug, Subcommand)]
pub enum SessionCommand {
    /// List logged-in sessions with their negotiated parameters.
    List,
}

#[derive(Debug, Subcommand)]
pub enum ReservationCommand {
    /// Show the registrations and the reservation of a volume's LUNs.
    Show { volume: String },
    /// Administrator recovery: drop every registration and reservation of
    /// a volume's LUNs (registered hosts get RESERVATIONS PREEMPTED).
    Clear { volume: String },
}

pub fn reservation(client: &mut Client, command: ReservationCommand, output: Output) -> Result<()> {
    let (result, cleared) = match command {
        ReservationCommand::Show { volume } => (
            client.call("reservation_show", json!({ "volume": volume }))?,
            None,
        ),
        ReservationCommand::Clear { volume } => (
            client.call("reservation_clear", json!({ "volume": volume }))?,
            Some(volume),
        ),
    };
    if output.json {
        return print_json(&result);
    }
    if let Some(volume) = cleared {
        println!("cleared every registration and reservation of volume {volume}");
        return Ok(());
    }
    for export in result.as_array().into_iter().flatten() {
        let reservation = match &export["reservation"] {
            Value::Null => "none".to_owned(),
            r => format!("{} (key {})", text(&r["type"]), text(&r["key"])),
        };
        println!(
            "{} LUN {}: generation {}, APTPL {}, reservation {}",
            text(&export["target"]),
            text(&export["lun"]),
            text(&export["generation"]),
            if export["aptpl"].as_bool() == Some(true) {
                "on"
            } else {
                "off"
            },
            reservation
        );
        let rows: Vec<Vec<String>> = export["registrations"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|r| {
                vec![
                    text(&r["initiator"]),
                    text(&r["isid"]),
                    text(&r["target_port"]),
                    text(&r["key"]),
                    if r["holder"].as_bool() == Some(true) {
                        "yes"
                    } else {
                        "no"
                    }
                    .to_owned(),
                ]
            })
            .collect();
        table::print(&["INITIATOR", "ISID", "PORT", "KEY", "HOLDER"], &rows);
    }
    Ok(())
}

pub fn volume(client: &mut Client, command: VolumeCommand, output: Output) -> Result<()> {
    let result = match command {
        VolumeCommand::List => client.call("volume_list", Value::Null)?,
        VolumeCommand::Create {
            name,
            backend,
            path,
            size,
            block_size,
            snapshot_chunk_size,
            diff_area,
            diff_area_size,
            diff_area_device,
        } => client.call(
            "volume_create",
            json!({
                "name": name, "backend": backend, "path": path, "size": size,
                "block_size": block_size, "snapshot_chunk_size": snapshot_chunk_size,
                "diff_area": diff_area, "diff_area_size": diff_area_size,
                "diff_area_device": diff_area_device,
            }),
        )?,
        VolumeCommand::Delete { name } => {
            client.call("volume_delete", json!({ "name": name }))?;
            if !output.json {
                println!("deleted volume {name}");
                return Ok(());
            }
            json!(true)
        }
        VolumeCommand::Resize { name, size } => {
            client.call("volume_resize", json!({"name": name, "size": size}))?
        }
    };
    if output.json {
        return print_json(&result);
    }
    let volumes = match result {
        Value::Array(list) => list,
        single => vec![single],
    };
    let rows: Vec<Vec<String>> = volumes
        .iter()
        .map(|v| {
            vec![
                text(&v["name"]),
                text(&v["backend"]),
                bytes(&v["size_bytes"]),
                text(&v["block_size"]),
                text(&v["origin"]),
                list(&v["exported_by"]),
                text(&v["path"]),
            ]
        })
        .collect();
    table::print(
        &[
            "NAME",
            "BACKEND",
            "SIZE",
            "BLOCK",
            "ORIGIN",
            "EXPORTED AS",
            "PATH",
        ],
        &rows,
    );
    Ok(())
}

pub fn target(client: &mut Client, command: TargetCommand, output: Output) -> Result<()> {
    let TargetCommand::List = command;
    let result = client.call("target_list", Value::Null)?;
    if output.json {
        return print_json(&result);
    }
    let mut rows = Vec::new();
    for target in result.as_array().into_iter().flatten() {
        let auth = match (target["chap"].as_bool(), target["mutual_chap"].as_bool()) {
            (Some(true), Some(true)) => "mutual CHAP",
            (Some(true), _) => "CHAP",
            _ => "none",
        };
        let luns: Vec<String> = target["luns"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{}={}", l["lun"], text(&l["volume"])))
            .collect();
        rows.push(vec![
            text(&target["iqn"]),
            luns.join(","),
            auth.to_owned(),
            if target["allowed_initiators"].is_null() {
                "any".to_owned()
            } else {
                list(&target["allowed_initiators"])
            },
            if target["read_only"].as_bool() == Some(true) {
                "ro"
            } else {
                "rw"
            }
            .to_owned(),
            text(&target["sessions"]),
        ]);
    }
    table::print(
        &["TARGET", "LUNS", "AUTH", "INITIATORS", "MODE", "SESSIONS"],
        &rows,
    );
    Ok(())
}

pub fn session(client: &mut Client, command: SessionCommand, output: Output) -> Result<()> {
    let SessionCommand::List = command;
    let result = client.call("session_list", Value::Null)?;
    if output.json {
        return print_json(&result);
    }
    let rows: Vec<Vec<String>> = result
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            let params: Vec<String> = s["params"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, v)| format!("{k}={}", text(v)))
                .collect();
            vec![
                text(&s["initiator"]),
                text(&s["isid"]),
                text(&s["tsih"]),
                if s["target"].is_null() {
                    "(discovery)".into()
                } else {
                    text(&s["target"])
                },
                text(&s["portal"]),
                text(&s["peer"]),
                params.join(" "),
            ]
        })
        .collect();
    table::print(
        &[
            "INITIATOR",
            "ISID",
            "TSIH",
            "TARGET",
            "PORTAL",
            "PEER",
            "NEGOTIATED",
        ],
        &rows,
    );
    Ok(())
}

pub(crate) fn print_json(value: &Value) -> Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

pub(crate) fn text(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

pub(crate) fn list(value: &Value) -> String {
    let items: Vec<String> = value.as_array().into_iter().flatten().map(text).collect();
    if items.is_empty() {
        "-".into()
    } else {
        items.join(",")
    }
}

pub(crate) fn bytes(value: &Value) -> String {
    value
        .as_u64()
        .map(|b| reservoir_target_config::ByteSize::from_bytes(b).to_string())
        .unwrap_or_else(|| text(value))
}
