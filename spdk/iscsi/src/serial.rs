//! Sequence numbers compared with serial number arithmetic (RFC 1982, with
//! SERIAL_BITS = 32), as RFC 7143 §4.2.2.1 requires for CmdSN.

use std::cmp::Ordering;

/// A command sequence number. It has no total order: two numbers exactly
/// 2^31 apart are incomparable, so it implements `PartialOrd` only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CmdSn(pub u32);

impl CmdSn {
    pub fn next(self) -> CmdSn {
        CmdSn(self.0.wrapping_add(1))
    }

    pub fn advanced_by(self, n: u32) -> CmdSn {
        CmdSn(self.0.wrapping_add(n))
    }

    /// `self - earlier` as a distance, meaningful when `earlier <= self`.
    pub fn distance_from(self, earlier: CmdSn) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// Whether `self` lies in the closed window `[low, high]`.
    pub fn in_window(self, low: CmdSn, high: CmdSn) -> bool {
        self >= low && self <= high
    }
}

impl PartialOrd for CmdSn {
    fn partial_cmp(&self, other: &CmdSn) -> Option<Ordering> {
        let (a, b) = (self.0, other.0);
        if a == b {
            return Some(Ordering::Equal);
        }
        let diff = b.wrapping_sub(a);
        match diff.cmp(&(1 << 31)) {
            Ordering::Less => Some(Ordering::Less),
            Ordering::Greater => Some(Ordering::Greater),
            Ordering::Equal => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn wraps() {
        assert!(CmdSn(u32::MAX) < CmdSn(0));
        assert!(CmdSn(5) > CmdSn(u32::MAX - 5));
        assert_eq!(CmdSn(0).partial_cmp(&CmdSn(1 << 31)), None);
        assert!(CmdSn(u32::MAX).in_window(CmdSn(u32::MAX - 1), CmdSn(3)));
        assert!(!CmdSn(4).in_window(CmdSn(u32::MAX - 1), CmdSn(3)));
    }

    proptest! {
        #[test]
        fn successor_is_greater(a in any::<u32>(), n in 1u32..(1 << 31)) {
            prop_assert!(CmdSn(a).advanced_by(n) > CmdSn(a));
            prop_assert!(CmdSn(a) < CmdSn(a).advanced_by(n));
            prop_assert_eq!(CmdSn(a).advanced_by(n).distance_from(CmdSn(a)), n);
        }
    }
}
