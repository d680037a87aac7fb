//! The allocation gate: once warmed up, full connection life cycles through the engine allocate nothing on the
//! heap (a counting global allocator proves it over 100,000 of them).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use synack::engine::{Engine, EngineConfig, EventKind};
use synack::io::{TxRefused, TxSink};
use synack::isn::Secret;
use synack::time::Instant;
use synack::wire::Port;
use synack::wire::ethernet::MacAddr;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// A preallocated queue of frames: the wire between the two engines, allocation-free.
struct Wire {
    frames: Vec<[u8; 1600]>,
    lens: Vec<usize>,
    count: usize,
}

impl Wire {
    fn new(capacity: usize) -> Wire {
        Wire {
            frames: vec![[0u8; 1600]; capacity],
            lens: vec![0; capacity],
            count: 0,
        }
    }
}

impl TxSink for Wire {
    fn transmit<F: FnOnce(&mut [u8])>(&mut self, len: usize, fill: F) -> Result<(), TxRefused> {
        if len > 1600 {
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

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn config(mac: u8, ip: Ipv4Addr) -> EngineConfig {
    EngineConfig {
        mac: MacAddr([2, 0, 0, 0, 0, mac]),
        addresses: vec![ip],
        max_connections: 256,
        max_time_wait: 8192,
        buffer_size: 4096,
        buffer_count: 1024,
        msl: Duration::from_millis(500),
        ..EngineConfig::default()
    }
}

/// Runs `n` full life cycles (handshake, 64-byte request, 64-byte response, client closes first), `batch` at a
/// time; returns how many completed.
struct Pair {
    client: Engine,
    server: Engine,
    now: Instant,
    /// Client to server, and back.
    a: Wire,
    b: Wire,
}

fn life_cycles(pair: &mut Pair, n: usize, batch: usize) -> usize {
    let Pair {
        client,
        server,
        now,
        a,
        b,
    } = pair;
    let request = [7u8; 64];
    let response = [9u8; 64];
    let mut buf = [0u8; 256];
    let mut done = 0;
    let mut started = 0;
    let mut open = 0;
    let mut rounds = 0;
    while done < n {
        rounds += 1;
        assert!(rounds < n * 50, "stalled at {done}/{n}");
        while open < batch && started < n {
            client
                .connect(*now, SocketAddrV4::new(CLIENT, 0), SocketAddrV4::new(SERVER, 80))
                .unwrap();
            started += 1;
            open += 1;
        }
        client.handle_timeouts(*now);
        client.poll_transmit(*now, a);
        for i in 0..a.count {
            server.handle_frame(*now, &a.frames[i][..a.lens[i]], b);
        }
        a.count = 0;
        while let Some(e) = server.poll_event() {
            match e.kind {
                EventKind::Readable => {
                    while server.recv(e.conn, &mut buf).is_ok_and(|n| n > 0) {}
                    server.send(e.conn, &response).unwrap();
                }
                EventKind::PeerClosed => server.close(e.conn).unwrap(),
                _ => {}
            }
        }
        server.handle_timeouts(*now);
        server.poll_transmit(*now, b);
        for i in 0..b.count {
            client.handle_frame(*now, &b.frames[i][..b.lens[i]], a);
        }
        b.count = 0;
        while let Some(e) = client.poll_event() {
            match e.kind {
                EventKind::Connected => {
                    client.send(e.conn, &request).unwrap();
                }
                EventKind::Readable => {
                    while client.recv(e.conn, &mut buf).is_ok_and(|n| n > 0) {}
                    client.close(e.conn).unwrap();
                }
                EventKind::Closed { .. } => {
                    done += 1;
                    open -= 1;
                }
                _ => {}
            }
        }
        *now += Duration::from_micros(100);
    }
    done
}

#[test]
fn engine_life_cycles_after_warm_up_allocate_nothing() {
    let now = Instant::from_millis(1);
    let mut client = Engine::with_secrets(config(1, CLIENT), now, Secret::from_seed(1), Secret::from_seed(2)).unwrap();
    let mut server = Engine::with_secrets(config(2, SERVER), now, Secret::from_seed(3), Secret::from_seed(4)).unwrap();
    client.add_neighbor(SERVER, MacAddr([2, 0, 0, 0, 0, 2]));
    server.add_neighbor(CLIENT, MacAddr([2, 0, 0, 0, 0, 1]));
    server.listen(Port(80), 256).unwrap();
    let mut pair = Pair {
        client,
        server,
        now,
        a: Wire::new(1024),
        b: Wire::new(1024),
    };

    assert_eq!(life_cycles(&mut pair, 5_000, 32), 5_000);

    ALLOCATIONS.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    let done = life_cycles(&mut pair, 100_000, 32);
    COUNTING.store(false, Ordering::SeqCst);
    let allocations = ALLOCATIONS.load(Ordering::SeqCst);

    assert_eq!(done, 100_000);
    assert_eq!(allocations, 0, "heap allocations during 100,000 life cycles");
    let c = pair.client.counters();
    assert_eq!(c.established, 105_000);
    assert_eq!(c.closed_normal, 105_000);
    assert_eq!(c.retransmits, 0);
    assert!(
        c.time_wait_entered == 105_000 && pair.client.time_wait_count() > 0,
        "TIME-WAIT was really used"
    );
}
