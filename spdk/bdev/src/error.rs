use crate::{BlockCount, Lba};

/// What went wrong, in a form a caller can match on to choose sense data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request reaches past the end of the device.
    OutOfRange,
    /// The buffer is not a whole number of blocks.
    Misaligned,
    /// The medium failed to read.
    ReadFailed,
    /// The medium failed to write.
    WriteFailed,
    /// The device could not be opened, created or resized.
    Setup,
    /// The device does not support the operation.
    Unsupported,
}

#[derive(Debug, thiserror::Error)]
pub enum BdevError {
    #[error("blocks {lba:?}+{count:?} are beyond the end of the device ({capacity:?} blocks)")]
    OutOfRange {
        lba: Lba,
        count: BlockCount,
        capacity: BlockCount,
    },
    #[error("buffer of {len} bytes is not a whole number of {block_size}-byte blocks")]
    Misaligned { len: usize, block_size: u32 },
    #[error("{op} failed")]
    Io {
        op: &'static str,
        kind: ErrorKind,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} is not supported by this device")]
    Unsupported { what: &'static str },
}

impl BdevError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            BdevError::OutOfRange { .. } => ErrorKind::OutOfRange,
            BdevError::Misaligned { .. } => ErrorKind::Misaligned,
            BdevError::Io { kind, .. } => *kind,
            BdevError::Unsupported { .. } => ErrorKind::Unsupported,
        }
    }
}

impl BdevError {
    /// An operating-system failure of `op`, classified as `kind`.
    pub(crate) fn io(op: &'static str, kind: ErrorKind, source: std::io::Error) -> Self {
        BdevError::Io { op, kind, source }
    }

    /// A failure to open, create or resize, with a message that says what to fix.
    pub(crate) fn setup(op: &'static str, message: String) -> Self {
        BdevError::Io {
            op,
            kind: ErrorKind::Setup,
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, message),
        }
    }
}
