//! I_T nexus state (SAM-5): owned by the session that carries it, so
//! nothing here is shared or locked, except each LUN's abort epoch, which
//! a PREEMPT AND ABORT from another nexus may bump.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reservoir_pr::{InitiatorPort as PrInitiatorPort, Nexus as PrNexus, TargetPortId};

use crate::lun::Lun;
use crate::sense::SenseReason;
use crate::ua::NexusUa;

/// A target port: for iSCSI, the target name with ",t,0x" and the portal
/// group tag (RFC 7143); opaque here.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TargetPort {
    pub name: String,
    /// RELATIVE TARGET PORT IDENTIFIER (SPC-4, Device Identification VPD page); 0 is reserved.
    pub relative_id: u16,
}

/// An initiator port: the initiator's name and ISID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InitiatorPort {
    pub name: String,
    pub isid: [u8; 6],
}

/// Distinguishes nexuses of one device; never reused while the device lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NexusId(pub u64);

/// This nexus's state for one LUN.
#[derive(Debug)]
struct LunState {
    lun: Arc<Lun>,
    ua: NexusUa,
    /// Bumped when another nexus's PREEMPT AND ABORT aborts this nexus's
    /// tasks on the LUN (SPC-4 5.13.11.5); the transport compares it with
    /// the value it saw when a task arrived.
    abort_epoch: Arc<AtomicU64>,
}

/// One I_T nexus's view of a device's LUNs.
#[derive(Debug)]
pub struct Nexus {
    pub(crate) id: NexusId,
    initiator: InitiatorPort,
    /// The identity persistent reservations know this nexus by: initiator
    /// name + ISID and relative target port (SPC-4 5.13.1). Another session
    /// with the same name and ISID is the same I_T nexus to them.
    pub(crate) identity: PrNexus,
    luns: BTreeMap<u64, LunState>,
}

impl Nexus {
    pub(crate) fn new(
        id: NexusId,
        initiator: InitiatorPort,
        target_port: &TargetPort,
        luns: &BTreeMap<u64, Arc<Lun>>,
    ) -> Self {
        let identity = PrNexus::new(
            PrInitiatorPort::new(initiator.name.clone(), initiator.isid),
            TargetPortId(target_port.relative_id),
        );
        let luns = luns
            .iter()
            .map(|(&id, lun)| {
                let abort_epoch = Arc::new(AtomicU64::new(0));
                lun.persistent
                    .attach(identity.clone(), Arc::downgrade(&abort_epoch));
                let state = LunState {
                    lun: Arc::clone(lun),
                    ua: NexusUa::new(&lun.events),
                    abort_epoch,
                };
                (id, state)
            })
            .collect();
        Nexus {
            id,
            initiator,
            identity,
            luns,
        }
    }

    pub fn initiator(&self) -> &InitiatorPort {
        &self.initiator
    }

    /// How many times this nexus's tasks on `lun` were aborted by another
    /// nexus (PREEMPT AND ABORT, SPC-4 5.13.11.5). A transport holding a
    /// task (waiting for its data or its turn) records this when the task
    /// arrives and ends it with TASK ABORTED if it changed before the task
    /// runs. 0 for a LUN this nexus does not see.
    pub fn abort_epoch(&self, lun: u64) -> u64 {
        self.luns
            .get(&lun)
            .map_or(0, |s| s.abort_epoch.load(Ordering::Acquire))
    }

    /// The counter [`Nexus::abort_epoch`] reads, for a command that
    /// finishes on another thread. A LUN this nexus does not see gets a
    /// counter nobody bumps.
    pub(crate) fn abort_epoch_handle(&self, lun: u64) -> Arc<AtomicU64> {
        self.luns
            .get(&lun)
            .map_or_else(Arc::default, |s| Arc::clone(&s.abort_epoch))
    }

    /// Brings the LUN's queue up to date and takes the next unit attention.
    pub(crate) fn take_unit_attention(&mut self, lun: u64) -> Option<SenseReason> {
        let s = self.luns.get_mut(&lun)?;
        s.ua.sync(&s.lun.events, self.id, &self.identity);
        s.ua.pop()
    }
}

/// SPC-2: a reservation is released when its I_T nexus is lost (the
/// session that owned this nexus ended). Persistent reservations stay
/// (SPC-4 5.13.1: they survive the loss of the I_T nexus).
impl Drop for Nexus {
    fn drop(&mut self) {
        for s in self.luns.values() {
            s.lun.release(self.id);
        }
    }
}
