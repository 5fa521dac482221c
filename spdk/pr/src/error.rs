//! The crate's one error type: what the SCSI layer turns into status and
//! sense data.

/// Where an invalid field is, for the sense-key-specific field pointer
/// (SPC-4 4.5.2.4.2): byte offset, and bit (7..0) when the field does not
/// start at bit 7 of that byte or is a single bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FieldPointer {
    /// Byte offset in the CDB or parameter list.
    pub byte: u16,
    /// Bit pointer, when meaningful.
    pub bit: Option<u8>,
}

impl FieldPointer {
    pub(crate) const fn byte(byte: u16) -> Self {
        Self { byte, bit: None }
    }

    pub(crate) const fn bit(byte: u16, bit: u8) -> Self {
        Self {
            byte,
            bit: Some(bit),
        }
    }
}

/// ILLEGAL REQUEST reasons a reservation command can end with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum IllegalRequest {
    /// 24h/00h INVALID FIELD IN CDB.
    #[error("invalid field in CDB at byte {}", .0.byte)]
    InvalidFieldInCdb(FieldPointer),
    /// 26h/00h INVALID FIELD IN PARAMETER LIST.
    #[error("invalid field in parameter list at byte {}", .0.byte)]
    InvalidFieldInParameterList(FieldPointer),
    /// 1Ah/00h PARAMETER LIST LENGTH ERROR.
    #[error("parameter list length error")]
    ParameterListLengthError,
    /// 26h/04h INVALID RELEASE OF PERSISTENT RESERVATION.
    #[error("invalid release of persistent reservation (scope or type differs)")]
    InvalidReleaseOfPersistentReservation,
    /// 55h/04h INSUFFICIENT REGISTRATION RESOURCES.
    #[error("insufficient registration resources")]
    InsufficientRegistrationResources,
}

impl IllegalRequest {
    /// Additional sense code and qualifier.
    pub fn asc_ascq(self) -> (u8, u8) {
        match self {
            Self::InvalidFieldInCdb(_) => (0x24, 0x00),
            Self::InvalidFieldInParameterList(_) => (0x26, 0x00),
            Self::ParameterListLengthError => (0x1a, 0x00),
            Self::InvalidReleaseOfPersistentReservation => (0x26, 0x04),
            Self::InsufficientRegistrationResources => (0x55, 0x04),
        }
    }

    /// Field pointer for the sense-key-specific bytes, when there is one;
    /// `cdb` tells whether it points into the CDB (C/D bit).
    pub fn field_pointer(self) -> Option<(FieldPointer, bool)> {
        match self {
            Self::InvalidFieldInCdb(p) => Some((p, true)),
            Self::InvalidFieldInParameterList(p) => Some((p, false)),
            _ => None,
        }
    }
}

/// Outcome of a rejected reservation command.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PrError {
    /// Status RESERVATION CONFLICT (18h), no sense data.
    #[error("reservation conflict")]
    Conflict,
    /// CHECK CONDITION, sense key ILLEGAL REQUEST.
    #[error("illegal request: {0}")]
    IllegalRequest(#[from] IllegalRequest),
}

pub(crate) fn cdb_field(byte: u16, bit: u8) -> PrError {
    PrError::IllegalRequest(IllegalRequest::InvalidFieldInCdb(FieldPointer::bit(
        byte, bit,
    )))
}

pub(crate) fn param_field(p: FieldPointer) -> PrError {
    PrError::IllegalRequest(IllegalRequest::InvalidFieldInParameterList(p))
}

pub(crate) fn length_error() -> PrError {
    PrError::IllegalRequest(IllegalRequest::ParameterListLengthError)
}
