//! A deterministic network simulator for the engine, after TigerBeetle's VOPR, s2n-quic's simulator and
//! quinn's `Pair`: two engines (a client at 198.18.0.1, a server at 198.18.0.2) joined by a simulated link on
//! virtual time, with applications on both ends that check every byte.
//!
//! Everything random comes from one seed through the simulator's own [`Rng`], and the engines are built with
//! secrets derived from it, so a seed replays exactly: a failing run prints its seed and the command that
//! replays it. The link drops, duplicates, delays, reorders and corrupts frames and opens temporary full
//! partitions, as [`SimConfig`] says; [`run`] then checks that every connection ended cleanly (or, where loss is
//! high enough to allow it, was aborted for a recorded reason), that each side received exactly what the other
//! sent, in order, once, that every corrupted frame was caught by a checksum, and that the engines gave back
//! every connection, TIME-WAIT record, timer and buffer.
//!
//! The loop follows the engine's poll-loop contract: advance virtual time to the next frame delivery, wake-up
//! or engine timeout; `handle_frame` each due frame; let the applications react to the events;
//! `handle_timeouts`; `poll_transmit`; repeat, bounded by a virtual-time limit and a step limit.

mod app;
mod link;
mod rng;

use core::fmt;
use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

pub use rng::Rng;

use crate::engine::{BuildError, CloseReason, Counters, Engine, EngineConfig, Error as EngineError, SynCookieMode};
use crate::isn::Secret;
use crate::time::Instant;
use crate::wire::Port;
use crate::wire::ethernet::MacAddr;
use app::{ClientApp, Ctx, ServerApp};
use link::{Item, Link, Wake};

/// The client's address.
pub const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
/// The server's address.
pub const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
/// The client's MAC address (locally administered).
pub const CLIENT_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
/// The server's MAC address (locally administered).
pub const SERVER_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);
/// The port the server listens on.
pub const SERVER_PORT: u16 = 80;
/// The environment variable the replay test reads the seed from.
pub const SEED_ENV: &str = "SYNACK_SIM_SEED";

/// One end of the simulated link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The active opener, at [`CLIENT_IP`].
    Client,
    /// The listener, at [`SERVER_IP`].
    Server,
}

impl Side {
    /// The other end.
    pub fn peer(self) -> Side {
        match self {
            Side::Client => Side::Server,
            Side::Server => Side::Client,
        }
    }

    fn index(self) -> usize {
        match self {
            Side::Client => 0,
            Side::Server => 1,
        }
    }
}

/// Who closes a connection first: each order drives the engine through a different path of RFC 9293's state
/// diagram (§3.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseMode {
    /// The client closes once it has the whole response; the server closes on its FIN. The client ends in
    /// TIME-WAIT.
    ClientFirst,
    /// The server closes (or, some of the time, shuts down its write side and reads on) right after queueing the
    /// response; the client reads to end of stream, then closes. The server ends in TIME-WAIT.
    ServerFirst,
    /// Both shut down their write side at about the same time (the client on the last response byte, the
    /// server one link delay after queueing it), then read to end of stream: often both FINs cross (CLOSING).
    Simultaneous,
    /// The client shuts down its write side right after the request (half-close) and keeps reading the response
    /// to end of stream; the server answers and closes.
    HalfClose,
}

impl CloseMode {
    /// Every mode.
    pub const ALL: [CloseMode; 4] = [
        CloseMode::ClientFirst,
        CloseMode::ServerFirst,
        CloseMode::Simultaneous,
        CloseMode::HalfClose,
    ];
}

/// What to simulate: the link's impairments, the workload, and the engine settings that matter for it.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    /// Seeds everything random: the link, both applications, and the engines' secrets.
    pub seed: u64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame copy is held back by up to `reorder_delay` more (so later frames overtake it).
    pub reorder: f64,
    /// The most extra delay of a reordered frame.
    pub reorder_delay: Duration,
    /// Probability that a frame copy has bits flipped (IPv4 frames only; see the link's docs).
    pub corrupt: f64,
    /// One-way delay of every frame.
    pub delay: Duration,
    /// Extra random delay of each frame, in `0..=jitter` (frames overtake each other when it exceeds their
    /// spacing).
    pub jitter: Duration,
    /// Probability, per frame sent, that a full partition starts: every frame either way is dropped for a while.
    pub partition: f64,
    /// The longest a partition lasts (each lasts between half of this and all of it). After one ends, no other
    /// starts for this long: partitions are short outages, never one long one (which, beyond 2*MSL, would
    /// legitimately end connections with timeouts and resets).
    pub partition_duration: Duration,
    /// Connections the client opens in all.
    pub connections: usize,
    /// Most connections the client has open at once.
    pub concurrency: usize,
    /// The most random bytes after a request's header; some requests take several segments and overflow the
    /// send buffer.
    pub max_request: usize,
    /// The fewest random bytes after a request's header.
    pub min_request: usize,
    /// The most random bytes after a response's length prefix.
    pub max_response: usize,
    /// The fewest random bytes after a response's length prefix.
    pub min_response: usize,
    /// The close orders connections pick from (uniformly).
    pub close_modes: Vec<CloseMode>,
    /// Probability that the client queues its request right after `connect`, before `Connected`.
    pub eager_send: f64,
    /// Probability that the server, when it closes first, uses `shutdown` and reads on instead of `close`.
    pub server_shutdown: f64,
    /// The most time the client waits before opening its next connection (zero: at once).
    pub open_gap: Duration,
    /// Probability that a side of a connection reads lazily: on `Readable` it waits up to `read_delay` before
    /// reading, so receive windows fill and close (zero-window probes, window updates).
    pub slow_reader: f64,
    /// The longest a slow reader waits.
    pub read_delay: Duration,
    /// The client's ephemeral port range: a narrow one makes it reuse 4-tuples still in TIME-WAIT (RFC 6191).
    pub ephemeral_ports: (u16, u16),
    /// The engines verify checksums (turned off only to show that corruption is then caught by the checks).
    pub verify_checksums: bool,
    /// Resolve the server's MAC with ARP (else both engines get static neighbour entries).
    pub arp: bool,
    /// Connections that end other than normally (timeouts, resets) are tolerated and counted rather than
    /// failing the run: only for configurations with heavy loss.
    pub allow_aborts: bool,
    /// Send and receive buffer size of each engine (and so the largest window).
    pub buffer_size: usize,
    /// TIME-WAIT records each engine holds.
    pub max_time_wait: usize,
    /// The engines' MSS.
    pub mss: u16,
    /// The link's MTU: IPv4 packets longer than this are dropped (and fail the run).
    pub mtu: usize,
    /// The server starts its response as soon as the request's header is in, while the rest of the request still
    /// arrives: data both ways at once, so data segments leave while out-of-order data is held (SACK blocks on
    /// full-sized segments). It closes only once the whole request is in.
    pub full_duplex: bool,
    /// Maximum segment lifetime (TIME-WAIT lasts twice this); short, so runs are quick.
    pub msl: Duration,
    /// The engines' lower bound, initial value and upper bound of the RTO.
    pub rto: (Duration, Duration, Duration),
    /// RFC 7323 timestamps on both engines.
    pub timestamps: bool,
    /// RFC 7323 window scaling on both engines.
    pub window_scaling: bool,
    /// RFC 2018 SACK on both engines.
    pub sack: bool,
    /// Nagle's algorithm on both engines.
    pub nagle: bool,
    /// Delayed-ACK timeout on both engines.
    pub delayed_ack: Option<Duration>,
    /// When the server answers SYNs with SYN cookies.
    pub syn_cookies: SynCookieMode,
    /// The run fails if virtual time passes this.
    pub time_limit: Duration,
    /// The run fails after this many loop steps (a guard against livelock at a fixed time).
    pub step_limit: u64,
    /// Print every frame (with what the link did to it) and every event to stderr: for replaying a failure.
    pub trace: bool,
}

impl SimConfig {
    /// A perfect link (fixed 1 ms delay, nothing lost, duplicated, reordered or corrupted) and a small
    /// workload: the baseline the impaired configurations are built from.
    pub fn perfect(seed: u64) -> SimConfig {
        SimConfig {
            seed,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_delay: Duration::from_millis(5),
            corrupt: 0.0,
            delay: Duration::from_millis(1),
            jitter: Duration::ZERO,
            partition: 0.0,
            partition_duration: Duration::from_millis(500),
            connections: 16,
            concurrency: 4,
            max_request: 4096,
            min_request: 0,
            max_response: 4096,
            min_response: 0,
            close_modes: CloseMode::ALL.to_vec(),
            eager_send: 0.0,
            server_shutdown: 0.0,
            open_gap: Duration::ZERO,
            slow_reader: 0.0,
            read_delay: Duration::from_millis(50),
            ephemeral_ports: (32768, 60999),
            verify_checksums: true,
            arp: false,
            allow_aborts: false,
            buffer_size: 16 * 1024,
            max_time_wait: 512,
            mss: 1460,
            mtu: 1500,
            full_duplex: false,
            msl: Duration::from_secs(2),
            // The RTO's ceiling stays far under 2*MSL, as in real TCP (MSL >> RTO): a peer in LAST-ACK or
            // CLOSING whose FIN was not acknowledged retransmits it, and the TIME-WAIT record must still be there
            // to answer (else the answer is a RST). With 2*MSL = 8 ceilings, only 8 losses in a row can break it.
            rto: (
                Duration::from_millis(100),
                Duration::from_millis(300),
                Duration::from_millis(500),
            ),
            timestamps: true,
            window_scaling: true,
            sack: true,
            nagle: true,
            delayed_ack: Some(Duration::from_millis(40)),
            syn_cookies: SynCookieMode::Auto,
            time_limit: Duration::from_secs(3600),
            step_limit: 5_000_000,
            trace: false,
        }
    }

    /// The configuration the CI seeds and the replay test use: everything drawn from `seed`, so the seed alone
    /// names the run. Loss from 0 to 20%, some duplication, reordering, corruption, jitter and short
    /// partitions, a few hundred connections, and the engine's options switched on and off.
    pub fn from_seed(seed: u64) -> SimConfig {
        let mut r = Rng::new(seed ^ 0x5eed_c0de_5eed_c0de);
        let some = |r: &mut Rng, p: f64, max: f64| if r.chance(p) { r.unit() * max } else { 0.0 };
        let loss = if r.chance(0.2) { 0.0 } else { r.unit() * 0.2 };
        let delay = Duration::from_micros(r.between(50, 5000) as u64);
        let jitter = if r.chance(0.3) {
            Duration::ZERO
        } else {
            Duration::from_micros(r.between(0, 2 * delay.as_micros() as usize) as u64)
        };
        let duplicate = some(&mut r, 0.5, 0.05);
        let reorder = some(&mut r, 0.5, 0.1);
        let corrupt = some(&mut r, 0.5, 0.05);
        let partition = some(&mut r, 0.3, 0.002);
        let buffer_size = [4096, 8192, 16 * 1024, 64 * 1024, 256 * 1024][r.below(5) as usize];
        let concurrency = r.between(1, 16);
        // A quarter of the runs get a narrow port range, so the client reuses 4-tuples in TIME-WAIT.
        let ephemeral_ports = if r.chance(0.25) {
            (40000, 40000 + 2 * concurrency as u16 + 4)
        } else {
            (32768, 60999)
        };
        SimConfig {
            seed,
            loss,
            duplicate,
            reorder,
            reorder_delay: Duration::from_micros(r.between(100, 20_000) as u64),
            corrupt,
            delay,
            jitter,
            partition,
            partition_duration: Duration::from_millis(r.between(20, 800) as u64),
            connections: r.between(200, 300),
            concurrency,
            ephemeral_ports,
            max_request: r.between(0, 40_000),
            max_response: r.between(0, 40_000),
            eager_send: 0.3,
            server_shutdown: 0.5,
            open_gap: Duration::from_micros(r.between(0, 2000) as u64),
            slow_reader: some(&mut r, 0.5, 0.5),
            read_delay: Duration::from_millis(r.between(1, 200) as u64),
            arp: r.chance(0.5),
            allow_aborts: loss >= 0.1,
            buffer_size,
            mss: if r.chance(0.8) {
                1460
            } else {
                r.between(536, 1460) as u16
            },
            timestamps: r.chance(0.8),
            window_scaling: r.chance(0.8),
            sack: r.chance(0.8),
            nagle: r.chance(0.5),
            delayed_ack: if r.chance(0.7) {
                Some(Duration::from_millis(r.between(1, 100) as u64))
            } else {
                None
            },
            // Drawn last, so every earlier draw (and the runs they named) is as before.
            full_duplex: r.chance(0.3),
            ..SimConfig::perfect(seed)
        }
    }

    /// `from_seed`'s workload with every SYN answered by a SYN cookie, over a link that neither loses,
    /// duplicates, reorders nor corrupts: a cookie connection must then behave exactly as a kept one. (On a lossy
    /// link cookies have known, accepted failure modes: a lost third ACK whose data segments arrive out of order
    /// fails the cookie check and is reset, and a duplicated old third ACK can rebuild a connection.)
    pub fn with_cookies(seed: u64) -> SimConfig {
        SimConfig {
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            corrupt: 0.0,
            partition: 0.0,
            jitter: Duration::ZERO,
            allow_aborts: false,
            syn_cookies: SynCookieMode::Always,
            ..SimConfig::from_seed(seed)
        }
    }

    /// The engine configuration of one side.
    pub fn engine_config(&self, side: Side) -> EngineConfig {
        let max_connections = self.concurrency.max(1) * 4 + 16;
        let (mac, ip) = match side {
            Side::Client => (CLIENT_MAC, CLIENT_IP),
            Side::Server => (SERVER_MAC, SERVER_IP),
        };
        EngineConfig {
            mac,
            addresses: vec![ip],
            max_connections,
            max_time_wait: self.max_time_wait,
            max_listeners: 4,
            buffer_size: self.buffer_size,
            // Two buffers per connection: `send` and `recv` never meet an empty pool.
            buffer_count: 2 * max_connections,
            mss: self.mss,
            msl: self.msl,
            rto_min: self.rto.0,
            rto_initial: self.rto.1,
            rto_max: self.rto.2,
            // SYN retries outlast 2*MSL (as Linux's ~127 s outlast its 60 s TIME-WAIT): a SYN that meets the
            // peer's TIME-WAIT record and is refused (RFC 6191: no timestamps and a lower ISN) gets through once
            // that record expires.
            syn_retries: 20,
            data_retries: 15,
            delayed_ack: self.delayed_ack,
            nagle: self.nagle,
            timestamps: self.timestamps,
            window_scaling: self.window_scaling,
            sack: self.sack,
            arp_retries: 10,
            arp_retry_interval: Duration::from_millis(200),
            ephemeral_ports: self.ephemeral_ports,
            verify_checksums: self.verify_checksums,
            syn_cookies: match side {
                Side::Server => self.syn_cookies,
                Side::Client => SynCookieMode::Auto,
            },
            ..EngineConfig::default()
        }
    }
}

/// What the link did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LinkStats {
    /// Frames the engines wrote.
    pub sent: u64,
    /// Frame copies handed to an engine.
    pub delivered: u64,
    /// Frames lost.
    pub lost: u64,
    /// Frames dropped by a partition.
    pub partitioned: u64,
    /// Partitions.
    pub partitions: u64,
    /// Frames delivered twice.
    pub duplicated: u64,
    /// Frame copies held back for reordering.
    pub reordered: u64,
    /// Frame copies with flipped bits.
    pub corrupted: u64,
    /// Corrupted copies handed to an engine (all must be dropped by it).
    pub corrupted_delivered: u64,
    /// Frames whose IPv4 packet exceeded the link's MTU: dropped, as a real link drops them. Any is a failure
    /// (RFC 9293 MUST-16: a segment must fit the effective send MSS).
    pub oversized: u64,
}

/// What a run did, for the test's output and for failure messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Connections the client opened.
    pub connections: usize,
    /// Connections that ended normally on both sides with every byte through.
    pub completed: usize,
    /// Connections ended abnormally, per side and reason.
    pub aborts: Vec<(Side, CloseReason, usize)>,
    /// Connections the server accepted.
    pub accepted: usize,
    /// Connections on which one side was seen in CLOSING (both FINs crossed).
    pub simultaneous_closes: usize,
    /// Server connections reset in LAST-ACK, after the whole exchange, by the client's reuse of the 4-tuple
    /// from TIME-WAIT while the server still waited for the (lost) final ACK: its new SYN drew a challenge ACK
    /// (RFC 5961 §4), which SYN-SENT answers with a RST (RFC 9293 §3.10.7.3). Tolerated only in runs whose
    /// narrow port range forces reuse.
    pub late_resets: usize,
    /// Request bytes the server received.
    pub bytes_to_server: u64,
    /// Response bytes the client received.
    pub bytes_to_client: u64,
    /// `connect` calls refused for lack of room and retried.
    pub connect_retries: u64,
    /// Frames the engines dropped as malformed or failing a checksum.
    pub corrupt_dropped: u64,
    /// The link's statistics.
    pub link: LinkStats,
    /// Loop steps.
    pub steps: u64,
    /// Virtual time the run took.
    pub elapsed: Duration,
    /// The client engine's counters.
    pub client: Counters,
    /// The server engine's counters.
    pub server: Counters,
}

impl Report {
    /// Connections ended abnormally, on either side.
    pub fn aborted(&self) -> usize {
        self.aborts.iter().map(|&(_, _, n)| n).sum()
    }

    fn count_abort(&mut self, side: Side, reason: CloseReason) {
        match self.aborts.iter_mut().find(|(s, r, _)| *s == side && *r == reason) {
            Some(entry) => entry.2 += 1,
            None => self.aborts.push((side, reason, 1)),
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (c, s) = (&self.client, &self.server);
        write!(
            f,
            "{} conns ({} ok, {} aborted {:?}, {} late resets, {} simultaneous), {}+{} bytes, {:?} virtual, {} steps; link: {} sent, \
             {} lost, {} partitioned ({} partitions), {} dup, {} reordered, {} corrupted ({} delivered, {} dropped \
             by checksums); retransmits {}+{} (rto {}+{}, fast {}+{}), time-wait {}+{} (reused {}, overflow {}), \
             ooo {}+{}, paws {}+{}, challenge acks {}+{}, window probes {}+{}, connect retries {}",
            self.connections,
            self.completed,
            self.aborted(),
            self.aborts,
            self.late_resets,
            self.simultaneous_closes,
            self.bytes_to_server,
            self.bytes_to_client,
            self.elapsed,
            self.steps,
            self.link.sent,
            self.link.lost,
            self.link.partitioned,
            self.link.partitions,
            self.link.duplicated,
            self.link.reordered,
            self.link.corrupted,
            self.link.corrupted_delivered,
            self.corrupt_dropped,
            c.retransmits,
            s.retransmits,
            c.rto_fired,
            s.rto_fired,
            c.fast_retransmits,
            s.fast_retransmits,
            c.time_wait_entered,
            s.time_wait_entered,
            c.time_wait_reused + s.time_wait_reused,
            c.time_wait_overflow + s.time_wait_overflow,
            c.data_out_of_order,
            s.data_out_of_order,
            c.drop_paws,
            s.drop_paws,
            c.challenge_acks_sent,
            s.challenge_acks_sent,
            c.window_probes,
            s.window_probes,
            self.connect_retries,
        )
    }
}

/// Which part of a run was going on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The applications were still working.
    Running,
    /// The applications were done; TIME-WAIT and stray frames were draining.
    Draining,
}

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// An engine could not be built from the configuration.
    #[error("engine build failed: {0}")]
    Build(#[from] BuildError),
    /// Virtual time passed the configured limit.
    #[error(
        "virtual time limit reached at {now:?} while {phase:?}: client has {client_open} connections open, server {server_open}"
    )]
    TimeLimit {
        /// When.
        now: Instant,
        /// During what.
        phase: Phase,
        /// Client connections not yet done.
        client_open: usize,
        /// Server connections not yet done.
        server_open: usize,
    },
    /// The loop ran too many steps.
    #[error("step limit reached at {now:?} while {phase:?}")]
    StepLimit {
        /// When.
        now: Instant,
        /// During what.
        phase: Phase,
    },
    /// Nothing was left to happen (no frame, timer or wake-up) but connections were still open.
    #[error("stalled at {now:?}: nothing scheduled, client has {client_open} connections open, server {server_open}")]
    Stalled {
        /// When.
        now: Instant,
        /// Client connections not yet done.
        client_open: usize,
        /// Server connections not yet done.
        server_open: usize,
    },
    /// An application call failed where it must not.
    #[error("{side:?} connection {conn}: {call} failed: {error}")]
    App {
        /// Which side.
        side: Side,
        /// The connection's number (`u32::MAX` before the server has read it).
        conn: u32,
        /// The call.
        call: &'static str,
        /// Its error.
        error: EngineError,
    },
    /// An application saw something that cannot happen.
    #[error("{side:?}: {what}")]
    Protocol {
        /// Which side.
        side: Side,
        /// What.
        what: &'static str,
    },
    /// A side received something other than what the peer sent.
    #[error(
        "connection {conn}: {receiver:?} received {received} bytes, peer sent {sent}; first difference at byte {at}"
    )]
    Data {
        /// The connection's number.
        conn: u32,
        /// The receiving side.
        receiver: Side,
        /// Bytes received.
        received: usize,
        /// Bytes sent.
        sent: usize,
        /// The first byte that differs (or where one stream ends).
        at: usize,
    },
    /// A connection ended abnormally in a run that does not allow it.
    #[error("connection {conn}: {side:?} ended with {reason:?} (aborts are not allowed in this run)")]
    Abort {
        /// The connection's number.
        conn: u32,
        /// Which side.
        side: Side,
        /// How it ended.
        reason: CloseReason,
    },
    /// A connection never finished its exchange though nothing went wrong.
    #[error("connection {conn}: exchange incomplete ({what})")]
    Incomplete {
        /// The connection's number.
        conn: u32,
        /// What is missing.
        what: &'static str,
    },
    /// Something the engine holds was not given back.
    #[error("{what} not given back while {phase:?}: client {client}, server {server}, expected {expected}")]
    Leak {
        /// What.
        what: &'static str,
        /// When.
        phase: Phase,
        /// The client's count.
        client: usize,
        /// The server's count.
        server: usize,
        /// The count expected on both.
        expected: usize,
    },
    /// A corrupted frame got past the checksums, or a good one was dropped as bad.
    #[error("{delivered} corrupted frames delivered but {dropped} dropped as bad")]
    Corruption {
        /// Corrupted frames delivered.
        delivered: u64,
        /// Frames the engines dropped as malformed or failing a checksum.
        dropped: u64,
    },
    /// An engine sent an IPv4 packet longer than the link's MTU.
    #[error("{count} frames longer than the link's MTU of {mtu} bytes were sent (RFC 9293 MUST-16)")]
    Oversized {
        /// How many.
        count: u64,
        /// The MTU.
        mtu: usize,
    },
    /// An engine could not queue events at once (deferred, or lost for good).
    #[error("events deferred or lost: client {client}, server {server}")]
    EventsLost {
        /// The client's count.
        client: u64,
        /// The server's count.
        server: u64,
    },
}

/// A failed run: the error, the configuration that produced it, and what had happened so far.
#[derive(Debug)]
pub struct SimFailure {
    /// What went wrong.
    pub error: SimError,
    /// The configuration, seed included.
    pub config: SimConfig,
    /// The run's report up to the failure.
    pub report: Report,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seed = self.config.seed;
        writeln!(f, "simulation failed: {}", self.error)?;
        writeln!(f, "  seed: {seed}")?;
        writeln!(f, "  config: {:?}", self.config)?;
        writeln!(f, "  so far: {}", self.report)?;
        let untraced = SimConfig {
            trace: false,
            ..self.config.clone()
        };
        if untraced == SimConfig::from_seed(seed) {
            write!(
                f,
                "  replay: {SEED_ENV}={seed} cargo test -p synack --test simulation replay -- --nocapture"
            )
        } else {
            write!(
                f,
                "  replay: rerun the test that built this config (seed {seed}); it is not SimConfig::from_seed({seed})"
            )
        }
    }
}

impl std::error::Error for SimFailure {}

/// Runs one simulation and checks its invariants.
///
/// # Errors
/// A [`SimFailure`] naming the first invariant broken, with the seed and the configuration to replay it.
pub fn run(config: &SimConfig) -> Result<Report, Box<SimFailure>> {
    let mut sim = match Sim::new(config) {
        Ok(sim) => sim,
        Err(error) => {
            return Err(Box::new(SimFailure {
                error,
                config: config.clone(),
                report: Report::default(),
            }));
        }
    };
    let result = sim.run();
    let mut report = sim.report();
    match result.and_then(|()| sim.verify_into(&mut report)) {
        Ok(()) => Ok(report),
        Err(error) => Err(Box::new(SimFailure {
            error,
            config: config.clone(),
            report,
        })),
    }
}

/// The simulation's state.
struct Sim<'a> {
    config: &'a SimConfig,
    start: Instant,
    now: Instant,
    /// Client, then server (see [`Side::index`]).
    engines: [Engine; 2],
    /// Each engine's `poll_timeout`, as of the last time it was called.
    timeouts: [Option<Instant>; 2],
    link: Link,
    client: ClientApp,
    server: ServerApp,
    steps: u64,
    sink: Vec<Vec<u8>>,
}

impl<'a> Sim<'a> {
    fn new(config: &'a SimConfig) -> Result<Sim<'a>, SimError> {
        let start = Instant::from_millis(1000);
        let mut rng = Rng::new(config.seed);
        let mut secret = || Secret::from_seed(rng.next_u64());
        let client = Engine::with_secrets(config.engine_config(Side::Client), start, secret(), secret())?;
        let server = Engine::with_secrets(config.engine_config(Side::Server), start, secret(), secret())?;
        let link = Link::new(config, rng.fork());
        let client_app = ClientApp::new(rng.fork(), CLIENT_IP, SocketAddrV4::new(SERVER_IP, SERVER_PORT));
        let server_app = ServerApp::new(rng.fork());
        Ok(Sim {
            config,
            start,
            now: start,
            engines: [client, server],
            timeouts: [None, None],
            link,
            client: client_app,
            server: server_app,
            steps: 0,
            sink: Vec::new(),
        })
    }

    fn engine(&self, side: Side) -> &Engine {
        &self.engines[side.index()]
    }

    fn apps_done(&self) -> bool {
        self.client.is_done(self.config.connections) && self.server.is_done()
    }

    fn run(&mut self) -> Result<(), SimError> {
        let backlog = (self.config.concurrency * 2 + 8) as u32;
        self.engines[Side::Server.index()]
            .listen(Port(SERVER_PORT), backlog)
            .map_err(|error| SimError::App {
                side: Side::Server,
                conn: u32::MAX,
                call: "listen",
                error,
            })?;
        if !self.config.arp {
            self.engines[Side::Client.index()].add_neighbor(SERVER_IP, SERVER_MAC);
            self.engines[Side::Server.index()].add_neighbor(CLIENT_IP, CLIENT_MAC);
        }
        {
            let mut cx = Ctx {
                engine: &mut self.engines[Side::Client.index()],
                now: self.now,
                link: &mut self.link,
                config: self.config,
            };
            self.client.open_more(&mut cx)?;
        }
        self.after_apps([true, false])?;

        // Phase 1: until every connection is over on both sides.
        while !self.apps_done() {
            if !self.step(Phase::Running, None)? {
                if !self.config.allow_aborts {
                    return Err(SimError::Stalled {
                        now: self.now,
                        client_open: self.client.active,
                        server_open: self.server.open,
                    });
                }
                // Half-open connections whose peer vanished (its RST lost) wait forever without keep-alive: an
                // application would time them out. Count them as aborted.
                self.client.abort_all(&mut self.engines[0]);
                self.server.abort_all(&mut self.engines[1]);
                self.after_apps([true, true])?;
            }
        }
        let done_at = self.now;
        // A duplicated or reordered SYN can arrive after its connection is over and open a half-open connection
        // on the server (as it would on a real network); that goes away on its own, after SYN-ACK retries, so the
        // strict checks below are for runs where no frame can arrive that late.
        let strict = self.config.duplicate == 0.0 && self.config.reorder == 0.0;
        self.check_count(Phase::Running, "connections", Engine::connection_count, 0, strict)?;

        // Phase 2: TIME-WAIT lasts 2*MSL; then everything must be back.
        let settle = done_at + self.config.msl * 2 + self.link.max_latency() + Duration::from_millis(1);
        while self.step(Phase::Draining, Some(settle))? {}
        self.check_count(Phase::Draining, "TIME-WAIT records", Engine::time_wait_count, 0, strict)?;
        self.check_count(Phase::Draining, "timers", Engine::timer_count, 0, strict)?;
        self.check_count(Phase::Draining, "connections", Engine::connection_count, 0, strict)?;

        // Phase 3: whatever is left (stray duplicates, half-open connections from them) must end too.
        while self.step(Phase::Draining, None)? {}
        self.check_count(Phase::Draining, "TIME-WAIT records", Engine::time_wait_count, 0, true)?;
        self.check_count(Phase::Draining, "timers", Engine::timer_count, 0, true)?;
        self.check_count(Phase::Draining, "connections", Engine::connection_count, 0, true)?;
        let buffers = self.engine(Side::Client).config().buffer_count;
        self.check_count(Phase::Draining, "buffers", Engine::free_buffers, buffers, true)?;
        if self.client.live() != 0 && !self.config.allow_aborts {
            return Err(SimError::Protocol {
                side: Side::Client,
                what: "handles left in the application",
            });
        }
        if self.server.live() != 0 && !self.config.allow_aborts {
            return Err(SimError::Protocol {
                side: Side::Server,
                what: "handles left in the application",
            });
        }
        Ok(())
    }

    fn check_count(
        &self,
        phase: Phase,
        what: &'static str,
        count: fn(&Engine) -> usize,
        expected: usize,
        server_too: bool,
    ) -> Result<(), SimError> {
        let client = count(self.engine(Side::Client));
        let server = count(self.engine(Side::Server));
        if client != expected || (server_too && server != expected) {
            return Err(SimError::Leak {
                what,
                phase,
                client,
                server,
                expected,
            });
        }
        Ok(())
    }

    /// One step: advances virtual time to the next thing due (never beyond `until`) and handles it. Returns
    /// false when nothing is due (before `until`, if given).
    fn step(&mut self, phase: Phase, until: Option<Instant>) -> Result<bool, SimError> {
        let next = [self.link.next_at(), self.timeouts[0], self.timeouts[1]]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            if let Some(until) = until {
                self.now = self.now.max(until);
            }
            return Ok(false);
        };
        if until.is_some_and(|until| next > until) {
            self.now = self.now.max(until.unwrap_or(next));
            return Ok(false);
        }
        self.steps += 1;
        if self.steps > self.config.step_limit {
            return Err(SimError::StepLimit { now: self.now, phase });
        }
        if next.saturating_since(self.start) > self.config.time_limit {
            return Err(SimError::TimeLimit {
                now: next,
                phase,
                client_open: self.client.active,
                server_open: self.server.open,
            });
        }
        self.now = self.now.max(next);
        self.batch()?;
        Ok(true)
    }

    /// Everything due now: frames and wake-ups first, then the applications, timeouts and transmission.
    fn batch(&mut self) -> Result<(), SimError> {
        let now = self.now;
        let mut touched = [false; 2];
        while let Some(item) = self.link.pop_due(now) {
            match item {
                Item::Frame { to, data, corrupted } => {
                    self.link.stats.delivered += 1;
                    if corrupted {
                        self.link.stats.corrupted_delivered += 1;
                    }
                    let i = to.index();
                    touched[i] = true;
                    if self.config.trace {
                        eprintln!(
                            "{now:?} {to:?} <- {}{}",
                            FrameSummary(&data),
                            if corrupted { " CORRUPTED" } else { "" }
                        );
                    }
                    self.engines[i].handle_frame(now, &data, &mut self.sink);
                    for frame in self.sink.drain(..) {
                        self.link.send(now, to, frame);
                    }
                }
                Item::Wake { side, wake } => {
                    touched[side.index()] = true;
                    let mut cx = Ctx {
                        engine: &mut self.engines[side.index()],
                        now,
                        link: &mut self.link,
                        config: self.config,
                    };
                    match wake {
                        Wake::OpenNext => self.client.on_wake(&mut cx)?,
                        Wake::Shutdown(index) => self.server.on_wake(&mut cx, index)?,
                        Wake::Read(index) => match side {
                            Side::Client => self.client.on_read_wake(&mut cx, index)?,
                            Side::Server => self.server.on_read_wake(&mut cx, index)?,
                        },
                    }
                }
            }
        }
        for (i, timeout) in self.timeouts.iter().enumerate() {
            if timeout.is_some_and(|t| t <= now) {
                touched[i] = true;
            }
        }
        self.after_apps(touched)
    }

    /// For each touched engine: the application reacts to its events, due timeouts run, output goes out.
    fn after_apps(&mut self, touched: [bool; 2]) -> Result<(), SimError> {
        let now = self.now;
        for side in [Side::Client, Side::Server] {
            let i = side.index();
            if !touched[i] {
                continue;
            }
            self.drain_events(side)?;
            if self.engines[i].poll_timeout().is_some_and(|t| t <= now) {
                self.engines[i].handle_timeouts(now);
                self.drain_events(side)?;
            }
            self.engines[i].poll_transmit(now, &mut self.sink);
            for frame in self.sink.drain(..) {
                self.link.send(now, side, frame);
            }
            self.timeouts[i] = self.engines[i].poll_timeout();
        }
        Ok(())
    }

    fn drain_events(&mut self, side: Side) -> Result<(), SimError> {
        let i = side.index();
        while let Some(event) = self.engines[i].poll_event() {
            if self.config.trace {
                eprintln!(
                    "{:?} {side:?} event {:?} on slot {}",
                    self.now,
                    event.kind,
                    event.conn.index()
                );
            }
            let mut cx = Ctx {
                engine: &mut self.engines[i],
                now: self.now,
                link: &mut self.link,
                config: self.config,
            };
            match side {
                Side::Client => self.client.on_event(&mut cx, event)?,
                Side::Server => self.server.on_event(&mut cx, event)?,
            }
        }
        Ok(())
    }

    fn report(&self) -> Report {
        let client = *self.engine(Side::Client).counters();
        let server = *self.engine(Side::Server).counters();
        let corrupt_dropped = [&client, &server]
            .iter()
            .map(|c| {
                c.drop_ethernet_malformed
                    + c.drop_not_our_mac
                    + c.drop_vlan
                    + c.drop_ethertype
                    + c.drop_arp_malformed
                    + c.drop_ipv4_malformed
                    + c.drop_ipv4_checksum
                    + c.drop_ipv4_fragment
                    + c.drop_ipv4_not_ours
                    + c.drop_ip_protocol
                    + c.drop_icmp_malformed
                    + c.drop_icmp_unhandled
                    + c.drop_tcp_malformed
                    + c.drop_tcp_bad_option
                    + c.drop_tcp_checksum
            })
            .sum();
        Report {
            connections: self.client.conns.len(),
            accepted: self.server.conns.len(),
            connect_retries: self.client.connect_retries,
            corrupt_dropped,
            link: self.link.stats,
            steps: self.steps,
            elapsed: self.now.saturating_since(self.start),
            client,
            server,
            ..Report::default()
        }
    }

    /// The end-of-run checks on what the applications saw.
    fn verify_into(&self, report: &mut Report) -> Result<(), SimError> {
        if report.link.oversized > 0 {
            return Err(SimError::Oversized {
                count: report.link.oversized,
                mtu: self.config.mtu,
            });
        }
        let (client, server) = (&report.client, &report.server);
        // The applications drain every step: an event deferred (the queue full), let alone lost, is a failure.
        if client.events_lost + server.events_lost + client.events_deferred + server.events_deferred > 0 {
            return Err(SimError::EventsLost {
                client: client.events_lost + client.events_deferred,
                server: server.events_lost + server.events_deferred,
            });
        }
        if report.corrupt_dropped != report.link.corrupted_delivered {
            return Err(SimError::Corruption {
                delivered: report.link.corrupted_delivered,
                dropped: report.corrupt_dropped,
            });
        }
        // Server connections by the client's connection number.
        let mut by_id: Vec<Option<usize>> = vec![None; self.client.conns.len()];
        for (index, conn) in self.server.conns.iter().enumerate() {
            let half = &conn.half;
            if half.closing_seen {
                report.simultaneous_closes += 1;
            }
            match conn.id.and_then(|id| by_id.get_mut(id as usize)) {
                Some(slot @ None) => *slot = Some(index),
                Some(Some(_)) => {
                    return Err(SimError::Protocol {
                        side: Side::Server,
                        what: "two connections carried the same request",
                    });
                }
                None if half.aborted().is_some() => {
                    report.count_abort(Side::Server, half.closed.unwrap_or(CloseReason::Aborted));
                    if !self.config.allow_aborts {
                        return Err(SimError::Abort {
                            conn: u32::MAX,
                            side: Side::Server,
                            reason: half.closed.unwrap_or(CloseReason::Aborted),
                        });
                    }
                }
                None => {
                    return Err(SimError::Protocol {
                        side: Side::Server,
                        what: "a connection ended normally without a whole request header",
                    });
                }
            }
        }
        let empty = app::Half::empty();
        for (id, conn) in self.client.conns.iter().enumerate() {
            let id = id as u32;
            let c = &conn.half;
            let s = by_id
                .get(id as usize)
                .copied()
                .flatten()
                .and_then(|i| self.server.conns.get(i))
                .map_or(&empty, |s| &s.half);

            if c.closing_seen {
                report.simultaneous_closes += 1;
            }
            check_stream(id, Side::Server, &c.outgoing[..c.sent], s)?;
            check_stream(id, Side::Client, &s.outgoing[..s.sent], c)?;
            report.bytes_to_server += s.received.len() as u64;
            report.bytes_to_client += c.received.len() as u64;
            let abnormal = c.closed != Some(CloseReason::Normal) || s.closed != Some(CloseReason::Normal);
            let (lo, hi) = self.config.ephemeral_ports;
            let reuse = usize::from(hi - lo) < self.config.connections;
            let late_reset = c.closed == Some(CloseReason::Normal)
                && c.peer_fin
                && s.closed == Some(CloseReason::Reset)
                && s.peer_fin
                && s.shut
                && !s.outgoing.is_empty()
                && s.sent == s.outgoing.len()
                && c.received.len() == s.sent;
            if late_reset && reuse {
                report.late_resets += 1;
                report.completed += 1;
                continue;
            }
            if let Some(reason) = c.aborted() {
                report.count_abort(Side::Client, reason);
            }
            if let Some(reason) = s.aborted() {
                report.count_abort(Side::Server, reason);
            }
            if abnormal {
                if !self.config.allow_aborts {
                    let (side, reason) = match c.closed {
                        Some(CloseReason::Normal) => (Side::Server, s.closed),
                        _ => (Side::Client, c.closed),
                    };
                    return Err(SimError::Abort {
                        conn: id,
                        side,
                        reason: reason.unwrap_or(CloseReason::Aborted),
                    });
                }
                continue;
            }
            if c.sent != c.outgoing.len() {
                return Err(SimError::Incomplete {
                    conn: id,
                    what: "request not all sent",
                });
            }
            if s.outgoing.is_empty() || s.sent != s.outgoing.len() {
                return Err(SimError::Incomplete {
                    conn: id,
                    what: "response not all sent",
                });
            }
            if !c.peer_fin || !s.peer_fin {
                return Err(SimError::Incomplete {
                    conn: id,
                    what: "closed normally without the peer's FIN",
                });
            }
            report.completed += 1;
        }
        Ok(())
    }
}

/// `receiver` must have received a prefix of `sent`, and all of it once the sender's FIN arrived.
fn check_stream(conn: u32, receiver: Side, sent: &[u8], half: &app::Half) -> Result<(), SimError> {
    let received = &half.received;
    let common = sent.len().min(received.len());
    let at = if sent[..common] == received[..common] {
        common
    } else {
        sent.iter().zip(received).position(|(a, b)| a != b).unwrap_or(common)
    };
    let complete = !half.peer_fin || received.len() == sent.len();
    if at < common || received.len() > sent.len() || !complete {
        return Err(SimError::Data {
            conn,
            receiver,
            received: received.len(),
            sent: sent.len(),
            at,
        });
    }
    Ok(())
}

/// A one-line description of a frame for traces: TCP ports, flags, sequence numbers, window and length.
pub struct FrameSummary<'a>(pub &'a [u8]);

impl fmt::Display for FrameSummary<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        let byte = |i: usize| b.get(i).copied().unwrap_or(0);
        let be16 = |i: usize| u16::from_be_bytes([byte(i), byte(i + 1)]);
        let be32 = |i: usize| u32::from_be_bytes([byte(i), byte(i + 1), byte(i + 2), byte(i + 3)]);
        if be16(12) != 0x0800 {
            return write!(f, "ethertype {:#06x}, {} bytes", be16(12), b.len());
        }
        let ihl = usize::from(byte(14) & 0x0f) * 4;
        let t = 14 + ihl;
        let doff = usize::from(byte(t + 12) >> 4) * 4;
        let len = usize::from(be16(16)).saturating_sub(ihl + doff);
        let flags = byte(t + 13);
        let names = [(0x02, 'S'), (0x10, '.'), (0x01, 'F'), (0x04, 'R'), (0x08, 'P')];
        let mut tag = String::new();
        for (bit, name) in names {
            if flags & bit != 0 {
                tag.push(name);
            }
        }
        write!(
            f,
            "{}->{} [{tag}] seq {} ack {} win {} len {len}",
            be16(t),
            be16(t + 2),
            be32(t + 4),
            be32(t + 8),
            be16(t + 14)
        )
    }
}
