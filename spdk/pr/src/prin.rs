//! PERSISTENT RESERVE IN (SPC-4 6.15): parsing and parameter data.

use crate::error::{cdb_field, PrError};
use crate::prout::LU_SCOPE;
use crate::table::ReservationTable;
use crate::transport_id;

/// PERSISTENT RESERVE IN is a 10-byte CDB (SPC-4 6.15.1).
const CDB_LEN: usize = 10;

/// PERSISTENT RESERVE IN service actions (SPC-4 6.15.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PrinAction {
    /// 00h READ KEYS.
    ReadKeys,
    /// 01h READ RESERVATION.
    ReadReservation,
    /// 02h REPORT CAPABILITIES.
    ReportCapabilities,
    /// 03h READ FULL STATUS.
    ReadFullStatus,
}

/// A parsed PERSISTENT RESERVE IN command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrinCommand {
    /// The service action.
    pub action: PrinAction,
    /// ALLOCATION LENGTH: the reply is truncated to it (SPC-4 4.2.5.6).
    pub allocation_length: u16,
}

impl PrinCommand {
    /// Parses a PERSISTENT RESERVE IN CDB.
    pub fn parse(cdb: &[u8]) -> Result<Self, PrError> {
        if cdb.len() < CDB_LEN {
            return Err(cdb_field(0, 7));
        }
        let action = match cdb[1] & 0x1f {
            0x00 => PrinAction::ReadKeys,
            0x01 => PrinAction::ReadReservation,
            0x02 => PrinAction::ReportCapabilities,
            0x03 => PrinAction::ReadFullStatus,
            _ => return Err(cdb_field(1, 4)),
        };
        Ok(Self {
            action,
            allocation_length: u16::from_be_bytes([cdb[7], cdb[8]]),
        })
    }
}

/// REPORT CAPABILITIES byte 2: SIP_C | ATP_C | PTPL_C; CRH = 0 because
/// RESERVE/RELEASE(6/10) conflict with registrations (SPC-4 5.13.3).
const CAPS_BYTE2: u8 = 0x08 | 0x04 | 0x01;
/// REPORT CAPABILITIES byte 3: TMV = 1, ALLOW COMMANDS = 011b — TEST UNIT
/// READY passes WE and EA reservations, and the commands SPC-4 6.15.4
/// lists (MODE SENSE, READ BUFFER, ...) pass WE ones ([`crate::Access::Read`]).
const CAPS_BYTE3: u8 = 0x80 | 0b011 << 4;
/// PERSISTENT RESERVATION TYPE MASK: all six types (SPC-4 6.15.4).
const TYPE_MASK: [u8; 2] = [0x80 | 0x40 | 0x20 | 0x08 | 0x02, 0x01];

impl ReservationTable {
    /// Answers a PERSISTENT RESERVE IN: the parameter data truncated to
    /// ALLOCATION LENGTH; length fields always describe the full data
    /// (SPC-4 6.15.2: ADDITIONAL LENGTH is not altered by truncation).
    pub fn execute_in(&self, cmd: &PrinCommand) -> Vec<u8> {
        let mut out = match cmd.action {
            PrinAction::ReadKeys => self.read_keys(),
            PrinAction::ReadReservation => self.read_reservation(),
            PrinAction::ReportCapabilities => self.report_capabilities(),
            PrinAction::ReadFullStatus => self.read_full_status(),
        };
        out.truncate(usize::from(cmd.allocation_length));
        out
    }

    fn header(&self, additional: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(8 + additional);
        out.extend_from_slice(&self.generation.0.to_be_bytes());
        out.extend_from_slice(&u32::try_from(additional).unwrap_or(u32::MAX).to_be_bytes());
        out
    }

    /// SPC-4 6.15.2: PRgeneration, ADDITIONAL LENGTH, one key per
    /// registered I_T nexus.
    fn read_keys(&self) -> Vec<u8> {
        let mut out = self.header(8 * self.registrations.len());
        for r in &self.registrations {
            out.extend_from_slice(&r.key.0.to_be_bytes());
        }
        out
    }

    /// SPC-4 6.15.3: one 16-byte descriptor when reserved; the key is zero
    /// for all-registrants types.
    fn read_reservation(&self) -> Vec<u8> {
        let Some(view) = self.reservation() else {
            return self.header(0);
        };
        let mut out = self.header(16);
        out.extend_from_slice(&view.key.0.to_be_bytes());
        out.extend_from_slice(&[0; 4]); // obsolete
        out.push(0); // reserved
        out.push(LU_SCOPE << 4 | view.rtype.code());
        out.extend_from_slice(&[0; 2]); // obsolete
        out
    }

    /// SPC-4 6.15.4.
    fn report_capabilities(&self) -> Vec<u8> {
        let mut out = vec![0, 8, CAPS_BYTE2, CAPS_BYTE3 | u8::from(self.aptpl)];
        out.extend_from_slice(&TYPE_MASK);
        out.extend_from_slice(&[0; 2]);
        out
    }

    /// SPC-4 6.15.5: a full status descriptor per registered I_T nexus.
    fn read_full_status(&self) -> Vec<u8> {
        let mut body = Vec::new();
        for (i, r) in self.registrations.iter().enumerate() {
            let holder = self.is_holder(i);
            let tid = transport_id::encode_transport_id(&r.nexus.initiator);
            body.extend_from_slice(&r.key.0.to_be_bytes());
            body.extend_from_slice(&[0; 4]);
            body.push(u8::from(r.all_tg_pt) << 1 | u8::from(holder));
            // SCOPE and TYPE only for a holder.
            body.push(match (&self.reservation, holder) {
                (Some(h), true) => LU_SCOPE << 4 | h.rtype.code(),
                _ => 0,
            });
            body.extend_from_slice(&[0; 4]);
            body.extend_from_slice(&r.nexus.target_port.0.to_be_bytes());
            body.extend_from_slice(&u32::try_from(tid.len()).unwrap_or(u32::MAX).to_be_bytes());
            body.extend_from_slice(&tid);
        }
        let mut out = self.header(body.len());
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{FieldPointer, IllegalRequest};

    fn cdb(sa: u8, alloc: u16) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[0] = 0x5e;
        c[1] = sa;
        c[7..9].copy_from_slice(&alloc.to_be_bytes());
        c
    }

    #[test]
    fn parses_the_four_service_actions() {
        for (sa, action) in [
            (0, PrinAction::ReadKeys),
            (1, PrinAction::ReadReservation),
            (2, PrinAction::ReportCapabilities),
            (3, PrinAction::ReadFullStatus),
        ] {
            assert_eq!(
                PrinCommand::parse(&cdb(sa, 0x1234)).unwrap(),
                PrinCommand {
                    action,
                    allocation_length: 0x1234
                }
            );
        }
    }

    #[test]
    fn other_service_actions_are_invalid_field_in_cdb() {
        // libiscsi test_prin_serviceaction_range walks 4..=0x1f.
        for sa in 4..=0x1f {
            assert_eq!(
                PrinCommand::parse(&cdb(sa, 8)),
                Err(PrError::IllegalRequest(IllegalRequest::InvalidFieldInCdb(
                    FieldPointer::bit(1, 4)
                )))
            );
        }
    }

    #[test]
    fn report_capabilities_is_truthful() {
        let t = ReservationTable::new([crate::TargetPortId(1)]);
        let caps = t.execute_in(&PrinCommand {
            action: PrinAction::ReportCapabilities,
            allocation_length: 100,
        });
        assert_eq!(caps, [0, 8, 0x0d, 0xb0, 0xea, 0x01, 0, 0]);
        // libiscsi test_prin_report_caps_simple: ALLOW COMMANDS <= 5.
        assert!((caps[3] >> 4) & 7 <= 5);
    }
}
