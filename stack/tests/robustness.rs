//! Arbitrary segments and times thrown at an engine in every state: it must never panic (debug assertions on
//! the state diagram included), never grow its tables past their limits, and always return every buffer.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use proptest::prelude::*;
use synack::engine::{Engine, EngineConfig};
use synack::isn::Secret;
use synack::time::Instant;
use synack::wire::ethernet::{EtherType, EthernetRepr, Frame, MacAddr};
use synack::wire::tcp::{self, SackBlocks, TcpFlags, TcpRepr, TcpTimestamps};
use synack::wire::{IpProtocol, Port, SeqNum, ipv4};

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const US_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);

#[derive(Debug, Clone)]
enum Action {
    /// A segment from the peer; sequence and ack numbers are offsets from the last values the engine sent, so
    /// that many of them land in or near the window.
    Segment {
        flags: u8,
        seq_off: i32,
        ack_off: i32,
        len: usize,
        window: u16,
        ts: Option<u32>,
        sack: bool,
    },
    /// A frame of arbitrary bytes after a valid Ethernet header.
    Garbage(Vec<u8>),
    /// Time passes.
    Wait(u32),
    /// The application acts.
    App(u8),
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        6 => (flags(), offset(), offset(), prop_oneof![3 => Just(0usize), 1 => 0usize..1600], window(), proptest::option::of(any::<u32>()), any::<bool>())
            .prop_map(|(flags, seq_off, ack_off, len, window, ts, sack)| Action::Segment { flags, seq_off, ack_off, len, window, ts, sack }),
        1 => proptest::collection::vec(any::<u8>(), 0..80).prop_map(Action::Garbage),
        2 => (0u32..5000).prop_map(Action::Wait),
        2 => any::<u8>().prop_map(Action::App),
    ]
}

/// Mostly the flag combinations a real peer sends, sometimes anything.
fn flags() -> impl Strategy<Value = u8> {
    let f = |flags: TcpFlags| Just(flags.0);
    prop_oneof![
        1 => f(TcpFlags::SYN),
        1 => f(TcpFlags::SYN | TcpFlags::ACK),
        3 => f(TcpFlags::ACK),
        2 => f(TcpFlags::ACK | TcpFlags::PSH),
        2 => f(TcpFlags::FIN | TcpFlags::ACK),
        1 => f(TcpFlags::RST),
        1 => f(TcpFlags::RST | TcpFlags::ACK),
        1 => any::<u8>(),
    ]
}

/// Mostly exact, sometimes near, sometimes far.
fn offset() -> impl Strategy<Value = i32> {
    prop_oneof![4 => Just(0i32), 2 => -3i32..3, 1 => -3000i32..3000, 1 => any::<i32>()]
}

fn window() -> impl Strategy<Value = u16> {
    prop_oneof![3 => Just(65535u16), 1 => Just(0u16), 1 => any::<u16>()]
}

fn frame(payload: &[u8], protocol: IpProtocol) -> Vec<u8> {
    let mut f = vec![0u8; 34 + payload.len()];
    EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: US_MAC,
        ethertype: EtherType::Ipv4,
    }
    .emit(&mut Frame::new_unchecked(&mut f[..14]))
    .unwrap();
    ipv4::Ipv4Repr {
        src_addr: PEER,
        dst_addr: US,
        next_header: protocol,
        payload_len: payload.len(),
        ttl: 64,
        dont_frag: true,
        ident: 0,
        tos: 0,
    }
    .emit(&mut ipv4::Packet::new_unchecked(&mut f[14..]))
    .unwrap();
    f[34..].copy_from_slice(payload);
    f
}

fn run(actions: Vec<Action>, listen: bool) {
    let config = EngineConfig {
        mac: US_MAC,
        addresses: vec![US],
        max_connections: 4,
        max_time_wait: 4,
        buffer_size: 4096,
        buffer_count: 8,
        msl: Duration::from_secs(2),
        syn_retries: 2,
        data_retries: 3,
        ..EngineConfig::default()
    };
    let buffers = config.buffer_count;
    let mut now = Instant::from_millis(5000);
    let mut engine = Engine::with_secrets(config, now, Secret::from_seed(1), Secret::from_seed(2)).unwrap();
    engine.add_neighbor(PEER, PEER_MAC);
    let mut handles = Vec::new();
    if listen {
        engine.listen(Port(80), 4).unwrap();
    } else if let Ok(h) = engine.connect(now, SocketAddrV4::new(US, 80), SocketAddrV4::new(PEER, 5000)) {
        handles.push(h);
    }
    // The last sequence and acknowledgment numbers the engine sent: the peer's view of the connection.
    let (mut their_seq, mut their_ack) = (0u32, 100u32);
    let payload = [0x5au8; 1600];
    let mut buf = [0u8; 2048];
    for action in actions {
        let mut out: Vec<Vec<u8>> = Vec::new();
        match action {
            Action::Segment {
                flags,
                seq_off,
                ack_off,
                len,
                window,
                ts,
                sack,
            } => {
                let mut sack_blocks = SackBlocks::new();
                if sack {
                    sack_blocks.push(SeqNum(their_seq.wrapping_add(10)), SeqNum(their_seq.wrapping_add(20)));
                }
                let repr = TcpRepr {
                    src_port: Port(5000),
                    dst_port: Port(80),
                    seq: SeqNum(their_ack.wrapping_add(seq_off as u32)),
                    ack: SeqNum(their_seq.wrapping_add(ack_off as u32)),
                    flags: TcpFlags(flags),
                    window,
                    timestamps: ts.map(|tsval| TcpTimestamps { tsval, tsecr: 0 }),
                    sack_blocks,
                    mss: Some(536 + (len as u16 % 1000)),
                    window_scale: Some((len % 16) as u8),
                    sack_permitted: sack,
                    payload: &payload[..len.min(1400)],
                    ..TcpRepr::default()
                };
                let mut seg = vec![0u8; repr.buffer_len()];
                repr.emit(&mut tcp::Packet::new_unchecked(&mut seg[..]), PEER, US);
                engine.handle_frame(now, &frame(&seg, IpProtocol::Tcp), &mut out);
            }
            Action::Garbage(bytes) => {
                engine.handle_frame(now, &frame(&bytes, IpProtocol::Tcp), &mut out);
                engine.handle_frame(now, &frame(&bytes, IpProtocol::Icmp), &mut out);
                engine.handle_frame(now, &bytes, &mut out);
            }
            Action::Wait(ms) => now += Duration::from_millis(u64::from(ms)),
            Action::App(op) => {
                if let Some(&h) = handles.get(usize::from(op) % handles.len().max(1)) {
                    let _ = match op % 6 {
                        0 => engine.send(h, &payload[..usize::from(op) * 5]).map(|_| ()),
                        1 => engine.recv(h, &mut buf).map(|_| ()),
                        2 => engine.shutdown(h),
                        3 => engine.close(h),
                        4 => engine.abort(h),
                        _ => engine.set_nodelay(h, op & 1 == 0),
                    };
                }
            }
        }
        while let Some(e) = engine.poll_event() {
            handles.push(e.conn);
        }
        engine.handle_timeouts(now);
        engine.poll_transmit(now, &mut out);
        // Learn where the engine is, from what it sent.
        for f in &out {
            if f.len() >= 54 && f[23] == 6 {
                if let Ok(p) = tcp::Packet::new_checked(&f[34..]) {
                    their_seq = p.seq_number().0.wrapping_add(p.segment_len());
                    if p.flags().ack() {
                        their_ack = p.ack_number().0;
                    }
                }
            }
        }
        assert!(engine.connection_count() <= 4 && engine.time_wait_count() <= 4);
    }
    // Let everything finish: release every handle, run every timer out.
    for h in handles {
        let _ = engine.abort(h);
    }
    for _ in 0..400 {
        now += Duration::from_secs(1);
        engine.handle_timeouts(now);
        engine.poll_transmit(now, &mut Vec::<Vec<u8>>::new());
        while engine.poll_event().is_some() {}
    }
    assert_eq!(engine.connection_count(), 0, "{:?}", engine.counters());
    assert_eq!(engine.time_wait_count(), 0);
    assert_eq!(engine.timer_count(), 0);
    assert_eq!(engine.free_buffers(), buffers, "every buffer back in the pool");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn listener_arbitrary_segments_never_panic(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, true);
    }

    #[test]
    fn connector_arbitrary_segments_never_panic(actions in proptest::collection::vec(action(), 1..60)) {
        run(actions, false);
    }
}
