//! Striped LBA range lock: ordinary writes take the stripes of their range
//! shared, COMPARE AND WRITE and ORWRITE take them exclusive (SBC-4 5.3:
//! the compare and the write are one atomic operation). No lock is common to
//! every command of the LUN: ranges in different stripes never meet.

use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::cdb::Extent;

const STRIPES: usize = 64;
/// Blocks per stripe: 2048 blocks is 1 MiB at 512-byte blocks.
const STRIPE_BLOCKS: u64 = 2048;

#[derive(Debug)]
pub(crate) struct RangeLock {
    stripes: [RwLock<()>; STRIPES],
}

impl Default for RangeLock {
    fn default() -> Self {
        RangeLock {
            stripes: std::array::from_fn(|_| RwLock::new(())),
        }
    }
}

/// The stripes one command holds, released on drop. A range within one
/// stripe's size takes one or two, held inline so that a write locks
/// without allocating; longer ranges keep theirs on the heap.
#[derive(Debug)]
#[must_use]
pub(crate) enum Held<G> {
    One(G),
    Two(G, G),
    /// Held for their `Drop`.
    Many {
        _held: Vec<G>,
    },
}

impl<G> Held<G> {
    fn hold(mut locks: impl Iterator<Item = G>) -> Self {
        let first = locks.next().expect("an extent covers at least one stripe");
        let Some(second) = locks.next() else {
            return Held::One(first);
        };
        match locks.next() {
            None => Held::Two(first, second),
            Some(third) => Held::Many {
                _held: [first, second, third].into_iter().chain(locks).collect(),
            },
        }
    }
}

pub(crate) type SharedGuard<'a> = Held<RwLockReadGuard<'a, ()>>;
pub(crate) type ExclusiveGuard<'a> = Held<RwLockWriteGuard<'a, ()>>;

impl RangeLock {
    /// The stripes an extent touches, as a bit set; always locked in
    /// ascending order so two commands cannot deadlock.
    fn mask(extent: Extent) -> u64 {
        let first = extent.lba.0 / STRIPE_BLOCKS;
        let last = extent.lba.0.saturating_add(extent.blocks.max(1) - 1) / STRIPE_BLOCKS;
        if last - first >= STRIPES as u64 - 1 {
            return u64::MAX;
        }
        (first..=last).fold(0, |m, s| m | 1 << (s % STRIPES as u64))
    }

    fn indices(extent: Extent) -> impl Iterator<Item = usize> {
        let mask = Self::mask(extent);
        (0..STRIPES).filter(move |i| mask & (1 << i) != 0)
    }

    pub(crate) fn shared(&self, extent: Extent) -> SharedGuard<'_> {
        Held::hold(
            Self::indices(extent)
                .map(|i| self.stripes[i].read().unwrap_or_else(|e| e.into_inner())),
        )
    }

    pub(crate) fn exclusive(&self, extent: Extent) -> ExclusiveGuard<'_> {
        Held::hold(
            Self::indices(extent)
                .map(|i| self.stripes[i].write().unwrap_or_else(|e| e.into_inner())),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reservoir_bdev::Lba;

    #[test]
    fn masks() {
        let e = |lba, blocks| Extent {
            lba: Lba(lba),
            blocks,
        };
        assert_eq!(RangeLock::mask(e(0, 1)), 1);
        assert_eq!(RangeLock::mask(e(2047, 2)), 0b11);
        assert_eq!(RangeLock::mask(e(64 * 2048, 1)), 1);
        assert_eq!(RangeLock::mask(e(0, 64 * 2048)), u64::MAX);
        assert_eq!(RangeLock::mask(e(u64::MAX, 0)), 1 << 63);
    }
}
