//! The crate's one error type.

use std::time::Duration;

use crate::scsi::{ScsiStatus, Sense};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    #[error("invalid iSCSI URL {url:?}: {reason}")]
    InvalidUrl { url: String, reason: &'static str },

    #[error("invalid argument: {0}")]
    InvalidArgument(String),

    /// TCP connect, login or the LUN check failed; the target's or
    /// libiscsi's explanation is in `message`.
    #[error("cannot connect to {target}: {message}")]
    Connect { target: String, message: String },

    /// The target completed the command with a status other than GOOD.
    #[error("{command} failed with {status}{}", sense.map(|s| format!(": {s}")).unwrap_or_default())]
    Scsi {
        command: &'static str,
        status: ScsiStatus,
        sense: Option<Sense>,
    },

    /// The session failed underneath the command (connection reset, target
    /// gone, protocol error). The command's effect on the medium is unknown.
    #[error("{command}: iSCSI session failed: {message}; call reconnect() before retrying")]
    Transport {
        command: &'static str,
        message: String,
    },

    /// No response within the configured timeout. The command may still
    /// execute on the target; the session is unusable until reconnect().
    #[error("{command}: no response within {timeout:?}; call reconnect() before retrying")]
    Timeout {
        command: &'static str,
        timeout: Duration,
    },

    /// An earlier failure left no usable session.
    #[error("no usable iSCSI session ({reason}); call reconnect()")]
    NotConnected { reason: String },

    /// A task management request was answered with a non-zero response
    /// (RFC 7143 §11.6.1).
    #[error("{function} refused by the target: response 0x{response:02x}")]
    TaskManagement {
        function: &'static str,
        response: u32,
    },

    /// The target returned parameter data this crate cannot decode.
    #[error("malformed {what} data: {reason}")]
    Malformed {
        what: &'static str,
        reason: &'static str,
    },
}

impl Error {
    /// True for RESERVATION CONFLICT: another I_T nexus holds the persistent
    /// reservation, or this one is not registered (SPC-4 §5.14).
    pub fn is_reservation_conflict(&self) -> bool {
        matches!(self, Error::Scsi { status, .. } if *status == ScsiStatus::RESERVATION_CONFLICT)
    }

    /// The sense data of a CHECK CONDITION, if any.
    pub fn sense(&self) -> Option<Sense> {
        match self {
            Error::Scsi { sense, .. } => *sense,
            _ => None,
        }
    }

    /// True when the session must be re-established before the next command.
    pub fn needs_reconnect(&self) -> bool {
        matches!(
            self,
            Error::Transport { .. } | Error::Timeout { .. } | Error::NotConnected { .. }
        )
    }
}
