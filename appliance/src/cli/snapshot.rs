//! `reservoir snapshot …`: copy-on-write snapshots of a volume.

use anyhow::Result;
use clap::Subcommand;
use serde_json::{json, Value};

use super::{bytes, print_json, text, Output};
use crate::rpc::Client;
use crate::table;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Take a snapshot (metadata only; in-flight writes are drained first).
    Create { volume: String, name: String },
    /// List a volume's snapshots and its differential-area usage.
    List { volume: String },
    /// Show one snapshot.
    Show { volume: String, name: String },
    /// Delete a snapshot; the others keep their content.
    Delete { volume: String, name: String },
    /// Chunks changed between two snapshots, or a snapshot and the live volume.
    Diff {
        volume: String,
        from: String,
        to: Option<String>,
    },
    /// Export a snapshot read-only as LUN 0 of a new target.
    Export {
        volume: String,
        name: String,
        /// iSCSI name of the new target.
        #[arg(long)]
        target: String,
    },
    /// Stop exporting a snapshot.
    Unexport { volume: String, name: String },
}

pub fn snapshot(client: &mut Client, command: SnapshotCommand, output: Output) -> Result<()> {
    let result = match &command {
        SnapshotCommand::Create { volume, name } => {
            client.call("snapshot_create", json!({"volume": volume, "name": name}))?
        }
        SnapshotCommand::List { volume } => {
            client.call("snapshot_list", json!({ "volume": volume }))?
        }
        SnapshotCommand::Show { volume, name } => {
            client.call("snapshot_show", json!({"volume": volume, "name": name}))?
        }
        SnapshotCommand::Delete { volume, name } => {
            client.call("snapshot_delete", json!({"volume": volume, "name": name}))?
        }
        SnapshotCommand::Diff { volume, from, to } => client.call(
            "snapshot_diff",
            json!({"volume": volume, "from": from, "to": to}),
        )?,
        SnapshotCommand::Export {
            volume,
            name,
            target,
        } => client.call(
            "snapshot_export",
            json!({"volume": volume, "name": name, "target": target}),
        )?,
        SnapshotCommand::Unexport { volume, name } => {
            client.call("snapshot_unexport", json!({"volume": volume, "name": name}))?
        }
    };
    if output.json {
        return print_json(&result);
    }
    match command {
        SnapshotCommand::List { .. } => {
            print_snapshots(
                result["snapshots"]
                    .as_array()
                    .map_or(&[][..], Vec::as_slice),
            );
            let area = &result["diff_area"];
            println!(
                "differential area: {} used{}",
                bytes(&area["used_bytes"]),
                match area["capacity_bytes"].as_u64() {
                    Some(_) => format!(" of {}", bytes(&area["capacity_bytes"])),
                    None => String::new(),
                }
            );
        }
        SnapshotCommand::Create { .. } | SnapshotCommand::Show { .. } => {
            print_snapshots(std::slice::from_ref(&result));
        }
        SnapshotCommand::Diff { .. } => {
            let rows: Vec<Vec<String>> = result["extents"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| vec![text(&e["offset"]), bytes(&e["len"])])
                .collect();
            table::print(&["OFFSET", "LENGTH"], &rows);
            println!(
                "{} extents, {} changed ({}, {}-byte chunks)",
                rows.len(),
                bytes(&result["total_bytes"]),
                text(&result["method"]),
                text(&result["chunk_size"])
            );
        }
        SnapshotCommand::Export { volume, name, .. } => {
            println!(
                "exported {volume}@{name} as {} LUN 0 (read-only)",
                text(&result["iqn"])
            );
        }
        SnapshotCommand::Delete { volume, name } => println!("deleted {volume}@{name}"),
        SnapshotCommand::Unexport { volume, name } => println!("unexported {volume}@{name}"),
    }
    Ok(())
}

fn print_snapshots(snapshots: &[Value]) {
    let rows: Vec<Vec<String>> = snapshots
        .iter()
        .map(|s| {
            vec![
                text(&s["name"]),
                text(&s["id"]),
                bytes(&s["size_bytes"]),
                bytes(&s["diff_bytes"]),
                match s["valid"].as_bool() {
                    Some(true) => "valid".to_owned(),
                    _ => format!("INVALID: {}", text(&s["invalid_reason"])),
                },
                text(&s["exported_as"]),
            ]
        })
        .collect();
    table::print(
        &["NAME", "ID", "SIZE", "COPIED", "STATE", "EXPORTED AS"],
        &rows,
    );
}
