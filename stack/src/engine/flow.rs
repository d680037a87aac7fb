//! The flow table: 4-tuple to connection slot or TIME-WAIT record.
//!
//! The keys are chosen by whoever sends packets, so the table hashes with a secret key
//! ([`FlowHasher::hash_words`], a keyed folded-multiply hash; see there why not SipHash).
//!
//! Every connection's first segments look up and insert 4-tuples never seen before, on a random spot of a table
//! that, with a million connections held, is far larger than the caches. So the table is built for one cache
//! line per operation: buckets of one 64-byte line, each holding four 16-byte entries (the 4-tuple packed in
//! 12 bytes and the slot in 4), probed bucket by bucket (linear probing), at most half full. A lookup reads its
//! home line and, rarely (when that bucket overflowed), the next one; hashbrown, which this replaces, reads a
//! line of control bytes and then a line of entries, two cold misses instead of one. Removal shifts later
//! entries back (Knuth's algorithm R, per bucket) instead of leaving tombstones, so no rehash is ever needed.
//! [`FlowTable::prefetch`] lets a caller start the miss early, for a batch of frames or timers.
//!
//! Its capacity is fixed at start (twice the most entries it may hold, in whole buckets) and it lives in one
//! zeroed huge-page mapping ([`crate::mem`]); an insert beyond the limit is refused and counted by the caller.
//!
//! Public so that benchmarks can time lookups on their own; the engine is its only user otherwise.

use core::net::Ipv4Addr;

use allocator_api2::boxed::Box;

use crate::isn::FlowHasher;
use crate::mem::{self, HugePageAlloc, Zeroable};
use crate::wire::Port;

/// A connection's 4-tuple, from this host's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FlowKey {
    /// Our address.
    pub local_addr: Ipv4Addr,
    /// The peer's address.
    pub remote_addr: Ipv4Addr,
    /// Our port.
    pub local_port: Port,
    /// The peer's port.
    pub remote_port: Port,
}

/// What a 4-tuple maps to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowSlot {
    /// A connection control block, by slab index.
    Conn(u32),
    /// A compact TIME-WAIT record, by index.
    TimeWait(u32),
}

impl FlowSlot {
    /// The top bit tells a TIME-WAIT record from a connection: an entry is 16 bytes instead of 20, four to a
    /// cache line. Indices stay below 2^31: `EngineConfig::validate` caps connections plus records there.
    const TIME_WAIT_BIT: u32 = 1 << 31;

    #[inline]
    fn pack(self) -> u32 {
        match self {
            FlowSlot::Conn(index) => index & !Self::TIME_WAIT_BIT,
            FlowSlot::TimeWait(index) => index | Self::TIME_WAIT_BIT,
        }
    }

    #[inline]
    fn unpack(packed: u32) -> FlowSlot {
        if packed & Self::TIME_WAIT_BIT == 0 {
            FlowSlot::Conn(packed)
        } else {
            FlowSlot::TimeWait(packed & !Self::TIME_WAIT_BIT)
        }
    }
}

/// The table is full: the caller refuses the connection (or skips the TIME-WAIT record) and counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// One entry: the 4-tuple packed as the hash packs it, and the slot stored inverted so that all-zero bytes mean
/// "empty" (an inverted packed slot is never zero: indices stay below 2^31 - 1) and a fresh zero page is an
/// empty table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
struct Entry {
    /// Our address, and both ports above it.
    local: u64,
    /// The peer's address.
    remote: u32,
    slot: u32,
}

impl Entry {
    const EMPTY: Entry = Entry {
        local: 0,
        remote: 0,
        slot: 0,
    };

    #[inline(always)]
    fn is_empty(&self) -> bool {
        self.slot == 0
    }
}

/// Bytes of one entry; the table has room for twice `limit` of them (rounded up to a power of two buckets).
pub const ENTRY_BYTES: usize = core::mem::size_of::<Entry>();

/// Entries per bucket: four of 16 bytes fill a 64-byte cache line.
const BUCKET_ENTRIES: usize = 4;

/// A cache line of entries: the ones in use first, then the empty ones.
#[derive(Debug, Clone, Copy)]
#[repr(C, align(64))]
struct Bucket {
    entries: [Entry; BUCKET_ENTRIES],
}

impl Bucket {
    /// Entries in use: they are the first ones (`FlowTable::remove_at` keeps them a prefix).
    #[inline]
    fn occupied(&self) -> usize {
        self.entries.iter().position(Entry::is_empty).unwrap_or(BUCKET_ENTRIES)
    }
}

// SAFETY: plain integers throughout (`repr(C)`, no padding); all-zero is the empty bucket. The crate's only
// `unsafe` outside `mem`: the promise that lets the table come from untouched zero pages.
#[allow(unsafe_code)]
unsafe impl Zeroable for Bucket {}

/// Where a probe for a key ended.
enum Probe {
    /// The key is at this bucket and entry.
    Found(usize, usize),
    /// The key is absent; this is the empty entry an insert of it takes (the first bucket on its path with room).
    Vacant(usize, usize),
    /// The key is absent and every bucket is full (cannot happen below the limit: the table is half empty).
    Full,
}

/// The 4-tuple map with a fixed limit, allocated once in [`FlowTable::new`].
pub struct FlowTable {
    buckets: Box<[Bucket], HugePageAlloc>,
    /// `buckets.len() - 1`; the length is a power of two.
    mask: usize,
    hasher: FlowHasher,
    len: usize,
    limit: usize,
}

impl FlowTable {
    /// Faults the table's pages in now (see [`mem::populate`]).
    pub(crate) fn populate(&self) -> bool {
        mem::populate(&self.buckets)
    }

    /// A table for at most `limit` entries, hashed with `hasher` (keyed: the keys come from the network).
    pub fn new(limit: usize, hasher: FlowHasher) -> FlowTable {
        // At most half full: an overflowing bucket is rare, and a probe always meets a bucket with room.
        let buckets = limit
            .saturating_mul(2)
            .div_ceil(BUCKET_ENTRIES)
            .checked_next_power_of_two()
            .unwrap_or(usize::MAX / 2 + 1)
            .max(2);
        Self::with_buckets(buckets, limit, hasher)
    }

    /// A table of `buckets` (a power of two) buckets; tests use it to fill tables up to and past half full.
    fn with_buckets(buckets: usize, limit: usize, hasher: FlowHasher) -> FlowTable {
        debug_assert!(buckets.is_power_of_two());
        FlowTable {
            buckets: mem::zeroed_table(buckets),
            mask: buckets - 1,
            hasher,
            len: 0,
            limit,
        }
    }

    /// The 4-tuple as the table stores it: our address and both ports in one word, the peer's address in
    /// another. Not the two addresses together: they sit side by side in `FlowKey`, and the compiler read them
    /// with one 8-byte load just after the key was written with two 4-byte stores, a store-forwarding stall that
    /// perf showed as 15% of `handle_frame`'s samples.
    #[inline(always)]
    fn pack(key: &FlowKey) -> (u64, u32) {
        let ports = (u64::from(key.local_port.0) << 16) | u64::from(key.remote_port.0);
        let local = (ports << 32) | u64::from(key.local_addr.to_bits());
        (local, key.remote_addr.to_bits())
    }

    /// The bucket a packed key hashes to.
    #[inline(always)]
    fn home(&self, local: u64, remote: u32) -> usize {
        (self.hasher.hash_words(local, u64::from(remote)) as usize) & self.mask
    }

    /// Walks the key's probe path: its home bucket, then the next ones while they are full. By the invariant
    /// that removal keeps (every entry's buckets from its home up to its own are full), the key can only be in a
    /// bucket of that path, and the first bucket with room ends it.
    #[inline(always)]
    fn probe(&self, local: u64, remote: u32) -> Probe {
        let home = self.home(local, remote);
        for b in home..home + self.buckets.len() {
            let bucket = &self.buckets[b & self.mask];
            // A bucket's entries are a prefix (see `remove_at`): the first empty one ends the search.
            for (i, e) in bucket.entries.iter().enumerate() {
                if e.is_empty() {
                    return Probe::Vacant(b & self.mask, i);
                }
                if e.local == local && e.remote == remote {
                    return Probe::Found(b & self.mask, i);
                }
            }
        }
        Probe::Full
    }

    /// Starts bringing `key`'s home bucket into cache, for a lookup or insert that follows soon (a batch of
    /// received frames, or of expiring TIME-WAIT records, prefetched before it is processed).
    #[inline]
    pub fn prefetch(&self, key: &FlowKey) {
        let (local, remote) = Self::pack(key);
        mem::prefetch(&self.buckets[self.home(local, remote)]);
    }

    /// What `key` maps to, if anything: the lookup every received segment makes.
    #[inline(always)]
    pub fn get(&self, key: &FlowKey) -> Option<FlowSlot> {
        let (local, remote) = Self::pack(key);
        match self.probe(local, remote) {
            Probe::Found(b, i) => Some(FlowSlot::unpack(!self.buckets[b].entries[i].slot)),
            Probe::Vacant(..) | Probe::Full => None,
        }
    }

    /// Inserts or replaces; refuses a new key when the table holds `limit` entries.
    #[inline]
    pub fn insert(&mut self, key: FlowKey, slot: FlowSlot) -> Result<(), TableFull> {
        let (local, remote) = Self::pack(&key);
        let slot = !slot.pack();
        match self.probe(local, remote) {
            Probe::Found(b, i) => {
                self.buckets[b].entries[i].slot = slot;
                Ok(())
            }
            Probe::Vacant(b, i) if self.len < self.limit => {
                self.buckets[b].entries[i] = Entry { local, remote, slot };
                self.len += 1;
                Ok(())
            }
            Probe::Vacant(..) | Probe::Full => Err(TableFull),
        }
    }

    /// Removes `key` only if it maps to `slot` (a newer connection or record may own the 4-tuple by now); one
    /// probe instead of a `get` and a `remove`. Returns whether it removed.
    #[inline]
    pub fn remove_if(&mut self, key: &FlowKey, slot: FlowSlot) -> bool {
        let (local, remote) = Self::pack(key);
        match self.probe(local, remote) {
            Probe::Found(b, i) if self.buckets[b].entries[i].slot == !slot.pack() => {
                self.remove_at(b, i);
                true
            }
            _ => false,
        }
    }

    /// Makes `key` map to `to` if it maps to `from` (a connection handing its 4-tuple to its TIME-WAIT record);
    /// one probe. Returns whether it did.
    #[inline]
    pub fn replace(&mut self, key: &FlowKey, from: FlowSlot, to: FlowSlot) -> bool {
        let (local, remote) = Self::pack(key);
        match self.probe(local, remote) {
            Probe::Found(b, i) if self.buckets[b].entries[i].slot == !from.pack() => {
                self.buckets[b].entries[i].slot = !to.pack();
                true
            }
            _ => false,
        }
    }

    /// Removes `key`, returning what it mapped to.
    #[inline]
    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowSlot> {
        let (local, remote) = Self::pack(key);
        match self.probe(local, remote) {
            Probe::Found(b, i) => {
                let slot = FlowSlot::unpack(!self.buckets[b].entries[i].slot);
                self.remove_at(b, i);
                Some(slot)
            }
            Probe::Vacant(..) | Probe::Full => None,
        }
    }

    /// Empties entry `i` of bucket `b` and restores both invariants. Within a bucket the entries stay a prefix:
    /// the bucket's last entry moves into the hole, so a probe stops at the first empty entry. Across buckets,
    /// if the bucket was full, later entries whose probe path runs through it may sit beyond it, so the nearest
    /// one that may move back fills the (now last) place, and so on from where it left (Knuth's algorithm R, per
    /// bucket). A bucket that was not full ends it: no path runs past a bucket with room.
    fn remove_at(&mut self, b: usize, i: usize) {
        let last = self.buckets[b].occupied() - 1;
        let bucket = &mut self.buckets[b];
        bucket.entries[i] = bucket.entries[last];
        bucket.entries[last] = Entry::EMPTY;
        self.len -= 1;
        if last + 1 < BUCKET_ENTRIES {
            return; // the common case: nothing was placed past this bucket on its account
        }
        // The hole is the last place of `hole_b`, which was full.
        let mut hole_b = b;
        let mut cur = (b + 1) & self.mask;
        // Back at the hole's bucket (a table full but for the hole): nothing further can move.
        while cur != hole_b {
            let occupied = self.buckets[cur].occupied();
            // Distance back from `cur`: an entry may fill the hole if its home is no nearer to `cur` than the hole.
            let hole_dist = cur.wrapping_sub(hole_b) & self.mask;
            let mover = self.buckets[cur].entries[..occupied]
                .iter()
                .position(|e| (cur.wrapping_sub(self.home(e.local, e.remote)) & self.mask) >= hole_dist);
            if let Some(j) = mover {
                let moved = self.buckets[cur].entries[j];
                self.buckets[hole_b].entries[BUCKET_ENTRIES - 1] = moved;
                let bucket = &mut self.buckets[cur];
                bucket.entries[j] = bucket.entries[occupied - 1];
                bucket.entries[occupied - 1] = Entry::EMPTY;
                hole_b = cur;
            }
            if occupied < BUCKET_ENTRIES {
                return;
            }
            cur = (cur + 1) & self.mask;
        }
    }

    /// Entries held (connections and TIME-WAIT records).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::isn::Secret;
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn key(n: u32) -> FlowKey {
        FlowKey {
            local_addr: Ipv4Addr::new(198, 18, 0, 1),
            remote_addr: Ipv4Addr::from_bits(0xC612_0000 | (n >> 16)),
            local_port: Port(80),
            remote_port: Port(n as u16),
        }
    }

    /// Checks the invariants and the length: each bucket's entries are a prefix, every entry is reachable from its
    /// home through full buckets, and no key is stored twice.
    fn check_invariant(table: &FlowTable) {
        let mut seen = std::collections::HashSet::new();
        let mut count = 0;
        for (c, bucket) in table.buckets.iter().enumerate() {
            let occupied = bucket.occupied();
            assert!(
                bucket.entries[occupied..].iter().all(Entry::is_empty),
                "bucket {c}: entries not a prefix"
            );
            for e in bucket.entries.iter().filter(|e| !e.is_empty()) {
                count += 1;
                assert!(seen.insert((e.local, e.remote)), "key stored twice");
                let mut b = table.home(e.local, e.remote);
                while b != c {
                    let full = table.buckets[b].occupied() == BUCKET_ENTRIES;
                    assert!(full, "entry in bucket {c} unreachable: bucket {b} has room");
                    b = (b + 1) & table.mask;
                }
            }
        }
        assert_eq!(count, table.len());
    }

    #[test]
    fn table_insert_get_remove_round_trip() {
        let mut table = FlowTable::new(1000, FlowHasher::new(Secret::from_seed(3)));
        for n in 0..1000 {
            table.insert(key(n), FlowSlot::Conn(n)).unwrap();
        }
        assert_eq!(table.insert(key(5000), FlowSlot::Conn(0)), Err(TableFull));
        // Replacing an existing key is allowed at the limit.
        table.insert(key(7), FlowSlot::TimeWait(7)).unwrap();
        check_invariant(&table);
        assert_eq!(table.get(&key(7)), Some(FlowSlot::TimeWait(7)));
        assert_eq!(table.get(&key(999)), Some(FlowSlot::Conn(999)));
        assert_eq!(table.get(&key(1000)), None);
        assert!(!table.remove_if(&key(8), FlowSlot::TimeWait(8)));
        assert!(table.remove_if(&key(8), FlowSlot::Conn(8)));
        assert!(table.replace(&key(9), FlowSlot::Conn(9), FlowSlot::TimeWait(1)));
        assert!(!table.replace(&key(9), FlowSlot::Conn(9), FlowSlot::TimeWait(2)));
        assert_eq!(table.remove(&key(9)), Some(FlowSlot::TimeWait(1)));
        assert_eq!(table.remove(&key(9)), None);
        assert_eq!(table.len(), 998);
        check_invariant(&table);
    }

    #[test]
    fn table_largest_indices_round_trip() {
        // The largest index a valid configuration gives (connections + records < 2^31).
        let mut table = FlowTable::new(4, FlowHasher::new(Secret::from_seed(4)));
        let top = (1 << 31) - 2;
        table.insert(key(1), FlowSlot::TimeWait(top)).unwrap();
        table.insert(key(2), FlowSlot::Conn(top)).unwrap();
        table.insert(key(3), FlowSlot::Conn(0)).unwrap();
        assert_eq!(table.get(&key(1)), Some(FlowSlot::TimeWait(top)));
        assert_eq!(table.get(&key(2)), Some(FlowSlot::Conn(top)));
        assert_eq!(table.get(&key(3)), Some(FlowSlot::Conn(0)));
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u32, u32),
        Remove(u32),
        RemoveIf(u32, u32),
        Replace(u32, u32, u32),
    }

    fn op(keys: u32) -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..keys, 0..8u32).prop_map(|(k, s)| Op::Insert(k, s)),
            (0..keys).prop_map(Op::Remove),
            (0..keys, 0..8u32).prop_map(|(k, s)| Op::RemoveIf(k, s)),
            (0..keys, 0..8u32, 0..8u32).prop_map(|(k, f, t)| Op::Replace(k, f, t)),
        ]
    }

    fn slot(s: u32) -> FlowSlot {
        if s % 2 == 0 {
            FlowSlot::Conn(s)
        } else {
            FlowSlot::TimeWait(s)
        }
    }

    proptest! {
        /// Small tables (2 to 16 buckets) filled to their limit overflow buckets and wrap around, so removals
        /// shift entries back across bucket and table ends; a HashMap is the model.
        #[test]
        fn table_matches_a_map_model(
            limit in 1usize..32,
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(48), 1..400),
        ) {
            let table = FlowTable::new(limit, FlowHasher::new(Secret::from_seed(seed)));
            run_model(table, limit, ops)?;
        }

        /// Tables of 2 to 8 buckets allowed to fill completely: most buckets overflow, so nearly every removal
        /// shifts entries back, and a probe can walk the whole table.
        #[test]
        fn overfull_table_matches_a_map_model(
            buckets_log in 1u32..4,
            seed in any::<u64>(),
            ops in proptest::collection::vec(op(48), 1..400),
        ) {
            let buckets = 1usize << buckets_log;
            let limit = buckets * BUCKET_ENTRIES;
            let table = FlowTable::with_buckets(buckets, limit, FlowHasher::new(Secret::from_seed(seed)));
            run_model(table, limit, ops)?;
        }
    }

    fn run_model(mut table: FlowTable, limit: usize, ops: Vec<Op>) -> Result<(), TestCaseError> {
        {
            let mut model: HashMap<u32, FlowSlot> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, s) => {
                        let expect_ok = model.contains_key(&k) || model.len() < limit;
                        let got = table.insert(key(k), slot(s));
                        prop_assert_eq!(got.is_ok(), expect_ok);
                        if expect_ok {
                            model.insert(k, slot(s));
                        }
                    }
                    Op::Remove(k) => prop_assert_eq!(table.remove(&key(k)), model.remove(&k)),
                    Op::RemoveIf(k, s) => {
                        let expect = model.get(&k) == Some(&slot(s));
                        prop_assert_eq!(table.remove_if(&key(k), slot(s)), expect);
                        if expect {
                            model.remove(&k);
                        }
                    }
                    Op::Replace(k, f, t) => {
                        let expect = model.get(&k) == Some(&slot(f));
                        prop_assert_eq!(table.replace(&key(k), slot(f), slot(t)), expect);
                        if expect {
                            model.insert(k, slot(t));
                        }
                    }
                }
                check_invariant(&table);
                for k in 0..48 {
                    prop_assert_eq!(table.get(&key(k)), model.get(&k).copied());
                }
            }
        }
        Ok(())
    }
}
