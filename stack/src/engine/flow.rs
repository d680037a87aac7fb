//! The flow table: 4-tuple to connection slot or TIME-WAIT record.
//!
//! The keys are chosen by whoever sends packets, so the table hashes with a secret key
//! ([`FlowHasher::hash_words`], a keyed folded-multiply hash; see there why not SipHash). Its capacity is fixed
//! at start: hashbrown is built for twice the most entries it may hold, so the in-place rehash that clears
//! tombstones always suffices and no insert ever reallocates; an insert beyond the limit is refused and counted
//! by the caller.
//!
//! Public so that benchmarks can time lookups on their own; the engine is its only user otherwise.

use core::net::Ipv4Addr;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::huge_page::HugePageAlloc;
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

/// The 4-tuple map with a fixed limit, allocated once in [`FlowTable::new`].
pub struct FlowTable {
    map: HashTable<(FlowKey, u32), HugePageAlloc>,
    hasher: FlowHasher,
    limit: usize,
}

impl FlowTable {
    /// A table for at most `limit` entries, hashed with `hasher` (keyed: the keys come from the network).
    pub fn new(limit: usize, hasher: FlowHasher) -> FlowTable {
        FlowTable {
            map: HashTable::with_capacity_in(limit.saturating_mul(2).max(4), HugePageAlloc),
            hasher,
            limit,
        }
    }

    #[inline]
    fn hash(&self, key: &FlowKey) -> u64 {
        hash_key(&self.hasher, key)
    }

    /// What `key` maps to, if anything: the lookup every received segment makes.
    #[inline]
    pub fn get(&self, key: &FlowKey) -> Option<FlowSlot> {
        let hash = self.hash(key);
        self.map
            .find(hash, |(k, _)| k == key)
            .map(|&(_, slot)| FlowSlot::unpack(slot))
    }

    /// Inserts or replaces; refuses a new key when the table holds `limit` entries.
    #[inline]
    pub fn insert(&mut self, key: FlowKey, slot: FlowSlot) -> Result<(), TableFull> {
        // One hash and one probe for both cases.
        let full = self.map.len() >= self.limit;
        let hash = self.hash(&key);
        let hasher = &self.hasher;
        match self.map.entry(hash, |(k, _)| *k == key, |(k, _)| hash_key(hasher, k)) {
            Entry::Occupied(mut existing) => {
                existing.get_mut().1 = slot.pack();
                Ok(())
            }
            Entry::Vacant(_) if full => Err(TableFull),
            Entry::Vacant(vacant) => {
                vacant.insert((key, slot.pack()));
                Ok(())
            }
        }
    }

    /// Removes `key` only if it maps to `slot` (a newer connection or record may own the 4-tuple by now); one
    /// hash instead of a `get` and a `remove`. Returns whether it removed.
    #[inline]
    pub fn remove_if(&mut self, key: &FlowKey, slot: FlowSlot) -> bool {
        let hash = self.hash(key);
        let slot = slot.pack();
        match self.map.find_entry(hash, |(k, s)| k == key && *s == slot) {
            Ok(entry) => {
                entry.remove();
                true
            }
            Err(_) => false,
        }
    }

    /// Makes `key` map to `to` if it maps to `from` (a connection handing its 4-tuple to its TIME-WAIT record);
    /// one probe. Returns whether it did.
    #[inline]
    pub fn replace(&mut self, key: &FlowKey, from: FlowSlot, to: FlowSlot) -> bool {
        let hash = self.hash(key);
        let from = from.pack();
        match self.map.find_mut(hash, |(k, s)| k == key && *s == from) {
            Some(entry) => {
                entry.1 = to.pack();
                true
            }
            None => false,
        }
    }

    /// Removes `key`, returning what it mapped to.
    #[inline]
    pub fn remove(&mut self, key: &FlowKey) -> Option<FlowSlot> {
        let hash = self.hash(key);
        match self.map.find_entry(hash, |(k, _)| k == key) {
            Ok(entry) => Some(FlowSlot::unpack(entry.remove().0.1)),
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

/// The 4-tuple packed into two words (addresses in one, ports in the other) and hashed with the table's key.
#[inline]
fn hash_key(hasher: &FlowHasher, key: &FlowKey) -> u64 {
    let addrs = (u64::from(key.local_addr.to_bits()) << 32) | u64::from(key.remote_addr.to_bits());
    let ports = (u64::from(key.local_port.0) << 16) | u64::from(key.remote_port.0);
    hasher.hash_words(addrs, ports)
}
