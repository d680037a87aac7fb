//! A hierarchical timing wheel (Varghese & Lauck) for the engine's per-connection timers.
//!
//! The engine holds up to millions of connections, each with a handful of timers (RTO, delayed ACK, persist,
//! keepalive, SYN-RECEIVED, TIME-WAIT). It keeps the earliest of a connection's deadlines in this wheel under one
//! [`TimerId`], so the wheel holds at most one timer per id and never allocates after [`TimerWheel::new`].
//!
//! # Layout
//!
//! Time is counted in ticks of [`TimerConfig::tick`]. Level `L` has `2^slots_log2` slots, each `2^(slots_log2 * L)`
//! ticks wide. A timer due at tick `e` sits at the lowest level where `e` and the wheel's current tick agree in
//! every higher digit (digits being `slots_log2`-bit groups of the tick number), in the slot named by its digit at
//! that level. When the wheel's time reaches the start of a slot on level `L >= 1`, the slot's timers move
//! ("cascade") to lower levels; on level 0 they fire. Each timer therefore moves at most `levels - 1` times.
//!
//! Every slot and timer is a node of one preallocated array; slots are sentinels of intrusive, circular,
//! doubly-linked lists with `u32` links, so schedule and cancel are O(1) and need no knowledge of which slot a
//! timer is in. One occupancy bitmap per level, and one bit per non-empty level above them, find the next
//! non-empty slot in O(1) (two `trailing_zeros`), which is how [`TimerWheel::advance`] jumps over idle stretches
//! and how [`TimerWheel::next_deadline`] stays cheap.
//!
//! Deadlines further out than [`TimerConfig::span`] from the wheel's time go to an overflow list that is re-sorted
//! into the wheel each time the wheel's time crosses a multiple of the span: such a timer is looked at once per
//! span until it fits, then cascades as usual. TCP's longest timers (keepalive, about two hours) fit the default
//! span, so in practice the overflow list stays empty.
//!
//! # When timers fire
//!
//! A timer with deadline `d` is reported by the first [`TimerWheel::advance`]`(now)` where `now` rounded down to a
//! tick is at or after `d`, i.e. `d <= floor(now / tick) * tick`. It never fires early, and it has fired by the
//! time `now >= d + tick`. A deadline at or before the wheel's current time fires on the next `advance`, whatever
//! its `now`.

use core::fmt;
use core::time::Duration;

use crate::time::Instant;

/// The "no link" marker: a node whose `prev` is `NONE` is not in any list.
const NONE: u32 = u32::MAX;

/// Names one timer: an index in `0..capacity`.
///
/// The engine maps its connection slots (and TIME-WAIT records) to ids itself, so the wheel needs no hash map and
/// its callback can hand back a plain index.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u32);

/// The shape of a [`TimerWheel`]: resolution and reach.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// The wheel's resolution, in whole microseconds (at least 1 µs). Timers fire up to one tick late; a coarser
    /// tick means fewer slot visits.
    pub tick: Duration,
    /// Base-2 log of the slots per level, `1..=6` (at most 64 slots, so a level's occupancy is one `u64`).
    pub slots_log2: u32,
    /// Number of levels, at least 1, with `slots_log2 * levels <= 63`.
    pub levels: u32,
}

impl Default for TimerConfig {
    /// 1 ms ticks, 64 slots, 4 levels: a span of 2^24 ms, about 4 h 40 min, which covers a 2-hour keepalive.
    fn default() -> Self {
        TimerConfig {
            tick: Duration::from_millis(1),
            slots_log2: 6,
            levels: 4,
        }
    }
}

impl TimerConfig {
    /// How far ahead the wheel reaches without the overflow list: `tick * 2^(slots_log2 * levels)`.
    ///
    /// Deadlines beyond it still work; they are re-sorted once per span until they fit.
    pub fn span(&self) -> Duration {
        let bits = self.slots_log2.saturating_mul(self.levels).min(63);
        Duration::from_micros(tick_micros(self.tick).saturating_mul(1u64 << bits))
    }
}

fn tick_micros(tick: Duration) -> u64 {
    u64::try_from(tick.as_micros()).unwrap_or(u64::MAX)
}

/// Work counters, so tests (and benchmarks) can check the wheel's cost without timing it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WheelStats {
    /// Calls to [`TimerWheel::schedule`], including reschedules.
    pub scheduled: u64,
    /// Calls to [`TimerWheel::cancel`] that removed a scheduled timer.
    pub cancelled: u64,
    /// Timers reported to an `advance` callback.
    pub fired: u64,
    /// Timers moved from one list to another while cascading (including overflow re-sorts).
    pub cascaded_moves: u64,
    /// Non-empty lists (slots, the overflow list, the due list) that `advance` processed.
    pub slots_visited: u64,
}

/// One list node: a timer (index `< capacity`) or a list's sentinel (index `>= capacity`).
#[derive(Clone, Copy)]
struct Node {
    next: u32,
    prev: u32,
    /// The timer's deadline in microseconds; unused for sentinels.
    deadline: u64,
}

/// Bytes per timer id (one node each), for memory accounting.
pub(crate) const NODE_BYTES: usize = core::mem::size_of::<Node>();

impl Node {
    const UNLINKED: Node = Node {
        next: NONE,
        prev: NONE,
        deadline: 0,
    };
}

/// What [`TimerWheel::advance`] processes next.
#[derive(Clone, Copy)]
enum Event {
    /// A level-0 slot: every timer in it is due.
    Expire(u32),
    /// A slot on a higher level: its timers move down.
    Cascade(u32),
    /// The overflow list, at a span boundary.
    Overflow,
}

/// A hierarchical timing wheel over a fixed set of [`TimerId`]s; see the [module docs](self).
///
/// Memory: 16 bytes per id, plus 16 bytes per slot (`levels * 2^slots_log2`) and 8 bytes of bitmap per level, all
/// allocated in [`new`](Self::new).
pub struct TimerWheel {
    /// `capacity` timer nodes, then `levels << slots_log2` slot sentinels, then the due, overflow and scratch
    /// sentinels.
    nodes: Vec<Node>,
    /// Bit `s` of `occupied[L]` is set iff slot `s` of level `L` is non-empty.
    occupied: Vec<u64>,
    /// Bit `L` is set iff `occupied[L]` is non-zero: the lowest non-empty level in one instruction, for
    /// [`next_deadline`](Self::next_deadline), which a poll loop asks every turn.
    occupied_levels: u64,
    /// The due list's sentinel (after the slot sentinels), kept rather than recomputed on every poll.
    due: u32,
    config: TimerConfig,
    /// The level a timer goes to, by the highest bit in which its expiry tick and the wheel's time differ
    /// (`levels` and above: the overflow list). A table lookup rather than a division by `slots_log2` per insert,
    /// which the engine does on every RTO and delayed-ACK (re)arm.
    level_of_bit: [u8; 64],
    capacity: u32,
    tick_us: u64,
    /// Every timer due at or before this tick has been reported (or sits in the due list).
    cur: u64,
    len: usize,
    stats: WheelStats,
}

impl fmt::Debug for TimerWheel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TimerWheel")
            .field("config", &self.config)
            .field("capacity", &self.capacity)
            .field("len", &self.len)
            .field("now", &self.now())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl TimerWheel {
    /// Faults the wheel's pages in now (see [`crate::mem::populate`]).
    pub fn populate(&self) -> bool {
        crate::mem::populate_capacity(&self.nodes)
    }

    /// A wheel for ids `0..capacity` whose time starts at `now`; every allocation happens here.
    ///
    /// # Panics
    ///
    /// If the config is out of range (tick under 1 µs, `slots_log2` outside `1..=6`, no levels, or
    /// `slots_log2 * levels > 63`), or if `capacity` plus the slot count does not fit in a `u32`.
    pub fn new(capacity: usize, config: TimerConfig, now: Instant) -> TimerWheel {
        let tick_us = tick_micros(config.tick);
        assert!(tick_us >= 1, "timer tick must be at least 1 µs");
        assert!((1..=6).contains(&config.slots_log2), "slots_log2 must be in 1..=6");
        assert!(config.levels >= 1, "a timer wheel needs at least one level");
        assert!(
            config.slots_log2.saturating_mul(config.levels) <= 63,
            "slots_log2 * levels must be <= 63"
        );
        let slot_sentinels = (config.levels as usize) << config.slots_log2;
        let total = capacity.checked_add(slot_sentinels + 3);
        let total = match total {
            Some(t) if t < NONE as usize => t,
            _ => panic!("timer wheel capacity too large for u32 links"),
        };
        let mut nodes = Vec::with_capacity(total);
        nodes.resize(capacity, Node::UNLINKED);
        for i in capacity..total {
            nodes.push(Node {
                next: i as u32,
                prev: i as u32,
                deadline: 0,
            });
        }
        // levels <= 63 (slots_log2 >= 1 and slots_log2 * levels <= 63), so every level fits in a u8.
        let level_of_bit = core::array::from_fn(|bit| (bit as u32 / config.slots_log2).min(config.levels) as u8);
        TimerWheel {
            nodes,
            occupied: vec![0; config.levels as usize],
            occupied_levels: 0,
            due: (capacity + slot_sentinels) as u32,
            config,
            level_of_bit,
            capacity: capacity as u32,
            tick_us,
            cur: now.as_micros() / tick_us,
            len: 0,
            stats: WheelStats::default(),
        }
    }

    /// Arms timer `id` for `deadline`, replacing its previous deadline if it had one. O(1).
    ///
    /// A deadline at or before the wheel's time ([`now`](Self::now)) fires on the next [`advance`](Self::advance).
    ///
    /// # Panics
    ///
    /// If `id` is not below [`capacity`](Self::capacity).
    pub fn schedule(&mut self, id: TimerId, deadline: Instant) {
        let idx = self.index(id);
        if self.nodes[idx as usize].prev == NONE {
            self.len += 1;
        } else {
            self.unlink(idx);
        }
        let micros = deadline.as_micros();
        self.nodes[idx as usize].deadline = micros;
        self.stats.scheduled += 1;
        self.insert(idx, micros.div_ceil(self.tick_us));
    }

    /// Disarms timer `id`; does nothing if it is not scheduled. O(1).
    ///
    /// # Panics
    ///
    /// If `id` is not below [`capacity`](Self::capacity).
    pub fn cancel(&mut self, id: TimerId) {
        let idx = self.index(id);
        if self.nodes[idx as usize].prev != NONE {
            self.unlink(idx);
            self.len -= 1;
            self.stats.cancelled += 1;
        }
    }

    /// The deadline timer `id` was scheduled for, if it is scheduled.
    ///
    /// # Panics
    ///
    /// If `id` is not below [`capacity`](Self::capacity).
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        let node = &self.nodes[self.index(id) as usize];
        (node.prev != NONE).then_some(Instant::from_micros(node.deadline))
    }

    /// Whether timer `id` is scheduled (and has not fired since).
    ///
    /// # Panics
    ///
    /// If `id` is not below [`capacity`](Self::capacity).
    pub fn is_scheduled(&self, id: TimerId) -> bool {
        self.nodes[self.index(id) as usize].prev != NONE
    }

    /// Number of scheduled timers.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether no timer is scheduled.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Number of ids the wheel was built for.
    pub fn capacity(&self) -> usize {
        self.capacity as usize
    }

    /// The configuration the wheel was built with.
    pub fn config(&self) -> TimerConfig {
        self.config
    }

    /// The wheel's time: the latest `now` given to [`new`](Self::new) or [`advance`](Self::advance), rounded down
    /// to a tick.
    pub fn now(&self) -> Instant {
        self.tick_instant(self.cur)
    }

    /// Work counters since construction.
    pub fn stats(&self) -> WheelStats {
        self.stats
    }

    /// Moves the wheel's time to `now` and reports every timer due by then, each exactly once.
    ///
    /// A timer is due when its deadline is at or before `now` rounded down to a tick (or was at or before the
    /// wheel's time when it was scheduled). Due timers are unscheduled before `on_expired` sees their id, in order
    /// of their deadline's tick, except that timers already due when scheduled come first, in the order they were
    /// scheduled. The callback cannot touch the wheel; the engine collects ids and reschedules
    /// afterwards. Idle stretches cost O(levels) per non-empty slot, not one step per tick. A `now` earlier than
    /// the wheel's time only reports timers already due.
    ///
    /// If `on_expired` panics, timers not yet reported stay scheduled and a later `advance` reports them.
    pub fn advance(&mut self, now: Instant, mut on_expired: impl FnMut(TimerId)) {
        let target = now.as_micros() / self.tick_us;
        self.drain_due(&mut on_expired);
        while let Some((tick, event)) = self.next_event() {
            if tick > target {
                break;
            }
            self.cur = self.cur.max(tick);
            self.stats.slots_visited += 1;
            if let Event::Expire(head) | Event::Cascade(head) = event {
                debug_assert!(!self.list_is_empty(head), "occupancy bit set for an empty slot");
            }
            match event {
                Event::Expire(head) => {
                    while let Some(idx) = self.pop_front(head) {
                        self.fire(idx, &mut on_expired);
                    }
                }
                Event::Cascade(head) => self.resort(head),
                Event::Overflow => {
                    // Re-sorting may put a timer back into the overflow list, so move the list aside first.
                    let scratch = self.scratch();
                    self.splice(self.overflow(), scratch);
                    self.resort(scratch);
                }
            }
            self.drain_due(&mut on_expired);
        }
        self.cur = self.cur.max(target);
    }

    /// The earliest instant at which [`advance`](Self::advance) could report a timer, for use as a poll timeout;
    /// `None` when nothing is scheduled. O(1).
    ///
    /// It is a tick boundary at or before every scheduled timer's firing instant (its deadline rounded up to a
    /// tick, or the wheel's time for timers already due), so sleeping until it never makes a timer late. It can
    /// be up to one tick after a deadline that is not on a tick boundary, because an `advance` before that
    /// boundary would report nothing and a poll loop woken there would spin. For timers on higher levels it may
    /// be well before their deadline, which only costs a spurious wakeup that cascades them.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.list_is_empty(self.due()) {
            return Some(self.tick_instant(self.cur));
        }
        self.next_event().map(|(tick, _)| self.tick_instant(tick))
    }

    fn index(&self, id: TimerId) -> u32 {
        assert!(
            id.0 < self.capacity,
            "timer id {} out of range (capacity {})",
            id.0,
            self.capacity
        );
        id.0
    }

    fn tick_instant(&self, tick: u64) -> Instant {
        Instant::from_micros(tick.saturating_mul(self.tick_us))
    }

    /// The tick at which timer `idx` fires: its deadline rounded up to a tick.
    fn expiry_tick(&self, idx: u32) -> u64 {
        self.nodes[idx as usize].deadline.div_ceil(self.tick_us)
    }

    fn slot_mask(&self) -> u64 {
        (1u64 << self.config.slots_log2) - 1
    }

    fn slot_head(&self, level: u32, slot: u64) -> u32 {
        self.capacity + (level << self.config.slots_log2) + slot as u32
    }

    /// Sentinel of the list of timers already due.
    fn due(&self) -> u32 {
        self.due
    }

    fn overflow(&self) -> u32 {
        self.due() + 1
    }

    fn scratch(&self) -> u32 {
        self.due() + 2
    }

    /// Puts unlinked timer `idx`, due at `tick`, into the list where it belongs relative to the wheel's time.
    #[inline(always)]
    fn insert(&mut self, idx: u32, tick: u64) {
        let head = if tick <= self.cur {
            self.due()
        } else {
            // The highest digit in which `tick` and `cur` differ picks the level; `tick` is larger there.
            let b = self.config.slots_log2;
            let highest_bit = 63 - (self.cur ^ tick).leading_zeros();
            let level = u32::from(self.level_of_bit[highest_bit as usize & 63]);
            if level >= self.config.levels {
                self.overflow()
            } else {
                let slot = (tick >> (level * b)) & self.slot_mask();
                self.occupied[level as usize] |= 1 << slot;
                self.occupied_levels |= 1 << level;
                self.slot_head(level, slot)
            }
        };
        self.push_back(head, idx);
    }

    /// Moves every timer in list `head` to where it now belongs (a lower level, the due list, or overflow).
    fn resort(&mut self, head: u32) {
        while let Some(idx) = self.pop_front(head) {
            self.stats.cascaded_moves += 1;
            let tick = self.expiry_tick(idx);
            self.insert(idx, tick);
        }
    }

    fn drain_due(&mut self, on_expired: &mut impl FnMut(TimerId)) {
        let due = self.due();
        if self.list_is_empty(due) {
            return;
        }
        self.stats.slots_visited += 1;
        while let Some(idx) = self.pop_front(due) {
            self.fire(idx, on_expired);
        }
    }

    fn fire(&mut self, idx: u32, on_expired: &mut impl FnMut(TimerId)) {
        self.len -= 1;
        self.stats.fired += 1;
        on_expired(TimerId(idx));
    }

    /// The next tick at which `advance` has work, and what that work is.
    ///
    /// Every timer on level `L` shares the digits above `L` with `cur` and has a larger digit at `L`, so a slot's
    /// start tick is `cur`'s higher digits followed by the slot number, and the lowest non-empty level holds the
    /// earliest start. Overflow timers lie past the current span, so they come last.
    fn next_event(&self) -> Option<(u64, Event)> {
        let b = self.config.slots_log2;
        if self.occupied_levels != 0 {
            let level = self.occupied_levels.trailing_zeros();
            let bits = self.occupied[level as usize];
            debug_assert_ne!(bits, 0, "level {level} marked occupied but empty");
            let slot = u64::from(bits.trailing_zeros());
            let shift = level * b;
            let above = self.cur & !((1u64 << (shift + b)) - 1);
            let start = above | (slot << shift);
            let head = self.slot_head(level, slot);
            let event = if level == 0 {
                Event::Expire(head)
            } else {
                Event::Cascade(head)
            };
            return Some((start, event));
        }
        if self.list_is_empty(self.overflow()) {
            return None;
        }
        let span_bits = b * self.config.levels;
        let boundary = ((self.cur >> span_bits) + 1).checked_shl(span_bits)?;
        Some((boundary, Event::Overflow))
    }

    fn list_is_empty(&self, head: u32) -> bool {
        self.nodes[head as usize].next == head
    }

    fn push_back(&mut self, head: u32, idx: u32) {
        let last = self.nodes[head as usize].prev;
        self.nodes[idx as usize].prev = last;
        self.nodes[idx as usize].next = head;
        self.nodes[last as usize].next = idx;
        self.nodes[head as usize].prev = idx;
    }

    fn pop_front(&mut self, head: u32) -> Option<u32> {
        let first = self.nodes[head as usize].next;
        if first == head {
            return None;
        }
        self.unlink(first);
        Some(first)
    }

    /// Takes timer `idx` out of its list, clearing the slot's occupancy bit if the list empties.
    #[inline(always)]
    fn unlink(&mut self, idx: u32) {
        let Node { next, prev, .. } = self.nodes[idx as usize];
        self.nodes[prev as usize].next = next;
        self.nodes[next as usize].prev = prev;
        self.nodes[idx as usize].next = NONE;
        self.nodes[idx as usize].prev = NONE;
        // Neighbours can only coincide when both are the sentinel of a list that is now empty.
        if prev == next {
            let k = prev - self.capacity;
            let level = k >> self.config.slots_log2;
            if level < self.config.levels {
                let slot = u64::from(k) & self.slot_mask();
                let bits = &mut self.occupied[level as usize];
                *bits &= !(1u64 << slot);
                if *bits == 0 {
                    self.occupied_levels &= !(1u64 << level);
                }
            }
        }
    }

    /// Moves the whole list `from` (not a slot: no occupancy bit to maintain) to the empty list `to`.
    fn splice(&mut self, from: u32, to: u32) {
        let first = self.nodes[from as usize].next;
        let last = self.nodes[from as usize].prev;
        if first == from {
            return;
        }
        self.nodes[to as usize].next = first;
        self.nodes[to as usize].prev = last;
        self.nodes[first as usize].prev = to;
        self.nodes[last as usize].next = to;
        self.nodes[from as usize].next = from;
        self.nodes[from as usize].prev = from;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::{BTreeMap, BTreeSet};

    const MS: u64 = 1000;

    fn wheel(capacity: usize, now: Instant) -> TimerWheel {
        TimerWheel::new(capacity, TimerConfig::default(), now)
    }

    fn fired(w: &mut TimerWheel, now: Instant) -> Vec<u32> {
        let mut out = Vec::new();
        w.advance(now, |id| out.push(id.0));
        out
    }

    fn ms(v: u64) -> Instant {
        Instant::from_millis(v)
    }

    #[test]
    fn config_default_span_covers_hours() {
        let c = TimerConfig::default();
        assert_eq!(c.span(), Duration::from_millis(1 << 24));
        assert!(c.span() > Duration::from_secs(4 * 3600));
    }

    #[test]
    fn timer_schedule_then_cancel_never_fires() {
        let mut w = wheel(8, Instant::ZERO);
        assert!(w.is_empty());
        w.schedule(TimerId(3), ms(10));
        assert!(w.is_scheduled(TimerId(3)));
        assert_eq!(w.deadline(TimerId(3)), Some(ms(10)));
        assert_eq!(w.len(), 1);
        w.cancel(TimerId(3));
        w.cancel(TimerId(3));
        assert!(!w.is_scheduled(TimerId(3)));
        assert_eq!(w.deadline(TimerId(3)), None);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
        assert!(fired(&mut w, ms(1000)).is_empty());
        assert_eq!(w.stats().cancelled, 1);
        assert_eq!(w.stats().fired, 0);
    }

    #[test]
    fn timer_reschedule_replaces_deadline() {
        let mut w = wheel(8, Instant::ZERO);
        w.schedule(TimerId(1), ms(10));
        w.schedule(TimerId(1), ms(500));
        assert_eq!(w.len(), 1);
        assert_eq!(w.deadline(TimerId(1)), Some(ms(500)));
        assert!(fired(&mut w, ms(499)).is_empty());
        // Earlier again, below the wheel's time by now: fires on the next advance.
        w.schedule(TimerId(1), ms(20));
        assert_eq!(fired(&mut w, ms(499)), vec![1]);
        assert!(fired(&mut w, ms(1000)).is_empty());
        assert!(w.is_empty());
    }

    #[test]
    fn timer_advance_to_deadline_fires_and_not_a_tick_before() {
        let mut w = wheel(8, ms(7));
        w.schedule(TimerId(0), ms(100));
        w.schedule(TimerId(1), Instant::from_micros(100_500));
        assert!(fired(&mut w, ms(99)).is_empty());
        assert!(fired(&mut w, Instant::from_micros(99_999)).is_empty());
        assert_eq!(fired(&mut w, ms(100)), vec![0]);
        // Not on a tick boundary: due at the next one.
        assert!(fired(&mut w, Instant::from_micros(100_999)).is_empty());
        assert_eq!(fired(&mut w, ms(101)), vec![1]);
        assert_eq!(w.stats().fired, 2);
    }

    #[test]
    fn timer_ordering_across_levels_follows_deadlines() {
        let start = Instant::from_micros(123_456_789);
        let mut w = wheel(16, start);
        // Spread over levels 0..=3 and the overflow list, scheduled out of order.
        let offsets_ms = [
            3_600_000u64,
            5,
            70_000,
            1,
            4_500,
            20_000_000,
            63,
            64,
            4_095,
            4_096,
            262_144,
            900,
        ];
        for (i, off) in offsets_ms.iter().enumerate() {
            w.schedule(TimerId(i as u32), start + Duration::from_millis(*off));
        }
        let order = fired(&mut w, start + Duration::from_millis(30_000_000));
        let mut expected: Vec<u32> = (0..offsets_ms.len() as u32).collect();
        expected.sort_by_key(|&i| offsets_ms[i as usize]);
        assert_eq!(order, expected);
        assert!(w.is_empty());
    }

    #[test]
    fn timer_far_deadlines_cascade_and_fire_on_time() {
        let start = Instant::from_micros(987_654_321);
        let span = TimerConfig::default().span();
        // One per level, and two beyond the span (the second crosses several span boundaries).
        let offsets = [
            Duration::from_millis(50),
            Duration::from_millis(3_000),
            Duration::from_secs(200),
            Duration::from_secs(3 * 3600),
            span + Duration::from_millis(17),
            span * 3 + Duration::from_micros(1_234_567),
        ];
        for off in offsets {
            let mut w = wheel(1, start);
            let deadline = start + off;
            w.schedule(TimerId(0), deadline);
            let before = Instant::from_micros((deadline.as_micros().div_ceil(MS) - 1) * MS);
            assert!(fired(&mut w, before).is_empty(), "{off:?} fired early");
            assert!(w.is_scheduled(TimerId(0)));
            assert_eq!(fired(&mut w, deadline + Duration::from_micros(999)), vec![0], "{off:?}");
            assert!(
                w.stats().slots_visited <= u64::from(w.config().levels) + 4,
                "{off:?}: {:?}",
                w.stats()
            );
        }
    }

    #[test]
    fn timer_past_deadline_fires_on_next_advance() {
        let mut w = wheel(4, ms(1_000));
        w.schedule(TimerId(0), ms(10));
        w.schedule(TimerId(1), ms(1_000));
        w.schedule(TimerId(2), Instant::ZERO);
        assert_eq!(w.next_deadline(), Some(ms(1_000)));
        let mut got = fired(&mut w, ms(1_000));
        got.sort_unstable();
        assert_eq!(got, vec![0, 1, 2]);
        // Even an advance that goes backwards reports what is already due.
        w.schedule(TimerId(3), ms(900));
        assert_eq!(fired(&mut w, ms(5)), vec![3]);
        assert_eq!(w.now(), ms(1_000));
    }

    #[test]
    fn timer_cancel_after_cascade_never_fires() {
        let mut w = wheel(2, Instant::ZERO);
        w.schedule(TimerId(0), ms(3_600_000));
        w.schedule(TimerId(1), ms(3_600_001));
        assert!(fired(&mut w, ms(3_599_990)).is_empty());
        assert!(w.stats().cascaded_moves >= 2, "{:?}", w.stats());
        assert!(w.is_scheduled(TimerId(0)));
        w.cancel(TimerId(0));
        assert_eq!(w.len(), 1);
        assert_eq!(fired(&mut w, ms(7_200_000)), vec![1]);
        assert!(w.is_empty());
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn timer_reused_id_after_fire_fires_again() {
        let mut w = wheel(1, Instant::ZERO);
        w.schedule(TimerId(0), ms(5));
        assert_eq!(fired(&mut w, ms(5)), vec![0]);
        assert!(!w.is_scheduled(TimerId(0)));
        w.schedule(TimerId(0), ms(200));
        assert!(fired(&mut w, ms(199)).is_empty());
        assert_eq!(fired(&mut w, ms(200)), vec![0]);
        assert_eq!(w.stats().fired, 2);
    }

    #[test]
    fn timer_long_idle_jump_visits_few_slots() {
        let mut w = wheel(1, Instant::ZERO);
        // Empty: an hour costs nothing.
        assert!(fired(&mut w, ms(3_600_000)).is_empty());
        assert_eq!(w.stats().slots_visited, 0);
        w.schedule(TimerId(0), ms(7_200_000));
        assert!(fired(&mut w, ms(7_199_999)).is_empty());
        assert_eq!(fired(&mut w, ms(7_200_000)), vec![0]);
        let s = w.stats();
        assert!(s.slots_visited <= u64::from(w.config().levels), "{s:?}");
        assert!(s.cascaded_moves < u64::from(w.config().levels), "{s:?}");
        // Polling every second over an idle hour with one timer: no more slot visits than levels.
        let mut w = wheel(1, Instant::ZERO);
        w.schedule(TimerId(0), ms(3_600_000));
        let mut got = Vec::new();
        for sec in 1..=3_600 {
            w.advance(ms(sec * 1000), |id| got.push((sec, id.0)));
        }
        assert_eq!(got, vec![(3_600, 0)]);
        assert!(
            w.stats().slots_visited <= u64::from(w.config().levels),
            "{:?}",
            w.stats()
        );
    }

    #[test]
    fn timer_next_deadline_is_tick_lower_bound() {
        let mut w = wheel(4, ms(1));
        assert_eq!(w.next_deadline(), None);
        w.schedule(TimerId(0), ms(3_600_000));
        let far = w.next_deadline().expect("scheduled");
        assert!(far <= ms(3_600_000) && far > ms(1));
        w.schedule(TimerId(1), Instant::from_micros(40_200));
        assert_eq!(w.next_deadline(), Some(ms(41)));
        // Sleeping until just before it reports nothing; at it, the timer fires.
        assert!(fired(&mut w, Instant::from_micros(40_999)).is_empty());
        assert_eq!(fired(&mut w, ms(41)), vec![1]);
        // The far timer: following next_deadline never overshoots and reaches it in at most `levels` wakeups.
        let mut wakeups = 0;
        while let Some(t) = w.next_deadline() {
            assert!(t <= ms(3_600_000));
            let got = fired(&mut w, t);
            wakeups += 1;
            if !got.is_empty() {
                assert_eq!((got, t), (vec![0], ms(3_600_000)));
            }
        }
        assert!(wakeups <= 4, "{wakeups}");
    }

    /// SplitMix64: a seeded generator so the big test needs no extra crate.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn timer_million_random_timers_cost_constant_each() {
        const N: usize = 1_000_000;
        let mut rng = Rng(0x5eed);
        let start = Instant::from_micros(1_000_000_000 + 777);
        let end = start + Duration::from_secs(8 * 3600);
        let mut w = TimerWheel::new(N, TimerConfig::default(), start);
        let mut deadlines = vec![0u64; N];
        for (i, d) in deadlines.iter_mut().enumerate() {
            // Mostly within minutes (like RTOs), some out to 8 hours (beyond the span), a few already past.
            let off = match rng.below(10) {
                0..=5 => 5_000 + rng.below(5_000_000),
                6..=8 => 5_000 + rng.below(8 * 3_600_000_000),
                _ => rng.below(5_000),
            };
            *d = (start.as_micros() - 5_000) + off;
            w.schedule(TimerId(i as u32), Instant::from_micros(*d));
        }
        // Exactly half, in random order: a partial Fisher-Yates shuffle of the ids.
        let mut order: Vec<u32> = (0..N as u32).collect();
        let mut cancelled = vec![false; N];
        for k in 0..N / 2 {
            let j = k + rng.below((N - k) as u64) as usize;
            order.swap(k, j);
            let i = order[k];
            cancelled[i as usize] = true;
            w.cancel(TimerId(i));
        }
        let live = N / 2;
        assert_eq!(w.len(), live);

        let mut fired_at = vec![false; N];
        let mut now = start;
        let mut prev_floor = start.as_micros() / MS * MS;
        let mut first = true;
        while now < end {
            let step = match rng.below(4) {
                0 => rng.below(2 * MS),
                1 => rng.below(100 * MS),
                _ => rng.below(20_000 * MS),
            };
            now = (now + Duration::from_micros(step)).min(end);
            let floor = now.as_micros() / MS * MS;
            w.advance(now, |id| {
                let i = id.0 as usize;
                assert!(!cancelled[i], "cancelled timer {i} fired");
                assert!(!fired_at[i], "timer {i} fired twice");
                fired_at[i] = true;
                let d = deadlines[i];
                assert!(d <= floor, "timer {i} fired early: deadline {d} at {floor}");
                // Due when the previous advance ran means it should have fired then; timers already due at
                // construction fire at the first advance.
                assert!(
                    d > prev_floor || first,
                    "timer {i} fired late: deadline {d}, previous advance {prev_floor}"
                );
            });
            prev_floor = floor;
            first = false;
        }
        assert!(w.is_empty());
        let fired_count = fired_at.iter().filter(|f| **f).count();
        assert_eq!(fired_count, live);

        let s = w.stats();
        assert_eq!(s.fired, live as u64);
        let ops = s.scheduled + s.cancelled;
        let work = ops + s.cascaded_moves + s.slots_visited;
        let per_timer = work as f64 / N as f64;
        assert!(
            per_timer <= f64::from(w.config().levels) + 2.0,
            "{per_timer} per timer: {s:?}"
        );
    }

    #[derive(Clone, Debug)]
    enum Op {
        Schedule(u32, i64),
        Cancel(u32),
        Advance(u64),
        AdvanceToNext,
        AdvanceJustBeforeNext,
    }

    fn op(ids: u32, reach: i64) -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => (0..ids, -3_000i64..reach).prop_map(|(i, d)| Op::Schedule(i, d)),
            1 => (0..ids).prop_map(Op::Cancel),
            2 => prop_oneof![0u64..3_000, 0u64..(reach as u64)].prop_map(Op::Advance),
            1 => Just(Op::AdvanceToNext),
            1 => Just(Op::AdvanceJustBeforeNext),
        ]
    }

    /// Runs `ops` against the wheel and a reference model: a timer with deadline `d` fires at the first advance
    /// whose `now`, rounded down to a tick, is at least `d`; a timer already due when scheduled fires at the next
    /// advance. Since `now` only grows here, both reduce to "`d <= floor(max now so far / tick) * tick`".
    fn check_against_model(config: TimerConfig, start: u64, ops: &[Op]) -> Result<(), TestCaseError> {
        let tick = tick_micros(config.tick);
        let ids = 24;
        let mut w = TimerWheel::new(ids, config, Instant::from_micros(start));
        let mut model: BTreeMap<u32, u64> = BTreeMap::new();
        let mut now = start;
        for op in ops {
            let advance_to = match *op {
                Op::Schedule(id, delta) => {
                    let d = now.saturating_add_signed(delta);
                    w.schedule(TimerId(id), Instant::from_micros(d));
                    model.insert(id, d);
                    None
                }
                Op::Cancel(id) => {
                    w.cancel(TimerId(id));
                    model.remove(&id);
                    None
                }
                Op::Advance(delta) => Some(now + delta),
                Op::AdvanceToNext => w.next_deadline().map(|t| t.as_micros().max(now)),
                Op::AdvanceJustBeforeNext => w.next_deadline().map(|t| t.as_micros().saturating_sub(1).max(now)),
            };
            if let Some(to) = advance_to {
                let prev_tick = now / tick;
                now = to;
                let floor = now / tick * tick;
                let mut got = Vec::new();
                w.advance(Instant::from_micros(now), |id| got.push(id.0));
                let got_set: BTreeSet<u32> = got.iter().copied().collect();
                prop_assert_eq!(got_set.len(), got.len(), "duplicate firing: {:?}", got);
                let want: BTreeSet<u32> = model.iter().filter(|(_, d)| **d <= floor).map(|(i, _)| *i).collect();
                prop_assert_eq!(&got_set, &want, "at {}", now);
                // Reported in deadline-tick order, after those already overdue before this advance.
                let ticks: Vec<u64> = got.iter().map(|i| model[i].div_ceil(tick).max(prev_tick)).collect();
                prop_assert!(ticks.windows(2).all(|p| p[0] <= p[1]), "order {:?}", ticks);
                model.retain(|_, d| *d > floor);
            }
            prop_assert_eq!(w.len(), model.len());
            for id in 0..ids as u32 {
                prop_assert_eq!(w.deadline(TimerId(id)).map(Instant::as_micros), model.get(&id).copied());
            }
            // next_deadline: None iff empty, a tick boundary, and never after any timer's firing instant.
            let wheel_now = now / tick * tick;
            let earliest = model.values().map(|d| (d.div_ceil(tick) * tick).max(wheel_now)).min();
            match (w.next_deadline(), earliest) {
                (None, None) => {}
                (Some(t), Some(e)) => {
                    prop_assert!(t.as_micros() <= e, "next_deadline {:?} after {}", t, e);
                    prop_assert_eq!(t.as_micros() % tick, 0);
                }
                (t, e) => prop_assert!(false, "next_deadline {:?} vs model {:?}", t, e),
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn timer_tiny_wheel_matches_model(
            start in 0u64..10_000_000,
            ops in proptest::collection::vec(op(24, 400_000), 1..200),
        ) {
            // 4 slots x 3 levels of 1 ms: a 64 ms span, so cascades and overflow happen constantly.
            let config = TimerConfig { tick: Duration::from_millis(1), slots_log2: 2, levels: 3 };
            check_against_model(config, start, &ops)?;
        }

        #[test]
        fn timer_default_wheel_matches_model(
            start in 0u64..100_000_000_000,
            ops in proptest::collection::vec(op(24, 40_000_000_000), 1..200),
        ) {
            check_against_model(TimerConfig::default(), start, &ops)?;
        }

        #[test]
        fn timer_odd_tick_wheel_matches_model(
            start in 0u64..10_000_000,
            ops in proptest::collection::vec(op(24, 2_000_000), 1..200),
        ) {
            let config = TimerConfig { tick: Duration::from_micros(333), slots_log2: 3, levels: 2 };
            check_against_model(config, start, &ops)?;
        }
    }
}
