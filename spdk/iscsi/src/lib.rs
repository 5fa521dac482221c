//! iSCSI target protocol (RFC 7143), sans I/O.

mod login;
mod pdu;
mod serial;
mod session;
mod target;

pub use serial::CmdSn;
pub use session::{Isid, SessionInfo, Sessions};
pub use target::{Access, Credentials, TargetNode, Targets};
