//! Connection life cycles per second on one core: synack against smoltcp 0.14 on the same workload.
//!
//! One life cycle: 3-way handshake, a 64-byte request, a 64-byte response, the client closes first, the server
//! closes on the client's FIN (4-way close), the client's side ends in TIME-WAIT. Client and server run on the
//! same thread, joined by an in-memory wire, so the time per life cycle covers both ends (7 frames built,
//! checksummed, parsed and verified).
//!
//! smoltcp is built with only what this workload uses (Ethernet, IPv4, TCP sockets): its default features add
//! per-packet work this workload does not need (the raw-socket filter scans every socket for every packet), which
//! would flatter synack. `--features smoltcp-default-features` builds it with its defaults instead (what sessions
//! 1-6 of BENCHMARKS.md compared against); the summary says which was measured.
//!
//! Variants: one connection at a time (`c1`), 64 in flight at once (`c64`, what a load generator does), and 1,024
//! in flight (`c1024`; the summary pass adds `c256` and `c2048`). smoltcp finds a packet's socket by scanning its
//! socket set, so its cost grows with concurrency; synack's flow table does not.
//! criterion reports time and elements/s per life cycle (`Throughput::Elements(1)`); a final summary times both
//! stacks again, seven alternating passes each, and prints the best and the median pass of each and the
//! synack/smoltcp ratios of both (a median that one pass preempted by the host does not move).
//!
//! `cargo bench -p synack-bench --bench lifecycle -- --warm-up-time 1 --measurement-time 3`

mod common;

use std::hint::black_box;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use core::time::Duration;
use criterion::{Criterion, Throughput};

use common::{Pair, PairConfig};

/// The concurrencies of the criterion bench: one connection at a time, what a load generator keeps in flight, and
/// the many open sockets smoltcp's per-packet socket scan is slow with.
const CRITERION_CONCURRENCY: [usize; 3] = [1, 64, 1024];
/// The concurrencies of the summary pass: c2048 is past the point (~c1650, in instructions) where smoltcp's
/// per-socket work makes it 10x slower than synack.
const SUMMARY_CONCURRENCY: [usize; 5] = [1, 64, 256, 1024, 2048];

/// The synack pair for the life-cycle benches at `concurrency` life cycles in flight. TIME-WAIT is real: up to
/// c64 the MSL is 100 ms of simulated time, so a record lives 2,000 poll rounds and then expires. Above c64 more
/// life cycles end per round, and the client's one address would run out of ports (64,512 of them) within 2*MSL,
/// so the MSL shrinks by 64/c: the TIME-WAIT table holds about the same ~43,000 records from c64 up, and the
/// cost measured is the engine's and not that of a growing table (which the `scaling` bench measures).
fn synack_pair(concurrency: usize) -> Pair {
    let over = concurrency.max(64) as u64;
    Pair::new(PairConfig {
        max_connections: (2 * concurrency).max(1024),
        max_time_wait: 65536,
        msl: Duration::from_micros(100_000 * 64 / over),
        wire_frames: (2 * concurrency).max(1024),
        time_wait_reuse_delay: Duration::from_secs(1),
    })
}

mod smol {
    //! The same workload on smoltcp: two `Interface`s joined by an in-memory `phy::Device`, server sockets
    //! listening on port 80 and re-listened after each connection, client sockets connecting from a new port
    //! each time. Driven like synack's poll loop: each side takes in every frame, the application reacts, then
    //! the side sends (so an ACK and a response leave together, as in synack).

    use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
    use smoltcp::phy::{Device, DeviceCapabilities, Medium, RxToken, TxToken};
    use smoltcp::socket::tcp;
    use smoltcp::time::Instant;
    use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr};

    use super::common::{CLIENT, FRAME, PAYLOAD, PORT, SERVER};

    /// One direction of the wire: a preallocated FIFO of frames, drained completely by each poll.
    pub struct Queue {
        frames: Vec<[u8; FRAME]>,
        lens: Vec<usize>,
        head: usize,
        count: usize,
        /// Frames ever sent into this queue.
        pub total: u64,
    }

    impl Queue {
        fn new(capacity: usize) -> Queue {
            Queue {
                frames: vec![[0u8; FRAME]; capacity],
                lens: vec![0; capacity],
                head: 0,
                count: 0,
                total: 0,
            }
        }
        fn pop(&mut self) -> Option<&[u8]> {
            if self.head == self.count {
                self.head = 0;
                self.count = 0;
                return None;
            }
            let i = self.head;
            self.head += 1;
            Some(&self.frames[i][..self.lens[i]])
        }
    }

    /// One interface's view of the wire: it receives from one queue and sends into the other.
    pub struct End<'q> {
        rx: &'q mut Queue,
        tx: &'q mut Queue,
    }

    pub struct Rx<'a>(&'a [u8]);
    pub struct Tx<'a>(&'a mut Queue);

    impl RxToken for Rx<'_> {
        fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
            f(self.0)
        }
    }

    impl TxToken for Tx<'_> {
        fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
            let q = self.0;
            assert!(q.count < q.frames.len() && len <= FRAME, "wire full");
            let i = q.count;
            q.count += 1;
            q.total += 1;
            q.lens[i] = len;
            f(&mut q.frames[i][..len])
        }
    }

    impl Device for End<'_> {
        type RxToken<'a>
            = Rx<'a>
        where
            Self: 'a;
        type TxToken<'a>
            = Tx<'a>
        where
            Self: 'a;

        fn receive(&mut self, _: Instant) -> Option<(Rx<'_>, Tx<'_>)> {
            let frame = self.rx.pop()?;
            Some((Rx(frame), Tx(self.tx)))
        }

        fn transmit(&mut self, _: Instant) -> Option<Tx<'_>> {
            Some(Tx(self.tx))
        }

        fn capabilities(&self) -> DeviceCapabilities {
            let mut caps = DeviceCapabilities::default();
            caps.medium = Medium::Ethernet;
            caps.max_transmission_unit = 1514;
            caps
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Phase {
        Free,
        Connecting,
        Requested,
        Closing,
        /// Done: its final ACK leaves with this round's egress; free from the next round on.
        Draining,
    }

    pub struct SmolPair {
        client: Interface,
        server: Interface,
        csockets: SocketSet<'static>,
        ssockets: SocketSet<'static>,
        clients: Vec<(SocketHandle, Phase)>,
        servers: Vec<SocketHandle>,
        a: Queue,
        b: Queue,
        now_us: i64,
        next_port: u16,
    }

    fn socket() -> tcp::Socket<'static> {
        let mut s = tcp::Socket::new(
            tcp::SocketBuffer::new(vec![0; 4096]),
            tcp::SocketBuffer::new(vec![0; 4096]),
        );
        // The poll loop already merges the ACK with the response; a delayed ACK would only hold the final ACK
        // of each close back by 10 ms.
        s.set_ack_delay(None);
        s
    }

    fn iface(mac: u8, addr: core::net::Ipv4Addr, end: &mut End<'_>, seed: u64) -> Interface {
        let mut config = Config::new(HardwareAddress::Ethernet(EthernetAddress([2, 0, 0, 0, 0, mac])));
        config.random_seed = seed;
        let mut iface = Interface::new(config, end, Instant::from_micros(1000));
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::new(IpAddress::Ipv4(addr), 24)).expect("address");
        });
        iface
    }

    impl SmolPair {
        /// Frames sent so far, both directions.
        pub fn frames(&self) -> u64 {
            self.a.total + self.b.total
        }

        /// A pair for `concurrency` life cycles in flight.
        pub fn new(concurrency: usize) -> SmolPair {
            let mut a = Queue::new((2 * concurrency).max(1024));
            let mut b = Queue::new((2 * concurrency).max(1024));
            let client = iface(1, CLIENT, &mut End { rx: &mut b, tx: &mut a }, 1);
            let server = iface(2, SERVER, &mut End { rx: &mut a, tx: &mut b }, 2);
            let mut csockets = SocketSet::new(Vec::new());
            let mut ssockets = SocketSet::new(Vec::new());
            let clients = (0..concurrency)
                .map(|_| (csockets.add(socket()), Phase::Free))
                .collect();
            // A server socket stays busy until the client's final ACK, one round after the client is done:
            // twice as many listeners as connections in flight, so a SYN always finds one.
            let servers = (0..concurrency * 2 + 2)
                .map(|_| {
                    let mut s = socket();
                    s.listen(PORT).expect("listen");
                    ssockets.add(s)
                })
                .collect();
            SmolPair {
                client,
                server,
                csockets,
                ssockets,
                clients,
                servers,
                a,
                b,
                now_us: 1000,
                next_port: 1024,
            }
        }

        /// Runs `n` life cycles, as many at once as the pair has client sockets.
        pub fn life_cycles(&mut self, n: u64) {
            let request = [7u8; PAYLOAD];
            let response = [9u8; PAYLOAD];
            let mut buf = [0u8; 256];
            let mut started = 0u64;
            let mut done = 0u64;
            let mut rounds = 0u64;
            while done < n {
                rounds += 1;
                assert!(rounds < n * 50 + 1000, "smoltcp stalled at {done}/{n}");
                let now = Instant::from_micros(self.now_us);

                // Client: frames in, application, frames out.
                let mut dev = End {
                    rx: &mut self.b,
                    tx: &mut self.a,
                };
                self.client.poll_maintenance(now);
                while self.client.poll_ingress_single(now, &mut dev, &mut self.csockets)
                    != smoltcp::iface::PollIngressSingleResult::None
                {}
                for (handle, phase) in self.clients.iter_mut() {
                    let s = self.csockets.get_mut::<tcp::Socket>(*handle);
                    match *phase {
                        Phase::Draining => *phase = Phase::Free,
                        Phase::Connecting if s.state() == tcp::State::Established => {
                            s.send_slice(&request).expect("client send");
                            *phase = Phase::Requested;
                        }
                        Phase::Requested if s.can_recv() => {
                            while s.recv_slice(&mut buf).is_ok_and(|n| n > 0) {}
                            s.close();
                            *phase = Phase::Closing;
                        }
                        Phase::Closing if matches!(s.state(), tcp::State::TimeWait | tcp::State::Closed) => {
                            assert_eq!(s.state(), tcp::State::TimeWait, "smoltcp connection reset");
                            done += 1;
                            *phase = Phase::Draining;
                        }
                        _ => {}
                    }
                    if *phase == Phase::Free && started < n {
                        let port = self.next_port;
                        self.next_port = if port == u16::MAX { 1024 } else { port + 1 };
                        // A socket in TIME-WAIT may connect again: smoltcp drops its TIME-WAIT then.
                        s.connect(self.client.context(), (IpAddress::Ipv4(SERVER), PORT), port)
                            .expect("connect");
                        started += 1;
                        *phase = Phase::Connecting;
                    }
                }
                while self.client.poll_egress(now, &mut dev, &mut self.csockets) != smoltcp::iface::PollResult::None {}

                // Server: frames in, application, frames out.
                let mut dev = End {
                    rx: &mut self.a,
                    tx: &mut self.b,
                };
                self.server.poll_maintenance(now);
                while self.server.poll_ingress_single(now, &mut dev, &mut self.ssockets)
                    != smoltcp::iface::PollIngressSingleResult::None
                {}
                for handle in &self.servers {
                    let s = self.ssockets.get_mut::<tcp::Socket>(*handle);
                    if s.can_recv() {
                        while s.recv_slice(&mut buf).is_ok_and(|n| n > 0) {}
                        s.send_slice(&response).expect("server send");
                    }
                    match s.state() {
                        tcp::State::CloseWait => s.close(),
                        tcp::State::Closed => s.listen(PORT).expect("listen"),
                        _ => {}
                    }
                }
                while self.server.poll_egress(now, &mut dev, &mut self.ssockets) != smoltcp::iface::PollResult::None {}

                self.now_us += super::common::ROUND.as_micros() as i64;
            }
        }
    }
}

fn benches(c: &mut Criterion) {
    let mut group = c.benchmark_group("lifecycle");
    group.throughput(Throughput::Elements(1));
    for concurrency in CRITERION_CONCURRENCY {
        let mut pair = synack_pair(concurrency);
        group.bench_function(format!("synack/c{concurrency}"), |b| {
            b.iter_custom(|iters| {
                let start = StdInstant::now();
                pair.life_cycles(iters, concurrency);
                start.elapsed()
            })
        });
        pair.check_clean();
        let mut smol = smol::SmolPair::new(concurrency);
        group.bench_function(format!("smoltcp/c{concurrency}"), |b| {
            b.iter_custom(|iters| {
                let start = StdInstant::now();
                smol.life_cycles(iters);
                start.elapsed()
            })
        });
    }
    group.finish();
}

/// How the smoltcp being compared against was built (see the module documentation).
const SMOLTCP_FEATURES: &str = if cfg!(feature = "smoltcp-default-features") {
    "its default features"
} else {
    "only the features this workload uses (std, medium-ethernet, proto-ipv4, socket-tcp)"
};

/// Passes of each stack in the summary: enough for a median that one preempted pass does not move.
const PASSES: usize = 7;

/// The best and the median of a summary's passes, in ns per life cycle.
#[derive(Clone, Copy)]
struct Passes {
    best: f64,
    median: f64,
}

impl Passes {
    fn of(mut times: [f64; PASSES]) -> Passes {
        times.sort_by(f64::total_cmp);
        Passes {
            best: times[0],
            median: times[PASSES / 2],
        }
    }
}

/// Times `n` life cycles of each stack, back to back, `PASSES` times (alternating, so both meet the same
/// moments of the host's noise); returns each stack's best and median ns per life cycle.
fn ratio_pass(concurrency: usize, n: u64) -> (Passes, Passes) {
    let mut pair = synack_pair(concurrency);
    let mut smol = smol::SmolPair::new(concurrency);
    // Warm up: tables, TIME-WAIT at its steady size, caches.
    pair.life_cycles(n / 4 + 1, concurrency);
    smol.life_cycles(n / 4 + 1);
    let frames = (
        pair.client.counters().tx_frames + pair.server.counters().tx_frames,
        smol.frames(),
    );
    let warm = (n / 4 + 1) as f64;
    println!(
        "  (frames per life cycle: synack {:.2}, smoltcp {:.2})",
        frames.0 as f64 / warm,
        frames.1 as f64 / warm
    );
    let per = |d: StdDuration| d.as_nanos() as f64 / n as f64;
    let (mut synack, mut smoltcp) = ([0.0; PASSES], [0.0; PASSES]);
    for pass in 0..PASSES {
        let start = StdInstant::now();
        pair.life_cycles(black_box(n), concurrency);
        synack[pass] = per(start.elapsed());
        let start = StdInstant::now();
        smol.life_cycles(black_box(n));
        smoltcp[pass] = per(start.elapsed());
    }
    pair.check_clean();
    let c = pair.client.counters();
    println!(
        "  (synack c{concurrency}: {} established, {} TIME-WAIT entered, {} expired, {} reused, {} held at the end)",
        c.established,
        c.time_wait_entered,
        c.time_wait_expired,
        c.time_wait_reused,
        pair.client.time_wait_count()
    );
    (Passes::of(synack), Passes::of(smoltcp))
}

/// `LIFECYCLE_PROFILE=synack|smoltcp` (with `LIFECYCLE_N`, default 1,000,000, and `LIFECYCLE_C`, default 64) runs
/// just that many life cycles of one stack and exits: a fixed amount of work for `perf record` or callgrind.
fn profile_run(stack: &str) {
    let n: u64 = std::env::var("LIFECYCLE_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let c: usize = std::env::var("LIFECYCLE_C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(64);
    let start = StdInstant::now();
    match stack {
        "synack" => {
            let mut pair = synack_pair(c);
            pair.life_cycles(n, c);
            pair.check_clean();
        }
        "smoltcp" => smol::SmolPair::new(c).life_cycles(n),
        other => panic!("LIFECYCLE_PROFILE={other}: expected synack or smoltcp"),
    }
    let elapsed = start.elapsed();
    println!(
        "{stack} c{c}: {n} life cycles in {elapsed:?}, {:.0} ns/conn",
        elapsed.as_nanos() as f64 / n as f64
    );
}

fn main() {
    if let Ok(stack) = std::env::var("LIFECYCLE_PROFILE") {
        profile_run(&stack);
        return;
    }
    let mut criterion = Criterion::default().configure_from_args();
    benches(&mut criterion);
    criterion.final_summary();

    let base = if common::bench_mode() { 300_000 } else { 2_000 };
    println!(
        "\nlifecycle summary ({base} life cycles per pass up to c64, fewer above so a pass of smoltcp stays near a \
         second; {PASSES} passes of each stack, alternating, in the same run; best and median pass; smoltcp with \
         {SMOLTCP_FEATURES}):"
    );
    for concurrency in SUMMARY_CONCURRENCY {
        // smoltcp's cost per life cycle grows with its socket count: keep each pass about as long as at c64.
        let n = (base * 64 / concurrency.max(64) as u64).max(2_000.min(base));
        let (synack, smoltcp) = ratio_pass(concurrency, n);
        println!(
            "lifecycle c{concurrency} ({n} per pass): synack best {:.0} ns/conn ({:.0} conn/s), median {:.0} ns \
             ({:.0} conn/s); smoltcp best {:.0} ns/conn ({:.0} conn/s), median {:.0} ns; ratio synack/smoltcp \
             {:.2}x best, {:.2}x median",
            synack.best,
            1e9 / synack.best,
            synack.median,
            1e9 / synack.median,
            smoltcp.best,
            1e9 / smoltcp.best,
            smoltcp.median,
            smoltcp.best / synack.best,
            smoltcp.median / synack.median
        );
    }
}
