//! The engine: one per core, owning everything it touches (listeners, flow table, connection slab, buffer pool,
//! timer wheel, ARP cache, counters). It is sans-IO, in the style of quinn-proto:
//!
//! - inputs: [`Engine::handle_frame`] for each received frame, [`Engine::handle_timeouts`] when
//!   [`Engine::poll_timeout`] is due, and the application's calls (`listen`, `connect`, `send`, `recv`,
//!   `shutdown`, `close`, `abort`);
//! - outputs: frames written into the caller's [`TxSink`], and [`Event`]s from [`Engine::poll_event`].
//!
//! A poll loop runs, per batch: [`Engine::prefetch_frame`] for each frame (optional: a cache hint that overlaps
//! the flow-table misses of a batch's new connections), then `handle_frame` for each frame; drain `poll_event`
//! and let the application react;
//! `handle_timeouts(now)`; then one `poll_transmit(now)`, which sends everything the batch made due. Segments
//! for one connection are therefore aggregated (RFC 9293 MUST-58, MUST-59): a request that arrives, is read and
//! answered in the same batch leaves as one segment carrying the ACK and the response.

mod config;
mod counters;
mod event;
mod events_owed;
pub mod flow;
mod input;
mod net;
mod output;
mod rate_limit;
mod rtt;
mod syn_cookie;
mod tcb;
mod time_wait;

use alloc_free::SlotList;
use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::VecDeque;

pub use config::{ConfigError, EngineConfig, KeepaliveConfig};
pub use counters::Counters;
pub use event::{CloseReason, ConnHandle, Error, Event, EventKind, ListenerHandle};
pub use flow::FlowKey;
pub use syn_cookie::SynCookieMode;
pub use tcb::State;

use crate::assembler::Assembler;
use crate::buffer::{BufferPool, RingBuffer};
use crate::io::{TxRefused, TxSink};
use crate::isn::{FlowHasher, IsnGenerator, Secret};
use crate::time::Instant;
use crate::timer::{TimerId, TimerWheel};
use crate::wire::ethernet::MacAddr;
use crate::wire::{Port, SeqNum};
use flow::{FlowSlot, FlowTable};
use rtt::{RtoBounds, RttEstimator};
use tcb::{Congestion, Deadline, Flags, Tcb};
use time_wait::TimeWaitTable;

mod alloc_free {
    /// A stack of free slot indices with a fixed capacity: popping and pushing never allocate.
    pub(crate) struct SlotList {
        free: Vec<u32>,
    }

    impl SlotList {
        pub(crate) fn with_capacity(capacity: usize) -> SlotList {
            SlotList {
                free: Vec::with_capacity(capacity),
            }
        }
        pub(crate) fn pop(&mut self) -> Option<u32> {
            self.free.pop()
        }
        pub(crate) fn is_empty(&self) -> bool {
            self.free.is_empty()
        }
        pub(crate) fn push(&mut self, index: u32) {
            debug_assert!(self.free.len() < self.free.capacity());
            self.free.push(index);
        }
    }
}

/// A listening port (RFC 9293 LISTEN state), kept apart from connections.
#[derive(Debug, Clone, Copy)]
struct Listener {
    port: Port,
    /// Most connections in SYN-RECEIVED at once for this listener.
    backlog: u32,
    half_open: u32,
    active: bool,
}

/// The limit that keeps a SYN from getting a control block (see `segment_for_listen`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HalfOpenLimit {
    /// The listener's backlog.
    Backlog,
    /// The half-open share of the connection table (`half_open_percent`).
    Share,
    /// The connection table.
    Table,
}

/// A RST to send that is not tied to a live control block.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PendingRst {
    key: FlowKey,
    remote_mac: MacAddr,
    seq: SeqNum,
    ack: Option<SeqNum>,
}

/// The TCP/IPv4 engine of one core. See the module documentation for the poll loop.
pub struct Engine {
    config: EngineConfig,
    conns: Vec<Tcb>,
    free_conns: SlotList,
    flows: FlowTable,
    time_wait: TimeWaitTable,
    listeners: Vec<Listener>,
    wheel: TimerWheel,
    pool: BufferPool,
    isn: IsnGenerator,
    events: VecDeque<Event>,
    event_capacity: usize,
    /// Connections (index, generation) owed an event the full queue refused; raised when it drains.
    owed: Vec<(u32, u32)>,
    /// `Closed` events owed for handles the application already released (their slots are free again).
    owed_closed: Vec<Event>,
    dirty: Vec<u32>,
    pending_rsts: Vec<PendingRst>,
    /// ARP requests to send with the next `poll_transmit`: (our address, the neighbour's).
    pending_arps: Vec<(Ipv4Addr, Ipv4Addr)>,
    expired: Vec<TimerId>,
    neighbors: net::NeighborCache,
    counters: Counters,
    /// RFC 5961 §7's global budget (see `rate_limit.rs`).
    challenge: rate_limit::ChallengeBudget,
    /// SYN cookies (see `syn_cookie.rs`).
    cookies: syn_cookie::SynCookies,
    /// When the last cookie went out: in `auto` mode ACKs are checked for cookies only for two counter periods
    /// after it (as Linux does), so that outside a flood no ACK can open a connection without a SYN.
    last_cookie_sent: Option<Instant>,
    /// The most passive connections in SYN-RECEIVED, all listeners together (`half_open_percent` of
    /// `max_connections`).
    half_open_limit: u32,
    /// Ephemeral-port cursor per local address (same order as `config.addresses`), so each source address
    /// walks the whole range on its own.
    next_port: Vec<u16>,
    ip_ident: u16,
    rcv_shift: u8,
    /// Connections waiting for ARP: the slab is scanned on a neighbour's reply only when some are.
    arp_waiting: u32,
    /// The latest `now` the caller passed in, for application calls that take no time.
    clock: Instant,
    /// `config.rto_min` and `rto_max` in the estimator's units.
    rto_bounds: RtoBounds,
    /// 2*MSL, how long a TIME-WAIT record lasts (RFC 9293 §3.4.2), computed once rather than per connection.
    time_wait_span: core::time::Duration,
}

/// What the engine sets aside per connection slot and per TIME-WAIT record, data buffers aside: the figures
/// behind "millions of connections per core" (the benches report them next to measured RSS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Footprint {
    /// One connection control block (every slot is preallocated).
    pub control_block: usize,
    /// One flow-table entry: packed 4-tuple and slot. The table has room for at least two per entry it may
    /// hold (in 64-byte buckets of four, a power of two of them), so probes stay short.
    pub flow_entry: usize,
    /// One timer-wheel node (one per connection slot; TIME-WAIT records need none).
    pub timer_node: usize,
    /// One TIME-WAIT record.
    pub time_wait_record: usize,
    /// The expiry queue's room per TIME-WAIT record (two entries: see `time_wait.rs`).
    pub time_wait_queue: usize,
}

impl Footprint {
    /// Sizes of this build's structures.
    pub fn of_this_build() -> Footprint {
        Footprint {
            control_block: core::mem::size_of::<Tcb>(),
            flow_entry: flow::ENTRY_BYTES,
            timer_node: crate::timer::NODE_BYTES,
            time_wait_record: time_wait::SLOT_BYTES,
            time_wait_queue: time_wait::QUEUE_BYTES_PER_RECORD,
        }
    }
}

/// Why the engine could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The configuration is invalid.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The OS random source failed (needed for RFC 6528 ISNs and the flow-table hash key).
    #[error("no OS randomness: {0}")]
    Random(#[from] crate::isn::SecretError),
}

impl Engine {
    /// Builds an engine with secrets from the OS random source.
    pub fn new(config: EngineConfig, now: Instant) -> Result<Engine, BuildError> {
        let isn_secret = Secret::random()?;
        let hash_secret = Secret::random()?;
        Engine::with_secrets(config, now, isn_secret, hash_secret)
    }

    /// Builds an engine with the given secrets: for the simulator and tests, which must replay exactly.
    pub fn with_secrets(
        config: EngineConfig,
        now: Instant,
        isn_secret: Secret,
        hash_secret: Secret,
    ) -> Result<Engine, BuildError> {
        config.validate()?;
        let max_conns = config.max_connections;
        let flows = max_conns + config.max_time_wait;
        let event_capacity = if config.event_capacity == 0 {
            max_conns.saturating_mul(4).saturating_add(64)
        } else {
            config.event_capacity
        };
        let mut free_conns = SlotList::with_capacity(max_conns);
        for index in (0..max_conns as u32).rev() {
            free_conns.push(index);
        }
        let pool = BufferPool::new(config.buffer_count, config.buffer_size);
        let mut conns = Vec::with_capacity(max_conns);
        for _ in 0..max_conns {
            conns.push(Tcb::empty(&pool, &config));
        }
        // Our window scale: the smallest shift that lets the whole buffer be offered (RFC 7323 §2.3).
        let mut rcv_shift = 0u8;
        while (config.buffer_size >> rcv_shift) > usize::from(u16::MAX) && rcv_shift < 14 {
            rcv_shift += 1;
        }
        let mut engine = Engine {
            flows: FlowTable::new(flows, FlowHasher::new(hash_secret.clone())),
            time_wait: TimeWaitTable::new(config.max_time_wait),
            listeners: Vec::with_capacity(config.max_listeners),
            wheel: TimerWheel::new(max_conns, config.timer, now),
            isn: IsnGenerator::new(isn_secret.clone()),
            events: VecDeque::with_capacity(event_capacity),
            event_capacity,
            owed: Vec::with_capacity(max_conns.saturating_mul(2)),
            owed_closed: Vec::with_capacity(max_conns.saturating_mul(2)),
            dirty: Vec::with_capacity(max_conns),
            pending_rsts: Vec::with_capacity(max_conns.min(65536)),
            pending_arps: Vec::with_capacity(max_conns.min(4096)),
            expired: Vec::with_capacity(max_conns),
            neighbors: net::NeighborCache::new(1024, FlowHasher::new(hash_secret)),
            counters: Counters::default(),
            challenge: rate_limit::ChallengeBudget::new(&isn_secret),
            cookies: syn_cookie::SynCookies::new(&isn_secret),
            last_cookie_sent: None,
            half_open_limit: ((max_conns as u64 * u64::from(config.half_open_percent)) / 100)
                .clamp(1, u64::from(u32::MAX)) as u32,
            next_port: vec![config.ephemeral_ports.0; config.addresses.len()],
            ip_ident: 0,
            clock: now,
            rto_bounds: RtoBounds::new(config.rto_min, config.rto_max),
            time_wait_span: config.msl.saturating_mul(2),
            arp_waiting: 0,
            rcv_shift: if config.window_scaling { rcv_shift } else { 0 },
            conns,
            free_conns,
            pool,
            config,
        };
        if engine.config.prefault {
            engine.prefault();
        }
        Ok(engine)
    }

    /// Faults the engine's tables and buffers in now (see [`EngineConfig::prefault`]); `false` if the kernel could
    /// not (they are then faulted on first use, as without).
    pub fn prefault(&mut self) -> bool {
        self.flows.populate()
            & self.time_wait.populate()
            & self.wheel.populate()
            & self.pool.populate()
            & crate::mem::populate_capacity(&self.dirty)
            & crate::mem::populate_capacity(&self.expired)
            & crate::mem::populate_capacity(&self.owed)
            & crate::mem::populate_capacity(&self.owed_closed)
    }

    /// The configuration the engine runs with.
    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Connections held (every state but TIME-WAIT, including CLOSED ones not yet released by the application).
    pub fn connection_count(&self) -> usize {
        self.flows.len() - self.time_wait.len()
    }

    /// TIME-WAIT records held.
    pub fn time_wait_count(&self) -> usize {
        self.time_wait.len()
    }

    /// Timers pending: those in the wheel, and one expiry per TIME-WAIT record.
    pub fn timer_count(&self) -> usize {
        self.wheel.len() + self.time_wait.len()
    }

    /// Buffers free in the pool.
    pub fn free_buffers(&self) -> usize {
        self.pool.available()
    }

    /// Adds a static neighbour entry (an address whose MAC needs no ARP).
    pub fn add_neighbor(&mut self, addr: Ipv4Addr, mac: MacAddr) {
        self.neighbors.insert(addr, mac);
    }

    /// The next time [`Engine::handle_timeouts`] has work, if any: never later than the earliest deadline, and
    /// O(1) (a poll loop asks every turn). It can be early, after a TIME-WAIT record left before its time; a
    /// `handle_timeouts` then finds nothing due and the next answer is exact.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.wheel.next_deadline(), self.time_wait.next_expiry()) {
            (Some(wheel), Some(time_wait)) => Some(wheel.min(time_wait)),
            (wheel, time_wait) => wheel.or(time_wait),
        }
    }

    /// The next application event.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.events.is_empty() && !(self.owed.is_empty() && self.owed_closed.is_empty()) {
            self.raise_owed();
        }
        let event = self.events.pop_front();
        if event.is_none() {
            // Drained: start the ring over at its first slot, so the queue lives in the same few cache lines
            // instead of walking its whole capacity (perf put most of `push_event`'s samples on its store into
            // a line not touched since the last lap).
            self.events.clear();
        }
        event
    }

    // ----- application calls -------------------------------------------------------------------------------

    /// Listens on `port` on every address of the engine (RFC 9293 §3.10.1 passive OPEN). `backlog` bounds the
    /// connections in SYN-RECEIVED at once; SYNs beyond are dropped and counted (`drop_backlog_full`).
    pub fn listen(&mut self, port: Port, backlog: u32) -> Result<ListenerHandle, Error> {
        if self.listeners.iter().any(|l| l.active && l.port == port) {
            return Err(Error::PortInUse);
        }
        let listener = Listener {
            port,
            backlog: backlog.max(1),
            half_open: 0,
            active: true,
        };
        let index = match self.listeners.iter().position(|l| !l.active && l.half_open == 0) {
            Some(i) => {
                self.listeners[i] = listener;
                i
            }
            None if self.listeners.len() < self.config.max_listeners => {
                self.listeners.push(listener);
                self.listeners.len() - 1
            }
            None => return Err(Error::ListenerTableFull),
        };
        Ok(ListenerHandle {
            index: index as u32,
            port,
        })
    }

    /// Stops listening. Connections already accepted or half-open go on.
    pub fn unlisten(&mut self, listener: ListenerHandle) {
        if let Some(l) = self.listeners.get_mut(listener.index as usize) {
            if l.port == listener.port {
                l.active = false;
            }
        }
    }

    /// Opens a connection (RFC 9293 §3.10.1 active OPEN). A local port of 0 picks a free ephemeral port; a
    /// 4-tuple in TIME-WAIT is reused only as RFC 6191 allows (timestamps in use on it).
    pub fn connect(&mut self, now: Instant, local: SocketAddrV4, remote: SocketAddrV4) -> Result<ConnHandle, Error> {
        let local_addr = *local.ip();
        if !self.config.addresses.contains(&local_addr) {
            return Err(Error::NotLocalAddress);
        }
        let remote_addr = *remote.ip();
        if remote.port() == 0
            || remote_addr.is_broadcast()
            || remote_addr.is_unspecified()
            || remote_addr.is_multicast()
            || self.config.addresses.contains(&remote_addr)
        {
            return Err(Error::InvalidRemote);
        }
        let mut key = FlowKey {
            local_addr,
            remote_addr,
            local_port: Port(local.port()),
            remote_port: Port(remote.port()),
        };
        if local.port() == 0 {
            key.local_port = self.pick_port(now, key)?;
        } else {
            match self.flows.get(&key) {
                None => {}
                Some(FlowSlot::TimeWait(tw)) if self.time_wait_reusable(now, tw) => self.reuse_time_wait(tw),
                Some(_) => return Err(Error::PortInUse),
            }
        }
        let Some(index) = self.open_slot(now, key) else {
            return Err(Error::TableFull);
        };
        let tcb = &mut self.conns[index as usize];
        tcb.transition(State::SynSent);
        match self.neighbors.get(remote_addr) {
            Some(mac) => tcb.remote_mac = mac,
            None => {
                tcb.flags.insert(Flags::AWAIT_ARP);
                self.arp_waiting += 1;
                tcb.arp_at = Deadline::at(now + self.config.arp_retry_interval);
                self.queue_arp(local_addr, remote_addr);
            }
        }
        self.counters.active_opens += 1;
        self.mark_dirty(index);
        Ok(ConnHandle {
            index,
            generation: self.conns[index as usize].generation,
        })
    }

    /// Queues `data` for sending (RFC 9293 §3.10.2); returns how much was taken, which may be less than asked
    /// when the send buffer fills (a `Writable` event follows when space frees).
    pub fn send(&mut self, conn: ConnHandle, data: &[u8]) -> Result<usize, Error> {
        let index = self.check(conn)?;
        let tcb = &mut self.conns[index as usize];
        let open = matches!(tcb.state, State::SynSent | State::SynReceived) || tcb.state.can_send();
        if !open || tcb.flags.contains(Flags::FIN_QUEUED) {
            return Err(Error::NotWritable);
        }
        if data.is_empty() {
            return Ok(0);
        }
        let taken = tcb.tx.enqueue_slice(&mut self.pool, data);
        if taken < data.len() {
            tcb.flags.insert(Flags::WANT_WRITABLE);
        }
        if taken == 0 {
            return Err(if tcb.tx.has_chunk() {
                Error::WouldBlock
            } else {
                Error::NoBuffer
            });
        }
        self.mark_dirty(index);
        Ok(taken)
    }

    /// Reads received data (RFC 9293 §3.10.3). `Ok(0)` means the peer closed and everything was read;
    /// `Err(WouldBlock)` means nothing is buffered yet.
    pub fn recv(&mut self, conn: ConnHandle, buf: &mut [u8]) -> Result<usize, Error> {
        let index = self.check(conn)?;
        let tcb = &mut self.conns[index as usize];
        tcb.flags.remove(Flags::READABLE_SENT);
        let before = tcb.rcv_window();
        let n = tcb.rx.dequeue_slice(&mut self.pool, buf);
        if n == 0 {
            let eof = tcb.flags.contains(Flags::PEER_FIN) || tcb.state == State::Closed;
            return if eof || buf.is_empty() {
                Ok(0)
            } else {
                Err(Error::WouldBlock)
            };
        }
        // Receiver-side silly window avoidance (RFC 9293 §3.8.6.2.2): announce a reopened window only once it
        // has grown by min(buffer/2, MSS).
        let after = tcb.rcv_window();
        let advertised = tcb.rcv_adv.since(tcb.rcv_nxt);
        let threshold = (tcb.rx.capacity() as u32 / 2).min(u32::from(self.config.mss));
        if tcb.state.can_receive() && after.saturating_sub(advertised) >= threshold && after > before {
            tcb.flags.insert(Flags::WINDOW_UPDATE);
            self.mark_dirty(index);
        }
        Ok(n)
    }

    /// Bytes waiting to be read.
    pub fn recv_queue(&self, conn: ConnHandle) -> Result<usize, Error> {
        let index = self.check(conn)?;
        Ok(self.conns[index as usize].rx.len())
    }

    /// Bytes queued and not yet acknowledged.
    pub fn send_queue(&self, conn: ConnHandle) -> Result<usize, Error> {
        let index = self.check(conn)?;
        Ok(self.conns[index as usize].tx.len())
    }

    /// Closes the write side (RFC 9293 §3.10.4 CLOSE): a FIN follows the queued data. Reading goes on.
    pub fn shutdown(&mut self, conn: ConnHandle) -> Result<(), Error> {
        let index = self.check(conn)?;
        let tcb = &mut self.conns[index as usize];
        match tcb.state {
            State::SynSent | State::SynReceived | State::Established | State::CloseWait => {
                tcb.flags.insert(Flags::FIN_QUEUED);
                self.mark_dirty(index);
            }
            _ => {}
        }
        Ok(())
    }

    /// Releases the handle: the write side is shut down and the engine finishes the close on its own
    /// (FIN, TIME-WAIT). Unread data, or data arriving afterwards, resets the connection, as RFC 9293 SHLD-3
    /// and Linux do. The handle is stale afterwards.
    pub fn close(&mut self, conn: ConnHandle) -> Result<(), Error> {
        let index = self.check(conn)?;
        let linger_at = self.clock + self.config.fin_wait2_timeout;
        let tcb = &mut self.conns[index as usize];
        tcb.flags.insert(Flags::APP_CLOSED);
        match tcb.state {
            State::FinWait2 => {
                tcb.linger_at = Deadline::at(linger_at);
                self.mark_dirty(index);
            }
            State::Closed => self.free_conn(index),
            // RFC 9293 §3.10.4: in SYN-SENT, delete the TCB.
            State::SynSent => self.free_conn(index),
            State::Established | State::CloseWait if !tcb.rx.is_empty() => {
                self.reset_conn(index, CloseReason::Aborted);
            }
            _ => {
                tcb.flags.insert(Flags::FIN_QUEUED);
                self.mark_dirty(index);
            }
        }
        Ok(())
    }

    /// Aborts (RFC 9293 §3.10.5 ABORT): a RST goes out with the next `poll_transmit` in synchronized states and
    /// the handle is released at once.
    pub fn abort(&mut self, conn: ConnHandle) -> Result<(), Error> {
        let index = self.check(conn)?;
        self.conns[index as usize].flags.insert(Flags::APP_CLOSED);
        self.counters.aborted_by_app += 1;
        self.reset_conn(index, CloseReason::Aborted);
        Ok(())
    }

    /// Turns Nagle's algorithm off (`true`) or on for one connection (RFC 9293 MUST-17).
    pub fn set_nodelay(&mut self, conn: ConnHandle, nodelay: bool) -> Result<(), Error> {
        let index = self.check(conn)?;
        let flags = &mut self.conns[index as usize].flags;
        if nodelay {
            flags.insert(Flags::NO_DELAY)
        } else {
            flags.remove(Flags::NO_DELAY)
        }
        Ok(())
    }

    /// The connection's state.
    pub fn state(&self, conn: ConnHandle) -> Result<State, Error> {
        Ok(self.conns[self.check(conn)? as usize].state)
    }

    /// The connection's 4-tuple.
    pub fn flow(&self, conn: ConnHandle) -> Result<FlowKey, Error> {
        Ok(self.conns[self.check(conn)? as usize].key)
    }

    fn check(&self, conn: ConnHandle) -> Result<u32, Error> {
        match self.conns.get(conn.index as usize) {
            Some(tcb)
                if tcb.generation == conn.generation
                    && !tcb.flags.contains(Flags::APP_CLOSED)
                    && tcb.state != State::Listen =>
            {
                Ok(conn.index)
            }
            _ => Err(Error::InvalidHandle),
        }
    }

    fn clear_await_arp(&mut self, index: u32) {
        let flags = &mut self.conns[index as usize].flags;
        if flags.contains(Flags::AWAIT_ARP) {
            flags.remove(Flags::AWAIT_ARP);
            self.arp_waiting -= 1;
        }
    }

    // ----- slab, dirty list, timers --------------------------------------------------------------------------

    #[inline]
    fn mark_dirty(&mut self, index: u32) {
        let flags = &mut self.conns[index as usize].flags;
        if !flags.contains(Flags::DIRTY) {
            flags.insert(Flags::DIRTY);
            self.dirty.push(index);
        }
    }

    /// Makes sure the wheel wakes the connection no later than its earliest deadline.
    ///
    /// Lazily, like Linux's retransmission timer: most segments move a deadline later (the RTO restarts on every
    /// ACK), and moving a wheel entry costs an unlink and an insert each time. So a timer already armed no later
    /// than the new deadline stays where it is; when it fires early, [`Engine::on_conn_timer`] finds nothing due
    /// and the connection is rearmed on the next `poll_transmit`. A connection left without any deadline has its
    /// timer cancelled, so idle connections cost the wheel nothing (a million of them would otherwise each wake
    /// once for nothing).
    ///
    /// The first arm of a handshake (our SYN or SYN-ACK just went out) is no later than `RTO.min` from now. Every
    /// RTO the connection sets afterwards is at least that far off (RFC 6298 §2.4: the RTO is never below its
    /// minimum), so the first data segment's RTO, which usually replaces the 1 s initial one (§2.1) with an earlier
    /// deadline, needs no reschedule: a short connection saves a wheel move on each side. The RTO itself still
    /// fires exactly when due; the price is one early wakeup that finds nothing due, once per connection, when
    /// the handshake or the connection outlasts `RTO.min`.
    #[inline]
    fn rearm(&mut self, now: Instant, index: u32) {
        let id = TimerId(index);
        let min_rto = self.rto_bounds.min_micros();
        let tcb = &mut self.conns[index as usize];
        let next = tcb.next_deadline();
        let next = match next {
            Some(at)
                if matches!(tcb.state, State::SynSent | State::SynReceived)
                    && !tcb.flags.contains(Flags::HANDSHAKE_WAKE) =>
            {
                tcb.flags.insert(Flags::HANDSHAKE_WAKE);
                Some(at.min(Instant::from_micros(now.as_micros().saturating_add(min_rto))))
            }
            other => other,
        };
        match next {
            Some(at) => {
                if self.wheel.deadline(id).is_none_or(|armed| armed > at) {
                    self.wheel.schedule(id, at);
                }
            }
            None => self.wheel.cancel(id),
        }
    }

    /// Returns a slot to the free list: buffers back to the pool, flow entry and timer removed, generation bumped
    /// so old handles go stale.
    fn free_conn(&mut self, index: u32) {
        let state = self.conns[index as usize].state;
        if state == State::Listen {
            return; // already free
        }
        // CLOSED comes only from end_conn, which already removed the flow entry (only open_slot, on a free slot,
        // inserts one), cleared AWAIT_ARP, the listener's backlog share and the deadlines, and cancelled the
        // timer; nothing re-arms a CLOSED control block (no segment reaches it, `on_conn_timer` skips it, `rearm`
        // finds no deadline). So that half of the work is skipped, including hashing the key again.
        if state != State::Closed {
            self.clear_await_arp(index);
            let tcb = &mut self.conns[index as usize];
            if let Some(l) = tcb.listener.take() {
                self.release_half_open(l);
            }
            let tcb = &mut self.conns[index as usize];
            self.flows.remove_if(&tcb.key, FlowSlot::Conn(index));
            tcb.clear_timers();
            self.wheel.cancel(TimerId(index));
        }
        let tcb = &mut self.conns[index as usize];
        debug_assert!(tcb.next_deadline().is_none() && tcb.listener.is_none());
        tcb.tx.release(&mut self.pool);
        tcb.rx.release(&mut self.pool);
        tcb.state = State::Listen; // "free" marker: no control block is ever in LISTEN
        tcb.generation = tcb.generation.wrapping_add(1);
        tcb.flags = Flags::default();
        self.free_conns.push(index);
    }

    /// A passive connection leaves SYN-RECEIVED (established, or gone): its listener's backlog share goes down.
    fn release_half_open(&mut self, listener: u32) {
        if let Some(l) = self.listeners.get_mut(listener as usize) {
            l.half_open = l.half_open.saturating_sub(1);
        }
    }

    /// Passive connections in SYN-RECEIVED, all listeners together (a handful of listeners: summed on demand).
    fn half_open(&self) -> u32 {
        self.listeners.iter().map(|l| l.half_open).sum()
    }

    /// Ends the protocol side of a connection with `reason`, telling the application; the slot is freed now if
    /// the application has released it, else when it calls `close`.
    fn finish_conn(&mut self, index: u32, reason: CloseReason) {
        // The flow entry goes now so a new connection can use the 4-tuple; the slot may stay for leftover reads.
        let key = self.conns[index as usize].key;
        self.flows.remove_if(&key, FlowSlot::Conn(index));
        self.end_conn(index, reason);
    }

    /// [`Engine::finish_conn`] once the flow entry no longer names the connection (removed, or handed over).
    fn end_conn(&mut self, index: u32, reason: CloseReason) {
        self.clear_await_arp(index);
        let tcb = &mut self.conns[index as usize];
        let was_passive_half_open = tcb.is_passive_half_open();
        match reason {
            CloseReason::Normal => self.counters.closed_normal += 1,
            CloseReason::Reset | CloseReason::Refused | CloseReason::DataAfterClose => self.counters.closed_reset += 1,
            _ => {}
        }
        tcb.state = State::Closed;
        tcb.clear_timers();
        if let Some(l) = tcb.listener.take() {
            self.release_half_open(l);
        }
        let app_closed = self.conns[index as usize].flags.contains(Flags::APP_CLOSED);
        self.wheel.cancel(TimerId(index));
        // A passive connection the application never saw goes back to LISTEN silently (RFC 9293 §3.10.7.4).
        if !was_passive_half_open && !self.push_event(index, EventKind::Closed { reason }) {
            self.owe_closed(index, reason, app_closed);
        }
        if app_closed || was_passive_half_open {
            self.free_conn(index);
        } else {
            // Send buffer is useless now; keep the receive buffer for leftover reads.
            let tcb = &mut self.conns[index as usize];
            tcb.tx.release(&mut self.pool);
        }
    }

    /// Resets a connection: a RST goes out (in states where the peer knows of it) and the connection ends.
    fn reset_conn(&mut self, index: u32, reason: CloseReason) {
        let tcb = &self.conns[index as usize];
        if tcb.state.is_synchronized() || tcb.state == State::SynReceived {
            let rst = PendingRst {
                key: tcb.key,
                remote_mac: tcb.remote_mac,
                seq: tcb.snd_max,
                ack: Some(tcb.rcv_nxt),
            };
            self.queue_rst(rst);
        }
        self.finish_conn(index, reason);
    }

    /// Queues a RST for the next `poll_transmit` (the queue never grows: a full one drops, counted).
    fn queue_rst(&mut self, rst: PendingRst) {
        if self.pending_rsts.len() < self.pending_rsts.capacity() {
            self.pending_rsts.push(rst);
        } else {
            self.counters.drop_rst_queue_full += 1;
        }
    }

    /// Queues an ARP request for the next `poll_transmit` (the queue never grows: a full one drops, counted).
    fn queue_arp(&mut self, local: Ipv4Addr, remote: Ipv4Addr) {
        if self.pending_arps.len() < self.pending_arps.capacity() {
            self.pending_arps.push((local, remote));
        } else {
            self.counters.drop_arp_queue_full += 1;
        }
    }

    /// Moves a connection whose FINs are both acknowledged into a compact TIME-WAIT record (RFC 9293 §3.10.7.4,
    /// MUST-13), releasing its control block. The record expires 2*MSL from now (see `expire_time_wait`).
    fn enter_time_wait(&mut self, index: u32) {
        self.counters.time_wait_entered += 1;
        let tcb = &self.conns[index as usize];
        let record = time_wait::TimeWait {
            key: tcb.key,
            snd_nxt: tcb.snd_nxt,
            rcv_nxt: tcb.rcv_nxt,
            ts_recent: tcb.ts.map(|t| t.recent),
            ts_offset: tcb.ts.map_or(0, |t| t.offset),
            window: output::window_field(tcb),
            remote_mac: tcb.remote_mac,
        };
        let key = tcb.key;
        let tw = if self.config.msl.is_zero() {
            self.counters.time_wait_skipped += 1;
            None
        } else {
            let tw = self.time_wait.insert(record, self.time_wait_expiry());
            if tw.is_none() {
                self.counters.time_wait_overflow += 1;
            }
            tw
        };
        match tw {
            // The record takes the connection's place in the flow table: one probe, no remove and insert.
            Some(tw) if self.flows.replace(&key, FlowSlot::Conn(index), FlowSlot::TimeWait(tw)) => {
                self.end_conn(index, CloseReason::Normal);
            }
            Some(tw) => {
                // No entry to take over (cannot happen for a live connection); keep the table consistent.
                self.time_wait.remove(tw);
                self.counters.time_wait_overflow += 1;
                self.finish_conn(index, CloseReason::Normal);
            }
            None => self.finish_conn(index, CloseReason::Normal),
        }
    }

    /// When a TIME-WAIT wait that starts now ends: 2*MSL from the engine's clock, which never goes back, so
    /// records expire in the order they entered (or restarted) their wait, as the expiry queue needs. Rounded up
    /// to the timer tick, as the wheel's timers are: the records of a tick expire together, in one
    /// `handle_timeouts`, instead of one call each when connections end one at a time.
    fn time_wait_expiry(&self) -> Instant {
        let tick = u64::try_from(self.config.timer.tick.as_micros())
            .unwrap_or(u64::MAX)
            .max(1);
        let end = (self.clock + self.time_wait_span).as_micros();
        Instant::from_micros(end.div_ceil(tick).saturating_mul(tick))
    }

    /// Removes a TIME-WAIT record whose 4-tuple a new connection takes (RFC 6191).
    fn reuse_time_wait(&mut self, tw: u32) {
        if let Some(record) = self.time_wait.get(tw) {
            let key = record.key;
            self.flows.remove_if(&key, FlowSlot::TimeWait(tw));
            self.time_wait.remove(tw);
            self.counters.time_wait_reused += 1;
        }
    }

    /// Restarts a TIME-WAIT record's 2*MSL wait (RFC 9293 §3.10.7.4: the peer's FIN came again).
    fn restart_time_wait(&mut self, tw: u32) {
        let expires = self.time_wait_expiry();
        self.time_wait.restart(tw, expires);
    }

    /// Ends the TIME-WAIT records whose 2*MSL has passed, oldest first, in batches. Each record and its
    /// flow-table entry were written 2*MSL ago and are long out of cache: the expiry queue names the next
    /// records, so a first pass prefetches them, a second (their keys at hand) their flow buckets, and the misses
    /// overlap instead of coming one after another.
    fn expire_time_wait(&mut self, now: Instant) {
        // Batches double from 2 up to 16: a call that ends one record prefetches little it does not need.
        let mut batch = 2;
        loop {
            if !self.time_wait.head_due(now) {
                return;
            }
            self.time_wait.prefetch_next(batch);
            let mut due = 0;
            for record in self.time_wait.due(now, batch) {
                self.flows.prefetch(&record.key);
                due += 1;
            }
            for _ in 0..due {
                let Some((tw, key)) = self.time_wait.pop_due(now) else {
                    break;
                };
                self.flows.remove_if(&key, FlowSlot::TimeWait(tw));
                self.counters.time_wait_expired += 1;
            }
            batch = (batch * 2).min(16);
        }
    }

    /// Whether our own TIME-WAIT record may give its 4-tuple to a new active open: timestamps were in use, so
    /// the peer can tell our new SYN from old duplicates (RFC 6191 §2), and `time_wait_reuse_delay` has passed
    /// (at least a millisecond, so our TSval has moved on).
    fn time_wait_reusable(&self, now: Instant, tw: u32) -> bool {
        if !self.config.time_wait_reuse {
            return false;
        }
        let (Some(record), Some(expires)) = (self.time_wait.get(tw), self.time_wait.expires(tw)) else {
            return false;
        };
        if record.ts_recent.is_none() {
            return false;
        }
        // When the record entered TIME-WAIT, or last restarted its wait (up to one tick late: the expiry was
        // rounded up to the tick, so the delay is measured conservatively).
        let entered = expires - self.time_wait_span;
        let delay = self
            .config
            .time_wait_reuse_delay
            .max(core::time::Duration::from_millis(1));
        now.saturating_since(entered) >= delay
    }

    /// How many ports ahead of the one it picks `pick_port` prefetches a flow bucket. One port ahead left half of
    /// `connect`'s time in that bucket's miss when connects come in a burst (a load generator's round).
    const PORT_PREFETCH_AHEAD: u32 = 8;

    /// Picks a local port for `key` from the ephemeral range: the first one whose 4-tuple is free or in a
    /// reusable TIME-WAIT.
    fn pick_port(&mut self, now: Instant, key: FlowKey) -> Result<Port, Error> {
        let (lo, hi) = self.config.ephemeral_ports;
        let span = u32::from(hi - lo) + 1;
        let source = self
            .config
            .addresses
            .iter()
            .position(|a| *a == key.local_addr)
            .unwrap_or(0);
        for _ in 0..span {
            let cursor = &mut self.next_port[source];
            let port = *cursor;
            let next = if port >= hi { lo } else { port + 1 };
            *cursor = next;
            let candidate = FlowKey {
                local_port: Port(port),
                ..key
            };
            match self.flows.get(&candidate) {
                None => {
                    // A load generator's next connections most likely go to the same peer from the next ports:
                    // start the bucket (random, likely cold) of the port a few connects ahead on its way now, so
                    // it has arrived when that connect probes it. One prefetch per connect covers every port.
                    let ahead = u32::from(port - lo) + Self::PORT_PREFETCH_AHEAD;
                    let ahead = if ahead >= span { ahead % span } else { ahead };
                    self.flows.prefetch(&FlowKey {
                        local_port: Port(lo + ahead as u16),
                        ..key
                    });
                    return Ok(Port(port));
                }
                Some(FlowSlot::TimeWait(tw)) if self.time_wait_reusable(now, tw) => {
                    self.reuse_time_wait(tw);
                    return Ok(Port(port));
                }
                Some(_) => {}
            }
        }
        Err(Error::NoFreePort)
    }

    /// Takes a free slot for a new connection on `key`: flow-table entry, RFC 6528 ISS and timestamp offset, a
    /// fresh control block (state LISTEN, the free marker; the caller moves it on). `None`, counted, when the
    /// connection or flow table is full.
    fn open_slot(&mut self, now: Instant, key: FlowKey) -> Option<u32> {
        let Some(index) = self.free_conns.pop() else {
            self.counters.drop_table_full += 1;
            return None;
        };
        if self.flows.insert(key, FlowSlot::Conn(index)).is_err() {
            self.free_conns.push(index);
            self.counters.drop_table_full += 1;
            return None;
        }
        let (iss, ts_offset) = self.isn.isn_and_ts_offset(
            (key.local_addr, key.local_port),
            (key.remote_addr, key.remote_port),
            now,
        );
        self.conns[index as usize].open(key, iss, &self.config, self.rcv_shift, ts_offset);
        Some(index)
    }

    /// Runs the timers due at `now`: retransmissions, delayed ACKs, persist and keep-alive probes, ARP retries,
    /// TIME-WAIT expiry. Output goes out with the next `poll_transmit`.
    pub fn handle_timeouts(&mut self, now: Instant) {
        self.clock = self.clock.max(now);
        self.expire_time_wait(now);
        let mut expired = core::mem::take(&mut self.expired);
        self.wheel.advance(now, |id| expired.push(id));
        for id in expired.drain(..) {
            self.on_conn_timer(now, id.0);
        }
        self.expired = expired;
    }

    /// Sends everything due: for each connection touched since the last call, its ACKs, data, FIN or SYN; then
    /// RSTs for aborted connections and ARP requests.
    ///
    /// When the sink is full (`TxRefused::Full`) the pass stops there: the connection it was on and all that
    /// come after it stay queued, in order, for the next call, and nothing refused is lost or spun on.
    pub fn poll_transmit<S: TxSink>(&mut self, now: Instant, tx: &mut S) {
        self.clock = self.clock.max(now);
        let mut done = 0;
        let mut full = false;
        while done < self.dirty.len() {
            let index = self.dirty[done];
            self.conns[index as usize].flags.remove(Flags::DIRTY);
            if self.conns[index as usize].state == State::Listen {
                done += 1;
                continue; // freed since it was marked
            }
            let sent = self.transmit_conn(now, index, tx);
            if self.conns[index as usize].state != State::Listen {
                self.rearm(now, index);
            }
            if sent.is_err() {
                self.conns[index as usize].flags.insert(Flags::DIRTY);
                full = true;
                break;
            }
            done += 1;
        }
        self.dirty.drain(..done);
        if full {
            return;
        }
        let mut sent = 0;
        while let Some(&rst) = self.pending_rsts.get(sent) {
            if self.send_rst(tx, rst) == Err(TxRefused::Full) {
                break;
            }
            sent += 1;
        }
        self.pending_rsts.drain(..sent);
        if !self.pending_rsts.is_empty() {
            return;
        }
        let mut sent = 0;
        while let Some(&(local, remote)) = self.pending_arps.get(sent) {
            if self.request_neighbor(now, local, remote, tx) == Err(TxRefused::Full) {
                break;
            }
            sent += 1;
        }
        self.pending_arps.drain(..sent);
    }
}

impl Tcb {
    /// A free slot's control block, with its (chunkless) buffers.
    fn empty(pool: &BufferPool, config: &EngineConfig) -> Tcb {
        let unspecified = Ipv4Addr::UNSPECIFIED;
        Tcb {
            state: State::Listen,
            flags: Flags::default(),
            generation: 0,
            key: FlowKey {
                local_addr: unspecified,
                remote_addr: unspecified,
                local_port: Port(0),
                remote_port: Port(0),
            },
            remote_mac: MacAddr::ZERO,
            listener: None,
            iss: SeqNum(0),
            snd_una: SeqNum(0),
            snd_nxt: SeqNum(0),
            snd_max: SeqNum(0),
            snd_wnd: 0,
            snd_wl1: SeqNum(0),
            snd_wl2: SeqNum(0),
            max_snd_wnd: 0,
            snd_fin: None,
            snd_shift: 0,
            rcv_shift: 0,
            wscale_ok: false,
            mss: 536,
            irs: SeqNum(0),
            rcv_nxt: SeqNum(0),
            rcv_adv: SeqNum(0),
            fin_pending: None,
            ts: None,
            sack_ok: false,
            tx: RingBuffer::new(pool),
            rx: RingBuffer::new(pool),
            ooo: Assembler::new(),
            rtt: RttEstimator::new(config.rto_initial),
            rtt_probe: None,
            retries: 0,
            cc: Congestion {
                cwnd: 0,
                ssthresh: u32::MAX,
                dup_acks: 0,
                recover: None,
            },
            unacked_segments: 0,
            last_oow_ack: 0,
            owed_close: CloseReason::Normal,
            rto_at: Deadline::NONE,
            delack_at: Deadline::NONE,
            persist_at: Deadline::NONE,
            keepalive_at: Deadline::NONE,
            arp_at: Deadline::NONE,
            linger_at: Deadline::NONE,
        }
    }

    /// Initializes a free slot for a new connection with ISS `iss` (state set by the caller).
    fn open(&mut self, key: FlowKey, iss: SeqNum, config: &EngineConfig, rcv_shift: u8, ts_offset: u32) {
        debug_assert!(self.tx.is_empty() && self.rx.is_empty() && self.state == State::Listen);
        self.flags = if config.nagle {
            Flags::default()
        } else {
            Flags::NO_DELAY
        };
        self.key = key;
        self.remote_mac = MacAddr::ZERO;
        self.listener = None;
        self.iss = iss;
        self.snd_una = iss;
        self.snd_nxt = iss;
        self.snd_max = iss;
        self.snd_wnd = 0;
        self.snd_wl1 = SeqNum(0);
        self.snd_wl2 = SeqNum(0);
        self.max_snd_wnd = 0;
        self.snd_fin = None;
        self.snd_shift = 0;
        self.rcv_shift = rcv_shift;
        self.wscale_ok = config.window_scaling;
        // Until the peer's MSS option says otherwise, assume the IPv4 default (RFC 9293 MUST-15).
        self.mss = 536;
        self.irs = SeqNum(0);
        self.rcv_nxt = SeqNum(0);
        self.rcv_adv = SeqNum(0);
        self.fin_pending = None;
        self.ts = config.timestamps.then_some(tcb::Timestamps {
            recent: 0,
            offset: ts_offset,
        });
        self.sack_ok = config.sack;
        self.ooo.clear();
        self.rtt = RttEstimator::new(config.rto_initial);
        self.rtt_probe = None;
        self.retries = 0;
        self.cc = Congestion {
            cwnd: 0,
            ssthresh: u32::MAX,
            dup_acks: 0,
            recover: None,
        };
        self.unacked_segments = 0;
        self.last_oow_ack = 0;
        self.clear_timers();
    }

    fn clear_timers(&mut self) {
        self.rto_at = Deadline::NONE;
        self.delack_at = Deadline::NONE;
        self.persist_at = Deadline::NONE;
        self.keepalive_at = Deadline::NONE;
        self.arp_at = Deadline::NONE;
        self.linger_at = Deadline::NONE;
    }
}
