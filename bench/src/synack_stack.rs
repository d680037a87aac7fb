//! The responder and the load generator on synack: two [`App`]s driven by the driver's [`PollLoop`] over
//! AF_XDP or the in-memory link.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use synack::engine::{CloseReason, ConnHandle, Counters, Engine, EngineConfig, Event, EventKind};
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;
use synack_driver::{
    AfXdpConfig, AfXdpDevice, App, BindMode, Clock, Device, DeviceStats, IdleStrategy, KernelXskStats, LoopStats,
    MemoryPort, PollConfig, PollLoop,
};

use crate::config::{CloseFirst, EngineSettings, LoadMode, LoadgenConfig, Protocol, ResponderConfig, StackKind};
use crate::proto::{RequestCounter, ResponseCounter, request_bytes, response_bytes};
use crate::report::{Latencies, LiveLine, PerSecond, Report, Totals, count_failure};

/// What the lifecycle latency measures, for the report.
pub const LOADGEN_LIFECYCLE: &str = "start to the client's close, once every response is in (and, when the server \
                                     closes first, its FIN)";
/// Same, for the responder.
pub const RESPONDER_LIFECYCLE: &str = "accept to the connection's end (both FINs acknowledged)";

/// The wire a synack program runs on.
pub enum Link {
    /// An AF_XDP socket on queue 0 of `interface` (in the calling thread's network namespace).
    AfXdp {
        /// Interface name.
        interface: String,
        /// XDP attach mode.
        mode: synack_driver::XdpMode,
    },
    /// One end of an in-memory link, with the MAC address the engine takes.
    Memory {
        /// The port.
        port: MemoryPort,
        /// Our MAC.
        mac: [u8; 6],
    },
}

/// Outside control of a run: a stop flag, a graceful-stop flag, and a signal sent once the program is ready for
/// traffic.
#[derive(Default)]
pub struct Control {
    /// Stops the run when set.
    pub stop: Option<Arc<AtomicBool>>,
    /// Stops it gracefully when set (the first SIGINT/SIGTERM): no new connections, the open ones get up to
    /// [`DRAIN`] (the load generator: its `drain_secs`) to finish, then the run ends and reports.
    pub drain: Option<Arc<AtomicBool>>,
    /// Receives one message once the device is open and the engine listens.
    pub ready: Option<crossbeam_channel::Sender<()>>,
}

/// Why a program could not run.
#[derive(Debug)]
pub struct RunError(pub String);

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for RunError {}

/// The engine configuration for these settings.
pub fn engine_config(
    settings: &EngineSettings,
    mac: [u8; 6],
    addresses: Vec<Ipv4Addr>,
    ports: (u16, u16),
) -> EngineConfig {
    EngineConfig {
        mac: MacAddr(mac),
        addresses,
        max_connections: settings.max_connections,
        max_time_wait: settings.max_time_wait,
        buffer_size: settings.buffer_size,
        buffer_count: settings.buffer_count,
        msl: Duration::from_secs_f64(settings.msl_secs),
        delayed_ack: (settings.delayed_ack_ms > 0).then(|| Duration::from_millis(settings.delayed_ack_ms)),
        nagle: settings.nagle,
        ephemeral_ports: ports,
        syn_cookies: settings.syn_cookies.to_engine(),
        // A program serves load from its first second: no page faults under it.
        prefault: true,
        half_open_percent: settings.half_open_percent,
        ..EngineConfig::default()
    }
}

fn afxdp_config(interface: &str, mode: synack_driver::XdpMode, s: &EngineSettings, addrs: &[Ipv4Addr]) -> AfXdpConfig {
    AfXdpConfig {
        xdp_mode: mode,
        bind_mode: BindMode::Auto,
        addresses: addrs.to_vec(),
        frame_count: s.frame_count,
        fill_size: s.ring_size,
        completion_size: s.ring_size,
        rx_size: s.ring_size,
        tx_size: s.ring_size,
        batch_size: 64,
        ..AfXdpConfig::new(interface)
    }
}

/// The engine's counters that count drops of any kind.
pub fn drops(c: &Counters) -> u64 {
    c.iter()
        .filter(|(k, _)| k.starts_with("drop_") || *k == "tx_sink_full" || *k == "events_lost")
        .map(|(_, v)| v)
        .sum()
}

/// Resets sent or received.
pub fn resets(c: &Counters) -> u64 {
    c.closed_reset + c.rst_sent
}

/// An application whose live totals and report the runner reads.
trait Program: App {
    fn finish(&self, report: &mut Report);
}

#[allow(clippy::too_many_arguments)] // one call site per program; a struct would only rename them
/// Runs `app` over `link` until it is done, the stop flag is set or `limit` passes; returns the report.
fn drive<A: Program>(
    mut app: A,
    mut report: Report,
    link: Link,
    settings: &EngineSettings,
    addresses: Vec<Ipv4Addr>,
    ports: (u16, u16),
    core: Option<usize>,
    limit: Option<Duration>,
    setup: impl FnOnce(&mut Engine) -> Result<(), RunError>,
    control: Control,
) -> Result<Report, RunError> {
    let poll = |fd: Option<i32>| PollConfig {
        batch: settings.batch,
        core,
        stop: control.stop.clone(),
        max_duration: limit,
        idle_spins: 256,
        idle: match fd {
            Some(fd) => IdleStrategy::PollFd {
                fd,
                max: Duration::from_millis(1),
            },
            None => IdleStrategy::Sleep(Duration::from_micros(50)),
        },
        ..PollConfig::default()
    };
    fn go<D: Device, A: Program>(
        engine: Engine,
        device: D,
        clock: Clock,
        config: PollConfig,
        app: &mut A,
        ready: Option<crossbeam_channel::Sender<()>>,
    ) -> Result<(Counters, DeviceStats, LoopStats, Option<KernelXskStats>), RunError> {
        let mut l = PollLoop::new(engine, device, clock, config);
        if let Some(r) = ready {
            let _ = r.send(());
        }
        l.run(app).map_err(|e| RunError(format!("device error: {e}")))?;
        Ok((
            *l.engine().counters(),
            l.device_stats(),
            l.stats(),
            l.device().kernel_stats(),
        ))
    }
    let clock = Clock::new();
    let (counters, dev, stats, kernel) = match link {
        Link::AfXdp { interface, mode } => {
            let device = AfXdpDevice::open(&afxdp_config(&interface, mode, settings, &addresses))
                .map_err(|e| RunError(format!("cannot open AF_XDP on {interface:?}: {e}")))?;
            let config = engine_config(settings, device.mac_address(), addresses, ports);
            config
                .check_frame_capacity(device.frame_capacity())
                .map_err(|e| RunError(format!("engine on {interface:?}: {e}")))?;
            let mut engine = Engine::new(config, clock.now()).map_err(|e| RunError(format!("engine: {e}")))?;
            setup(&mut engine)?;
            let fd = device.raw_fd();
            go(engine, device, clock, poll(Some(fd)), &mut app, control.ready)?
        }
        Link::Memory { port, mac } => {
            let config = engine_config(settings, mac, addresses, ports);
            config
                .check_frame_capacity(port.frame_capacity())
                .map_err(|e| RunError(format!("engine on the in-memory link: {e}")))?;
            let mut engine = Engine::new(config, clock.now()).map_err(|e| RunError(format!("engine: {e}")))?;
            setup(&mut engine)?;
            go(engine, port, clock, poll(None), &mut app, control.ready)?
        }
    };
    app.finish(&mut report);
    report.frames = counters.rx_frames + counters.tx_frames;
    report.counters = counters
        .iter()
        .filter(|&(_, v)| v != 0)
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    report.device = BTreeMap::from([
        ("rx_frames".to_owned(), dev.rx_frames),
        ("tx_frames".to_owned(), dev.tx_frames),
        ("tx_dropped".to_owned(), dev.tx_dropped),
        ("tx_ring_full".to_owned(), dev.tx_ring_full),
        ("fill_ring_empty".to_owned(), dev.fill_ring_empty),
        ("tx_kicks".to_owned(), dev.tx_kicks),
        ("loop_iterations".to_owned(), stats.iterations),
        ("loop_idle_iterations".to_owned(), stats.idle_iterations),
        ("pinned".to_owned(), u64::from(stats.pinned)),
    ]);
    if let Some(k) = kernel {
        // Frames the kernel dropped before synack saw them: a full RX ring, an empty fill ring, other reasons.
        report.device.extend([
            ("kernel_rx_ring_full".to_owned(), k.rx_ring_full),
            ("kernel_rx_fill_ring_empty".to_owned(), k.rx_fill_ring_empty_descs),
            ("kernel_rx_dropped".to_owned(), k.rx_dropped),
        ]);
    }
    report.retransmits = counters.retransmits;
    report.resets = resets(&counters);
    report.drops = drops(&counters) + dev.tx_dropped;
    Ok(report)
}

/// How long a responder told to stop gracefully lets its open connections finish.
pub const DRAIN: Duration = Duration::from_secs(2);

/// Whether a flag is set.
pub(crate) fn is_set(flag: &Option<Arc<AtomicBool>>) -> bool {
    flag.as_ref().is_some_and(|f| f.load(Ordering::Acquire))
}

/// Tells the user a graceful stop began (both stacks' programs say it alike).
pub(crate) fn announce_stop(program: &str, open: u64, drain: Duration) {
    eprintln!(
        "{program}: stopping: no new connections; {open} open get up to {:.1} s to finish (a second signal exits \
         at once)",
        drain.as_secs_f64()
    );
}

fn since(now: Instant, then: Instant) -> Duration {
    now.saturating_since(then)
}

// ----- responder ---------------------------------------------------------------------------------------------

struct ServerConn {
    handle: ConnHandle,
    accepted: Instant,
    counter: RequestCounter,
    /// Responses owed and not yet fully queued.
    owed: u32,
    /// Bytes of the response being queued that `send` has taken.
    offset: usize,
    responses: u32,
    peer_closed: bool,
    closing: bool,
}

struct Responder {
    protocol: Protocol,
    request_size: usize,
    close: CloseFirst,
    per_conn: u32,
    response: Vec<u8>,
    conns: Vec<Option<ServerConn>>,
    buf: Vec<u8>,
    totals: Totals,
    requests: u64,
    failures: BTreeMap<String, u64>,
    lat: Latencies,
    start: Option<Instant>,
    last_done: Instant,
    live: LiveLine,
    /// The graceful-stop flag ([`Control::drain`]), and when it was first seen.
    drain: Option<Arc<AtomicBool>>,
    draining_since: Option<Instant>,
    last_tick: Instant,
}

impl Responder {
    fn pump(&mut self, engine: &mut Engine, index: usize) {
        let Some(Some(c)) = self.conns.get_mut(index) else {
            return;
        };
        loop {
            match engine.recv(c.handle, &mut self.buf) {
                Ok(0) => {
                    c.peer_closed = true;
                    break;
                }
                Ok(n) => c.owed += c.counter.feed(&self.buf[..n]),
                Err(_) => break,
            }
        }
        while c.owed > 0 && !c.closing {
            match engine.send(c.handle, &self.response[c.offset..]) {
                Ok(n) => c.offset += n,
                Err(_) => break,
            }
            if c.offset < self.response.len() {
                break; // a Writable event follows
            }
            c.offset = 0;
            c.owed -= 1;
            c.responses += 1;
            self.requests += 1;
        }
        let all_sent = c.owed == 0 && c.offset == 0;
        let close_now = match self.close {
            CloseFirst::Server => c.responses >= self.per_conn && all_sent,
            CloseFirst::Client => c.peer_closed && all_sent,
        };
        if close_now && !c.closing {
            c.closing = true;
            let _ = engine.close(c.handle);
        }
    }
}

impl App for Responder {
    fn on_event(&mut self, now: Instant, event: Event, engine: &mut Engine) {
        let index = event.conn.index();
        match event.kind {
            EventKind::Accepted { listener } if self.draining_since.is_some() => {
                // Stopping: no new connections (and no more from this listener).
                engine.unlisten(listener);
                let _ = engine.abort(event.conn);
                count_failure(&mut self.failures, "refused_while_stopping");
            }
            EventKind::Accepted { .. } => {
                if let Some(slot) = self.conns.get_mut(index) {
                    *slot = Some(ServerConn {
                        handle: event.conn,
                        accepted: now,
                        counter: RequestCounter::new(self.protocol, self.request_size),
                        owed: 0,
                        offset: 0,
                        responses: 0,
                        peer_closed: false,
                        closing: false,
                    });
                    self.totals.started += 1;
                    self.totals.open += 1;
                }
            }
            EventKind::Closed { reason } => {
                let Some(slot) = self.conns.get_mut(index) else { return };
                if slot.as_ref().is_none_or(|c| c.handle != event.conn) {
                    return;
                }
                let Some(c) = slot.take() else { return };
                self.totals.open -= 1;
                if reason == CloseReason::Normal {
                    self.totals.completed += 1;
                    self.last_done = now;
                    self.lat.lifecycle.record(since(now, c.accepted));
                } else {
                    self.totals.failed += 1;
                    count_failure(&mut self.failures, &format!("{reason:?}"));
                }
                if !c.closing {
                    let _ = engine.close(event.conn);
                }
            }
            EventKind::Connected => {}
            EventKind::Readable | EventKind::Writable | EventKind::PeerClosed => {
                if self
                    .conns
                    .get(index)
                    .is_some_and(|s| s.as_ref().is_some_and(|c| c.handle == event.conn))
                {
                    if event.kind == EventKind::PeerClosed {
                        if let Some(Some(c)) = self.conns.get_mut(index) {
                            c.peer_closed = true;
                        }
                    }
                    self.pump(engine, index);
                }
            }
        }
    }

    fn on_tick(&mut self, now: Instant, engine: &mut Engine) {
        if self.start.is_none() {
            self.start = Some(now);
            self.last_done = now;
        }
        self.last_tick = now;
        if self.draining_since.is_none() && is_set(&self.drain) {
            self.draining_since = Some(now);
            announce_stop("responder", self.totals.open, DRAIN);
        }
        if self.live.due() {
            let c = engine.counters();
            let mut t = self.totals;
            t.retransmits = c.retransmits;
            t.resets = resets(c);
            t.drops = drops(c);
            self.live.tick(t);
        }
    }

    fn is_done(&self) -> bool {
        self.draining_since
            .is_some_and(|at| self.totals.open == 0 || since(self.last_tick, at) >= DRAIN)
    }
}

impl Program for Responder {
    fn finish(&self, report: &mut Report) {
        let elapsed = self.start.map_or(Duration::ZERO, |s| since(self.last_done, s));
        report.fill(&self.totals, elapsed, &self.lat);
        report.requests = self.requests;
        report.failures = self.failures.clone();
        report.lifecycle = RESPONDER_LIFECYCLE;
    }
}

/// Runs the synack responder described by `cfg` on `link` (its AF_XDP interface, or a memory port).
pub fn run_responder(cfg: &ResponderConfig, link: Link, control: Control) -> Result<Report, RunError> {
    let app = Responder {
        protocol: cfg.protocol,
        request_size: cfg.request_size,
        close: cfg.close,
        per_conn: cfg.requests_per_connection,
        response: response_bytes(cfg.protocol, cfg.response_size, cfg.close),
        conns: (0..cfg.engine.max_connections).map(|_| None).collect(),
        buf: vec![0; 64 * 1024],
        totals: Totals::default(),
        requests: 0,
        failures: BTreeMap::new(),
        lat: Latencies::default(),
        start: None,
        last_done: Instant::ZERO,
        live: LiveLine::new("responder synack", cfg.live),
        drain: control.drain.clone(),
        draining_since: None,
        last_tick: Instant::ZERO,
    };
    let ports = cfg.ports.clone();
    let backlog = cfg.backlog;
    let limit = (cfg.duration_secs > 0.0).then(|| Duration::from_secs_f64(cfg.duration_secs));
    drive(
        app,
        Report::new("responder", StackKind::Synack),
        link,
        &cfg.engine,
        cfg.addresses.clone(),
        (32768, 60999),
        cfg.core,
        limit,
        move |engine| {
            for port in ports {
                engine
                    .listen(Port(port), backlog)
                    .map_err(|e| RunError(format!("listen on port {port}: {e}")))?;
            }
            Ok(())
        },
        control,
    )
}

// ----- load generator ----------------------------------------------------------------------------------------

struct ClientConn {
    handle: ConnHandle,
    start: Instant,
    got_first: bool,
    counter: ResponseCounter,
    requests_sent: u32,
    /// Bytes of the current request `send` has taken (`request.len()` once it is all queued).
    offset: usize,
    responses: u32,
    peer_closed: bool,
    closing: bool,
    done: bool,
    failed: Option<&'static str>,
}

struct Loadgen {
    cfg: LoadgenConfig,
    request: Vec<u8>,
    conns: Vec<Option<ClientConn>>,
    spare: Vec<ResponseCounter>,
    buf: Vec<u8>,
    totals: Totals,
    requests: u64,
    failures: BTreeMap<String, u64>,
    lat: Latencies,
    start: Option<Instant>,
    last_done: Instant,
    /// Arrivals scheduled so far (open loop) / connections started (both).
    scheduled: u64,
    rr: u64,
    stopped_at: Option<Instant>,
    drain_over: bool,
    live: LiveLine,
    /// The graceful-stop flag ([`Control::drain`]): set, no new connections start and the run drains.
    drain: Option<Arc<AtomicBool>>,
    per_second: PerSecond,
    /// When the last turn ran, for the length of the per-second series.
    last_tick: Instant,
}

impl Loadgen {
    fn pump(&mut self, now: Instant, engine: &mut Engine, index: usize) {
        let Some(Some(c)) = self.conns.get_mut(index) else {
            return;
        };
        loop {
            match engine.recv(c.handle, &mut self.buf) {
                Ok(0) => {
                    c.peer_closed = true;
                    break;
                }
                Ok(n) => {
                    if !c.got_first {
                        c.got_first = true;
                        self.lat.first_byte.record(since(now, c.start));
                    }
                    let k = c.counter.feed(&self.buf[..n]);
                    c.responses += k;
                    self.requests += u64::from(k);
                    if c.counter.malformed() {
                        c.failed = Some("malformed_response");
                    }
                }
                Err(_) => break,
            }
        }
        let per_conn = self.cfg.requests_per_connection;
        if c.responses > c.requests_sent || (c.responses > per_conn) {
            c.failed = Some("unexpected_response");
        }
        // Next request once the previous one is answered (one outstanding request at a time).
        if !c.closing && c.failed.is_none() && c.requests_sent == c.responses && c.requests_sent < per_conn {
            c.requests_sent += 1;
            c.offset = 0;
        }
        if !c.closing && c.offset < self.request.len() && c.requests_sent > c.responses {
            if let Ok(n) = engine.send(c.handle, &self.request[c.offset..]) {
                c.offset += n;
            }
        }
        c.done = c.responses >= per_conn;
        let close_now = c.failed.is_some()
            || match self.cfg.close {
                CloseFirst::Client => c.done,
                CloseFirst::Server => c.done && c.peer_closed,
            }
            || (c.peer_closed && !c.done);
        if close_now && !c.closing {
            c.closing = true;
            if c.done && c.failed.is_none() {
                self.lat.lifecycle.record(since(now, c.start));
            } else if c.failed.is_none() {
                c.failed = Some("short_response");
            }
            let _ = engine.close(c.handle);
        }
    }

    fn start_one(&mut self, engine: &mut Engine, now: Instant, scheduled: Instant) -> bool {
        let sources = &self.cfg.sources;
        let targets = &self.cfg.targets;
        let src = sources[(self.rr % sources.len() as u64) as usize];
        let dst = targets[((self.rr / sources.len() as u64) % targets.len() as u64) as usize];
        self.rr += 1;
        self.totals.started += 1;
        match engine.connect(now, SocketAddrV4::new(src, 0), dst) {
            Ok(handle) => {
                let mut counter = self
                    .spare
                    .pop()
                    .unwrap_or_else(|| ResponseCounter::new(self.cfg.protocol, self.cfg.response_size));
                counter.reset();
                if let Some(slot) = self.conns.get_mut(handle.index()) {
                    if let Some(old) = slot.replace(ClientConn {
                        handle,
                        start: scheduled,
                        got_first: false,
                        counter,
                        requests_sent: 1,
                        offset: 0,
                        responses: 0,
                        peer_closed: false,
                        closing: false,
                        done: false,
                        failed: None,
                    }) {
                        self.spare.push(old.counter);
                    }
                }
                self.totals.open += 1;
                true
            }
            Err(e) => {
                self.totals.failed += 1;
                count_failure(&mut self.failures, &format!("connect: {e}"));
                false
            }
        }
    }
}

impl App for Loadgen {
    fn on_event(&mut self, now: Instant, event: Event, engine: &mut Engine) {
        let index = event.conn.index();
        let ours = self
            .conns
            .get(index)
            .is_some_and(|s| s.as_ref().is_some_and(|c| c.handle == event.conn));
        if !ours {
            return;
        }
        match event.kind {
            EventKind::Connected => {
                if let Some(Some(c)) = self.conns.get_mut(index) {
                    self.lat.connect.record(since(now, c.start));
                }
                self.pump(now, engine, index);
            }
            EventKind::Readable | EventKind::Writable | EventKind::PeerClosed => {
                if event.kind == EventKind::PeerClosed {
                    if let Some(Some(c)) = self.conns.get_mut(index) {
                        c.peer_closed = true;
                    }
                }
                self.pump(now, engine, index);
            }
            EventKind::Closed { reason } => {
                let Some(c) = self.conns.get_mut(index).and_then(Option::take) else {
                    return;
                };
                self.totals.open -= 1;
                if reason == CloseReason::Normal && c.done && c.failed.is_none() {
                    self.totals.completed += 1;
                    self.last_done = now;
                    if let Some(start) = self.start {
                        self.per_second.record(since(now, start));
                    }
                } else {
                    self.totals.failed += 1;
                    let why = match (reason, c.failed) {
                        (CloseReason::Normal, Some(f)) => f.to_owned(),
                        (CloseReason::Normal, None) => "short_response".to_owned(),
                        (r, _) => format!("{r:?}"),
                    };
                    count_failure(&mut self.failures, &why);
                }
                if !c.closing {
                    let _ = engine.close(event.conn);
                }
                self.spare.push(c.counter);
            }
            EventKind::Accepted { .. } => {}
        }
    }

    fn on_tick(&mut self, now: Instant, engine: &mut Engine) {
        let start = *self.start.get_or_insert(now);
        self.last_tick = now;
        if self.totals.started == 0 {
            self.last_done = now;
        }
        if self.stopped_at.is_none() && is_set(&self.drain) {
            announce_stop(
                "loadgen",
                self.totals.open,
                Duration::from_secs_f64(self.cfg.drain_secs),
            );
            self.stopped_at = Some(now);
        }
        if self.stopped_at.is_none() {
            let time_up = self.cfg.duration_secs > 0.0 && since(now, start).as_secs_f64() >= self.cfg.duration_secs;
            let count_up = self.cfg.connections > 0 && self.totals.started >= self.cfg.connections;
            if time_up || count_up {
                self.stopped_at = Some(now);
            }
        }
        if self.stopped_at.is_none() {
            let left = if self.cfg.connections > 0 {
                self.cfg.connections - self.totals.started
            } else {
                u64::MAX
            };
            match self.cfg.mode {
                LoadMode::Closed => {
                    let room = u64::from(self.cfg.concurrency).saturating_sub(self.totals.open);
                    for _ in 0..room.min(left).min(1024) {
                        if !self.start_one(engine, now, now) {
                            break;
                        }
                    }
                }
                LoadMode::Open => {
                    let interval = 1.0 / self.cfg.rate;
                    for _ in 0..left.min(1024) {
                        let at = start + Duration::from_secs_f64(self.scheduled as f64 * interval);
                        if at > now {
                            break;
                        }
                        self.scheduled += 1;
                        if self.totals.open >= u64::from(self.cfg.concurrency) {
                            self.totals.started += 1;
                            self.totals.failed += 1;
                            count_failure(&mut self.failures, "over_concurrency");
                            continue;
                        }
                        self.start_one(engine, now, at);
                    }
                }
            }
        }
        if let Some(stopped) = self.stopped_at {
            if since(now, stopped).as_secs_f64() >= self.cfg.drain_secs {
                self.drain_over = true;
            }
        }
        if self.live.due() {
            let c = engine.counters();
            let mut t = self.totals;
            t.retransmits = c.retransmits;
            t.resets = resets(c);
            t.drops = drops(c);
            self.live.tick(t);
        }
    }

    fn is_done(&self) -> bool {
        self.stopped_at.is_some() && (self.totals.open == 0 || self.drain_over)
    }
}

impl Program for Loadgen {
    fn finish(&self, report: &mut Report) {
        let elapsed = self.start.map_or(Duration::ZERO, |s| since(self.last_done, s));
        let mut totals = self.totals;
        let mut failures = self.failures.clone();
        if totals.open > 0 {
            // Still open when the drain ran out: failed too.
            totals.failed += totals.open;
            *failures.entry("unfinished".to_owned()).or_insert(0) += totals.open;
        }
        report.fill(&totals, elapsed, &self.lat);
        report.requests = self.requests;
        report.failures = failures;
        report.lifecycle = LOADGEN_LIFECYCLE;
        let run = self.start.map_or(Duration::ZERO, |s| since(self.last_tick, s));
        report.per_second = self.per_second.counts(run);
    }
}

/// Runs the synack load generator described by `cfg` on `link`.
pub fn run_loadgen(cfg: &LoadgenConfig, link: Link, control: Control) -> Result<Report, RunError> {
    let app = Loadgen {
        cfg: cfg.clone(),
        request: request_bytes(cfg.protocol, cfg.request_size),
        conns: (0..cfg.engine.max_connections).map(|_| None).collect(),
        spare: Vec::new(),
        buf: vec![0; 64 * 1024],
        totals: Totals::default(),
        requests: 0,
        failures: BTreeMap::new(),
        lat: Latencies::default(),
        start: None,
        last_done: Instant::ZERO,
        scheduled: 0,
        rr: 0,
        stopped_at: None,
        drain_over: false,
        live: LiveLine::new("loadgen synack", cfg.live),
        per_second: PerSecond::with_capacity(cfg.duration_secs + cfg.drain_secs + 5.0),
        last_tick: Instant::ZERO,
        drain: control.drain.clone(),
    };
    // A hard bound even if the drain logic were to hang: duration + drain + 5 s.
    let limit = (cfg.duration_secs > 0.0).then(|| Duration::from_secs_f64(cfg.duration_secs + cfg.drain_secs + 5.0));
    drive(
        app,
        Report::new("loadgen", StackKind::Synack),
        link,
        &cfg.engine,
        cfg.sources.clone(),
        (cfg.port_range[0], cfg.port_range[1]),
        cfg.core,
        limit,
        |_| Ok(()),
        control,
    )
}
