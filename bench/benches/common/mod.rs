//! The synack side of the life-cycle benches: two engines joined by an in-memory wire, driven on one thread by
//! the poll loop of `synack::engine` (frames in, events, timeouts, one `poll_transmit`). Nothing here allocates
//! once the pair is built, so a timed loop measures the engines and not the harness.
#![allow(dead_code)] // each bench uses a different part

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use synack::engine::{ConnHandle, Engine, EngineConfig, EventKind};
use synack::io::{TxRefused, TxSink};
use synack::isn::Secret;
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;

/// Largest frame the wire carries (a 1500-byte MTU plus the Ethernet header, rounded up).
pub const FRAME: usize = 1600;

/// A preallocated queue of frames: one direction of the wire.
pub struct Wire {
    frames: Vec<[u8; FRAME]>,
    lens: Vec<usize>,
    count: usize,
}

impl Wire {
    pub fn new(capacity: usize) -> Wire {
        Wire {
            frames: vec![[0u8; FRAME]; capacity],
            lens: vec![0; capacity],
            count: 0,
        }
    }
}

impl TxSink for Wire {
    #[inline]
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused> {
        if len > FRAME {
            return Err(TxRefused::TooLong);
        }
        if self.count == self.frames.len() {
            return Err(TxRefused::Full);
        }
        fill(&mut self.frames[self.count][..len]);
        self.lens[self.count] = len;
        self.count += 1;
        Ok(())
    }
}

pub const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
pub const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
pub const CLIENT_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
pub const SERVER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
/// The port the measured life cycles connect to.
pub const PORT: u16 = 80;
/// Idle connections and pre-filled TIME-WAIT records use server ports from here up, one per 60,000 flows, so
/// they never share a 4-tuple with the measured traffic.
pub const IDLE_PORT_BASE: u16 = 1000;
/// Simulated time per poll round (each engine polls once per round).
pub const ROUND: Duration = Duration::from_micros(100);
pub const PAYLOAD: usize = 64;

/// Sizes of one engine pair.
#[derive(Debug, Clone, Copy)]
pub struct PairConfig {
    /// Connections each engine can hold (any state but TIME-WAIT).
    pub max_connections: usize,
    /// TIME-WAIT records each engine can hold.
    pub max_time_wait: usize,
    /// Maximum segment lifetime in simulated time (TIME-WAIT lasts twice this).
    pub msl: Duration,
    /// Frames one direction of the wire holds per round.
    pub wire_frames: usize,
    /// How long the client waits before reusing one of its own TIME-WAIT 4-tuples (RFC 6191; the engine's
    /// default is 1 s, like Linux's `tcp_tw_reuse`).
    pub time_wait_reuse_delay: Duration,
}

fn engine_config(mac: MacAddr, ip: Ipv4Addr, pair: &PairConfig) -> EngineConfig {
    EngineConfig {
        mac,
        addresses: vec![ip],
        max_connections: pair.max_connections,
        max_time_wait: pair.max_time_wait,
        time_wait_reuse_delay: pair.time_wait_reuse_delay,
        max_listeners: 64,
        buffer_size: 4096,
        // Only connections with data in flight hold buffers; idle ones hold none.
        buffer_count: 4096,
        msl: pair.msl,
        // The whole unprivileged range: the client reuses a port only after ~64,000 connections.
        ephemeral_ports: (1024, 65535),
        ..EngineConfig::default()
    }
}

/// Two engines, a client and a server, and the wire between them.
pub struct Pair {
    pub client: Engine,
    pub server: Engine,
    pub now: Instant,
    /// Client to server, and back.
    a: Wire,
    b: Wire,
    /// Measured life cycles in flight.
    open: usize,
    /// Idle connections the client holds open, to be kept (their handles are not needed again).
    pub idle: usize,
}

impl Pair {
    pub fn new(config: PairConfig) -> Pair {
        let now = Instant::from_millis(1);
        let mut client = Engine::with_secrets(
            engine_config(CLIENT_MAC, CLIENT, &config),
            now,
            Secret::from_seed(1),
            Secret::from_seed(2),
        )
        .expect("client config");
        let mut server = Engine::with_secrets(
            engine_config(SERVER_MAC, SERVER, &config),
            now,
            Secret::from_seed(3),
            Secret::from_seed(4),
        )
        .expect("server config");
        client.add_neighbor(SERVER, SERVER_MAC);
        server.add_neighbor(CLIENT, CLIENT_MAC);
        server.listen(Port(PORT), 65535).expect("listen");
        Pair {
            client,
            server,
            now,
            a: Wire::new(config.wire_frames),
            b: Wire::new(config.wire_frames),
            open: 0,
            idle: 0,
        }
    }

    /// Runs `n` full life cycles, `concurrency` at a time: connect, 64-byte request, 64-byte response, the client
    /// closes first, the server closes on the client's FIN. Returns when the client has seen all `n` end (its side
    /// in TIME-WAIT); the server's last ACK may still be on the wire and is handled by the next call.
    pub fn life_cycles(&mut self, n: u64, concurrency: usize) {
        let request = [7u8; PAYLOAD];
        let response = [9u8; PAYLOAD];
        let (mut server_buf, mut client_buf) = ([0u8; 256], [0u8; 256]);
        let mut started = 0u64;
        let mut done = 0u64;
        let mut rounds = 0u64;
        let mut open = self.open;
        let remote = SocketAddrV4::new(SERVER, PORT);
        let local = SocketAddrV4::new(CLIENT, 0);
        while done < n {
            rounds += 1;
            assert!(rounds < n * 50 + 100, "stalled at {done}/{n}");
            while open < concurrency && started < n {
                self.client.connect(self.now, local, remote).expect("connect");
                started += 1;
                open += 1;
            }
            self.round(
                &mut |server, conn, kind| match kind {
                    EventKind::Readable => {
                        while server.recv(conn, &mut server_buf).is_ok_and(|n| n > 0) {}
                        server.send(conn, &response).expect("server send");
                    }
                    EventKind::PeerClosed => server.close(conn).expect("server close"),
                    _ => {}
                },
                &mut |client, conn, kind| match kind {
                    EventKind::Connected => {
                        client.send(conn, &request).expect("client send");
                    }
                    EventKind::Readable => {
                        while client.recv(conn, &mut client_buf).is_ok_and(|n| n > 0) {}
                        client.close(conn).expect("client close");
                    }
                    EventKind::Closed { .. } => {
                        done += 1;
                        open -= 1;
                    }
                    _ => {}
                },
            );
        }
        self.open = open;
    }

    /// One poll round of the engine contract: the client sends, the server takes the frames in, reacts to its
    /// events and sends, the client takes those in and reacts; then the simulated clock moves on by `ROUND`.
    #[inline]
    fn round(
        &mut self,
        on_server: &mut impl FnMut(&mut Engine, ConnHandle, EventKind),
        on_client: &mut impl FnMut(&mut Engine, ConnHandle, EventKind),
    ) {
        let now = self.now;
        // Timers as the driver's poll loop runs them: only when `poll_timeout` says something is due, which it
        // asks every turn (so its cost is measured too).
        if self.client.poll_timeout().is_some_and(|t| t <= now) {
            self.client.handle_timeouts(now);
        }
        self.client.poll_transmit(now, &mut self.a);
        // As a poll loop does with a receive batch: prefetch the batch's flow-table lines, then handle it.
        for i in 0..self.a.count {
            self.server.prefetch_frame(&self.a.frames[i][..self.a.lens[i]]);
        }
        for i in 0..self.a.count {
            self.server
                .handle_frame(now, &self.a.frames[i][..self.a.lens[i]], &mut self.b);
        }
        self.a.count = 0;
        while let Some(e) = self.server.poll_event() {
            on_server(&mut self.server, e.conn, e.kind);
        }
        if self.server.poll_timeout().is_some_and(|t| t <= now) {
            self.server.handle_timeouts(now);
        }
        self.server.poll_transmit(now, &mut self.b);
        for i in 0..self.b.count {
            self.client.prefetch_frame(&self.b.frames[i][..self.b.lens[i]]);
        }
        for i in 0..self.b.count {
            self.client
                .handle_frame(now, &self.b.frames[i][..self.b.lens[i]], &mut self.a);
        }
        self.b.count = 0;
        while let Some(e) = self.client.poll_event() {
            on_client(&mut self.client, e.conn, e.kind);
        }
        self.now += ROUND;
    }

    /// One poll round in which nobody reacts to data: for setting up idle connections and TIME-WAIT records.
    fn setup_round(&mut self, on_client: &mut impl FnMut(&mut Engine, ConnHandle, EventKind)) {
        self.round(
            &mut |server, conn, kind| {
                if kind == EventKind::PeerClosed {
                    server.close(conn).expect("server close");
                }
            },
            on_client,
        );
    }

    /// Listens on the server ports idle flows use, enough for `n` flows from one client address.
    fn listen_idle_ports(&mut self, n: usize) -> u16 {
        // A count prime to the 64,512 ephemeral ports (2^10 * 3^2 * 7), so (client port, server port) pairs do not
        // repeat before n flows.
        let mut ports = n.div_ceil(60_000).max(1) as u16;
        while ports > 1 && (ports % 2 == 0 || ports % 3 == 0 || ports % 7 == 0) {
            ports += 1;
        }
        for k in 0..ports {
            // Already listening is fine (a second setup on the same pair).
            let _ = self.server.listen(Port(IDLE_PORT_BASE + k), 65535);
        }
        ports
    }

    /// Opens `n` connections that stay established and idle (no data, no timers), `batch` handshakes at a time.
    pub fn open_idle(&mut self, n: usize, batch: usize) {
        let ports = self.listen_idle_ports(n + self.idle);
        let before = self.client.counters().established;
        let mut started = 0usize;
        let mut connected = 0usize;
        let mut rounds = 0;
        while connected < n {
            rounds += 1;
            assert!(rounds < n + 1000, "idle setup stalled at {connected}/{n}");
            let mut k = 0;
            while k < batch && started < n {
                let port = IDLE_PORT_BASE + ((self.idle + started) % ports as usize) as u16;
                self.client
                    .connect(self.now, SocketAddrV4::new(CLIENT, 0), SocketAddrV4::new(SERVER, port))
                    .expect("connect idle");
                started += 1;
                k += 1;
            }
            let mut got = 0;
            self.setup_round(&mut |_, _, kind| {
                if kind == EventKind::Connected {
                    got += 1;
                }
            });
            connected += got;
        }
        // One more round so the server sees the last ACKs of the handshakes.
        self.setup_round(&mut |_, _, _| {});
        self.idle += n;
        assert_eq!(self.client.counters().established - before, n as u64);
    }

    /// Leaves `n` TIME-WAIT records in the client: connections that are opened and closed at once (no data), to
    /// idle server ports.
    pub fn fill_time_wait(&mut self, n: usize, batch: usize) {
        let ports = self.listen_idle_ports(n);
        let before = self.client.counters().time_wait_entered;
        let mut started = 0usize;
        let mut closed = 0usize;
        let mut rounds = 0;
        while closed < n {
            rounds += 1;
            assert!(rounds < n + 1000, "TIME-WAIT setup stalled at {closed}/{n}");
            let mut k = 0;
            while k < batch && started < n {
                // Spread over the idle ports so the client's ports do not wrap into reuse of its own records.
                let port = IDLE_PORT_BASE + (started % ports as usize) as u16;
                self.client
                    .connect(self.now, SocketAddrV4::new(CLIENT, 0), SocketAddrV4::new(SERVER, port))
                    .expect("connect for TIME-WAIT");
                started += 1;
                k += 1;
            }
            let mut got = 0;
            self.setup_round(&mut |engine, conn, kind| match kind {
                EventKind::Connected => engine.close(conn).expect("close"),
                EventKind::Closed { .. } => got += 1,
                _ => {}
            });
            closed += got;
        }
        self.setup_round(&mut |_, _, _| {});
        assert_eq!(self.client.counters().time_wait_entered - before, n as u64);
    }

    /// Panics unless every life cycle so far ended cleanly (no retransmission, no reset, no drop).
    pub fn check_clean(&self) {
        for (name, e) in [("client", &self.client), ("server", &self.server)] {
            let c = e.counters();
            assert_eq!(c.retransmits, 0, "{name}: retransmissions");
            assert_eq!(c.closed_reset, 0, "{name}: resets");
            assert_eq!(c.drop_table_full, 0, "{name}: table full");
            // A connection that found no room for its TIME-WAIT record ends without one: less work, not the
            // workload measured.
            assert_eq!(c.time_wait_overflow, 0, "{name}: TIME-WAIT table full");
        }
    }
}

/// Resident set size of this process in bytes, from /proc/self/statm (0 where that file is missing).
pub fn rss_bytes() -> u64 {
    let Ok(statm) = std::fs::read_to_string("/proc/self/statm") else {
        return 0;
    };
    let resident: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    resident * 4096
}

/// Whether the bench runs for real (`cargo bench`) rather than once as a test (`cargo test --all-targets`).
pub fn bench_mode() -> bool {
    std::env::args().any(|a| a == "--bench")
}
