//! The flow table: 4-tuple to connection slot or TIME-WAIT record.
//!
//! The keys are chosen by whoever sends packets, so the table hashes with a secret key (SipHash-1-3 via
//! [`FlowHasher`]). Its capacity is fixed at start: hashbrown is built for twice the most entries it may hold,
//! so the in-place rehash that clears tombstones always suffices and no insert ever reallocates; an insert
//! beyond the limit is refused and counted by the caller.
//!
//! Public so that benchmarks can time lookups on their own; the engine is its only user otherwise.

use core::net::Ipv4Addr;

use core::cell::Cell;
use core::hash::BuildHasher;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::isn::FlowHasher;
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

/// The table is full: the caller refuses the connection (or skips the TIME-WAIT record) and counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableFull;

/// The 4-tuple map with a fixed limit, allocated once in [`FlowTable::new`].
pub struct FlowTable {
    map: HashTable<(FlowKey, FlowSlot)>,
    hasher: FlowHasher,
    limit: usize,
    /// The last key hashed and its hash. The engine looks a key up and then inserts or removes that same key
    /// (a SYN to a listener, an active open after picking its port, a connection moving to TIME-WAIT): the
    /// second SipHash is the cost of a 12-byte compare instead.
    last: Cell<Option<(FlowKey, u64)>>,
}

impl FlowTable {
    /// A table for at most `limit` entries, hashed with `hasher` (keyed: the keys come from the network).
    pub fn new(limit: usize, hasher: FlowHasher) -> FlowTable {
        FlowTable {
            map: HashTable::with_capacity(limit.saturating_mul(2).max(4)),
            hasher,
            limit,
            last: Cell::new(None),
        }
    }

    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        if let Some((last, hash)) = self.last.get() {
            if last == *key {
                return hash;
            }
        }
        let hash = self.hasher.hash_one(key);
        self.last.set(Some((*key, hash)));
        hash
    }

    /// What `key` maps to, if anything: the lookup every received segment makes.
    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<FlowSlot> {
        let hash = self.hash(key);
        self.map.find(hash, |(k, _)| k == key).map(|&(_, slot)| slot)
    }

    /// Inserts or replaces; refuses a new key when the table holds `limit` entries.
    #[inline]
    pub fn insert(&mut self, key: FlowKey, slot: FlowSlot) -> Result<(), TableFull> {
        // One hash and one probe for both cases (the key is hashed with SipHash, which dominates).
        let full = self.map.len() >= self.limit;
        let hash = self.hash(&key);
        let hasher = &self.hasher;
        match self.map.entry(hash, |(k, _)| *k == key, |(k, _)| hasher.hash_one(k)) {
            Entry::Occupied(mut existing) => {
                existing.get_mut().1 = slot;
                Ok(())
            }
            Entry::Vacant(_) if full => Err(TableFull),
            Entry::Vacant(vacant) => {
                vacant.insert((key, slot));
                Ok(())
            }
        }
    }

    /// Removes `key` only if it maps to `slot` (a newer connection or record may own the 4-tuple by now); one
    /// hash instead of a `get` and a `remove`. Returns whether it removed.
    #[inline]
    pub fn remove_if(&mut self, key: &FlowKey, slot: FlowSlot) -> bool {
        let hash = self.hash(key);
        match self.map.find_entry(hash, |(k, s)| k == key && *s == slot) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Removes `key`, returning what it mapped to.
    #[inline]
    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowSlot> {
        let hash = self.hash(key);
        match self.map.find_entry(hash, |(k, _)| k == key) {
            Ok(entry) => Some(entry.remove().0.1),
            Err(_) => None,
        }
    }

    /// Entries held (connections and TIME-WAIT records).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the table holds no entry.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}
