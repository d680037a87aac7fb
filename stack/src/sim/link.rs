//! The simulated wire between the two engines, and the simulator's event queue.
//!
//! Every frame an engine writes goes through [`Link::send`], which decides from the link's own generator what
//! the wire does to it: drop it (loss, or a partition in progress), duplicate it, delay it (delay + jitter, plus
//! an extra delay for explicit reordering), or flip bits in it. Surviving copies wait in a priority queue keyed
//! by (delivery time, sequence number), which the simulator drains in time order; application wake-ups share
//! the same queue so everything happens in one total, replayable order.

use core::cmp::Ordering;
use core::time::Duration;
use std::collections::BinaryHeap;

use super::rng::Rng;
use super::{LinkStats, Side, SimConfig};
use crate::time::Instant;

/// Ethernet header length: corruption starts after it (see [`Link::corrupt`]).
const ETH_HEADER: usize = 14;
/// EtherType of IPv4, big-endian.
const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];

/// What an application asked to be woken for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wake {
    /// The client may open its next connection.
    OpenNext,
    /// The server shuts down the write side of its connection number `.0` (simultaneous close).
    Shutdown(usize),
    /// A slow reader reads connection number `.0` (the client's number on the client, the accept order on the
    /// server).
    Read(usize),
}

/// Something due at a point in virtual time.
#[derive(Debug)]
pub(crate) enum Item {
    /// A frame arriving at `to`; `corrupted` when the link flipped bits in it.
    Frame { to: Side, data: Vec<u8>, corrupted: bool },
    /// An application timer.
    Wake { side: Side, wake: Wake },
}

#[derive(Debug)]
struct Scheduled {
    at: Instant,
    seq: u64,
    item: Item,
}

impl PartialEq for Scheduled {
    fn eq(&self, other: &Self) -> bool {
        (self.at, self.seq) == (other.at, other.seq)
    }
}
impl Eq for Scheduled {}
impl PartialOrd for Scheduled {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Scheduled {
    /// Reversed, so that `BinaryHeap` (a max-heap) pops the earliest (time, sequence) first.
    fn cmp(&self, other: &Self) -> Ordering {
        (other.at, other.seq).cmp(&(self.at, self.seq))
    }
}

/// The wire and the event queue.
pub(crate) struct Link {
    rng: Rng,
    queue: BinaryHeap<Scheduled>,
    seq: u64,
    loss: f64,
    duplicate: f64,
    reorder: f64,
    reorder_delay: Duration,
    corrupt: f64,
    delay: Duration,
    jitter: Duration,
    partition: f64,
    partition_duration: Duration,
    /// A full partition is in progress until then: every frame sent before it is dropped.
    partitioned_until: Option<Instant>,
    pub(crate) stats: LinkStats,
    trace: bool,
    /// IPv4 packets longer than this are dropped, as on a real link.
    mtu: usize,
}

impl Link {
    pub(crate) fn new(config: &SimConfig, rng: Rng) -> Link {
        Link {
            rng,
            queue: BinaryHeap::new(),
            seq: 0,
            loss: config.loss,
            duplicate: config.duplicate,
            reorder: config.reorder,
            reorder_delay: config.reorder_delay,
            corrupt: config.corrupt,
            delay: config.delay,
            jitter: config.jitter,
            partition: config.partition,
            partition_duration: config.partition_duration,
            partitioned_until: None,
            stats: LinkStats::default(),
            trace: config.trace,
            mtu: config.mtu,
        }
    }

    /// The longest a frame can spend on the wire.
    pub(crate) fn max_latency(&self) -> Duration {
        self.delay + self.jitter + self.reorder_delay
    }

    /// The earliest time something is due.
    pub(crate) fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|s| s.at)
    }

    /// Whether nothing is in flight or scheduled.
    #[cfg(test)]
    pub(crate) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Takes the earliest item due at or before `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Item> {
        if self.queue.peek().is_some_and(|s| s.at <= now) {
            self.queue.pop().map(|s| s.item)
        } else {
            None
        }
    }

    /// Schedules an application wake-up.
    pub(crate) fn wake(&mut self, at: Instant, side: Side, wake: Wake) {
        self.push(at, Item::Wake { side, wake });
    }

    fn push(&mut self, at: Instant, item: Item) {
        self.seq += 1;
        self.queue.push(Scheduled {
            at,
            seq: self.seq,
            item,
        });
    }

    /// Puts a frame written by `from` on the wire at `now`.
    pub(crate) fn send(&mut self, now: Instant, from: Side, frame: Vec<u8>) {
        self.stats.sent += 1;
        if self.trace {
            eprintln!("{now:?} {from:?} -> {}", super::FrameSummary(&frame));
        }
        // The Ethernet header is not part of the MTU.
        if frame.len().saturating_sub(14) > self.mtu {
            self.stats.oversized += 1;
            if self.trace {
                eprintln!(
                    "    dropped: {} bytes of IPv4 beyond the MTU of {}",
                    frame.len() - 14,
                    self.mtu
                );
            }
            return;
        }
        if self.partitioned_until.is_some_and(|until| now < until) {
            self.stats.partitioned += 1;
            if self.trace {
                eprintln!("    partitioned");
            }
            return;
        }
        let healed = self
            .partitioned_until
            .is_none_or(|until| now >= until + self.partition_duration);
        if healed && self.rng.chance(self.partition) {
            let half = self.partition_duration / 2;
            let length = half + self.rng.duration(self.partition_duration - half);
            self.partitioned_until = Some(now + length);
            self.stats.partitions += 1;
            self.stats.partitioned += 1;
            return;
        }
        if self.rng.chance(self.loss) {
            self.stats.lost += 1;
            if self.trace {
                eprintln!("    lost");
            }
            return;
        }
        let copies = if self.rng.chance(self.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        let to = from.peer();
        let mut frame = Some(frame);
        for copy in 0..copies {
            let Some(mut data) = (if copy + 1 == copies {
                frame.take()
            } else {
                frame.clone()
            }) else {
                break;
            };
            let mut latency = self.delay + self.rng.duration(self.jitter);
            if self.rng.chance(self.reorder) {
                self.stats.reordered += 1;
                latency += self.rng.duration(self.reorder_delay);
            }
            let corrupted = self.rng.chance(self.corrupt) && self.corrupt_frame(&mut data);
            self.push(now + latency, Item::Frame { to, data, corrupted });
        }
    }

    /// Flips bits in an IPv4 frame: a non-empty, not-all-ones mask within one 16-bit word of the IP packet,
    /// aligned as the Internet checksum aligns it. Such an error changes the ones'-complement sum, so the IPv4
    /// header checksum or the TCP checksum is guaranteed to catch it: every corrupted frame must be dropped.
    /// Frames that are not IPv4 (ARP), and the Ethernet header, are left alone: on a real link the Ethernet CRC
    /// catches those, and ARP has no checksum of its own. Returns whether the frame was changed.
    fn corrupt_frame(&mut self, data: &mut [u8]) -> bool {
        if data.len() <= ETH_HEADER || data.get(12..14) != Some(&ETHERTYPE_IPV4[..]) {
            return false;
        }
        let words = (data.len() - ETH_HEADER).div_ceil(2);
        let word = ETH_HEADER + 2 * self.rng.below(words as u64) as usize;
        // 1..=0xfffe: at least one bit, never all sixteen (0x0000 and 0xffff are the same ones'-complement value).
        let mask = (1 + self.rng.below(0xfffe)) as u16;
        let [hi, lo] = mask.to_be_bytes();
        let mut changed = false;
        if let Some(b) = data.get_mut(word) {
            *b ^= hi;
            changed |= hi != 0;
        }
        match data.get_mut(word + 1) {
            Some(b) => {
                *b ^= lo;
                changed |= lo != 0;
            }
            None if !changed => {
                // An odd trailing byte (the checksum pads it with a zero low byte): flip within it.
                if let Some(b) = data.get_mut(word) {
                    *b ^= 0x80 >> self.rng.below(8);
                    changed = true;
                }
            }
            None => {}
        }
        if changed {
            self.stats.corrupted += 1;
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SimConfig {
        SimConfig {
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            ..SimConfig::perfect(1)
        }
    }

    #[test]
    fn link_perfect_delivers_in_order_after_delay() {
        let mut link = Link::new(&config(), Rng::new(1));
        link.send(Instant::ZERO, Side::Client, vec![1]);
        link.send(Instant::ZERO, Side::Client, vec![2]);
        assert!(link.pop_due(Instant::from_micros(999)).is_none());
        let now = Instant::from_millis(1);
        let mut got = Vec::new();
        while let Some(Item::Frame { to, data, corrupted }) = link.pop_due(now) {
            assert_eq!(to, Side::Server);
            assert!(!corrupted);
            got.push(data[0]);
        }
        assert_eq!(got, vec![1, 2]);
        assert!(link.is_empty());
    }

    #[test]
    fn link_corruption_changes_one_ip_word_only() {
        let mut link = Link::new(&config(), Rng::new(5));
        for _ in 0..1000 {
            let mut frame = vec![0u8; 61];
            frame[12] = 0x08;
            let original = frame.clone();
            assert!(link.corrupt_frame(&mut frame));
            let diffs: Vec<usize> = (0..frame.len()).filter(|&i| frame[i] != original[i]).collect();
            assert!(!diffs.is_empty());
            assert!(diffs.iter().all(|&i| i >= ETH_HEADER));
            assert!(
                diffs
                    .iter()
                    .all(|&i| (i - ETH_HEADER) / 2 == (diffs[0] - ETH_HEADER) / 2)
            );
        }
        let mut arp = vec![0u8; 42];
        arp[12] = 0x08;
        arp[13] = 0x06;
        assert!(!link.corrupt_frame(&mut arp));
    }

    #[test]
    fn link_total_loss_delivers_nothing() {
        let mut link = Link::new(&SimConfig { loss: 1.0, ..config() }, Rng::new(2));
        for _ in 0..10 {
            link.send(Instant::ZERO, Side::Server, vec![0; 60]);
        }
        assert!(link.is_empty());
        assert_eq!(link.stats.lost, 10);
    }
}
