//! I_T nexus state (SAM-5): owned by the session that carries it, so
//! nothing here is shared or locked.

use std::collections::BTreeMap;
use std::sync::Arc;

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

/// One I_T nexus's view of a device's LUNs.
#[derive(Debug)]
pub struct Nexus {
    pub(crate) id: NexusId,
    initiator: InitiatorPort,
    luns: BTreeMap<u64, (Arc<Lun>, NexusUa)>,
}

impl Nexus {
    pub(crate) fn new(
        id: NexusId,
        initiator: InitiatorPort,
        luns: &BTreeMap<u64, Arc<Lun>>,
    ) -> Self {
        let luns = luns
            .iter()
            .map(|(&id, lun)| (id, (Arc::clone(lun), NexusUa::new(&lun.events))))
            .collect();
        Nexus {
            id,
            initiator,
            luns,
        }
    }

    pub fn initiator(&self) -> &InitiatorPort {
        &self.initiator
    }

    /// Brings the LUN's queue up to date and takes the next unit attention.
    pub(crate) fn take_unit_attention(&mut self, lun: u64) -> Option<SenseReason> {
        let (l, ua) = self.luns.get_mut(&lun)?;
        ua.sync(&l.events, self.id);
        ua.pop()
    }
}

/// SPC-2: a reservation is released when its I_T nexus is lost (the
/// session that owned this nexus ended).
impl Drop for Nexus {
    fn drop(&mut self) {
        for (lun, _) in self.luns.values() {
            lun.release(self.id);
        }
    }
}
