//! A RAM bdev, thin provisioned, backed by anonymous memory.
//!
//! # Memory
//!
//! The whole address range the volume may ever grow to is reserved up front
//! as one private anonymous `PROT_NONE` mapping with `MAP_NORESERVE`; the
//! prefix that holds the current capacity is made read-write. A 1 GiB volume
//! therefore costs only the pages written, and a resize never moves the
//! mapping, so no reader can hold a stale base pointer. The reservation is
//! [`RESERVATION`] or the initial size, whichever is larger; growing past it
//! fails with `Unsupported`.
//!
//! # Allocation tracking
//!
//! One bit per page ("chunk"), set by a write and cleared when an unmap
//! releases the page with `MADV_DONTNEED` (the kernel then supplies zero
//! pages). The chunk is the page because that is the smallest unit madvise
//! can give back, so the bitmap says exactly what memory the volume pins:
//! at 4 KiB pages that is 32 KiB of bitmap per GiB, itself in a lazily
//! touched `MAP_NORESERVE` mapping. An unmap that covers part of a page
//! zero-fills those bytes and releases the page if it became all zero.
//!
//! # Concurrency
//!
//! Copying into and out of shared memory from several threads is a data
//! race unless something orders the accesses. The volume is cut into 1 MiB
//! regions, each guarded by one of [`STRIPES`] reader-writer locks (region
//! index modulo the stripe count). A request locks every stripe its regions
//! map to, in ascending stripe order, so two requests can never wait on
//! each other in a cycle. Reactors touching different regions therefore
//! share no lock; overlapping writers are serialised and each block ends up
//! with one writer's data. Resize takes every stripe for writing.

use std::io;
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard, TryLockError};

use crate::check::{self, ByteRange};
use crate::{
    Bdev, BdevError, BlockCount, BlockSize, Durability, ErrorKind, Geometry, Lba, Provisioning,
};

/// Address space reserved per volume for growth: 1 TiB of the 128 TiB a
/// process has; it costs page-table entries only where pages are touched.
pub(crate) const RESERVATION: u64 = 1 << 40;

/// Bytes guarded by one stripe lock. Large enough that typical requests
/// (up to 1 MiB) take one or two locks.
const REGION: u64 = 1 << 20;

/// Number of stripe locks; regions share them round-robin.
const STRIPES: usize = 256;

/// An owned anonymous mapping, unmapped on drop.
struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory owned by this value; every access to
// its contents goes through the stripe locks or atomics (see module docs).
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn anonymous(len: usize, prot: libc::c_int) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping aliases nothing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                prot,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(ptr.cast()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Mapping { ptr, len })
    }

    /// Changes protection of `[start, end)`; both page aligned, inside.
    fn protect(&self, start: usize, end: usize, prot: libc::c_int) -> io::Result<()> {
        assert!(start <= end && end <= self.len);
        if start == end {
            return Ok(());
        }
        // SAFETY: the range lies inside this mapping (asserted); callers hold
        // every stripe lock, so nobody accesses it meanwhile.
        let rc = unsafe { libc::mprotect(self.ptr.as_ptr().add(start).cast(), end - start, prot) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    /// Gives pages `[start, end)` back; they read as zero afterwards.
    fn release(&self, start: usize, end: usize) -> io::Result<()> {
        assert!(start <= end && end <= self.len);
        if start == end {
            return Ok(());
        }
        // SAFETY: the range lies inside this private anonymous mapping, and
        // callers hold the write locks of its stripes, so no Rust reference
        // into it is alive.
        let rc = unsafe {
            libc::madvise(
                self.ptr.as_ptr().add(start).cast(),
                end - start,
                libc::MADV_DONTNEED,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: ptr/len describe a mapping this value created and owns.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The stripe locks one request holds, released on drop. A request within
/// one region's size takes one or two, held inline so that an I/O locks
/// without allocating; larger requests keep theirs on the heap.
enum Guards<G> {
    One(G),
    Two(G, G),
    /// Held for their `Drop`.
    Many {
        _held: Vec<G>,
    },
}

impl<G> Guards<G> {
    /// Takes every guard `locks` yields, in its order.
    fn hold(locks: impl Iterator<Item = G>) -> Self {
        Self::try_hold(locks.map(Some)).expect("a request covers at least one stripe")
    }

    /// Takes every guard `locks` yields, in its order, or none if one of
    /// them is `None` (those already taken are released).
    fn try_hold(mut locks: impl Iterator<Item = Option<G>>) -> Option<Self> {
        let first = locks.next()??;
        let Some(second) = locks.next() else {
            return Some(Guards::One(first));
        };
        let second = second?;
        let Some(third) = locks.next() else {
            return Some(Guards::Two(first, second));
        };
        let held = [Some(first), Some(second), third]
            .into_iter()
            .chain(locks)
            .collect::<Option<Vec<G>>>()?;
        Some(Guards::Many { _held: held })
    }
}

/// Bytes of a bdev's memory lent by [`Bdev::lend`]: no write changes them
/// while this lives, and writers to them wait, so it is held only for the
/// time of a copy or a `writev`.
pub struct Lent<'a> {
    bytes: &'a [u8],
    _guards: Guards<RwLockReadGuard<'a, ()>>,
}

impl Lent<'_> {
    /// Keeps only the first `len` bytes (all of them when there are fewer).
    pub fn truncate(&mut self, len: usize) {
        self.bytes = &self.bytes[..len.min(self.bytes.len())];
    }
}

impl std::ops::Deref for Lent<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        self.bytes
    }
}

impl std::fmt::Debug for Lent<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lent")
            .field("len", &self.bytes.len())
            .finish()
    }
}

/// RAM bdev; see the module documentation for its design.
pub struct MallocBdev {
    name: String,
    block_size: BlockSize,
    block_count: AtomicU64,
    data: Mapping,
    /// One bit per chunk; in its own lazily populated mapping.
    allocated: Mapping,
    chunk: usize,
    stripes: Box<[RwLock<()>]>,
    /// Serialises resizes and holds the read-write prefix length.
    accessible: Mutex<usize>,
}

impl std::fmt::Debug for MallocBdev {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MallocBdev")
            .field("name", &self.name)
            .field("geometry", &self.geometry())
            .finish_non_exhaustive()
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096)
}

fn usize_bytes(bytes: u64, what: &'static str) -> Result<usize, BdevError> {
    usize::try_from(bytes)
        .map_err(|_| BdevError::setup(what, format!("{bytes} bytes do not fit the address space")))
}

impl MallocBdev {
    /// A zero-filled, fully deallocated volume of `blocks` blocks.
    pub fn new(
        name: impl Into<String>,
        block_size: BlockSize,
        blocks: BlockCount,
    ) -> Result<Self, BdevError> {
        let chunk = page_size();
        let bytes = blocks
            .0
            .checked_mul(u64::from(block_size.bytes()))
            .ok_or_else(|| {
                BdevError::setup("malloc bdev", format!("{} blocks overflow", blocks.0))
            })?;
        let reservation =
            usize_bytes(bytes.max(RESERVATION), "malloc bdev")?.next_multiple_of(chunk);
        let setup = |e| BdevError::io("malloc bdev mmap", ErrorKind::Setup, e);
        let data = Mapping::anonymous(reservation, libc::PROT_NONE).map_err(setup)?;
        let words = (reservation / chunk).div_ceil(64);
        let allocated = Mapping::anonymous(
            (words * 8).next_multiple_of(chunk),
            libc::PROT_READ | libc::PROT_WRITE,
        )
        .map_err(setup)?;
        let accessible = usize_bytes(bytes, "malloc bdev")?.next_multiple_of(chunk);
        data.protect(0, accessible, libc::PROT_READ | libc::PROT_WRITE)
            .map_err(setup)?;
        Ok(MallocBdev {
            name: name.into(),
            block_size,
            block_count: AtomicU64::new(blocks.0),
            data,
            allocated,
            chunk,
            stripes: (0..STRIPES).map(|_| RwLock::new(())).collect(),
            accessible: Mutex::new(accessible),
        })
    }

    fn capacity(&self) -> BlockCount {
        BlockCount(self.block_count.load(Ordering::Acquire))
    }

    fn bits(&self) -> &[AtomicU64] {
        // SAFETY: the bitmap mapping is read-write, page aligned (so aligned
        // for u64), zero-initialised (a valid AtomicU64), lives as long as
        // self and is only accessed atomically.
        unsafe {
            std::slice::from_raw_parts(self.allocated.ptr.as_ptr().cast(), self.allocated.len / 8)
        }
    }

    fn is_allocated(&self, chunk: usize) -> bool {
        self.bits()[chunk / 64].load(Ordering::Relaxed) & (1 << (chunk % 64)) != 0
    }

    fn mark(&self, chunks: std::ops::Range<usize>, allocated: bool) {
        let bits = self.bits();
        for chunk in chunks {
            let mask = 1u64 << (chunk % 64);
            if allocated {
                bits[chunk / 64].fetch_or(mask, Ordering::Relaxed);
            } else {
                bits[chunk / 64].fetch_and(!mask, Ordering::Relaxed);
            }
        }
    }

    /// Stripe indices covering `range`, ascending (the lock order).
    fn stripe_indices(range: ByteRange) -> impl Iterator<Item = usize> {
        let first = range.offset / REGION;
        let last = (range.end() - 1) / REGION;
        let (low, high) = if last - first + 1 >= STRIPES as u64 {
            (0..STRIPES, 0..0)
        } else {
            let (a, b) = (
                (first % STRIPES as u64) as usize,
                (last % STRIPES as u64) as usize,
            );
            // Wrapping around the stripe table: the low stripes come first.
            if a <= b {
                (a..b + 1, 0..0)
            } else {
                (0..b + 1, a..STRIPES)
            }
        };
        low.chain(high)
    }

    /// The `len` bytes from `lba` under the read locks `lock` takes for
    /// their stripes, or None when it takes none.
    fn lend_locked<'a>(
        &'a self,
        lba: Lba,
        len: usize,
        lock: impl FnOnce(ByteRange) -> Option<Guards<RwLockReadGuard<'a, ()>>>,
    ) -> Result<Option<Lent<'a>>, BdevError> {
        let range = check::buffer(self.block_size, self.capacity(), lba, len)?;
        if range.len == 0 {
            return Ok(Some(Lent {
                bytes: &[],
                _guards: Guards::Many { _held: Vec::new() },
            }));
        }
        let Some(guards) = lock(range) else {
            return Ok(None);
        };
        // A resize may have run between the check and the locks.
        let range = check::buffer(self.block_size, self.capacity(), lba, len)?;
        // SAFETY: the range is inside the read-write prefix (checked under
        // the stripe locks, which resize also takes), and the read locks,
        // which the returned value holds as long as the slice, exclude
        // every writer to these bytes; no `&mut` into the mapping is ever
        // handed out.
        let bytes = unsafe {
            std::slice::from_raw_parts(self.data.ptr.as_ptr().add(range.offset as usize), len)
        };
        Ok(Some(Lent {
            bytes,
            _guards: guards,
        }))
    }

    fn lock_read(&self, range: ByteRange) -> Guards<RwLockReadGuard<'_, ()>> {
        Guards::hold(Self::stripe_indices(range).map(|i| {
            self.stripes[i]
                .read()
                .unwrap_or_else(PoisonError::into_inner)
        }))
    }

    fn lock_write(&self, range: ByteRange) -> Guards<RwLockWriteGuard<'_, ()>> {
        Guards::hold(Self::stripe_indices(range).map(|i| {
            self.stripes[i]
                .write()
                .unwrap_or_else(PoisonError::into_inner)
        }))
    }

    fn lock_all(&self) -> Vec<RwLockWriteGuard<'_, ()>> {
        self.stripes
            .iter()
            .map(|s| s.write().unwrap_or_else(PoisonError::into_inner))
            .collect()
    }

    /// Zeroes `[start, end)` (inside one chunk) and releases the chunk if it
    /// is now all zero. Caller holds the chunk's stripe for writing.
    fn zero_partial(&self, start: usize, end: usize) -> io::Result<()> {
        let chunk = start / self.chunk;
        let base = chunk * self.chunk;
        // SAFETY: the chunk lies in the read-write prefix (the request was
        // range checked under its stripe's write lock, which excludes every
        // other access to it).
        let bytes =
            unsafe { std::slice::from_raw_parts_mut(self.data.ptr.as_ptr().add(base), self.chunk) };
        bytes[start - base..end - base].fill(0);
        if bytes.iter().all(|&b| b == 0) {
            self.data.release(base, base + self.chunk)?;
            self.mark(chunk..chunk + 1, false);
        }
        Ok(())
    }

    /// First chunk at or after `from` (and before `limit`) whose state
    /// differs from `allocated`, or `limit`.
    fn run_end(&self, from: usize, limit: usize, allocated: bool) -> usize {
        let bits = self.bits();
        let same = if allocated { u64::MAX } else { 0 };
        let mut chunk = from;
        while chunk < limit {
            if chunk.is_multiple_of(64) && bits[chunk / 64].load(Ordering::Relaxed) == same {
                chunk += 64;
                continue;
            }
            if self.is_allocated(chunk) != allocated {
                return chunk;
            }
            chunk += 1;
        }
        limit
    }
}

impl Bdev for MallocBdev {
    fn name(&self) -> &str {
        &self.name
    }

    fn geometry(&self) -> Geometry {
        Geometry {
            block_size: self.block_size,
            block_count: self.capacity(),
            thin_provisioned: true,
            volatile_cache: false,
        }
    }

    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError> {
        buf.copy_from_slice(&self.lend(lba, buf.len())?);
        Ok(())
    }

    fn lends_memory(&self) -> bool {
        true
    }

    fn lend(&self, lba: Lba, len: usize) -> Result<Lent<'_>, BdevError> {
        let lent = self.lend_locked(lba, len, |range| Some(self.lock_read(range)))?;
        Ok(lent.expect("waiting for the locks always takes them"))
    }

    fn try_lend(&self, lba: Lba, len: usize) -> Result<Option<Lent<'_>>, BdevError> {
        self.lend_locked(lba, len, |range| {
            Guards::try_hold(Self::stripe_indices(range).map(
                |i| match self.stripes[i].try_read() {
                    Ok(guard) => Some(guard),
                    Err(TryLockError::Poisoned(poisoned)) => Some(poisoned.into_inner()),
                    Err(TryLockError::WouldBlock) => None,
                },
            ))
        })
    }

    fn write(&self, lba: Lba, buf: &[u8], _durability: Durability) -> Result<(), BdevError> {
        // RAM has no cache below it: every write is as durable as it gets,
        // so FUA needs nothing more (volatile_cache is false).
        let range = check::buffer(self.block_size, self.capacity(), lba, buf.len())?;
        if range.len == 0 {
            return Ok(());
        }
        let _guards = self.lock_write(range);
        let range = check::buffer(self.block_size, self.capacity(), lba, buf.len())?;
        // SAFETY: as in read; the write locks make this the only access.
        unsafe {
            std::ptr::copy_nonoverlapping(
                buf.as_ptr(),
                self.data.ptr.as_ptr().add(range.offset as usize),
                buf.len(),
            );
        }
        let (start, end) = (range.offset as usize, range.end() as usize);
        self.mark(start / self.chunk..end.div_ceil(self.chunk), true);
        Ok(())
    }

    fn flush(&self) -> Result<(), BdevError> {
        Ok(())
    }

    fn unmap(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        let range = check::blocks(self.block_size, self.capacity(), lba, count)?;
        if range.len == 0 {
            return Ok(());
        }
        let _guards = self.lock_write(range);
        let range = check::blocks(self.block_size, self.capacity(), lba, count)?;
        let failed = |e| BdevError::io("malloc unmap", ErrorKind::WriteFailed, e);
        let (start, end) = (range.offset as usize, range.end() as usize);
        let whole_start = start.next_multiple_of(self.chunk);
        let whole_end = end / self.chunk * self.chunk;
        if whole_start >= whole_end {
            // Inside one chunk, or straddling two without covering either.
            let split = whole_start.min(end);
            self.zero_partial(start, split).map_err(failed)?;
            if split < end {
                self.zero_partial(split, end).map_err(failed)?;
            }
            return Ok(());
        }
        if start < whole_start {
            self.zero_partial(start, whole_start).map_err(failed)?;
        }
        self.data.release(whole_start, whole_end).map_err(failed)?;
        self.mark(whole_start / self.chunk..whole_end / self.chunk, false);
        if whole_end < end {
            self.zero_partial(whole_end, end).map_err(failed)?;
        }
        Ok(())
    }

    /// Whole chunks give their pages back and stay marked mapped (they read
    /// as zeroes at no memory cost); partial chunks are zero-filled.
    fn write_zeroes(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        let range = check::blocks(self.block_size, self.capacity(), lba, count)?;
        if range.len == 0 {
            return Ok(());
        }
        let _guards = self.lock_write(range);
        let range = check::blocks(self.block_size, self.capacity(), lba, count)?;
        let failed = |e| BdevError::io("malloc write zeroes", ErrorKind::WriteFailed, e);
        let (start, end) = (range.offset as usize, range.end() as usize);
        let whole_start = start.next_multiple_of(self.chunk).min(end);
        let whole_end = (end / self.chunk * self.chunk).max(whole_start);
        // SAFETY: the range was checked under the write locks of every
        // stripe it touches, which exclude all other access to it.
        let fill = |from: usize, to: usize| unsafe {
            std::ptr::write_bytes(self.data.ptr.as_ptr().add(from), 0, to - from);
        };
        fill(start, whole_start);
        if whole_start < whole_end {
            self.data.release(whole_start, whole_end).map_err(failed)?;
        }
        fill(whole_end, end);
        self.mark(start / self.chunk..end.div_ceil(self.chunk), true);
        Ok(())
    }

    fn provisioning(&self, lba: Lba) -> Result<(Provisioning, BlockCount), BdevError> {
        // Lock-free: a snapshot that concurrent writes may already have
        // changed, which GET LBA STATUS permits (SBC-4 5.7).
        let capacity = self.capacity();
        let range = check::blocks(self.block_size, capacity, lba, BlockCount(1))?;
        let end_bytes = capacity.0 * u64::from(self.block_size.bytes());
        let chunk = range.offset as usize / self.chunk;
        let limit = (end_bytes as usize).div_ceil(self.chunk);
        let allocated = self.is_allocated(chunk);
        let run_end = self.run_end(chunk + 1, limit, allocated);
        let run_end_bytes = ((run_end * self.chunk) as u64).min(end_bytes);
        let blocks = (run_end_bytes - range.offset) / u64::from(self.block_size.bytes());
        let state = if allocated {
            Provisioning::Mapped
        } else {
            Provisioning::Deallocated
        };
        Ok((state, BlockCount(blocks)))
    }

    fn resize(&self, blocks: BlockCount) -> Result<(), BdevError> {
        let mut accessible = self
            .accessible
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let bytes = blocks
            .0
            .checked_mul(u64::from(self.block_size.bytes()))
            .filter(|&b| b <= self.data.len as u64)
            .ok_or(BdevError::Unsupported {
                what: "growing a malloc bdev beyond its address reservation",
            })? as usize;
        let _all = self.lock_all();
        let failed = |e| BdevError::io("malloc resize", ErrorKind::Setup, e);
        let old_bytes = (self.capacity().0 * u64::from(self.block_size.bytes())) as usize;
        let new_accessible = bytes.next_multiple_of(self.chunk);
        if bytes < old_bytes {
            // Dropped blocks must read as zeroes if the volume grows again.
            if bytes < new_accessible {
                self.zero_partial(bytes, new_accessible.min(old_bytes))
                    .map_err(failed)?;
            }
            self.data
                .release(new_accessible, *accessible)
                .map_err(failed)?;
            self.mark(new_accessible / self.chunk..*accessible / self.chunk, false);
            self.data
                .protect(new_accessible, *accessible, libc::PROT_NONE)
                .map_err(failed)?;
        } else {
            self.data
                .protect(
                    *accessible,
                    new_accessible,
                    libc::PROT_READ | libc::PROT_WRITE,
                )
                .map_err(failed)?;
        }
        *accessible = new_accessible;
        self.block_count.store(blocks.0, Ordering::Release);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use proptest::prelude::*;

    use super::*;
    use crate::conformance;

    fn bdev(block_size: BlockSize, blocks: u64) -> MallocBdev {
        MallocBdev::new("m0", block_size, BlockCount(blocks)).unwrap()
    }

    #[test]
    fn geometry_reports_thin_and_no_cache() {
        let g = bdev(BlockSize::B4096, 10).geometry();
        assert_eq!(g.block_count, BlockCount(10));
        assert!(g.thin_provisioned && !g.volatile_cache);
    }

    #[test]
    fn conformance_512() {
        for suite in [
            conformance::round_trip,
            conformance::rejects_bad_requests,
            conformance::unmap_zeroes,
            conformance::fua_and_flush,
            conformance::resize_keeps_data,
        ] {
            suite(&bdev(BlockSize::B512, 3000));
        }
    }

    #[test]
    fn conformance_4096() {
        for suite in [
            conformance::round_trip,
            conformance::rejects_bad_requests,
            conformance::unmap_zeroes,
            conformance::fua_and_flush,
            conformance::resize_keeps_data,
        ] {
            suite(&bdev(BlockSize::B4096, 700));
        }
    }

    #[test]
    fn lent_bytes_are_the_blocks_and_no_write_changes_them_meanwhile() {
        let b = Arc::new(bdev(BlockSize::B512, 64));
        b.write(Lba(2), &[7u8; 1024], Durability::Cached).unwrap();
        let lent = b.lend(Lba(2), 1024).unwrap();
        // A writer to the lent blocks waits until the loan ends, and
        // meanwhile nobody else takes them without waiting either.
        let writer = {
            let b = Arc::clone(&b);
            std::thread::spawn(move || b.write(Lba(2), &[9u8; 512], Durability::Cached))
        };
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(!writer.is_finished(), "the writer waits for the loan");
        assert!(b.try_lend(Lba(2), 512).unwrap().is_none(), "a writer waits");
        assert_eq!(*lent, [7u8; 1024]);
        drop(lent);
        writer.join().unwrap().unwrap();
        assert_eq!(*b.try_lend(Lba(2), 512).unwrap().unwrap(), [9u8; 512]);
        b.resize(BlockCount(2)).unwrap();
        assert_eq!(
            b.lend(Lba(2), 512).unwrap_err().kind(),
            ErrorKind::OutOfRange
        );
    }

    #[test]
    fn a_large_volume_starts_deallocated() {
        // 1 GiB of address space; nothing is touched.
        let b = bdev(BlockSize::B512, 1 << 21);
        assert_eq!(
            b.provisioning(Lba(0)).unwrap(),
            (Provisioning::Deallocated, BlockCount(1 << 21))
        );
        b.write(Lba(1_000_000), &[1u8; 512], Durability::Cached)
            .unwrap();
        // The written block's page (8 blocks of 512) is mapped, alone.
        let page_start = 1_000_000 / 8 * 8;
        assert_eq!(
            b.provisioning(Lba(0)).unwrap(),
            (Provisioning::Deallocated, BlockCount(page_start))
        );
        assert_eq!(
            b.provisioning(Lba(1_000_001)).unwrap(),
            (Provisioning::Mapped, BlockCount(page_start + 8 - 1_000_001))
        );
        assert_eq!(
            b.provisioning(Lba(page_start + 8)).unwrap(),
            (
                Provisioning::Deallocated,
                BlockCount((1 << 21) - page_start - 8)
            )
        );
    }

    #[test]
    fn partial_unmap_releases_a_page_once_it_is_all_zero() {
        let b = bdev(BlockSize::B512, 64);
        b.write(Lba(0), &[7u8; 1024], Durability::Cached).unwrap();
        b.unmap(Lba(0), BlockCount(1)).unwrap();
        assert_eq!(b.provisioning(Lba(0)).unwrap().0, Provisioning::Mapped);
        b.unmap(Lba(1), BlockCount(1)).unwrap();
        assert_eq!(
            b.provisioning(Lba(0)).unwrap(),
            (Provisioning::Deallocated, BlockCount(64))
        );
    }

    #[test]
    fn stripes_are_ascending_and_cover_the_request() {
        let r = |offset, len| ByteRange { offset, len };
        let stripes = |range| MallocBdev::stripe_indices(range).collect::<Vec<_>>();
        assert_eq!(stripes(r(0, 512)), vec![0]);
        assert_eq!(stripes(r(REGION - 512, 1024)), vec![0, 1]);
        let wrap = stripes(r(REGION * (STRIPES as u64 - 1), 2 * REGION));
        assert_eq!(wrap, vec![0, STRIPES - 1]);
        assert_eq!(
            stripes(r(5, REGION * 300)),
            (0..STRIPES).collect::<Vec<_>>()
        );
    }

    #[test]
    fn growing_past_the_reservation_is_unsupported() {
        let b = bdev(BlockSize::B4096, 8);
        let e = b.resize(BlockCount(RESERVATION / 4096 + 1)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Unsupported);
        assert_eq!(b.geometry().block_count, BlockCount(8));
    }

    #[test]
    fn concurrent_writers_overlapping() {
        // Spans several 1 MiB regions so requests cross stripe boundaries.
        let b: Arc<dyn Bdev> = Arc::new(bdev(BlockSize::B512, 4200));
        conformance::concurrent_writers(b, true);
    }

    #[test]
    fn concurrent_writers_disjoint() {
        let b: Arc<dyn Bdev> = Arc::new(bdev(BlockSize::B4096, 200));
        conformance::concurrent_writers(b, false);
    }

    proptest! {
        #[test]
        fn matches_a_byte_model(ops in conformance::ops(48)) {
            let b = bdev(BlockSize::B512, 48);
            conformance::against_model(&b, &ops)?;
        }
    }
}
