//! iSCSI target protocol (RFC 7143), sans I/O.
//!
//! The reactor owns the socket and drives one [`Connection`] per TCP
//! connection: it reads into [`Connection::receive_buffer`] (or feeds bytes
//! to [`Connection::receive`]), writes its output through
//! [`Connection::write_output`], a vectored write at a time, and calls
//! [`Connection::tick`] for timers.
//!
//! A command on a LUN whose bdev prefers offloading leaves the connection
//! as an [`Offloaded`] I/O ([`Connection::next_offloaded`]); the reactor
//! runs it on a worker and hands the [`Finished`] result back to
//! [`Connection::complete`], which answers exactly as inline execution does.
//! Targets and live sessions are shared registries ([`Targets`],
//! [`Sessions`]) reached through a [`PortalContext`].
//!
//! Layout: `pdu/` frames and decodes PDUs, `login/` negotiates, `session.rs`
//! runs the full feature phase with `task.rs` (per-command data),
//! `tmf.rs` (task management) and `offload.rs` (I/O on workers),
//! `discovery.rs` answers SendTargets, `tx.rs` queues output and
//! `buffers.rs` recycles payload buffers, so that the I/O path allocates
//! nothing in steady state (`tests/no_alloc.rs`).

mod buffers;
mod connection;
mod discovery;
pub mod fuzzing;
mod login;
mod offload;
mod pdu;
mod registry;
mod serial;
mod session;
mod target;
mod task;
mod tmf;
mod tx;

pub use connection::{Connection, PortalContext};
pub use offload::{Finished, Offloaded};
pub use registry::{Isid, SessionInfo, Sessions};
pub use serial::CmdSn;
pub use target::{Access, Credentials, TargetNode, Targets};

#[cfg(test)]
mod tests;
