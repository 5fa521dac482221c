//! The commands the state machines ask of a LUN, and the trait both the
//! simulated disks and the iSCSI edge implement.
//!
//! Keys are raw `u64` here, as they are on the wire: a LUN may hold keys
//! that are not ours, and deciding what they mean is the state machines' job.

/// One command to one LUN. Every PERSISTENT RESERVE OUT names the LU scope;
/// RESERVE, RELEASE and PREEMPT always use Write Exclusive – Registrants Only
/// (type 5h), the only type the agent takes (SPC-4 §5.14.2).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskOp {
    /// PERSISTENT RESERVE IN / READ KEYS (SPC-4 §6.16.2).
    ReadKeys,
    /// PERSISTENT RESERVE IN / READ RESERVATION (SPC-4 §6.16.3): the
    /// holder's key, if any.
    ReadReservation,
    /// REGISTER AND IGNORE EXISTING KEY (SPC-4 §5.14.7): sets this nexus's
    /// key whatever it was, keeping the reservation if this nexus holds it.
    Register { new: u64 },
    /// REGISTER with the current key: fails with RESERVATION CONFLICT if the
    /// nexus is no longer registered under `current`, which makes a change
    /// of role atomic with the check that nobody preempted us.
    ChangeKey { current: u64, new: u64 },
    /// RESERVE (SPC-4 §5.14.9): conflicts if another nexus holds it.
    Reserve { key: u64 },
    /// RELEASE (SPC-4 §5.14.11.2).
    Release { key: u64 },
    /// PREEMPT AND ABORT (SPC-4 §5.14.11.5): removes every registration with
    /// `victim` and, if it held the reservation, takes it over atomically.
    PreemptAndAbort { key: u64, victim: u64 },
    /// READ (16) of one block (SBC-4 §5.18).
    ReadBlock { lba: u64 },
    /// WRITE (16) of one block with FUA (SBC-4 §5.42).
    WriteBlock { lba: u64, data: Vec<u8> },
}

/// A successful command's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DiskReply {
    Done,
    Keys(Vec<u64>),
    Reservation(Option<u64>),
    Block(Vec<u8>),
}

/// Why a command did not succeed, as far as the decisions care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskFault {
    /// RESERVATION CONFLICT: our key is gone or someone else holds the
    /// reservation. The command had no effect.
    Conflict,
    /// No answer (connection lost, timeout, LUN missing). The command may or
    /// may not have run; the registration must be re-checked.
    Unavailable,
}

pub type DiskResult = Result<DiskReply, DiskFault>;

/// A LUN shared between nodes, with the SPC-4 reservation subset above.
pub trait SharedDisk {
    /// Logical block size in bytes.
    fn block_size(&self) -> usize;
    /// Runs one command to completion.
    fn execute(&mut self, op: &DiskOp) -> DiskResult;
}
