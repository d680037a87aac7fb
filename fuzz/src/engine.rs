//! Target `engine`: a whole engine driven by a script the fuzzer writes.
//!
//! The wire targets stop at parsing. This one feeds an engine (a listener on port 80 and one connection of its own,
//! configured by the input's first byte: see `config`) a sequence of steps decoded from the rest: TCP segments from
//! the peer, built with correct checksums so that the fuzzer spends its effort on the state machine rather than on
//! checksums; raw frames; time passing; and the application's calls. Sequence and acknowledgment numbers are offsets
//! from what the engine last sent to that peer port, so most of them land in or near the window, where the
//! interesting decisions are; the peer's timestamps may echo the engine's last TSval (RTT samples, PAWS).
//!
//! It panics when the engine breaks a promise: a panic or failed debug assertion inside it (cargo fuzz builds
//! with debug assertions), a table past its limit, or, once every handle is aborted and every timer has run out,
//! a connection, TIME-WAIT record, timer or buffer left behind.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use synack::engine::{ConnHandle, Counters, Engine, EngineConfig, KeepaliveConfig};
use synack::isn::Secret;
use synack::time::Instant;
use synack::wire::ethernet::{EtherType, EthernetRepr, Frame, MacAddr};
use synack::wire::ipv4::{self, Ipv4Repr};
use synack::wire::tcp::{self, SackBlocks, TcpFlags, TcpRepr, TcpTimestamps};
use synack::wire::{ChecksumPolicy, IpProtocol, Port, SeqNum};

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const US_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
/// The port the engine listens on.
const LISTEN_PORT: u16 = 80;
/// The peer's ports: the first is the one the engine's own connection goes to.
const PEER_PORTS: [u16; 3] = [5000, 5001, 5002];
/// Small limits, so that the fuzzer reaches them.
const MAX_CONNECTIONS: usize = 4;
const MAX_TIME_WAIT: usize = 4;
const BUFFERS: usize = 8;
/// Steps per input: enough for several connections' lives, few enough for thousands of runs a second.
const MAX_STEPS: usize = 256;

/// Reads the script: one byte at a time, zeros once the input runs out.
struct Script<'a> {
    bytes: &'a [u8],
}

impl Script<'_> {
    fn done(&self) -> bool {
        self.bytes.is_empty()
    }

    fn u8(&mut self) -> u8 {
        match self.bytes.split_first() {
            Some((&b, rest)) => {
                self.bytes = rest;
                b
            }
            None => 0,
        }
    }

    fn u16(&mut self) -> u16 {
        u16::from_be_bytes([self.u8(), self.u8()])
    }

    fn i16(&mut self) -> i16 {
        self.u16() as i16
    }

    fn take(&mut self, n: usize) -> &[u8] {
        let (head, rest) = self.bytes.split_at(n.min(self.bytes.len()));
        self.bytes = rest;
        head
    }
}

/// What the peer knows of one of its connections: where the engine's data ends and what it acknowledged last.
#[derive(Clone, Copy, Default)]
struct PeerView {
    /// Just past the last sequence number the engine sent (SYN and FIN count one).
    their_end: u32,
    /// The engine's last acknowledgment number (our next byte, from the peer's side).
    our_next: u32,
    /// The engine's last TSval, for the peer to echo.
    their_tsval: u32,
}

/// The engine under test and what the script has learnt of it.
struct Harness {
    engine: Engine,
    now: Instant,
    /// The peer's view of its connection from each of its ports.
    views: [PeerView; PEER_PORTS.len()],
    /// The local port of the engine's own connection (to the first peer port), once it has sent from it.
    own_port: Option<u16>,
    handles: Vec<ConnHandle>,
    out: Vec<Vec<u8>>,
}

/// The engine's configuration: small limits, and each option the script's first byte turns away from its default
/// (bit 0: no timestamps, 1: no SACK, 2: no window scaling, 3: no delayed ACK, 4: no Nagle, 5: keep-alive after
/// 5 s, 6: no TIME-WAIT reuse, 7: four ephemeral ports, so that `connect` runs out of them).
fn config(options: u8) -> EngineConfig {
    let bit = |n: u8| options & (1 << n) != 0;
    let defaults = EngineConfig::default();
    EngineConfig {
        mac: US_MAC,
        addresses: vec![US],
        max_connections: MAX_CONNECTIONS,
        max_time_wait: MAX_TIME_WAIT,
        buffer_size: 4096,
        buffer_count: BUFFERS,
        msl: Duration::from_secs(2),
        syn_retries: 2,
        data_retries: 3,
        timestamps: !bit(0),
        sack: !bit(1),
        window_scaling: !bit(2),
        delayed_ack: if bit(3) { None } else { defaults.delayed_ack },
        nagle: !bit(4),
        keepalive: bit(5).then_some(KeepaliveConfig {
            idle: Duration::from_secs(5),
            interval: Duration::from_secs(1),
            probes: 2,
        }),
        time_wait_reuse: !bit(6),
        ephemeral_ports: if bit(7) {
            (49152, 49155)
        } else {
            defaults.ephemeral_ports
        },
        ..defaults
    }
}

impl Harness {
    fn new(options: u8) -> Option<Harness> {
        let config = config(options);
        let now = Instant::from_millis(5000);
        let mut engine = Engine::with_secrets(config, now, Secret::from_seed(1), Secret::from_seed(2)).ok()?;
        engine.add_neighbor(PEER, PEER_MAC);
        engine.listen(Port(LISTEN_PORT), 4).ok()?;
        let mut harness = Harness {
            engine,
            now,
            views: [PeerView::default(); PEER_PORTS.len()],
            own_port: None,
            handles: Vec::new(),
            out: Vec::new(),
        };
        let remote = SocketAddrV4::new(PEER, PEER_PORTS[0]);
        if let Ok(h) = harness.engine.connect(now, SocketAddrV4::new(US, 0), remote) {
            harness.handles.push(h);
        }
        harness.settle();
        Some(harness)
    }

    /// Runs one step of the script.
    fn step(&mut self, script: &mut Script<'_>) {
        match script.u8() % 8 {
            0..=3 => self.peer_segment(script),
            4 => {
                let len = usize::from(script.u8());
                let body = script.take(len).to_vec();
                let ethertype = if script.u8() & 1 == 0 {
                    EtherType::Ipv4
                } else {
                    EtherType::Arp
                };
                let frame = ethernet_frame(ethertype, &body);
                self.engine.handle_frame(self.now, &frame, &mut self.out);
            }
            5 => {
                // Up to ~65 s, in steps that often cross the delayed-ACK, RTO and 2*MSL deadlines.
                let ms = u64::from(script.u16());
                self.now += Duration::from_millis(ms);
            }
            _ => self.app_call(script),
        }
        self.settle();
        assert!(
            self.engine.connection_count() <= MAX_CONNECTIONS,
            "{:?}",
            self.engine.counters()
        );
        assert!(
            self.engine.time_wait_count() <= MAX_TIME_WAIT,
            "{:?}",
            self.engine.counters()
        );
        assert!(self.engine.free_buffers() <= BUFFERS);
    }

    /// A segment from the peer, with correct checksums, to the listener or to the engine's own connection.
    fn peer_segment(&mut self, script: &mut Script<'_>) {
        let which = usize::from(script.u8()) % PEER_PORTS.len();
        let local_port = match which {
            0 => self.own_port.unwrap_or(LISTEN_PORT),
            _ => LISTEN_PORT,
        };
        let flags = TcpFlags(script.u8());
        let seq_off = i32::from(script.i16());
        let ack_off = i32::from(script.i16());
        let len = usize::from(script.u8());
        let window = script.u16();
        let shape = script.u8();
        let view = self.views[which];
        let mut sack_blocks = SackBlocks::new();
        if shape & 0b100 != 0 {
            let left = view.their_end.wrapping_add(u32::from(shape >> 4) * 100);
            sack_blocks.push(SeqNum(left), SeqNum(left.wrapping_add(100)));
        }
        let syn_options = shape & 0b10 != 0;
        let payload = vec![0x5a; len];
        let repr = TcpRepr {
            src_port: Port(PEER_PORTS[which]),
            dst_port: Port(local_port),
            seq: SeqNum(view.our_next.wrapping_add(seq_off as u32)),
            ack: SeqNum(view.their_end.wrapping_add(ack_off as u32)),
            flags,
            window,
            timestamps: (shape & 1 != 0).then_some(TcpTimestamps {
                tsval: self.now.as_millis() as u32,
                tsecr: if shape & 0b1000 != 0 { view.their_tsval } else { 0 },
            }),
            mss: syn_options.then_some(536 + u16::from(shape)),
            window_scale: syn_options.then_some(shape % 16),
            sack_permitted: syn_options,
            sack_blocks,
            payload: &payload,
            ..TcpRepr::default()
        };
        let mut segment = vec![0u8; repr.buffer_len()];
        repr.emit(&mut tcp::Packet::new_unchecked(&mut segment[..]), PEER, US);
        let frame = ethernet_frame(EtherType::Ipv4, &ipv4_packet(&segment));
        self.engine.handle_frame(self.now, &frame, &mut self.out);
    }

    /// One of the application's calls on one of the handles it has been given.
    fn app_call(&mut self, script: &mut Script<'_>) {
        let op = script.u8();
        let pick = usize::from(script.u8());
        if op % 8 == 7 {
            let remote = SocketAddrV4::new(PEER, PEER_PORTS[pick % PEER_PORTS.len()]);
            if let Ok(h) = self.engine.connect(self.now, SocketAddrV4::new(US, 0), remote) {
                self.handles.push(h);
            }
            return;
        }
        let Some(&h) = self.handles.get(pick % self.handles.len().max(1)) else {
            return;
        };
        // Sizes from the op byte: 0-255 bytes to send, 0-510 bytes of room to read into.
        let mut buf = [0u8; 512];
        let size = usize::from(op);
        let _ = match op % 8 {
            0 | 1 => self.engine.send(h, &[0xa5; 256][..size]).map(drop),
            2 | 3 => self.engine.recv(h, &mut buf[..size * 2]).map(drop),
            4 => self.engine.shutdown(h),
            5 => self.engine.close(h),
            _ => match op & 0x80 {
                0 => self.engine.abort(h),
                _ => self.engine.set_nodelay(h, op & 0x40 != 0),
            },
        };
    }

    /// What a poll loop does after its input: events to the application, due timers, output. The peer then
    /// learns from the engine's frames where each of its connections stands.
    fn settle(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            if !self.handles.contains(&event.conn) {
                self.handles.push(event.conn);
            }
        }
        if self.engine.poll_timeout().is_some_and(|t| t <= self.now) {
            self.engine.handle_timeouts(self.now);
        }
        self.engine.poll_transmit(self.now, &mut self.out);
        for frame in core::mem::take(&mut self.out) {
            self.learn(&frame);
        }
    }

    /// Updates the peer's view of a connection from a frame the engine sent.
    fn learn(&mut self, frame: &[u8]) {
        let Some(segment) = frame.get(14 + 20..) else { return };
        if frame.get(23) != Some(&u8::from(IpProtocol::Tcp)) {
            return;
        }
        let Ok(packet) = tcp::Packet::new_checked(segment) else {
            return;
        };
        // The engine's own frames: their checksums are not what is under test here.
        let Ok(seg) = TcpRepr::parse(&packet, US, PEER, ChecksumPolicy::Trust) else {
            return;
        };
        let Some(which) = PEER_PORTS.iter().position(|&p| p == seg.dst_port.0) else {
            return;
        };
        if which == 0 && seg.src_port.0 != LISTEN_PORT {
            self.own_port = Some(seg.src_port.0);
        }
        let view = &mut self.views[which];
        view.their_end = seg.seq.0.wrapping_add(seg.segment_len());
        if seg.flags.ack() {
            view.our_next = seg.ack.0;
        }
        if let Some(ts) = seg.timestamps {
            view.their_tsval = ts.tsval;
        }
    }

    /// Releases every handle and lets every timer run out: nothing may be left behind. Returns the counters.
    fn finish(mut self) -> Counters {
        for h in core::mem::take(&mut self.handles) {
            let _ = self.engine.abort(h);
        }
        // 3,000 s, longer than every deadline (SYN and data retries with backoff, FIN-WAIT-2, 2*MSL), in steps
        // of 10 s: each step runs every timer due by then.
        for _ in 0..300 {
            self.now += Duration::from_secs(10);
            self.settle();
            for h in core::mem::take(&mut self.handles) {
                let _ = self.engine.abort(h);
            }
        }
        let counters = *self.engine.counters();
        assert_eq!(self.engine.connection_count(), 0, "{counters:?}");
        assert_eq!(self.engine.time_wait_count(), 0, "{counters:?}");
        assert_eq!(self.engine.timer_count(), 0, "{counters:?}");
        assert_eq!(
            self.engine.free_buffers(),
            BUFFERS,
            "a buffer was not returned: {counters:?}"
        );
        counters
    }
}

/// `payload` in an Ethernet frame from the peer to the engine.
fn ethernet_frame(ethertype: EtherType, payload: &[u8]) -> Vec<u8> {
    let eth = EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: US_MAC,
        ethertype,
    };
    let mut frame = vec![0u8; EthernetRepr::HEADER_LEN + payload.len()];
    let _ = eth.emit(&mut Frame::new_unchecked(&mut frame[..EthernetRepr::HEADER_LEN]));
    frame[EthernetRepr::HEADER_LEN..].copy_from_slice(payload);
    frame
}

/// A TCP `segment` in an IPv4 packet from the peer to the engine.
fn ipv4_packet(segment: &[u8]) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: PEER,
        dst_addr: US,
        next_header: IpProtocol::Tcp,
        payload_len: segment.len(),
        ttl: 64,
        dont_frag: true,
        ident: 0,
        tos: 0,
    };
    let mut packet = vec![0u8; Ipv4Repr::HEADER_LEN + segment.len()];
    let _ = ip.emit(&mut ipv4::Packet::new_unchecked(&mut packet[..]));
    packet[Ipv4Repr::HEADER_LEN..].copy_from_slice(segment);
    packet
}

/// Runs a script and the clean-up after it; returns the engine's counters.
fn run(data: &[u8]) -> Counters {
    let mut script = Script { bytes: data };
    let options = script.u8();
    let Some(mut harness) = Harness::new(options) else {
        panic!("the fuzz engine's configuration {options:#04x} is refused");
    };
    for _ in 0..MAX_STEPS {
        if script.done() {
            break;
        }
        harness.step(&mut script);
    }
    harness.finish()
}

/// Target `engine`: see the module docs.
pub fn engine(data: &[u8]) {
    run(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(name: &str) -> Vec<u8> {
        let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("seeds/engine")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The seeds drive the engine where they say they do, so the harness's peer view is right.
    #[test]
    fn engine_passive_seed_completes_a_life_cycle() {
        let c = run(&seed("passive"));
        assert_eq!((c.passive_opens, c.established), (1, 1), "{c:?}");
        assert!(c.data_in_order >= 1, "{c:?}");
        // The peer closed first: the engine's side ends in LAST-ACK, without TIME-WAIT.
        assert_eq!(c.time_wait_entered, 0, "{c:?}");
        assert_eq!((c.retransmits, c.rst_sent), (0, 0), "{c:?}");
    }

    #[test]
    fn engine_active_seed_ends_in_time_wait_that_expires() {
        let c = run(&seed("active"));
        assert_eq!((c.active_opens, c.established), (1, 1), "{c:?}");
        assert_eq!((c.time_wait_entered, c.time_wait_expired), (1, 1), "{c:?}");
        assert_eq!(c.retransmits, 0, "{c:?}");
    }

    #[test]
    fn engine_rough_seed_retransmits_and_takes_a_reset() {
        let c = run(&seed("rough"));
        assert!(c.retransmits >= 1 && c.rst_received >= 1, "{c:?}");
    }

    #[test]
    fn engine_empty_script_cleans_up_its_own_connection() {
        let c = run(&[]);
        assert_eq!(c.active_opens, 1, "{c:?}");
    }

    /// Every option byte gives a configuration the engine accepts, and the active seed still completes under
    /// each option alone.
    #[test]
    fn engine_every_option_byte_is_accepted() {
        for options in 0..=u8::MAX {
            run(&[options]);
        }
        let mut script = seed("active");
        for bit in 0..8 {
            script[0] = 1 << bit;
            let c = run(&script);
            assert_eq!(c.established, 1, "option bit {bit}: {c:?}");
        }
    }
}
