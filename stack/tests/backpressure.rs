//! Transmit backpressure: sinks that refuse frames (always, every other one, at random, or because a frame is
//! too long). A refusal must stop the transmit pass without spinning, keep every refused segment's work for the
//! next call, and lose nothing: connections complete byte-exact once the sink takes frames again.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use synack::engine::{ConfigError, ConnHandle, Engine, EngineConfig, EventKind};
use synack::io::{TxRefused, TxSink};
use synack::isn::Secret;
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PORT: u16 = 80;

/// When a [`Refusing`] sink says no.
#[derive(Debug, Clone, Copy)]
enum Policy {
    Never,
    Always,
    EveryOther,
    /// Refuse with this probability, from a seeded xorshift.
    Random(f64),
    /// Refuse frames longer than this as too long.
    LongerThan(usize),
}

/// A sink that keeps the frames it takes and refuses by policy.
struct Refusing {
    policy: Policy,
    rng: u64,
    calls: u64,
    refused: u64,
    frames: Vec<Vec<u8>>,
}

impl Refusing {
    fn new(policy: Policy, seed: u64) -> Refusing {
        Refusing {
            policy,
            rng: seed | 1,
            calls: 0,
            refused: 0,
            frames: Vec::new(),
        }
    }

    fn next_unit(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl TxSink for Refusing {
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused> {
        self.calls += 1;
        let refuse = match self.policy {
            Policy::Never => None,
            Policy::Always => Some(TxRefused::Full),
            Policy::EveryOther => (self.calls % 2 == 0).then_some(TxRefused::Full),
            Policy::Random(p) => (self.next_unit() < p).then_some(TxRefused::Full),
            Policy::LongerThan(max) => (len > max).then_some(TxRefused::TooLong),
        };
        if let Some(why) = refuse {
            self.refused += 1;
            return Err(why);
        }
        let mut frame = vec![0u8; len];
        fill(&mut frame);
        self.frames.push(frame);
        Ok(())
    }
}

fn config(mac: u8, ip: Ipv4Addr) -> EngineConfig {
    EngineConfig {
        mac: MacAddr([2, 0, 0, 0, 0, mac]),
        addresses: vec![ip],
        max_connections: 64,
        max_time_wait: 64,
        buffer_size: 16 * 1024,
        buffer_count: 256,
        msl: Duration::from_secs(1),
        rto_min: Duration::from_millis(50),
        rto_initial: Duration::from_millis(200),
        ..EngineConfig::default()
    }
}

/// Two engines whose transmit sinks refuse by policy; the frames they take cross a perfect wire.
struct Pair {
    now: Instant,
    client: Engine,
    server: Engine,
    client_sink: Refusing,
    server_sink: Refusing,
}

impl Pair {
    fn new(client: Policy, server: Policy) -> Pair {
        let now = Instant::from_millis(1000);
        let mut c =
            Engine::with_secrets(config(1, CLIENT_IP), now, Secret::from_seed(1), Secret::from_seed(2)).unwrap();
        let mut s =
            Engine::with_secrets(config(2, SERVER_IP), now, Secret::from_seed(3), Secret::from_seed(4)).unwrap();
        c.add_neighbor(SERVER_IP, MacAddr([2, 0, 0, 0, 0, 2]));
        s.add_neighbor(CLIENT_IP, MacAddr([2, 0, 0, 0, 0, 1]));
        s.listen(Port(PORT), 64).unwrap();
        Pair {
            now,
            client: c,
            server: s,
            client_sink: Refusing::new(client, 11),
            server_sink: Refusing::new(server, 22),
        }
    }

    /// A client connection to the server's port, from an ephemeral port.
    fn connect(&mut self) -> ConnHandle {
        self.client
            .connect(
                self.now,
                SocketAddrV4::new(CLIENT_IP, 0),
                SocketAddrV4::new(SERVER_IP, PORT),
            )
            .expect("room for a connection")
    }

    /// One round: each engine's timers, transmit, then the other side receives what went out.
    fn step(&mut self) {
        self.client.handle_timeouts(self.now);
        self.server.handle_timeouts(self.now);
        self.client.poll_transmit(self.now, &mut self.client_sink);
        self.server.poll_transmit(self.now, &mut self.server_sink);
        // Replies written during receive go into the same sinks, so they meet the same policy.
        for frame in core::mem::take(&mut self.client_sink.frames) {
            self.server.handle_frame(self.now, &frame, &mut self.server_sink);
        }
        for frame in core::mem::take(&mut self.server_sink.frames) {
            self.client.handle_frame(self.now, &frame, &mut self.client_sink);
        }
        self.now += Duration::from_millis(1);
    }
}

/// A connection that cannot send because its sink always refuses: each `poll_transmit` returns after one refusal
/// (the pass stops; no loop, no growth), and the SYN goes out as soon as the sink takes frames.
#[test]
fn syn_sent_sink_always_full_stops_each_pass_then_sends_when_it_frees() {
    let mut p = Pair::new(Policy::Always, Policy::Never);
    for _ in 0..8 {
        p.connect();
    }
    for call in 1..=1000u64 {
        p.client.poll_transmit(p.now, &mut p.client_sink);
        assert_eq!(p.client_sink.calls, call, "one refused frame per pass, then stop");
    }
    assert_eq!(p.client.counters().tx_sink_full, 1000);
    assert_eq!(p.client.counters().tx_frames, 0);
    p.client_sink.policy = Policy::Never;
    p.client.poll_transmit(p.now, &mut p.client_sink);
    assert_eq!(p.client_sink.frames.len(), 8, "every SYN kept for the next pass");
}

/// Frames that can never fit are counted as too long and dropped: the pass goes on with other connections and
/// does not retry them in a loop.
#[test]
fn established_frame_too_long_is_counted_and_not_spun_on() {
    let mut p = Pair::new(Policy::LongerThan(200), Policy::Never);
    let conn = p.connect();
    for _ in 0..10 {
        p.step();
    }
    p.client.send(conn, &[0x5a; 4000]).unwrap();
    let calls = p.client_sink.calls;
    p.client.poll_transmit(p.now, &mut p.client_sink);
    assert_eq!(
        p.client_sink.calls - calls,
        1,
        "one too-long segment, then the connection's turn ends"
    );
    assert_eq!(p.client.counters().tx_too_long, 1);
}

/// Start-up refuses a device whose frames cannot carry a full-sized segment.
#[test]
fn config_frame_smaller_than_largest_segment_is_refused() {
    let c = config(1, CLIENT_IP);
    assert_eq!(c.check_frame_capacity(2048), Ok(()));
    assert_eq!(
        c.check_frame_capacity(1514),
        Err(ConfigError::FrameTooSmall {
            mss: 1460,
            needed: 1554,
            capacity: 1514
        })
    );
}

/// Reads everything `conn` has buffered into `got`.
fn read_into(engine: &mut Engine, conn: ConnHandle, buf: &mut [u8], got: &mut Vec<u8>) {
    while let Ok(k) = engine.recv(conn, buf) {
        if k == 0 {
            break;
        }
        got.extend_from_slice(&buf[..k]);
    }
}

/// Runs `n` request/response exchanges of `size` bytes each way through sinks with the given policies and checks
/// every byte; returns the refusals seen on each side.
fn exchange(client: Policy, server: Policy, n: usize, size: usize) -> (u64, u64) {
    let mut p = Pair::new(client, server);
    let request: Vec<u8> = (0..size).map(|i| (i * 7 + 3) as u8).collect();
    let mut conns = Vec::new();
    for _ in 0..n {
        let c = p.connect();
        conns.push((c, 0usize, Vec::new(), false));
    }
    let mut server_conns: Vec<(ConnHandle, Vec<u8>, usize)> = Vec::new();
    let mut done = 0;
    let mut buf = vec![0u8; 4096];
    for _ in 0..200_000 {
        p.step();
        while let Some(e) = p.server.poll_event() {
            if let EventKind::Accepted { .. } = e.kind {
                server_conns.push((e.conn, Vec::new(), 0));
            }
        }
        // Server: read the request, echo it back, close once all of it went.
        for (conn, got, sent) in &mut server_conns {
            read_into(&mut p.server, *conn, &mut buf, got);
            if got.len() == size && *sent < size {
                *sent += p.server.send(*conn, &got[*sent..]).unwrap_or(0);
                if *sent == size {
                    p.server.close(*conn).unwrap();
                }
            }
        }
        while let Some(e) = p.client.poll_event() {
            if let EventKind::Closed { reason } = e.kind {
                assert_eq!(reason, synack::engine::CloseReason::Normal, "a connection failed");
            }
        }
        for (conn, sent, got, closed) in &mut conns {
            if *closed {
                continue;
            }
            if *sent < size {
                *sent += p.client.send(*conn, &request[*sent..]).unwrap_or(0);
            }
            read_into(&mut p.client, *conn, &mut buf, got);
            if got.len() == size {
                assert_eq!(got, &request, "bytes changed on the way");
                p.client.close(*conn).unwrap();
                *closed = true;
                done += 1;
            }
        }
        if done == n && p.client.connection_count() == 0 && p.server.connection_count() == 0 {
            return (p.client_sink.refused, p.server_sink.refused);
        }
    }
    panic!("{done} of {n} exchanges completed");
}

/// Every other frame refused on both sides: every exchange completes byte-exact.
#[test]
fn established_sink_refusing_every_other_frame_loses_nothing() {
    let (c, s) = exchange(Policy::EveryOther, Policy::EveryOther, 16, 20_000);
    assert!(c > 100 && s > 100, "refusals {c}, {s}");
}

/// Frames refused at random (40%) on both sides: every exchange completes byte-exact.
#[test]
fn established_sink_refusing_at_random_loses_nothing() {
    let (c, s) = exchange(Policy::Random(0.4), Policy::Random(0.4), 16, 20_000);
    assert!(c > 100 && s > 100, "refusals {c}, {s}");
}
