//! One engine against hand-built segments: every transition of the RFC 9293 §3.3.2 state diagram and the
//! §3.10.7 rules, with exact flags, sequence and acknowledgment numbers. Tests are named
//! `<state>_<event>_<expectation>` and cite what they check.

use core::net::{Ipv4Addr, SocketAddrV4};
use core::time::Duration;

use synack::engine::{CloseReason, ConnHandle, Engine, EngineConfig, Event, EventKind, State, SynCookieMode};
use synack::isn::Secret;
use synack::time::Instant;
use synack::wire::ethernet::{EtherType, EthernetRepr, Frame, MacAddr};
use synack::wire::tcp::{self, TcpFlags, TcpRepr, TcpTimestamps};
use synack::wire::{ChecksumPolicy, IpProtocol, Port, SeqNum, ipv4};

const US: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
const PEER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const US_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const US_PORT: u16 = 80;
const PEER_PORT: u16 = 40000;
/// The peer's ISN in every test.
const X: u32 = 1_000_000;
const MSL: Duration = Duration::from_secs(30);

/// A segment as it left the engine, with its payload copied out.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Out {
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    window: u16,
    payload: Vec<u8>,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    timestamps: Option<TcpTimestamps>,
    sack: Vec<(u32, u32)>,
}

struct Harness {
    engine: Engine,
    now: Instant,
    events: Vec<Event>,
}

fn config() -> EngineConfig {
    EngineConfig {
        mac: US_MAC,
        addresses: vec![US],
        max_connections: 16,
        max_time_wait: 16,
        buffer_size: 8192,
        buffer_count: 64,
        msl: MSL,
        delayed_ack: None,
        timestamps: false,
        ..EngineConfig::default()
    }
}

impl Harness {
    fn new(config: EngineConfig) -> Harness {
        let now = Instant::from_millis(10_000);
        let mut engine = Engine::with_secrets(config, now, Secret::from_seed(7), Secret::from_seed(8)).unwrap();
        engine.add_neighbor(PEER, PEER_MAC);
        Harness {
            engine,
            now,
            events: Vec::new(),
        }
    }

    fn listening() -> Harness {
        let mut h = Harness::new(config());
        h.engine.listen(Port(US_PORT), 8).unwrap();
        h
    }

    /// Feeds one segment from the peer; returns the segments the engine sends in reply (poll_transmit included).
    fn send(&mut self, seg: TcpRepr) -> Vec<Out> {
        let frame = build_frame(&seg);
        let mut out: Vec<Vec<u8>> = Vec::new();
        self.engine.handle_frame(self.now, &frame, &mut out);
        self.flush(out)
    }

    /// Runs timers and transmit at the current time.
    fn poll(&mut self) -> Vec<Out> {
        self.engine.handle_timeouts(self.now);
        self.flush(Vec::new())
    }

    fn advance(&mut self, by: Duration) -> Vec<Out> {
        self.now += by;
        self.poll()
    }

    fn flush(&mut self, mut out: Vec<Vec<u8>>) -> Vec<Out> {
        while let Some(e) = self.engine.poll_event() {
            self.events.push(e);
        }
        self.engine.poll_transmit(self.now, &mut out);
        out.iter().map(|f| parse_frame(f)).collect()
    }

    fn take_events(&mut self) -> Vec<EventKind> {
        core::mem::take(&mut self.events).into_iter().map(|e| e.kind).collect()
    }

    /// LISTEN -> SYN-RECEIVED -> ESTABLISHED by the textbook handshake; returns the handle and our ISN y.
    fn established() -> (Harness, ConnHandle, u32) {
        let mut h = Harness::listening();
        let out = h.send(syn(X));
        let y = out[0].seq;
        assert!(h.send(seg(TcpFlags::ACK, X + 1, y + 1)).is_empty());
        let conn = match h.events.pop() {
            Some(Event {
                conn,
                kind: EventKind::Accepted { .. },
            }) => conn,
            other => panic!("expected Accepted, got {other:?}"),
        };
        (h, conn, y)
    }
}

fn seg(flags: TcpFlags, seq: u32, ack: u32) -> TcpRepr<'static> {
    TcpRepr {
        src_port: Port(PEER_PORT),
        dst_port: Port(US_PORT),
        seq: SeqNum(seq),
        ack: SeqNum(ack),
        flags,
        window: 65535,
        ..TcpRepr::default()
    }
}

fn syn(seq: u32) -> TcpRepr<'static> {
    TcpRepr {
        mss: Some(1460),
        ..seg(TcpFlags::SYN, seq, 0)
    }
}

fn data(seq: u32, ack: u32, payload: &'static [u8]) -> TcpRepr<'static> {
    TcpRepr {
        payload,
        ..seg(TcpFlags::ACK | TcpFlags::PSH, seq, ack)
    }
}

fn build_frame(seg: &TcpRepr) -> Vec<u8> {
    let tcp_len = seg.buffer_len();
    let mut frame = vec![0u8; 14 + 20 + tcp_len];
    let eth = EthernetRepr {
        src_addr: PEER_MAC,
        dst_addr: US_MAC,
        ethertype: EtherType::Ipv4,
    };
    eth.emit(&mut Frame::new_unchecked(&mut frame[..14])).unwrap();
    let ip = ipv4::Ipv4Repr {
        src_addr: PEER,
        dst_addr: US,
        next_header: IpProtocol::Tcp,
        payload_len: tcp_len,
        ttl: 64,
        dont_frag: true,
        ident: 1,
        tos: 0,
    };
    ip.emit(&mut ipv4::Packet::new_unchecked(&mut frame[14..])).unwrap();
    seg.emit(&mut tcp::Packet::new_unchecked(&mut frame[34..]), PEER, US);
    frame
}

fn parse_frame(frame: &[u8]) -> Out {
    let eth = Frame::new_checked(frame).unwrap();
    assert_eq!(eth.ethertype(), EtherType::Ipv4, "only TCP expected");
    assert_eq!(eth.dst_addr(), PEER_MAC);
    let ip = ipv4::Packet::new_checked(eth.payload()).unwrap();
    let ip_repr = ipv4::Ipv4Repr::parse(&ip, ChecksumPolicy::Verify).unwrap();
    assert_eq!((ip_repr.src_addr, ip_repr.dst_addr), (US, PEER));
    let packet = tcp::Packet::new_checked(ip.payload()).unwrap();
    let repr = TcpRepr::parse(&packet, US, PEER, ChecksumPolicy::Verify).unwrap();
    Out {
        flags: repr.flags,
        seq: repr.seq.0,
        ack: repr.ack.0,
        window: repr.window,
        payload: repr.payload.to_vec(),
        mss: repr.mss,
        window_scale: repr.window_scale,
        sack_permitted: repr.sack_permitted,
        timestamps: repr.timestamps,
        sack: repr.sack_blocks.iter().map(|(l, r)| (l.0, r.0)).collect(),
    }
}

fn flags(out: &[Out]) -> Vec<TcpFlags> {
    out.iter().map(|o| o.flags).collect()
}

const ACK: TcpFlags = TcpFlags::ACK;

// ----- LISTEN and CLOSED ------------------------------------------------------------------------------------

/// RFC 9293 §3.5 Figure 6 line 2-3 and §3.10.7.2: SYN x -> SYN-ACK with seq y, ack x+1.
#[test]
fn listen_syn_sends_syn_ack() {
    let mut h = Harness::listening();
    let out = h.send(syn(X));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, TcpFlags::SYN | ACK);
    assert_eq!(out[0].ack, X + 1);
    assert_eq!(out[0].mss, Some(1460), "MSS sent (MUST-14)");
    assert_eq!(
        out[0].window_scale, None,
        "no window scale unless the SYN offered it (RFC 7323 §1.3)"
    );
    assert!(!out[0].sack_permitted, "no SACK-permitted unless offered");
    assert_eq!(h.engine.connection_count(), 1);
}

/// RFC 9293 §3.10.7.2: the SYN-ACK answers only the options the SYN offered.
#[test]
fn listen_syn_with_options_echoes_them() {
    let mut h = Harness::new(EngineConfig {
        timestamps: true,
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let s = TcpRepr {
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some(TcpTimestamps { tsval: 4242, tsecr: 0 }),
        ..syn(X)
    };
    let out = h.send(s);
    assert_eq!(out[0].flags, TcpFlags::SYN | ACK);
    assert!(out[0].window_scale.is_some());
    assert!(out[0].sack_permitted);
    assert_eq!(
        out[0].timestamps.map(|t| t.tsecr),
        Some(4242),
        "TSecr echoes the SYN's TSval (RFC 7323 §4.2)"
    );
}

/// RFC 9293 §3.10.7.2: an ACK in LISTEN gets <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn listen_ack_sends_rst() {
    let mut h = Harness::listening();
    let out = h.send(seg(ACK, X, 5555));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, TcpFlags::RST);
    assert_eq!(out[0].seq, 5555);
    assert_eq!(h.engine.connection_count(), 0);
}

/// RFC 9293 §3.10.7.2: a RST in LISTEN is ignored.
#[test]
fn listen_rst_is_ignored() {
    let mut h = Harness::listening();
    assert!(h.send(seg(TcpFlags::RST, X, 0)).is_empty());
}

/// RFC 9293 §3.10.7.1: a SYN to a closed port gets <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>.
#[test]
fn closed_syn_sends_rst_ack() {
    let mut h = Harness::new(config());
    let out = h.send(syn(X));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, TcpFlags::RST | ACK);
    assert_eq!((out[0].seq, out[0].ack), (0, X + 1));
    assert_eq!(h.engine.counters().no_listener, 1);
}

/// RFC 9293 §3.10.7.1: an ACK to a closed port gets <SEQ=SEG.ACK><CTL=RST>; a RST gets nothing.
#[test]
fn closed_ack_sends_rst_and_rst_gets_nothing() {
    let mut h = Harness::new(config());
    let out = h.send(data(X, 777, b"abc"));
    assert_eq!(flags(&out), vec![TcpFlags::RST]);
    assert_eq!(out[0].seq, 777);
    assert!(h.send(seg(TcpFlags::RST | ACK, X, 777)).is_empty());
}

/// Listen backlog, cookies off: SYNs beyond the SYN-RECEIVED bound are dropped and counted.
#[test]
fn listen_syn_beyond_backlog_is_dropped() {
    let mut h = Harness::new(EngineConfig {
        syn_cookies: SynCookieMode::Never,
        ..config()
    });
    h.engine.listen(Port(US_PORT), 1).unwrap();
    assert_eq!(h.send(syn(X)).len(), 1);
    let other = TcpRepr {
        src_port: Port(PEER_PORT + 1),
        ..syn(X)
    };
    assert!(h.send(other).is_empty());
    assert_eq!(h.engine.counters().drop_backlog_full, 1);
}

// ----- LISTEN under a SYN flood: SYN cookies (RFC 4987 §3.6) ----------------------------------------------

/// A listener with backlog 1 whose one half-open slot is taken, so the next SYN meets a full queue.
fn listening_backlog_full(config: EngineConfig) -> Harness {
    let mut h = Harness::new(config);
    h.engine.listen(Port(US_PORT), 1).unwrap();
    let first = TcpRepr {
        src_port: Port(PEER_PORT + 1),
        ..syn(X)
    };
    assert_eq!(flags(&h.send(first)), vec![TcpFlags::SYN | ACK]);
    h
}

/// The accepted connection's handle from the events so far.
fn accepted(h: &mut Harness) -> ConnHandle {
    let at = h
        .events
        .iter()
        .position(|e| matches!(e.kind, EventKind::Accepted { .. }))
        .expect("an Accepted event");
    h.events.remove(at).conn
}

/// RFC 4987 §3.6, `auto` mode: with the backlog full a SYN gets a SYN-ACK whose ISS is a cookie, and no state.
#[test]
fn listen_syn_beyond_backlog_gets_cookie_syn_ack_without_state() {
    let mut h = listening_backlog_full(config());
    let out = h.send(syn(X));
    assert_eq!(flags(&out), vec![TcpFlags::SYN | ACK]);
    assert_eq!(out[0].ack, X + 1);
    assert_eq!(out[0].mss, Some(1460));
    assert_eq!(
        out[0].window_scale, None,
        "no timestamps: nowhere to carry window scaling"
    );
    assert!(!out[0].sack_permitted);
    assert_eq!(
        h.engine.connection_count(),
        1,
        "only the first, stateful, half-open connection"
    );
    assert_eq!(h.engine.counters().syn_cookies_sent, 1);
    assert_eq!(h.engine.counters().drop_backlog_full, 0);
}

/// RFC 4987 §3.6: the third ACK returning the cookie rebuilds the connection, ESTABLISHED and accepted, and it
/// then carries data both ways and closes like any other.
#[test]
fn listen_cookie_ack_establishes_and_connection_works() {
    let mut h = listening_backlog_full(config());
    let y = h.send(syn(X))[0].seq;
    assert!(h.send(seg(ACK, X + 1, y + 1)).is_empty());
    let conn = accepted(&mut h);
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    assert_eq!(h.engine.counters().syn_cookies_validated, 1);
    // Data in, data out, with the sequence numbers the cookie set.
    let out = h.send(data(X + 1, y + 1, b"ping"));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 5);
    let mut buf = [0u8; 16];
    assert_eq!(h.engine.recv(conn, &mut buf), Ok(4));
    assert_eq!(h.engine.send(conn, b"pong"), Ok(4));
    let out = h.poll();
    assert_eq!(out.len(), 1);
    assert_eq!(
        (out[0].seq, out[0].ack, &out[0].payload[..]),
        (y + 1, X + 5, &b"pong"[..])
    );
    assert_eq!(out[0].mss, None);
    // The peer acknowledges and closes; we close too.
    assert!(h.send(seg(ACK, X + 5, y + 5)).is_empty());
    let out = h.send(seg(TcpFlags::FIN | ACK, X + 5, y + 5));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(h.engine.state(conn), Ok(State::CloseWait));
    h.engine.close(conn).unwrap();
    let out = h.poll();
    assert_eq!(flags(&out), vec![TcpFlags::FIN | ACK]);
    assert!(h.send(seg(ACK, X + 6, y + 6)).is_empty());
    assert!(h.take_events().contains(&EventKind::Closed {
        reason: CloseReason::Normal
    }));
}

/// RFC 4987 §3.6 with RFC 7323: with timestamps the cookie's TSval carries window scaling and SACK-permitted,
/// so the rebuilt connection keeps them (as Linux's cookies do).
#[test]
fn listen_cookie_with_timestamps_keeps_window_scale_and_sack() {
    let mut h = listening_backlog_full(EngineConfig {
        timestamps: true,
        ..config()
    });
    let offer = TcpRepr {
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some(TcpTimestamps { tsval: 500, tsecr: 0 }),
        ..syn(X)
    };
    let out = h.send(offer);
    assert_eq!(flags(&out), vec![TcpFlags::SYN | ACK]);
    assert!(out[0].window_scale.is_some());
    assert!(out[0].sack_permitted);
    let ts = out[0].timestamps.expect("timestamps answered");
    assert_eq!(ts.tsecr, 500);
    assert_eq!(
        ts.tsval & 0x1f,
        7 | 0x10,
        "window shift 7 and the SACK bit in the TSval's low bits"
    );
    let y = out[0].seq;
    let ack = |seq: u32, tsval: u32, payload: &'static [u8]| TcpRepr {
        // A window of 1 scaled by 7: 128 bytes.
        window: 1,
        timestamps: Some(TcpTimestamps { tsval, tsecr: ts.tsval }),
        payload,
        ..seg(ACK, seq, y + 1)
    };
    assert!(h.send(ack(X + 1, 501, b"")).is_empty());
    let conn = accepted(&mut h);
    assert_eq!(h.engine.counters().syn_cookies_validated, 1);
    // The peer's window is 1 << 7: 128 bytes go out of 300, so the shift was kept.
    assert_eq!(h.engine.send(conn, &[7u8; 300]), Ok(300));
    let out = h.poll();
    let sent: usize = out.iter().map(|o| o.payload.len()).sum();
    assert_eq!(sent, 128, "the window was scaled by the cookie's shift");
    assert!(
        out.iter().all(|o| o.timestamps.is_some()),
        "timestamps on every segment"
    );
    // Out-of-order data gets a SACK block: SACK was kept.
    let out = h.send(ack(X + 101, 502, b"later"));
    assert_eq!(out.last().map(|o| o.sack.clone()), Some(vec![(X + 101, X + 106)]));
}

/// RFC 4987 §3.6: an ACK whose cookie does not check (a guess) gets the RST of RFC 9293 §3.10.7.2, counted.
#[test]
fn listen_ack_with_wrong_cookie_gets_rst_and_is_counted() {
    let mut h = listening_backlog_full(config());
    let y = h.send(syn(X))[0].seq;
    let out = h.send(seg(ACK, X + 1, y + 9));
    assert_eq!(flags(&out), vec![TcpFlags::RST]);
    assert_eq!(out[0].seq, y + 9);
    assert_eq!(h.engine.counters().syn_cookies_rejected, 1);
    assert_eq!(h.engine.counters().syn_cookies_validated, 0);
    assert_eq!(h.engine.connection_count(), 1);
}

/// A cookie lives two 64 s counter periods at most: the ACK returning it later is refused.
#[test]
fn listen_cookie_ack_after_its_lifetime_gets_rst() {
    let mut h = listening_backlog_full(EngineConfig {
        syn_cookies: SynCookieMode::Always,
        ..config()
    });
    let y = h.send(syn(X))[0].seq;
    h.advance(Duration::from_secs(129));
    let out = h.send(seg(ACK, X + 1, y + 1));
    assert_eq!(flags(&out), vec![TcpFlags::RST]);
    assert_eq!(h.engine.counters().syn_cookies_rejected, 1);
}

/// `auto` mode checks ACKs for cookies only after it has sent some (Linux's rule): outside a flood an ACK to a
/// listener is just bad, and gets its RST without a cookie check.
#[test]
fn listen_ack_without_recent_cookie_is_not_checked() {
    let mut h = Harness::listening();
    let out = h.send(seg(ACK, X, 5555));
    assert_eq!(flags(&out), vec![TcpFlags::RST]);
    assert_eq!(h.engine.counters().syn_cookies_rejected, 0);
}

/// `always` mode: every SYN gets a cookie, no SYN ever takes a control block, and the third ACK's data is
/// delivered with the connection (RFC 9293 §3.10.7.4 sixth step through the rebuilt SYN-RECEIVED).
#[test]
fn listen_always_cookie_ack_with_data_delivers_it() {
    let mut h = Harness::new(EngineConfig {
        syn_cookies: SynCookieMode::Always,
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let y = h.send(syn(X))[0].seq;
    assert_eq!(h.engine.connection_count(), 0);
    let out = h.send(data(X + 1, y + 1, b"GET /"));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 6);
    let conn = accepted(&mut h);
    assert!(h.take_events().contains(&EventKind::Readable));
    let mut buf = [0u8; 8];
    assert_eq!(h.engine.recv(conn, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"GET /");
}

/// Cookies off, the half-open share: half-open connections never take more than `half_open_percent` of the
/// table, whatever the backlogs, so established connections keep the rest.
#[test]
fn listen_syn_beyond_half_open_share_is_dropped() {
    let mut h = Harness::new(EngineConfig {
        syn_cookies: SynCookieMode::Never,
        half_open_percent: 25, // 4 of 16
        ..config()
    });
    h.engine.listen(Port(US_PORT), 100).unwrap();
    for i in 0..6u16 {
        h.send(TcpRepr {
            src_port: Port(PEER_PORT + i),
            ..syn(X)
        });
    }
    assert_eq!(h.engine.connection_count(), 4);
    assert_eq!(h.engine.counters().drop_half_open_limit, 2);
}

/// Under half-open pressure (half the share taken) a half-open connection gets one SYN-ACK retransmission
/// instead of `syn_retries`, then is given up, counted; once the pressure is gone the rest get their full
/// budget again.
#[test]
fn syn_received_under_pressure_gives_up_after_one_retransmission() {
    let mut h = Harness::new(EngineConfig {
        half_open_percent: 25, // 4 of 16: pressure from 2
        ..config()
    });
    h.engine.listen(Port(US_PORT), 100).unwrap();
    for i in 0..4u16 {
        h.send(TcpRepr {
            src_port: Port(PEER_PORT + i),
            ..syn(X)
        });
    }
    assert_eq!(h.advance(Duration::from_secs(1)).len(), 4, "the first retransmission");
    // At 3 s (RTO 2 s) the second would be due: under pressure they are given up instead (silently: their
    // peers are most likely spoofed), until only one is left, which is no longer under pressure and retransmits.
    let out = h.advance(Duration::from_secs(2));
    assert_eq!(h.engine.counters().synack_retries_shortened, 3);
    assert_eq!(h.engine.connection_count(), 1);
    assert_eq!(flags(&out), vec![TcpFlags::SYN | ACK]);
}

/// A full event queue: an event that cannot be queued is owed, not lost, and the connection's later events wait
/// behind it, so the application sees `Accepted` before `Readable` once it has drained the queue.
#[test]
fn syn_received_ack_with_event_queue_full_owes_accepted_before_readable() {
    let mut h = Harness::new(EngineConfig {
        event_capacity: 1,
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    // Segments in, without the harness draining events.
    let feed = |h: &mut Harness, seg: TcpRepr| -> Vec<Out> {
        let mut out: Vec<Vec<u8>> = Vec::new();
        h.engine.handle_frame(h.now, &build_frame(&seg), &mut out);
        h.engine.poll_transmit(h.now, &mut out);
        out.iter().map(|f| parse_frame(f)).collect()
    };
    let from = |port: u16, seg: TcpRepr<'static>| TcpRepr {
        src_port: Port(port),
        ..seg
    };
    let ya = feed(&mut h, from(PEER_PORT, syn(X)))[0].seq;
    let yb = feed(&mut h, from(PEER_PORT + 1, syn(X)))[0].seq;
    feed(&mut h, from(PEER_PORT, seg(ACK, X + 1, ya + 1))); // A's Accepted fills the queue
    feed(&mut h, from(PEER_PORT + 1, seg(ACK, X + 1, yb + 1))); // B's is owed
    let out = feed(&mut h, from(PEER_PORT + 1, data(X + 1, yb + 1, b"hi"))); // and so is its Readable
    assert_eq!(flags(&out), vec![ACK], "B is established: its data is acknowledged");
    let mut seen = Vec::new();
    while let Some(e) = h.engine.poll_event() {
        seen.push((h.engine.flow(e.conn).map(|k| k.remote_port.0), e.kind));
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert_eq!(seen[0].0, Ok(PEER_PORT));
    assert!(matches!(seen[0].1, EventKind::Accepted { .. }));
    assert_eq!(seen[1].0, Ok(PEER_PORT + 1));
    assert!(matches!(seen[1].1, EventKind::Accepted { listener } if listener.port() == Port(US_PORT)));
    assert_eq!(seen[2], (Ok(PEER_PORT + 1), EventKind::Readable));
    assert!(h.engine.counters().events_deferred >= 2);
}

// ----- SYN-RECEIVED -----------------------------------------------------------------------------------------

/// RFC 9293 §3.10.7.4 fifth step: SND.UNA < SEG.ACK =< SND.NXT completes the handshake (ack y+1).
#[test]
fn syn_received_ack_establishes() {
    let (mut h, conn, _) = Harness::established();
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    assert!(h.take_events().is_empty());
}

/// RFC 9293 §3.10.7.4: in SYN-RECEIVED an unacceptable ACK gets <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn syn_received_bad_ack_sends_rst() {
    let mut h = Harness::listening();
    let y = h.send(syn(X))[0].seq;
    let out = h.send(seg(ACK, X + 1, y + 100));
    assert_eq!(flags(&out), vec![TcpFlags::RST]);
    assert_eq!(out[0].seq, y + 100);
}

/// RFC 9293 §3.10.7.4 second step: a RST in SYN-RECEIVED from a passive open returns to LISTEN, silently.
#[test]
fn syn_received_rst_returns_to_listen() {
    let mut h = Harness::listening();
    h.send(syn(X));
    assert!(h.send(seg(TcpFlags::RST, X + 1, 0)).is_empty());
    assert_eq!(h.engine.connection_count(), 0);
    assert!(h.take_events().is_empty(), "the application never saw it");
    // And the listener takes the next SYN.
    assert_eq!(h.send(syn(X + 5000)).len(), 1);
}

/// A retransmitted SYN in SYN-RECEIVED means our SYN-ACK was lost: it is sent again, same ISN.
#[test]
fn syn_received_syn_again_resends_syn_ack() {
    let mut h = Harness::listening();
    let first = h.send(syn(X));
    let again = h.send(syn(X));
    assert_eq!(flags(&again), vec![TcpFlags::SYN | ACK]);
    assert_eq!(again[0].seq, first[0].seq);
}

/// RFC 6298 §5: the SYN-ACK is retransmitted after the initial RTO of 1 s, then after 2 s (backoff).
#[test]
fn syn_received_timeout_retransmits_syn_ack_with_backoff() {
    let mut h = Harness::listening();
    let y = h.send(syn(X))[0].seq;
    assert!(h.advance(Duration::from_millis(990)).is_empty());
    let out = h.advance(Duration::from_millis(20));
    assert_eq!(flags(&out), vec![TcpFlags::SYN | ACK]);
    assert_eq!(out[0].seq, y);
    assert!(h.advance(Duration::from_millis(1900)).is_empty());
    assert_eq!(flags(&h.advance(Duration::from_millis(200))), vec![TcpFlags::SYN | ACK]);
}

// ----- SYN-SENT ---------------------------------------------------------------------------------------------

fn connect(h: &mut Harness) -> (ConnHandle, u32) {
    let conn = h
        .engine
        .connect(
            h.now,
            SocketAddrV4::new(US, US_PORT),
            SocketAddrV4::new(PEER, PEER_PORT),
        )
        .unwrap();
    let out = h.poll();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, TcpFlags::SYN, "active OPEN sends SYN (§3.10.1)");
    (conn, out[0].seq)
}

/// RFC 9293 §3.5 Figure 6: SYN seq x; SYN-ACK seq y ack x+1; ACK seq x+1 ack y+1; both ESTABLISHED.
#[test]
fn syn_sent_syn_ack_establishes_and_acks() {
    let mut h = Harness::new(config());
    let (conn, x) = connect(&mut h);
    let out = h.send(TcpRepr {
        mss: Some(1460),
        ..seg(TcpFlags::SYN | ACK, 5000, x + 1)
    });
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!((out[0].seq, out[0].ack), (x + 1, 5001));
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    assert_eq!(h.take_events(), vec![EventKind::Connected]);
}

/// RFC 9293 §3.10.7.3 and MUST-10: a SYN without ACK in SYN-SENT is a simultaneous open: SYN-RECEIVED, and
/// our SYN again, now with ACK (Figure 7).
#[test]
fn syn_sent_syn_enters_syn_received() {
    let mut h = Harness::new(config());
    let (conn, x) = connect(&mut h);
    let out = h.send(syn(5000));
    assert_eq!(flags(&out), vec![TcpFlags::SYN | ACK]);
    assert_eq!((out[0].seq, out[0].ack), (x, 5001));
    assert_eq!(h.engine.state(conn), Ok(State::SynReceived));
    // The peer's SYN-ACK completes it (Figure 7, line 7).
    let out = h.send(TcpRepr {
        mss: Some(1460),
        ..seg(TcpFlags::SYN | ACK, 5000, x + 1)
    });
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    assert!(out.iter().all(|o| o.flags == ACK));
    assert_eq!(h.take_events(), vec![EventKind::Connected]);
}

/// RFC 9293 §3.10.7.3: a RST with an acceptable ACK in SYN-SENT refuses the connection.
#[test]
fn syn_sent_rst_ack_is_refused() {
    let mut h = Harness::new(config());
    let (conn, x) = connect(&mut h);
    assert!(h.send(seg(TcpFlags::RST | ACK, 0, x + 1)).is_empty());
    assert_eq!(
        h.take_events(),
        vec![EventKind::Closed {
            reason: CloseReason::Refused
        }]
    );
    assert_eq!(h.engine.state(conn), Ok(State::Closed));
    h.engine.close(conn).unwrap();
    assert_eq!(h.engine.connection_count(), 0);
}

/// RFC 9293 §3.10.7.3: an ACK outside ISS < SEG.ACK =< SND.NXT in SYN-SENT gets <SEQ=SEG.ACK><CTL=RST>.
#[test]
fn syn_sent_bad_ack_sends_rst() {
    let mut h = Harness::new(config());
    let (conn, x) = connect(&mut h);
    let out = h.send(seg(TcpFlags::SYN | ACK, 5000, x + 10));
    assert_eq!(flags(&out), vec![TcpFlags::RST]);
    assert_eq!(out[0].seq, x + 10);
    assert_eq!(h.engine.state(conn), Ok(State::SynSent));
}

/// RFC 9293 §3.8.1 / RFC 6298: the SYN is retransmitted on timeout and the attempt is given up after
/// `syn_retries`, with `Closed { TimedOut }`.
#[test]
fn syn_sent_timeouts_retransmit_then_give_up() {
    let mut h = Harness::new(EngineConfig {
        syn_retries: 2,
        ..config()
    });
    let (_conn, x) = connect(&mut h);
    let first = h.advance(Duration::from_millis(1001));
    assert_eq!(flags(&first), vec![TcpFlags::SYN]);
    assert_eq!(first[0].seq, x);
    let second = h.advance(Duration::from_millis(2001));
    assert_eq!(flags(&second), vec![TcpFlags::SYN]);
    assert!(
        h.advance(Duration::from_millis(4001)).is_empty(),
        "no RST for a connection never synchronized"
    );
    assert_eq!(
        h.take_events(),
        vec![EventKind::Closed {
            reason: CloseReason::TimedOut
        }]
    );
    assert_eq!(h.engine.counters().rto_aborts, 1);
}

// ----- ESTABLISHED ------------------------------------------------------------------------------------------

/// In-order data is acknowledged and readable.
#[test]
fn established_data_is_acked_and_readable() {
    let (mut h, conn, y) = Harness::established();
    let out = h.send(data(X + 1, y + 1, b"hello"));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 6);
    assert_eq!(h.take_events(), vec![EventKind::Readable]);
    let mut buf = [0u8; 16];
    assert_eq!(h.engine.recv(conn, &mut buf), Ok(5));
    assert_eq!(&buf[..5], b"hello");
}

/// Data the application sends goes out at SND.NXT with the current ACK; its ACK frees the buffer.
#[test]
fn established_send_goes_out_and_is_acked() {
    let (mut h, conn, y) = Harness::established();
    assert_eq!(h.engine.send(conn, b"world"), Ok(5));
    let out = h.poll();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flags, ACK | TcpFlags::PSH);
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 1));
    assert_eq!(out[0].payload, b"world");
    assert!(h.send(seg(ACK, X + 1, y + 6)).is_empty());
    assert_eq!(h.engine.send_queue(conn), Ok(0));
}

/// RFC 9293 Table 6: an unacceptable segment is answered with <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK> and dropped.
#[test]
fn established_out_of_window_segment_gets_ack() {
    let (mut h, _conn, y) = Harness::established();
    let out = h.send(data(X + 1 + 100_000, y + 1, b"far"));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 1));
    assert_eq!(h.engine.counters().drop_out_of_window, 1);
}

/// RFC 5961 §3.2: a RST in the window but not at RCV.NXT gets a challenge ACK; the connection stays.
#[test]
fn established_rst_in_window_sends_challenge_ack() {
    let (mut h, conn, y) = Harness::established();
    let out = h.send(seg(TcpFlags::RST, X + 10, 0));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 1));
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    assert_eq!(h.engine.counters().challenge_acks_sent, 1);
}

/// RFC 5961 §7: one challenge ACK per connection per `oow_ack_interval`; the rest are suppressed, counted.
#[test]
fn established_rst_in_window_twice_sends_one_challenge_ack() {
    let (mut h, conn, _) = Harness::established();
    assert_eq!(flags(&h.send(seg(TcpFlags::RST, X + 10, 0))), vec![ACK]);
    assert!(h.send(seg(TcpFlags::RST, X + 11, 0)).is_empty());
    assert!(h.send(syn(X + 12)).is_empty());
    assert_eq!(h.engine.counters().challenge_acks_sent, 1);
    assert_eq!(h.engine.counters().oow_acks_limited, 2);
    h.advance(Duration::from_millis(500));
    assert_eq!(flags(&h.send(seg(TcpFlags::RST, X + 10, 0))), vec![ACK]);
    assert_eq!(h.engine.state(conn), Ok(State::Established));
}

/// RFC 5961 §7 and CVE-2016-5696: an off-path attacker floods in-window RSTs at a connection it guesses exists
/// and counts the challenge ACKs its own connection gets for its own in-window RSTs. With a per-connection limit
/// and a randomised global budget, the count it sees is the same whether the guessed connection exists or not.
#[test]
fn established_challenge_ack_count_does_not_reveal_other_connection() {
    let observe = |victim_exists: bool| -> Vec<usize> {
        let mut h = Harness::new(EngineConfig {
            challenge_ack_limit: 100,
            ..config()
        });
        h.engine.listen(Port(US_PORT), 8).unwrap();
        // The attacker's own connection, from port PEER_PORT.
        let y = h.send(syn(X))[0].seq;
        h.send(seg(ACK, X + 1, y + 1));
        let victim = Port(PEER_PORT + 1);
        if victim_exists {
            let v = h.send(TcpRepr {
                src_port: victim,
                ..syn(X)
            })[0]
                .seq;
            h.send(TcpRepr {
                src_port: victim,
                ..seg(ACK, X + 1, v + 1)
            });
        }
        let mut seen = Vec::new();
        for _second in 0..5 {
            let mut acks = 0;
            for i in 0..1000u32 {
                // Spoofed, in the victim's window (or at nothing), then one probe on the attacker's connection.
                h.send(TcpRepr {
                    src_port: victim,
                    ..seg(TcpFlags::RST, X + 2 + i % 1000, 0)
                });
                acks += h.send(seg(TcpFlags::RST, X + 2 + i % 1000, 0)).len();
                h.now += Duration::from_millis(1);
            }
            seen.push(acks);
        }
        seen
    };
    let with = observe(true);
    let without = observe(false);
    assert_eq!(with, without, "the attacker's count must not depend on the victim");
    assert!(
        with.iter().all(|&n| n <= 3),
        "per-connection limit: at most one per 500 ms: {with:?}"
    );
    assert!(
        with.iter().all(|&n| n >= 1),
        "the attacker's own probes must be answered: {with:?}"
    );
}

/// RFC 5961 §3.2: a RST exactly at RCV.NXT resets the connection.
#[test]
fn established_rst_exact_resets() {
    let (mut h, conn, _) = Harness::established();
    assert!(h.send(seg(TcpFlags::RST, X + 1, 0)).is_empty());
    assert_eq!(
        h.take_events(),
        vec![EventKind::Closed {
            reason: CloseReason::Reset
        }]
    );
    assert_eq!(h.engine.state(conn), Ok(State::Closed));
}

/// RFC 5961 §3.2 / RFC 9293 §3.10.7.4: a RST outside the window is dropped silently.
#[test]
fn established_rst_out_of_window_is_dropped() {
    let (mut h, conn, _) = Harness::established();
    assert!(h.send(seg(TcpFlags::RST, X + 1_000_000, 0)).is_empty());
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    assert_eq!(h.engine.counters().drop_rst_out_of_window, 1);
}

/// RFC 5961 §4: a SYN in a synchronized state gets a challenge ACK.
#[test]
fn established_syn_sends_challenge_ack() {
    let (mut h, conn, y) = Harness::established();
    let out = h.send(syn(X + 1));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 1));
    assert_eq!(h.engine.state(conn), Ok(State::Established));
}

/// RFC 9293 §3.10.7.4 (SHLD-31) and RFC 2018: out-of-order data is held, a duplicate ACK with a SACK block
/// goes out at once, and when the hole fills everything becomes readable.
#[test]
fn established_out_of_order_data_is_held_and_sacked() {
    let mut h = Harness::listening();
    let y = h.send(TcpRepr {
        sack_permitted: true,
        ..syn(X)
    })[0]
        .seq;
    h.send(seg(ACK, X + 1, y + 1));
    let conn = h.events.pop().unwrap().conn;
    let out = h.send(data(X + 4, y + 1, b"def"));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 1);
    assert_eq!(out[0].sack, vec![(X + 4, X + 7)]);
    let out = h.send(data(X + 1, y + 1, b"abc"));
    assert_eq!(out[0].ack, X + 7);
    assert!(out[0].sack.is_empty());
    let mut buf = [0u8; 16];
    assert_eq!(h.engine.recv(conn, &mut buf), Ok(6));
    assert_eq!(&buf[..6], b"abcdef");
}

/// RFC 6298 §5: unacknowledged data is retransmitted after the RTO, from SND.UNA.
#[test]
fn established_data_timeout_retransmits() {
    let (mut h, conn, y) = Harness::established();
    h.engine.send(conn, b"lost").unwrap();
    assert_eq!(h.poll().len(), 1);
    let out = h.advance(Duration::from_millis(1001));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].seq, out[0].payload.as_slice()), (y + 1, &b"lost"[..]));
    assert_eq!(h.engine.counters().retransmits, 1);
}

// ----- closing: passive close -------------------------------------------------------------------------------

/// RFC 9293 §3.6 case 2: FIN -> CLOSE-WAIT with ACK of FIN; our FIN -> LAST-ACK; its ACK -> CLOSED.
#[test]
fn established_fin_close_wait_then_last_ack_then_closed() {
    let (mut h, conn, y) = Harness::established();
    let out = h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 1));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 2, "FIN consumes one sequence number");
    assert_eq!(h.engine.state(conn), Ok(State::CloseWait));
    assert_eq!(h.take_events(), vec![EventKind::PeerClosed]);
    let mut buf = [0u8; 4];
    assert_eq!(h.engine.recv(conn, &mut buf), Ok(0), "end of stream");
    h.engine.close(conn).unwrap();
    let out = h.poll();
    assert_eq!(flags(&out), vec![TcpFlags::FIN | ACK]);
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 2));
    assert!(h.send(seg(ACK, X + 2, y + 2)).is_empty());
    assert_eq!(
        h.take_events(),
        vec![EventKind::Closed {
            reason: CloseReason::Normal
        }]
    );
    assert_eq!(h.engine.connection_count(), 0);
    assert_eq!(h.engine.time_wait_count(), 0, "the passive closer has no TIME-WAIT");
}

/// Half-close: in CLOSE-WAIT data keeps flowing toward the side that closed first.
#[test]
fn close_wait_send_still_delivers_data() {
    let (mut h, conn, y) = Harness::established();
    h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 1));
    h.engine.send(conn, b"more").unwrap();
    let out = h.poll();
    assert_eq!(out[0].payload, b"more");
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 2));
    h.engine.shutdown(conn).unwrap();
    let out = h.send(seg(ACK, X + 2, y + 5));
    assert_eq!(flags(&out), vec![TcpFlags::FIN | ACK]);
    assert_eq!(out[0].seq, y + 5);
    assert_eq!(h.engine.state(conn), Ok(State::LastAck));
}

// ----- closing: active close, TIME-WAIT ---------------------------------------------------------------------

/// RFC 9293 §3.6 case 1: close -> FIN (FIN-WAIT-1); its ACK -> FIN-WAIT-2; the peer's FIN -> ACK and TIME-WAIT.
#[test]
fn established_close_fin_wait_1_fin_wait_2_time_wait() {
    let (mut h, conn, y) = Harness::established();
    h.engine.shutdown(conn).unwrap();
    let out = h.poll();
    assert_eq!(flags(&out), vec![TcpFlags::FIN | ACK]);
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 1));
    assert_eq!(h.engine.state(conn), Ok(State::FinWait1));
    assert!(h.send(seg(ACK, X + 1, y + 2)).is_empty());
    assert_eq!(h.engine.state(conn), Ok(State::FinWait2));
    let out = h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!((out[0].seq, out[0].ack), (y + 2, X + 2));
    assert_eq!(
        h.take_events(),
        vec![
            EventKind::PeerClosed,
            EventKind::Closed {
                reason: CloseReason::Normal
            }
        ]
    );
    assert_eq!(h.engine.time_wait_count(), 1);
}

/// RFC 9293 §3.6 case 3 (Figure 13): simultaneous close through CLOSING to TIME-WAIT.
#[test]
fn fin_wait_1_fin_enters_closing_then_time_wait() {
    let (mut h, conn, y) = Harness::established();
    h.engine.shutdown(conn).unwrap();
    h.poll();
    let out = h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 1));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 2);
    assert_eq!(h.engine.state(conn), Ok(State::Closing));
    assert!(h.send(seg(ACK, X + 2, y + 2)).is_empty());
    assert_eq!(h.engine.time_wait_count(), 1);
    assert_eq!(h.engine.state(conn), Ok(State::Closed));
}

/// FIN-WAIT-1 receiving FIN and the ACK of our FIN in one segment goes straight to TIME-WAIT.
#[test]
fn fin_wait_1_fin_ack_enters_time_wait() {
    let (mut h, conn, y) = Harness::established();
    h.engine.close(conn).unwrap();
    h.poll();
    let out = h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(h.engine.time_wait_count(), 1);
    assert_eq!(
        h.engine.connection_count(),
        0,
        "closed by the application: the slot is free"
    );
}

fn time_wait() -> (Harness, u32) {
    let (mut h, conn, y) = Harness::established();
    h.engine.close(conn).unwrap();
    h.poll();
    h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
    assert_eq!(h.engine.time_wait_count(), 1);
    (h, y)
}

/// RFC 9293 §3.10.7.4 (TIME-WAIT, FIN): a retransmitted FIN is acknowledged again and 2*MSL restarts.
#[test]
fn time_wait_fin_again_is_reacked() {
    let (mut h, y) = time_wait();
    h.advance(MSL);
    let out = h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!((out[0].seq, out[0].ack), (y + 2, X + 2));
    h.advance(MSL + Duration::from_secs(1));
    assert_eq!(
        h.engine.time_wait_count(),
        1,
        "restarted: still there 2*MSL after the first FIN"
    );
    h.advance(MSL);
    assert_eq!(h.engine.time_wait_count(), 0);
}

/// Two TIME-WAIT records, each restarted by its peer's FIN: each 4-tuple keeps finding its own record, and each
/// record expires 2*MSL after its last FIN, then its 4-tuple is free.
#[test]
fn time_wait_fin_again_restarts_each_record_on_its_own() {
    let (mut h, y) = time_wait();
    // A second connection, from the next peer port, into TIME-WAIT too.
    let other = |repr: TcpRepr<'static>| TcpRepr {
        src_port: Port(PEER_PORT + 1),
        ..repr
    };
    let y2 = h.send(other(syn(X)))[0].seq;
    h.send(other(seg(ACK, X + 1, y2 + 1)));
    let conn2 = h.events.pop().unwrap().conn;
    h.engine.close(conn2).unwrap();
    h.poll();
    h.send(other(seg(TcpFlags::FIN | ACK, X + 1, y2 + 2)));
    assert_eq!(h.engine.time_wait_count(), 2);

    h.advance(MSL);
    for _ in 0..2 {
        let out = h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
        assert_eq!(flags(&out), vec![ACK]);
        assert_eq!(
            (out[0].seq, out[0].ack),
            (y + 2, X + 2),
            "the first connection's record answers"
        );
    }
    let out = h.send(other(seg(TcpFlags::FIN | ACK, X + 1, y2 + 2)));
    assert_eq!(
        (out[0].seq, out[0].ack),
        (y2 + 2, X + 2),
        "the second record answers for its own 4-tuple"
    );
    // The second record restarted last: both now end 2*MSL after this point.
    h.advance(MSL * 2 - Duration::from_millis(5));
    assert_eq!(h.engine.time_wait_count(), 2);
    h.advance(Duration::from_millis(10));
    assert_eq!(h.engine.time_wait_count(), 0);
    assert_eq!(h.engine.counters().time_wait_expired, 2);
    let out = h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
    assert_eq!(flags(&out), vec![TcpFlags::RST], "no record left for the 4-tuple");
}

/// RFC 1337: a RST does not end TIME-WAIT.
#[test]
fn time_wait_rst_is_ignored() {
    let (mut h, y) = time_wait();
    assert!(h.send(seg(TcpFlags::RST, X + 2, y + 2)).is_empty());
    assert_eq!(h.engine.time_wait_count(), 1);
    assert_eq!(h.engine.counters().drop_rst_time_wait, 1);
}

/// RFC 9293 MUST-13: TIME-WAIT lasts 2*MSL, then the record goes.
#[test]
fn time_wait_expires_after_two_msl() {
    let (mut h, _) = time_wait();
    h.advance(MSL * 2 - Duration::from_millis(5));
    assert_eq!(h.engine.time_wait_count(), 1);
    h.advance(Duration::from_millis(10));
    assert_eq!(h.engine.time_wait_count(), 0);
    assert_eq!(h.engine.timer_count(), 0);
}

/// A poll loop sleeps until `poll_timeout`: with only a TIME-WAIT record left it names the record's expiry, 2*MSL
/// after the wait began rounded up to the timer tick (1 ms), and the record goes at that instant, not before.
#[test]
fn time_wait_poll_timeout_is_its_expiry() {
    let (mut h, conn, y) = Harness::established();
    h.engine.close(conn).unwrap();
    h.poll();
    // Off the tick: the wait begins 300 us into a millisecond.
    h.now += Duration::from_micros(300);
    h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
    assert_eq!(h.engine.time_wait_count(), 1);
    let exact = h.now + MSL * 2;
    let expiry = Instant::from_micros(exact.as_micros().div_ceil(1000) * 1000);
    assert!(expiry >= exact);
    assert_eq!(h.engine.poll_timeout(), Some(expiry));
    h.now = expiry - Duration::from_micros(1);
    h.poll();
    assert_eq!(h.engine.time_wait_count(), 1);
    h.now = expiry;
    h.poll();
    assert_eq!(h.engine.time_wait_count(), 0);
    assert_eq!(h.engine.poll_timeout(), None);
}

/// RFC 6191 (no timestamps): a new SYN above the old RCV.NXT reopens the 4-tuple from TIME-WAIT; a lower one is
/// refused.
#[test]
fn time_wait_new_syn_with_higher_sequence_is_accepted() {
    let (mut h, _) = time_wait();
    let out = h.send(syn(X));
    assert_eq!(flags(&out), vec![ACK], "an old SYN is answered with the TIME-WAIT ACK");
    assert_eq!(h.engine.counters().time_wait_syn_refused, 1);
    let out = h.send(syn(X + 100_000));
    assert_eq!(flags(&out), vec![TcpFlags::SYN | ACK]);
    assert_eq!(out[0].ack, X + 100_001);
    assert_eq!(h.engine.counters().time_wait_reused, 1);
    assert_eq!(h.engine.time_wait_count(), 0);
}

/// MSL zero (benchmarks only): no TIME-WAIT record at all.
#[test]
fn fin_wait_2_fin_with_zero_msl_skips_time_wait() {
    let mut h = Harness::new(EngineConfig {
        msl: Duration::ZERO,
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let y = h.send(syn(X))[0].seq;
    h.send(seg(ACK, X + 1, y + 1));
    let conn = h.events.pop().unwrap().conn;
    h.engine.close(conn).unwrap();
    h.poll();
    h.send(seg(TcpFlags::FIN | ACK, X + 1, y + 2));
    assert_eq!(h.engine.time_wait_count(), 0);
    assert_eq!(h.engine.counters().time_wait_skipped, 1);
}

// ----- application calls ------------------------------------------------------------------------------------

/// Handles are generation-checked: after abort, the stale handle is an error, not the slot's next connection.
#[test]
fn closed_stale_handle_is_refused() {
    let (mut h, conn, y) = Harness::established();
    h.engine.abort(conn).unwrap();
    let out = h.poll();
    assert_eq!(
        flags(&out),
        vec![TcpFlags::RST | ACK],
        "ABORT sends RST (RFC 9293 §3.10.5)"
    );
    assert_eq!((out[0].seq, out[0].ack), (y + 1, X + 1));
    assert_eq!(h.engine.send(conn, b"x"), Err(synack::engine::Error::InvalidHandle));
    // The same slot serves the next connection under a new generation.
    let next = TcpRepr {
        src_port: Port(PEER_PORT + 1),
        ..syn(X)
    };
    let y2 = h.send(next)[0].seq;
    h.send(TcpRepr {
        src_port: Port(PEER_PORT + 1),
        ..seg(ACK, X + 1, y2 + 1)
    });
    let conn2 = h.events.pop().unwrap().conn;
    assert_eq!(conn2.index(), conn.index());
    assert_ne!(conn2, conn);
    assert_eq!(h.engine.send(conn, b"x"), Err(synack::engine::Error::InvalidHandle));
    assert_eq!(h.engine.send(conn2, b"x"), Ok(1));
}

/// Closing with unread data resets the connection (RFC 9293 SHLD-3 spirit, as Linux does).
#[test]
fn established_close_with_unread_data_sends_rst() {
    let (mut h, conn, y) = Harness::established();
    h.send(data(X + 1, y + 1, b"unread"));
    h.engine.close(conn).unwrap();
    let out = h.poll();
    assert_eq!(flags(&out), vec![TcpFlags::RST | ACK]);
    assert_eq!(out[0].seq, y + 1);
}

/// An orphan (closed by the application) in FIN-WAIT-2 whose peer never sends FIN is dropped after
/// `fin_wait2_timeout`, silently (as Linux's tcp_fin_timeout).
#[test]
fn fin_wait_2_orphan_times_out() {
    let (mut h, conn, y) = Harness::established();
    h.engine.close(conn).unwrap();
    h.poll();
    h.send(seg(ACK, X + 1, y + 2));
    assert_eq!(h.engine.connection_count(), 1);
    assert!(h.advance(Duration::from_secs(59)).is_empty());
    assert_eq!(h.engine.connection_count(), 1);
    assert!(
        h.advance(Duration::from_secs(2)).is_empty(),
        "no RST: the peer may simply be slow"
    );
    assert_eq!(h.engine.connection_count(), 0);
    assert_eq!(h.engine.counters().fin_wait2_timeouts, 1);
    assert_eq!(h.engine.timer_count(), 0);
}

/// A half-closed connection the application still holds waits in FIN-WAIT-2 as long as the peer likes
/// (RFC 9293: only an orphan is timed out).
#[test]
fn fin_wait_2_after_shutdown_waits_for_peer() {
    let (mut h, conn, y) = Harness::established();
    h.engine.shutdown(conn).unwrap();
    h.poll();
    h.send(seg(ACK, X + 1, y + 2));
    h.advance(Duration::from_secs(600));
    assert_eq!(h.engine.state(conn), Ok(State::FinWait2));
    let out = h.send(data(X + 1, y + 2, b"late"));
    assert_eq!(out[0].ack, X + 5, "data still flows toward the side that closed first");
}

/// Simultaneous open with data queued before the handshake: the ACK of our SYN must not eat a data byte, and
/// the data goes out once ESTABLISHED (RFC 9293 §3.10.7.4: SYN occupies one sequence number of its own).
#[test]
fn syn_received_simultaneous_open_keeps_queued_data() {
    let mut h = Harness::new(config());
    let (conn, x) = connect(&mut h);
    assert_eq!(h.engine.send(conn, b"early"), Ok(5));
    h.send(syn(5000));
    let out = h.send(seg(ACK, 5001, x + 1));
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].seq, out[0].payload.as_slice()), (x + 1, &b"early"[..]));
}

/// Delayed ACK (RFC 9293 SHLD-18, MUST-40): one segment is acknowledged after the delay, not at once; a second
/// full segment forces the ACK (SHLD-19).
#[test]
fn established_data_ack_is_delayed_then_sent() {
    let mut h = Harness::new(EngineConfig {
        delayed_ack: Some(Duration::from_millis(40)),
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let y = h.send(syn(X))[0].seq;
    h.send(seg(ACK, X + 1, y + 1));
    assert!(h.send(data(X + 1, y + 1, b"one")).is_empty(), "ACK held back");
    assert!(h.advance(Duration::from_millis(39)).is_empty());
    let out = h.advance(Duration::from_millis(2));
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 4);
    assert!(h.send(data(X + 4, y + 1, b"two")).is_empty());
    let out = h.send(data(X + 7, y + 1, b"three"));
    assert_eq!(flags(&out), vec![ACK], "every second segment is acknowledged at once");
    assert_eq!(out[0].ack, X + 12);
}

/// Nagle (RFC 9293 §3.7.4): with a small segment unacknowledged, the next small write waits for the ACK.
#[test]
fn established_nagle_holds_small_segment_until_ack() {
    let (mut h, conn, y) = Harness::established();
    h.engine.send(conn, b"a").unwrap();
    assert_eq!(h.poll().len(), 1);
    h.engine.send(conn, b"b").unwrap();
    assert!(h.poll().is_empty(), "held while 'a' is in flight");
    let out = h.send(seg(ACK, X + 1, y + 2));
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].seq, out[0].payload.as_slice()), (y + 2, &b"b"[..]));
    // With Nagle off (MUST-17) small writes go at once.
    h.engine.set_nodelay(conn, true).unwrap();
    h.engine.send(conn, b"c").unwrap();
    assert_eq!(h.poll().len(), 1);
    h.engine.send(conn, b"d").unwrap();
    assert_eq!(h.poll().len(), 1);
}

/// Zero window (RFC 9293 §3.8.6.1, MUST-36/37): no data goes into a closed window; the persist timer sends
/// probes; when the window opens the data flows.
#[test]
fn established_zero_window_probes_then_sends() {
    let (mut h, conn, y) = Harness::established();
    h.send(TcpRepr {
        window: 0,
        ..seg(ACK, X + 1, y + 1)
    });
    h.engine.send(conn, b"waiting").unwrap();
    assert!(h.poll().is_empty());
    let probe = h.advance(Duration::from_millis(1100));
    assert_eq!(flags(&probe), vec![ACK]);
    assert_eq!(
        probe[0].seq, y,
        "probe: an ACK one below SND.UNA elicits the peer's window"
    );
    assert!(probe[0].payload.is_empty());
    let out = h.send(TcpRepr {
        window: 1000,
        ..seg(ACK, X + 1, y + 1)
    });
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload, b"waiting");
    assert!(h.engine.counters().window_probes >= 1);
}

/// Fast retransmit (RFC 5681 §3.2): three duplicate ACKs resend the segment at SND.UNA before the RTO.
#[test]
fn established_three_dup_acks_fast_retransmit() {
    let (mut h, conn, y) = Harness::established();
    h.engine.set_nodelay(conn, true).unwrap();
    let chunk = [b'x'; 1000];
    for _ in 0..4 {
        h.engine.send(conn, &chunk).unwrap();
    }
    let out = h.poll();
    let sizes: Vec<usize> = out.iter().map(|o| o.payload.len()).collect();
    assert_eq!(sizes, vec![1460, 1460, 1080], "4000 bytes in MSS-sized segments");
    for _ in 0..2 {
        assert!(h.send(seg(ACK, X + 1, y + 1)).is_empty());
    }
    let out = h.send(seg(ACK, X + 1, y + 1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].seq, y + 1);
    assert_eq!(out[0].payload.len(), 1460);
    assert_eq!(h.engine.counters().fast_retransmits, 1);
}

/// PAWS (RFC 7323 §5): a segment whose TSval is older than TS.Recent is dropped with an ACK.
#[test]
fn established_old_timestamp_is_rejected_by_paws() {
    let mut h = Harness::new(EngineConfig {
        timestamps: true,
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let ts = |tsval| Some(TcpTimestamps { tsval, tsecr: 0 });
    let y = h.send(TcpRepr {
        timestamps: ts(1000),
        ..syn(X)
    })[0]
        .seq;
    h.send(TcpRepr {
        timestamps: ts(1001),
        ..seg(ACK, X + 1, y + 1)
    });
    let conn = h.events.pop().unwrap().conn;
    let out = h.send(TcpRepr {
        timestamps: ts(500),
        ..data(X + 1, y + 1, b"old")
    });
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(out[0].ack, X + 1, "not accepted");
    assert_eq!(h.engine.counters().drop_paws, 1);
    assert_eq!(h.engine.recv_queue(conn), Ok(0));
}

/// Window scaling (RFC 7323 §2.3): the peer's windows are shifted by its scale once the handshake is done.
#[test]
fn established_window_scale_applies_to_peer_window() {
    let mut h = Harness::listening();
    let y = h.send(TcpRepr {
        window_scale: Some(4),
        ..syn(X)
    })[0]
        .seq;
    h.send(TcpRepr {
        window: 1,
        ..seg(ACK, X + 1, y + 1)
    });
    let conn = h.events.pop().unwrap().conn;
    h.engine.set_nodelay(conn, true).unwrap();
    // A window of 1 << 4 = 16 bytes: a 40-byte write goes out 16 bytes at a time.
    h.engine.send(conn, &[7u8; 40]).unwrap();
    let out = h.poll();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].payload.len(), 16);
}

/// Keep-alive (RFC 9293 §3.8.4): off by default; when on, an idle connection is probed after the idle time and
/// reset after the configured unanswered probes.
#[test]
fn established_keepalive_probes_then_times_out() {
    let keepalive = synack::engine::KeepaliveConfig {
        idle: Duration::from_secs(10),
        interval: Duration::from_secs(1),
        probes: 2,
    };
    let mut h = Harness::new(EngineConfig {
        keepalive: Some(keepalive),
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let y = h.send(syn(X))[0].seq;
    h.send(seg(ACK, X + 1, y + 1));
    h.events.clear();
    assert!(h.advance(Duration::from_secs(9)).is_empty());
    let probe = h.advance(Duration::from_millis(1001));
    assert_eq!(flags(&probe), vec![ACK]);
    assert_eq!(probe[0].seq, y);
    assert_eq!(flags(&h.advance(Duration::from_millis(1001))), vec![ACK]);
    let out = h.advance(Duration::from_millis(1001));
    assert_eq!(flags(&out), vec![TcpFlags::RST | ACK]);
    assert_eq!(
        h.take_events(),
        vec![EventKind::Closed {
            reason: CloseReason::KeepaliveTimeout
        }]
    );
}

/// RFC 6191 §2 with timestamps: a SYN hitting TIME-WAIT is a new incarnation when its TSval is newer than the
/// last one seen, whatever its sequence number; an older TSval is refused.
#[test]
fn time_wait_new_syn_with_newer_timestamp_is_accepted() {
    let mut h = Harness::new(EngineConfig {
        timestamps: true,
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let ts = |tsval| Some(TcpTimestamps { tsval, tsecr: 0 });
    let y = h.send(TcpRepr {
        timestamps: ts(1000),
        ..syn(X)
    })[0]
        .seq;
    h.send(TcpRepr {
        timestamps: ts(1001),
        ..seg(ACK, X + 1, y + 1)
    });
    let conn = h.events.pop().unwrap().conn;
    h.engine.close(conn).unwrap();
    h.poll();
    h.send(TcpRepr {
        timestamps: ts(1002),
        ..seg(TcpFlags::FIN | ACK, X + 1, y + 2)
    });
    assert_eq!(h.engine.time_wait_count(), 1);
    // Older timestamp, higher sequence number: refused (the timestamp rule takes precedence).
    let out = h.send(TcpRepr {
        timestamps: ts(900),
        ..syn(X + 100_000)
    });
    assert_eq!(flags(&out), vec![ACK]);
    assert_eq!(h.engine.counters().time_wait_syn_refused, 1);
    // Newer timestamp, lower sequence number: accepted.
    let out = h.send(TcpRepr {
        timestamps: ts(2000),
        ..syn(X - 100_000)
    });
    assert_eq!(flags(&out), vec![TcpFlags::SYN | ACK]);
    assert_eq!(out[0].ack, X - 100_000 + 1);
    assert_eq!(h.engine.counters().time_wait_reused, 1);
}

/// RFC 9293 MUST-37: a zero window keeps the connection open as long as the peer answers the probes; a peer
/// that answers none of `data_retries` probes is gone, and the connection times out.
#[test]
fn established_zero_window_unanswered_probes_time_out() {
    let mut h = Harness::new(EngineConfig {
        data_retries: 3,
        rto_max: Duration::from_secs(2),
        ..config()
    });
    h.engine.listen(Port(US_PORT), 8).unwrap();
    let y = h.send(syn(X))[0].seq;
    h.send(TcpRepr {
        window: 0,
        ..seg(ACK, X + 1, y + 1)
    });
    let conn = h.events.pop().unwrap().conn;
    h.engine.send(conn, b"stuck").unwrap();
    h.poll();
    // Answered probes: still open after many of them.
    for _ in 0..10 {
        let probe = h.advance(Duration::from_secs(3));
        assert_eq!(flags(&probe), vec![ACK]);
        h.send(TcpRepr {
            window: 0,
            ..seg(ACK, X + 1, y + 1)
        });
    }
    assert_eq!(h.engine.state(conn), Ok(State::Established));
    // Unanswered: three more probes, then the end.
    for _ in 0..3 {
        assert_eq!(flags(&h.advance(Duration::from_secs(3))), vec![ACK]);
    }
    let out = h.advance(Duration::from_secs(3));
    assert_eq!(flags(&out), vec![TcpFlags::RST | ACK]);
    assert_eq!(
        h.take_events(),
        vec![EventKind::Closed {
            reason: CloseReason::TimedOut
        }]
    );
}

/// Each local address walks the ephemeral range on its own: alternating sources to one destination get the
/// same ports, so the whole (source, port) space is used.
#[test]
fn closed_connect_each_source_has_its_own_port_cursor() {
    let second = Ipv4Addr::new(198, 18, 0, 3);
    let mut h = Harness::new(EngineConfig {
        addresses: vec![US, second],
        ephemeral_ports: (5000, 5009),
        ..config()
    });
    let remote = SocketAddrV4::new(PEER, PEER_PORT);
    let mut ports = Vec::new();
    for i in 0..4 {
        let source = if i % 2 == 0 { US } else { second };
        let conn = h.engine.connect(h.now, SocketAddrV4::new(source, 0), remote).unwrap();
        ports.push((source, h.engine.flow(conn).unwrap().local_port.0));
    }
    assert_eq!(ports, vec![(US, 5000), (second, 5000), (US, 5001), (second, 5001)]);
}

/// Every RST sent is counted once (`rst_sent`), whichever rule produced it.
#[test]
fn syn_sent_bad_ack_rst_is_counted_once() {
    let mut h = Harness::new(config());
    let (_conn, x) = connect(&mut h);
    h.send(seg(TcpFlags::SYN | ACK, 5000, x + 10));
    assert_eq!(h.engine.counters().rst_sent, 1);
}
