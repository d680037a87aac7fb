//! Program configuration: TOML files (see `configs/`), with every key overridable on the command line by
//! `--set key=value`. Unknown keys are refused (`deny_unknown_fields`) and every value is checked by
//! `validate`, so a typo or an impossible setting stops the program with a message naming the key, instead of
//! silently running a different benchmark.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Which TCP stack a program runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StackKind {
    /// synack's engine over AF_XDP (or the in-memory link, inside `bench` and tests).
    Synack,
    /// The Linux kernel's sockets (non-blocking, epoll through mio): the baseline, measured by the same tool.
    Kernel,
}

/// Where the redirect program runs (synack over AF_XDP only).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeConfig {
    /// Native if the driver has it, else generic.
    Auto,
    /// In the driver (veth has it).
    Native,
    /// In the generic (skb) path.
    Generic,
}

impl XdpModeConfig {
    /// The driver's mode.
    pub fn to_driver(self) -> synack_driver::XdpMode {
        match self {
            XdpModeConfig::Auto => synack_driver::XdpMode::Auto,
            XdpModeConfig::Native => synack_driver::XdpMode::Native,
            XdpModeConfig::Generic => synack_driver::XdpMode::Generic,
        }
    }
}

/// What a request and a response look like on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Requests of exactly `request_size` bytes, responses of exactly `response_size` bytes.
    Fixed,
    /// HTTP/1.1: a request ends at its blank line ("\r\n\r\n"); the response is "200 OK" with a body of
    /// `response_size` bytes and a Content-Length, so curl, ab and wrk work against the responder.
    Http,
}

/// Who sends the first FIN, and so who holds TIME-WAIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CloseFirst {
    /// The client closes once it has every response; the server closes when it sees the client's FIN.
    Client,
    /// The server closes after `requests_per_connection` responses; the client closes when it sees the FIN.
    Server,
}

/// Open loop (arrivals on a schedule) or closed loop (fixed concurrency).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LoadMode {
    /// A new connection every 1/`rate` seconds whatever happens; latency counts from the scheduled start, so a
    /// stalled server shows as latency, not as a slower client (no coordinated omission).
    Open,
    /// `concurrency` connections open at all times: the next starts when one ends. Measures the peak rate.
    Closed,
}

/// Engine sizes and TCP tunables shared by the synack programs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EngineSettings {
    /// Most connections held at once (any state but TIME-WAIT).
    pub max_connections: usize,
    /// Most TIME-WAIT records held at once (beyond, TIME-WAIT is skipped and counted).
    pub max_time_wait: usize,
    /// Maximum segment lifetime in seconds: TIME-WAIT lasts twice this; 0 skips TIME-WAIT (benchmarks only).
    pub msl_secs: f64,
    /// Bytes per send/receive buffer.
    pub buffer_size: usize,
    /// Buffers in the engine's pool.
    pub buffer_count: usize,
    /// Delayed ACK in milliseconds (0 = acknowledge at once).
    pub delayed_ack_ms: u64,
    /// Nagle's algorithm.
    pub nagle: bool,
    /// AF_XDP UMEM frames.
    pub frame_count: u32,
    /// AF_XDP ring sizes (fill, completion, RX, TX), a power of two.
    pub ring_size: u32,
    /// Frames received per poll-loop turn.
    pub batch: usize,
    /// SYN cookies: "auto" (when the backlog or the half-open share is full), "always" or "never".
    pub syn_cookies: SynCookies,
    /// Most half-open connections, as a percentage of `max_connections`.
    pub half_open_percent: u8,
}

/// When a synack listener answers SYNs with SYN cookies (see `synack::engine::SynCookieMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SynCookies {
    /// When the backlog, the half-open share or the table is full.
    #[default]
    Auto,
    /// For every SYN.
    Always,
    /// Never: SYNs beyond the limits are dropped, counted.
    Never,
}

impl SynCookies {
    /// The engine's mode.
    pub fn to_engine(self) -> synack::engine::SynCookieMode {
        match self {
            SynCookies::Auto => synack::engine::SynCookieMode::Auto,
            SynCookies::Always => synack::engine::SynCookieMode::Always,
            SynCookies::Never => synack::engine::SynCookieMode::Never,
        }
    }
}

impl Default for EngineSettings {
    fn default() -> Self {
        EngineSettings {
            max_connections: 16384,
            max_time_wait: 262_144,
            msl_secs: 30.0,
            buffer_size: 16 * 1024,
            buffer_count: 8192,
            delayed_ack_ms: 40,
            nagle: false,
            frame_count: 8192,
            ring_size: 2048,
            batch: 64,
            syn_cookies: SynCookies::Auto,
            half_open_percent: 50,
        }
    }
}

/// The responder's configuration (`configs/responder.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ResponderConfig {
    /// synack or kernel.
    pub stack: StackKind,
    /// The interface synack opens with AF_XDP (synack only).
    pub interface: String,
    /// XDP attach mode (synack only).
    pub xdp_mode: XdpModeConfig,
    /// Addresses to listen on. synack owns them (answers ARP; they must not be configured on the interface);
    /// the kernel binds them (they must be configured).
    pub addresses: Vec<Ipv4Addr>,
    /// Ports to listen on.
    pub ports: Vec<u16>,
    /// Request/response format.
    pub protocol: Protocol,
    /// Bytes per request (fixed protocol).
    pub request_size: usize,
    /// Bytes per response (fixed), or body bytes (http).
    pub response_size: usize,
    /// Who closes first.
    pub close: CloseFirst,
    /// With `close = "server"`: responses before the server closes.
    pub requests_per_connection: u32,
    /// Seconds to run; 0 runs until stopped.
    pub duration_secs: f64,
    /// Listen backlog (SYN-RECEIVED bound for synack, listen() backlog for the kernel).
    pub backlog: u32,
    /// Core to pin the thread to (index into the machine's cores).
    pub core: Option<usize>,
    /// Print a line every second.
    pub live: bool,
    /// Write the final report as JSON to this file.
    pub json: Option<PathBuf>,
    /// Engine sizes (synack only).
    pub engine: EngineSettings,
}

impl Default for ResponderConfig {
    fn default() -> Self {
        ResponderConfig {
            stack: StackKind::Synack,
            interface: String::new(),
            xdp_mode: XdpModeConfig::Auto,
            addresses: vec![Ipv4Addr::new(198, 18, 0, 2)],
            ports: vec![8080],
            protocol: Protocol::Fixed,
            request_size: 64,
            response_size: 64,
            close: CloseFirst::Client,
            requests_per_connection: 1,
            duration_secs: 0.0,
            backlog: 4096,
            core: None,
            live: true,
            json: None,
            engine: EngineSettings::default(),
        }
    }
}

/// The load generator's configuration (`configs/loadgen.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadgenConfig {
    /// synack or kernel.
    pub stack: StackKind,
    /// The interface synack opens with AF_XDP (synack only).
    pub interface: String,
    /// XDP attach mode (synack only).
    pub xdp_mode: XdpModeConfig,
    /// Source addresses, used round-robin: each multiplies the ports available per destination.
    pub sources: Vec<Ipv4Addr>,
    /// Local port range [first, last] (synack; the kernel takes ip_local_port_range).
    pub port_range: [u16; 2],
    /// Servers to connect to, used round-robin ("198.18.0.2:8080").
    pub targets: Vec<SocketAddrV4>,
    /// Open or closed loop.
    pub mode: LoadMode,
    /// Open loop: new connections per second.
    pub rate: f64,
    /// Closed loop: connections open at once. Open loop: the most open at once (arrivals beyond fail).
    pub concurrency: u32,
    /// Request/response format.
    pub protocol: Protocol,
    /// Bytes per request (fixed protocol).
    pub request_size: usize,
    /// Bytes per response expected (fixed protocol; http reads Content-Length).
    pub response_size: usize,
    /// Requests on each connection, one after the other.
    pub requests_per_connection: u32,
    /// Who closes first (must match the server's setting).
    pub close: CloseFirst,
    /// Seconds to start new connections; 0 means no time bound (then `connections` must be set).
    pub duration_secs: f64,
    /// Connections to start in all; 0 means no count bound.
    pub connections: u64,
    /// Seconds to wait for open connections to finish after the last start.
    pub drain_secs: f64,
    /// Core to pin the thread to.
    pub core: Option<usize>,
    /// Print a line every second.
    pub live: bool,
    /// Write the final report as JSON to this file.
    pub json: Option<PathBuf>,
    /// Engine sizes (synack only).
    pub engine: EngineSettings,
}

impl Default for LoadgenConfig {
    fn default() -> Self {
        LoadgenConfig {
            stack: StackKind::Synack,
            interface: String::new(),
            xdp_mode: XdpModeConfig::Auto,
            sources: vec![Ipv4Addr::new(198, 18, 0, 1)],
            port_range: [32768, 60999],
            targets: vec![SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 8080)],
            mode: LoadMode::Closed,
            rate: 10_000.0,
            concurrency: 64,
            protocol: Protocol::Fixed,
            request_size: 64,
            response_size: 64,
            requests_per_connection: 1,
            close: CloseFirst::Client,
            duration_secs: 10.0,
            connections: 0,
            drain_secs: 3.0,
            core: None,
            live: true,
            json: None,
            engine: EngineSettings::default(),
        }
    }
}

/// The one-command benchmark's configuration (`configs/bench.toml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BenchConfig {
    /// Seconds each phase (one stack, one case) generates load.
    pub duration_secs: f64,
    /// Closed-loop concurrency of the load generator.
    pub concurrency: u32,
    /// Bytes per request.
    pub request_size: usize,
    /// Bytes per response.
    pub response_size: usize,
    /// Close orders to run: "client", "server".
    pub close: Vec<CloseFirst>,
    /// MSL values to run synack with, in seconds (TIME-WAIT = 2*MSL; 0 = none).
    pub msl_secs: Vec<f64>,
    /// Source addresses the load generators use (each stack gets its own set).
    pub source_count: u8,
    /// XDP attach mode.
    pub xdp_mode: XdpModeConfig,
    /// Core of the load generator.
    pub loadgen_core: usize,
    /// Core of the responder.
    pub responder_core: usize,
    /// Also run the Linux kernel on the same veth and cores.
    pub kernel: bool,
    /// Also measure a bare AF_XDP reflector's frames/s (the link's limit).
    pub reflector: bool,
    /// Open-loop rates (new connections per second) at which synack's load generator drives synack's responder
    /// on a fixed schedule, the way dperf runs (server closes, TIME-WAIT 2 x the first `msl_secs` kept); empty
    /// for none. A closed loop throttles itself; an open loop shows where losses start.
    pub open_rates: Vec<f64>,
    /// Seconds each open-loop rate runs.
    pub open_secs: f64,
    /// Run the in-memory comparison even with root and AF_XDP.
    pub force_memory: bool,
    /// Print the programs' live lines.
    pub live: bool,
    /// Write every phase's reports as JSON to this file.
    pub json: Option<PathBuf>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        BenchConfig {
            duration_secs: 10.0,
            concurrency: 64,
            request_size: 64,
            response_size: 64,
            close: vec![CloseFirst::Client, CloseFirst::Server],
            msl_secs: vec![30.0, 0.0],
            source_count: 4,
            xdp_mode: XdpModeConfig::Native,
            loadgen_core: 0,
            responder_core: 1,
            kernel: true,
            reflector: true,
            open_rates: vec![60_000.0, 100_000.0, 140_000.0],
            open_secs: 5.0,
            force_memory: false,
            live: false,
            json: None,
        }
    }
}

/// A configuration that could not be loaded; the message names the key and what was expected.
#[derive(Debug)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

/// A refusal naming `key` and what it should have been (shared with the flood programs' configurations).
pub(crate) fn bad(key: &str, expected: &str) -> ConfigError {
    ConfigError(format!("configuration key `{key}`: expected {expected}"))
}

/// A configuration that can check itself after parsing.
pub trait Validate {
    /// Refuses impossible settings, naming the key.
    fn validate(&self) -> Result<(), ConfigError>;
}

impl Validate for EngineSettings {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(bad("engine.max_connections", "at least 1"));
        }
        if !(0.0..=3600.0).contains(&self.msl_secs) {
            return Err(bad("engine.msl_secs", "0..=3600 seconds"));
        }
        if self.buffer_size < 1024 {
            return Err(bad("engine.buffer_size", "at least 1024 bytes"));
        }
        if self.buffer_count == 0 {
            return Err(bad("engine.buffer_count", "at least 1"));
        }
        if self.delayed_ack_ms >= 500 {
            return Err(bad("engine.delayed_ack_ms", "under 500 (RFC 9293 MUST-40)"));
        }
        if !self.ring_size.is_power_of_two() || self.ring_size < 64 {
            return Err(bad("engine.ring_size", "a power of two, at least 64"));
        }
        if self.frame_count < 2 * self.ring_size {
            return Err(bad("engine.frame_count", "at least twice engine.ring_size"));
        }
        if self.batch == 0 {
            return Err(bad("engine.batch", "at least 1"));
        }
        if !(1..=100).contains(&self.half_open_percent) {
            return Err(bad("engine.half_open_percent", "1 to 100"));
        }
        Ok(())
    }
}

pub(crate) fn check_sizes(protocol: Protocol, request: usize, response: usize) -> Result<(), ConfigError> {
    if protocol == Protocol::Fixed && request == 0 {
        return Err(bad("request_size", "at least 1 byte with protocol = \"fixed\""));
    }
    if protocol == Protocol::Fixed && response == 0 {
        return Err(bad("response_size", "at least 1 byte with protocol = \"fixed\""));
    }
    if request > 1 << 20 || response > 1 << 20 {
        return Err(bad("request_size/response_size", "at most 1 MiB"));
    }
    Ok(())
}

pub(crate) fn check_duration(key: &str, secs: f64) -> Result<(), ConfigError> {
    if !(0.0..=86_400.0).contains(&secs) {
        return Err(bad(key, "a number of seconds in 0..=86400"));
    }
    Ok(())
}

impl Validate for ResponderConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.stack == StackKind::Synack && self.interface.is_empty() {
            return Err(bad("interface", "an interface name for stack = \"synack\""));
        }
        if self.addresses.is_empty() {
            return Err(bad("addresses", "at least one IPv4 address"));
        }
        if self.ports.is_empty() || self.ports.contains(&0) {
            return Err(bad("ports", "a non-empty list of non-zero ports"));
        }
        check_sizes(self.protocol, self.request_size, self.response_size)?;
        if self.requests_per_connection == 0 {
            return Err(bad("requests_per_connection", "at least 1"));
        }
        check_duration("duration_secs", self.duration_secs)?;
        if self.backlog == 0 {
            return Err(bad("backlog", "at least 1"));
        }
        self.engine.validate()
    }
}

impl Validate for LoadgenConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.stack == StackKind::Synack && self.interface.is_empty() {
            return Err(bad("interface", "an interface name for stack = \"synack\""));
        }
        if self.sources.is_empty() {
            return Err(bad("sources", "at least one source IPv4 address"));
        }
        if self.port_range[0] == 0 || self.port_range[0] > self.port_range[1] {
            return Err(bad("port_range", "[first, last] with 0 < first <= last"));
        }
        if self.targets.is_empty() || self.targets.iter().any(|t| t.port() == 0) {
            return Err(bad("targets", "at least one \"address:port\" with a non-zero port"));
        }
        if self.mode == LoadMode::Open && !(self.rate > 0.0 && self.rate <= 100e6) {
            return Err(bad("rate", "connections per second in (0, 1e8] with mode = \"open\""));
        }
        if self.concurrency == 0 {
            return Err(bad("concurrency", "at least 1"));
        }
        check_sizes(self.protocol, self.request_size, self.response_size)?;
        if self.requests_per_connection == 0 {
            return Err(bad("requests_per_connection", "at least 1"));
        }
        check_duration("duration_secs", self.duration_secs)?;
        check_duration("drain_secs", self.drain_secs)?;
        if self.duration_secs == 0.0 && self.connections == 0 {
            return Err(bad(
                "duration_secs",
                "a time bound, or `connections` > 0 (one bound at least)",
            ));
        }
        if self.stack == StackKind::Synack && self.concurrency as usize > self.engine.max_connections {
            return Err(bad("concurrency", "at most engine.max_connections"));
        }
        self.engine.validate()
    }
}

impl Validate for BenchConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !(self.duration_secs > 0.0 && self.duration_secs <= 600.0) {
            return Err(bad("duration_secs", "seconds in (0, 600]"));
        }
        if self.concurrency == 0 || self.concurrency > 8192 {
            return Err(bad("concurrency", "1..=8192"));
        }
        check_sizes(Protocol::Fixed, self.request_size, self.response_size)?;
        if self.close.is_empty() {
            return Err(bad("close", "a non-empty list of \"client\" and/or \"server\""));
        }
        if self.msl_secs.is_empty() || self.msl_secs.iter().any(|m| !(0.0..=3600.0).contains(m)) {
            return Err(bad("msl_secs", "a non-empty list of seconds in 0..=3600"));
        }
        if self.source_count == 0 || self.source_count > 50 {
            return Err(bad("source_count", "1..=50"));
        }
        if self
            .open_rates
            .iter()
            .any(|r| !(r.is_finite() && (1.0..=10_000_000.0).contains(r)))
        {
            return Err(bad("open_rates", "a list of connections per second in 1..=1e7"));
        }
        if !(self.open_secs > 0.0 && self.open_secs <= 600.0) {
            return Err(bad("open_secs", "seconds in (0, 600]"));
        }
        Ok(())
    }
}

/// Loads a configuration: the TOML file (if any), then each `key=value` override (the value is read as a TOML
/// value, or as a string if it is not one; `engine.x` reaches the `[engine]` table), then validation.
pub fn load<T: DeserializeOwned + Validate>(file: Option<&Path>, overrides: &[String]) -> Result<T, ConfigError> {
    let mut table = match file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError(format!("cannot read {}: {e}", path.display())))?;
            text.parse::<toml::Table>()
                .map_err(|e| ConfigError(format!("{}: {e}", path.display())))?
        }
        None => toml::Table::new(),
    };
    for o in overrides {
        let (key, value) = o
            .split_once('=')
            .ok_or_else(|| ConfigError(format!("override {o:?}: expected key=value")))?;
        let (key, value) = (key.trim(), value.trim());
        let parsed = format!("v = {value}")
            .parse::<toml::Table>()
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.to_owned()));
        let mut target = &mut table;
        let mut parts: Vec<&str> = key.split('.').collect();
        let last = parts.pop().unwrap_or_default();
        for part in parts {
            let entry = target
                .entry(part.to_owned())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            target = entry
                .as_table_mut()
                .ok_or_else(|| ConfigError(format!("override {o:?}: `{part}` is not a table")))?;
        }
        target.insert(last.to_owned(), parsed);
    }
    let config: T = toml::Value::Table(table)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError(format!("configuration: {}", e.to_string().trim())))?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_unknown_key_is_refused_naming_it() {
        let e = load::<LoadgenConfig>(None, &["rtae=5".into()]).unwrap_err();
        assert!(e.0.contains("rtae"), "{e}");
    }

    #[test]
    fn config_bad_value_is_refused_naming_key() {
        let e = load::<LoadgenConfig>(None, &["interface=x".into(), "concurrency=0".into()]).unwrap_err();
        assert!(e.0.contains("`concurrency`"), "{e}");
        let e = load::<LoadgenConfig>(None, &["interface=x".into(), "mode=sideways".into()]).unwrap_err();
        assert!(e.0.contains("sideways"), "{e}");
    }

    #[test]
    fn config_overrides_reach_nested_tables_and_lists() {
        let c = load::<LoadgenConfig>(
            None,
            &[
                "interface=veth9".into(),
                "engine.msl_secs=0".into(),
                "sources=[\"198.18.0.7\", \"198.18.0.8\"]".into(),
                "targets=[\"198.18.0.9:80\"]".into(),
            ],
        )
        .unwrap();
        assert_eq!(c.interface, "veth9");
        assert_eq!(c.engine.msl_secs, 0.0);
        assert_eq!(c.sources.len(), 2);
        assert_eq!(c.targets[0].port(), 80);
    }

    #[test]
    fn config_shipped_examples_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../configs");
        load::<ResponderConfig>(Some(&dir.join("responder.toml")), &[]).unwrap();
        load::<LoadgenConfig>(Some(&dir.join("loadgen.toml")), &[]).unwrap();
        load::<BenchConfig>(Some(&dir.join("bench.toml")), &[]).unwrap();
    }
}
