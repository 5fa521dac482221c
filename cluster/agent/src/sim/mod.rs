//! Deterministic simulation: simulated LUNs that decide reservations with
//! the appliance's own SPC-4 table (`reservoir-pr`), a seeded RNG, and
//! fault schedules. Every run is a function of its seed.

mod cluster;
mod quorum;
mod volume;

use std::collections::HashMap;

use reservoir_pr::{
    Access, InitiatorPort, Nexus, ProutCommand, RegisterParams, ReservationKey, ReservationTable,
    ReservationType, TargetPortId, Verdict,
};

use crate::disk::{DiskFault, DiskOp, DiskReply, DiskResult};
use crate::keys::NodeId;

/// SplitMix64: small, seedable and good enough to pick faults.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi`.
    pub(crate) fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }

    /// True with probability `per_mille`/1000.
    pub(crate) fn chance(&mut self, per_mille: u64) -> bool {
        self.next() % 1000 < per_mille
    }
}

/// The I_T nexus a simulated node's fixed ISID gives it.
pub(crate) fn nexus(node: NodeId) -> Nexus {
    Nexus::new(
        InitiatorPort::new(
            format!("iqn.2026-11.io.reservoir:node{}", node.get()),
            [0x80, 0, 0, 0, 0, node.get()],
        ),
        TargetPortId(1),
    )
}

pub(crate) const BLOCK: usize = 512;

/// One LUN of the simulated appliance.
#[derive(Debug, Clone)]
pub(crate) struct SimLun {
    pub(crate) table: ReservationTable,
    blocks: HashMap<u64, Vec<u8>>,
    /// Writes that landed, by node: what the data checks look at.
    pub(crate) writes_by: HashMap<NodeId, usize>,
}

const WERO: ReservationType = ReservationType::WriteExclusiveRegistrantsOnly;

impl SimLun {
    pub(crate) fn new() -> Self {
        SimLun {
            table: ReservationTable::new([TargetPortId(1)]),
            blocks: HashMap::new(),
            writes_by: HashMap::new(),
        }
    }

    /// A LUN restart without APTPL: registrations and data on a malloc
    /// volume would both go; replicas keep data (they are backed), so only
    /// the table is reset here.
    pub(crate) fn lose_reservations(&mut self) {
        self.table = ReservationTable::new([TargetPortId(1)]);
    }

    pub(crate) fn is_registered(&self, node: NodeId) -> bool {
        self.table.check(&nexus(node), Access::Write) == Verdict::Allowed
            && self
                .table
                .registrations()
                .iter()
                .any(|r| r.nexus == nexus(node))
    }

    pub(crate) fn holder(&self) -> Option<Nexus> {
        self.table.reservation().and_then(|r| r.holder)
    }

    /// The block at `lba`, if it was ever written.
    pub(crate) fn block(&self, lba: u64) -> Option<Vec<u8>> {
        self.blocks.get(&lba).cloned()
    }

    pub(crate) fn keys(&self) -> Vec<u64> {
        self.table.registrations().iter().map(|r| r.key.0).collect()
    }

    /// A data write from `node`, gated like the appliance gates it.
    pub(crate) fn data_write(&mut self, node: NodeId) -> bool {
        let allowed = self.table.check(&nexus(node), Access::Write) == Verdict::Allowed;
        if allowed {
            *self.writes_by.entry(node).or_default() += 1;
        }
        allowed
    }

    pub(crate) fn execute(&mut self, node: NodeId, op: &DiskOp) -> DiskResult {
        let nexus = nexus(node);
        let out = |cmd: ProutCommand, table: &mut ReservationTable| {
            table
                .execute_out(&nexus, &cmd)
                .map(|_| DiskReply::Done)
                .map_err(|_| DiskFault::Conflict)
        };
        let register = |key: u64, new: u64, ignore_existing: bool| {
            ProutCommand::Register(RegisterParams {
                key: ReservationKey(key),
                sa_key: ReservationKey(new),
                ignore_existing,
                all_tg_pt: false,
                aptpl: false,
                spec_i_pt: None,
            })
        };
        match op {
            DiskOp::ReadKeys => Ok(DiskReply::Keys(self.keys())),
            DiskOp::ReadReservation => Ok(DiskReply::Reservation(
                self.table.reservation().map(|r| r.key.0),
            )),
            DiskOp::Register { new } => out(register(0, *new, true), &mut self.table),
            DiskOp::ChangeKey { current, new } => {
                out(register(*current, *new, false), &mut self.table)
            }
            DiskOp::Reserve { key } => out(
                ProutCommand::Reserve {
                    key: ReservationKey(*key),
                    rtype: WERO,
                },
                &mut self.table,
            ),
            DiskOp::Release { key } => out(
                ProutCommand::Release {
                    key: ReservationKey(*key),
                    scope: 0,
                    type_code: WERO.code(),
                },
                &mut self.table,
            ),
            DiskOp::PreemptAndAbort { key, victim } => out(
                ProutCommand::Preempt {
                    key: ReservationKey(*key),
                    sa_key: ReservationKey(*victim),
                    scope: 0,
                    type_code: WERO.code(),
                    abort: true,
                },
                &mut self.table,
            ),
            DiskOp::ReadBlock { lba } => Ok(DiskReply::Block(
                self.blocks
                    .get(lba)
                    .cloned()
                    .unwrap_or_else(|| vec![0; BLOCK]),
            )),
            DiskOp::WriteBlock { lba, data } => {
                if self.table.check(&nexus, Access::Write) == Verdict::Conflict {
                    return Err(DiskFault::Conflict);
                }
                self.blocks.insert(*lba, data.clone());
                Ok(DiskReply::Done)
            }
        }
    }
}
