//! TIME-WAIT as compact records, apart from full control blocks, so that millions fit (RFC 9293 §3.6: the
//! 2*MSL wait, MUST-13). A record keeps only what TIME-WAIT needs: the 4-tuple, the sequence numbers to re-send
//! the final ACK, the peer's last timestamp for PAWS and RFC 6191, and the peer's MAC.

use crate::engine::flow::FlowKey;
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

/// A fixed-capacity slab of [`TimeWait`] records.
pub(crate) struct TimeWaitTable {
    records: Vec<TimeWait>,
    free: Vec<u32>,
    capacity: usize,
}

impl TimeWaitTable {
    pub(crate) fn new(capacity: usize) -> TimeWaitTable {
        TimeWaitTable {
            records: Vec::with_capacity(capacity),
            free: Vec::with_capacity(capacity),
            capacity,
        }
    }

    /// Stores a record; `None` when full.
    pub(crate) fn insert(&mut self, record: TimeWait) -> Option<u32> {
        if let Some(index) = self.free.pop() {
            self.records[index as usize] = record;
            return Some(index);
        }
        if self.records.len() >= self.capacity {
            return None;
        }
        self.records.push(record);
        Some((self.records.len() - 1) as u32)
    }

    pub(crate) fn get(&self, index: u32) -> Option<&TimeWait> {
        self.records.get(index as usize)
    }

    /// Starts bringing a record into cache (see `Engine::handle_timeouts`).
    #[inline]
    pub(crate) fn prefetch(&self, index: u32) {
        if let Some(record) = self.records.get(index as usize) {
            crate::mem::prefetch(record);
        }
    }

    /// Frees a record's slot (the caller removes its flow-table entry and timer).
    pub(crate) fn remove(&mut self, index: u32) {
        debug_assert!((index as usize) < self.records.len());
        self.free.push(index);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len() - self.free.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_wait_record_is_at_most_64_bytes() {
        assert!(
            core::mem::size_of::<TimeWait>() <= 64,
            "{}",
            core::mem::size_of::<TimeWait>()
        );
    }
}
