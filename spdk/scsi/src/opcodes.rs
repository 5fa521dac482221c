//! The one table of supported commands: opcode, service action and CDB usage
//! map. `cdb.rs` rejects any bit outside the usage map, so REPORT SUPPORTED
//! OPERATION CODES (SPC-4) reports exactly what the parser accepts.

use crate::cdb::OpcodeQuery;
use crate::sense::{FieldPointer, SenseReason};

/// One supported command.
#[derive(Debug)]
pub(crate) struct OpInfo {
    pub opcode: u8,
    pub service_action: Option<u16>,
    /// CDB USAGE DATA: byte 0 is the opcode, then one mask per CDB byte of
    /// the bits the device server evaluates. The CONTROL byte is 0: NACA and
    /// LINK are not supported.
    pub usage: &'static [u8],
}

const FF: u8 = 0xFF;
/// GROUP NUMBER field (SBC-4: bits 5..0), accepted and ignored.
const GRP: u8 = 0x3F;
/// RDPROTECT/WRPROTECT (evaluated: must be zero), DPO, FUA, RARC, FUA_NV.
const READ_FLAGS: u8 = 0xFE;
const WRITE_FLAGS: u8 = 0xFA;
/// xxPROTECT, DPO, BYTCHK.
const VERIFY_FLAGS: u8 = 0xF6;

macro_rules! op {
    ($opcode:expr, [$($b:expr),* $(,)?]) => {
        OpInfo { opcode: $opcode, service_action: None, usage: &[$opcode, $($b),*] }
    };
    ($opcode:expr, $sa:expr, [$($b:expr),* $(,)?]) => {
        OpInfo { opcode: $opcode, service_action: Some($sa), usage: &[$opcode, $($b),*] }
    };
}

pub(crate) const SERVICE_ACTION_IN_16: u8 = 0x9E;
pub(crate) const PERSISTENT_RESERVE_IN: u8 = 0x5E;
pub(crate) const PERSISTENT_RESERVE_OUT: u8 = 0x5F;
pub(crate) const MAINTENANCE_IN: u8 = 0xA3;
const UNMAP: u8 = 0x42;
pub(crate) const SA_READ_CAPACITY_16: u16 = 0x10;
pub(crate) const SA_GET_LBA_STATUS: u16 = 0x12;
pub(crate) const SA_REPORT_SUPPORTED_OPCODES: u16 = 0x0C;
pub(crate) const SA_REPORT_SUPPORTED_TMFS: u16 = 0x0D;

#[rustfmt::skip]
pub(crate) static OPCODES: &[OpInfo] = &[
    op!(0x00, [0, 0, 0, 0, 0]),                                   // TEST UNIT READY
    op!(0x03, [0x01, 0, 0, FF, 0]),                               // REQUEST SENSE
    op!(0x08, [0x1F, FF, FF, FF, 0]),                             // READ(6)
    op!(0x0A, [0x1F, FF, FF, FF, 0]),                             // WRITE(6)
    op!(0x12, [0x01, FF, FF, FF, 0]),                             // INQUIRY
    op!(0x15, [0x11, 0, 0, FF, 0]),                               // MODE SELECT(6)
    op!(0x16, [0, 0, 0, 0, 0]),                                   // RESERVE(6)
    op!(0x17, [0, 0, 0, 0, 0]),                                   // RELEASE(6)
    op!(0x1A, [0x08, FF, FF, FF, 0]),                             // MODE SENSE(6)
    op!(0x1B, [0x01, 0, 0x0F, 0xF7, 0]),                          // START STOP UNIT
    op!(0x1E, [0, 0, 0, 0x01, 0]),                                // PREVENT ALLOW MEDIUM REMOVAL
    op!(0x25, [0, FF, FF, FF, FF, 0, 0, 0x01, 0]),                // READ CAPACITY(10)
    op!(0x28, [READ_FLAGS, FF, FF, FF, FF, GRP, FF, FF, 0]),      // READ(10)
    op!(0x2A, [WRITE_FLAGS, FF, FF, FF, FF, GRP, FF, FF, 0]),     // WRITE(10)
    op!(0x2E, [VERIFY_FLAGS, FF, FF, FF, FF, GRP, FF, FF, 0]),    // WRITE AND VERIFY(10)
    op!(0x2F, [VERIFY_FLAGS, FF, FF, FF, FF, GRP, FF, FF, 0]),    // VERIFY(10)
    op!(0x34, [0x02, FF, FF, FF, FF, GRP, FF, FF, 0]),            // PRE-FETCH(10)
    op!(0x35, [0x06, FF, FF, FF, FF, GRP, FF, FF, 0]),            // SYNCHRONIZE CACHE(10)
    op!(0x41, [0xF8, FF, FF, FF, FF, GRP, FF, FF, 0]),            // WRITE SAME(10)
    op!(0x42, [0x01, 0, 0, 0, 0, GRP, FF, FF, 0]),                // UNMAP
    op!(0x55, [0x11, 0, 0, 0, 0, 0, FF, FF, 0]),                  // MODE SELECT(10)
    op!(0x56, [0, 0, 0, 0, 0, 0, 0, 0, 0]),                       // RESERVE(10)
    op!(0x57, [0, 0, 0, 0, 0, 0, 0, 0, 0]),                       // RELEASE(10)
    op!(0x5A, [0x18, FF, FF, 0, 0, 0, FF, FF, 0]),                // MODE SENSE(10)
    // PERSISTENT RESERVE IN: READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ FULL STATUS.
    op!(PERSISTENT_RESERVE_IN, 0x00, [0x1F, 0, 0, 0, 0, 0, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_IN, 0x01, [0x1F, 0, 0, 0, 0, 0, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_IN, 0x02, [0x1F, 0, 0, 0, 0, 0, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_IN, 0x03, [0x1F, 0, 0, 0, 0, 0, FF, FF, 0]),
    // PERSISTENT RESERVE OUT: REGISTER, RESERVE, RELEASE, CLEAR, PREEMPT,
    // PREEMPT AND ABORT, REGISTER AND IGNORE EXISTING KEY, REGISTER AND MOVE.
    op!(PERSISTENT_RESERVE_OUT, 0x00, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_OUT, 0x01, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_OUT, 0x02, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_OUT, 0x03, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_OUT, 0x04, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_OUT, 0x05, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_OUT, 0x06, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(PERSISTENT_RESERVE_OUT, 0x07, [0x1F, FF, 0, 0, FF, FF, FF, FF, 0]),
    op!(0x88, [READ_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),   // READ(16)
    op!(0x89, [WRITE_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0, 0, FF, GRP, 0]),     // COMPARE AND WRITE
    op!(0x8A, [WRITE_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),  // WRITE(16)
    op!(0x8B, [WRITE_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),  // ORWRITE(16)
    op!(0x8E, [VERIFY_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]), // WRITE AND VERIFY(16)
    op!(0x8F, [VERIFY_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]), // VERIFY(16)
    op!(0x90, [0x02, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),         // PRE-FETCH(16)
    op!(0x91, [0x06, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),         // SYNCHRONIZE CACHE(16)
    op!(0x93, [0xF9, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),         // WRITE SAME(16)
    op!(SERVICE_ACTION_IN_16, SA_READ_CAPACITY_16,
        [0x1F, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0x01, 0]),              // READ CAPACITY(16)
    op!(SERVICE_ACTION_IN_16, SA_GET_LBA_STATUS,
        [0x1F, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, FF, 0, 0]),                 // GET LBA STATUS
    op!(0xA0, [0, FF, 0, 0, 0, FF, FF, FF, FF, 0, 0]),             // REPORT LUNS
    op!(MAINTENANCE_IN, SA_REPORT_SUPPORTED_OPCODES,
        [0x1F, 0x87, FF, FF, FF, FF, FF, FF, FF, 0, 0]),           // REPORT SUPPORTED OPERATION CODES
    op!(MAINTENANCE_IN, SA_REPORT_SUPPORTED_TMFS,
        [0x1F, 0x80, 0, 0, 0, FF, FF, FF, FF, 0, 0]),              // REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS
    op!(0xA8, [READ_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),   // READ(12)
    op!(0xAA, [WRITE_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]),  // WRITE(12)
    op!(0xAE, [VERIFY_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]), // WRITE AND VERIFY(12)
    op!(0xAF, [VERIFY_FLAGS, FF, FF, FF, FF, FF, FF, FF, FF, GRP, 0]), // VERIFY(12)
];

pub(crate) fn has_service_actions(opcode: u8) -> bool {
    matches!(
        opcode,
        SERVICE_ACTION_IN_16 | MAINTENANCE_IN | PERSISTENT_RESERVE_IN | PERSISTENT_RESERVE_OUT
    )
}

/// Finds the table entry for a CDB, or the reason it is not supported.
pub(crate) fn lookup(cdb: &[u8]) -> Result<&'static OpInfo, SenseReason> {
    let opcode = *cdb.first().ok_or(SenseReason::InvalidOpcode)?;
    if has_service_actions(opcode) {
        let sa = u16::from(cdb.get(1).copied().unwrap_or(0) & 0x1F);
        OPCODES
            .iter()
            .find(|op| op.opcode == opcode && op.service_action == Some(sa))
            // SPC-4: an unsupported service action is an invalid CDB field.
            .ok_or(SenseReason::InvalidFieldInCdb(FieldPointer::bit(1, 4)))
    } else {
        OPCODES
            .iter()
            .find(|op| op.opcode == opcode)
            .ok_or(SenseReason::InvalidOpcode)
    }
}

/// Rejects a CDB that is too short or sets a bit outside the usage map.
pub(crate) fn check_usage(op: &OpInfo, cdb: &[u8]) -> Result<(), SenseReason> {
    if cdb.len() < op.usage.len() {
        return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(0)));
    }
    for (i, (&byte, &mask)) in cdb.iter().zip(op.usage).enumerate().skip(1) {
        let bad = byte & !mask;
        if bad != 0 {
            let bit = 7 - bad.leading_zeros() as u8;
            return Err(SenseReason::InvalidFieldInCdb(FieldPointer::bit(
                i as u16, bit,
            )));
        }
    }
    Ok(())
}

/// Command timeouts descriptor (SPC-4): we state no nominal time and
/// recommend 30 s, the default of most initiators.
const RECOMMENDED_TIMEOUT_SECS: u32 = 30;

fn push_timeouts(out: &mut Vec<u8>) {
    out.extend_from_slice(&0x0Au16.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&0u32.to_be_bytes());
    out.extend_from_slice(&RECOMMENDED_TIMEOUT_SECS.to_be_bytes());
}

/// REPORT SUPPORTED OPERATION CODES parameter data (SPC-4).
pub(crate) fn report_supported_opcodes(
    query: OpcodeQuery,
    thin: bool,
) -> Result<Vec<u8>, SenseReason> {
    // UNMAP is supported only where blocks can be deallocated (LBPU).
    let supported = |op: &&OpInfo| thin || op.opcode != UNMAP;
    let options_field = SenseReason::InvalidFieldInCdb(FieldPointer::bit(2, 2));
    let mut out = Vec::new();
    match query.options {
        0 => {
            out.extend_from_slice(&[0; 4]);
            for op in OPCODES.iter().filter(supported) {
                out.push(op.opcode);
                out.push(0);
                out.extend_from_slice(&op.service_action.unwrap_or(0).to_be_bytes());
                out.push(0);
                let mut flags = 0;
                if query.rctd {
                    flags |= 0x02; // CTDP
                }
                if op.service_action.is_some() {
                    flags |= 0x01; // SERVACTV
                }
                out.push(flags);
                out.extend_from_slice(&(op.usage.len() as u16).to_be_bytes());
                if query.rctd {
                    push_timeouts(&mut out);
                }
            }
            let len = (out.len() - 4) as u32;
            out[0..4].copy_from_slice(&len.to_be_bytes());
        }
        1..=3 => {
            let with_sa = has_service_actions(query.opcode);
            // Option 1 names a command without service actions, option 2 one
            // with; option 3 either (SPC-4).
            match query.options {
                1 if with_sa => return Err(options_field),
                2 if !with_sa => return Err(options_field),
                _ => {}
            }
            let found = OPCODES.iter().filter(supported).find(|op| {
                op.opcode == query.opcode
                    && (!with_sa || op.service_action == Some(query.service_action))
            });
            let ctdp = if query.rctd { 0x80 } else { 0 };
            match found {
                None => out.extend_from_slice(&[0, ctdp | 0x01, 0, 0]),
                Some(op) => {
                    out.extend_from_slice(&[0, ctdp | 0x03]);
                    out.extend_from_slice(&(op.usage.len() as u16).to_be_bytes());
                    out.extend_from_slice(op.usage);
                    if with_sa {
                        // The service action is part of the opcode, evaluated in full.
                        out[5] |= 0x1F;
                    }
                }
            }
            if query.rctd {
                push_timeouts(&mut out);
            }
        }
        _ => return Err(options_field),
    }
    Ok(out)
}

/// REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS parameter data (SPC-4):
/// ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET.
pub(crate) fn report_supported_tmfs(repd: bool) -> Vec<u8> {
    let mut out = vec![0x80 | 0x40 | 0x10 | 0x08 | 0x02, 0, 0, 0];
    if repd {
        out[3] = 0x0C;
        out.resize(16, 0);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_maps_start_with_opcode_and_have_standard_lengths() {
        for op in OPCODES {
            assert_eq!(op.usage[0], op.opcode);
            let expected = match op.opcode >> 5 {
                0 => 6,
                1 | 2 => 10,
                4 => 16,
                5 => 12,
                _ => unreachable!("group {:#x}", op.opcode),
            };
            assert_eq!(op.usage.len(), expected, "opcode {:#x}", op.opcode);
        }
    }

    #[test]
    fn reserved_bit_is_reported_with_bit_pointer() {
        let op = lookup(&[0x28]).unwrap();
        let mut cdb = [0u8; 10];
        cdb[0] = 0x28;
        cdb[1] = 0x01;
        assert_eq!(
            check_usage(op, &cdb),
            Err(SenseReason::InvalidFieldInCdb(FieldPointer::bit(1, 0)))
        );
    }
}
