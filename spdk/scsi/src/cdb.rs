//! CDB decoding: bytes become a [`Cdb`] once, at the edge (SPC-4, SBC-4).
//!
//! Parsing checks everything that depends only on the CDB and the block
//! size: supported opcode, reserved bits (against the usage map in
//! `opcodes.rs`), protection fields, advertised transfer limits. Checks that
//! depend on the medium's state (capacity, write protection) run at
//! execution, because a resize may land between parse and execute.

use reservoir_bdev::Lba;
use reservoir_pr::PrinCommand;

use crate::limits;
use crate::opcodes::{self, MAINTENANCE_IN, SERVICE_ACTION_IN_16};
use crate::sense::{FieldPointer, SenseReason};

/// Which way data moves for a command, from the initiator's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataDirection {
    None,
    /// Device to initiator.
    In,
    /// Initiator to device.
    Out,
}

/// The data transfer the CDB asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Transfer {
    pub direction: DataDirection,
    pub bytes: u64,
}

impl Transfer {
    const NONE: Transfer = Transfer {
        direction: DataDirection::None,
        bytes: 0,
    };

    fn data_in(bytes: u64) -> Transfer {
        Transfer {
            direction: DataDirection::In,
            bytes,
        }
    }

    fn data_out(bytes: u64) -> Transfer {
        if bytes == 0 {
            return Transfer::NONE;
        }
        Transfer {
            direction: DataDirection::Out,
            bytes,
        }
    }
}

/// A run of logical blocks named by a CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Extent {
    pub lba: Lba,
    pub blocks: u64,
}

/// BYTCHK of VERIFY and WRITE AND VERIFY (SBC-4, VERIFY).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ByteCheck {
    /// Medium verification only.
    None,
    /// Compare data-out with the medium, block by block.
    Full,
    /// One block of data-out compared with every block of the extent.
    OneBlock,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OpcodeQuery {
    pub rctd: bool,
    pub options: u8,
    pub opcode: u8,
    pub service_action: u16,
}

/// MODE SENSE page control (SPC-4, MODE SENSE(6)).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PageControl {
    Current,
    Changeable,
    Default,
    Saved,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeSense {
    pub ten: bool,
    pub dbd: bool,
    pub llbaa: bool,
    pub pc: PageControl,
    pub page: u8,
    pub subpage: u8,
    pub alloc: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModeSelect {
    pub ten: bool,
    pub pf: bool,
    pub param_len: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct WriteSame {
    pub extent: Extent,
    pub unmap: bool,
    pub ndob: bool,
}

/// A decoded CDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cdb {
    TestUnitReady,
    RequestSense {
        alloc: u32,
    },
    Inquiry {
        evpd: bool,
        page: u8,
        alloc: u32,
    },
    ReportLuns {
        select: u8,
        alloc: u32,
    },
    ReadCapacity10,
    ReadCapacity16 {
        alloc: u32,
    },
    GetLbaStatus {
        lba: Lba,
        alloc: u32,
    },
    Read {
        extent: Extent,
        fua: bool,
    },
    Write {
        extent: Extent,
        fua: bool,
    },
    WriteAndVerify {
        extent: Extent,
        check: ByteCheck,
    },
    Verify {
        extent: Extent,
        check: ByteCheck,
    },
    OrWrite {
        extent: Extent,
        fua: bool,
    },
    CompareAndWrite {
        extent: Extent,
        fua: bool,
    },
    WriteSame(WriteSame),
    Unmap {
        param_len: u32,
    },
    SynchronizeCache {
        extent: Extent,
    },
    PreFetch {
        extent: Extent,
    },
    ModeSense(ModeSense),
    ModeSelect(ModeSelect),
    StartStopUnit {
        start: bool,
        power_condition: u8,
    },
    PreventAllowMediumRemoval {
        prevent: u8,
    },
    ReportSupportedOpcodes {
        query: OpcodeQuery,
        alloc: u32,
    },
    ReportSupportedTmfs {
        repd: bool,
        alloc: u32,
    },
    Reserve,
    Release,
    PersistentReserveIn(PrinCommand),
    /// The CDB is kept whole: the command is parsed together with its
    /// parameter list, which arrives as data-out (SPC-4 6.16).
    PersistentReserveOut {
        cdb: [u8; PR_OUT_CDB_LEN],
    },
    /// A CDB this device server does not execute: unsupported opcode or
    /// service action, or an invalid field. Kept as a command so that unit
    /// attentions and reservations take precedence over the error.
    Unknown {
        reason: SenseReason,
    },
}

impl Cdb {
    /// Commands a pending unit attention neither blocks nor clears
    /// (SAM-5, unit attention conditions; REQUEST SENSE reports it instead).
    pub(crate) fn passes_unit_attention(&self) -> bool {
        matches!(
            self,
            Cdb::Inquiry { .. } | Cdb::ReportLuns { .. } | Cdb::RequestSense { .. }
        )
    }
}

/// PERSISTENT RESERVE OUT is a 10-byte CDB (SPC-4 6.16.1).
pub(crate) const PR_OUT_CDB_LEN: usize = 10;

/// INQUIRY, REPORT LUNS and REQUEST SENSE may be addressed to a LUN that
/// does not exist (SPC-4: INQUIRY, REPORT LUNS, REQUEST SENSE); their CDB errors are reported
/// as such rather than as LOGICAL UNIT NOT SUPPORTED.
pub(crate) fn valid_without_lun(opcode: u8) -> bool {
    matches!(opcode, 0x03 | 0x12 | 0xA0)
}

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

fn invalid(byte: u16, bit: u8) -> SenseReason {
    SenseReason::InvalidFieldInCdb(FieldPointer::bit(byte, bit))
}

/// The protection field (RDPROTECT, WRPROTECT, VRPROTECT, ORPROTECT) in bits
/// 7..5 of byte 1 must be zero: the LUN has no protection information
/// (SBC-4, protection information; PROTECT=0 in standard INQUIRY).
fn no_protection(cdb: &[u8]) -> Result<(), SenseReason> {
    if cdb[1] & 0xE0 != 0 {
        return Err(invalid(1, 7));
    }
    Ok(())
}

/// Where the transfer length sits, to point at it when it is too large.
fn length_field(opcode: u8) -> u16 {
    match opcode >> 5 {
        0 => 4,
        1 | 2 => 7,
        5 => 6,
        _ => 10,
    }
}

/// LBA and transfer length at their group's standard offsets (SBC-4).
fn extent(cdb: &[u8]) -> Extent {
    let (lba, blocks) = match cdb[0] >> 5 {
        0 => {
            let lba = be(&cdb[1..4]) & 0x1F_FFFF;
            // READ(6)/WRITE(6): a TRANSFER LENGTH of 0 means 256 blocks.
            let blocks = match cdb[4] {
                0 => 256,
                n => u64::from(n),
            };
            (lba, blocks)
        }
        1 | 2 => (be(&cdb[2..6]), be(&cdb[7..9])),
        5 => (be(&cdb[2..6]), be(&cdb[6..10])),
        _ => (be(&cdb[2..10]), be(&cdb[10..14])),
    };
    Extent {
        lba: Lba(lba),
        blocks,
    }
}

fn byte_check(cdb: &[u8], write_and_verify: bool) -> Result<ByteCheck, SenseReason> {
    match (cdb[1] >> 1) & 0x03 {
        0 => Ok(ByteCheck::None),
        1 => Ok(ByteCheck::Full),
        // SBC-4: BYTCHK 11b is defined for VERIFY only.
        3 if !write_and_verify => Ok(ByteCheck::OneBlock),
        _ => Err(invalid(1, 2)),
    }
}

/// A command parsed for one LUN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    lun: u64,
    opcode: u8,
    cdb: Cdb,
    transfer: Transfer,
}

impl Command {
    pub fn lun(&self) -> u64 {
        self.lun
    }

    pub fn transfer(&self) -> Transfer {
        self.transfer
    }

    /// The operation code, for logs and statistics.
    pub fn opcode(&self) -> u8 {
        self.opcode
    }

    pub(crate) fn cdb(&self) -> &Cdb {
        &self.cdb
    }
}

impl Command {
    /// Decodes `bytes` for a LUN whose logical block size is `block_size`
    /// (`None` when the LUN does not exist: only the commands valid without
    /// a LUN decode then, the caller reports the rest).
    pub(crate) fn decode(lun: u64, bytes: &[u8], block_size: Option<u32>) -> Command {
        let opcode = bytes.first().copied().unwrap_or(0);
        let (cdb, transfer) = match decode(bytes, block_size.unwrap_or(512)) {
            Ok(decoded) => decoded,
            Err(reason) => (Cdb::Unknown { reason }, Transfer::NONE),
        };
        Command {
            lun,
            opcode,
            cdb,
            transfer,
        }
    }
}

fn decode(cdb: &[u8], block_size: u32) -> Result<(Cdb, Transfer), SenseReason> {
    let op = opcodes::lookup(cdb)?;
    opcodes::check_usage(op, cdb)?;
    let bs = u64::from(block_size);
    let opcode = cdb[0];
    let blocks_field = length_field(opcode);
    let max_blocks = limits::max_transfer_blocks(block_size);
    let bounded = |e: Extent| -> Result<Extent, SenseReason> {
        // SBC-4, Block Limits VPD page: a transfer over MAXIMUM TRANSFER LENGTH is an invalid field.
        if e.blocks > max_blocks {
            return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(
                blocks_field,
            )));
        }
        Ok(e)
    };
    let fua = cdb[1] & 0x08 != 0;
    let parsed = match opcode {
        0x00 => (Cdb::TestUnitReady, Transfer::NONE),
        0x03 => {
            // Descriptor-format sense data is not supported (SPC-4, REQUEST SENSE).
            if cdb[1] & 0x01 != 0 {
                return Err(invalid(1, 0));
            }
            let alloc = u32::from(cdb[4]);
            (Cdb::RequestSense { alloc }, Transfer::data_in(alloc.into()))
        }
        0x08 | 0x28 | 0xA8 | 0x88 => {
            no_protection(cdb)?;
            let extent = bounded(extent(cdb))?;
            let fua = opcode != 0x08 && fua;
            (
                Cdb::Read { extent, fua },
                Transfer::data_in(extent.blocks * bs),
            )
        }
        0x0A | 0x2A | 0xAA | 0x8A => {
            no_protection(cdb)?;
            let extent = bounded(extent(cdb))?;
            let fua = opcode != 0x0A && fua;
            (
                Cdb::Write { extent, fua },
                Transfer::data_out(extent.blocks * bs),
            )
        }
        0x2E | 0xAE | 0x8E => {
            no_protection(cdb)?;
            let check = byte_check(cdb, true)?;
            let extent = bounded(extent(cdb))?;
            (
                Cdb::WriteAndVerify { extent, check },
                Transfer::data_out(extent.blocks * bs),
            )
        }
        0x2F | 0xAF | 0x8F => {
            no_protection(cdb)?;
            let check = byte_check(cdb, false)?;
            let extent = bounded(extent(cdb))?;
            let bytes = match check {
                ByteCheck::None => 0,
                ByteCheck::Full => extent.blocks * bs,
                ByteCheck::OneBlock if extent.blocks == 0 => 0,
                ByteCheck::OneBlock => bs,
            };
            (Cdb::Verify { extent, check }, Transfer::data_out(bytes))
        }
        0x8B => {
            no_protection(cdb)?;
            let extent = bounded(extent(cdb))?;
            (
                Cdb::OrWrite { extent, fua },
                Transfer::data_out(extent.blocks * bs),
            )
        }
        0x89 => {
            no_protection(cdb)?;
            let blocks = cdb[13];
            // SBC-4 5.3 (COMPARE AND WRITE): over MAXIMUM COMPARE AND WRITE LENGTH is an invalid field.
            if blocks > limits::MAX_COMPARE_AND_WRITE_BLOCKS {
                return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(13)));
            }
            let extent = Extent {
                lba: Lba(be(&cdb[2..10])),
                blocks: u64::from(blocks),
            };
            (
                Cdb::CompareAndWrite { extent, fua },
                Transfer::data_out(2 * extent.blocks * bs),
            )
        }
        0x41 | 0x93 => {
            no_protection(cdb)?;
            // ANCHOR: anchored blocks are not supported (ANC_SUP=0 in the Logical Block Provisioning VPD page).
            if cdb[1] & 0x10 != 0 {
                return Err(invalid(1, 4));
            }
            // Zero blocks means "to the end of the medium" (SBC-4 WRITE SAME,
            // WSNZ=0); resolved when it runs, since a resize may come between.
            let extent = extent(cdb);
            let ndob = opcode == 0x93 && cdb[1] & 0x01 != 0;
            let ws = WriteSame {
                extent,
                unmap: cdb[1] & 0x08 != 0,
                ndob,
            };
            let bytes = if ndob { 0 } else { bs };
            (Cdb::WriteSame(ws), Transfer::data_out(bytes))
        }
        0x42 => {
            if cdb[1] & 0x01 != 0 {
                return Err(invalid(1, 0));
            }
            let param_len = be(&cdb[7..9]) as u32;
            (
                Cdb::Unmap { param_len },
                Transfer::data_out(param_len.into()),
            )
        }
        0x35 | 0x91 => (
            Cdb::SynchronizeCache {
                extent: extent(cdb),
            },
            Transfer::NONE,
        ),
        0x34 | 0x90 => (
            Cdb::PreFetch {
                extent: extent(cdb),
            },
            Transfer::NONE,
        ),
        0x12 => {
            let evpd = cdb[1] & 0x01 != 0;
            // SPC-4, INQUIRY: PAGE CODE must be zero when EVPD is zero.
            if !evpd && cdb[2] != 0 {
                return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(2)));
            }
            let alloc = be(&cdb[3..5]) as u32;
            (
                Cdb::Inquiry {
                    evpd,
                    page: cdb[2],
                    alloc,
                },
                Transfer::data_in(alloc.into()),
            )
        }
        0xA0 => {
            let alloc = be(&cdb[6..10]) as u32;
            // SPC-4, REPORT LUNS: ALLOCATION LENGTH below 16 is an invalid field.
            if alloc < 16 {
                return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(6)));
            }
            if cdb[2] > 2 {
                return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(2)));
            }
            (
                Cdb::ReportLuns {
                    select: cdb[2],
                    alloc,
                },
                Transfer::data_in(alloc.into()),
            )
        }
        0x25 => {
            // SBC-3, READ CAPACITY(10): with PMI zero the LBA field must be zero.
            if cdb[8] & 0x01 == 0 && be(&cdb[2..6]) != 0 {
                return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(2)));
            }
            (Cdb::ReadCapacity10, Transfer::data_in(8))
        }
        SERVICE_ACTION_IN_16 => {
            let alloc = be(&cdb[10..14]) as u32;
            if u16::from(cdb[1] & 0x1F) == opcodes::SA_READ_CAPACITY_16 {
                if cdb[14] & 0x01 == 0 && be(&cdb[2..10]) != 0 {
                    return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(2)));
                }
                (
                    Cdb::ReadCapacity16 { alloc },
                    Transfer::data_in(alloc.into()),
                )
            } else {
                (
                    Cdb::GetLbaStatus {
                        lba: Lba(be(&cdb[2..10])),
                        alloc,
                    },
                    Transfer::data_in(alloc.into()),
                )
            }
        }
        0x1A | 0x5A => {
            let ten = opcode == 0x5A;
            let pc = match cdb[2] >> 6 {
                0 => PageControl::Current,
                1 => PageControl::Changeable,
                2 => PageControl::Default,
                _ => PageControl::Saved,
            };
            let alloc = if ten {
                be(&cdb[7..9]) as u32
            } else {
                u32::from(cdb[4])
            };
            let ms = ModeSense {
                ten,
                dbd: cdb[1] & 0x08 != 0,
                llbaa: ten && cdb[1] & 0x10 != 0,
                pc,
                page: cdb[2] & 0x3F,
                subpage: cdb[3],
                alloc,
            };
            (Cdb::ModeSense(ms), Transfer::data_in(alloc.into()))
        }
        0x15 | 0x55 => {
            let ten = opcode == 0x55;
            // SPC-4, MODE SELECT(6): saving pages is not supported, so SP=1 is invalid.
            if cdb[1] & 0x01 != 0 {
                return Err(invalid(1, 0));
            }
            let param_len = if ten {
                be(&cdb[7..9]) as u32
            } else {
                u32::from(cdb[4])
            };
            let ms = ModeSelect {
                ten,
                pf: cdb[1] & 0x10 != 0,
                param_len,
            };
            (Cdb::ModeSelect(ms), Transfer::data_out(param_len.into()))
        }
        0x1B => {
            // LOEJ: the medium is not removable (RMB=0), so it cannot be ejected.
            if cdb[4] & 0x02 != 0 {
                return Err(invalid(4, 1));
            }
            (
                Cdb::StartStopUnit {
                    start: cdb[4] & 0x01 != 0,
                    power_condition: cdb[4] >> 4,
                },
                Transfer::NONE,
            )
        }
        0x1E => (
            Cdb::PreventAllowMediumRemoval {
                prevent: cdb[4] & 0x03,
            },
            Transfer::NONE,
        ),
        MAINTENANCE_IN => {
            let alloc = be(&cdb[6..10]) as u32;
            if u16::from(cdb[1] & 0x1F) == opcodes::SA_REPORT_SUPPORTED_OPCODES {
                let query = OpcodeQuery {
                    rctd: cdb[2] & 0x80 != 0,
                    options: cdb[2] & 0x07,
                    opcode: cdb[3],
                    service_action: be(&cdb[4..6]) as u16,
                };
                (
                    Cdb::ReportSupportedOpcodes { query, alloc },
                    Transfer::data_in(alloc.into()),
                )
            } else {
                // SPC-4, REPORT SUPPORTED TASK MANAGEMENT FUNCTIONS: ALLOCATION LENGTH below 4 is an invalid field.
                if alloc < 4 {
                    return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(6)));
                }
                let repd = cdb[2] & 0x80 != 0;
                (
                    Cdb::ReportSupportedTmfs { repd, alloc },
                    Transfer::data_in(alloc.into()),
                )
            }
        }
        0x16 | 0x56 => (Cdb::Reserve, Transfer::NONE),
        0x17 | 0x57 => (Cdb::Release, Transfer::NONE),
        opcodes::PERSISTENT_RESERVE_IN => {
            let cmd = crate::persistent::parse_in(cdb)?;
            (
                Cdb::PersistentReserveIn(cmd),
                Transfer::data_in(cmd.allocation_length.into()),
            )
        }
        opcodes::PERSISTENT_RESERVE_OUT => {
            let mut bytes = [0; PR_OUT_CDB_LEN];
            bytes.copy_from_slice(&cdb[..PR_OUT_CDB_LEN]);
            // PARAMETER LIST LENGTH (SPC-4 6.16.1).
            let param_len = be(&cdb[5..9]);
            (
                Cdb::PersistentReserveOut { cdb: bytes },
                Transfer::data_out(param_len),
            )
        }
        _ => return Err(SenseReason::InvalidOpcode),
    };
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> Command {
        Command::decode(0, bytes, Some(512))
    }

    #[test]
    fn read6_zero_length_means_256_blocks() {
        let c = parse(&[0x08, 0x01, 0x02, 0x03, 0, 0]);
        assert_eq!(
            c.cdb,
            Cdb::Read {
                extent: Extent {
                    lba: Lba(0x010203),
                    blocks: 256
                },
                fua: false
            }
        );
        assert_eq!(c.transfer.bytes, 256 * 512);
    }

    #[test]
    fn rdprotect_is_invalid_field() {
        let c = parse(&[0x28, 0x20, 0, 0, 0, 0, 0, 0, 1, 0]);
        assert_eq!(
            c.cdb,
            Cdb::Unknown {
                reason: SenseReason::InvalidFieldInCdb(FieldPointer::bit(1, 7))
            }
        );
    }

    #[test]
    fn transfer_over_limit_is_invalid_field() {
        let c = parse(&[
            0x88, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0, 0,
        ]);
        assert_eq!(
            c.cdb,
            Cdb::Unknown {
                reason: SenseReason::InvalidFieldInCdb(FieldPointer::byte(10))
            }
        );
    }

    #[test]
    fn short_and_empty_cdbs_are_rejected() {
        assert_eq!(
            parse(&[]).cdb,
            Cdb::Unknown {
                reason: SenseReason::InvalidOpcode
            }
        );
        assert_eq!(
            parse(&[0x28, 0, 0]).cdb,
            Cdb::Unknown {
                reason: SenseReason::InvalidFieldInCdb(FieldPointer::byte(0))
            }
        );
        assert_eq!(
            parse(&[0x9E]).cdb,
            Cdb::Unknown {
                reason: SenseReason::InvalidFieldInCdb(FieldPointer::bit(1, 4))
            }
        );
    }

    #[test]
    fn every_table_entry_decodes() {
        for op in crate::opcodes::OPCODES {
            let mut cdb = vec![0u8; op.usage.len()];
            cdb[0] = op.opcode;
            if let Some(sa) = op.service_action {
                cdb[1] = sa as u8;
            }
            // Allocation lengths that must be non-trivial.
            if op.opcode == 0xA0 || op.opcode == MAINTENANCE_IN {
                cdb[9] = 16;
            }
            if matches!(op.opcode, 0x41 | 0x93) {
                cdb[op.usage.len() - 3] = 1;
            }
            let c = parse(&cdb);
            assert!(
                !matches!(c.cdb, Cdb::Unknown { .. }),
                "{:#x}: {:?}",
                op.opcode,
                c.cdb
            );
        }
    }
}
