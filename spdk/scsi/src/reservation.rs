//! The reservation gate between the unit attention check and execution:
//! SPC-2 RESERVE/RELEASE first, then SPC-4 persistent reservations, so
//! execution code never needs to know which model applies.

use reservoir_pr::{Access, Nexus as PrNexus};

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
/// change its state. RELEASE is allowed and has no effect. PERSISTENT
/// RESERVE IN/OUT are not: a persistent reservation cannot be made while
/// another nexus holds an SPC-2 one (SPC-4 5.13.3).
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

/// How a command behaves under a persistent reservation: the rows of the
/// SPC-4 5.13.1 and SBC-4 4.17 tables (see [`Access`]). REPORT
/// CAPABILITIES advertises ALLOW COMMANDS = 011b: TEST UNIT READY passes
/// every reservation, and MODE SENSE, REPORT SUPPORTED OPERATION CODES and
/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS pass Write Exclusive ones.
pub(crate) fn access(cdb: &Cdb) -> Access {
    match cdb {
        Cdb::TestUnitReady
        | Cdb::RequestSense { .. }
        | Cdb::Inquiry { .. }
        | Cdb::ReportLuns { .. }
        | Cdb::ReadCapacity10
        | Cdb::ReadCapacity16 { .. }
        | Cdb::PersistentReserveIn(_)
        | Cdb::PersistentReserveOut { .. }
        // An unsupported or invalid CDB does nothing; its error says
        // nothing about the medium, whoever holds the reservation.
        | Cdb::Unknown { .. } => Access::Unrestricted,
        // SBC-4 4.17: PREVENT = 00b and START = 1 with POWER CONDITION 0h
        // are allowed; the other forms change the device's state.
        Cdb::PreventAllowMediumRemoval { prevent: 0 } => Access::Unrestricted,
        Cdb::PreventAllowMediumRemoval { .. } => Access::Write,
        Cdb::StartStopUnit {
            start: true,
            power_condition: 0,
        } => Access::Unrestricted,
        Cdb::StartStopUnit { .. } => Access::Write,
        Cdb::Read { .. }
        | Cdb::Verify { .. }
        | Cdb::PreFetch { .. }
        | Cdb::GetLbaStatus { .. }
        | Cdb::ModeSense(_)
        | Cdb::ReportSupportedOpcodes { .. }
        | Cdb::ReportSupportedTmfs { .. } => Access::Read,
        Cdb::Write { .. }
        | Cdb::WriteAndVerify { .. }
        | Cdb::OrWrite { .. }
        | Cdb::CompareAndWrite { .. }
        | Cdb::WriteSame(_)
        | Cdb::Unmap { .. }
        | Cdb::SynchronizeCache { .. }
        | Cdb::ModeSelect(_) => Access::Write,
        Cdb::Reserve | Cdb::Release => Access::LegacyReserveRelease,
    }
}

pub(crate) fn gate(lun: &Lun, nexus: NexusId, identity: &PrNexus, cdb: &Cdb) -> Gate {
    match lun.reservation_holder() {
        Some(holder) if holder != nexus && !allowed_under_spc2_reservation(cdb) => {
            return Gate::Conflict
        }
        _ => {}
    }
    if lun.persistent.allows(identity, access(cdb)) {
        Gate::Allow
    } else {
        Gate::Conflict
    }
}
