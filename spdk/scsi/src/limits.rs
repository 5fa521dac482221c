//! Limits advertised in the Block Limits VPD page (SBC-4) and enforced
//! when a CDB is parsed. Expressed in bytes so they mean the same amount of
//! memory for 512- and 4096-byte blocks.

/// Largest READ/WRITE/VERIFY transfer: bounds the buffer one command holds.
/// 32 MiB is 65536 blocks of 512 bytes, the largest single WRITE(16) the
/// libiscsi conformance suite issues (test_writesame16_unmap).
pub(crate) const MAX_TRANSFER_BYTES: u64 = 32 << 20;
/// OPTIMAL TRANSFER LENGTH: large enough to amortise per-command cost.
pub(crate) const OPTIMAL_TRANSFER_BYTES: u64 = 1 << 20;
/// Chunk in which WRITE SAME repeats its block.
pub(crate) const WRITE_SAME_CHUNK_BYTES: u64 = 1 << 20;
/// MAXIMUM COMPARE AND WRITE LENGTH: the lock is held exclusive while the
/// blocks are read, compared and written, so keep the range short (atomic
/// test-and-set users such as VMware ATS use one block).
pub(crate) const MAX_COMPARE_AND_WRITE_BLOCKS: u8 = 128;
/// MAXIMUM UNMAP LBA COUNT. libiscsi's conformance suite treats an explicit
/// limit above 2^20 as insane, and 2^20 blocks per command is plenty.
pub(crate) const MAX_UNMAP_LBA_COUNT: u32 = 1 << 20;
/// MAXIMUM UNMAP BLOCK DESCRIPTOR COUNT.
pub(crate) const MAX_UNMAP_DESCRIPTORS: u32 = 256;

pub(crate) fn max_transfer_blocks(block_size: u32) -> u64 {
    MAX_TRANSFER_BYTES / u64::from(block_size)
}

pub(crate) fn optimal_transfer_blocks(block_size: u32) -> u64 {
    OPTIMAL_TRANSFER_BYTES / u64::from(block_size)
}
