//! The block data transfer of a command, split from the work that needs
//! the I_T nexus so that it can run on another thread.
//!
//! ```text
//!  transport thread                         any thread
//!  Device::start ─ UA check ─ PR gate ─┬─▶ Started::Done(completion)
//!                                      ├─▶ Started::Io(BlockIo) ──run──▶ Completion + data-in
//!                                      └─▶ Started::Lent(LentRead) ──lend──▶ socket
//! ```
//!
//! A READ of a volume kept in memory (a RAM bdev) is not copied into a
//! buffer at all: [`LentRead`] lends the volume's own bytes to the
//! transport, which copies them straight into its socket. On a 128 KiB
//! sequential read that buffer copy was a sixth of the reactor's time.
//!
//! [`Device::execute`](crate::Device::execute) and `start` share everything
//! up to the transfer, and the transfer is one function whether it runs
//! inline or in [`BlockIo::run`], so READ, WRITE, WRITE AND VERIFY and
//! SYNCHRONIZE CACHE have one implementation whichever thread runs them.
//! The inline path builds no `BlockIo`: it touches no shared reference count.
//! Writes take the LUN's range lock on the thread that runs them, so
//! COMPARE AND WRITE stays atomic against writes on worker threads too.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reservoir_bdev::{AlignedBuf, Lba, Lent};

use crate::block;
use crate::cdb::{ByteCheck, Extent};
use crate::lun::Lun;
use crate::sense::{Completion, SenseReason};

/// What [`Device::start`](crate::Device::start) left to do.
#[derive(Debug)]
pub enum Started {
    /// The command ran to its end on the calling thread.
    Done(Completion),
    /// A block data transfer to finish with [`BlockIo::run`], on any thread.
    Io(BlockIo),
    /// A READ that passed every check, with data to send from the volume.
    Lent(LentRead),
}

/// The data transfers that may leave the transport's thread.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BlockOp {
    Read(Extent),
    Write { extent: Extent, fua: bool },
    WriteAndVerify { extent: Extent, check: ByteCheck },
    SynchronizeCache(Extent),
}

/// One command's block data transfer, past the unit attention check and the
/// reservation gate. It owns what it needs of the LUN, so it is `Send`; the
/// transport keeps the data buffers and lends them to [`BlockIo::run`].
#[derive(Debug)]
pub struct BlockIo {
    lun: Arc<Lun>,
    op: BlockOp,
    /// The command's allocation length: data-in never exceeds it.
    limit: u64,
    /// The nexus's abort epoch for the LUN and its value when the command
    /// passed the gate (SPC-4 5.13.11.5, PREEMPT AND ABORT).
    abort_epoch: Arc<AtomicU64>,
    epoch_seen: u64,
}

impl BlockIo {
    pub(crate) fn new(lun: Arc<Lun>, op: BlockOp, limit: u64, abort_epoch: Arc<AtomicU64>) -> Self {
        let epoch_seen = abort_epoch.load(Ordering::Acquire);
        BlockIo {
            lun,
            op,
            limit,
            abort_epoch,
            epoch_seen,
        }
    }

    /// Whether a PREEMPT AND ABORT from another nexus aborted this command
    /// after it passed the gate.
    pub fn aborted(&self) -> bool {
        self.abort_epoch.load(Ordering::Acquire) != self.epoch_seen
    }

    /// Runs the transfer. `data_out` is what the initiator sent; `data_in`
    /// is cleared, then filled with at most the allocation length. A
    /// command aborted by PREEMPT AND ABORT before it reached the medium
    /// ends with TASK ABORTED and touches nothing (the Control mode page
    /// says TAS = 1).
    pub fn run(&self, data_out: &[u8], data_in: &mut AlignedBuf) -> Completion {
        data_in.clear();
        let _fence = self.lun.persistent.transfer();
        if self.aborted() {
            return Completion::task_aborted();
        }
        transfer(&self.lun, self.op, self.limit, data_out, data_in)
    }
}

/// A READ of a LUN whose bdev [lends its memory](reservoir_bdev::Bdev::lends_memory),
/// past every check, with at least one byte to return. The transport sends
/// its data straight from the volume ([`LentRead::lend`]) when its
/// turn in the output comes, instead of from a buffer filled now. Until
/// then it is a read in flight like any other: a write that lands first
/// may show in its data, as it may for any two concurrent SIMPLE tasks
/// (SAM-5 8.6); each block is read whole, under the bdev's lock. A
/// transport that must fix the data now (data digests, an ORDERED task
/// behind it) uses [`LentRead::copy_into`].
#[derive(Debug, Clone)]
pub struct LentRead {
    lun: Arc<Lun>,
    lba: Lba,
    /// The extent in bytes: the bdev lends whole blocks.
    extent_len: usize,
    /// The bytes the command returns: at most its allocation length.
    len: usize,
}

impl LentRead {
    /// The read of `extent`, or the completion the command ends with now:
    /// CHECK CONDITION out of range, GOOD when there is nothing to read.
    pub(crate) fn new(lun: &Arc<Lun>, extent: Extent, limit: u64) -> Result<LentRead, Completion> {
        if let Err(reason) = block::check_range(lun, extent) {
            return Err(Completion::check(reason));
        }
        let extent_len = block::bytes_of(lun, extent);
        let len = usize::try_from(limit).map_or(extent_len, |limit| limit.min(extent_len));
        if len == 0 {
            return Err(Completion::good());
        }
        Ok(LentRead {
            lun: Arc::clone(lun),
            lba: extent.lba,
            extent_len,
            len,
        })
    }

    /// Bytes of data the command returns.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Never true: a read with nothing to return completes at once.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns at most `len` bytes (the initiator's expected length).
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// The data, which no write changes while it is lent; waits for
    /// writers to it first. Fails only when the volume shrank below the
    /// extent since the command started.
    pub fn lend(&self) -> Result<Lent<'_>, SenseReason> {
        let mut lent = self
            .lun
            .bdev()
            .lend(self.lba, self.extent_len)
            .map_err(|e| block::medium_error(&e, true))?;
        lent.truncate(self.len);
        Ok(lent)
    }

    /// Like [`LentRead::lend`], but `None` instead of waiting for a writer
    /// (see [`Bdev::try_lend`](reservoir_bdev::Bdev::try_lend)).
    pub fn try_lend(&self) -> Result<Option<Lent<'_>>, SenseReason> {
        let lent = self
            .lun
            .bdev()
            .try_lend(self.lba, self.extent_len)
            .map_err(|e| block::medium_error(&e, true))?;
        Ok(lent.map(|mut lent| {
            lent.truncate(self.len);
            lent
        }))
    }

    /// Reads the data into `data_in` now: the command's completion, as
    /// [`BlockIo::run`] would return it.
    pub fn copy_into(&self, data_in: &mut AlignedBuf) -> Completion {
        data_in.clear();
        match self.lend() {
            Ok(lent) => {
                data_in.extend_from_slice(&lent);
                Completion::good()
            }
            Err(reason) => Completion::check(reason),
        }
    }
}

/// The block transfer itself, wherever it runs: inline on the transport's
/// thread, or in [`BlockIo::run`] on a worker.
pub(crate) fn transfer(
    lun: &Lun,
    op: BlockOp,
    limit: u64,
    data_out: &[u8],
    data_in: &mut AlignedBuf,
) -> Completion {
    let result = match op {
        BlockOp::Read(extent) => block::read(lun, extent, data_in),
        BlockOp::Write { extent, fua } => block::write(lun, extent, fua, data_out),
        BlockOp::WriteAndVerify { extent, check } => {
            block::write_and_verify(lun, extent, check, data_out)
        }
        BlockOp::SynchronizeCache(extent) => block::synchronize_cache(lun, extent),
    };
    settle(result.map(|()| Completion::good()), limit, data_in)
}

/// The end every command shares: data-in truncated to the allocation length
/// (SPC-4, allocation length), and no data with CHECK CONDITION.
pub(crate) fn settle(
    result: Result<Completion, SenseReason>,
    limit: u64,
    data_in: &mut AlignedBuf,
) -> Completion {
    if data_in.len() as u64 > limit {
        data_in.truncate(limit as usize);
    }
    match result {
        Ok(completion) => completion,
        Err(reason) => {
            data_in.clear();
            Completion::check(reason)
        }
    }
}
