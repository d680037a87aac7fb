//! The run-to-completion poll loop: one thread owns one [`Engine`] and one [`Device`] and turns the crank.
//!
//! Each turn of [`PollLoop::run`]:
//! 1. peeks at up to [`PollConfig::batch`] waiting frames so that [`Engine::prefetch_frame`] starts their
//!    flow-table lines into cache ([`Device::peek`]), then receives them, handing each to
//!    [`Engine::handle_frame`] together with the device's transmit sink (ARP and ICMP replies and RSTs leave
//!    from inside that call);
//! 2. drains [`Engine::poll_event`] into [`App::on_event`], where the application reads, sends and closes;
//! 3. lets the application act on its own with [`App::on_tick`] (open connections, push more data);
//! 4. runs [`Engine::handle_timeouts`] if a deadline is due;
//! 5. calls [`Engine::poll_transmit`] once, so everything the batch made due for a connection leaves together
//!    (ACK and response in one segment);
//! 6. calls [`Device::flush`], which hands the transmit batch to the kernel, kicks only when asked, and
//!    recycles completions into the fill ring.
//!
//! Nothing here allocates, locks or makes a syscall per packet: the clock is read once per turn, and the only
//! syscalls are the device's batched kicks and, when the loop has been idle for a while, one bounded wait.

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use synack::engine::{Engine, Event};
use synack::time::Instant;

use crate::device::{Device, DeviceError, DeviceStats};

/// The application side of a poll loop: told about engine events, and given a turn of its own every iteration.
pub trait App {
    /// Reacts to one engine event (accept, data, peer close, ...), typically by calling `recv`, `send` or
    /// `close` on `engine`. Output is sent at the end of the same turn.
    fn on_event(&mut self, now: Instant, event: Event, engine: &mut Engine);

    /// Called once per turn after the events: the place to `connect`, or to send data not driven by an event.
    fn on_tick(&mut self, now: Instant, engine: &mut Engine) {
        let _ = (now, engine);
    }

    /// Whether the application has finished; the loop then stops with [`StopReason::AppDone`].
    fn is_done(&self) -> bool {
        false
    }
}

/// The loop's clock: a monotonic `std::time::Instant` read as synack [`Instant`]s counted from the clock's
/// start. Build the engine with `clock.now()` and give the same clock to the loop, so both share an epoch.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: std::time::Instant,
}

impl Clock {
    /// A clock whose epoch (synack `Instant::ZERO`) is now.
    pub fn new() -> Clock {
        Clock {
            start: std::time::Instant::now(),
        }
    }

    /// Time since the clock's start, in the engine's terms. Saturates rather than wrapping (after 584 000 years).
    pub fn now(&self) -> Instant {
        let micros = u64::try_from(self.start.elapsed().as_micros()).unwrap_or(u64::MAX);
        Instant::from_micros(micros)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// What the loop does once it has been idle (no frame, no event) for [`PollConfig::idle_spins`] turns in a row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Keep spinning: lowest latency, one core burnt.
    Spin,
    /// Give the core away with `sched_yield` each idle turn.
    Yield,
    /// Sleep this long (capped by the engine's next deadline).
    Sleep(Duration),
    /// Wait until this file descriptor (the device's socket) is readable, at most `max` (capped by the engine's
    /// next deadline). For AF_XDP, pass [`crate::AfXdpDevice::raw_fd`].
    PollFd {
        /// The descriptor to wait on.
        fd: RawFd,
        /// The longest wait.
        max: Duration,
    },
}

/// How a [`PollLoop`] runs.
#[derive(Clone, Debug)]
pub struct PollConfig {
    /// Most frames received per turn before the engine's output is sent.
    pub batch: usize,
    /// Pin the running thread to this core (index into `core_affinity::get_core_ids`) when `run` starts.
    pub core: Option<usize>,
    /// Stop when this flag becomes true (checked once per turn).
    pub stop: Option<Arc<AtomicBool>>,
    /// Stop after this much time in `run`.
    pub max_duration: Option<Duration>,
    /// Stop after this many turns of `run`.
    pub max_iterations: Option<u64>,
    /// Idle turns in a row before the idle strategy kicks in.
    pub idle_spins: u32,
    /// What to do when idle.
    pub idle: IdleStrategy,
}

impl Default for PollConfig {
    fn default() -> Self {
        PollConfig {
            batch: 64,
            core: None,
            stop: None,
            max_duration: None,
            max_iterations: None,
            idle_spins: 1024,
            idle: IdleStrategy::Yield,
        }
    }
}

/// Why [`PollLoop::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    /// The stop flag was set.
    Stopped,
    /// [`App::is_done`] said so.
    AppDone,
    /// `max_duration` passed.
    TimeLimit,
    /// `max_iterations` turns ran.
    IterationLimit,
}

/// Loop counters, cumulative over every `run` and `turn`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Turns of the loop.
    pub iterations: u64,
    /// Turns that received no frame and delivered no event.
    pub idle_iterations: u64,
    /// Frames handed to the engine.
    pub rx_frames: u64,
    /// Events handed to the application.
    pub events: u64,
    /// Idle waits made (sleeps, yields or polls on the descriptor).
    pub idle_waits: u64,
    /// Whether the last `run` managed to pin its thread to `PollConfig::core`.
    pub pinned: bool,
}

/// One engine, one device, one thread: see the module documentation.
pub struct PollLoop<D: Device> {
    engine: Engine,
    device: D,
    clock: Clock,
    config: PollConfig,
    stats: LoopStats,
}

impl<D: Device> PollLoop<D> {
    /// A loop over `engine` and `device`, with `clock` as the time source (the engine must have been built with
    /// an `Instant` from the same clock, or `Instant::ZERO` just before `clock` was made).
    pub fn new(engine: Engine, device: D, clock: Clock, config: PollConfig) -> PollLoop<D> {
        PollLoop {
            engine,
            device,
            clock,
            config,
            stats: LoopStats::default(),
        }
    }

    /// The current time on the loop's clock.
    pub fn now(&self) -> Instant {
        self.clock.now()
    }

    /// The engine, for inspection.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine, for application calls made outside [`App`] (e.g. `listen` before `run`).
    pub fn engine_mut(&mut self) -> &mut Engine {
        &mut self.engine
    }

    /// The device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device's counters (ring full, fill ring empty, dropped transmits, kicks).
    pub fn device_stats(&self) -> DeviceStats {
        self.device.stats()
    }

    /// The loop's counters.
    pub fn stats(&self) -> LoopStats {
        self.stats
    }

    /// Gives back the engine and the device.
    pub fn into_parts(self) -> (Engine, D) {
        (self.engine, self.device)
    }

    /// Runs one turn (steps 1 to 6 of the module documentation). Returns whether it did any work (a frame
    /// received or an event delivered).
    pub fn turn<A: App>(&mut self, app: &mut A) -> Result<bool, DeviceError> {
        let now = self.clock.now();
        self.stats.iterations += 1;
        let engine = &mut self.engine;
        // First the batch's flow-table lines on their way into cache, then the batch itself.
        self.device
            .peek(self.config.batch, |frame| engine.prefetch_frame(frame));
        let received = self
            .device
            .receive(self.config.batch, |frame, tx| engine.handle_frame(now, frame, tx))?;
        self.stats.rx_frames += received as u64;
        let mut events = 0u64;
        while let Some(event) = self.engine.poll_event() {
            events += 1;
            app.on_event(now, event, &mut self.engine);
        }
        self.stats.events += events;
        app.on_tick(now, &mut self.engine);
        if self.engine.poll_timeout().is_some_and(|t| t <= now) {
            self.engine.handle_timeouts(now);
        }
        self.engine.poll_transmit(now, &mut self.device.transmitter());
        self.device.flush()?;
        let busy = received > 0 || events > 0;
        if !busy {
            self.stats.idle_iterations += 1;
        }
        Ok(busy)
    }

    /// Turns the loop until the stop flag, the application, or a bound says stop.
    pub fn run<A: App>(&mut self, app: &mut A) -> Result<StopReason, DeviceError> {
        if let Some(core) = self.config.core {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            self.stats.pinned = ids.get(core).is_some_and(|&id| core_affinity::set_for_current(id));
        }
        let started = std::time::Instant::now();
        let first = self.stats.iterations;
        let mut idle_run = 0u32;
        loop {
            if self.config.stop.as_ref().is_some_and(|s| s.load(Ordering::Acquire)) {
                return Ok(StopReason::Stopped);
            }
            if app.is_done() {
                return Ok(StopReason::AppDone);
            }
            if self.config.max_duration.is_some_and(|d| started.elapsed() >= d) {
                return Ok(StopReason::TimeLimit);
            }
            if self
                .config
                .max_iterations
                .is_some_and(|n| self.stats.iterations - first >= n)
            {
                return Ok(StopReason::IterationLimit);
            }
            if self.turn(app)? {
                idle_run = 0;
            } else {
                idle_run = idle_run.saturating_add(1);
                if idle_run >= self.config.idle_spins {
                    self.idle_wait();
                }
            }
        }
    }

    /// One idle wait, never past the engine's next deadline.
    fn idle_wait(&mut self) {
        let cap = |max: Duration| match self.engine.poll_timeout() {
            Some(deadline) => deadline.saturating_since(self.clock.now()).min(max),
            None => max,
        };
        match self.config.idle {
            IdleStrategy::Spin => return,
            IdleStrategy::Yield => std::thread::yield_now(),
            IdleStrategy::Sleep(max) => {
                let d = cap(max);
                if !d.is_zero() {
                    std::thread::sleep(d);
                }
            }
            IdleStrategy::PollFd { fd, max } => {
                let d = cap(max);
                // Round up so a sub-millisecond wait still waits rather than spinning through poll().
                let ms = i32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
                if ms > 0 {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd on the stack; the fd is only read, never closed here. A bad fd makes
                    // poll return POLLNVAL at once, which is harmless.
                    unsafe { libc::poll(&mut p, 1, ms) };
                }
            }
        }
        self.stats.idle_waits += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::{MemoryLink, MemoryLinkConfig, MemoryPort};
    use std::net::{Ipv4Addr, SocketAddrV4};
    use synack::engine::{EngineConfig, EventKind};
    use synack::wire::Port;
    use synack::wire::ethernet::MacAddr;

    const A: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 1);
    const B: Ipv4Addr = Ipv4Addr::new(198, 18, 200, 2);

    fn engine(clock: &Clock, mac: u8, addr: Ipv4Addr) -> Engine {
        let config = EngineConfig {
            mac: MacAddr([2, 0, 0, 0, 0, mac]),
            addresses: vec![addr],
            max_connections: 8,
            max_time_wait: 8,
            buffer_size: 16 * 1024,
            buffer_count: 16,
            ..EngineConfig::default()
        };
        Engine::new(config, clock.now()).unwrap()
    }

    fn idle_loop(config: PollConfig) -> (PollLoop<MemoryPort>, MemoryPort) {
        let (port, other) = MemoryLink::pair(MemoryLinkConfig::default());
        let clock = Clock::new();
        (PollLoop::new(engine(&clock, 1, A), port, clock, config), other)
    }

    /// Counts ticks; done after `until` of them.
    struct Ticks {
        ticks: u64,
        until: u64,
    }

    impl App for Ticks {
        fn on_event(&mut self, _: Instant, _: Event, _: &mut Engine) {}
        fn on_tick(&mut self, _: Instant, _: &mut Engine) {
            self.ticks += 1;
        }
        fn is_done(&self) -> bool {
            self.ticks >= self.until
        }
    }

    #[test]
    fn poll_loop_iteration_bound_reached_stops_with_iteration_limit() {
        let (mut l, _other) = idle_loop(PollConfig {
            max_iterations: Some(10),
            idle: IdleStrategy::Spin,
            ..PollConfig::default()
        });
        let mut app = Ticks {
            ticks: 0,
            until: u64::MAX,
        };
        assert_eq!(l.run(&mut app).unwrap(), StopReason::IterationLimit);
        assert_eq!(app.ticks, 10);
        assert_eq!((l.stats().iterations, l.stats().idle_iterations), (10, 10));
    }

    #[test]
    fn poll_loop_core_given_pins_its_thread() {
        let (mut l, _other) = idle_loop(PollConfig {
            core: Some(0),
            max_iterations: Some(1),
            ..PollConfig::default()
        });
        // A thread of its own, so the pinning does not outlive the test on a harness thread.
        let pinned = std::thread::scope(|s| {
            s.spawn(|| {
                l.run(&mut Ticks {
                    ticks: 0,
                    until: u64::MAX,
                })
                .unwrap();
                l.stats().pinned
            })
            .join()
            .unwrap()
        });
        assert!(pinned);
    }

    #[test]
    fn poll_loop_stop_flag_set_stops_before_any_turn() {
        let stop = Arc::new(AtomicBool::new(true));
        let (mut l, _other) = idle_loop(PollConfig {
            stop: Some(stop),
            max_iterations: Some(1000),
            ..PollConfig::default()
        });
        assert_eq!(
            l.run(&mut Ticks {
                ticks: 0,
                until: u64::MAX
            })
            .unwrap(),
            StopReason::Stopped
        );
        assert_eq!(l.stats().iterations, 0);
    }

    #[test]
    fn poll_loop_app_done_stops_with_app_done() {
        let (mut l, _other) = idle_loop(PollConfig {
            max_iterations: Some(1000),
            ..PollConfig::default()
        });
        let mut app = Ticks { ticks: 0, until: 3 };
        assert_eq!(l.run(&mut app).unwrap(), StopReason::AppDone);
        assert_eq!(l.stats().iterations, 3);
    }

    #[test]
    fn poll_loop_time_bound_reached_stops_with_time_limit_after_idle_waits() {
        let (mut l, _other) = idle_loop(PollConfig {
            max_duration: Some(Duration::from_millis(30)),
            idle_spins: 4,
            idle: IdleStrategy::Sleep(Duration::from_millis(1)),
            ..PollConfig::default()
        });
        let started = std::time::Instant::now();
        assert_eq!(
            l.run(&mut Ticks {
                ticks: 0,
                until: u64::MAX
            })
            .unwrap(),
            StopReason::TimeLimit
        );
        assert!(started.elapsed() >= Duration::from_millis(30));
        assert!(l.stats().idle_waits > 0, "{:?}", l.stats());
    }

    /// Server side of the two-engine test: echoes "ping" as "pong", closes after the peer.
    #[derive(Default)]
    struct Pong {
        closed: bool,
        got: Vec<u8>,
    }

    impl App for Pong {
        fn on_event(&mut self, _: Instant, e: Event, engine: &mut Engine) {
            let mut buf = [0u8; 64];
            match e.kind {
                EventKind::Readable => {
                    while let Ok(n @ 1..) = engine.recv(e.conn, &mut buf) {
                        self.got.extend_from_slice(&buf[..n]);
                    }
                    if self.got == b"ping" {
                        engine.send(e.conn, b"pong").unwrap();
                    }
                }
                EventKind::PeerClosed => engine.close(e.conn).unwrap(),
                EventKind::Closed { .. } => self.closed = true,
                _ => {}
            }
        }
        fn is_done(&self) -> bool {
            self.closed
        }
    }

    /// Client side: connects on the first tick, sends "ping", closes once "pong" is in.
    #[derive(Default)]
    struct Ping {
        started: bool,
        got: Vec<u8>,
        closed: bool,
    }

    impl App for Ping {
        fn on_event(&mut self, _: Instant, e: Event, engine: &mut Engine) {
            let mut buf = [0u8; 64];
            match e.kind {
                EventKind::Connected => assert_eq!(engine.send(e.conn, b"ping"), Ok(4)),
                EventKind::Readable => {
                    while let Ok(n @ 1..) = engine.recv(e.conn, &mut buf) {
                        self.got.extend_from_slice(&buf[..n]);
                    }
                    if self.got == b"pong" {
                        engine.close(e.conn).unwrap();
                    }
                }
                EventKind::Closed { .. } => self.closed = true,
                _ => {}
            }
        }
        fn on_tick(&mut self, now: Instant, engine: &mut Engine) {
            if !self.started {
                self.started = true;
                engine
                    .connect(now, SocketAddrV4::new(A, 0), SocketAddrV4::new(B, 7))
                    .unwrap();
            }
        }
        fn is_done(&self) -> bool {
            self.closed
        }
    }

    #[test]
    fn poll_loops_two_engines_over_memory_link_exchange_and_close() {
        let (a, b) = MemoryLink::pair(MemoryLinkConfig::default());
        let clock = Clock::new();
        let config = PollConfig {
            max_duration: Some(Duration::from_secs(10)),
            idle: IdleStrategy::Sleep(Duration::from_micros(100)),
            idle_spins: 16,
            ..PollConfig::default()
        };
        let mut server_engine = engine(&clock, 2, B);
        server_engine.listen(Port(7), 4).unwrap();
        let mut server = PollLoop::new(server_engine, b, clock, config.clone());
        let mut client = PollLoop::new(engine(&clock, 1, A), a, clock, config);
        let (server_app, client_app) = std::thread::scope(|s| {
            let h = s.spawn(move || {
                let mut app = Pong::default();
                assert_eq!(server.run(&mut app).unwrap(), StopReason::AppDone);
                assert_eq!(server.engine().connection_count(), 0);
                app
            });
            let mut app = Ping::default();
            assert_eq!(client.run(&mut app).unwrap(), StopReason::AppDone);
            assert_eq!(client.engine().time_wait_count(), 1, "the client closed first");
            assert!(client.device_stats().tx_frames >= 4 && client.stats().events >= 3);
            (h.join().unwrap(), app)
        });
        assert_eq!(server_app.got, b"ping");
        assert_eq!(client_app.got, b"pong");
    }
}
