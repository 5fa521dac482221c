//! Block devices behind one trait, in SPDK's model.
//!
//! A [`Bdev`] is shared by every reactor (`Arc<dyn Bdev>`), so all methods
//! take `&self`; implementations must not serialise reactors behind one lock
//! on the I/O path. Addresses and lengths are in logical blocks
//! ([`Lba`], [`BlockCount`]); buffers are byte slices whose length is a
//! whole number of blocks.
//!
//! Implementations: [`MallocBdev`] (RAM, thin provisioned) and [`FileBdev`]
//! (a regular file or a block device, O_DIRECT through io_uring). Both
//! validate requests with the same checks, so every bdev rejects the same
//! requests with the same [`ErrorKind`].

mod aligned;
mod check;
#[cfg(test)]
mod conformance;
mod error;
mod file;
mod geometry;
mod malloc;
mod uring;

pub use aligned::AlignedBuf;
pub use error::{BdevError, ErrorKind};
pub use file::FileBdev;
pub use geometry::{BlockCount, BlockSize, Geometry, Lba};
pub use malloc::{Lent, MallocBdev};

/// Whether a write must reach stable storage before it completes (SBC-4 FUA).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The write may sit in a volatile cache until the next flush.
    Cached,
    /// Force Unit Access: on stable storage when the call returns.
    Fua,
}

/// Provisioning state of a run of blocks, for GET LBA STATUS (SBC-4 5.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provisioning {
    Mapped,
    Deallocated,
}

/// One block device. Stackable: a virtual bdev wraps an `Arc<dyn Bdev>`.
pub trait Bdev: Send + Sync + std::fmt::Debug {
    /// The volume name this bdev was created for.
    fn name(&self) -> &str;

    /// Block size, block count and capabilities, as of now (a resize changes it).
    fn geometry(&self) -> Geometry;

    /// Reads `buf.len()` bytes starting at `lba`.
    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError>;

    /// Writes `buf` starting at `lba`.
    fn write(&self, lba: Lba, buf: &[u8], durability: Durability) -> Result<(), BdevError>;

    /// Makes every completed write durable.
    fn flush(&self) -> Result<(), BdevError>;

    /// Deallocates blocks; they read back as zeroes afterwards.
    fn unmap(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError>;

    /// Writes zeroes to `count` blocks from `lba`, leaving them mapped (unlike
    /// [`Bdev::unmap`]). The default writes zero buffers; backends with a
    /// cheaper way (releasing RAM pages, `FALLOC_FL_ZERO_RANGE`) override it.
    fn write_zeroes(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        const STEP_BYTES: u64 = 1 << 20;
        let block = u64::from(self.geometry().block_size.bytes());
        let step = (STEP_BYTES / block).min(count.0.max(1));
        let zeroes = vec![0u8; (step * block) as usize];
        let end = lba.0.checked_add(count.0).ok_or(BdevError::OutOfRange {
            lba,
            count,
            capacity: self.geometry().block_count,
        })?;
        let mut at = lba.0;
        while at < end {
            let n = (end - at).min(step);
            self.write(Lba(at), &zeroes[..(n * block) as usize], Durability::Cached)?;
            at += n;
        }
        Ok(())
    }

    /// Provisioning of the run of blocks that starts at `lba`: its state and
    /// how many blocks (at least 1) share it.
    fn provisioning(&self, lba: Lba) -> Result<(Provisioning, BlockCount), BdevError>;

    /// Grows or shrinks the device to `blocks` blocks.
    fn resize(&self, blocks: BlockCount) -> Result<(), BdevError>;

    /// Whether the blocks live in this process's memory, so that
    /// [`Bdev::lend`] can hand them out: a transport then copies read data
    /// straight into its socket instead of into a buffer first.
    fn lends_memory(&self) -> bool {
        false
    }

    /// The `len` bytes of the blocks from `lba`, which no write changes
    /// while they are lent; waits for writers to them first. Bdevs that do
    /// not [lend memory](Bdev::lends_memory) fail with `Unsupported`.
    fn lend(&self, lba: Lba, len: usize) -> Result<Lent<'_>, BdevError> {
        let _ = (lba, len);
        Err(BdevError::Unsupported {
            what: "lending memory",
        })
    }

    /// Like [`Bdev::lend`], but `None` rather than waiting when a writer
    /// holds or waits for the blocks. A caller that already holds a loan
    /// takes further ones this way, so that it never waits for a writer
    /// that waits for it.
    fn try_lend(&self, lba: Lba, len: usize) -> Result<Option<Lent<'_>>, BdevError> {
        let _ = (lba, len);
        Err(BdevError::Unsupported {
            what: "lending memory",
        })
    }

    /// Whether a read or write may block the calling thread for a device's
    /// latency (a file or a disk) rather than return at memory speed. A
    /// transport runs such bdevs' data transfers on worker threads, so that
    /// a reactor keeps many of them in flight instead of waiting for each.
    fn prefers_offload(&self) -> bool {
        false
    }
}
