//! Status codes and sense data: one table of typed sense reasons (SPC-4 4.5).
//!
//! Every CHECK CONDITION this crate returns names a [`SenseReason`]; the
//! sense key and additional sense code come from [`SenseReason::code`] only.

/// SAM-5 status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    Good = 0x00,
    CheckCondition = 0x02,
    ConditionMet = 0x04,
    Busy = 0x08,
    ReservationConflict = 0x18,
    TaskSetFull = 0x28,
    TaskAborted = 0x40,
}

impl Status {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Sense keys (SPC-4, sense data).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseKey {
    NoSense = 0x0,
    RecoveredError = 0x1,
    NotReady = 0x2,
    MediumError = 0x3,
    HardwareError = 0x4,
    IllegalRequest = 0x5,
    UnitAttention = 0x6,
    DataProtect = 0x7,
    AbortedCommand = 0xB,
    Miscompare = 0xE,
}

impl SenseKey {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// Where in the CDB or parameter list an invalid field sits (SPC-4 4.5.2.4.2,
/// sense-key specific FIELD POINTER bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FieldPointer {
    /// Byte offset of the field.
    pub byte: u16,
    /// The most significant bit of the field within that byte, when the
    /// field does not span the whole byte.
    pub bit: Option<u8>,
}

impl FieldPointer {
    pub const fn byte(byte: u16) -> Self {
        FieldPointer { byte, bit: None }
    }

    pub const fn bit(byte: u16, bit: u8) -> Self {
        FieldPointer {
            byte,
            bit: Some(bit),
        }
    }
}

/// Every reason this crate fails a command or reports a unit attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseReason {
    NoSense,
    /// 0Ch/00h.
    WriteError,
    /// 11h/00h.
    UnrecoveredReadError,
    /// 1Ah/00h.
    ParameterListLengthError,
    /// 1Dh/00h; INFORMATION holds the byte offset of the first mismatch.
    Miscompare {
        offset: u64,
    },
    /// 20h/00h.
    InvalidOpcode,
    /// 21h/00h.
    LbaOutOfRange,
    /// 24h/00h.
    InvalidFieldInCdb(FieldPointer),
    /// 24h/00h without a field pointer: the data-out buffer does not hold
    /// what the command needs (COMPARE AND WRITE, SBC-4 5.3).
    DataLengthMismatch,
    /// 25h/00h.
    LunNotSupported,
    /// 26h/00h.
    InvalidFieldInParameterList(FieldPointer),
    /// 27h/00h.
    WriteProtected,
    /// 29h/00h.
    PowerOnReset,
    /// 29h/03h.
    BusDeviceReset,
    /// 2Ah/01h.
    ModeParametersChanged,
    /// 2Ah/03h: another nexus's PREEMPT or CLEAR ended the reservation (SPC-4 5.13.11).
    ReservationsPreempted,
    /// 2Ah/04h: the reservation holder released a reservation other
    /// registrants shared or depended on (SPC-4 5.13.11.2).
    ReservationsReleased,
    /// 2Ah/05h: another nexus's PREEMPT removed this nexus's registration (SPC-4 5.13.11.4).
    RegistrationsPreempted,
    /// 2Ah/09h.
    CapacityDataChanged,
    /// 26h/04h (SPC-4 5.13.11.2).
    InvalidReleaseOfPersistentReservation,
    /// 39h/00h.
    SavingParametersNotSupported,
    /// 55h/04h (SPC-4 6.16.3).
    InsufficientRegistrationResources,
    /// 44h/00h.
    InternalTargetFailure,
}

impl SenseReason {
    /// The one table: sense key, ASC, ASCQ.
    pub fn code(self) -> (SenseKey, u8, u8) {
        use SenseKey::*;
        use SenseReason as R;
        match self {
            R::NoSense => (NoSense, 0x00, 0x00),
            R::WriteError => (MediumError, 0x0C, 0x00),
            R::UnrecoveredReadError => (MediumError, 0x11, 0x00),
            R::ParameterListLengthError => (IllegalRequest, 0x1A, 0x00),
            R::Miscompare { .. } => (Miscompare, 0x1D, 0x00),
            R::InvalidOpcode => (IllegalRequest, 0x20, 0x00),
            R::LbaOutOfRange => (IllegalRequest, 0x21, 0x00),
            R::InvalidFieldInCdb(_) | R::DataLengthMismatch => (IllegalRequest, 0x24, 0x00),
            R::LunNotSupported => (IllegalRequest, 0x25, 0x00),
            R::InvalidFieldInParameterList(_) => (IllegalRequest, 0x26, 0x00),
            R::WriteProtected => (DataProtect, 0x27, 0x00),
            R::PowerOnReset => (UnitAttention, 0x29, 0x00),
            R::BusDeviceReset => (UnitAttention, 0x29, 0x03),
            R::ModeParametersChanged => (UnitAttention, 0x2A, 0x01),
            R::ReservationsPreempted => (UnitAttention, 0x2A, 0x03),
            R::ReservationsReleased => (UnitAttention, 0x2A, 0x04),
            R::RegistrationsPreempted => (UnitAttention, 0x2A, 0x05),
            R::CapacityDataChanged => (UnitAttention, 0x2A, 0x09),
            R::InvalidReleaseOfPersistentReservation => (IllegalRequest, 0x26, 0x04),
            R::SavingParametersNotSupported => (IllegalRequest, 0x39, 0x00),
            R::InsufficientRegistrationResources => (IllegalRequest, 0x55, 0x04),
            R::InternalTargetFailure => (HardwareError, 0x44, 0x00),
        }
    }
}

/// Sense data for one failed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sense {
    reason: SenseReason,
}

/// Fixed-format sense data is 18 bytes: 8 header bytes and an ADDITIONAL
/// SENSE LENGTH of 10 (SPC-4 4.5.3).
pub const FIXED_SENSE_LEN: usize = 18;

impl Sense {
    pub fn new(reason: SenseReason) -> Self {
        Sense { reason }
    }

    pub fn reason(&self) -> SenseReason {
        self.reason
    }

    pub fn key(&self) -> SenseKey {
        self.reason.code().0
    }

    pub fn asc_ascq(&self) -> (u8, u8) {
        let (_, asc, ascq) = self.reason.code();
        (asc, ascq)
    }

    /// The INFORMATION field, when it is valid.
    pub fn information(&self) -> Option<u64> {
        match self.reason {
            SenseReason::Miscompare { offset } => Some(offset),
            _ => None,
        }
    }

    /// Fixed format (response code 70h, current error), SPC-4 4.5.3.
    pub fn to_fixed_bytes(&self) -> Vec<u8> {
        let (key, asc, ascq) = self.reason.code();
        let mut b = vec![0u8; FIXED_SENSE_LEN];
        b[0] = 0x70;
        b[2] = key.code();
        if let Some(info) = self.information() {
            // INFORMATION is four bytes in fixed format; VALID only when it fits.
            if let Ok(info) = u32::try_from(info) {
                b[0] |= 0x80;
                b[3..7].copy_from_slice(&info.to_be_bytes());
            }
        }
        b[7] = (FIXED_SENSE_LEN - 8) as u8;
        b[12] = asc;
        b[13] = ascq;
        let field = match self.reason {
            SenseReason::InvalidFieldInCdb(f) => Some((f, true)),
            SenseReason::InvalidFieldInParameterList(f) => Some((f, false)),
            _ => None,
        };
        if let Some((f, in_cdb)) = field {
            // SKSV, C/D, BPV and BIT POINTER; then FIELD POINTER (SPC-4 4.5.2.4.2).
            let mut sks = 0x80;
            if in_cdb {
                sks |= 0x40;
            }
            if let Some(bit) = f.bit {
                sks |= 0x08 | (bit & 0x07);
            }
            b[15] = sks;
            b[16..18].copy_from_slice(&f.byte.to_be_bytes());
        }
        b
    }
}

/// The outcome of one SCSI command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    pub status: Status,
    pub sense: Option<Sense>,
}

impl Completion {
    pub fn good() -> Self {
        Completion {
            status: Status::Good,
            sense: None,
        }
    }

    pub fn check(reason: SenseReason) -> Self {
        Completion {
            status: Status::CheckCondition,
            sense: Some(Sense::new(reason)),
        }
    }

    pub fn reservation_conflict() -> Self {
        Completion {
            status: Status::ReservationConflict,
            sense: None,
        }
    }

    /// TASK ABORTED (SAM-5): the task was aborted by another I_T nexus and
    /// the Control mode page has TAS = 1.
    pub fn task_aborted() -> Self {
        Completion {
            status: Status::TaskAborted,
            sense: None,
        }
    }

    pub fn is_good(&self) -> bool {
        self.status == Status::Good
    }
}

impl From<SenseReason> for Completion {
    fn from(reason: SenseReason) -> Self {
        Completion::check(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_field_in_cdb_carries_field_pointer() {
        let b =
            Sense::new(SenseReason::InvalidFieldInCdb(FieldPointer::bit(1, 7))).to_fixed_bytes();
        assert_eq!(b[0], 0x70);
        assert_eq!(b[2], 0x05);
        assert_eq!(b[7], 10);
        assert_eq!((b[12], b[13]), (0x24, 0x00));
        assert_eq!(b[15], 0x80 | 0x40 | 0x08 | 7);
        assert_eq!(&b[16..18], &[0, 1]);
    }

    #[test]
    fn parameter_list_pointer_has_cd_clear() {
        let b = Sense::new(SenseReason::InvalidFieldInParameterList(
            FieldPointer::byte(300),
        ))
        .to_fixed_bytes();
        assert_eq!(b[15], 0x80);
        assert_eq!(&b[16..18], &300u16.to_be_bytes());
        assert_eq!(b[12], 0x26);
    }

    #[test]
    fn miscompare_sets_information() {
        let b = Sense::new(SenseReason::Miscompare { offset: 513 }).to_fixed_bytes();
        assert_eq!(b[0], 0xF0);
        assert_eq!(b[2], 0x0E);
        assert_eq!(&b[3..7], &513u32.to_be_bytes());
        assert_eq!(b[12], 0x1D);
    }
}
