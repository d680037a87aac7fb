//! Criterion benches of synack's wire layer on the frame the stack meets most: a Linux client's SYN.
//!
//! - `wire/parse_syn`: Ethernet -> IPv4 -> TCP with both checksums verified, as `Engine::handle_frame` reads it.
//! - `wire/emit_syn`: the same SYN written into a 74-byte buffer with both checksums, as the transmit path does.
//! - `checksum/data/N`: the ones-complement sum over N bytes, reported as throughput.
//!
//! Run with `cargo bench -p synack-bench --bench wire`; `cargo test --all-targets` runs each once as a test.

use core::net::Ipv4Addr;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use synack::wire::ethernet::{EtherType, EthernetRepr, Frame, MacAddr};
use synack::wire::ipv4::{self, Ipv4Repr};
use synack::wire::tcp::{self, TcpFlags, TcpRepr, TcpTimestamps};
use synack::wire::{ChecksumPolicy, IpProtocol, Port, SeqNum, checksum};

const CLIENT_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);
const SERVER_MAC: MacAddr = MacAddr([0x02, 0x00, 0x00, 0x00, 0x00, 0x02]);
const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// A Linux SYN, 198.18.0.1:43210 -> 198.18.0.2:80, as it leaves the client: IPv4 ident 0x1c46, DF, TTL 64;
/// TCP seq 0x5f3a91c4, window 64240, options MSS 1460, SACK-permitted + TS (tsval 0x1b2c3d4e, tsecr 0), NOP WS 7.
const SYN_FRAME: [u8; 74] = [
    0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, // Ethernet, IPv4
    0x45, 0x00, 0x00, 0x3c, 0x1c, 0x46, 0x40, 0x00, 0x40, 0x06, 0x92, 0x4e, // IPv4: 60 bytes, DF, TTL 64, TCP
    0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x02, // 198.18.0.1 -> 198.18.0.2
    0xa8, 0xca, 0x00, 0x50, 0x5f, 0x3a, 0x91, 0xc4, 0x00, 0x00, 0x00, 0x00, // ports 43210 -> 80, seq, ack 0
    0xa0, 0x02, 0xfa, 0xf0, 0xce, 0x53, 0x00, 0x00, // 40-byte header, SYN, window 64240, checksum
    0x02, 0x04, 0x05, 0xb4, // MSS 1460
    0x04, 0x02, 0x08, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, 0x00, 0x00, 0x00, 0x00, // SACK-permitted, TS
    0x01, 0x03, 0x03, 0x07, // NOP, WS 7
];

const ETH_LEN: usize = EthernetRepr::HEADER_LEN;
const L2_L3_LEN: usize = ETH_LEN + Ipv4Repr::HEADER_LEN;

/// The layers of [`SYN_FRAME`] as Reprs, for the emit bench.
fn syn_reprs() -> (EthernetRepr, Ipv4Repr, TcpRepr<'static>) {
    let eth = EthernetRepr {
        src_addr: CLIENT_MAC,
        dst_addr: SERVER_MAC,
        ethertype: EtherType::Ipv4,
    };
    let tcp = TcpRepr {
        src_port: Port(43210),
        dst_port: Port(80),
        seq: SeqNum(0x5f3a_91c4),
        flags: TcpFlags::SYN,
        window: 64240,
        mss: Some(1460),
        window_scale: Some(7),
        sack_permitted: true,
        timestamps: Some(TcpTimestamps {
            tsval: 0x1b2c_3d4e,
            tsecr: 0,
        }),
        ..TcpRepr::default()
    };
    let ip = Ipv4Repr {
        src_addr: CLIENT,
        dst_addr: SERVER,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.header_len(),
        ttl: 64,
        dont_frag: true,
        ident: 0x1c46,
        tos: 0,
    };
    (eth, ip, tcp)
}

/// Reads a frame the way the engine does (each layer's view, then its Repr, checksums verified) and hands the
/// layers to `visit` while the views they borrow from are alive. `None` if any layer fails.
#[inline]
fn parse_frame<R>(frame: &[u8], visit: impl FnOnce(&EthernetRepr, &Ipv4Repr, &TcpRepr<'_>) -> R) -> Option<R> {
    let eth_frame = Frame::new_checked(frame).ok()?;
    let eth = EthernetRepr::parse(&eth_frame).ok()?;
    if eth.ethertype != EtherType::Ipv4 {
        return None;
    }
    let packet = ipv4::Packet::new_checked(eth_frame.payload()).ok()?;
    let ip = Ipv4Repr::parse(&packet, ChecksumPolicy::Verify).ok()?;
    if ip.next_header != IpProtocol::Tcp {
        return None;
    }
    let segment = tcp::Packet::new_checked(packet.payload()).ok()?;
    let seg = TcpRepr::parse(&segment, ip.src_addr, ip.dst_addr, ChecksumPolicy::Verify).ok()?;
    Some(visit(&eth, &ip, &seg))
}

/// Writes the SYN the way the transmit path does: Ethernet, IPv4 with its checksum, then the TCP header in place
/// and its checksum over the pseudo-header.
#[inline]
fn emit_frame(buf: &mut [u8; 74], eth: &EthernetRepr, ip: &Ipv4Repr, seg: &TcpRepr<'_>) {
    let (l2, rest) = buf.split_at_mut(ETH_LEN);
    let _ = eth.emit(&mut Frame::new_unchecked(l2));
    let _ = ip.emit(&mut ipv4::Packet::new_unchecked(&mut *rest));
    let mut segment = tcp::Packet::new_unchecked(&mut buf[L2_L3_LEN..]);
    seg.emit_header(&mut segment);
    segment.fill_checksum(ip.src_addr, ip.dst_addr);
}

/// Checks, before timing anything, that both benches do the work they claim: the frame parses to the expected
/// Reprs and emitting them reproduces it byte for byte.
fn check_syn_frame() {
    let (eth, ip, seg) = syn_reprs();
    let parsed = parse_frame(&SYN_FRAME, |e, i, t| {
        assert_eq!(
            (*e, *i, *t),
            (eth, ip, seg),
            "SYN_FRAME parses to other layers than expected"
        );
    });
    assert!(parsed.is_some(), "SYN_FRAME does not parse");
    let mut buf = [0u8; 74];
    emit_frame(&mut buf, &eth, &ip, &seg);
    assert_eq!(buf, SYN_FRAME, "emitting the SYN does not reproduce SYN_FRAME");
}

fn bench_frames(c: &mut Criterion) {
    check_syn_frame();
    let mut group = c.benchmark_group("wire");
    group.throughput(Throughput::Elements(1));
    group.bench_function("parse_syn", |b| {
        b.iter(|| parse_frame(black_box(&SYN_FRAME), |_, ip, seg| (ip.payload_len, seg.seq, seg.mss)))
    });
    let (eth, ip, seg) = syn_reprs();
    let mut buf = [0u8; 74];
    group.bench_function("emit_syn", |b| {
        b.iter(|| {
            emit_frame(black_box(&mut buf), black_box(&eth), black_box(&ip), black_box(&seg));
            buf[L2_L3_LEN + 16]
        })
    });
    group.finish();
}

fn bench_checksum(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    for len in [64usize, 512, 1460] {
        // Not all zeros or all ones, so no sum short-cuts to a constant.
        let data: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(7)).collect();
        group.throughput(Throughput::Bytes(len as u64));
        group.bench_function(format!("data/{len}"), |b| b.iter(|| checksum::data(black_box(&data))));
    }
    group.finish();
}

criterion_group!(benches, bench_frames, bench_checksum);
criterion_main!(benches);
