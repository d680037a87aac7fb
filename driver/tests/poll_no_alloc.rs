//! The allocation gate through the poll loop: two engines, each in its own `PollLoop` over the in-memory link,
//! run 100,000 full life cycles after warm-up with zero heap allocations on the thread that turns them.
//! (Own test binary, because the counting allocator is global.)

#[path = "support/counting_alloc.rs"]
mod counting_alloc;

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;
use counting_alloc::allocations_during;
use synack::engine::{Engine, EngineConfig, Event, EventKind};
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;
use synack_driver::{App, Clock, MemoryLink, MemoryLinkConfig, MemoryPort, PollConfig, PollLoop};

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// Opens connections, up to `concurrency` at a time, until `target` have completed.
struct Client {
    target: u64,
    concurrency: u64,
    started: u64,
    open: u64,
    done: u64,
}

impl App for Client {
    fn on_event(&mut self, _now: Instant, event: Event, engine: &mut Engine) {
        let mut buf = [0u8; 128];
        match event.kind {
            EventKind::Connected => {
                engine.send(event.conn, &[7u8; 64]).unwrap();
            }
            EventKind::Readable => {
                while engine.recv(event.conn, &mut buf).is_ok_and(|n| n > 0) {}
                engine.close(event.conn).unwrap();
            }
            EventKind::Closed { .. } => {
                self.open -= 1;
                self.done += 1;
            }
            _ => {}
        }
    }

    fn on_tick(&mut self, now: Instant, engine: &mut Engine) {
        while self.open < self.concurrency && self.started < self.target {
            engine
                .connect(now, SocketAddrV4::new(CLIENT, 0), SocketAddrV4::new(SERVER, 80))
                .unwrap();
            self.started += 1;
            self.open += 1;
        }
    }

    fn is_done(&self) -> bool {
        self.done >= self.target
    }
}

/// Answers each request with 64 bytes and closes on the client's FIN.
struct Server;

impl App for Server {
    fn on_event(&mut self, _now: Instant, event: Event, engine: &mut Engine) {
        let mut buf = [0u8; 128];
        match event.kind {
            EventKind::Readable => {
                while engine.recv(event.conn, &mut buf).is_ok_and(|n| n > 0) {}
                engine.send(event.conn, &[9u8; 64]).unwrap();
            }
            EventKind::PeerClosed => engine.close(event.conn).unwrap(),
            _ => {}
        }
    }
}

fn engine(mac: u8, ip: Ipv4Addr, peer: Ipv4Addr, peer_mac: u8, now: Instant) -> Engine {
    let config = EngineConfig {
        mac: MacAddr([2, 0, 0, 0, 0, mac]),
        addresses: vec![ip],
        max_connections: 256,
        max_time_wait: 65536,
        buffer_size: 4096,
        buffer_count: 1024,
        // TIME-WAIT runs on the wall clock here: 2 x 10 ms lets records expire while the run goes on, so the
        // whole ephemeral range is never held at once however fast the machine turns the loops (with 2 x 200 ms
        // and the default range, a fast run ran out of ports: `NoFreePort`).
        msl: Duration::from_millis(10),
        ephemeral_ports: (1024, 65535),
        ..EngineConfig::default()
    };
    let mut engine = Engine::new(config, now).unwrap();
    engine.add_neighbor(peer, MacAddr([2, 0, 0, 0, 0, peer_mac]));
    engine
}

/// Turns both loops until the client has completed its target.
fn run(client: &mut PollLoop<MemoryPort>, server: &mut PollLoop<MemoryPort>, app: &mut Client) {
    let deadline = std::time::Instant::now() + Duration::from_secs(300);
    let mut server_app = Server;
    while !app.is_done() {
        client.turn(app).unwrap();
        server.turn(&mut server_app).unwrap();
        assert!(
            std::time::Instant::now() < deadline,
            "stalled at {} of {}",
            app.done,
            app.target
        );
    }
}

#[test]
fn poll_loop_life_cycles_after_warm_up_allocate_nothing() {
    let (a, b) = MemoryLink::pair(MemoryLinkConfig {
        frames_per_direction: 1024,
        frame_size: 2048,
    });
    let clock = Clock::new();
    let now = clock.now();
    let mut server_engine = engine(2, SERVER, CLIENT, 1, now);
    server_engine.listen(Port(80), 256).unwrap();
    let mut client = PollLoop::new(engine(1, CLIENT, SERVER, 2, now), a, clock, PollConfig::default());
    let mut server = PollLoop::new(server_engine, b, clock, PollConfig::default());

    let mut warm_up = Client {
        target: 5_000,
        concurrency: 32,
        started: 0,
        open: 0,
        done: 0,
    };
    run(&mut client, &mut server, &mut warm_up);

    let mut app = Client {
        target: 100_000,
        concurrency: 32,
        started: 0,
        open: 0,
        done: 0,
    };
    let ((), allocations) = allocations_during(|| run(&mut client, &mut server, &mut app));

    assert_eq!(app.done, 100_000);
    assert_eq!(
        allocations, 0,
        "heap allocations during 100,000 life cycles through the poll loop"
    );
    let counters = client.engine().counters();
    assert_eq!(counters.established, 105_000);
    assert_eq!(counters.closed_normal, 105_000);
    assert_eq!(client.device_stats().tx_dropped + server.device_stats().tx_dropped, 0);
}
