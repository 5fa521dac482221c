//! A read-only bdev of one snapshot, for exporting as a LUN.

use std::sync::Arc;

use reservoir_bdev::{
    Bdev, BdevError, BlockCount, BlockSize, Durability, ErrorKind, Geometry, Lba, Provisioning,
};

use crate::engine::{Snapshot, SnapshotEngine};

#[derive(Debug)]
pub(crate) struct SnapshotView {
    engine: Arc<SnapshotEngine>,
    snapshot: Arc<Snapshot>,
    name: String,
    block_size: BlockSize,
}

const READ_ONLY: BdevError = BdevError::Unsupported {
    what: "writing to a snapshot (it is read-only)",
};

impl SnapshotView {
    pub fn new(engine: Arc<SnapshotEngine>, snapshot: Arc<Snapshot>) -> Self {
        let name = format!("{}@{}", engine.volume(), snapshot.name);
        let block_size = engine.base.geometry().block_size;
        SnapshotView {
            engine,
            snapshot,
            name,
            block_size,
        }
    }

    fn check(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        let capacity = BlockCount(self.snapshot.block_count);
        match lba.0.checked_add(count.0) {
            Some(end) if end <= capacity.0 => Ok(()),
            _ => Err(BdevError::OutOfRange {
                lba,
                count,
                capacity,
            }),
        }
    }
}

impl Bdev for SnapshotView {
    fn name(&self) -> &str {
        &self.name
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: self.block_size,
            block_count: BlockCount(self.snapshot.block_count),
            thin_provisioned: false,
            volatile_cache: false,
        }
    }

    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError> {
        let bs = self.block_size.bytes() as usize;
        if !buf.len().is_multiple_of(bs) {
            return Err(BdevError::Misaligned {
                len: buf.len(),
                block_size: bs as u32,
            });
        }
        self.check(lba, BlockCount((buf.len() / bs) as u64))?;
        self.engine
            .read_snapshot(&self.snapshot, lba.0 * bs as u64, buf)
            .map_err(|e| e.into_bdev("read snapshot", ErrorKind::ReadFailed))
    }

    fn write(&self, _: Lba, _: &[u8], _: Durability) -> Result<(), BdevError> {
        Err(READ_ONLY)
    }

    /// Nothing is ever cached for writing.
    fn flush(&self) -> Result<(), BdevError> {
        Ok(())
    }

    fn unmap(&self, _: Lba, _: BlockCount) -> Result<(), BdevError> {
        Err(READ_ONLY)
    }

    fn write_zeroes(&self, _: Lba, _: BlockCount) -> Result<(), BdevError> {
        Err(READ_ONLY)
    }

    /// A snapshot reports every block mapped: it is not thin provisioned.
    fn provisioning(&self, lba: Lba) -> Result<(Provisioning, BlockCount), BdevError> {
        self.check(lba, BlockCount(1))?;
        Ok((
            Provisioning::Mapped,
            BlockCount(self.snapshot.block_count - lba.0),
        ))
    }

    fn resize(&self, _: BlockCount) -> Result<(), BdevError> {
        Err(BdevError::Unsupported {
            what: "resizing a snapshot",
        })
    }

    /// Reads go to the origin's base bdev (and the differential area).
    fn prefers_offload(&self) -> bool {
        self.engine.base.prefers_offload()
    }
}
