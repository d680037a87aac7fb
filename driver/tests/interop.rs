//! The Linux kernel as synack's peer: kernel sockets in one namespace, synack's engine over AF_XDP on the other
//! end of a veth pair, driven by the [`PollLoop`]. Every case runs in native and in generic XDP mode.
//!
//! Each test: builds a [`NetnsPair`] (removed on drop), runs synack's poll loop on a thread inside the synack
//! namespace and the kernel's side on a thread inside the kernel namespace, then checks what both ends saw and
//! that the kernel holds no TCP socket in any state but the expected TIME-WAIT (read with `ss -tan`). Every loop
//! is bounded: the poll loop by [`LIMIT`], kernel sockets by read/write timeouts.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant as StdInstant};

use synack::engine::{CloseReason, ConnHandle, Counters, Engine, EngineConfig, Error, Event, EventKind};
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;
use synack_driver::{
    AfXdpConfig, AfXdpDevice, App, AttachedMode, Clock, DeviceStats, IdleStrategy, LoopStats, NetnsConfig, NetnsPair,
    PollConfig, PollLoop, Side, StopReason, XdpMode, require_root, run_in_netns,
};

/// Upper bound on synack's poll loop in any test.
const LIMIT: Duration = Duration::from_secs(20);
/// Read/write timeout of every kernel socket.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
const HTTP_PORT: u16 = 80;
const KERNEL_PORT: u16 = 8080;
const CLOSED_PORT: u16 = 81;
const REQUEST: &[u8] = b"GET / HTTP/1.0\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello";
/// Size of the bulk transfers (each way).
const BULK: usize = 2 << 20;

// ----- synack-side applications ------------------------------------------------------------------------------

/// An [`App`] whose progress the test thread can watch from outside.
trait Scenario: App {
    /// Every expected connection has ended (or none was expected).
    fn finished(&self) -> bool;
}

/// Wraps a scenario and publishes its `finished` in a flag the test thread reads.
struct Watch<A> {
    inner: A,
    done: Arc<AtomicBool>,
}

impl<A: Scenario> App for Watch<A> {
    fn on_event(&mut self, now: Instant, event: Event, engine: &mut Engine) {
        self.inner.on_event(now, event, engine);
        self.done.store(self.inner.finished(), Ordering::Release);
    }
    fn on_tick(&mut self, now: Instant, engine: &mut Engine) {
        self.inner.on_tick(now, engine);
        self.done.store(self.inner.finished(), Ordering::Release);
    }
}

/// When a scripted connection sends its data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Trigger {
    /// As soon as it is established (a client's request).
    OnOpen,
    /// Once this many bytes arrived (a server's response to a request of known length).
    AfterReceived(usize),
    /// Once the peer has shut down its write side (half-close).
    OnPeerClose,
}

/// When a scripted connection calls `close`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum CloseWhen {
    /// As soon as everything is queued and everything expected has arrived: synack closes first.
    First,
    /// Once everything is queued and the peer has closed: the peer closes first.
    AfterPeer,
}

#[derive(Clone, Debug)]
struct Script {
    send: Vec<u8>,
    trigger: Trigger,
    /// Call `shutdown` (FIN) as soon as everything is queued, and go on reading.
    shutdown_when_sent: bool,
    close: CloseWhen,
    /// Bytes expected from the peer.
    expect: usize,
}

#[derive(Clone, Copy, Debug)]
enum Role {
    /// Accepts on the listener the test set up.
    Server,
    /// Connects once, on the first tick.
    Client { remote: SocketAddrV4 },
}

#[derive(Debug)]
struct Conn {
    handle: ConnHandle,
    open: bool,
    received: Vec<u8>,
    sent: usize,
    triggered: bool,
    shut: bool,
    peer_closed: bool,
    close_called: bool,
    closed: Option<CloseReason>,
    events: Vec<EventKind>,
}

impl Conn {
    fn new(handle: ConnHandle) -> Conn {
        Conn {
            handle,
            open: false,
            received: Vec::new(),
            sent: 0,
            triggered: false,
            shut: false,
            peer_closed: false,
            close_called: false,
            closed: None,
            events: Vec::new(),
        }
    }
}

/// A synack endpoint following a [`Script`] on every connection.
struct Scripted {
    role: Role,
    local: Ipv4Addr,
    script: Script,
    expected_conns: usize,
    connected_once: bool,
    conns: Vec<Conn>,
    errors: Vec<String>,
}

impl Scripted {
    fn new(role: Role, local: Ipv4Addr, script: Script, expected_conns: usize) -> Scripted {
        Scripted {
            role,
            local,
            script,
            expected_conns,
            connected_once: false,
            conns: Vec::new(),
            errors: Vec::new(),
        }
    }

    fn drain(conn: &mut Conn, engine: &mut Engine, errors: &mut Vec<String>) {
        if conn.close_called {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            match engine.recv(conn.handle, &mut buf) {
                Ok(0) | Err(Error::WouldBlock) => break,
                Ok(n) => conn.received.extend_from_slice(&buf[..n]),
                Err(e) => {
                    errors.push(format!("recv: {e}"));
                    break;
                }
            }
        }
    }

    fn advance(script: &Script, conn: &mut Conn, engine: &mut Engine, errors: &mut Vec<String>) {
        if conn.closed.is_some() {
            if !conn.close_called {
                // Release the handle of a connection that ended on its own (reset, refused).
                if let Err(e) = engine.close(conn.handle) {
                    errors.push(format!("close after Closed: {e}"));
                }
                conn.close_called = true;
            }
            return;
        }
        if !conn.open || conn.close_called {
            return;
        }
        if !conn.triggered {
            conn.triggered = match script.trigger {
                Trigger::OnOpen => true,
                Trigger::AfterReceived(n) => conn.received.len() >= n,
                Trigger::OnPeerClose => conn.peer_closed,
            };
        }
        if conn.triggered && conn.sent < script.send.len() {
            match engine.send(conn.handle, &script.send[conn.sent..]) {
                Ok(n) => conn.sent += n,
                Err(Error::WouldBlock | Error::NoBuffer) => {}
                Err(e) => errors.push(format!("send: {e}")),
            }
        }
        let all_sent = conn.triggered && conn.sent == script.send.len();
        if all_sent && script.shutdown_when_sent && !conn.shut {
            if let Err(e) = engine.shutdown(conn.handle) {
                errors.push(format!("shutdown: {e}"));
            }
            conn.shut = true;
        }
        let close = match script.close {
            CloseWhen::First => all_sent && conn.received.len() >= script.expect,
            CloseWhen::AfterPeer => all_sent && conn.peer_closed,
        };
        if close {
            if let Err(e) = engine.close(conn.handle) {
                errors.push(format!("close: {e}"));
            }
            conn.close_called = true;
        }
    }
}

impl App for Scripted {
    fn on_event(&mut self, _now: Instant, event: Event, engine: &mut Engine) {
        if let EventKind::Accepted { .. } = event.kind {
            self.conns.push(Conn::new(event.conn));
        }
        let Some(conn) = self.conns.iter_mut().find(|c| c.handle == event.conn) else {
            self.errors.push(format!("event for an unknown connection: {event:?}"));
            return;
        };
        conn.events.push(event.kind);
        match event.kind {
            EventKind::Accepted { .. } | EventKind::Connected => conn.open = true,
            EventKind::Readable => Self::drain(conn, engine, &mut self.errors),
            EventKind::PeerClosed => {
                Self::drain(conn, engine, &mut self.errors);
                conn.peer_closed = true;
            }
            EventKind::Writable => {}
            EventKind::Closed { reason } => conn.closed = Some(reason),
        }
        Self::advance(&self.script, conn, engine, &mut self.errors);
    }

    fn on_tick(&mut self, now: Instant, engine: &mut Engine) {
        if let Role::Client { remote } = self.role {
            if !self.connected_once {
                self.connected_once = true;
                match engine.connect(now, SocketAddrV4::new(self.local, 0), remote) {
                    Ok(handle) => self.conns.push(Conn::new(handle)),
                    Err(e) => self.errors.push(format!("connect: {e}")),
                }
            }
        }
    }
}

impl Scenario for Scripted {
    fn finished(&self) -> bool {
        self.conns.len() >= self.expected_conns && self.conns.iter().all(|c| c.closed.is_some())
    }
}

/// A synack server that echoes every byte back, with backpressure: it reads only when all it read went out.
struct Echo {
    conns: Vec<EchoConn>,
    expected_conns: usize,
    errors: Vec<String>,
}

struct EchoConn {
    handle: ConnHandle,
    pending: Vec<u8>,
    echoed: usize,
    peer_closed: bool,
    close_called: bool,
    closed: Option<CloseReason>,
}

impl Echo {
    fn pump(conn: &mut EchoConn, engine: &mut Engine, errors: &mut Vec<String>) {
        if conn.close_called || conn.closed.is_some() {
            return;
        }
        let mut buf = [0u8; 16 * 1024];
        loop {
            if !conn.pending.is_empty() {
                match engine.send(conn.handle, &conn.pending) {
                    Ok(n) => {
                        conn.pending.drain(..n);
                        conn.echoed += n;
                    }
                    Err(Error::WouldBlock | Error::NoBuffer) => return,
                    Err(e) => {
                        errors.push(format!("send: {e}"));
                        return;
                    }
                }
                if !conn.pending.is_empty() {
                    return; // a Writable event follows
                }
            }
            match engine.recv(conn.handle, &mut buf) {
                Ok(0) | Err(Error::WouldBlock) => break,
                Ok(n) => conn.pending.extend_from_slice(&buf[..n]),
                Err(e) => {
                    errors.push(format!("recv: {e}"));
                    break;
                }
            }
        }
        if conn.peer_closed && conn.pending.is_empty() {
            if let Err(e) = engine.close(conn.handle) {
                errors.push(format!("close: {e}"));
            }
            conn.close_called = true;
        }
    }
}

impl App for Echo {
    fn on_event(&mut self, _now: Instant, event: Event, engine: &mut Engine) {
        if let EventKind::Accepted { .. } = event.kind {
            self.conns.push(EchoConn {
                handle: event.conn,
                pending: Vec::new(),
                echoed: 0,
                peer_closed: false,
                close_called: false,
                closed: None,
            });
        }
        let Some(conn) = self.conns.iter_mut().find(|c| c.handle == event.conn) else {
            self.errors.push(format!("event for an unknown connection: {event:?}"));
            return;
        };
        match event.kind {
            EventKind::PeerClosed => conn.peer_closed = true,
            EventKind::Closed { reason } => {
                conn.closed = Some(reason);
                if !conn.close_called {
                    let _ = engine.close(conn.handle);
                    conn.close_called = true;
                }
            }
            _ => {}
        }
        Self::pump(conn, engine, &mut self.errors);
    }
}

impl Scenario for Echo {
    fn finished(&self) -> bool {
        self.conns.len() >= self.expected_conns && self.conns.iter().all(|c| c.closed.is_some())
    }
}

// ----- the harness ---------------------------------------------------------------------------------------------

/// What synack's side ended with.
#[derive(Debug)]
struct SynackEnd {
    stop: StopReason,
    loop_stats: LoopStats,
    device: DeviceStats,
    counters: Counters,
    connections: usize,
    time_wait: usize,
    xdp: Option<AttachedMode>,
}

struct Outcome<A, K> {
    app: A,
    kernel: K,
    synack: SynackEnd,
    /// `ss -tan` states in the kernel namespace once things settled.
    kernel_states: Vec<String>,
}

fn pair() -> Option<NetnsPair> {
    require_root().ok()?;
    Some(NetnsPair::new(NetnsConfig::default()).expect("netns pair"))
}

/// The kernel namespace's TCP sockets as (state, whole line), from `ss -tan`.
fn kernel_tcp_states(pair: &NetnsPair) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "exec", pair.netns(Side::Kernel), "ss", "-tanH"])
        .output()
        .expect("running ss");
    assert!(
        out.status.success(),
        "ss failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

fn only_time_wait(states: &[String]) -> bool {
    states.iter().all(|l| l.starts_with("TIME-WAIT "))
}

fn synack_side<A: Scenario>(
    pair: &NetnsPair,
    mode: XdpMode,
    app: A,
    setup: impl FnOnce(&mut Engine),
    stop: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
    ready: mpsc::Sender<()>,
) -> (A, SynackEnd) {
    let addr = pair.synack_addr();
    let config = AfXdpConfig {
        xdp_mode: mode,
        addresses: vec![addr],
        frame_count: 1024,
        fill_size: 512,
        completion_size: 512,
        rx_size: 512,
        tx_size: 512,
        batch_size: 64,
        ..AfXdpConfig::new(pair.interface(Side::Synack))
    };
    let device = AfXdpDevice::open(&config).unwrap_or_else(|e| panic!("open AF_XDP ({mode:?}): {e}"));
    let clock = Clock::new();
    let engine_config = EngineConfig {
        mac: MacAddr(device.mac_address()),
        addresses: vec![addr],
        max_connections: 64,
        max_time_wait: 64,
        buffer_size: 64 * 1024,
        buffer_count: 64,
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(engine_config, clock.now()).expect("engine");
    setup(&mut engine);
    let xdp = device.xdp_mode();
    let poll = PollConfig {
        stop: Some(stop),
        max_duration: Some(LIMIT),
        idle_spins: 64,
        idle: IdleStrategy::PollFd {
            fd: device.raw_fd(),
            max: Duration::from_millis(1),
        },
        ..PollConfig::default()
    };
    let mut poll_loop = PollLoop::new(engine, device, clock, poll);
    let _ = ready.send(());
    let mut watch = Watch { inner: app, done };
    let stop = poll_loop.run(&mut watch).expect("device error in the poll loop");
    let end = SynackEnd {
        stop,
        loop_stats: poll_loop.stats(),
        device: poll_loop.device_stats(),
        counters: *poll_loop.engine().counters(),
        connections: poll_loop.engine().connection_count(),
        time_wait: poll_loop.engine().time_wait_count(),
        xdp,
    };
    (watch.inner, end)
}

/// Runs synack's side with `app` (after `setup` on its engine) and, once it is up, `kernel` in the kernel
/// namespace; then waits (bounded) for the app to finish and the kernel's sockets to settle.
fn run<A, K>(
    pair: &NetnsPair,
    mode: XdpMode,
    app: A,
    setup: impl FnOnce(&mut Engine) + Send,
    kernel: impl FnOnce() -> K + Send,
) -> Outcome<A, K>
where
    A: Scenario + Send,
    K: Send,
{
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (ready_tx, ready_rx) = mpsc::channel();
    std::thread::scope(|s| {
        let synack = {
            let (stop, done) = (stop.clone(), done.clone());
            s.spawn(move || {
                run_in_netns(pair.netns(Side::Synack), move || {
                    synack_side(pair, mode, app, setup, stop, done, ready_tx)
                })
            })
        };
        let started = ready_rx.recv_timeout(Duration::from_secs(10)).is_ok();
        let kernel = started.then(|| run_in_netns(pair.netns(Side::Kernel), kernel));
        // Let the last FIN/ACK exchange finish: bounded wait for the app and the kernel's socket states.
        let deadline = StdInstant::now() + Duration::from_secs(5);
        let mut states = kernel_tcp_states(pair);
        while StdInstant::now() < deadline && !(done.load(Ordering::Acquire) && only_time_wait(&states)) {
            std::thread::sleep(Duration::from_millis(20));
            states = kernel_tcp_states(pair);
        }
        stop.store(true, Ordering::Release);
        let (app, end) = synack
            .join()
            .expect("synack thread")
            .expect("synack side panicked (see its message above)");
        assert!(started, "synack's device never came up");
        let kernel = match kernel {
            Some(Ok(k)) => k,
            _ => panic!("kernel side panicked (see its message above); synack: {end:?}"),
        };
        Outcome {
            app,
            kernel,
            synack: end,
            kernel_states: states,
        }
    })
}

/// Checks common to every run: the mode, no engine-side drops of our own making, the kernel's sockets.
fn check_common<A, K>(o: &Outcome<A, K>, mode: XdpMode, kernel_time_wait: usize, synack_time_wait: usize) {
    let expected = match mode {
        XdpMode::Native => AttachedMode::Native,
        _ => AttachedMode::Generic,
    };
    let s = &o.synack;
    let counters: Vec<String> = s
        .counters
        .iter()
        .filter(|&(_, v)| v != 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    eprintln!(
        "{mode:?}: loop {:?}; device {:?}; engine {}; kernel sockets {:?}",
        s.loop_stats,
        s.device,
        counters.join(" "),
        o.kernel_states
    );
    assert_eq!(s.xdp, Some(expected));
    assert_eq!(s.stop, StopReason::Stopped, "the poll loop hit its bound: {s:?}");
    assert_eq!(s.device.tx_dropped, 0, "{s:?}");
    assert_eq!(s.counters.tx_sink_full, 0, "{s:?}");
    assert_eq!(s.counters.drop_tcp_checksum, 0, "{s:?}");
    assert_eq!(s.counters.drop_ipv4_checksum, 0, "{s:?}");
    assert!(s.loop_stats.iterations > 0 && s.loop_stats.rx_frames > 0, "{s:?}");
    assert!(
        only_time_wait(&o.kernel_states),
        "kernel sockets left in unexpected states: {:?}",
        o.kernel_states
    );
    assert_eq!(
        o.kernel_states.len(),
        kernel_time_wait,
        "kernel TIME-WAIT count: {:?}",
        o.kernel_states
    );
    assert_eq!(s.connections, 0, "synack still holds connections: {s:?}");
    assert_eq!(s.time_wait, synack_time_wait, "synack TIME-WAIT count: {s:?}");
}

fn pattern(seed: u32, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// Position of the first difference, for a readable assertion on megabytes.
fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or((a.len() != b.len()).then(|| a.len().min(b.len())))
}

fn kernel_connect(pair: &NetnsPair, port: u16) -> TcpStream {
    let target = SocketAddr::V4(SocketAddrV4::new(pair.synack_addr(), port));
    let stream = TcpStream::connect_timeout(&target, IO_TIMEOUT).expect("kernel connect to synack");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    stream
}

fn kernel_listen(pair: &NetnsPair) -> TcpListener {
    let addr = SocketAddrV4::new(pair.kernel_addr(), KERNEL_PORT);
    run_in_netns(pair.netns(Side::Kernel), move || TcpListener::bind(addr))
        .expect("netns")
        .expect("kernel listen")
}

/// Accepts one connection within [`IO_TIMEOUT`].
fn kernel_accept(listener: &TcpListener) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = StdInstant::now() + IO_TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock && StdInstant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => panic!("kernel accept: {e}"),
        }
    }
}

/// Reads until `terminator` has arrived (bounded by the socket's timeout).
fn read_until(stream: &mut TcpStream, terminator: &[u8]) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(terminator.len()).any(|w| w == terminator) {
        let n = stream.read(&mut buf).expect("kernel read");
        assert!(n > 0, "EOF before {terminator:?}; got {got:?}");
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn read_to_eof(stream: &mut TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    stream.read_to_end(&mut got).expect("kernel read to EOF");
    got
}

fn server(pair: &NetnsPair, script: Script) -> Scripted {
    Scripted::new(Role::Server, pair.synack_addr(), script, 1)
}

fn client(pair: &NetnsPair, port: u16, script: Script) -> Scripted {
    let remote = SocketAddrV4::new(pair.kernel_addr(), port);
    Scripted::new(Role::Client { remote }, pair.synack_addr(), script, 1)
}

fn listen_http(engine: &mut Engine) {
    engine.listen(Port(HTTP_PORT), 16).expect("listen");
}

fn assert_clean_close(app: &Scripted, expect_received: &[u8]) {
    assert!(app.errors.is_empty(), "synack app errors: {:?}", app.errors);
    assert_eq!(app.conns.len(), 1, "{:?}", app.conns);
    let c = &app.conns[0];
    assert_eq!(c.closed, Some(CloseReason::Normal), "{c:?}");
    assert_eq!(
        first_difference(&c.received, expect_received),
        None,
        "synack received {} bytes, expected {}",
        c.received.len(),
        expect_received.len()
    );
    assert!(c.triggered && c.sent == app.script.send.len(), "{c:?}");
}

// ----- (a), (b): kernel client, synack server ------------------------------------------------------------------

fn kernel_client_request(mode: XdpMode, synack_closes_first: bool) {
    let Some(pair) = pair() else { return };
    let script = Script {
        send: RESPONSE.to_vec(),
        trigger: Trigger::AfterReceived(REQUEST.len()),
        shutdown_when_sent: false,
        close: if synack_closes_first {
            CloseWhen::First
        } else {
            CloseWhen::AfterPeer
        },
        expect: REQUEST.len(),
    };
    let o = run(&pair, mode, server(&pair, script), listen_http, || {
        let mut s = kernel_connect(&pair, HTTP_PORT);
        s.write_all(REQUEST).unwrap();
        if synack_closes_first {
            // Everything up to synack's FIN.
            read_to_eof(&mut s)
        } else {
            let mut reply = vec![0u8; RESPONSE.len()];
            s.read_exact(&mut reply).expect("kernel read reply");
            reply
        }
        // Dropping the stream closes it: first, or after synack's FIN.
    });
    assert_eq!(o.kernel, RESPONSE);
    assert_clean_close(&o.app, REQUEST);
    let events = &o.app.conns[0].events;
    assert!(matches!(events.first(), Some(EventKind::Accepted { .. })), "{events:?}");
    if synack_closes_first {
        check_common(&o, mode, 0, 1);
    } else {
        assert!(events.contains(&EventKind::PeerClosed), "{events:?}");
        check_common(&o, mode, 1, 0);
    }
}

// ----- (c): 2 MB each way through an echo server ---------------------------------------------------------------

fn kernel_client_bulk_echo(mode: XdpMode) {
    let Some(pair) = pair() else { return };
    let data = pattern(0x5eed_0001, BULK);
    let app = Echo {
        conns: Vec::new(),
        expected_conns: 1,
        errors: Vec::new(),
    };
    let t0 = StdInstant::now();
    let o = run(&pair, mode, app, listen_http, || {
        let mut s = kernel_connect(&pair, HTTP_PORT);
        let mut writer = s.try_clone().unwrap();
        let to_send = data.clone();
        let w = std::thread::spawn(move || {
            for chunk in to_send.chunks(64 * 1024) {
                writer.write_all(chunk).expect("kernel write");
            }
            writer.shutdown(Shutdown::Write).expect("kernel shutdown");
        });
        let echoed = read_to_eof(&mut s);
        w.join().expect("kernel writer");
        echoed
    });
    eprintln!("{mode:?}: {BULK} bytes each way in {:?}", t0.elapsed());
    assert_eq!(
        first_difference(&o.kernel, &data),
        None,
        "echo differs from what was sent"
    );
    assert!(o.app.errors.is_empty(), "{:?}", o.app.errors);
    assert_eq!(o.app.conns.len(), 1);
    assert_eq!(o.app.conns[0].echoed, BULK);
    assert_eq!(o.app.conns[0].closed, Some(CloseReason::Normal));
    check_common(&o, mode, 1, 0);
}

// ----- (d): synack client, kernel server -----------------------------------------------------------------------

fn synack_client_request(mode: XdpMode, synack_closes_first: bool) {
    let Some(pair) = pair() else { return };
    let listener = kernel_listen(&pair);
    let script = Script {
        send: REQUEST.to_vec(),
        trigger: Trigger::OnOpen,
        shutdown_when_sent: false,
        close: if synack_closes_first {
            CloseWhen::First
        } else {
            CloseWhen::AfterPeer
        },
        expect: RESPONSE.len(),
    };
    let o = run(
        &pair,
        mode,
        client(&pair, KERNEL_PORT, script),
        |_| {},
        || {
            let mut s = kernel_accept(&listener);
            let request = read_until(&mut s, b"\r\n\r\n");
            s.write_all(RESPONSE).unwrap();
            if synack_closes_first {
                let rest = read_to_eof(&mut s);
                assert!(rest.is_empty(), "{rest:?}");
            }
            drop(listener);
            request
        },
    );
    assert_eq!(o.kernel, REQUEST);
    assert_clean_close(&o.app, RESPONSE);
    assert_eq!(o.app.conns[0].events.first(), Some(&EventKind::Connected));
    if synack_closes_first {
        check_common(&o, mode, 0, 1);
    } else {
        check_common(&o, mode, 1, 0);
    }
    assert!(o.synack.counters.arp_requests_sent >= 1 && o.synack.counters.arp_learnt >= 1);
}

/// synack sends 2 MB and shuts down its side when all is queued; the kernel echoes and closes at EOF.
fn synack_client_bulk_echo(mode: XdpMode) {
    let Some(pair) = pair() else { return };
    let listener = kernel_listen(&pair);
    let data = pattern(0x5eed_0002, BULK);
    let script = Script {
        send: data.clone(),
        trigger: Trigger::OnOpen,
        shutdown_when_sent: true,
        close: CloseWhen::AfterPeer,
        expect: BULK,
    };
    let t0 = StdInstant::now();
    let o = run(
        &pair,
        mode,
        client(&pair, KERNEL_PORT, script),
        |_| {},
        || {
            let mut s = kernel_accept(&listener);
            let mut buf = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            loop {
                let n = s.read(&mut buf).expect("kernel read");
                if n == 0 {
                    break;
                }
                s.write_all(&buf[..n]).expect("kernel write");
                total += n;
            }
            drop(listener);
            total
        },
    );
    eprintln!("{mode:?}: {BULK} bytes each way in {:?}", t0.elapsed());
    assert_eq!(o.kernel, BULK);
    assert_clean_close(&o.app, &data);
    // synack's FIN went first.
    check_common(&o, mode, 0, 1);
}

// ----- (e): half-close -----------------------------------------------------------------------------------------

/// The kernel sends its request and shuts down its write side; synack answers with 256 KB after the FIN.
fn kernel_half_close_synack_sends_more(mode: XdpMode) {
    let Some(pair) = pair() else { return };
    let body = pattern(0x5eed_0003, 256 * 1024);
    let script = Script {
        send: body.clone(),
        trigger: Trigger::OnPeerClose,
        shutdown_when_sent: false,
        close: CloseWhen::AfterPeer,
        expect: REQUEST.len(),
    };
    let o = run(&pair, mode, server(&pair, script), listen_http, || {
        let mut s = kernel_connect(&pair, HTTP_PORT);
        s.write_all(REQUEST).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        read_to_eof(&mut s)
    });
    assert_eq!(first_difference(&o.kernel, &body), None, "got {} bytes", o.kernel.len());
    assert_clean_close(&o.app, REQUEST);
    check_common(&o, mode, 1, 0);
}

/// synack connects; the kernel greets, shuts down its write side and reads on; synack then sends 256 KB.
fn kernel_server_half_close_synack_sends_more(mode: XdpMode) {
    let Some(pair) = pair() else { return };
    let listener = kernel_listen(&pair);
    let body = pattern(0x5eed_0004, 256 * 1024);
    let greeting = b"220 hello\r\n";
    let script = Script {
        send: body.clone(),
        trigger: Trigger::OnPeerClose,
        shutdown_when_sent: false,
        close: CloseWhen::AfterPeer,
        expect: greeting.len(),
    };
    let o = run(
        &pair,
        mode,
        client(&pair, KERNEL_PORT, script),
        |_| {},
        || {
            let mut s = kernel_accept(&listener);
            s.write_all(greeting).unwrap();
            s.shutdown(Shutdown::Write).unwrap();
            let got = read_to_eof(&mut s);
            drop(listener);
            got
        },
    );
    assert_eq!(first_difference(&o.kernel, &body), None, "got {} bytes", o.kernel.len());
    assert_clean_close(&o.app, greeting);
    check_common(&o, mode, 1, 0);
}

// ----- (f): refused connections --------------------------------------------------------------------------------

fn idle_app(pair: &NetnsPair) -> Scripted {
    let script = Script {
        send: Vec::new(),
        trigger: Trigger::OnOpen,
        shutdown_when_sent: false,
        close: CloseWhen::AfterPeer,
        expect: 0,
    };
    Scripted::new(Role::Server, pair.synack_addr(), script, 0)
}

fn kernel_connect_closed_port_refused(mode: XdpMode) {
    let Some(pair) = pair() else { return };
    let o = run(&pair, mode, idle_app(&pair), listen_http, || {
        let target = SocketAddr::V4(SocketAddrV4::new(pair.synack_addr(), CLOSED_PORT));
        TcpStream::connect_timeout(&target, IO_TIMEOUT)
            .map(|_| ())
            .map_err(|e| e.kind())
    });
    assert_eq!(o.kernel, Err(std::io::ErrorKind::ConnectionRefused));
    assert!(
        o.synack.counters.no_listener >= 1 && o.synack.counters.rst_sent >= 1,
        "{:?}",
        o.synack
    );
    assert!(o.app.conns.is_empty() && o.app.errors.is_empty());
    check_common(&o, mode, 0, 0);
}

fn synack_connect_closed_port_refused(mode: XdpMode) {
    let Some(pair) = pair() else { return };
    let script = Script {
        send: REQUEST.to_vec(),
        trigger: Trigger::OnOpen,
        shutdown_when_sent: false,
        close: CloseWhen::AfterPeer,
        expect: 0,
    };
    let o = run(&pair, mode, client(&pair, CLOSED_PORT, script), |_| {}, || ());
    assert!(o.app.errors.is_empty(), "{:?}", o.app.errors);
    assert_eq!(o.app.conns.len(), 1);
    assert_eq!(o.app.conns[0].closed, Some(CloseReason::Refused), "{:?}", o.app.conns);
    assert!(!o.app.conns[0].open);
    check_common(&o, mode, 0, 0);
}

// ----- (g): ICMP echo ------------------------------------------------------------------------------------------

fn icmp_checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], c.get(1).copied().unwrap_or(0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Sends one ICMP echo request over a raw socket and waits (bounded) for the matching reply; returns its payload.
fn raw_ping(dst: Ipv4Addr, ident: u16, seq: u16, payload: &[u8]) -> Result<Vec<u8>, String> {
    // SAFETY: plain socket call; the result is checked.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_RAW, libc::IPPROTO_ICMP) };
    if fd < 0 {
        return Err(format!("raw socket: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: the fd was just created and is owned here (closed on drop).
    let fd = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    let raw = std::os::fd::AsRawFd::as_raw_fd(&fd);
    let tv = libc::timeval {
        tv_sec: 0,
        tv_usec: 200_000,
    };
    // SAFETY: valid option pointer and length.
    unsafe {
        libc::setsockopt(
            raw,
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            (&tv as *const libc::timeval).cast(),
            size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
    let mut msg = vec![8u8, 0, 0, 0];
    msg.extend_from_slice(&ident.to_be_bytes());
    msg.extend_from_slice(&seq.to_be_bytes());
    msg.extend_from_slice(payload);
    let c = icmp_checksum(&msg);
    msg[2..4].copy_from_slice(&c.to_be_bytes());
    let to = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(dst.octets()),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: valid buffer and address.
    let sent = unsafe {
        libc::sendto(
            raw,
            msg.as_ptr().cast(),
            msg.len(),
            0,
            (&to as *const libc::sockaddr_in).cast(),
            size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    };
    if sent < 0 {
        return Err(format!("sendto: {}", std::io::Error::last_os_error()));
    }
    let deadline = StdInstant::now() + Duration::from_secs(2);
    let mut buf = [0u8; 2048];
    while StdInstant::now() < deadline {
        // SAFETY: valid buffer.
        let n = unsafe { libc::recv(raw, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n <= 0 {
            continue; // timeout tick or EINTR
        }
        let pkt = &buf[..n as usize];
        let ihl = usize::from(pkt[0] & 0x0f) * 4;
        let Some(icmp) = pkt.get(ihl..) else { continue };
        if icmp.len() < 8 || pkt[12..16] != dst.octets() {
            continue;
        }
        if icmp[0] == 0 && icmp[4..6] == ident.to_be_bytes() && icmp[6..8] == seq.to_be_bytes() {
            if icmp_checksum(icmp) != 0 {
                return Err("echo reply with a bad checksum".into());
            }
            return Ok(icmp[8..].to_vec());
        }
    }
    Err("no echo reply within 2 s".into())
}

fn kernel_ping_answered(mode: XdpMode) {
    let Some(pair) = pair() else { return };
    let payload: Vec<u8> = (0..56u8).collect();
    let o = run(
        &pair,
        mode,
        idle_app(&pair),
        |_| {},
        || {
            (1..=3u16)
                .map(|seq| raw_ping(pair.synack_addr(), 0x5a5a, seq, &payload))
                .collect::<Vec<_>>()
        },
    );
    for reply in &o.kernel {
        assert_eq!(reply.as_deref(), Ok(&payload[..]));
    }
    assert_eq!(o.synack.counters.icmp_echo_replies, 3, "{:?}", o.synack);
    check_common(&o, mode, 0, 0);
}

// ----- every case in both XDP modes ----------------------------------------------------------------------------

macro_rules! both_modes {
    ($($name:ident => $body:expr;)*) => {
        mod native {
            use super::*;
            $(#[test] fn $name() { $body(XdpMode::Native) })*
        }
        mod generic {
            use super::*;
            $(#[test] fn $name() { $body(XdpMode::Generic) })*
        }
    };
}

both_modes! {
    kernel_client_kernel_closes_first_gets_reply => |m| kernel_client_request(m, false);
    kernel_client_synack_closes_first_gets_reply => |m| kernel_client_request(m, true);
    kernel_client_bulk_echo_arrives_in_order => kernel_client_bulk_echo;
    synack_client_kernel_closes_first_gets_reply => |m| synack_client_request(m, false);
    synack_client_synack_closes_first_gets_reply => |m| synack_client_request(m, true);
    synack_client_bulk_echo_arrives_in_order => synack_client_bulk_echo;
    kernel_half_close_synack_sends_more_is_read => kernel_half_close_synack_sends_more;
    kernel_server_half_close_synack_sends_more_is_read => kernel_server_half_close_synack_sends_more;
    kernel_connect_closed_port_is_refused => kernel_connect_closed_port_refused;
    synack_connect_closed_port_is_refused => synack_connect_closed_port_refused;
    kernel_ping_is_answered => kernel_ping_answered;
}
