//! The crate's one error type, with a small kind to match on.

use std::io;
use std::path::Path;

use reservoir_bdev::BdevError;
use reservoir_snapshot::SnapshotError;

use crate::types::BackupId;

/// What went wrong, for callers choosing a response (exit status, RPC
/// error code, whether to retry) without parsing messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackupErrorKind {
    /// The peer sent bytes that are not a valid stream: bad magic, unknown
    /// record, out-of-order or out-of-range record, checksum mismatch,
    /// oversized length. Nothing was stored from it.
    Protocol,
    /// The token was refused.
    Auth,
    /// No backup (or volume) by that id.
    NotFound,
    /// The request contradicts the repository (wrong parent, chunk size
    /// differs from the parent, restore target too small, ...).
    InvalidArgument,
    /// Data in the repository is damaged; verify names what.
    Corrupt,
    /// Written by a newer version of Reservoir than this one.
    Unsupported,
    /// Another client is writing the same backup right now.
    Busy,
    /// The connection or the server went away; the operation can be retried
    /// (a backup resumes where the server acknowledged).
    Disconnected,
    /// A file-system or block-device failure.
    Io,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error("invalid backup stream: {0}")]
    Protocol(String),
    #[error("unknown record type 0x{tag:02x} in the backup stream (this receiver speaks stream version {version}); is the peer a newer Reservoir?", version = crate::wire::VERSION)]
    UnknownRecord { tag: u8 },
    #[error("the backup server refused the token; check the token file on both sides")]
    Auth,
    #[error(
        "no backup with id {0} in the repository; `reservoir backup list` shows the existing ones"
    )]
    NotFound(BackupId),
    #[error("{what}: {why}")]
    InvalidArgument { what: &'static str, why: String },
    #[error("backup {id} is damaged: {why}; run `reservoir backup verify` for the full list")]
    Corrupt { id: BackupId, why: String },
    #[error("repository entry {path} is damaged: {why}")]
    CorruptFile { path: String, why: String },
    #[error(
        "{what} has format version {found}, this build reads up to {supported}; upgrade Reservoir"
    )]
    Unsupported {
        what: String,
        found: u32,
        supported: u32,
    },
    #[error("backup {0} is being written by another client right now; retry when it finishes")]
    Busy(BackupId),
    #[error("the backup server reported: {message}")]
    Remote {
        kind: BackupErrorKind,
        message: String,
    },
    #[error("connection to the backup server lost during {op}; run the command again to resume")]
    Disconnected {
        op: &'static str,
        #[source]
        source: io::Error,
    },
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
    #[error("snapshot engine")]
    Snapshot(#[from] SnapshotError),
}

impl BackupError {
    pub fn kind(&self) -> BackupErrorKind {
        match self {
            BackupError::Protocol(_) | BackupError::UnknownRecord { .. } => {
                BackupErrorKind::Protocol
            }
            BackupError::Auth => BackupErrorKind::Auth,
            BackupError::NotFound(_) => BackupErrorKind::NotFound,
            BackupError::InvalidArgument { .. } => BackupErrorKind::InvalidArgument,
            BackupError::Corrupt { .. } | BackupError::CorruptFile { .. } => {
                BackupErrorKind::Corrupt
            }
            BackupError::Unsupported { .. } => BackupErrorKind::Unsupported,
            BackupError::Busy(_) => BackupErrorKind::Busy,
            BackupError::Remote { kind, .. } => *kind,
            BackupError::Disconnected { .. } => BackupErrorKind::Disconnected,
            BackupError::Io { .. } | BackupError::Bdev { .. } | BackupError::Snapshot(_) => {
                BackupErrorKind::Io
            }
        }
    }

    /// Maps an `io::Error` on `path` (used with `map_err`).
    pub(crate) fn io(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError {
        let path = path.display().to_string();
        move |source| BackupError::Io { op, path, source }
    }

    pub(crate) fn protocol(why: impl Into<String>) -> BackupError {
        BackupError::Protocol(why.into())
    }

    pub(crate) fn disconnected(op: &'static str) -> impl FnOnce(io::Error) -> BackupError {
        move |source| BackupError::Disconnected { op, source }
    }
}
