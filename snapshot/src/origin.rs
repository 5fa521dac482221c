//! The origin: the volume's bdev as the LUN sees it, with copy-on-write.

use std::sync::Arc;

use reservoir_bdev::{Bdev, BdevError, BlockCount, Durability, Geometry, Lba, Lent, Provisioning};

use crate::engine::{SnapshotEngine, State};

/// Wraps the base bdev; every data-changing request first preserves what
/// live snapshots still need (see [`SnapshotEngine`]).
#[derive(Debug)]
pub(crate) struct SnapshotOrigin {
    engine: Arc<SnapshotEngine>,
}

impl SnapshotOrigin {
    pub fn new(engine: Arc<SnapshotEngine>) -> Self {
        SnapshotOrigin { engine }
    }

    /// Validates `count` blocks at `lba` against the current size, as the
    /// base bdev would, and returns their byte range.
    fn range(&self, st: &State, lba: Lba, count: BlockCount) -> Result<(u64, u64), BdevError> {
        let capacity = BlockCount(st.block_count);
        match lba.0.checked_add(count.0) {
            Some(end) if end <= capacity.0 => {
                let bs = self.engine.block_size;
                Ok((lba.0 * bs, count.0 * bs))
            }
            _ => Err(BdevError::OutOfRange {
                lba,
                count,
                capacity,
            }),
        }
    }

    /// Runs `op` inside the write gate after preserving the affected chunks.
    fn changing(
        &self,
        lba: Lba,
        count: BlockCount,
        op: impl FnOnce(&dyn Bdev) -> Result<(), BdevError>,
    ) -> Result<(), BdevError> {
        let st = self.engine.gate.shared();
        if st.closed {
            return Err(self.engine.closed_error());
        }
        let (offset, len) = self.range(&st, lba, count)?;
        self.engine.before_write(&st, offset, len)?;
        op(&*self.engine.base)
    }
}

impl Bdev for SnapshotOrigin {
    fn name(&self) -> &str {
        self.engine.base.name()
    }

    fn geometry(&self) -> Geometry {
        self.engine.base.geometry()
    }

    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError> {
        self.engine.base.read(lba, buf)
    }

    fn write(&self, lba: Lba, buf: &[u8], durability: Durability) -> Result<(), BdevError> {
        let bs = self.engine.block_size as usize;
        if !buf.len().is_multiple_of(bs) {
            return Err(BdevError::Misaligned {
                len: buf.len(),
                block_size: bs as u32,
            });
        }
        let count = BlockCount((buf.len() / bs) as u64);
        self.changing(lba, count, |base| base.write(lba, buf, durability))
    }

    fn flush(&self) -> Result<(), BdevError> {
        self.engine.base.flush()
    }

    fn unmap(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        self.changing(lba, count, |base| base.unmap(lba, count))
    }

    fn write_zeroes(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        self.changing(lba, count, |base| base.write_zeroes(lba, count))
    }

    fn provisioning(&self, lba: Lba) -> Result<(Provisioning, BlockCount), BdevError> {
        self.engine.base.provisioning(lba)
    }

    /// Snapshots are as large as the volume was when taken, and the maps
    /// are sized for it, so resizing waits until they are deleted.
    fn resize(&self, blocks: BlockCount) -> Result<(), BdevError> {
        let mut st = self.engine.gate.exclusive();
        if !st.snapshots.is_empty() {
            return Err(BdevError::Unsupported {
                what: "resizing a volume that has snapshots (delete them first)",
            });
        }
        self.engine.base.resize(blocks)?;
        let bytes = blocks.0 * self.engine.block_size;
        st.block_count = blocks.0;
        st.chunks = bytes.div_ceil(u64::from(self.engine.chunk_size().bytes()));
        Ok(())
    }

    fn prefers_offload(&self) -> bool {
        self.engine.base.prefers_offload()
    }

    // Reads of the origin are reads of the base (copy-on-write only
    // touches writes), so the base's memory is lent as it is.
    fn lends_memory(&self) -> bool {
        self.engine.base.lends_memory()
    }

    fn lend(&self, lba: Lba, len: usize) -> Result<Lent<'_>, BdevError> {
        self.engine.base.lend(lba, len)
    }

    fn try_lend(&self, lba: Lba, len: usize) -> Result<Option<Lent<'_>>, BdevError> {
        self.engine.base.try_lend(lba, len)
    }
}
