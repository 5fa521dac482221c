//! `reservoir node …`: the cluster node agent that runs on each host of a
//! server cluster, and its local control commands.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Subcommand;
use reservoir_cluster::{LunView, NodeId, Status};

use super::{print_json, Output};
use crate::table;

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Run this host's agent until it is stopped.
    Run {
        /// The node's TOML config (cluster, node id, peers, LUNs).
        node_config: PathBuf,
    },
    /// Membership, quorum, who owns what, and each LUN's registrations as
    /// this node sees them.
    Status { node_config: PathBuf },
    /// Move a shared volume's ownership to another node, and wait for it.
    Move {
        node_config: PathBuf,
        volume: String,
        /// The node id that should own the volume.
        node: u8,
    },
}

pub fn node(command: NodeCommand, output: Output) -> Result<()> {
    match command {
        NodeCommand::Run { node_config } => {
            reservoir_cluster::run(&node_config).context("the node agent stopped")
        }
        NodeCommand::Status { node_config } => {
            let status = reservoir_cluster::status(&node_config)?;
            if output.json {
                return print_json(&serde_json::to_value(&status)?);
            }
            print_status(&status);
            Ok(())
        }
        NodeCommand::Move {
            node_config,
            volume,
            node,
        } => {
            let to = NodeId::new(node)?;
            reservoir_cluster::move_volume(&node_config, &volume, to)?;
            println!("{volume} is now owned by node {to}");
            Ok(())
        }
    }
}

fn print_status(status: &Status) {
    let core = &status.core;
    let flag = |b: bool| if b { "yes" } else { "no" };
    println!(
        "cluster {} · node {} (generation {}) · quorate {} · lease {} · volumes active {}",
        status.cluster,
        core.node,
        core.generation.get(),
        flag(core.quorate),
        flag(core.lease),
        flag(core.volumes_active)
    );
    let members: Vec<String> = core
        .record
        .members
        .keys()
        .map(ToString::to_string)
        .collect();
    let suspected: Vec<String> = core.suspected.iter().map(ToString::to_string).collect();
    println!(
        "members {} (epoch {}) · suspected {}",
        members.join(","),
        core.record.epoch,
        if suspected.is_empty() {
            "none".to_owned()
        } else {
            suspected.join(",")
        }
    );
    let rows: Vec<Vec<String>> = status
        .replicas
        .iter()
        .map(|l| lun_row("replica", l))
        .chain(status.volumes.iter().map(|l| lun_row("volume", l)))
        .collect();
    table::print(
        &["KIND", "NAME", "HOLDER", "REGISTRATIONS", "STATE", "URL"],
        &rows,
    );
}

fn lun_row(kind: &str, lun: &LunView) -> Vec<String> {
    let holder = lun
        .holder
        .as_ref()
        .and_then(|h| h.node)
        .map_or_else(|| "-".to_owned(), |n| format!("node {n}"));
    let keys: Vec<String> = lun.keys.iter().map(|k| k.key.clone()).collect();
    vec![
        kind.to_owned(),
        lun.name.clone(),
        holder,
        if keys.is_empty() {
            "-".to_owned()
        } else {
            keys.join(",")
        },
        if lun.unavailable { "unavailable" } else { "ok" }.to_owned(),
        lun.url.clone(),
    ]
}
