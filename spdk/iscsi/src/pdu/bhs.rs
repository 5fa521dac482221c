//! The Basic Header Segment (RFC 7143 §11.2): 48 bytes, decoded into one
//! typed header per opcode; target headers encoded from typed structs.
//!
//! ```text
//!  byte 0      1       2..3        4       5..7     8..15   16..19  20..47
//!  |.|I|opcode|flags|op-specific|AHSlen|DataSegLen| LUN/.. |  ITT  | op-specific (28 bytes)
//! ```

// The LUN field (SAM-5 4.7) is coded by the SCSI layer, which also builds
// REPORT LUNS, so both agree on every LUN number.
use reservoir_scsi::{decode_lun as lun_from_wire, encode_lun as lun_to_wire};

use crate::serial::CmdSn;

pub const BHS_LEN: usize = 48;

/// Reserved ITT/TTT value (RFC 7143 §11.1): "no task".
pub const RESERVED_TAG: u32 = 0xffff_ffff;

/// The generic layout every PDU shares; op-specific bytes stay raw here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[repr(C)]
pub(crate) struct RawBhs {
    pub opcode: u8,
    pub flags: u8,
    pub specific: [u8; 2],
    pub total_ahs_len: u8,
    pub data_segment_len: [u8; 3],
    pub lun: [u8; 8],
    pub itt: [u8; 4],
    pub fields: [u8; 28],
}

const _: () = assert!(std::mem::size_of::<RawBhs>() == BHS_LEN);

impl RawBhs {
    pub fn from_bytes(b: &[u8; BHS_LEN]) -> RawBhs {
        let mut raw = RawBhs {
            opcode: b[0],
            flags: b[1],
            specific: [b[2], b[3]],
            total_ahs_len: b[4],
            data_segment_len: [b[5], b[6], b[7]],
            ..RawBhs::default()
        };
        raw.lun.copy_from_slice(&b[8..16]);
        raw.itt.copy_from_slice(&b[16..20]);
        raw.fields.copy_from_slice(&b[20..48]);
        raw
    }

    pub fn to_bytes(self) -> [u8; BHS_LEN] {
        let mut b = [0u8; BHS_LEN];
        b[0] = self.opcode;
        b[1] = self.flags;
        b[2..4].copy_from_slice(&self.specific);
        b[4] = self.total_ahs_len;
        b[5..8].copy_from_slice(&self.data_segment_len);
        b[8..16].copy_from_slice(&self.lun);
        b[16..20].copy_from_slice(&self.itt);
        b[20..48].copy_from_slice(&self.fields);
        b
    }

    pub fn data_len(&self) -> usize {
        let [a, b, c] = self.data_segment_len;
        (usize::from(a) << 16) | (usize::from(b) << 8) | usize::from(c)
    }

    pub fn set_data_len(&mut self, len: usize) {
        debug_assert!(len < 1 << 24);
        self.data_segment_len = [(len >> 16) as u8, (len >> 8) as u8, len as u8];
    }

    /// The op-specific 32-bit word at BHS byte `offset` (20, 24, ... 44).
    pub fn word(&self, offset: usize) -> u32 {
        let i = offset - 20;
        u32::from_be_bytes([
            self.fields[i],
            self.fields[i + 1],
            self.fields[i + 2],
            self.fields[i + 3],
        ])
    }

    pub fn set_word(&mut self, offset: usize, v: u32) {
        let i = offset - 20;
        self.fields[i..i + 4].copy_from_slice(&v.to_be_bytes());
    }

    pub fn immediate(&self) -> bool {
        self.opcode & 0x40 != 0
    }
}

/// Initiator opcodes (RFC 7143 §11.1.1).
pub(crate) mod op {
    pub const NOP_OUT: u8 = 0x00;
    pub const SCSI_COMMAND: u8 = 0x01;
    pub const TASK_MGMT: u8 = 0x02;
    pub const LOGIN: u8 = 0x03;
    pub const TEXT: u8 = 0x04;
    pub const DATA_OUT: u8 = 0x05;
    pub const LOGOUT: u8 = 0x06;
    pub const SNACK: u8 = 0x10;
    pub const NOP_IN: u8 = 0x20;
    pub const SCSI_RESPONSE: u8 = 0x21;
    pub const TASK_MGMT_RESPONSE: u8 = 0x22;
    pub const LOGIN_RESPONSE: u8 = 0x23;
    pub const TEXT_RESPONSE: u8 = 0x24;
    pub const DATA_IN: u8 = 0x25;
    pub const LOGOUT_RESPONSE: u8 = 0x26;
    pub const R2T: u8 = 0x31;
    pub const REJECT: u8 = 0x3f;
}

/// Initiator task tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Itt(pub u32);

/// Target transfer tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ttt(pub u32);

impl Ttt {
    pub const RESERVED: Ttt = Ttt(RESERVED_TAG);
}

/// Login stages (RFC 7143 §11.12.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Stage {
    Security = 0,
    Operational = 1,
    FullFeature = 3,
}

impl Stage {
    fn from_bits(b: u8) -> Option<Stage> {
        match b & 3 {
            0 => Some(Stage::Security),
            1 => Some(Stage::Operational),
            3 => Some(Stage::FullFeature),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NopOut {
    pub immediate: bool,
    pub lun: u64,
    pub itt: Itt,
    pub ttt: Ttt,
    pub cmd_sn: CmdSn,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScsiCommand {
    pub immediate: bool,
    pub final_: bool,
    pub read: bool,
    pub write: bool,
    pub attr: u8,
    pub lun: u64,
    pub itt: Itt,
    pub expected_len: u32,
    pub cmd_sn: CmdSn,
    pub exp_stat_sn: u32,
    /// The CDB, extended by an Extended-CDB AHS when present (§11.3.5).
    pub cdb: CdbBytes,
}

/// A CDB as it arrived. The BHS's 16 bytes are kept inline, so decoding a
/// command allocates nothing; only a CDB extended by an AHS (§11.3.5) is
/// longer and lives on the heap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CdbBytes {
    Basic([u8; 16]),
    Extended(Vec<u8>),
}

impl std::ops::Deref for CdbBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            CdbBytes::Basic(bytes) => bytes,
            CdbBytes::Extended(bytes) => bytes,
        }
    }
}

/// Task management function codes (RFC 7143 §11.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TmfFunction {
    AbortTask,
    AbortTaskSet,
    ClearAca,
    ClearTaskSet,
    LogicalUnitReset,
    TargetWarmReset,
    TargetColdReset,
    TaskReassign,
    Other(u8),
}

impl TmfFunction {
    fn from_code(c: u8) -> TmfFunction {
        match c {
            1 => TmfFunction::AbortTask,
            2 => TmfFunction::AbortTaskSet,
            3 => TmfFunction::ClearAca,
            4 => TmfFunction::ClearTaskSet,
            5 => TmfFunction::LogicalUnitReset,
            6 => TmfFunction::TargetWarmReset,
            7 => TmfFunction::TargetColdReset,
            8 => TmfFunction::TaskReassign,
            other => TmfFunction::Other(other),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskManagementRequest {
    pub immediate: bool,
    pub function: TmfFunction,
    pub lun: u64,
    pub itt: Itt,
    pub referenced_task: Itt,
    pub cmd_sn: CmdSn,
    pub exp_stat_sn: u32,
    pub ref_cmd_sn: CmdSn,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub continue_: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: Itt,
    pub cid: u16,
    pub cmd_sn: CmdSn,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRequest {
    pub immediate: bool,
    pub final_: bool,
    pub continue_: bool,
    pub itt: Itt,
    pub ttt: Ttt,
    pub cmd_sn: CmdSn,
    pub exp_stat_sn: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataOut {
    pub final_: bool,
    pub lun: u64,
    pub itt: Itt,
    pub ttt: Ttt,
    pub exp_stat_sn: u32,
    pub data_sn: u32,
    pub buffer_offset: u32,
}

/// Logout reasons (RFC 7143 §11.14.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogoutReason {
    CloseSession,
    CloseConnection,
    RemoveForRecovery,
    Other(u8),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogoutRequest {
    pub immediate: bool,
    pub reason: LogoutReason,
    pub itt: Itt,
    pub cid: u16,
    pub cmd_sn: CmdSn,
    pub exp_stat_sn: u32,
}

/// One decoded initiator PDU header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pdu {
    NopOut(NopOut),
    ScsiCommand(ScsiCommand),
    TaskManagement(TaskManagementRequest),
    Login(LoginRequest),
    Text(TextRequest),
    DataOut(DataOut),
    Logout(LogoutRequest),
    Snack {
        itt: Itt,
    },
    /// A target opcode or an opcode RFC 7143 does not define.
    Unknown {
        opcode: u8,
        itt: Itt,
    },
}

/// A header field that no valid PDU carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("login stage code 2 is reserved")]
    ReservedStage,
    #[error("an additional header segment is truncated or malformed")]
    BadAhs,
}

impl Pdu {
    /// Decodes the typed header from the BHS and its AHS bytes.
    pub(crate) fn decode(raw: &RawBhs, ahs: &[u8]) -> Result<Pdu, HeaderError> {
        let itt = Itt(u32::from_be_bytes(raw.itt));
        let immediate = raw.immediate();
        let lun = lun_from_wire(raw.lun);
        let f = raw.flags;
        Ok(match raw.opcode & 0x3f {
            op::NOP_OUT => Pdu::NopOut(NopOut {
                immediate,
                lun,
                itt,
                ttt: Ttt(raw.word(20)),
                cmd_sn: CmdSn(raw.word(24)),
                exp_stat_sn: raw.word(28),
            }),
            op::SCSI_COMMAND => {
                let basic: [u8; 16] = raw.fields[12..28].try_into().expect("16 CDB bytes");
                let extension = extended_cdb(ahs)?;
                let cdb = if extension.is_empty() {
                    CdbBytes::Basic(basic)
                } else {
                    CdbBytes::Extended([&basic[..], &extension].concat())
                };
                Pdu::ScsiCommand(ScsiCommand {
                    immediate,
                    final_: f & 0x80 != 0,
                    read: f & 0x40 != 0,
                    write: f & 0x20 != 0,
                    attr: f & 0x07,
                    lun,
                    itt,
                    expected_len: raw.word(20),
                    cmd_sn: CmdSn(raw.word(24)),
                    exp_stat_sn: raw.word(28),
                    cdb,
                })
            }
            op::TASK_MGMT => Pdu::TaskManagement(TaskManagementRequest {
                immediate,
                function: TmfFunction::from_code(f & 0x7f),
                lun,
                itt,
                referenced_task: Itt(raw.word(20)),
                cmd_sn: CmdSn(raw.word(24)),
                exp_stat_sn: raw.word(28),
                ref_cmd_sn: CmdSn(raw.word(32)),
            }),
            op::LOGIN => {
                let csg = Stage::from_bits(f >> 2).ok_or(HeaderError::ReservedStage)?;
                let nsg = Stage::from_bits(f).ok_or(HeaderError::ReservedStage)?;
                let mut isid = [0u8; 6];
                isid.copy_from_slice(&raw.lun[..6]);
                Pdu::Login(LoginRequest {
                    transit: f & 0x80 != 0,
                    continue_: f & 0x40 != 0,
                    csg,
                    nsg,
                    version_max: raw.specific[0],
                    version_min: raw.specific[1],
                    isid,
                    tsih: u16::from_be_bytes([raw.lun[6], raw.lun[7]]),
                    itt,
                    cid: (raw.word(20) >> 16) as u16,
                    cmd_sn: CmdSn(raw.word(24)),
                    exp_stat_sn: raw.word(28),
                })
            }
            op::TEXT => Pdu::Text(TextRequest {
                immediate,
                final_: f & 0x80 != 0,
                continue_: f & 0x40 != 0,
                itt,
                ttt: Ttt(raw.word(20)),
                cmd_sn: CmdSn(raw.word(24)),
                exp_stat_sn: raw.word(28),
            }),
            op::DATA_OUT => Pdu::DataOut(DataOut {
                final_: f & 0x80 != 0,
                lun,
                itt,
                ttt: Ttt(raw.word(20)),
                exp_stat_sn: raw.word(28),
                data_sn: raw.word(36),
                buffer_offset: raw.word(40),
            }),
            op::LOGOUT => Pdu::Logout(LogoutRequest {
                immediate,
                reason: match f & 0x7f {
                    0 => LogoutReason::CloseSession,
                    1 => LogoutReason::CloseConnection,
                    2 => LogoutReason::RemoveForRecovery,
                    other => LogoutReason::Other(other),
                },
                itt,
                cid: (raw.word(20) >> 16) as u16,
                cmd_sn: CmdSn(raw.word(24)),
                exp_stat_sn: raw.word(28),
            }),
            op::SNACK => Pdu::Snack { itt },
            opcode => Pdu::Unknown { opcode, itt },
        })
    }

    pub fn itt(&self) -> Itt {
        match self {
            Pdu::NopOut(p) => p.itt,
            Pdu::ScsiCommand(p) => p.itt,
            Pdu::TaskManagement(p) => p.itt,
            Pdu::Login(p) => p.itt,
            Pdu::Text(p) => p.itt,
            Pdu::DataOut(p) => p.itt,
            Pdu::Logout(p) => p.itt,
            Pdu::Snack { itt } | Pdu::Unknown { itt, .. } => *itt,
        }
    }
}

/// Walks the AHS list (§11.2.2): each is a 2-byte length, a type and a
/// specific byte, then the value padded to 4 bytes. Type 1 is the Extended
/// CDB; others are skipped (type 2, bidirectional read length, is useless to
/// a target that rejects bidirectional commands).
fn extended_cdb(mut ahs: &[u8]) -> Result<Vec<u8>, HeaderError> {
    let mut extra = Vec::new();
    while !ahs.is_empty() {
        if ahs.len() < 4 {
            return Err(HeaderError::BadAhs);
        }
        let len = usize::from(u16::from_be_bytes([ahs[0], ahs[1]]));
        let ty = ahs[2];
        // The length counts the value from the reserved byte on.
        let value_len = len.checked_sub(1).ok_or(HeaderError::BadAhs)?;
        let padded = (3 + len).div_ceil(4) * 4;
        if ahs.len() < padded || 4 + value_len > padded {
            return Err(HeaderError::BadAhs);
        }
        if ty == 1 {
            extra.extend_from_slice(&ahs[4..4 + value_len]);
        }
        ahs = &ahs[padded..];
    }
    Ok(extra)
}

/// Target PDUs (RFC 7143 §11), encoded by [`TargetPdu::header`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetPdu {
    NopIn {
        lun: u64,
        itt: Itt,
        ttt: Ttt,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
    },
    ScsiResponse {
        itt: Itt,
        status: u8,
        residual: Residual,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
        exp_data_sn: u32,
    },
    TaskManagementResponse {
        itt: Itt,
        response: u8,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
    },
    LoginResponse {
        transit: bool,
        continue_: bool,
        csg: Stage,
        nsg: Stage,
        isid: [u8; 6],
        tsih: u16,
        itt: Itt,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
        status_class: u8,
        status_detail: u8,
    },
    TextResponse {
        final_: bool,
        continue_: bool,
        itt: Itt,
        ttt: Ttt,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
    },
    DataIn {
        final_: bool,
        /// Some(status) when this PDU carries the command's status (S bit).
        status: Option<u8>,
        residual: Residual,
        lun: u64,
        itt: Itt,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
        data_sn: u32,
        buffer_offset: u32,
    },
    LogoutResponse {
        itt: Itt,
        response: u8,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
        time2wait: u16,
        time2retain: u16,
    },
    R2t {
        lun: u64,
        itt: Itt,
        ttt: Ttt,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
        r2t_sn: u32,
        buffer_offset: u32,
        desired_len: u32,
    },
    Reject {
        reason: u8,
        stat_sn: u32,
        exp_cmd_sn: CmdSn,
        max_cmd_sn: CmdSn,
        data_sn: u32,
    },
}

/// Residual reporting (RFC 7143 §11.4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Residual {
    #[default]
    None,
    Underflow(u32),
    Overflow(u32),
}

impl Residual {
    fn flags_and_count(self) -> (u8, u32) {
        match self {
            Residual::None => (0, 0),
            Residual::Overflow(n) => (0x04, n),
            Residual::Underflow(n) => (0x02, n),
        }
    }
}

impl TargetPdu {
    /// The BHS for this PDU with a data segment of `data_len` bytes.
    pub(crate) fn header(&self, data_len: usize) -> RawBhs {
        let mut h = RawBhs::default();
        h.set_data_len(data_len);
        let sns = |h: &mut RawBhs, stat: u32, exp: CmdSn, max: CmdSn| {
            h.set_word(24, stat);
            h.set_word(28, exp.0);
            h.set_word(32, max.0);
        };
        match *self {
            TargetPdu::NopIn {
                lun,
                itt,
                ttt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
            } => {
                h.opcode = op::NOP_IN;
                h.flags = 0x80;
                h.lun = lun_to_wire(lun);
                h.itt = itt.0.to_be_bytes();
                h.set_word(20, ttt.0);
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
            }
            TargetPdu::ScsiResponse {
                itt,
                status,
                residual,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                exp_data_sn,
            } => {
                let (rf, count) = residual.flags_and_count();
                h.opcode = op::SCSI_RESPONSE;
                h.flags = 0x80 | rf;
                // Response 00h: command completed at target (§11.4.3).
                h.specific = [0, status];
                h.itt = itt.0.to_be_bytes();
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
                h.set_word(36, exp_data_sn);
                h.set_word(44, count);
            }
            TargetPdu::TaskManagementResponse {
                itt,
                response,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
            } => {
                h.opcode = op::TASK_MGMT_RESPONSE;
                h.flags = 0x80;
                h.specific = [response, 0];
                h.itt = itt.0.to_be_bytes();
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
            }
            TargetPdu::LoginResponse {
                transit,
                continue_,
                csg,
                nsg,
                isid,
                tsih,
                itt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                status_class,
                status_detail,
            } => {
                h.opcode = op::LOGIN_RESPONSE;
                h.flags = (u8::from(transit) << 7)
                    | (u8::from(continue_) << 6)
                    | ((csg as u8) << 2)
                    | if transit { nsg as u8 } else { 0 };
                // Version-max and Version-active are both 0 (§11.13).
                h.lun[..6].copy_from_slice(&isid);
                h.lun[6..].copy_from_slice(&tsih.to_be_bytes());
                h.itt = itt.0.to_be_bytes();
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
                h.fields[16] = status_class;
                h.fields[17] = status_detail;
            }
            TargetPdu::TextResponse {
                final_,
                continue_,
                itt,
                ttt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
            } => {
                h.opcode = op::TEXT_RESPONSE;
                h.flags = (u8::from(final_) << 7) | (u8::from(continue_) << 6);
                h.itt = itt.0.to_be_bytes();
                h.set_word(20, ttt.0);
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
            }
            TargetPdu::DataIn {
                final_,
                status,
                residual,
                lun,
                itt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                data_sn,
                buffer_offset,
            } => {
                h.opcode = op::DATA_IN;
                h.flags = u8::from(final_) << 7;
                h.itt = itt.0.to_be_bytes();
                h.lun = lun_to_wire(lun);
                h.set_word(20, RESERVED_TAG);
                if let Some(status) = status {
                    // Residuals and status are only valid with the S bit (§11.7.5).
                    let (rf, count) = residual.flags_and_count();
                    h.flags |= 0x01 | rf;
                    h.specific = [0, status];
                    h.set_word(44, count);
                    h.set_word(24, stat_sn);
                }
                h.set_word(28, exp_cmd_sn.0);
                h.set_word(32, max_cmd_sn.0);
                h.set_word(36, data_sn);
                h.set_word(40, buffer_offset);
            }
            TargetPdu::LogoutResponse {
                itt,
                response,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                time2wait,
                time2retain,
            } => {
                h.opcode = op::LOGOUT_RESPONSE;
                h.flags = 0x80;
                h.specific = [response, 0];
                h.itt = itt.0.to_be_bytes();
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
                h.set_word(40, (u32::from(time2wait) << 16) | u32::from(time2retain));
            }
            TargetPdu::R2t {
                lun,
                itt,
                ttt,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                r2t_sn,
                buffer_offset,
                desired_len,
            } => {
                h.opcode = op::R2T;
                h.flags = 0x80;
                h.lun = lun_to_wire(lun);
                h.itt = itt.0.to_be_bytes();
                h.set_word(20, ttt.0);
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
                h.set_word(36, r2t_sn);
                h.set_word(40, buffer_offset);
                h.set_word(44, desired_len);
            }
            TargetPdu::Reject {
                reason,
                stat_sn,
                exp_cmd_sn,
                max_cmd_sn,
                data_sn,
            } => {
                h.opcode = op::REJECT;
                h.flags = 0x80;
                h.specific = [reason, 0];
                h.itt = RESERVED_TAG.to_be_bytes();
                sns(&mut h, stat_sn, exp_cmd_sn, max_cmd_sn);
                h.set_word(36, data_sn);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn raw_round_trip() {
        let mut b = [0u8; BHS_LEN];
        for (i, x) in b.iter_mut().enumerate() {
            *x = i as u8;
        }
        assert_eq!(RawBhs::from_bytes(&b).to_bytes(), b);
        assert_eq!(RawBhs::from_bytes(&b).data_len(), 0x050607);
    }

    #[test]
    fn extended_cdb_ahs() {
        // length 17 = reserved byte + 16 CDB bytes; padded to 20.
        let mut ahs = vec![0, 17, 1, 0];
        ahs.extend(1..=16u8);
        let extra = extended_cdb(&ahs).unwrap();
        assert_eq!(extra, (1..=16u8).collect::<Vec<_>>());
        assert_eq!(extended_cdb(&[0, 9, 1]), Err(HeaderError::BadAhs));
    }
}
