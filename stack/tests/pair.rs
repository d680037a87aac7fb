//! Two engines joined by a perfect in-memory wire: the textbook life cycles end to end.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use synack::engine::{CloseReason, Engine, EngineConfig, Event, EventKind, State};
use synack::isn::Secret;
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;

const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER_IP: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn config(mac: u8, ip: Ipv4Addr) -> EngineConfig {
    EngineConfig {
        mac: MacAddr([2, 0, 0, 0, 0, mac]),
        addresses: vec![ip],
        max_connections: 64,
        max_time_wait: 64,
        buffer_size: 16 * 1024,
        buffer_count: 256,
        ..EngineConfig::default()
    }
}

struct Pair {
    now: Instant,
    client: Engine,
    server: Engine,
    client_events: Vec<Event>,
    server_events: Vec<Event>,
    frames: usize,
}

impl Pair {
    fn new(msl: Duration) -> Pair {
        let now = Instant::from_millis(1000);
        let mut c = config(1, CLIENT_IP);
        c.msl = msl;
        let mut s = config(2, SERVER_IP);
        s.msl = msl;
        let client = Engine::with_secrets(c, now, Secret::from_seed(1), Secret::from_seed(2)).unwrap();
        let server = Engine::with_secrets(s, now, Secret::from_seed(3), Secret::from_seed(4)).unwrap();
        Pair {
            now,
            client,
            server,
            client_events: Vec::new(),
            server_events: Vec::new(),
            frames: 0,
        }
    }

    /// Moves frames both ways until the wire is quiet, then advances time by `step`.
    fn run(&mut self, step: Duration) {
        for _ in 0..100 {
            let mut to_server: Vec<Vec<u8>> = Vec::new();
            let mut to_client: Vec<Vec<u8>> = Vec::new();
            self.client.handle_timeouts(self.now);
            self.server.handle_timeouts(self.now);
            self.client.poll_transmit(self.now, &mut to_server);
            self.server.poll_transmit(self.now, &mut to_client);
            if to_server.is_empty() && to_client.is_empty() {
                break;
            }
            self.frames += to_server.len() + to_client.len();
            let mut replies: Vec<Vec<u8>> = Vec::new();
            for f in &to_server {
                self.server.handle_frame(self.now, f, &mut replies);
            }
            let mut replies_c: Vec<Vec<u8>> = Vec::new();
            for f in &to_client {
                self.client.handle_frame(self.now, f, &mut replies_c);
            }
            for f in &replies {
                self.client.handle_frame(self.now, f, &mut Vec::<Vec<u8>>::new());
            }
            for f in &replies_c {
                self.server.handle_frame(self.now, f, &mut Vec::<Vec<u8>>::new());
            }
            self.frames += replies.len() + replies_c.len();
            while let Some(e) = self.client.poll_event() {
                self.client_events.push(e);
            }
            while let Some(e) = self.server.poll_event() {
                self.server_events.push(e);
            }
            if !self.client_events.is_empty() || !self.server_events.is_empty() {
                break;
            }
        }
        self.now += step;
    }
}

#[test]
fn pair_full_life_cycle_client_closes_first() {
    let mut p = Pair::new(Duration::from_secs(30));
    p.server.listen(Port(80), 16).unwrap();
    let c = p
        .client
        .connect(p.now, SocketAddrV4::new(CLIENT_IP, 0), SocketAddrV4::new(SERVER_IP, 80))
        .unwrap();
    let mut server_conn = None;
    let mut got_response = false;
    let mut request = Vec::new();
    for _ in 0..200 {
        p.run(Duration::from_millis(1));
        for e in core::mem::take(&mut p.client_events) {
            match e.kind {
                EventKind::Connected => {
                    assert_eq!(p.client.send(c, b"GET / HTTP/1.0\r\n\r\n").unwrap(), 18);
                }
                EventKind::Readable => {
                    let mut buf = [0u8; 100];
                    let n = p.client.recv(c, &mut buf).unwrap();
                    assert_eq!(&buf[..n], b"hello");
                    got_response = true;
                    p.client.close(c).unwrap();
                }
                EventKind::Closed { reason } => assert_eq!(reason, CloseReason::Normal),
                _ => {}
            }
        }
        for e in core::mem::take(&mut p.server_events) {
            match e.kind {
                EventKind::Accepted { .. } => server_conn = Some(e.conn),
                EventKind::Readable => {
                    let mut buf = [0u8; 100];
                    let n = p.server.recv(e.conn, &mut buf).unwrap();
                    request.extend_from_slice(&buf[..n]);
                    p.server.send(e.conn, b"hello").unwrap();
                }
                EventKind::PeerClosed => p.server.close(e.conn).unwrap(),
                EventKind::Closed { reason } => assert_eq!(reason, CloseReason::Normal),
                _ => {}
            }
        }
    }
    assert!(server_conn.is_some());
    assert!(got_response);
    assert_eq!(request, b"GET / HTTP/1.0\r\n\r\n");
    assert_eq!(p.client.state(c), Err(synack::engine::Error::InvalidHandle));
    assert_eq!(p.client.connection_count(), 0);
    assert_eq!(p.server.connection_count(), 0);
    assert_eq!(p.client.time_wait_count(), 1);
    assert_eq!(p.server.time_wait_count(), 0);
    let _ = State::Closed;
    eprintln!("frames: {} client {:?}", p.frames, p.client.counters());
}
