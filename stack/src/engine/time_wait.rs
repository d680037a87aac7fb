//! TIME-WAIT as compact records, apart from full control blocks, so that millions fit (RFC 9293 §3.6: the
//! 2*MSL wait, MUST-13). A record keeps only what TIME-WAIT needs: the 4-tuple, the sequence numbers to re-send
//! the final ACK, the peer's last timestamp for PAWS and RFC 6191, the peer's MAC, and when it expires.
//!
//! Every record waits the same 2*MSL, so records expire in the order they were made: the table is a ring, new
//! records at the tail, expiry from the head (FreeBSD keeps its TIME-WAIT list the same way). That needs no timer
//! per record: expiry reads the ring front to back, which the hardware prefetcher follows, where a timer wheel
//! would touch a node per record at random. A record that ends early (its 4-tuple reused, RFC 6191) is marked
//! dead and its slot comes back when the head reaches it; a record whose wait restarts (the peer's FIN came
//! again) moves to the tail.

use crate::engine::flow::FlowKey;
use crate::time::Instant;
use crate::wire::ethernet::MacAddr;
use crate::wire::{Port, SeqNum};

/// One connection in TIME-WAIT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeWait {
    /// The 4-tuple; a remote port of 0 marks a dead slot (no TCP flow has port 0: such segments are dropped on
    /// input and `connect` refuses them).
    pub key: FlowKey,
    /// Our next sequence number (just past our FIN).
    pub snd_nxt: SeqNum,
    /// The next sequence number we expect (just past the peer's FIN).
    pub rcv_nxt: SeqNum,
    /// The peer's most recent TSval, if timestamps were in use.
    pub ts_recent: Option<u32>,
    /// The offset added to our clock in our TSvals on this connection.
    pub ts_offset: u32,
    /// The window we advertise, already scaled down.
    pub window: u16,
    pub remote_mac: MacAddr,
    /// When the 2*MSL wait ends.
    pub expires: Instant,
}

impl TimeWait {
    #[inline]
    fn is_live(&self) -> bool {
        self.key.remote_port != Port(0)
    }

    #[inline]
    fn kill(&mut self) {
        self.key.remote_port = Port(0);
    }
}

/// A fixed-capacity ring of [`TimeWait`] records in expiry order. A record's index is its slot in the ring and
/// stays valid until the record is removed or moved.
pub(crate) struct TimeWaitTable {
    /// Slots, filled up to `capacity` on the first lap round the ring.
    records: Vec<TimeWait>,
    capacity: u32,
    /// The oldest occupied slot; always live unless the ring is empty.
    head: u32,
    /// Occupied slots from `head` on, dead ones included.
    occupied: u32,
    /// Live records.
    live: u32,
}

impl TimeWaitTable {
    pub(crate) fn new(capacity: usize) -> TimeWaitTable {
        let capacity = u32::try_from(capacity).unwrap_or(u32::MAX);
        TimeWaitTable {
            records: Vec::with_capacity(capacity as usize),
            capacity,
            head: 0,
            occupied: 0,
            live: 0,
        }
    }

    /// The slot `offset` places after the head.
    #[inline]
    fn slot(&self, offset: u32) -> u32 {
        let slot = u64::from(self.head) + u64::from(offset);
        if slot >= u64::from(self.capacity) {
            (slot - u64::from(self.capacity)) as u32
        } else {
            slot as u32
        }
    }

    /// Stores a record at the tail; `None` when every slot is taken. Records must be inserted in the order of
    /// their `expires` (which a fixed 2*MSL after `now` gives).
    pub(crate) fn insert(&mut self, record: TimeWait) -> Option<u32> {
        debug_assert!(record.is_live());
        if self.occupied == self.capacity {
            return None;
        }
        let index = self.slot(self.occupied);
        match self.records.get_mut(index as usize) {
            Some(slot) => *slot = record,
            None => self.records.push(record),
        }
        self.occupied += 1;
        self.live += 1;
        // The tail walks the whole ring, so the next record's slot was last written a lap ago and is cold: start
        // it on its way now rather than miss on it at the next insert.
        if let Some(next) = self.records.get(self.slot(self.occupied) as usize) {
            crate::mem::prefetch(next);
        }
        Some(index)
    }

    /// The live record at `index`.
    #[inline]
    pub(crate) fn get(&self, index: u32) -> Option<&TimeWait> {
        self.records.get(index as usize).filter(|r| r.is_live())
    }

    /// Starts bringing the next `count` records from the head into cache.
    #[inline]
    pub(crate) fn prefetch_next(&self, count: u32) {
        for offset in 0..count.min(self.occupied) {
            if let Some(record) = self.records.get(self.slot(offset) as usize) {
                crate::mem::prefetch(record);
            }
        }
    }

    /// Removes the live record at `index` (the caller removes its flow-table entry); `false` if there is none.
    pub(crate) fn remove(&mut self, index: u32) -> bool {
        let Some(record) = self.records.get_mut(index as usize).filter(|r| r.is_live()) else {
            return false;
        };
        record.kill();
        self.live -= 1;
        self.pop_dead();
        true
    }

    /// Restarts the wait of the live record at `index`: it now ends at `expires` (which is no earlier than any
    /// other record's) and the record moves to the tail. Returns its new index, which the caller puts in the
    /// flow table; the old index when the ring has no free slot, in which case the record keeps its place and
    /// expires when the head reaches it and its new time has come.
    pub(crate) fn restart(&mut self, index: u32, expires: Instant) -> Option<u32> {
        let mut record = *self.get(index)?;
        record.expires = expires;
        self.records[index as usize].expires = expires;
        if self.occupied == self.capacity && index != self.head {
            return Some(index);
        }
        self.remove(index);
        self.insert(record)
    }

    /// When the head record expires, if there is one.
    #[inline]
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        if self.occupied == 0 {
            return None;
        }
        self.records.get(self.head as usize).map(|r| r.expires)
    }

    /// The live records from the head on that have expired at `now`, at most `limit` of them, in order: the
    /// ones [`TimeWaitTable::pop_expired`] removes next.
    pub(crate) fn expired(&self, now: Instant, limit: usize) -> impl Iterator<Item = &TimeWait> + '_ {
        (0..self.occupied)
            .map(|offset| &self.records[self.slot(offset) as usize])
            .take_while(move |r| !r.is_live() || r.expires <= now)
            .filter(|r| r.is_live())
            .take(limit)
    }

    /// Removes the head record if it has expired at `now`, returning it and its index (the caller removes its
    /// flow-table entry).
    pub(crate) fn pop_expired(&mut self, now: Instant) -> Option<(u32, TimeWait)> {
        if self.occupied == 0 {
            return None;
        }
        let index = self.head;
        let record = self.records.get_mut(index as usize)?;
        if record.expires > now {
            return None;
        }
        let expired = *record;
        record.kill();
        self.live -= 1;
        self.pop_dead();
        Some((index, expired))
    }

    /// Frees the dead slots at the head, so that the head is live or the ring empty.
    #[inline]
    fn pop_dead(&mut self) {
        while self.occupied > 0 && !self.records[self.head as usize].is_live() {
            self.head = self.slot(1);
            self.occupied -= 1;
        }
        if self.occupied == 0 {
            self.head = 0;
        }
    }

    /// Live records.
    pub(crate) fn len(&self) -> usize {
        self.live as usize
    }
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;

    fn record(port: u16, expires: u64) -> TimeWait {
        TimeWait {
            key: FlowKey {
                local_addr: Ipv4Addr::new(198, 18, 0, 1),
                remote_addr: Ipv4Addr::new(198, 18, 0, 2),
                local_port: Port(port),
                remote_port: Port(80),
            },
            snd_nxt: SeqNum(1),
            rcv_nxt: SeqNum(2),
            ts_recent: None,
            ts_offset: 0,
            window: 0,
            remote_mac: MacAddr([2, 0, 0, 0, 0, 2]),
            expires: Instant::from_micros(expires),
        }
    }

    #[test]
    fn time_wait_record_is_at_most_64_bytes() {
        assert!(
            core::mem::size_of::<TimeWait>() <= 64,
            "{}",
            core::mem::size_of::<TimeWait>()
        );
    }

    #[test]
    fn full_ring_insert_refuses_until_the_head_expires() {
        let mut table = TimeWaitTable::new(2);
        assert_eq!(table.insert(record(1, 10)), Some(0));
        assert_eq!(table.insert(record(2, 20)), Some(1));
        assert_eq!(table.insert(record(3, 30)), None);
        assert!(table.pop_expired(Instant::from_micros(9)).is_none());
        let (index, expired) = table.pop_expired(Instant::from_micros(10)).expect("head expired");
        assert_eq!((index, expired.key.local_port), (0, Port(1)));
        // The freed slot is the next tail: the ring wraps.
        assert_eq!(table.insert(record(3, 30)), Some(0));
        assert_eq!(table.len(), 2);
        assert_eq!(table.next_expiry(), Some(Instant::from_micros(20)));
    }

    #[test]
    fn removed_record_is_gone_and_its_slot_freed_when_the_head_passes() {
        let mut table = TimeWaitTable::new(3);
        for (port, expires) in [(1, 10), (2, 20), (3, 30)] {
            table.insert(record(port, expires));
        }
        assert!(table.remove(1));
        assert!(!table.remove(1), "a record is removed once");
        assert!(table.get(1).is_none());
        assert_eq!(table.len(), 2);
        // The dead middle slot still holds its place in the ring.
        assert_eq!(table.insert(record(4, 40)), None);
        assert!(table.remove(0));
        // The head moved past both dead slots.
        assert_eq!(table.next_expiry(), Some(Instant::from_micros(30)));
        assert_eq!(table.insert(record(4, 40)), Some(0));
        assert_eq!(table.insert(record(5, 50)), Some(1));
    }

    #[test]
    fn restarted_record_moves_to_the_tail() {
        let mut table = TimeWaitTable::new(4);
        for (port, expires) in [(1, 10), (2, 20), (3, 30)] {
            table.insert(record(port, expires));
        }
        assert_eq!(table.restart(0, Instant::from_micros(40)), Some(3));
        assert!(table.get(0).is_none());
        assert_eq!(table.get(3).map(|r| r.key.local_port), Some(Port(1)));
        let order: Vec<u16> = core::iter::from_fn(|| table.pop_expired(Instant::from_micros(100)))
            .map(|(_, r)| r.key.local_port.0)
            .collect();
        assert_eq!(order, [2, 3, 1]);
        assert_eq!(table.len(), 0);
        assert_eq!(table.next_expiry(), None);
    }

    #[test]
    fn full_ring_restart_keeps_the_record_in_place_with_its_new_time() {
        let mut table = TimeWaitTable::new(2);
        table.insert(record(1, 10));
        table.insert(record(2, 20));
        assert_eq!(table.restart(1, Instant::from_micros(40)), Some(1));
        assert_eq!(table.get(1).map(|r| r.expires), Some(Instant::from_micros(40)));
        // The head restarted: its own slot frees, so it moves.
        assert_eq!(table.restart(0, Instant::from_micros(50)), Some(0));
        assert_eq!(table.next_expiry(), Some(Instant::from_micros(40)));
        assert!(table.pop_expired(Instant::from_micros(39)).is_none());
        assert_eq!(table.pop_expired(Instant::from_micros(40)).map(|(i, _)| i), Some(1));
        assert_eq!(table.pop_expired(Instant::from_micros(50)).map(|(i, _)| i), Some(0));
    }

    #[test]
    fn expired_lists_the_due_live_records_in_order() {
        let mut table = TimeWaitTable::new(4);
        for (port, expires) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            table.insert(record(port, expires));
        }
        table.remove(1);
        let due: Vec<u16> = table
            .expired(Instant::from_micros(35), 8)
            .map(|r| r.key.local_port.0)
            .collect();
        assert_eq!(due, [1, 3]);
        assert_eq!(table.expired(Instant::from_micros(35), 1).count(), 1);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert,
        Remove(usize),
        Restart(usize),
        Advance(u64),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => Just(Op::Insert),
            2 => (0usize..64).prop_map(Op::Remove),
            1 => (0usize..64).prop_map(Op::Restart),
            2 => (0u64..30).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a model (a list of live records and their expiry): every record expires exactly once, never
        /// before its time, and no later than its time once the records ahead of it have expired; the count of
        /// live records and `get` agree with the model throughout.
        #[test]
        fn ring_matches_a_model(capacity in 1usize..12, ops in proptest::collection::vec(op(), 1..200)) {
            const SPAN: u64 = 25;
            let mut table = TimeWaitTable::new(capacity);
            // (port, index, expires) of the live records.
            let mut model: Vec<(u16, u32, u64)> = Vec::new();
            let mut now = 0u64;
            let mut next_port = 1u16;
            for op in ops {
                match op {
                    Op::Insert => {
                        let got = table.insert(record(next_port, now + SPAN));
                        if let Some(index) = got {
                            prop_assert!(model.iter().all(|&(_, i, _)| i != index));
                            model.push((next_port, index, now + SPAN));
                        } else {
                            prop_assert!(model.len() <= capacity);
                        }
                        next_port += 1;
                    }
                    Op::Remove(k) if !model.is_empty() => {
                        let (_, index, _) = model.remove(k % model.len());
                        prop_assert!(table.remove(index));
                    }
                    Op::Restart(k) if !model.is_empty() => {
                        let at = k % model.len();
                        let index = model[at].1;
                        let new = table.restart(index, Instant::from_micros(now + SPAN));
                        prop_assert!(new.is_some());
                        model[at].1 = new.unwrap_or(index);
                        model[at].2 = now + SPAN;
                    }
                    Op::Advance(step) => {
                        now += step;
                        while let Some((index, expired)) = table.pop_expired(Instant::from_micros(now)) {
                            let at = model.iter().position(|&(_, i, _)| i == index);
                            prop_assert!(at.is_some(), "expired an unknown record {index}");
                            let (port, _, expires) = model.remove(at.unwrap_or(0));
                            prop_assert_eq!(port, expired.key.local_port.0);
                            prop_assert!(expires <= now);
                        }
                        // Nothing due is left behind unless a later restart holds the head (full ring only).
                        if let Some(head) = table.next_expiry() {
                            prop_assert!(head > Instant::from_micros(now));
                        }
                    }
                    _ => {}
                }
                prop_assert_eq!(table.len(), model.len());
                for &(port, index, expires) in &model {
                    let got = table.get(index);
                    prop_assert_eq!(got.map(|r| r.key.local_port.0), Some(port));
                    prop_assert_eq!(got.map(|r| r.expires), Some(Instant::from_micros(expires)));
                }
            }
        }
    }
}
