//! Local time as the state machines see it: milliseconds on one node's
//! monotonic clock. Nodes never compare each other's clocks; only durations
//! measured on one clock matter.

use std::ops::{Add, Sub};

/// An instant on this node's clock, in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Add<u64> for Millis {
    type Output = Millis;
    fn add(self, ms: u64) -> Millis {
        Millis(self.0.saturating_add(ms))
    }
}

impl Sub for Millis {
    type Output = u64;
    /// Milliseconds from `rhs` to `self`, zero if `rhs` is later.
    fn sub(self, rhs: Millis) -> u64 {
        self.0.saturating_sub(rhs.0)
    }
}
