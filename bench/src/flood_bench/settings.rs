//! The flood benchmark's configuration (`configs/flood-bench.toml`, run with `synack bench --flood`).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, Protocol, StackKind, SynCookies, Validate, XdpModeConfig, bad, check_sizes};
use crate::flood::{BENCHMARK_NET, Cidr, FloodKind, SourceOrder};

/// `synack bench --flood`'s configuration.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FloodBenchConfig {
    /// Flood rates to run, frames per second; 0 = as fast as the generator goes.
    pub rates: Vec<f64>,
    /// What to flood with.
    pub kind: FloodKind,
    /// The spoofed sources (inside 198.18.0.0/15, routed back to the client namespace, dropped there).
    pub sources: Cidr,
    /// Random or sequential sources.
    pub source_order: SourceOrder,
    /// Seconds of legitimate load before the flood; the first is warm-up and not counted (at least 2).
    pub baseline_secs: u32,
    /// Seconds of flood.
    pub flood_secs: u32,
    /// Seconds of legitimate load after the flood stops (the first is reported; the JSON has them all).
    pub after_secs: u32,
    /// The legitimate client's closed-loop concurrency.
    pub concurrency: u32,
    /// HTTP response body bytes.
    pub response_size: usize,
    /// Listen backlog of both responders (synack: its SYN-RECEIVED bound; the kernel: listen()).
    pub backlog: u32,
    /// SYN cookies of both responders: "auto" (synack once its backlog or half-open share is full; the kernel
    /// `tcp_syncookies=1`, once its SYN queue is), "always" (`=2`) or "never" (`=0`).
    pub syn_cookies: SynCookies,
    /// Source addresses of the legitimate client.
    pub client_sources: u8,
    /// Responders to measure, in order.
    pub stacks: Vec<StackKind>,
    /// XDP attach mode of synack's responder.
    pub xdp_mode: XdpModeConfig,
    /// XDP attach mode of the generator's pass-everything program (on the client's interface).
    pub flood_xdp_mode: XdpModeConfig,
    /// Core of the responder.
    pub responder_core: usize,
    /// Core of the legitimate client.
    pub client_core: usize,
    /// Core of the flood generator.
    pub flood_core: usize,
    /// Steer the server interface's kernel receive processing to the responder's core with RPS, as a NIC's
    /// interrupt would place it. Without, veth runs a frame's receive work in softirq on the core that sent it:
    /// the kernel responder's SYN handling would then be paid by the generator's core (and throttle it).
    /// synack's frames take the XDP path, which RPS does not touch.
    pub server_rps: bool,
    /// Run the server interface's NAPI (where veth runs native XDP and the copy into synack's AF_XDP ring) in its
    /// own kernel thread pinned to the responder's core: RPS's counterpart for the XDP path, so that on both
    /// responders the server's receive work is paid by the server's core, as a NIC queue's interrupt would be.
    pub server_napi_thread: bool,
    /// The synack responder's AF_XDP ring sizes (a power of two): deep rings ride out the moments the NAPI
    /// thread takes the responder's core (4096 kept 38-43% at 300K SYN/s where 2048 kept 28-30%, same session).
    pub responder_ring_size: u32,
    /// The synack responder's UMEM frames: at least twice the ring size (half receive, half transmit).
    pub responder_frame_count: u32,
    /// Frames per pacing batch of the generator.
    pub flood_batch: u32,
    /// Count bound of an unpaced (`0`) flood; paced floods are bounded at 1.1 x rate x flood_secs.
    pub flood_max_frames: u64,
    /// synack's MSL in seconds (its TIME-WAIT lasts twice this; the server closes, so it holds TIME-WAIT).
    pub msl_secs: f64,
    /// Print the programs' per-second lines.
    pub live: bool,
    /// Write the whole report as JSON to this file.
    pub json: Option<PathBuf>,
}

impl Default for FloodBenchConfig {
    fn default() -> Self {
        FloodBenchConfig {
            rates: vec![100_000.0, 300_000.0, 0.0],
            kind: FloodKind::Syn,
            sources: crate::flood::FloodConfig::default().sources,
            source_order: SourceOrder::Random,
            baseline_secs: 3,
            flood_secs: 3,
            after_secs: 2,
            concurrency: 64,
            response_size: 64,
            backlog: 4096,
            syn_cookies: SynCookies::Auto,
            client_sources: 4,
            stacks: vec![StackKind::Synack, StackKind::Kernel],
            xdp_mode: XdpModeConfig::Native,
            flood_xdp_mode: XdpModeConfig::Generic,
            responder_core: 1,
            client_core: 0,
            flood_core: 0,
            server_rps: true,
            server_napi_thread: true,
            responder_ring_size: 4096,
            responder_frame_count: 16384,
            flood_batch: 64,
            flood_max_frames: 30_000_000,
            msl_secs: 30.0,
            live: false,
            json: None,
        }
    }
}

impl FloodBenchConfig {
    /// The kernel's `net.ipv4.tcp_syncookies` for `syn_cookies`.
    pub fn kernel_syncookies(&self) -> &'static str {
        match self.syn_cookies {
            SynCookies::Never => "0",
            SynCookies::Auto => "1",
            SynCookies::Always => "2",
        }
    }

    /// Seconds the legitimate client runs in each (stack, rate) run.
    pub fn run_secs(&self) -> u32 {
        self.baseline_secs + self.flood_secs + self.after_secs
    }

    /// A rough bound on the whole benchmark's wall time: each run, plus its drain and start-up.
    pub fn estimated_secs(&self) -> f64 {
        (self.stacks.len() * self.rates.len()) as f64 * (f64::from(self.run_secs()) + 2.0) + 2.0
    }
}

impl Validate for FloodBenchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.rates.is_empty() || self.rates.iter().any(|r| !(r.is_finite() && (0.0..=1e8).contains(r))) {
            return Err(bad(
                "rates",
                "a non-empty list of frames per second in 0..=1e8 (0 = as fast as it goes)",
            ));
        }
        if !BENCHMARK_NET.covers(&self.sources) {
            return Err(ConfigError(format!(
                "configuration key `sources`: {} is not inside {BENCHMARK_NET}, the RFC 2544 benchmarking range; \
                 the flood sends from and to addresses in it only",
                self.sources
            )));
        }
        if !self.responder_ring_size.is_power_of_two() || self.responder_ring_size < 64 {
            return Err(bad("responder_ring_size", "a power of two, at least 64"));
        }
        if self.responder_frame_count < 2 * self.responder_ring_size {
            return Err(bad("responder_frame_count", "at least twice responder_ring_size"));
        }
        if !(2..=60).contains(&self.baseline_secs) {
            return Err(bad("baseline_secs", "2..=60 (the first second is warm-up)"));
        }
        if !(1..=60).contains(&self.flood_secs) {
            return Err(bad("flood_secs", "1..=60"));
        }
        if !(1..=60).contains(&self.after_secs) {
            return Err(bad("after_secs", "1..=60"));
        }
        if self.concurrency == 0 || self.concurrency > 8192 {
            return Err(bad("concurrency", "1..=8192"));
        }
        check_sizes(Protocol::Http, 0, self.response_size)?;
        if self.backlog == 0 {
            return Err(bad("backlog", "at least 1"));
        }
        if self.client_sources == 0 || self.client_sources > 50 {
            return Err(bad("client_sources", "1..=50"));
        }
        if self.stacks.is_empty() {
            return Err(bad("stacks", "a non-empty list of \"synack\" and/or \"kernel\""));
        }
        if self.flood_batch == 0 || self.flood_batch > 2048 {
            return Err(bad("flood_batch", "1..=2048"));
        }
        if self.flood_max_frames == 0 || self.flood_max_frames > 1_000_000_000_000 {
            return Err(bad("flood_max_frames", "a count bound in 1..=1e12"));
        }
        if !(0.0..=3600.0).contains(&self.msl_secs) {
            return Err(bad("msl_secs", "0..=3600 seconds"));
        }
        Ok(())
    }
}
