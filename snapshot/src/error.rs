//! The crate's one error type, with a small kind to match on.

use std::io;

use reservoir_bdev::BdevError;

/// What went wrong, for callers choosing a response (RPC error code, exit
/// status) without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotErrorKind {
    /// No snapshot by that name (or id).
    NotFound,
    /// A snapshot by that name exists already.
    AlreadyExists,
    /// A name, chunk size or range the caller passed is not acceptable.
    InvalidArgument,
    /// The snapshot was invalidated (differential area full or failed) and
    /// can no longer be read.
    SnapshotInvalid,
    /// The snapshot was deleted while it was being read.
    Deleted,
    /// Snapshot metadata on disk is damaged or was written by a newer
    /// version; nothing was changed.
    Corrupt,
    /// The volume no longer matches the snapshot metadata (block size or
    /// size changed outside the engine).
    Mismatch,
    /// The engine was closed.
    Closed,
    /// An operating-system or block-device failure.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("volume {volume}: no snapshot named {name:?}; `reservoir snapshot list {volume}` shows the existing ones")]
    NotFound { volume: String, name: String },
    #[error("volume {volume}: a snapshot named {name:?} exists already; pick another name or delete it first")]
    AlreadyExists { volume: String, name: String },
    #[error("{what}: {why}")]
    InvalidArgument { what: &'static str, why: String },
    #[error("snapshot {name:?} is invalid and cannot be read ({reason}); delete it to release its differential-area space")]
    SnapshotInvalid { name: String, reason: String },
    #[error("snapshot {name:?} was deleted")]
    Deleted { name: String },
    #[error("snapshot metadata {path} is damaged: {why}")]
    Corrupt { path: String, why: String },
    #[error("volume {volume} does not match its snapshot metadata: {why}")]
    Mismatch { volume: String, why: String },
    #[error("the snapshot engine of volume {volume} is closed")]
    Closed { volume: String },
    #[error("{op} {path}")]
    Io {
        op: &'static str,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("{op} on volume {volume}")]
    Bdev {
        op: &'static str,
        volume: String,
        #[source]
        source: BdevError,
    },
}

impl SnapshotError {
    pub fn kind(&self) -> SnapshotErrorKind {
        match self {
            SnapshotError::NotFound { .. } => SnapshotErrorKind::NotFound,
            SnapshotError::AlreadyExists { .. } => SnapshotErrorKind::AlreadyExists,
            SnapshotError::InvalidArgument { .. } => SnapshotErrorKind::InvalidArgument,
            SnapshotError::SnapshotInvalid { .. } => SnapshotErrorKind::SnapshotInvalid,
            SnapshotError::Deleted { .. } => SnapshotErrorKind::Deleted,
            SnapshotError::Corrupt { .. } => SnapshotErrorKind::Corrupt,
            SnapshotError::Mismatch { .. } => SnapshotErrorKind::Mismatch,
            SnapshotError::Closed { .. } => SnapshotErrorKind::Closed,
            SnapshotError::Io { .. } | SnapshotError::Bdev { .. } => SnapshotErrorKind::Io,
        }
    }

    pub(crate) fn io(op: &'static str, path: &std::path::Path) -> impl FnOnce(io::Error) -> Self {
        let path = path.display().to_string();
        move |source| SnapshotError::Io { op, path, source }
    }

    /// This error as a bdev failure of kind `kind`, for the [`reservoir_bdev::Bdev`]
    /// methods; the original stays reachable as the source.
    pub(crate) fn into_bdev(self, op: &'static str, kind: reservoir_bdev::ErrorKind) -> BdevError {
        match self {
            SnapshotError::Bdev { source, .. } => source,
            other => BdevError::Io {
                op,
                kind,
                source: io::Error::other(other),
            },
        }
    }
}
