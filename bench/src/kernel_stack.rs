//! The same responder and load generator on the Linux kernel's sockets: non-blocking, one thread, epoll
//! through mio. The baseline is measured by the very same tool, with the same protocol code
//! ([`crate::proto`]) and the same report.
//!
//! The load generator binds each socket to a source address from the pool with `IP_BIND_ADDRESS_NO_PORT`, so
//! the kernel picks the port at `connect` time knowing the whole 4-tuple (the kernel's best choice: with
//! `tcp_tw_reuse` it can reuse a TIME-WAIT port per destination); the port range is the namespace's
//! `net.ipv4.ip_local_port_range`.

use std::collections::BTreeMap;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::FromRawFd;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use crate::config::{CloseFirst, LoadMode, LoadgenConfig, ResponderConfig, StackKind};
use crate::proto::{RequestCounter, ResponseCounter, request_bytes, response_bytes};
use crate::report::{Latencies, LiveLine, PerSecond, Report, Totals, count_failure};
use crate::synack_stack::{Control, DRAIN, RunError, announce_stop, is_set};

/// What the kernel responder's lifecycle latency measures.
pub const KERNEL_RESPONDER_LIFECYCLE: &str = "accept to the server's close (the kernel finishes the FIN exchange)";

/// The TCP MIB counters (`Tcp:` of snmp and `TcpExt:` of netstat) of the calling thread's network namespace.
pub fn tcp_mib() -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    for (file, prefix) in [("snmp", "Tcp:"), ("netstat", "TcpExt:")] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/thread-self/net/{file}")) else {
            continue;
        };
        let lines: Vec<&str> = text.lines().filter(|l| l.starts_with(prefix)).collect();
        if let [names, values, ..] = lines.as_slice() {
            for (n, v) in names.split_whitespace().zip(values.split_whitespace()).skip(1) {
                if let Ok(v) = v.parse::<u64>() {
                    out.insert(n.to_owned(), v);
                }
            }
        }
    }
    out
}

fn mib_delta(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    after
        .iter()
        .filter(|(k, _)| k.as_str() != "CurrEstab" && !k.starts_with("Rto") && k.as_str() != "MaxConn")
        .map(|(k, v)| (k.clone(), v.saturating_sub(before.get(k).copied().unwrap_or(0))))
        .filter(|&(_, v)| v != 0)
        .collect()
}

fn mib(d: &BTreeMap<String, u64>, k: &str) -> u64 {
    d.get(k).copied().unwrap_or(0)
}

/// Fills retransmits/resets/drops/frames from MIB deltas.
fn fill_mib(report: &mut Report, before: &BTreeMap<String, u64>) {
    let d = mib_delta(before, &tcp_mib());
    report.retransmits = mib(&d, "RetransSegs");
    report.resets = mib(&d, "OutRsts") + mib(&d, "EstabResets");
    report.drops = mib(&d, "ListenDrops") + mib(&d, "TCPBacklogDrop") + mib(&d, "InErrs");
    report.frames = mib(&d, "InSegs") + mib(&d, "OutSegs");
    report.counters = d;
}

fn live_totals(totals: &Totals, before: &BTreeMap<String, u64>) -> Totals {
    let d = mib_delta(before, &tcp_mib());
    Totals {
        retransmits: mib(&d, "RetransSegs"),
        resets: mib(&d, "OutRsts") + mib(&d, "EstabResets"),
        drops: mib(&d, "ListenDrops") + mib(&d, "TCPBacklogDrop") + mib(&d, "InErrs"),
        ..*totals
    }
}

fn pin(core: Option<usize>) {
    if let Some(core) = core {
        if let Some(id) = core_affinity::get_core_ids().unwrap_or_default().get(core) {
            core_affinity::set_for_current(*id);
        }
    }
}

/// A slab of connections keyed by mio tokens.
struct Slab<T> {
    items: Vec<Option<T>>,
    free: Vec<usize>,
}

impl<T> Slab<T> {
    fn new() -> Slab<T> {
        Slab {
            items: Vec::new(),
            free: Vec::new(),
        }
    }
    fn insert(&mut self, t: T) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.items[i] = Some(t);
                i
            }
            None => {
                self.items.push(Some(t));
                self.items.len() - 1
            }
        }
    }
    fn remove(&mut self, i: usize) -> Option<T> {
        let t = self.items.get_mut(i)?.take();
        if t.is_some() {
            self.free.push(i);
        }
        t
    }
    fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i)?.as_mut()
    }
}

// ----- responder ---------------------------------------------------------------------------------------------

struct ServerConn {
    stream: TcpStream,
    accepted: Instant,
    counter: RequestCounter,
    owed: u32,
    offset: usize,
    responses: u32,
    peer_closed: bool,
}

enum Outcome {
    Open,
    Done,
    Failed(String),
}

fn serve(c: &mut ServerConn, buf: &mut [u8], response: &[u8], close: CloseFirst, per_conn: u32) -> Outcome {
    loop {
        match c.stream.read(buf) {
            Ok(0) => {
                c.peer_closed = true;
                break;
            }
            Ok(n) => c.owed += c.counter.feed(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Outcome::Failed(format!("read: {:?}", e.kind())),
        }
    }
    while c.owed > 0 {
        match c.stream.write(&response[c.offset..]) {
            Ok(n) => c.offset += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Outcome::Failed(format!("write: {:?}", e.kind())),
        }
        if c.offset == response.len() {
            c.offset = 0;
            c.owed -= 1;
            c.responses += 1;
        }
    }
    let all_sent = c.owed == 0 && c.offset == 0;
    let done = match close {
        CloseFirst::Server => c.responses >= per_conn && all_sent,
        CloseFirst::Client => c.peer_closed && all_sent,
    };
    if done { Outcome::Done } else { Outcome::Open }
}

/// Runs the responder on the kernel's sockets (listening on every address x port of `cfg`).
pub fn run_responder(cfg: &ResponderConfig, control: Control) -> Result<Report, RunError> {
    pin(cfg.core);
    let mut poll = Poll::new().map_err(|e| RunError(format!("epoll: {e}")))?;
    let mut listeners = Vec::new();
    for &addr in &cfg.addresses {
        for &port in &cfg.ports {
            let mut l = listen(SocketAddrV4::new(addr, port), cfg.backlog)
                .map_err(|e| RunError(format!("listen on {addr}:{port}: {e}")))?;
            let token = Token(usize::MAX - listeners.len());
            poll.registry()
                .register(&mut l, token, Interest::READABLE)
                .map_err(|e| RunError(format!("epoll: {e}")))?;
            listeners.push(l);
        }
    }
    if let Some(r) = &control.ready {
        let _ = r.send(());
    }
    let response = response_bytes(cfg.protocol, cfg.response_size, cfg.close);
    let mut conns: Slab<ServerConn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut totals = Totals::default();
    let mut lat = Latencies::default();
    let mut failures = BTreeMap::new();
    let mut requests = 0u64;
    let mib_before = tcp_mib();
    let mut live = LiveLine::new("responder kernel", cfg.live);
    let start = Instant::now();
    let mut last_done = start;
    let limit = (cfg.duration_secs > 0.0).then(|| Duration::from_secs_f64(cfg.duration_secs));
    let mut draining_since: Option<Instant> = None;
    while !is_set(&control.stop) && limit.is_none_or(|l| start.elapsed() < l) {
        if draining_since.is_none() && is_set(&control.drain) {
            // Stopping gracefully: close the listening sockets (new connections are refused), let the open ones
            // finish for a bounded time.
            for mut l in listeners.drain(..) {
                let _ = poll.registry().deregister(&mut l);
            }
            draining_since = Some(Instant::now());
            announce_stop("responder", totals.open, DRAIN);
        }
        if draining_since.is_some_and(|at| totals.open == 0 || at.elapsed() >= DRAIN) {
            break;
        }
        if let Err(e) = poll.poll(&mut events, Some(Duration::from_millis(20))) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(RunError(format!("epoll_wait: {e}")));
            }
        }
        for event in events.iter() {
            let token = event.token().0;
            if token > usize::MAX - listeners.len() {
                let l = &listeners[usize::MAX - token];
                loop {
                    match l.accept() {
                        Ok((stream, _)) => {
                            let _ = stream.set_nodelay(true);
                            let c = ServerConn {
                                stream,
                                accepted: Instant::now(),
                                counter: RequestCounter::new(cfg.protocol, cfg.request_size),
                                owed: 0,
                                offset: 0,
                                responses: 0,
                                peer_closed: false,
                            };
                            let i = conns.insert(c);
                            if let Some(c) = conns.get_mut(i) {
                                let _ = poll.registry().register(
                                    &mut c.stream,
                                    Token(i),
                                    Interest::READABLE | Interest::WRITABLE,
                                );
                            }
                            totals.started += 1;
                            totals.open += 1;
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            count_failure(&mut failures, &format!("accept: {:?}", e.kind()));
                            break;
                        }
                    }
                }
                continue;
            }
            let Some(c) = conns.get_mut(token) else { continue };
            let outcome = serve(c, &mut buf, &response, cfg.close, cfg.requests_per_connection);
            let responses = c.responses;
            match outcome {
                Outcome::Open => continue,
                Outcome::Done => {
                    if let Some(mut c) = conns.remove(token) {
                        let _ = poll.registry().deregister(&mut c.stream);
                        lat.lifecycle.record(c.accepted.elapsed());
                    }
                    totals.completed += 1;
                    last_done = Instant::now();
                }
                Outcome::Failed(why) => {
                    if let Some(mut c) = conns.remove(token) {
                        let _ = poll.registry().deregister(&mut c.stream);
                    }
                    totals.failed += 1;
                    count_failure(&mut failures, &why);
                }
            }
            requests += u64::from(responses);
            totals.open -= 1;
        }
        if live.due() {
            live.tick(live_totals(&totals, &mib_before));
        }
    }
    let mut report = Report::new("responder", StackKind::Kernel);
    report.fill(&totals, last_done - start, &lat);
    report.requests = requests;
    report.failures = failures;
    report.lifecycle = KERNEL_RESPONDER_LIFECYCLE;
    fill_mib(&mut report, &mib_before);
    Ok(report)
}

/// A listening socket with SO_REUSEADDR and the given backlog.
fn listen(addr: SocketAddrV4, backlog: u32) -> io::Result<TcpListener> {
    let fd = new_socket()?;
    let sa = sockaddr(addr);
    // SAFETY: `fd` is a fresh socket we own; `sa` is a valid sockaddr_in for the call's duration.
    unsafe {
        if libc::bind(fd, (&raw const sa).cast(), size_of::<libc::sockaddr_in>() as u32) != 0
            || libc::listen(fd, i32::try_from(backlog).unwrap_or(i32::MAX)) != 0
        {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(TcpListener::from_std(std::net::TcpListener::from_raw_fd(fd)))
    }
}

fn sockaddr(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// A non-blocking TCP socket with SO_REUSEADDR.
fn new_socket() -> io::Result<i32> {
    // SAFETY: plain socket/setsockopt calls on a descriptor we own; results are checked.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let one: libc::c_int = 1;
        if libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as u32,
        ) != 0
        {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        Ok(fd)
    }
}

/// Starts a non-blocking connect from `src` (port chosen by the kernel at connect time) to `dst`.
fn connect_from(src: Ipv4Addr, dst: SocketAddrV4) -> io::Result<TcpStream> {
    let fd = new_socket()?;
    let one: libc::c_int = 1;
    let local = sockaddr(SocketAddrV4::new(src, 0));
    let remote = sockaddr(dst);
    // SAFETY: `fd` is a fresh socket we own; the option and address buffers live across the calls. On success
    // the descriptor moves into the std stream, which closes it.
    unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as u32,
        );
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_NODELAY,
            (&raw const one).cast(),
            size_of::<libc::c_int>() as u32,
        );
        let len = size_of::<libc::sockaddr_in>() as u32;
        if libc::bind(fd, (&raw const local).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            libc::close(fd);
            return Err(e);
        }
        if libc::connect(fd, (&raw const remote).cast(), len) != 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINPROGRESS) {
                libc::close(fd);
                return Err(e);
            }
        }
        Ok(TcpStream::from_std(std::net::TcpStream::from_raw_fd(fd)))
    }
}

// ----- load generator ----------------------------------------------------------------------------------------

struct ClientConn {
    stream: TcpStream,
    start: Instant,
    connected: bool,
    got_first: bool,
    counter: ResponseCounter,
    requests_sent: u32,
    offset: usize,
    responses: u32,
    peer_closed: bool,
}

struct ClientCtx<'a> {
    request: &'a [u8],
    per_conn: u32,
    close: CloseFirst,
    lat: &'a mut Latencies,
    requests: &'a mut u64,
}

fn drive_client(c: &mut ClientConn, buf: &mut [u8], x: &mut ClientCtx<'_>) -> Outcome {
    if !c.connected {
        match c.stream.take_error() {
            Ok(Some(e)) | Err(e) => return Outcome::Failed(format!("connect: {:?}", e.kind())),
            Ok(None) => {}
        }
        match c.stream.peer_addr() {
            Ok(_) => {
                c.connected = true;
                x.lat.connect.record(c.start.elapsed());
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return Outcome::Open,
            Err(e) => return Outcome::Failed(format!("connect: {:?}", e.kind())),
        }
    }
    loop {
        match c.stream.read(buf) {
            Ok(0) => {
                c.peer_closed = true;
                break;
            }
            Ok(n) => {
                if !c.got_first {
                    c.got_first = true;
                    x.lat.first_byte.record(c.start.elapsed());
                }
                let k = c.counter.feed(&buf[..n]);
                c.responses += k;
                *x.requests += u64::from(k);
                if c.counter.malformed() {
                    return Outcome::Failed("malformed_response".into());
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Outcome::Failed(format!("read: {:?}", e.kind())),
        }
    }
    if c.responses > c.requests_sent {
        return Outcome::Failed("unexpected_response".into());
    }
    if c.requests_sent == c.responses && c.requests_sent < x.per_conn {
        c.requests_sent += 1;
        c.offset = 0;
    }
    while c.requests_sent > c.responses && c.offset < x.request.len() {
        match c.stream.write(&x.request[c.offset..]) {
            Ok(n) => c.offset += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Outcome::Failed(format!("write: {:?}", e.kind())),
        }
    }
    let done = c.responses >= x.per_conn;
    match (done, c.peer_closed, x.close) {
        (true, _, CloseFirst::Client) | (true, true, CloseFirst::Server) => {
            x.lat.lifecycle.record(c.start.elapsed());
            Outcome::Done
        }
        (false, true, _) => Outcome::Failed("short_response".into()),
        _ => Outcome::Open,
    }
}

/// Runs the load generator on the kernel's sockets.
pub fn run_loadgen(cfg: &LoadgenConfig, control: Control) -> Result<Report, RunError> {
    pin(cfg.core);
    let mut poll = Poll::new().map_err(|e| RunError(format!("epoll: {e}")))?;
    if let Some(r) = &control.ready {
        let _ = r.send(());
    }
    let request = request_bytes(cfg.protocol, cfg.request_size);
    let mut conns: Slab<ClientConn> = Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    let mut totals = Totals::default();
    let mut lat = Latencies::default();
    let mut failures = BTreeMap::new();
    let mut requests = 0u64;
    let mib_before = tcp_mib();
    let mut live = LiveLine::new("loadgen kernel", cfg.live);
    let mut per_second = PerSecond::with_capacity(cfg.duration_secs + cfg.drain_secs + 5.0);
    let start = Instant::now();
    let mut last_done = start;
    let mut scheduled = 0u64;
    let mut rr = 0u64;
    let mut stopped_at: Option<Instant> = None;
    let interval = if cfg.mode == LoadMode::Open {
        Duration::from_secs_f64(1.0 / cfg.rate)
    } else {
        Duration::ZERO
    };
    let hard_limit = Duration::from_secs_f64(cfg.duration_secs + cfg.drain_secs + 5.0);
    loop {
        let now = Instant::now();
        if is_set(&control.stop) || (cfg.duration_secs > 0.0 && now - start >= hard_limit) {
            break;
        }
        if stopped_at.is_none()
            && ((cfg.duration_secs > 0.0 && (now - start).as_secs_f64() >= cfg.duration_secs)
                || (cfg.connections > 0 && totals.started >= cfg.connections))
        {
            stopped_at = Some(now);
        }
        if stopped_at.is_none() && is_set(&control.drain) {
            announce_stop("loadgen", totals.open, Duration::from_secs_f64(cfg.drain_secs));
            stopped_at = Some(now);
        }
        match stopped_at {
            Some(s) if totals.open == 0 || (now - s).as_secs_f64() >= cfg.drain_secs => break,
            _ => {}
        }
        // Start new connections.
        if stopped_at.is_none() {
            let left = if cfg.connections > 0 {
                cfg.connections - totals.started
            } else {
                u64::MAX
            };
            let mut begin = |at: Instant, totals: &mut Totals, failures: &mut BTreeMap<String, u64>| -> bool {
                let src = cfg.sources[(rr % cfg.sources.len() as u64) as usize];
                let dst = cfg.targets[((rr / cfg.sources.len() as u64) % cfg.targets.len() as u64) as usize];
                rr += 1;
                totals.started += 1;
                match connect_from(src, dst) {
                    Ok(stream) => {
                        let i = conns.insert(ClientConn {
                            stream,
                            start: at,
                            connected: false,
                            got_first: false,
                            counter: ResponseCounter::new(cfg.protocol, cfg.response_size),
                            requests_sent: 1,
                            offset: 0,
                            responses: 0,
                            peer_closed: false,
                        });
                        if let Some(c) = conns.get_mut(i) {
                            let _ = poll.registry().register(
                                &mut c.stream,
                                Token(i),
                                Interest::READABLE | Interest::WRITABLE,
                            );
                        }
                        totals.open += 1;
                        true
                    }
                    Err(e) => {
                        totals.failed += 1;
                        count_failure(failures, &format!("connect: {:?}", e.kind()));
                        false
                    }
                }
            };
            match cfg.mode {
                LoadMode::Closed => {
                    let room = u64::from(cfg.concurrency).saturating_sub(totals.open);
                    for _ in 0..room.min(left) {
                        if !begin(now, &mut totals, &mut failures) {
                            break;
                        }
                    }
                }
                LoadMode::Open => {
                    for _ in 0..left.min(1024) {
                        let at = start + interval * u32::try_from(scheduled).unwrap_or(u32::MAX);
                        if at > now {
                            break;
                        }
                        scheduled += 1;
                        if totals.open >= u64::from(cfg.concurrency) {
                            totals.started += 1;
                            totals.failed += 1;
                            count_failure(&mut failures, "over_concurrency");
                            continue;
                        }
                        begin(at, &mut totals, &mut failures);
                    }
                }
            }
        }
        let timeout = match cfg.mode {
            LoadMode::Open if stopped_at.is_none() => {
                let next = start + interval * u32::try_from(scheduled).unwrap_or(u32::MAX);
                next.saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(10))
            }
            _ => Duration::from_millis(10),
        };
        if let Err(e) = poll.poll(&mut events, Some(timeout)) {
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(RunError(format!("epoll_wait: {e}")));
            }
        }
        let mut ctx = ClientCtx {
            request: &request,
            per_conn: cfg.requests_per_connection,
            close: cfg.close,
            lat: &mut lat,
            requests: &mut requests,
        };
        for event in events.iter() {
            let token = event.token().0;
            let Some(c) = conns.get_mut(token) else { continue };
            match drive_client(c, &mut buf, &mut ctx) {
                Outcome::Open => continue,
                Outcome::Done => {
                    totals.completed += 1;
                    last_done = Instant::now();
                    per_second.record(last_done - start);
                }
                Outcome::Failed(why) => {
                    totals.failed += 1;
                    count_failure(&mut failures, &why);
                }
            }
            if let Some(mut c) = conns.remove(token) {
                let _ = poll.registry().deregister(&mut c.stream);
            }
            totals.open -= 1;
        }
        if live.due() {
            live.tick(live_totals(&totals, &mib_before));
        }
    }
    if totals.open > 0 {
        totals.failed += totals.open;
        *failures.entry("unfinished".to_owned()).or_insert(0) += totals.open;
    }
    let mut report = Report::new("loadgen", StackKind::Kernel);
    report.fill(&totals, last_done - start, &lat);
    report.requests = requests;
    report.failures = failures;
    report.lifecycle = crate::synack_stack::LOADGEN_LIFECYCLE;
    report.per_second = per_second.counts(start.elapsed());
    fill_mib(&mut report, &mib_before);
    Ok(report)
}
