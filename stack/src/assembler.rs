//! Out-of-order bookkeeping for the receive side, in a fixed-size value with no allocation.
//!
//! The bytes themselves go into the receive [`RingBuffer`](crate::buffer::RingBuffer) with `write_at`; the
//! [`Assembler`] only remembers *which* byte ranges beyond RCV.NXT have arrived, so that the receiver knows how
//! much becomes in-order when a hole fills, and what SACK blocks (RFC 2018) to report.
//!
//! # Contract
//!
//! Offsets are relative to the current in-order point (RCV.NXT); the assembler does not know the sequence numbers
//! themselves except when asked for SACK blocks. Ranges are half-open `start..end`, kept disjoint and
//! non-adjacent (touching ranges are merged). A receive path uses it like this:
//!
//! - Out-of-order segment at offset `o > 0` of `len` bytes: place the bytes with `ring.write_at(o, ..)`, then
//!   [`add(o, len)`](Assembler::add). If that fails with [`TooManyHoles`], the segment must be dropped (the ring
//!   may keep the bytes, they are just not known to be there; the peer will retransmit).
//! - In-order segment of `n` bytes (offset 0): `ring.enqueue_slice(..)`, then [`advance(n)`](Assembler::advance),
//!   then [`remove_front()`](Assembler::remove_front) to learn how many further bytes, received earlier, are now
//!   contiguous; `ring.commit` them and move RCV.NXT by `n` plus that count.
//! - Equivalently, [`add(0, n)`](Assembler::add) records in-order bytes as a range starting at 0, and
//!   `remove_front()` then returns `n` plus whatever range it merged with.
//!
//! So a range starting at offset 0 exists only between `add(0, ..)`/`advance` and the next `remove_front`, and
//! `remove_front` is the only operation that moves the in-order point past received ranges. `advance(n)` moves it
//! by exactly `n` bytes that arrived in order: ranges wholly inside them are forgotten, one straddling the new
//! in-order point is trimmed to start at 0.

use crate::wire::SeqNum;

/// [`Assembler::add`] would need more than the assembler's fixed number of ranges.
///
/// The assembler is left exactly as it was; the caller drops the segment (and counts it), and the peer
/// retransmits it later. Returned rather than evicting a range because evicting would renege on data already
/// reported in SACK blocks (RFC 2018 §8 allows reneging but it costs the peer a retransmission timeout).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many holes in the received data")]
pub struct TooManyHoles;

/// Up to `N` disjoint ranges of data received beyond the in-order point.
///
/// A fixed-size value (`N` = 4 by default: 36 bytes), so a million connections cost no allocation and a bounded
/// amount of memory. Four ranges match the most SACK blocks a segment can carry (three with timestamps).
/// Ranges are stored most recently changed first, which is the order SACK blocks must be reported in
/// (RFC 2018 §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assembler<const N: usize = 4> {
    /// `(start, end)` offsets; the first `count` are valid, most recently added or extended first.
    ranges: [(u32, u32); N],
    count: u8,
}

impl<const N: usize> Default for Assembler<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Assembler<N> {
    /// An assembler with nothing received out of order.
    pub const fn new() -> Self {
        assert!(N <= u8::MAX as usize, "at most 255 ranges");
        Assembler {
            ranges: [(0, 0); N],
            count: 0,
        }
    }

    fn live(&self) -> &[(u32, u32)] {
        &self.ranges[..self.count as usize]
    }

    /// Whether no out-of-order data is recorded (the connection can take the fast path).
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Number of disjoint ranges recorded.
    #[inline]
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Records that bytes `offset..offset + len` (relative to the in-order point) have been received.
    ///
    /// Merges with every range it overlaps or touches; the merged range becomes the most recent one. An empty
    /// range (`len == 0`) changes nothing. The end saturates at `u32::MAX`, far beyond any TCP window.
    ///
    /// # Errors
    /// [`TooManyHoles`] if the range touches no existing range and all `N` are in use; nothing changes then.
    pub fn add(&mut self, offset: u32, len: u32) -> Result<(), TooManyHoles> {
        if len == 0 {
            return Ok(());
        }
        let (new_start, new_end) = (offset, offset.saturating_add(len));
        // Ranges are disjoint and non-adjacent, so whatever touches the merged range touches the new one.
        let touches = |&(s, e): &(u32, u32)| s <= new_end && new_start <= e;
        if self.live().iter().all(|r| !touches(r)) && self.len() == N {
            return Err(TooManyHoles);
        }
        // Fold every touching range into the new one, compacting the others in their recency order.
        let (mut start, mut end) = (new_start, new_end);
        let mut kept = 0;
        for i in 0..self.len() {
            let r = self.ranges[i];
            if touches(&r) {
                start = start.min(r.0);
                end = end.max(r.1);
            } else {
                self.ranges[kept] = r;
                kept += 1;
            }
        }
        // kept < N: either something merged, or count was below N.
        self.ranges.copy_within(0..kept, 1);
        self.ranges[0] = (start, end);
        self.count = (kept + 1) as u8;
        Ok(())
    }

    /// Removes the range starting at offset 0, if any, and returns its length: the bytes that just became
    /// in-order (commit them in the ring and move RCV.NXT by that much). The remaining ranges shift down by the
    /// same amount, so they stay relative to the new in-order point. Returns 0 when there is a hole at offset 0.
    pub fn remove_front(&mut self) -> u32 {
        let Some(i) = self.live().iter().position(|r| r.0 == 0) else {
            return 0;
        };
        let n = self.ranges[i].1;
        let count = self.len();
        self.ranges.copy_within(i + 1..count, i);
        self.count -= 1;
        for r in &mut self.ranges[..self.count as usize] {
            r.0 -= n;
            r.1 -= n;
        }
        n
    }

    /// Moves the in-order point forward by `n` bytes that arrived in order (not through the assembler).
    ///
    /// Ranges wholly below `n` are forgotten; a range straddling `n` is trimmed to start at 0, and the caller
    /// collects it with [`remove_front`](Self::remove_front). Recency order is kept.
    pub fn advance(&mut self, n: u32) {
        if n == 0 {
            return;
        }
        let mut kept = 0;
        for i in 0..self.len() {
            let (s, e) = self.ranges[i];
            if e > n {
                self.ranges[kept] = (s.saturating_sub(n), e - n);
                kept += 1;
            }
        }
        self.count = kept as u8;
    }

    /// Forgets everything (e.g. when the connection is reset or the receive buffer is released).
    pub fn clear(&mut self) {
        self.count = 0;
    }

    /// The recorded `(start, end)` offset ranges, in ascending order.
    pub fn ranges(&self) -> impl Iterator<Item = (u32, u32)> + use<N> {
        let mut sorted = self.ranges;
        let count = self.len();
        sorted[..count].sort_unstable();
        sorted.into_iter().take(count)
    }

    /// The ranges as SACK blocks `(left edge, right edge)` in sequence space, given RCV.NXT, most recently
    /// changed first.
    ///
    /// RFC 2018 §4: "The first SACK block (i.e., the one immediately following the kind and length fields in the
    /// option) MUST specify the contiguous block of data containing the segment which triggered this ACK,
    /// unless that segment advanced the Acknowledgment Number field in the header", and later blocks should repeat
    /// the most recently reported ones; recency order gives both. The caller takes as
    /// many as fit in the option space.
    pub fn sack_blocks(&self, rcv_nxt: SeqNum) -> impl Iterator<Item = (SeqNum, SeqNum)> + use<N> {
        let ranges = self.ranges;
        ranges
            .into_iter()
            .take(self.len())
            .map(move |(s, e)| (rcv_nxt + s, rcv_nxt + e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ranges<const N: usize>(a: &Assembler<N>) -> Vec<(u32, u32)> {
        a.ranges().collect()
    }

    #[test]
    fn assembler_in_order_data_passes_straight_through() {
        let mut a: Assembler = Assembler::new();
        a.add(0, 100).unwrap();
        assert_eq!(a.remove_front(), 100);
        assert!(a.is_empty());
        a.advance(50);
        assert_eq!(a.remove_front(), 0);
        assert!(a.is_empty());
    }

    #[test]
    fn assembler_one_hole_filled_releases_everything() {
        let mut a: Assembler = Assembler::new();
        a.add(10, 20).unwrap();
        assert_eq!(a.remove_front(), 0, "a hole at the front releases nothing");
        assert_eq!(ranges(&a), [(10, 30)]);
        a.add(0, 10).unwrap();
        assert_eq!(ranges(&a), [(0, 30)]);
        assert_eq!(a.remove_front(), 30);
        assert!(a.is_empty());
    }

    #[test]
    fn assembler_advance_trims_straddling_range_and_drops_covered_ones() {
        let mut a: Assembler = Assembler::new();
        a.add(5, 3).unwrap(); // 5..8
        a.add(10, 10).unwrap(); // 10..20
        a.add(30, 5).unwrap(); // 30..35
        a.advance(12);
        assert_eq!(ranges(&a), [(0, 8), (18, 23)]);
        assert_eq!(a.remove_front(), 8);
        assert_eq!(ranges(&a), [(10, 15)]);
    }

    #[test]
    fn assembler_advance_to_range_start_makes_it_front() {
        let mut a: Assembler = Assembler::new();
        a.add(10, 5).unwrap();
        a.advance(10);
        assert_eq!(a.remove_front(), 5);
        assert!(a.is_empty());
    }

    #[test]
    fn assembler_several_holes_filled_in_every_order_end_contiguous() {
        // Segment 0 (bytes 0..10) is missing while segments 1..=5 of 10 bytes each arrive, in every order;
        // then segment 0 arrives and everything becomes in-order.
        fn permutations(items: &[u32]) -> Vec<Vec<u32>> {
            if items.len() <= 1 {
                return vec![items.to_vec()];
            }
            let mut out = Vec::new();
            for i in 0..items.len() {
                let mut rest = items.to_vec();
                let first = rest.remove(i);
                for mut p in permutations(&rest) {
                    p.insert(0, first);
                    out.push(p);
                }
            }
            out
        }
        let orders = permutations(&[1, 2, 3, 4, 5]);
        assert_eq!(orders.len(), 120);
        for order in orders {
            let mut a: Assembler = Assembler::new();
            for &seg in &order {
                a.add(seg * 10, 10).unwrap();
                assert_eq!(a.remove_front(), 0, "segment 0 is still missing ({order:?})");
            }
            assert_eq!(ranges(&a), [(10, 60)], "{order:?}");
            a.add(0, 10).unwrap();
            assert_eq!(a.remove_front(), 60, "{order:?}");
            assert!(a.is_empty());
        }
    }

    #[test]
    fn assembler_overlapping_and_adjacent_ranges_merge() {
        let mut a: Assembler = Assembler::new();
        a.add(10, 10).unwrap(); // 10..20
        a.add(15, 10).unwrap(); // overlaps -> 10..25
        a.add(25, 5).unwrap(); // adjacent -> 10..30
        a.add(12, 3).unwrap(); // inside
        assert_eq!(ranges(&a), [(10, 30)]);
        a.add(40, 5).unwrap();
        a.add(50, 5).unwrap();
        a.add(5, 60).unwrap(); // swallows all three
        assert_eq!(ranges(&a), [(5, 65)]);
        assert_eq!(a.len(), 1);
        a.add(1, 0).unwrap();
        assert_eq!(ranges(&a), [(5, 65)], "an empty add changes nothing");
    }

    #[test]
    fn assembler_full_rejects_new_hole_and_keeps_state() {
        let mut a: Assembler<2> = Assembler::new();
        a.add(10, 5).unwrap();
        a.add(20, 5).unwrap();
        let before = a.clone();
        assert_eq!(a.add(30, 5), Err(TooManyHoles));
        assert_eq!(a, before);
        assert_eq!(
            a.add(0, 5),
            Err(TooManyHoles),
            "in-order data also needs a slot when it touches nothing"
        );
        assert_eq!(a, before);
        // Still room to extend or bridge existing ranges.
        a.add(15, 5).unwrap();
        assert_eq!(ranges(&a), [(10, 25)]);
        a.add(30, 5).unwrap();
        assert_eq!(ranges(&a), [(10, 25), (30, 35)]);
    }

    #[test]
    fn assembler_sack_blocks_report_most_recent_first() {
        let mut a: Assembler = Assembler::new();
        let rcv_nxt = SeqNum(u32::MAX - 4);
        a.add(10, 5).unwrap(); // A
        a.add(30, 5).unwrap(); // B
        a.add(50, 5).unwrap(); // C
        let blocks: Vec<_> = a.sack_blocks(rcv_nxt).collect();
        assert_eq!(
            blocks,
            [
                (rcv_nxt + 50, rcv_nxt + 55),
                (rcv_nxt + 30, rcv_nxt + 35),
                (rcv_nxt + 10, rcv_nxt + 15)
            ]
        );
        assert_eq!(blocks[2], (SeqNum(5), SeqNum(10)), "sequence space wraps");
        a.add(15, 2).unwrap(); // extends A: A becomes the most recent
        let blocks: Vec<_> = a.sack_blocks(rcv_nxt).collect();
        assert_eq!(blocks[0], (rcv_nxt + 10, rcv_nxt + 17));
        assert_eq!(blocks[1], (rcv_nxt + 50, rcv_nxt + 55));
        assert_eq!(blocks[2], (rcv_nxt + 30, rcv_nxt + 35));
        // Merging B and C yields the newest block.
        a.add(35, 15).unwrap();
        let blocks: Vec<_> = a.sack_blocks(rcv_nxt).collect();
        assert_eq!(blocks, [(rcv_nxt + 30, rcv_nxt + 55), (rcv_nxt + 10, rcv_nxt + 17)]);
        // Advancing keeps the order and shifts the edges with RCV.NXT.
        a.advance(5);
        let blocks: Vec<_> = a.sack_blocks(rcv_nxt + 5).collect();
        assert_eq!(blocks, [(rcv_nxt + 30, rcv_nxt + 55), (rcv_nxt + 10, rcv_nxt + 17)]);
    }

    #[test]
    fn assembler_default_size_stays_small_for_a_million_connections() {
        assert_eq!(core::mem::size_of::<Assembler>(), 36);
    }

    #[test]
    fn assembler_end_saturates_instead_of_overflowing() {
        let mut a: Assembler = Assembler::new();
        a.add(u32::MAX - 1, 10).unwrap();
        assert_eq!(ranges(&a), [(u32::MAX - 1, u32::MAX)]);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Add(u32, u32),
        RemoveFront,
        Advance(u32),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0u32..96, 0u32..24).prop_map(|(o, l)| Op::Add(o, l)),
            2 => Just(Op::RemoveFront),
            1 => (0u32..32).prop_map(Op::Advance),
        ]
    }

    /// Maximal runs of set bits as `(start, end)`.
    fn runs(bits: &[bool]) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < bits.len() {
            if bits[i] {
                let s = i;
                while i < bits.len() && bits[i] {
                    i += 1;
                }
                out.push((s as u32, i as u32));
            } else {
                i += 1;
            }
        }
        out
    }

    proptest! {
        #[test]
        fn assembler_random_ops_match_bitmap_model(ops in proptest::collection::vec(op(), 0..48)) {
            const N: usize = 3;
            let mut a: Assembler<N> = Assembler::new();
            // bits[i]: byte at offset i received; long enough for any offset generated.
            let mut bits = vec![false; 256];
            for op in ops {
                match op {
                    Op::Add(o, l) => {
                        let mut after = bits.clone();
                        after[o as usize..(o + l) as usize].iter_mut().for_each(|b| *b = true);
                        let before = a.clone();
                        let result = a.add(o, l);
                        if runs(&after).len() > N {
                            prop_assert_eq!(result, Err(TooManyHoles));
                            prop_assert_eq!(&a, &before);
                        } else {
                            prop_assert_eq!(result, Ok(()));
                            bits = after;
                            if l > 0 {
                                let (s, e) = a.sack_blocks(SeqNum(0)).next().unwrap();
                                prop_assert!(s.0 <= o && o + l <= e.0, "newest SACK block covers the new data");
                            }
                        }
                    }
                    Op::RemoveFront => {
                        let n = bits.iter().take_while(|&&b| b).count();
                        prop_assert_eq!(a.remove_front() as usize, n);
                        bits.drain(..n);
                        bits.resize(256, false);
                    }
                    Op::Advance(n) => {
                        a.advance(n);
                        bits.drain(..n as usize);
                        bits.resize(256, false);
                    }
                }
                prop_assert_eq!(ranges(&a), runs(&bits));
                prop_assert_eq!(a.is_empty(), !bits.contains(&true));
            }
        }
    }
}
