//! The flood generator's configuration (`configs/flood.toml`), and the address rule it enforces: every source
//! and the target inside 198.18.0.0/15 ([`BENCHMARK_NET`]). The rule is checked when the configuration is
//! loaded, again when frames are built ([`super::FrameBuilder::new`]), so a configuration assembled in code
//! cannot get past it either.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::cidr::{BENCHMARK_NET, Cidr};
use super::mac::Mac;
use crate::config::{ConfigError, Validate, XdpModeConfig, bad, check_duration};

/// Which segments to flood with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FloodKind {
    /// SYNs with a Linux SYN's options: every one is a new half-open connection (or a SYN cookie).
    Syn,
    /// Bare ACKs with random numbers: each is checked against the flow table, and, at a listener, as a
    /// SYN cookie; the answer is a RST.
    Ack,
    /// RSTs with random numbers: each is looked up and dropped (RFC 5961 keeps them from resetting anything).
    Rst,
}

/// How the spoofed sources are chosen.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SourceOrder {
    /// Address and port drawn at random for every frame, as a spoofing attacker would.
    Random,
    /// Addresses in order, then the next port: every frame a new 4-tuple until all have been used.
    Sequential,
}

/// The TCP options a flood segment carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SynOption {
    /// Maximum segment size (`mss`), SYNs only.
    Mss,
    /// SACK permitted, SYNs only.
    SackPermitted,
    /// Timestamps (random TSval; TSecr 0 on a SYN), SYNs and ACKs.
    Timestamps,
    /// Window scale (`window_scale`), SYNs only.
    WindowScale,
}

/// `synack flood`'s configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodConfig {
    /// The interface to send on with AF_XDP.
    pub interface: String,
    /// XDP attach mode of the (pass-everything) program the AF_XDP socket needs.
    pub xdp_mode: XdpModeConfig,
    /// SYN, ACK or RST flood.
    pub kind: FloodKind,
    /// The spoofed source addresses, a prefix inside 198.18.0.0/15.
    pub sources: Cidr,
    /// Random or sequential sources.
    pub source_order: SourceOrder,
    /// Source ports [first, last].
    pub source_ports: [u16; 2],
    /// The target address:port, inside 198.18.0.0/15.
    pub target: SocketAddrV4,
    /// The target's MAC address (required: the generator does not resolve it).
    pub target_mac: Option<Mac>,
    /// Frames per second; 0 = as fast as the link takes them.
    pub rate: f64,
    /// Frames per pacing batch (and per TX ring kick).
    pub batch: u32,
    /// Seconds to flood for: the time bound.
    pub duration_secs: f64,
    /// Frames to send at most: the count bound.
    pub max_frames: u64,
    /// TCP options of the flood's segments (see [`SynOption`]); a Linux SYN carries all four.
    pub options: Vec<SynOption>,
    /// The MSS option's value.
    pub mss: u16,
    /// The window scale option's shift.
    pub window_scale: u8,
    /// The TCP window field.
    pub window: u16,
    /// Seed of the random sources, ports and numbers; 0 takes one from the clock.
    pub seed: u64,
    /// Core to pin the thread to.
    pub core: Option<usize>,
    /// UMEM frames (the transmit pool is all but 64 of them).
    pub frame_count: u32,
    /// TX and completion ring entries, a power of two.
    pub ring_size: u32,
    /// The socket's send buffer in bytes (0 = the kernel's default): room for every frame in flight, so a slow
    /// receiver drops what it cannot take instead of slowing the generator (see `raise_sndbuf`).
    pub sndbuf_bytes: u32,
    /// Print a line every second.
    pub live: bool,
    /// Write the final report as JSON to this file.
    pub json: Option<PathBuf>,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            interface: String::new(),
            xdp_mode: XdpModeConfig::Auto,
            kind: FloodKind::Syn,
            sources: Cidr::new(Ipv4Addr::new(198, 19, 0, 0), 16).unwrap_or(BENCHMARK_NET),
            source_order: SourceOrder::Random,
            source_ports: [1024, 65535],
            target: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 8080),
            target_mac: None,
            rate: 100_000.0,
            batch: 64,
            duration_secs: 10.0,
            max_frames: 10_000_000,
            options: vec![
                SynOption::Mss,
                SynOption::SackPermitted,
                SynOption::Timestamps,
                SynOption::WindowScale,
            ],
            mss: 1460,
            window_scale: 7,
            window: 64240,
            seed: 0,
            core: None,
            frame_count: 4096,
            ring_size: 2048,
            sndbuf_bytes: 64 << 20,
            live: true,
            json: None,
        }
    }
}

impl FloodConfig {
    /// The address rule: the sources wholly inside 198.18.0.0/15, the target too, and not one of the sources.
    pub fn check_addresses(&self) -> Result<(), ConfigError> {
        if !BENCHMARK_NET.covers(&self.sources) {
            // Two prefixes either nest or are disjoint: this one holds the whole range and more, or none of it.
            let how = if self.sources.covers(&BENCHMARK_NET) {
                "reaches outside"
            } else {
                "is outside"
            };
            return Err(ConfigError(format!(
                "configuration key `sources`: {} ({} to {}) {how} {BENCHMARK_NET}, the RFC 2544 benchmarking range; \
                 synack flood sends from and to addresses in it only",
                self.sources,
                self.sources.first(),
                self.sources.last()
            )));
        }
        if !BENCHMARK_NET.contains(*self.target.ip()) {
            return Err(ConfigError(format!(
                "configuration key `target`: {} is outside {BENCHMARK_NET}, the RFC 2544 benchmarking range; \
                 synack flood sends from and to addresses in it only",
                self.target.ip()
            )));
        }
        if self.sources.contains(*self.target.ip()) {
            return Err(ConfigError(format!(
                "configuration key `sources`: {} contains the target {}; spoofed sources must be other addresses",
                self.sources,
                self.target.ip()
            )));
        }
        Ok(())
    }

    /// Whether the segments carry `option`.
    pub fn has_option(&self, option: SynOption) -> bool {
        self.options.contains(&option)
    }
}

impl Validate for FloodConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.interface.is_empty() {
            return Err(bad("interface", "the interface to send on"));
        }
        self.check_addresses()?;
        if self.target.port() == 0 {
            return Err(bad("target", "\"address:port\" with a non-zero port"));
        }
        match self.target_mac {
            None => {
                return Err(bad(
                    "target_mac",
                    "the target's MAC address (\"02:53:00:00:00:02\"): synack flood does not resolve it",
                ));
            }
            Some(m) if !m.is_unicast() => {
                return Err(bad("target_mac", "a unicast MAC address (not broadcast or multicast)"));
            }
            Some(_) => {}
        }
        if self.source_ports[0] == 0 || self.source_ports[0] > self.source_ports[1] {
            return Err(bad("source_ports", "[first, last] with 0 < first <= last"));
        }
        if !(self.rate.is_finite() && (0.0..=1e8).contains(&self.rate)) {
            return Err(bad(
                "rate",
                "frames per second in 0..=1e8 (0 = as fast as the link allows)",
            ));
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 64 {
            return Err(bad("ring_size", "a power of two, at least 64"));
        }
        if self.batch == 0 || self.batch > self.ring_size {
            return Err(bad("batch", "1..=ring_size"));
        }
        if self.frame_count < self.ring_size + 64 {
            return Err(bad("frame_count", "at least ring_size + 64"));
        }
        if self.duration_secs.is_nan() || self.duration_secs <= 0.0 {
            return Err(bad(
                "duration_secs",
                "a time bound in seconds, > 0 (a flood always has one)",
            ));
        }
        check_duration("duration_secs", self.duration_secs)?;
        if self.max_frames == 0 || self.max_frames > 1_000_000_000_000 {
            return Err(bad("max_frames", "a count bound in 1..=1e12 (a flood always has one)"));
        }
        if self.mss == 0 {
            return Err(bad("mss", "1..=65535"));
        }
        if self.window_scale > 14 {
            return Err(bad("window_scale", "0..=14 (RFC 7323 §2.3)"));
        }
        Ok(())
    }
}
