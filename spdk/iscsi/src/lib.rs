//! iSCSI target protocol (RFC 7143), sans I/O.

mod pdu;
mod serial;

pub use serial::CmdSn;
