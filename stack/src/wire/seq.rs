//! TCP sequence numbers: 32-bit values compared modulo 2^32 (RFC 9293 §3.4).

use core::cmp::Ordering;
use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A TCP sequence or acknowledgment number.
///
/// Ordering is the wrapping comparison of RFC 9293 §3.4: `a < b` when `b - a`, computed modulo 2^32, lies in
/// `1..2^31`. It is a total order only over windows shorter than 2^31, which is all TCP ever compares, so
/// `PartialOrd` is implemented and `Ord` is not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct SeqNum(pub u32);

impl SeqNum {
    /// The signed distance `self - other`, modulo 2^32.
    #[inline]
    pub fn diff(self, other: SeqNum) -> i32 {
        self.0.wrapping_sub(other.0) as i32
    }

    /// The unsigned distance from `earlier` forward to `self` (`self - earlier` modulo 2^32).
    #[inline]
    pub fn since(self, earlier: SeqNum) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// `start <= self < start + len`, the window test of RFC 9293 §3.10.7.4.
    #[inline]
    pub fn in_window(self, start: SeqNum, len: u32) -> bool {
        self.since(start) < len
    }

    /// The later of two numbers.
    #[inline]
    pub fn max(self, other: SeqNum) -> SeqNum {
        if self.diff(other) >= 0 { self } else { other }
    }

    /// The earlier of two numbers.
    #[inline]
    pub fn min(self, other: SeqNum) -> SeqNum {
        if self.diff(other) <= 0 { self } else { other }
    }
}

impl PartialOrd for SeqNum {
    #[inline]
    fn partial_cmp(&self, other: &SeqNum) -> Option<Ordering> {
        Some(self.diff(*other).cmp(&0))
    }
}

impl Add<u32> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn add(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_add(rhs))
    }
}

impl AddAssign<u32> for SeqNum {
    #[inline]
    fn add_assign(&mut self, rhs: u32) {
        self.0 = self.0.wrapping_add(rhs);
    }
}

impl Sub<u32> for SeqNum {
    type Output = SeqNum;
    #[inline]
    fn sub(self, rhs: u32) -> SeqNum {
        SeqNum(self.0.wrapping_sub(rhs))
    }
}

impl fmt::Debug for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SeqNum({})", self.0)
    }
}

impl fmt::Display for SeqNum {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqnum_across_wrap_orders_by_distance() {
        let before = SeqNum(u32::MAX - 10);
        let after = before + 20;
        assert_eq!(after.0, 9);
        assert!(before < after);
        assert!(after > before);
        assert_eq!(after.diff(before), 20);
        assert_eq!(before.diff(after), -20);
        assert_eq!(after.since(before), 20);
        assert_eq!(before.max(after), after);
        assert_eq!(before.min(after), before);
    }

    #[test]
    fn seqnum_in_window_is_half_open() {
        let start = SeqNum(u32::MAX - 1);
        assert!(start.in_window(start, 4));
        assert!((start + 3).in_window(start, 4));
        assert!(!(start + 4).in_window(start, 4));
        assert!(!(start - 1).in_window(start, 4));
        assert!(!start.in_window(start, 0));
    }

    #[test]
    fn seqnum_equal_is_not_less() {
        let a = SeqNum(7);
        let b = SeqNum(7);
        assert!(a <= b);
        assert!(a >= b);
        assert_ne!(a.partial_cmp(&b), Some(Ordering::Less));
        assert_eq!(a.partial_cmp(&b), Some(Ordering::Equal));
    }
}
