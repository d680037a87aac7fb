//! An in-memory link: two [`MemoryPort`]s joined by bounded queues of preallocated frame buffers.
//!
//! It is the wire for in-process benchmarks and tests: two engines, each on its own thread (or both on one),
//! exchange frames with no syscalls and no allocation per frame. Every buffer is allocated once, in
//! [`MemoryLink::pair`]; a frame travels as an owned buffer through a lock-free queue and comes back through
//! a free queue once the receiver is done with it. When the receiver falls behind, the sender finds no free
//! buffer and the frame is dropped and counted, as a full NIC ring would.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;
use synack::io::{TxRefused, TxSink};

use crate::device::{Device, DeviceError, DeviceStats};

/// Sizes of an in-memory link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryLinkConfig {
    /// Frames that can be in flight in each direction before the sender drops (the queue depth).
    pub frames_per_direction: usize,
    /// Size of each frame buffer in bytes: the largest frame the link carries.
    pub frame_size: usize,
}

impl Default for MemoryLinkConfig {
    fn default() -> Self {
        MemoryLinkConfig {
            frames_per_direction: 1024,
            frame_size: 2048,
        }
    }
}

/// A frame buffer with the length of the frame it holds.
struct Buf {
    data: Box<[u8]>,
    len: usize,
}

/// One direction of the link: frames waiting for the receiver, and buffers free for the sender.
struct Direction {
    ready: ArrayQueue<Buf>,
    free: ArrayQueue<Buf>,
}

impl Direction {
    fn new(config: &MemoryLinkConfig) -> Direction {
        let n = config.frames_per_direction.max(1);
        let free = ArrayQueue::new(n);
        for _ in 0..n {
            // Cannot fail: the queue was made for exactly `n` buffers.
            let _ = free.push(Buf {
                data: vec![0u8; config.frame_size].into_boxed_slice(),
                len: 0,
            });
        }
        Direction {
            ready: ArrayQueue::new(n),
            free,
        }
    }
}

/// Constructor of in-memory links.
pub struct MemoryLink;

impl MemoryLink {
    /// Creates a link and returns its two ends; what one end transmits, the other receives, in order.
    pub fn pair(config: MemoryLinkConfig) -> (MemoryPort, MemoryPort) {
        let a_to_b = Arc::new(Direction::new(&config));
        let b_to_a = Arc::new(Direction::new(&config));
        let a = MemoryPort::new(Arc::clone(&b_to_a), Arc::clone(&a_to_b), config.frame_size);
        let b = MemoryPort::new(a_to_b, b_to_a, config.frame_size);
        (a, b)
    }
}

/// One end of an in-memory link. `Send`, so each end can live on its own thread.
pub struct MemoryPort {
    incoming: Arc<Direction>,
    tx: TxHalf,
}

/// The transmit half of a port, split off so a received buffer and a reply sink can be used together.
struct TxHalf {
    outgoing: Arc<Direction>,
    frame_size: usize,
    stats: DeviceStats,
}

impl MemoryPort {
    fn new(incoming: Arc<Direction>, outgoing: Arc<Direction>, frame_size: usize) -> MemoryPort {
        MemoryPort {
            incoming,
            tx: TxHalf {
                outgoing,
                frame_size,
                stats: DeviceStats::default(),
            },
        }
    }

    /// Frames waiting to be received on this end.
    pub fn pending_rx(&self) -> usize {
        self.incoming.ready.len()
    }
}

/// The transmit sink of a [`MemoryPort`]: writes the frame into a free buffer of the outgoing direction.
pub struct MemoryTx<'a> {
    half: &'a mut TxHalf,
}

impl TxSink for MemoryTx<'_> {
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused> {
        let half = &mut *self.half;
        if len > half.frame_size {
            half.stats.tx_oversize += 1;
            half.stats.tx_dropped += 1;
            return Err(TxRefused::TooLong);
        }
        let Some(mut buf) = half.outgoing.free.pop() else {
            half.stats.tx_ring_full += 1;
            half.stats.tx_dropped += 1;
            return Err(TxRefused::Full);
        };
        let Some(frame) = buf.data.get_mut(..len) else {
            // Unreachable: every buffer is `frame_size` long. Put it back rather than lose it.
            let _ = half.outgoing.free.push(buf);
            half.stats.tx_dropped += 1;
            return Err(TxRefused::Full);
        };
        fill(frame);
        buf.len = len;
        match half.outgoing.ready.push(buf) {
            Ok(()) => {
                half.stats.tx_frames += 1;
                Ok(())
            }
            Err(buf) => {
                // Cannot happen (as many ready slots as buffers); recycle and count it as a drop.
                let _ = half.outgoing.free.push(buf);
                half.stats.tx_ring_full += 1;
                half.stats.tx_dropped += 1;
                Err(TxRefused::Full)
            }
        }
    }
}

impl Device for MemoryPort {
    type Tx<'a> = MemoryTx<'a>;

    fn receive<'a, F>(&'a mut self, max: usize, mut f: F) -> Result<usize, DeviceError>
    where
        F: FnMut(&[u8], &mut MemoryTx<'a>),
    {
        let incoming = &self.incoming;
        let mut tx = MemoryTx { half: &mut self.tx };
        let mut n = 0;
        while n < max {
            let Some(buf) = incoming.ready.pop() else { break };
            n += 1;
            f(buf.data.get(..buf.len).unwrap_or(&[]), &mut tx);
            // Cannot fail: a direction holds exactly as many buffers as its free queue has slots.
            let _ = incoming.free.push(buf);
        }
        tx.half.stats.rx_frames += n as u64;
        Ok(n)
    }

    fn transmitter(&mut self) -> MemoryTx<'_> {
        MemoryTx { half: &mut self.tx }
    }

    /// Frames are visible to the peer as soon as they are transmitted, so there is nothing to submit.
    fn flush(&mut self) -> Result<(), DeviceError> {
        Ok(())
    }

    fn stats(&self) -> DeviceStats {
        self.tx.stats
    }

    fn frame_capacity(&self) -> usize {
        self.tx.frame_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small() -> MemoryLinkConfig {
        MemoryLinkConfig {
            frames_per_direction: 4,
            frame_size: 64,
        }
    }

    fn drain(port: &mut MemoryPort) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        port.receive(usize::MAX, |f, _| got.push(f.to_vec())).unwrap();
        got
    }

    #[test]
    fn memory_link_frames_cross_both_ways_in_order() {
        let (mut a, mut b) = MemoryLink::pair(small());
        for i in 0..3u8 {
            assert!(a.transmitter().transmit(3, |f| f.copy_from_slice(&[i, i, i])).is_ok());
        }
        assert!(b.transmitter().transmit(2, |f| f.copy_from_slice(&[9, 8])).is_ok());
        assert_eq!(drain(&mut b), vec![vec![0, 0, 0], vec![1, 1, 1], vec![2, 2, 2]]);
        assert_eq!(drain(&mut a), vec![vec![9, 8]]);
        assert_eq!(a.stats().tx_frames, 3);
        assert_eq!(b.stats().rx_frames, 3);
        assert_eq!(a.stats().rx_frames, 1);
    }

    #[test]
    fn memory_link_full_queue_drops_and_counts() {
        let (mut a, mut b) = MemoryLink::pair(small());
        let sent = (0..6)
            .filter(|_| a.transmitter().transmit(1, |f| f[0] = 1).is_ok())
            .count();
        assert_eq!(sent, 4);
        assert_eq!(a.stats().tx_dropped, 2);
        assert_eq!(a.stats().tx_ring_full, 2);
        assert_eq!(drain(&mut b).len(), 4);
        // Buffers came back: the sender can send again.
        assert!(a.transmitter().transmit(1, |f| f[0] = 1).is_ok());
    }

    #[test]
    fn memory_link_oversize_frame_is_refused() {
        let (mut a, _b) = MemoryLink::pair(small());
        let mut called = false;
        assert_eq!(a.transmitter().transmit(65, |_| called = true), Err(TxRefused::TooLong));
        assert!(!called);
        assert_eq!(a.stats().tx_oversize, 1);
        assert_eq!(a.frame_capacity(), 64);
    }

    #[test]
    fn memory_link_reply_from_receive_reaches_sender() {
        let (mut a, mut b) = MemoryLink::pair(small());
        assert!(a.transmitter().transmit(2, |f| f.copy_from_slice(&[1, 2])).is_ok());
        let n = b
            .receive(8, |frame, tx| {
                let reply: Vec<u8> = frame.iter().rev().copied().collect();
                assert!(tx.transmit(reply.len(), |f| f.copy_from_slice(&reply)).is_ok());
            })
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(drain(&mut a), vec![vec![2, 1]]);
    }

    #[test]
    fn memory_link_receive_respects_max() {
        let (mut a, mut b) = MemoryLink::pair(small());
        for _ in 0..3 {
            assert!(a.transmitter().transmit(1, |f| f[0] = 0).is_ok());
        }
        assert_eq!(b.receive(2, |_, _| {}).unwrap(), 2);
        assert_eq!(b.pending_rx(), 1);
    }

    #[test]
    fn memory_port_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<MemoryPort>();
    }
}
