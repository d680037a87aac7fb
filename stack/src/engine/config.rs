//! Everything the engine sizes or tunes, fixed when it is built.

use core::net::Ipv4Addr;
use core::time::Duration;

use super::syn_cookie::SynCookieMode;
use crate::timer::TimerConfig;
use crate::wire::ethernet::MacAddr;

/// The engine's configuration: capacities (fixed at start; nothing grows on the hot path) and TCP tunables.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// The MAC address of the interface the engine speaks for.
    pub mac: MacAddr,
    /// The IPv4 addresses the engine owns (answers ARP for, accepts TCP on, uses as sources).
    pub addresses: Vec<Ipv4Addr>,
    /// Most connections (any state but TIME-WAIT) held at once; a SYN or `connect` beyond is refused and counted.
    pub max_connections: usize,
    /// Most TIME-WAIT records held at once. When full, the oldest cannot be evicted (RFC 9293 MUST-13), so a new
    /// TIME-WAIT is skipped and counted instead (`time_wait_overflow`).
    pub max_time_wait: usize,
    /// Most listeners.
    pub max_listeners: usize,
    /// Size of one send or receive buffer, in bytes; it is also the largest receive window offered.
    pub buffer_size: usize,
    /// Buffers in the pool shared by all connections (each connection takes them lazily, when it has data).
    pub buffer_count: usize,
    /// Most queued application events; beyond, a connection's events are owed and queued once the application
    /// has drained the queue (none is lost). Sized from `max_connections` if 0.
    pub event_capacity: usize,
    /// Maximum segment size this host can receive (advertised in SYNs): 1460 for a 1500-byte MTU.
    pub mss: u16,
    /// Maximum segment lifetime; TIME-WAIT lasts 2*MSL. 30 s by default (a 60 s TIME-WAIT, as Linux). Zero skips
    /// TIME-WAIT entirely: for benchmarks only, it gives up the protection against old duplicates.
    pub msl: Duration,
    /// Initial retransmission timeout (RFC 6298 §2.1: 1 s).
    pub rto_initial: Duration,
    /// Lower bound on the RTO (RFC 6298 §2.4 says 1 s; Linux uses 200 ms).
    pub rto_min: Duration,
    /// Upper bound on the RTO after backoff (RFC 6298 §2.5 allows >= 60 s).
    pub rto_max: Duration,
    /// Retransmissions of a SYN or SYN-ACK before the attempt is given up (RFC 9293 §3.8.3 R2 for SYNs).
    pub syn_retries: u8,
    /// Retransmissions of data or FIN before the connection is aborted (RFC 9293 §3.8.3 R2; MUST-21 makes it
    /// settable).
    pub data_retries: u8,
    /// Delayed-ACK timeout, or `None` to acknowledge every segment at once. Must be under 500 ms (MUST-40).
    pub delayed_ack: Option<Duration>,
    /// Nagle's algorithm for new connections (RFC 9293 §3.7.4); can be turned off per connection.
    pub nagle: bool,
    /// How long a connection the application has closed may sit in FIN-WAIT-2 waiting for the peer's FIN before
    /// it is dropped (Linux's `tcp_fin_timeout`; RFC 9293 sets no limit, but an orphan must not live forever).
    pub fin_wait2_timeout: Duration,
    /// Keep-alive probing; off by default (MUST-24, MUST-25).
    pub keepalive: Option<KeepaliveConfig>,
    /// Offer and accept RFC 7323 timestamps.
    pub timestamps: bool,
    /// Offer and accept RFC 7323 window scaling.
    pub window_scaling: bool,
    /// Offer and accept SACK (RFC 2018); synack sends SACK blocks for out-of-order data.
    pub sack: bool,
    /// Challenge ACKs allowed per second, all connections together (RFC 5961 §7). The budget of each second
    /// is drawn at random (keyed) from `limit/2 .. limit*3/2`, as Linux does since CVE-2016-5696, so an
    /// off-path attacker cannot count it down to learn whether a connection exists.
    pub challenge_ack_limit: u32,
    /// A connection sends at most one challenge ACK, or ACK for an unacceptable segment, per this interval
    /// (Linux's `tcp_invalid_ratelimit`, 500 ms): a per-connection limit before the global budget, so one
    /// connection's attacker cannot use up the budget of all others, nor observe it.
    pub oow_ack_interval: Duration,
    /// SYN cookies (RFC 4987 §3.6): when a listener answers SYNs without keeping state.
    pub syn_cookies: SynCookieMode,
    /// Most half-open (SYN-RECEIVED) passive connections, all listeners together, as a percentage of
    /// `max_connections`, so a SYN flood never takes the table from established connections. Past half of it,
    /// half-open connections get one SYN-ACK retransmission instead of `syn_retries`.
    pub half_open_percent: u8,
    /// The first and last local port `connect` picks from when asked for port 0.
    pub ephemeral_ports: (u16, u16),
    /// Accept a SYN that hits a TIME-WAIT record when RFC 6191's timestamp or sequence rules show it is new.
    pub time_wait_reuse: bool,
    /// How long our own TIME-WAIT record must have existed before `connect` reuses its 4-tuple (timestamps
    /// required). Linux's `tcp_tw_reuse_delay` is 1 s; a shorter delay raises the chance that a peer still in
    /// LAST-ACK (our final ACK lost) meets the new SYN and the old connection ends with a reset.
    pub time_wait_reuse_delay: Duration,
    /// ARP requests sent for an unknown neighbour before its waiting connections fail.
    pub arp_retries: u8,
    /// Interval between ARP requests for the same address.
    pub arp_retry_interval: Duration,
    /// Timer wheel granularity and span.
    pub timer: TimerConfig,
    /// Verify IPv4, TCP and ICMP checksums on receipt (turn off only where the NIC has verified them).
    pub verify_checksums: bool,
    /// Fault every table and buffer in when the engine is built, instead of page by page on first use: a
    /// server pays the memory at start and never a page fault under load (with huge pages, a first touch
    /// stalls for the time it takes to zero 2 MiB). Off by default, so that sizing an engine for a million
    /// connections costs nothing until they come.
    pub prefault: bool,
}

/// Keep-alive settings (RFC 9293 §3.8.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeepaliveConfig {
    /// Idle time before the first probe; RFC 9293 MUST-28 wants a default of no less than two hours.
    pub idle: Duration,
    /// Time between unanswered probes.
    pub interval: Duration,
    /// Unanswered probes before the connection is declared dead.
    pub probes: u8,
}

impl Default for KeepaliveConfig {
    fn default() -> Self {
        KeepaliveConfig {
            idle: Duration::from_secs(7200),
            interval: Duration::from_secs(75),
            probes: 9,
        }
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            mac: MacAddr([0x02, 0, 0, 0, 0, 1]),
            addresses: Vec::new(),
            max_connections: 1024,
            max_time_wait: 4096,
            max_listeners: 16,
            buffer_size: 64 * 1024,
            buffer_count: 2048,
            event_capacity: 0,
            mss: 1460,
            msl: Duration::from_secs(30),
            rto_initial: Duration::from_secs(1),
            rto_min: Duration::from_millis(200),
            rto_max: Duration::from_secs(60),
            syn_retries: 6,
            data_retries: 15,
            delayed_ack: Some(Duration::from_millis(40)),
            nagle: true,
            fin_wait2_timeout: Duration::from_secs(60),
            keepalive: None,
            timestamps: true,
            window_scaling: true,
            sack: true,
            challenge_ack_limit: 1000,
            oow_ack_interval: Duration::from_millis(500),
            syn_cookies: SynCookieMode::Auto,
            half_open_percent: 50,
            ephemeral_ports: (32768, 60999),
            time_wait_reuse: true,
            time_wait_reuse_delay: Duration::from_secs(1),
            arp_retries: 3,
            arp_retry_interval: Duration::from_secs(1),
            timer: TimerConfig::default(),
            verify_checksums: true,
            prefault: false,
        }
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A capacity that must be at least one is zero.
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    /// The engine owns no address.
    #[error("addresses: at least one IPv4 address is needed")]
    NoAddress,
    /// The delayed-ACK timeout is 500 ms or more (RFC 9293 MUST-40).
    #[error("delayed_ack must be under 500 ms (RFC 9293 MUST-40)")]
    DelayedAckTooLong,
    /// The MSS is below what IPv4 guarantees (RFC 9293 §3.7.1: 536) or above what a frame can carry.
    #[error("mss must be in 536..=8960")]
    BadMss,
    /// `rto_min` > `rto_max`, or the initial RTO outside them.
    #[error("rto_min <= rto_initial <= rto_max is required")]
    BadRto,
    /// The ephemeral port range is empty or includes port 0.
    #[error("ephemeral_ports must be a non-empty range of non-zero ports")]
    BadPortRange,
    /// `half_open_percent` is not in 1..=100.
    #[error("half_open_percent must be in 1..=100")]
    BadHalfOpenShare,
    /// The device's frames cannot hold the engine's largest segment.
    #[error("a full-sized segment (MSS {mss}) needs {needed}-byte frames; the device's hold {capacity}")]
    FrameTooSmall {
        /// The configured MSS.
        mss: u16,
        /// The largest frame the engine may send.
        needed: usize,
        /// The device's frame size.
        capacity: usize,
    },
    /// More entries than the flow table's 31-bit slot indices (and the wheel's ids) can name.
    #[error("max_connections + max_time_wait must be below 2^31")]
    TooLarge,
}

impl EngineConfig {
    /// The largest frame the engine may send: Ethernet, IPv4 and a TCP header with the most options (40 bytes)
    /// around a full MSS of data.
    pub fn largest_frame(&self) -> usize {
        14 + 20 + 20 + 40 + usize::from(self.mss)
    }

    /// Refuses, at start-up, a device whose frames cannot carry the engine's largest segment: such a segment
    /// would be refused by the sink every time it is tried (`TxRefused::TooLong`).
    pub fn check_frame_capacity(&self, capacity: usize) -> Result<(), ConfigError> {
        let needed = self.largest_frame();
        if needed > capacity {
            return Err(ConfigError::FrameTooSmall {
                mss: self.mss,
                needed,
                capacity,
            });
        }
        Ok(())
    }

    /// Checks the configuration; the engine refuses to start on an error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.addresses.is_empty() {
            return Err(ConfigError::NoAddress);
        }
        for (value, name) in [
            (self.max_connections, "max_connections"),
            (self.max_listeners, "max_listeners"),
            (self.buffer_size, "buffer_size"),
            (self.buffer_count, "buffer_count"),
        ] {
            if value == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        if self.delayed_ack.is_some_and(|d| d >= Duration::from_millis(500)) {
            return Err(ConfigError::DelayedAckTooLong);
        }
        if !(536..=8960).contains(&self.mss) {
            return Err(ConfigError::BadMss);
        }
        if self.rto_min > self.rto_max || self.rto_initial < self.rto_min || self.rto_initial > self.rto_max {
            return Err(ConfigError::BadRto);
        }
        let (lo, hi) = self.ephemeral_ports;
        if lo == 0 || lo > hi {
            return Err(ConfigError::BadPortRange);
        }
        if !(1..=100).contains(&self.half_open_percent) {
            return Err(ConfigError::BadHalfOpenShare);
        }
        if self.max_connections.saturating_add(self.max_time_wait) >= 1 << 31 {
            return Err(ConfigError::TooLarge);
        }
        Ok(())
    }
}
