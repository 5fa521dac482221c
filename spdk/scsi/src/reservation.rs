//! The reservation gate between the unit attention check and execution.
//!
//! Today it enforces SPC-2 RESERVE/RELEASE. SPC-4 persistent reservations
//! will be decided by their own state machine and consulted here, in
//! [`gate`], so execution code never needs to know which model applies.

use crate::cdb::Cdb;
use crate::lun::Lun;
use crate::nexus::NexusId;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Gate {
    Allow,
    Conflict,
}

/// Commands another nexus may still send to a LUN reserved with RESERVE
/// (SPC-2, reservations): the ones that neither touch the medium nor
/// change its state. RELEASE is allowed and has no effect.
fn allowed_under_spc2_reservation(cdb: &Cdb) -> bool {
    matches!(
        cdb,
        Cdb::Inquiry { .. }
            | Cdb::ReportLuns { .. }
            | Cdb::RequestSense { .. }
            | Cdb::Release
            | Cdb::ReportSupportedOpcodes { .. }
            | Cdb::ReportSupportedTmfs { .. }
            | Cdb::Unknown { .. }
    )
}

pub(crate) fn gate(lun: &Lun, nexus: NexusId, cdb: &Cdb) -> Gate {
    match lun.reservation_holder() {
        Some(holder) if holder != nexus && !allowed_under_spc2_reservation(cdb) => Gate::Conflict,
        _ => Gate::Allow,
    }
}
