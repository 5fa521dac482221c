//! Page-aligned buffers for O_DIRECT, and a per-thread pool of bounce
//! buffers for callers whose slices are not aligned.
//!
//! [`AlignedBuf`] is the one owner of aligned memory in the data plane: the
//! transport's pooled Data-Out and Data-In buffers are `AlignedBuf`s, so a
//! whole-page transfer reaches an O_DIRECT file as it is; only a transfer
//! whose length is not a multiple of 4096 (512-byte blocks) is bounced.

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

/// A growable byte buffer, like `Vec<u8>`, whose address is a multiple of
/// 4096 and whose capacity is a whole number of 4096-byte pages. Derefs to
/// its `len` bytes.
///
/// Every byte of the capacity is initialised (zeroed when allocated), so
/// growing within the capacity never exposes uninitialised memory; bytes a
/// [`AlignedBuf::resize`] adds are set to its fill value.
pub struct AlignedBuf {
    /// Dangling (and never dereferenced for more than 0 bytes) while the
    /// capacity is 0.
    ptr: NonNull<u8>,
    len: usize,
    capacity: usize,
}

// SAFETY: AlignedBuf uniquely owns its allocation, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only hands out &[u8], like Vec<u8>.
unsafe impl Sync for AlignedBuf {}

impl AlignedBuf {
    /// An empty buffer; allocates nothing.
    pub const fn new() -> Self {
        AlignedBuf {
            ptr: NonNull::dangling(),
            len: 0,
            capacity: 0,
        }
    }

    /// An empty buffer that holds `capacity` bytes (rounded up to a page)
    /// without reallocating.
    pub fn with_capacity(capacity: usize) -> Self {
        let mut buf = AlignedBuf::new();
        buf.reserve(capacity);
        buf
    }

    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> Self {
        let mut buf = AlignedBuf::with_capacity(len);
        buf.len = len;
        buf
    }

    /// Bytes this buffer can hold without reallocating.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Shortens the buffer to `len` bytes; no effect if it is shorter.
    pub fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }

    /// Sets the length to `len`, filling new bytes with `value`.
    pub fn resize(&mut self, len: usize, value: u8) {
        if len > self.len {
            self.reserve(len - self.len);
            let old = self.len;
            self.len = len;
            self[old..].fill(value);
        } else {
            self.len = len;
        }
    }

    /// Sets the length to `len` without filling: bytes past the old length
    /// hold whatever the buffer held before (zeroes, or an earlier use's
    /// data). For a caller that overwrites them all, such as a read into a
    /// pooled buffer, which would otherwise zero 4 KiB per command first.
    pub fn resize_to_overwrite(&mut self, len: usize) {
        self.reserve(len.saturating_sub(self.len));
        self.len = len;
    }

    /// Appends `bytes`.
    pub fn extend_from_slice(&mut self, bytes: &[u8]) {
        let old = self.len;
        self.reserve(bytes.len());
        self.len = old + bytes.len();
        self[old..].copy_from_slice(bytes);
    }

    /// Makes room for `additional` more bytes. Growing allocates a new
    /// block and copies: buffers are pooled and sized for their transfer up
    /// front, so this is rare on the I/O path.
    fn reserve(&mut self, additional: usize) {
        let needed = self
            .len
            .checked_add(additional)
            .expect("buffer size overflows usize");
        if needed <= self.capacity {
            return;
        }
        let capacity = needed.max(self.capacity * 2).next_multiple_of(ALIGN);
        let layout = Layout::from_size_align(capacity, ALIGN).expect("buffer size overflows isize");
        // SAFETY: the layout has a non-zero size (needed > capacity >= 0).
        let raw = unsafe { alloc::alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            alloc::handle_alloc_error(layout)
        };
        // SAFETY: the old block holds len initialised bytes, the new one has
        // room for them, and the two are distinct allocations.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr(), ptr.as_ptr(), self.len) };
        self.release();
        self.ptr = ptr;
        self.capacity = capacity;
    }

    /// Frees the allocation, if any (the fields are left for the caller).
    fn release(&mut self) {
        if self.capacity > 0 {
            let layout = Layout::from_size_align(self.capacity, ALIGN)
                .expect("the layout it was allocated with");
            // SAFETY: ptr was returned by alloc_zeroed with this layout.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

impl Default for AlignedBuf {
    fn default() -> Self {
        AlignedBuf::new()
    }
}

impl Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        // SAFETY: ptr is valid for capacity >= len initialised bytes (all
        // zeroed at allocation), or dangling and well aligned with len 0;
        // the memory lives as long as self.
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
        self.release();
    }
}

impl From<&[u8]> for AlignedBuf {
    fn from(bytes: &[u8]) -> Self {
        let mut buf = AlignedBuf::with_capacity(bytes.len());
        buf.extend_from_slice(bytes);
        buf
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlignedBuf")
            .field("len", &self.len)
            .field("capacity", &self.capacity)
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

#[cfg(test)]
thread_local! {
    /// Bounce buffers this thread has used, for tests that check aligned
    /// I/O skips them.
    static BOUNCED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// How many times this thread has used a bounce buffer.
#[cfg(test)]
pub(crate) fn bounced() -> u64 {
    BOUNCED.with(|n| n.get())
}

/// Runs `f` with this thread's bounce buffer sized to `len` bytes. The buffer
/// is taken out of the pool for the duration, so a nested call (not expected)
/// allocates its own instead of aliasing.
pub(crate) fn with_bounce<R>(len: usize, f: impl FnOnce(&mut AlignedBuf) -> R) -> R {
    #[cfg(test)]
    BOUNCED.with(|n| n.set(n.get() + 1));
    let cached = BOUNCE.with(|slot| slot.borrow_mut().take());
    let mut buf = cached.unwrap_or_default();
    buf.clear();
    // Every caller overwrites the whole buffer.
    buf.resize_to_overwrite(len);
    let result = f(&mut buf);
    if buf.capacity() <= POOL_MAX {
        BOUNCE.with(|slot| *slot.borrow_mut() = Some(buf));
    }
    result
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn buffers_are_aligned_and_zeroed() {
        for len in [0, 1, 512, 4096, 4097, 1 << 20] {
            let buf = AlignedBuf::zeroed(len);
            if len > 0 {
                assert_eq!(buf.as_ptr() as usize % ALIGN, 0);
            }
            assert_eq!(buf.len(), len);
            assert!(buf.iter().all(|&b| b == 0));
        }
        let empty = AlignedBuf::new();
        assert_eq!((empty.len(), empty.capacity()), (0, 0));
        assert_eq!(AlignedBuf::with_capacity(1).capacity(), ALIGN);
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

    #[derive(Debug, Clone)]
    enum Op {
        Extend(Vec<u8>),
        Resize(usize, u8),
        Truncate(usize),
        Clear,
        Overwrite(usize, u8),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            prop::collection::vec(any::<u8>(), 0..9000).prop_map(Op::Extend),
            (0usize..20000, any::<u8>()).prop_map(|(n, v)| Op::Resize(n, v)),
            (0usize..20000).prop_map(Op::Truncate),
            Just(Op::Clear),
            (0usize..20000, any::<u8>()).prop_map(|(n, v)| Op::Overwrite(n, v)),
        ]
    }

    proptest! {
        /// Behaves as Vec<u8> does, and stays aligned through growth.
        #[test]
        fn acts_like_a_vec(ops in prop::collection::vec(op(), 0..24)) {
            let mut ours = AlignedBuf::new();
            let mut model = Vec::new();
            for op in ops {
                match op {
                    Op::Extend(b) => { ours.extend_from_slice(&b); model.extend_from_slice(&b) }
                    Op::Resize(n, v) => { ours.resize(n, v); model.resize(n, v) }
                    Op::Truncate(n) => { ours.truncate(n); model.truncate(n) }
                    Op::Clear => { ours.clear(); model.clear() }
                    Op::Overwrite(n, v) => {
                        ours.resize_to_overwrite(n);
                        ours.fill(v);
                        model.clear();
                        model.resize(n, v);
                    }
                }
                prop_assert_eq!(&ours[..], &model[..]);
                prop_assert!(ours.capacity() >= ours.len());
                prop_assert_eq!(ours.capacity() % ALIGN, 0);
                if ours.capacity() > 0 {
                    prop_assert_eq!(ours.as_ptr() as usize % ALIGN, 0);
                }
            }
        }
    }
}
