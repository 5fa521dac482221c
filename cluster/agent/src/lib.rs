//! The cluster node agent's decisions and its I/O edge.
//!
//! Every host of a server cluster runs one agent. The agents coordinate only
//! through persistent reservations and blocks on the appliance's LUNs, plus
//! heartbeats between themselves — no external coordination service.
//!
//! The decisions are sans-I/O state machines (`apply(now, input) -> effects`):
//! [`Ownership`] for a shared volume or a quorum replica, [`FastMutex`] for
//! Lamport's arbitration on a replica's blocks, and [`Quorum`] for the
//! replica set and its [`ClusterRecord`]. Their effects are [`DiskOp`]s for
//! an edge that implements [`SharedDisk`]. The deterministic simulation in
//! the tests (`src/sim/`) drives them against simulated LUNs that decide
//! reservations with the appliance's own SPC-4 table (`reservoir-pr`).

mod arbitration;
mod config;
mod core;
mod disk;
mod error;
mod io;
mod keys;
mod membership;
mod node;
mod ownership;
mod quorum;
mod time;
mod wire;
mod witness;

#[cfg(test)]
mod sim;

pub use crate::arbitration::{FastMutex, MutexEffect, MutexInput};
pub use crate::config::{
    load_last_surviving, next_generation, store_last_surviving, LunRef, NodeAddress, NodeConfig,
};
pub use crate::core::{
    failover_bound_ms, CoreConfig, CoreEffect, CoreInput, CoreStatus, Lun, NodeCore, RECORD_BLOCK,
};
pub use crate::disk::{DiskFault, DiskOp, DiskReply, DiskResult, SharedDisk};
pub use crate::error::Error;
pub use crate::io::{node_isid, IscsiDisk};
pub use crate::keys::{ClusterKey, ClusterSignature, Generation, KeyRole, NodeId};
pub use crate::membership::{
    heartbeat_ms, lease_ms, max_delay_ms, suspect_ms, Detection, FailureDetector, Heartbeat,
    MAX_DELAY_MS,
};
pub use crate::node::{
    move_volume, request, run, status, KeyView, LunView, Node, Request, Response, Status,
};
pub use crate::ownership::{
    challenge_wait, lapse_ms, Effect, Input, LossReason, Ownership, Policy, Role, Standing, View,
    DEFAULT_DEFENSE_MS,
};
pub use crate::quorum::{
    ClusterRecord, Quorum, QuorumEffect, QuorumInput, LBA_RECORD, MAX_MEMBERS,
};
pub use crate::time::Millis;
pub use crate::wire::{Opener, Rejected, Sealer, Secret, MIN_SECRET_LEN};
pub use crate::witness::{LastSurviving, StartupGate};
