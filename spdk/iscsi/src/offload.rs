//! Commands whose block I/O runs on a worker thread.
//!
//! ```text
//!  Connection ──next_offloaded()──▶ Offloaded ──run() on a worker──▶ Finished
//!      ▲                                                               │
//!      └──────────────────────── complete(finished) ◀── reactor ◀──────┘
//! ```
//!
//! While its I/O runs, the task stays in the session as in flight; the
//! buffers travel with the I/O and come back with [`Finished`], so the
//! worker owns them until the medium is done with them. A `Finished` for a
//! connection that has ended is simply dropped.

use reservoir_scsi::{AlignedBuf, BlockIo, Completion};

use crate::pdu::Itt;
use crate::task::Task;

/// One command's block I/O, ready to run on any thread.
#[derive(Debug)]
pub struct Offloaded {
    pub(crate) itt: Itt,
    pub(crate) io: BlockIo,
    pub(crate) data_out: AlignedBuf,
    pub(crate) data_in: AlignedBuf,
}

impl Offloaded {
    /// Runs the I/O on the calling thread (blocking for the medium).
    pub fn run(mut self) -> Finished {
        let completion = self.io.run(&self.data_out, &mut self.data_in);
        Finished {
            itt: self.itt,
            completion,
            data_out: self.data_out,
            data_in: self.data_in,
        }
    }
}

/// The result of [`Offloaded::run`], for [`Connection::complete`](crate::Connection::complete).
#[derive(Debug)]
pub struct Finished {
    pub(crate) itt: Itt,
    pub(crate) completion: Completion,
    pub(crate) data_out: AlignedBuf,
    pub(crate) data_in: AlignedBuf,
}

/// A task whose I/O is on a worker.
#[derive(Debug)]
pub(crate) struct InFlight {
    pub task: Task,
    /// Aborted by task management: its response is discarded (§11.5.1).
    pub aborted: bool,
}

/// A task management response that waits for aborted tasks' I/O to end
/// (SAM-5: the function completes once the tasks it aborts have ended).
#[derive(Debug)]
pub(crate) struct PendingTmf {
    pub itt: Itt,
    pub response: u8,
    /// After a TARGET COLD RESET the connection closes.
    pub close: bool,
    pub waiting: Vec<Itt>,
}
