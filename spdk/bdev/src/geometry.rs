//! Units of block addressing. Newtypes keep a byte count from passing for a
//! block count.

/// Logical block address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lba(pub u64);

/// A number of logical blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BlockCount(pub u64);

/// Logical block size: 512 by default, 4096 selectable per volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BlockSize {
    #[default]
    B512,
    B4096,
}

impl BlockSize {
    pub const fn bytes(self) -> u32 {
        match self {
            BlockSize::B512 => 512,
            BlockSize::B4096 => 4096,
        }
    }

    pub const fn from_bytes(bytes: u32) -> Option<Self> {
        match bytes {
            512 => Some(BlockSize::B512),
            4096 => Some(BlockSize::B4096),
            _ => None,
        }
    }
}

/// What a bdev looks like to the SCSI layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Geometry {
    pub block_size: BlockSize,
    pub block_count: BlockCount,
    /// Deallocated blocks read back as zeroes and UNMAP is honoured.
    pub thin_provisioned: bool,
    /// Writes may be cached until a flush (the SCSI write-cache-enable bit
    /// is meaningful).
    pub volatile_cache: bool,
}

impl Geometry {
    pub fn size_bytes(&self) -> u64 {
        self.block_count.0 * u64::from(self.block_size.bytes())
    }
}
