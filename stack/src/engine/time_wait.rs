//! TIME-WAIT as compact records, apart from full control blocks, so that millions fit (RFC 9293 §3.6: the
//! 2*MSL wait, MUST-13). A record keeps only what TIME-WAIT needs: the 4-tuple, the sequence numbers to re-send
//! the final ACK, the peer's last timestamp for PAWS and RFC 6191, and the peer's MAC.
//!
//! # Expiry in a FIFO instead of a timer each
//!
//! Every record waits the same 2*MSL from the engine's (monotonic) clock, so records expire in the order they
//! entered TIME-WAIT, as FreeBSD's `tcp_tw` list exploits. The table keeps that order in a queue of record
//! indices beside the records: expiry reads the queue from its head and knows the next records to end several at
//! a time, so their cache misses can overlap, where a timer wheel hands them out one linked node at a time after
//! cascading each through its levels. A record needs no wheel node (16 B); instead its slot keeps its expiry and
//! queue position (12 B), and the queue has 8 B of room per record.
//!
//! A record that leaves early (its 4-tuple reused, RFC 6191) or restarts its wait (the peer's FIN again) leaves
//! its old entry behind, stale: an entry is live only at the queue position its record names. Stale entries are
//! skipped when they reach the head. The queue has room for two entries per record, and when it fills (only when
//! reuse or restarts outpace expiry) one pass drops the stale entries: with one live entry per record, that frees
//! at least half of it, so the pass costs O(1) per push.

use crate::engine::flow::FlowKey;
use crate::time::Instant;
use crate::wire::SeqNum;
use crate::wire::ethernet::MacAddr;

/// One connection in TIME-WAIT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TimeWait {
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
}

/// A record in the table, with its place in the expiry order.
#[derive(Debug, Clone, Copy)]
struct Slot {
    record: TimeWait,
    /// When the wait ends, in microseconds, as two halves: 4-byte alignment keeps the slot at 52 bytes.
    expires: [u32; 2],
    /// The queue position of the record's live entry (positions count pushes, wrapping); [`FREED`] for a free
    /// slot.
    position: u32,
}

impl Slot {
    fn expires(&self) -> Instant {
        Instant::from_micros(u64::from(self.expires[0]) | u64::from(self.expires[1]) << 32)
    }

    fn set_expires(&mut self, at: Instant) {
        let micros = at.as_micros();
        self.expires = [micros as u32, (micros >> 32) as u32];
    }
}

/// Bytes per TIME-WAIT record in the table.
pub(crate) const SLOT_BYTES: usize = core::mem::size_of::<Slot>();

/// The expiry queue's bytes per record it may hold: room for two entries each.
pub(crate) const QUEUE_BYTES_PER_RECORD: usize = 2 * core::mem::size_of::<u32>();

/// The position of a free slot. A queue position never takes it (see [`TimeWaitTable::push`]).
const FREED: u32 = u32::MAX;

/// A fixed-capacity slab of [`TimeWait`] records, with their expiry order.
pub(crate) struct TimeWaitTable {
    records: Vec<Slot>,
    free: Vec<u32>,
    capacity: usize,
    /// Ring of record indices in expiry order: `queue_len` of them from `head`.
    queue: Box<[u32]>,
    head: usize,
    queue_len: usize,
    /// The position of the entry at `head`. Positions are consecutive from there, modulo `FREED`.
    head_position: u32,
    /// No record expires before this (a lower bound, exact after [`TimeWaitTable::head_due`] looked): most
    /// calls find nothing due with one comparison.
    earliest: Instant,
}

impl TimeWaitTable {
    pub(crate) fn new(capacity: usize) -> TimeWaitTable {
        TimeWaitTable {
            records: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            capacity,
            // Zeroed, so its pages stay untouched until used.
            queue: vec![0u32; capacity.saturating_mul(2).max(2)].into_boxed_slice(),
            head: 0,
            queue_len: 0,
            head_position: 0,
            earliest: Instant::from_micros(u64::MAX),
        }
    }

    /// Faults the table's pages in now (see [`crate::mem::populate`]).
    pub(crate) fn populate(&self) -> bool {
        crate::mem::populate_capacity(&self.records)
            & crate::mem::populate_capacity(&self.free)
            & crate::mem::populate(&self.queue)
    }

    /// Stores a record that expires at `expires`; `None` when full.
    ///
    /// Expiry follows insertion order: `expires` must not be earlier than that of any record inserted or
    /// restarted before (the engine gives every record the same wait from its monotonic clock).
    pub(crate) fn insert(&mut self, record: TimeWait, expires: Instant) -> Option<u32> {
        let mut slot = Slot {
            record,
            expires: [0; 2],
            position: FREED,
        };
        slot.set_expires(expires);
        let index = if let Some(index) = self.free.pop() {
            self.records[index as usize] = slot;
            index
        } else if self.records.len() < self.capacity {
            self.records.push(slot);
            (self.records.len() - 1) as u32
        } else {
            return None;
        };
        self.push(index);
        Some(index)
    }

    /// The live record at `index`.
    pub(crate) fn get(&self, index: u32) -> Option<&TimeWait> {
        self.slot_of(index).map(|s| &s.record)
    }

    /// When the live record at `index` expires.
    pub(crate) fn expires(&self, index: u32) -> Option<Instant> {
        self.slot_of(index).map(Slot::expires)
    }

    fn slot_of(&self, index: u32) -> Option<&Slot> {
        self.records.get(index as usize).filter(|s| s.position != FREED)
    }

    /// Starts bringing a record into cache.
    #[inline]
    pub(crate) fn prefetch(&self, index: u32) {
        if let Some(record) = self.records.get(index as usize) {
            crate::mem::prefetch(record);
        }
    }

    /// Frees a live record's slot (the caller removes its flow-table entry); its queue entry goes stale.
    pub(crate) fn remove(&mut self, index: u32) -> bool {
        match self.records.get_mut(index as usize) {
            Some(record) if record.position != FREED => {
                record.position = FREED;
                self.free.push(index);
                true
            }
            _ => false,
        }
    }

    /// Restarts a live record's wait: it now expires at `expires` (not earlier than any record's), after every
    /// record that expires before.
    pub(crate) fn restart(&mut self, index: u32, expires: Instant) {
        match self.records.get_mut(index as usize) {
            Some(record) if record.position != FREED && record.expires() != expires => {
                record.set_expires(expires);
                self.push(index);
            }
            _ => {}
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len() - self.free.len()
    }

    /// No record expires before this; `None` when the table is known empty. O(1): a poll loop asks before every
    /// turn, and a scan for the first live entry could pass every stale entry (with reuse, most of the queue).
    /// It is exact after [`TimeWaitTable::head_due`] was asked at or past it; until then it may be early (the
    /// record it was for has left), which costs one call that finds nothing due and makes it exact.
    pub(crate) fn next_expiry(&self) -> Option<Instant> {
        (self.earliest != Instant::from_micros(u64::MAX)).then_some(self.earliest)
    }

    /// Whether the oldest record is due at `now`. Drops the stale entries at the head of the queue on the way.
    pub(crate) fn head_due(&mut self, now: Instant) -> bool {
        if now < self.earliest {
            return false;
        }
        self.earliest = self.skip_stale().unwrap_or(Instant::from_micros(u64::MAX));
        self.earliest <= now
    }

    /// Starts bringing the records of the next `n` entries in expiry order into cache.
    pub(crate) fn prefetch_next(&self, n: usize) {
        for k in 0..n.min(self.queue_len) {
            self.prefetch(self.queue[self.slot(k)]);
        }
    }

    /// The records due at `now` among the next `n` entries in expiry order, oldest first.
    pub(crate) fn due(&self, now: Instant, n: usize) -> impl Iterator<Item = &TimeWait> + '_ {
        (0..n.min(self.queue_len))
            .filter_map(|k| self.live(k))
            .take_while(move |s| s.expires() <= now)
            .map(|s| &s.record)
    }

    /// Removes the oldest record if it is due at `now`: its slot and 4-tuple (the caller removes its flow-table
    /// entry).
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(u32, FlowKey)> {
        if self.skip_stale()? > now {
            return None;
        }
        let index = self.queue[self.head];
        let record = &mut self.records[index as usize];
        let key = record.record.key;
        record.position = FREED;
        self.free.push(index);
        self.pop_front();
        Some((index, key))
    }

    /// Drops the stale entries at the head of the queue; then the head entry, if any, is live: its expiry.
    fn skip_stale(&mut self) -> Option<Instant> {
        while self.queue_len > 0 {
            if let Some(slot) = self.live(0) {
                return Some(slot.expires());
            }
            self.pop_front();
        }
        None
    }

    /// The queue slot of the `k`-th entry from the head.
    #[inline]
    fn slot(&self, k: usize) -> usize {
        let i = self.head + k;
        if i >= self.queue.len() { i - self.queue.len() } else { i }
    }

    /// The queue position of the `k`-th entry from the head.
    #[inline]
    fn position(&self, k: usize) -> u32 {
        wrap_position(u64::from(self.head_position) + k as u64)
    }

    /// The record of the `k`-th entry from the head, if that entry is its live one.
    #[inline]
    fn live(&self, k: usize) -> Option<&Slot> {
        let position = self.position(k);
        self.records
            .get(self.queue[self.slot(k)] as usize)
            .filter(|r| r.position == position)
    }

    fn pop_front(&mut self) {
        self.head = self.slot(1);
        self.head_position = self.position(1);
        self.queue_len -= 1;
    }

    /// Appends an entry for record `index`, which makes its earlier entries stale.
    fn push(&mut self, index: u32) {
        if self.queue_len == self.queue.len() {
            self.compact();
        }
        // One live entry per record, and room for two per record: never full after compacting.
        debug_assert!(self.queue_len < self.queue.len());
        // Positions in the queue span fewer than `queue.len()` consecutive values, far below `FREED`, so no two
        // entries in it share one: a stale entry can never pass for its record's live one.
        let position = self.position(self.queue_len);
        let slot = self.slot(self.queue_len);
        self.queue[slot] = index;
        self.queue_len += 1;
        let record = &mut self.records[index as usize];
        record.position = position;
        self.earliest = self.earliest.min(record.expires());
    }

    /// Drops every stale entry, keeping the order of the others (and telling each record its new position).
    fn compact(&mut self) {
        /// How far ahead of the entry being checked its record is prefetched: the records are scattered.
        const AHEAD: usize = 8;
        let mut kept = 0;
        for k in 0..self.queue_len {
            if k + AHEAD < self.queue_len {
                self.prefetch(self.queue[self.slot(k + AHEAD)]);
            }
            if self.live(k).is_some() {
                let index = self.queue[self.slot(k)];
                let (slot, position) = (self.slot(kept), self.position(kept));
                self.queue[slot] = index;
                self.records[index as usize].position = position;
                kept += 1;
            }
        }
        self.queue_len = kept;
    }
}

/// Queue positions count modulo `FREED`, so that none is `FREED`. `position` is below `2 * FREED` (a position
/// plus an offset within the queue).
#[inline]
fn wrap_position(position: u64) -> u32 {
    let modulus = u64::from(FREED);
    (if position >= modulus {
        position - modulus
    } else {
        position
    }) as u32
}

#[cfg(test)]
mod tests {
    use core::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::wire::Port;

    fn record(port: u16) -> TimeWait {
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
        }
    }

    /// Inserts a record for `port` that expires at `expires` microseconds.
    fn insert(table: &mut TimeWaitTable, port: u16, expires: u64) -> Option<u32> {
        table.insert(record(port), at(expires))
    }

    fn at(micros: u64) -> Instant {
        Instant::from_micros(micros)
    }

    /// Ends what is due at `now`, as the engine does: while the head is due.
    fn drain(table: &mut TimeWaitTable, now: u64) -> Vec<u16> {
        core::iter::from_fn(|| table.head_due(at(now)).then(|| table.pop_due(at(now))).flatten())
            .map(|(_, key)| key.local_port.0)
            .collect()
    }

    #[test]
    fn time_wait_slot_is_52_bytes() {
        assert_eq!(SLOT_BYTES, 52);
    }

    #[test]
    fn queue_positions_wrap_before_the_freed_marker() {
        let mut table = TimeWaitTable::new(2);
        table.head_position = FREED - 2;
        insert(&mut table, 1, 10);
        insert(&mut table, 2, 20);
        // Positions FREED - 2 and FREED - 1: the next push takes position 0, never FREED.
        table.restart(0, at(30));
        assert_eq!(table.records[0].position, 0);
        assert_eq!(drain(&mut table, 25), [2]);
        assert_eq!(drain(&mut table, 30), [1]);
        assert_eq!(table.len(), 0);
    }

    #[test]
    fn full_table_insert_refuses_until_a_record_expires() {
        let mut table = TimeWaitTable::new(2);
        assert_eq!(insert(&mut table, 1, 10), Some(0));
        assert_eq!(insert(&mut table, 2, 20), Some(1));
        assert_eq!(insert(&mut table, 3, 30), None);
        assert!(table.pop_due(at(9)).is_none());
        assert_eq!(
            table.pop_due(at(10)).map(|(i, k)| (i, k.local_port)),
            Some((0, Port(1)))
        );
        assert!(table.get(0).is_none());
        assert_eq!(insert(&mut table, 3, 30), Some(0));
        assert_eq!(table.len(), 2);
        // A lower bound until the head is looked at again.
        assert_eq!(table.next_expiry(), Some(at(10)));
        assert!(!table.head_due(at(10)));
        assert_eq!(table.next_expiry(), Some(at(20)));
    }

    #[test]
    fn removed_record_never_expires_and_its_slot_is_reused_at_once() {
        let mut table = TimeWaitTable::new(3);
        for (port, expires) in [(1, 10), (2, 20), (3, 30)] {
            insert(&mut table, port, expires);
        }
        assert!(table.remove(1));
        assert!(!table.remove(1), "a record is removed once");
        assert!(table.get(1).is_none());
        assert_eq!(table.len(), 2);
        // Unlike a ring of records, the freed slot does not wait for the head to pass it.
        assert_eq!(insert(&mut table, 4, 40), Some(1));
        assert_eq!(drain(&mut table, 100), [1, 3, 4]);
        assert_eq!(table.len(), 0);
        assert_eq!(table.next_expiry(), None);
    }

    #[test]
    fn restarted_record_expires_after_the_others() {
        let mut table = TimeWaitTable::new(4);
        for (port, expires) in [(1, 10), (2, 20), (3, 30)] {
            insert(&mut table, port, expires);
        }
        table.restart(0, at(40));
        assert_eq!(table.expires(0), Some(at(40)));
        assert!(!table.head_due(at(10)), "the head entry is stale now");
        assert_eq!(table.next_expiry(), Some(at(20)));
        assert_eq!(drain(&mut table, 35), [2, 3]);
        assert_eq!(drain(&mut table, 40), [1]);
    }

    #[test]
    fn queue_full_of_stale_entries_compacts_and_keeps_the_order() {
        let mut table = TimeWaitTable::new(2);
        insert(&mut table, 1, 10);
        // Each restart leaves a stale entry: the queue (room for 4) fills and compacts.
        for t in 11..20 {
            table.restart(0, at(t));
        }
        insert(&mut table, 2, 25);
        assert!(table.queue_len <= 2, "compacted: {} entries", table.queue_len);
        assert_eq!(drain(&mut table, 18), []);
        assert_eq!(drain(&mut table, 19), [1]);
        assert_eq!(drain(&mut table, 25), [2]);
    }

    #[test]
    fn due_lists_the_live_due_records_in_order() {
        let mut table = TimeWaitTable::new(4);
        for (port, expires) in [(1, 10), (2, 20), (3, 30), (4, 40)] {
            insert(&mut table, port, expires);
        }
        table.remove(1);
        let due: Vec<u16> = table.due(at(35), 8).map(|r| r.key.local_port.0).collect();
        assert_eq!(due, [1, 3]);
        assert_eq!(table.due(at(35), 1).count(), 1);
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
            2 => (0usize..64).prop_map(Op::Restart),
            2 => (0u64..30).prop_map(Op::Advance),
        ]
    }

    proptest! {
        /// Against a model (the live records and their expiry): every record expires exactly once, at its time
        /// (records are popped as soon as due, as the engine does); removed records never do; `get`, `len` and
        /// `next_expiry` agree with the model throughout, and the queue never holds more than twice the capacity.
        #[test]
        fn table_matches_a_model(
            capacity in 1usize..12,
            ops in proptest::collection::vec(op(), 1..300),
            // Where the queue's positions start: wrapping past the largest must change nothing.
            start in prop_oneof![Just(0u32), (1u32..40).prop_map(|d| FREED - d), any::<u32>().prop_map(|p| p % FREED)],
        ) {
            const SPAN: u64 = 25;
            let mut table = TimeWaitTable::new(capacity);
            table.head_position = start;
            // (port, index, expires) of the live records.
            let mut model: Vec<(u16, u32, u64)> = Vec::new();
            let mut now = 0u64;
            let mut next_port = 1u16;
            for op in ops {
                match op {
                    Op::Insert => {
                        let got = insert(&mut table, next_port, now + SPAN);
                        match got {
                            Some(index) => {
                                prop_assert!(model.iter().all(|&(_, i, _)| i != index));
                                model.push((next_port, index, now + SPAN));
                            }
                            None => prop_assert_eq!(model.len(), capacity),
                        }
                        next_port += 1;
                    }
                    Op::Remove(k) if !model.is_empty() => {
                        let (_, index, _) = model.remove(k % model.len());
                        prop_assert!(table.remove(index));
                    }
                    Op::Restart(k) if !model.is_empty() => {
                        let k = k % model.len();
                        table.restart(model[k].1, at(now + SPAN));
                        model[k].2 = now + SPAN;
                    }
                    Op::Advance(dt) => now += dt,
                    _ => {}
                }
                let mut due: Vec<(u64, u16)> = model.iter().filter(|m| m.2 <= now).map(|m| (m.2, m.0)).collect();
                due.sort();
                // As the engine drains: while the head is due.
                let popped: Vec<(u64, u16)> = core::iter::from_fn(|| {
                    table.head_due(at(now)).then(|| table.pop_due(at(now))).flatten()
                })
                    .map(|(index, key)| {
                        let m = model.iter().find(|m| m.1 == index).expect("popped a live record");
                        (m.2, key.local_port.0)
                    })
                    .collect();
                prop_assert!(popped.windows(2).all(|w| w[0].0 <= w[1].0), "in expiry order: {:?}", popped);
                let mut popped = popped;
                popped.sort();
                prop_assert_eq!(&popped, &due, "exactly the due ones");
                model.retain(|m| m.2 > now);
                prop_assert_eq!(table.len(), model.len());
                prop_assert!(table.queue_len <= 2 * capacity.max(1));
                for &(port, index, expires) in &model {
                    let got = table.get(index).map(|r| r.key.local_port.0).zip(table.expires(index).map(|t| t.as_micros()));
                    prop_assert_eq!(got, Some((port, expires)));
                }
                // A lower bound, exact once the head was asked about a time at or past it (the drain above).
                let first = model.iter().map(|m| at(m.2)).min();
                match (table.next_expiry(), first) {
                    (Some(bound), Some(first)) => prop_assert!(bound <= first),
                    (None, first) => prop_assert_eq!(first, None),
                    (Some(bound), None) => prop_assert!(bound > at(now), "only a record that left early"),
                }
                prop_assert!(table.next_expiry().is_none_or(|t| t > at(now)), "head_due made it exact");
            }
        }
    }
}
