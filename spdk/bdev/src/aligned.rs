//! Page-aligned buffers for O_DIRECT, and a per-thread pool of bounce
//! buffers for callers whose slices are not aligned.

use std::alloc::{self, Layout};
use std::cell::RefCell;
use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Alignment of every [`AlignedBuf`]: 4096 satisfies O_DIRECT on any logical
/// sector size Linux supports and is the page size, so it also suits mmap'd
/// or registered buffers.
pub(crate) const ALIGN: usize = 4096;

/// A bounce buffer kept per thread is dropped rather than cached beyond this
/// size, so one huge request does not pin memory on a reactor forever.
const POOL_MAX: usize = 4 << 20;

/// A zero-initialised heap buffer whose address and capacity are multiples
/// of 4096. Derefs to exactly `len` bytes.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    layout: Layout,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like Box<[u8]>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out &[u8], like Box<[u8]>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes (capacity rounded up to 4096).
    pub fn zeroed(len: usize) -> Self {
        let capacity = len.max(1).next_multiple_of(ALIGN);
        let layout = Layout::from_size_align(capacity, ALIGN).expect("buffer size overflows isize");
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        AlignedBuf { ptr, len, layout }
    }

    /// Bytes this buffer can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.layout.size()
    }

    /// Changes the visible length within the capacity; new bytes keep
    /// whatever the buffer held before (they were zero when allocated).
    fn set_len(&mut self, len: usize) {
        assert!(len <= self.capacity());
        self.len = len;
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for capacity >= len initialised bytes (zeroed
        // at allocation) and lives as long as self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        // SAFETY: as in deref, and &mut self makes the access unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: ptr was returned by alloc_zeroed with this layout.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), self.layout) }
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity())
            .finish()
    }
}

/// Whether `buf` can go to an O_DIRECT file descriptor as it is.
pub(crate) fn is_aligned(buf: &[u8]) -> bool {
    (buf.as_ptr() as usize).is_multiple_of(ALIGN) && buf.len().is_multiple_of(ALIGN)
}

thread_local! {
    /// One cached bounce buffer per thread: a reactor runs one request at a
    /// time through a bdev, so one is enough and reuse avoids an allocation
    /// per misaligned I/O.
    static BOUNCE: RefCell<Option<AlignedBuf>> = const { RefCell::new(None) };
}

/// Runs `f` with this thread's bounce buffer sized to `len` bytes. The buffer
/// is taken out of the pool for the duration, so a nested call (not expected)
/// allocates its own instead of aliasing.
pub(crate) fn with_bounce<R>(len: usize, f: impl FnOnce(&mut AlignedBuf) -> R) -> R {
    let cached = BOUNCE.with(|slot| slot.borrow_mut().take());
    let mut buf = match cached {
        Some(buf) if buf.capacity() >= len => buf,
        _ => AlignedBuf::zeroed(len),
    };
    buf.set_len(len);
    let result = f(&mut buf);
    if buf.capacity() <= POOL_MAX {
        BOUNCE.with(|slot| *slot.borrow_mut() = Some(buf));
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for len in [0, 1, 512, 4096, 4097, 1 << 20] {
            let buf = AlignedBuf::zeroed(len);
            assert_eq!(buf.as_ptr() as usize % ALIGN, 0);
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn bounce_buffer_is_reused() {
        let first = with_bounce(8192, |b| {
            b.fill(7);
            b.as_ptr() as usize
        });
        let second = with_bounce(4096, |b| {
            assert_eq!(b.len(), 4096);
            b.as_ptr() as usize
        });
        assert_eq!(first, second);
    }
}
