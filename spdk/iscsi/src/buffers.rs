//! Payload buffers recycled per connection: a command's Data-Out buffer and
//! its Data-In buffer come from here and return once they have been used,
//! so that steady-state I/O allocates nothing. Per connection, not shared:
//! a connection lives on one reactor, so the pool needs no lock.
//!
//! The buffers are page aligned ([`AlignedBuf`]): a transfer of whole pages
//! reaches an O_DIRECT file LUN without a bounce copy.

use reservoir_scsi::AlignedBuf;

/// Buffers kept for reuse: enough for a full command window of reads and
/// writes in flight at once, typically.
const MAX_POOLED: usize = 256;
/// A buffer larger than this is freed rather than kept, so one huge
/// transfer does not pin its memory for the life of the connection.
const MAX_POOLED_BYTES: usize = 1 << 20;

#[derive(Debug, Default)]
pub(crate) struct BufferPool {
    free: Vec<AlignedBuf>,
}

impl BufferPool {
    /// An empty buffer that holds at least `capacity` bytes: the smallest
    /// pooled one that fits, or a new one.
    pub fn take(&mut self, capacity: usize) -> AlignedBuf {
        if capacity == 0 {
            return AlignedBuf::new();
        }
        let best = self
            .free
            .iter()
            .enumerate()
            .filter(|(_, b)| b.capacity() >= capacity)
            .min_by_key(|(_, b)| b.capacity())
            .map(|(i, _)| i);
        match best {
            Some(i) => self.free.swap_remove(i),
            None => AlignedBuf::with_capacity(capacity),
        }
    }

    /// Returns a buffer for reuse.
    pub fn give(&mut self, mut buffer: AlignedBuf) {
        if buffer.capacity() == 0
            || buffer.capacity() > MAX_POOLED_BYTES
            || self.free.len() >= MAX_POOLED
        {
            return;
        }
        buffer.clear();
        self.free.push(buffer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reuses_the_smallest_buffer_that_fits() {
        let mut pool = BufferPool::default();
        pool.give(AlignedBuf::with_capacity(8192));
        pool.give(AlignedBuf::with_capacity(4096));
        let small = pool.take(100);
        assert_eq!(small.capacity(), 4096);
        let big = pool.take(5000);
        assert_eq!(big.capacity(), 8192);
        assert!(pool.take(1).capacity() >= 1);
        assert_eq!(pool.take(1).as_ptr() as usize % 4096, 0, "page aligned");
        pool.give(big);
        assert_eq!(pool.take(0).capacity(), 0, "nothing needed, nothing taken");
    }

    #[test]
    fn drops_what_it_should_not_keep() {
        let mut pool = BufferPool::default();
        pool.give(AlignedBuf::new());
        pool.give(AlignedBuf::with_capacity(MAX_POOLED_BYTES + 1));
        assert!(pool.free.is_empty());
        let mut used = AlignedBuf::with_capacity(16);
        used.extend_from_slice(b"stale");
        pool.give(used);
        assert!(pool.take(16).is_empty(), "handed out cleared");
    }
}
