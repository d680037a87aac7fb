//! `synack flood`: a bounded flood of spoofed TCP SYNs (or ACKs, or RSTs) at one target, over AF_XDP, for
//! measuring how a responder holds up under a SYN flood.
//!
//! Frames are built in place in UMEM transmit frames by the stack's own frame writer ([`FrameBuilder`]), each
//! from a spoofed source drawn from `sources`, and handed to the TX ring in small batches on an absolute
//! schedule ([`Pacer`]) or, with `rate = 0`, as fast as the ring drains. The AF_XDP socket's redirect program
//! is given no address, so it passes everything the interface receives to the kernel: the generator only
//! transmits.
//!
//! Every flood is bounded twice, by time (`duration_secs`) and by count (`max_frames`), and stops by itself at
//! whichever comes first. Every address it writes lies in 198.18.0.0/15 (RFC 2544); anything else is refused
//! before the device is even opened ([`FloodConfig::check_addresses`]).
//!
//! - [`cidr`]: prefixes and the benchmarking range;
//! - [`mac`]: the target's MAC address;
//! - [`settings`]: the configuration and its checks;
//! - [`frame`]: the frames;
//! - [`pacer`]: the schedule;
//! - [`rng`]: the random numbers;
//! - [`netdev`]: the interface's own drop counters.

pub mod cidr;
pub mod frame;
pub mod mac;
pub mod netdev;
pub mod pacer;
pub mod rng;
pub mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddrV4;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;
use synack::io::TxSink;
use synack_driver::{AfXdpConfig, AfXdpDevice, AfXdpError, BindMode, Device, DeviceError, DeviceStats};

pub use cidr::{BENCHMARK_NET, Cidr};
pub use frame::FrameBuilder;
pub use mac::Mac;
pub use pacer::Pacer;
pub use settings::{FloodConfig, FloodKind, SourceOrder, SynOption};

use crate::config::{ConfigError, Validate};

/// Why a flood could not run.
#[derive(Debug)]
pub enum FloodError {
    /// The configuration was refused (addresses outside 198.18.0.0/15 among others); the message names the key.
    Config(ConfigError),
    /// The AF_XDP device could not be opened.
    Open {
        /// The interface.
        interface: String,
        /// Why.
        source: AfXdpError,
    },
    /// The device failed while sending.
    Device(DeviceError),
}

impl fmt::Display for FloodError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FloodError::Config(e) => e.fmt(f),
            FloodError::Open { interface, source } => write!(f, "cannot open AF_XDP on {interface:?}: {source}"),
            FloodError::Device(e) => write!(f, "device error: {e}"),
        }
    }
}

impl std::error::Error for FloodError {}

impl From<ConfigError> for FloodError {
    fn from(e: ConfigError) -> FloodError {
        FloodError::Config(e)
    }
}

impl From<DeviceError> for FloodError {
    fn from(e: DeviceError) -> FloodError {
        FloodError::Device(e)
    }
}

/// Which bound ended a flood.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopCause {
    /// `duration_secs` passed.
    Duration,
    /// `max_frames` frames were sent.
    MaxFrames,
    /// The stop flag was set from outside.
    Stopped,
}

/// What a flood did.
#[derive(Clone, Debug, Serialize)]
pub struct FloodReport {
    /// "flood".
    pub program: &'static str,
    /// SYN, ACK or RST.
    pub kind: FloodKind,
    /// The interface it sent on.
    pub interface: String,
    /// The spoofed sources.
    pub sources: Cidr,
    /// How they were chosen.
    pub source_order: SourceOrder,
    /// The target.
    pub target: SocketAddrV4,
    /// The target's MAC address.
    pub target_mac: Mac,
    /// Bytes per frame.
    pub frame_len: usize,
    /// The configured rate (frames/s; 0 = as fast as the link allows).
    pub configured_rate: f64,
    /// The time bound, seconds.
    pub duration_limit_secs: f64,
    /// The count bound.
    pub max_frames: u64,
    /// Frames the transmit sink accepted.
    pub frames_queued: u64,
    /// Frames the kernel completed (left the socket for the link).
    pub frames_sent: u64,
    /// Seconds from the first frame to the stop.
    pub duration_secs: f64,
    /// Achieved rate: `frames_sent / duration_secs`.
    pub rate: f64,
    /// Times the transmit sink refused a frame (TX ring or free frames exhausted); the frame was retried later,
    /// not lost.
    pub tx_refused: u64,
    /// Frames dropped from the schedule because the link could not keep up (see [`Pacer`]).
    pub behind_schedule: u64,
    /// The interface's own transmit drops over the flood (veth: frames its peer could not take), when known.
    pub interface_tx_dropped: Option<u64>,
    /// Which bound ended the flood.
    pub stopped_by: StopCause,
    /// The random seed (a run with the same seed sends the same frames).
    pub seed: u64,
    /// The device's counters.
    pub device: BTreeMap<String, u64>,
    /// When the first frame went (for harnesses that line a flood up with other measurements).
    #[serde(skip)]
    pub started: Option<Instant>,
}

impl FloodReport {
    /// The report as text for people.
    pub fn text(&self) -> String {
        let rate = if self.configured_rate > 0.0 {
            format!("{:.0}/s", self.configured_rate)
        } else {
            "as fast as the link allows".to_owned()
        };
        let bound = match self.stopped_by {
            StopCause::Duration => "its time bound",
            StopCause::MaxFrames => "its count bound",
            StopCause::Stopped => "request",
        };
        let lower = |d: &dyn fmt::Debug| format!("{d:?}").to_lowercase();
        let mut s = format!(
            "flood ({} from {} {}, to {} via {}): {} frames of {} bytes in {:.2} s = {:.0} frames/s \
             (configured {rate}); stopped by {bound} ({} s, {} frames)\n",
            lower(&self.kind),
            self.sources,
            lower(&self.source_order),
            self.target,
            self.interface,
            self.frames_sent,
            self.frame_len,
            self.duration_secs,
            self.rate,
            self.duration_limit_secs,
            self.max_frames,
        );
        let dropped = self
            .interface_tx_dropped
            .map_or_else(|| "unknown".to_owned(), |d| d.to_string());
        s += &format!(
            "  queued {}  tx refused {}  behind schedule {}  interface tx dropped {dropped}  seed {}\n",
            self.frames_queued, self.tx_refused, self.behind_schedule, self.seed
        );
        let d: Vec<String> = self.device.iter().map(|(k, v)| format!("{k}={v}")).collect();
        s += &format!("  device: {}\n", d.join(" "));
        s
    }

    /// Writes the report as JSON to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// An open flood generator: the AF_XDP device and the frame builder.
pub struct Generator {
    cfg: FloodConfig,
    device: AfXdpDevice,
    builder: FrameBuilder,
    seed: u64,
}

impl Generator {
    /// Checks `cfg` and opens the AF_XDP device on `cfg.interface`, in the calling thread's network namespace.
    /// The device may then be run from another thread, but the interface's drop counter is read in the
    /// namespace of the thread that runs it.
    pub fn open(cfg: &FloodConfig) -> Result<Generator, FloodError> {
        cfg.validate()?;
        let device_cfg = AfXdpConfig {
            xdp_mode: cfg.xdp_mode.to_driver(),
            bind_mode: BindMode::Auto,
            // No address: the redirect program passes every received frame to the kernel.
            addresses: Vec::new(),
            frame_size: 2048,
            frame_count: cfg.frame_count,
            fill_size: 64,
            rx_size: 64,
            completion_size: cfg.ring_size,
            tx_size: cfg.ring_size,
            batch_size: cfg.batch,
            ..AfXdpConfig::new(cfg.interface.clone())
        };
        let device = AfXdpDevice::open(&device_cfg).map_err(|source| FloodError::Open {
            interface: cfg.interface.clone(),
            source,
        })?;
        if cfg.sndbuf_bytes > 0 {
            raise_sndbuf(device.raw_fd(), cfg.sndbuf_bytes);
        }
        let seed = if cfg.seed == 0 { rng::clock_seed() } else { cfg.seed };
        let builder = FrameBuilder::new(cfg, device.mac_address(), seed)?;
        Ok(Generator {
            cfg: cfg.clone(),
            device,
            builder,
            seed,
        })
    }

    /// Floods until a bound is reached or `stop` is set, then waits (at most 200 ms) for the kernel to complete
    /// what is queued, and reports.
    pub fn run(&mut self, stop: Option<&AtomicBool>) -> Result<FloodReport, FloodError> {
        if let Some(core) = self.cfg.core {
            if let Some(id) = core_affinity::get_core_ids().unwrap_or_default().get(core) {
                core_affinity::set_for_current(*id);
            }
        }
        let link0 = netdev::link_counters(&self.cfg.interface);
        let dev0 = self.device.stats();
        let mut pacer = Pacer::new(self.cfg.rate, u64::from(self.cfg.batch));
        let limit = Duration::from_secs_f64(self.cfg.duration_secs);
        let max_frames = self.cfg.max_frames;
        let len = self.builder.frame_len();
        let mut live = Live::new(self.cfg.live);
        let (mut queued, mut refused) = (0u64, 0u64);
        let started = Instant::now();
        let stopped_by = loop {
            let elapsed = started.elapsed();
            if elapsed >= limit {
                break StopCause::Duration;
            }
            if queued >= max_frames {
                break StopCause::MaxFrames;
            }
            if stop.is_some_and(|s| s.load(Ordering::Acquire)) {
                break StopCause::Stopped;
            }
            let n = pacer.allowance(elapsed).min(max_frames - queued);
            if n == 0 {
                if let Some(due) = pacer.next_due() {
                    wait_until(started, due.min(limit));
                }
                continue;
            }
            let mut k = 0;
            {
                let mut tx = self.device.transmitter();
                let builder = &mut self.builder;
                while k < n {
                    if tx.transmit(len, |frame| builder.write(frame)).is_err() {
                        refused += 1;
                        break;
                    }
                    k += 1;
                }
            }
            pacer.release(k);
            queued += k;
            self.device.flush()?;
            live.tick(elapsed, self.device.stats().tx_completed - dev0.tx_completed, refused);
        };
        let active = started.elapsed();
        let settle = Instant::now();
        while self.device.stats().tx_completed - dev0.tx_completed < queued
            && settle.elapsed() < Duration::from_millis(200)
        {
            self.device.flush()?;
            std::thread::sleep(Duration::from_micros(100));
        }
        let dev = self.device.stats();
        let sent = dev.tx_completed - dev0.tx_completed;
        let tx_dropped = match (link0, netdev::link_counters(&self.cfg.interface)) {
            (Some(a), Some(b)) => Some(b.since(&a).tx_dropped),
            _ => None,
        };
        let secs = active.as_secs_f64();
        Ok(FloodReport {
            program: "flood",
            kind: self.cfg.kind,
            interface: self.cfg.interface.clone(),
            sources: self.cfg.sources,
            source_order: self.cfg.source_order,
            target: self.cfg.target,
            target_mac: self.cfg.target_mac.unwrap_or(Mac([0; 6])),
            frame_len: len,
            configured_rate: self.cfg.rate,
            duration_limit_secs: self.cfg.duration_secs,
            max_frames,
            frames_queued: queued,
            frames_sent: sent,
            duration_secs: secs,
            rate: if secs > 0.0 { sent as f64 / secs } else { 0.0 },
            tx_refused: refused,
            behind_schedule: pacer.behind(),
            interface_tx_dropped: tx_dropped,
            stopped_by,
            seed: self.seed,
            device: device_counters(&dev, &dev0),
            started: Some(started),
        })
    }
}

/// Raises the socket's send buffer to `bytes` (`SO_SNDBUFFORCE`, past `wmem_max`; `SO_SNDBUF` if that is not
/// permitted). In copy mode each frame in flight is an skb charged to it, and veth hands a frame to its peer's
/// queue before the skb is freed: with the default (about 200 KiB) a receiver slower than the flood throttles
/// the generator through it, which no real flood allows. With room for every frame in flight, what the receiver
/// cannot take is dropped at its queue and counted there (`interface_tx_dropped`), as at a NIC's ring.
fn raise_sndbuf(fd: i32, bytes: u32) {
    let v = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: setsockopt on the device's socket with a valid c_int option value; failures only leave the
    // default in place.
    unsafe {
        if libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, (&raw const v).cast(), len) != 0 {
            libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_SNDBUF, (&raw const v).cast(), len);
        }
    }
}

/// Opens a generator for `cfg` and runs it (see [`Generator::run`]).
pub fn run_flood(cfg: &FloodConfig, stop: Option<&AtomicBool>) -> Result<FloodReport, FloodError> {
    Generator::open(cfg)?.run(stop)
}

/// Sleeps until `due` after `start`, leaving the core to others sharing it: a sleep for waits long enough to
/// absorb its overshoot (the schedule makes up for it), a yield for short ones.
fn wait_until(start: Instant, due: Duration) {
    let wait = due.saturating_sub(start.elapsed());
    if wait > Duration::from_micros(100) {
        std::thread::sleep(wait - Duration::from_micros(50));
    } else if !wait.is_zero() {
        std::thread::yield_now();
    }
}

fn device_counters(d: &DeviceStats, before: &DeviceStats) -> BTreeMap<String, u64> {
    BTreeMap::from([
        ("tx_frames".to_owned(), d.tx_frames - before.tx_frames),
        ("tx_completed".to_owned(), d.tx_completed - before.tx_completed),
        ("tx_dropped".to_owned(), d.tx_dropped - before.tx_dropped),
        ("tx_ring_full".to_owned(), d.tx_ring_full - before.tx_ring_full),
        ("tx_kicks".to_owned(), d.tx_kicks - before.tx_kicks),
        ("rx_frames".to_owned(), d.rx_frames - before.rx_frames),
    ])
}

/// The per-second line.
struct Live {
    enabled: bool,
    next: Duration,
    last_sent: u64,
    last_refused: u64,
}

impl Live {
    fn new(enabled: bool) -> Live {
        Live {
            enabled,
            next: Duration::from_secs(1),
            last_sent: 0,
            last_refused: 0,
        }
    }

    fn tick(&mut self, elapsed: Duration, sent: u64, refused: u64) {
        if !self.enabled || elapsed < self.next {
            return;
        }
        eprintln!(
            "[flood {:>5.1}s] frames/s {:>9}  tx refused/s {:>7}",
            elapsed.as_secs_f64(),
            sent - self.last_sent,
            refused - self.last_refused
        );
        self.next = Duration::from_secs(elapsed.as_secs() + 1);
        (self.last_sent, self.last_refused) = (sent, refused);
    }
}
