//! Request validation shared by every bdev, so all of them reject the same
//! requests with the same errors (SBC-4 4.5: LBA OUT OF RANGE is checked
//! before any transfer).

use crate::{BdevError, BlockCount, BlockSize, Lba};

/// A validated request, in bytes from the start of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ByteRange {
    pub offset: u64,
    pub len: u64,
}

impl ByteRange {
    pub fn end(&self) -> u64 {
        self.offset + self.len
    }
}

/// Checks that `count` blocks at `lba` lie inside a device of `capacity`
/// blocks and returns their byte range.
pub(crate) fn blocks(
    block_size: BlockSize,
    capacity: BlockCount,
    lba: Lba,
    count: BlockCount,
) -> Result<ByteRange, BdevError> {
    let end = lba.0.checked_add(count.0);
    if end.is_none_or(|end| end > capacity.0) {
        return Err(BdevError::OutOfRange {
            lba,
            count,
            capacity,
        });
    }
    let bs = u64::from(block_size.bytes());
    Ok(ByteRange {
        offset: lba.0 * bs,
        len: count.0 * bs,
    })
}

/// Checks that a buffer of `len` bytes is whole blocks and that those blocks,
/// starting at `lba`, lie inside the device.
pub(crate) fn buffer(
    block_size: BlockSize,
    capacity: BlockCount,
    lba: Lba,
    len: usize,
) -> Result<ByteRange, BdevError> {
    let bs = block_size.bytes();
    if !len.is_multiple_of(bs as usize) {
        return Err(BdevError::Misaligned {
            len,
            block_size: bs,
        });
    }
    blocks(
        block_size,
        capacity,
        lba,
        BlockCount((len / bs as usize) as u64),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn accepts_the_last_block_and_rejects_one_past() {
        let cap = BlockCount(8);
        let r = buffer(BlockSize::B512, cap, Lba(7), 512).unwrap();
        assert_eq!((r.offset, r.len), (7 * 512, 512));
        let e = buffer(BlockSize::B512, cap, Lba(7), 1024).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
        let e = blocks(BlockSize::B512, cap, Lba(u64::MAX), BlockCount(2)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::OutOfRange);
    }

    #[test]
    fn rejects_partial_blocks() {
        let e = buffer(BlockSize::B4096, BlockCount(8), Lba(0), 512).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Misaligned);
    }

    #[test]
    fn empty_request_is_valid_up_to_the_end() {
        assert!(buffer(BlockSize::B512, BlockCount(8), Lba(8), 0).is_ok());
        assert!(buffer(BlockSize::B512, BlockCount(8), Lba(9), 0).is_err());
    }
}
