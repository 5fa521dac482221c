//! Lock-free per-chunk arrays: a snapshot's chunk map and a change bitmap.
//!
//! Both are allocated zeroed by the allocator (`calloc`, which for arrays of
//! this size maps fresh zero pages lazily), so creating them costs no work
//! proportional to the volume: a 64 GiB volume at 64 KiB chunks needs a
//! 4 MiB map and a 128 KiB bitmap, touched only where chunks are used.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

const _: () = assert!(std::mem::align_of::<u32>() == std::mem::align_of::<AtomicU32>());
const _: () = assert!(std::mem::align_of::<u64>() == std::mem::align_of::<AtomicU64>());

fn zeroed_u32(n: usize) -> Box<[AtomicU32]> {
    let plain: Box<[u32]> = vec![0u32; n].into_boxed_slice();
    let raw = Box::into_raw(plain) as *mut [AtomicU32];
    // SAFETY: AtomicU32 has the size and bit validity of u32 (std docs) and
    // the same alignment (asserted above), so the allocation is a valid
    // [AtomicU32] with the same layout to free it with.
    unsafe { Box::from_raw(raw) }
}

fn zeroed_u64(n: usize) -> Box<[AtomicU64]> {
    let plain: Box<[u64]> = vec![0u64; n].into_boxed_slice();
    let raw = Box::into_raw(plain) as *mut [AtomicU64];
    // SAFETY: as in zeroed_u32, for u64 and AtomicU64.
    unsafe { Box::from_raw(raw) }
}

/// Index of a preserved chunk in the differential area.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct DiffExtent(pub u32);

/// Per chunk of the volume: where the snapshot's copy lives, if it has one.
/// A slot holds `extent + 1`, 0 meaning "still the origin's". A slot goes
/// from 0 to an extent once (stored with Release after the copy is durable)
/// and never changes while the snapshot exists, so one Acquire load is a
/// complete lookup.
pub(crate) struct ChunkMap {
    slots: Box<[AtomicU32]>,
}

impl ChunkMap {
    pub fn new(chunks: u64) -> Self {
        ChunkMap {
            slots: zeroed_u32(chunks as usize),
        }
    }

    pub fn len(&self) -> u64 {
        self.slots.len() as u64
    }

    pub fn get(&self, chunk: u64) -> Option<DiffExtent> {
        match self.slots[chunk as usize].load(Ordering::Acquire) {
            0 => None,
            n => Some(DiffExtent(n - 1)),
        }
    }

    /// Publishes a copy; the caller has made its data durable first.
    pub fn set(&self, chunk: u64, extent: DiffExtent) {
        self.slots[chunk as usize].store(extent.0 + 1, Ordering::Release);
    }

    /// Every (chunk, extent) pair, ascending by chunk.
    pub fn iter(&self) -> impl Iterator<Item = (u64, DiffExtent)> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s.load(Ordering::Acquire) {
                0 => None,
                n => Some((i as u64, DiffExtent(n - 1))),
            })
    }
}

/// One bit per chunk, set concurrently by writers.
pub(crate) struct Bitmap {
    words: Box<[AtomicU64]>,
}

impl Bitmap {
    pub fn new(chunks: u64) -> Self {
        Bitmap {
            words: zeroed_u64(chunks.div_ceil(64) as usize),
        }
    }

    /// Sets a bit; the plain load first keeps an already-set bit's cache
    /// line shared between reactors instead of bouncing it on every write.
    pub fn set(&self, chunk: u64) {
        let word = &self.words[(chunk / 64) as usize];
        let mask = 1u64 << (chunk % 64);
        if word.load(Ordering::Relaxed) & mask == 0 {
            word.fetch_or(mask, Ordering::Relaxed);
        }
    }

    pub fn words(&self) -> &[AtomicU64] {
        &self.words
    }

    pub fn word(&self, i: usize) -> u64 {
        self.words[i].load(Ordering::Relaxed)
    }

    pub fn or_word(&self, i: usize, bits: u64) {
        if bits != 0 {
            self.words[i].fetch_or(bits, Ordering::Relaxed);
        }
    }
}
