//! The checks behind synack's fuzz targets, one public function per target.
//!
//! They live in a library rather than in the targets so that the `frame` target reuses the per-layer round trips,
//! and so that `cargo test` in this directory runs them on seed frames with a stable toolchain.
//!
//! Each function takes arbitrary bytes and panics only when synack breaks one of its promises:
//! - a `new_checked` view, once it accepted the bytes, has getters that never panic, and `parse` never panics;
//! - a `Repr` that parsed survives `emit` into a buffer of `buffer_len()` bytes and a second `parse` (with checksum
//!   verification) unchanged, apart from what `emit` documents it normalises (TCP SACK blocks that do not fit
//!   beside the other options, an IPv4 payload length that follows the re-emitted transport header).

use core::net::Ipv4Addr;

mod engine;
pub use engine::engine;

use synack::wire::arp::{self, ArpRepr};
use synack::wire::ethernet::{EtherType, EthernetRepr, Frame};
use synack::wire::icmpv4::{self, Icmpv4Repr};
use synack::wire::ipv4::{self, Ipv4Repr};
use synack::wire::tcp::{self, TcpOption, TcpOptionIter, TcpRepr};
use synack::wire::{ChecksumPolicy, IpProtocol};

/// Both checksum policies: `Verify` is what the engine uses on the wire, `Trust` lets the fuzzer past checksums.
const POLICIES: [ChecksumPolicy; 2] = [ChecksumPolicy::Verify, ChecksumPolicy::Trust];

/// Largest TCP option space (60-byte header minus the fixed 20).
const TCP_MAX_OPTIONS_LEN: usize = 40;

// ------------------------------------------------------------------------------------------------------------------
// Ethernet
// ------------------------------------------------------------------------------------------------------------------

/// Target `ethernet`: the frame view and `EthernetRepr`.
///
/// An untagged header has one encoding, so the re-emitted 14 bytes must equal the input's.
pub fn ethernet(data: &[u8]) {
    let Ok(frame) = Frame::new_checked(data) else {
        return;
    };
    let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.vlan_tag());
    let _ = frame.payload().len();
    let Ok(repr) = EthernetRepr::parse(&frame) else {
        return;
    };
    assert!(!repr.ethertype.is_vlan(), "EthernetRepr::parse accepted a tagged frame");
    let buf = ethernet_round_trip(&repr);
    assert_eq!(
        buf[..],
        data[..repr.buffer_len()],
        "re-emitted Ethernet header differs from the input"
    );
}

/// Emits `repr`, parses it back, asserts equality, and returns the emitted bytes.
fn ethernet_round_trip(repr: &EthernetRepr) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut Frame::new_unchecked(&mut buf[..]))
        .expect("EthernetRepr::emit failed on a buffer of buffer_len() bytes");
    let frame = Frame::new_checked(&buf[..]).expect("emitted Ethernet header fails new_checked");
    let again = EthernetRepr::parse(&frame).expect("emitted Ethernet header does not parse");
    assert_eq!(again, *repr, "Ethernet round trip changed the Repr");
    buf
}

// ------------------------------------------------------------------------------------------------------------------
// ARP
// ------------------------------------------------------------------------------------------------------------------

/// Target `arp`: the ARP view (any address lengths) and `ArpRepr` (Ethernet/IPv4 only).
///
/// An Ethernet/IPv4 ARP packet has one encoding, so the re-emitted 28 bytes must equal the input's.
pub fn arp(data: &[u8]) {
    let Ok(packet) = arp::Packet::new_checked(data) else {
        return;
    };
    let _ = (packet.hardware_type(), packet.protocol_type(), packet.operation());
    let _ = (packet.hardware_len(), packet.protocol_len());
    let _ = (packet.source_hardware_addr(), packet.source_protocol_addr());
    let _ = (packet.target_hardware_addr(), packet.target_protocol_addr());
    let Ok(repr) = ArpRepr::parse(&packet) else {
        return;
    };
    let buf = arp_round_trip(&repr);
    assert_eq!(
        buf[..],
        data[..ArpRepr::PACKET_LEN],
        "re-emitted ARP packet differs from the input"
    );
}

/// Emits `repr`, parses it back, asserts equality, and returns the emitted bytes.
fn arp_round_trip(repr: &ArpRepr) -> Vec<u8> {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut arp::Packet::new_unchecked(&mut buf[..]))
        .expect("ArpRepr::emit failed on a buffer of buffer_len() bytes");
    let packet = arp::Packet::new_checked(&buf[..]).expect("emitted ARP packet fails new_checked");
    let again = ArpRepr::parse(&packet).expect("emitted ARP packet does not parse");
    assert_eq!(again, *repr, "ARP round trip changed the Repr");
    buf
}

// ------------------------------------------------------------------------------------------------------------------
// IPv4
// ------------------------------------------------------------------------------------------------------------------

/// Target `ipv4`: the IPv4 view and `Ipv4Repr` under both checksum policies.
///
/// The re-emitted packet (20-byte header, the input's payload copied after it) must verify and parse to the same
/// Repr with the same payload; a packet that parses under `Verify` must parse identically under `Trust`.
pub fn ipv4(data: &[u8]) {
    let Ok(packet) = ipv4::Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.version(),
        packet.header_len(),
        packet.tos(),
        packet.dscp(),
        packet.ecn(),
    );
    let _ = (
        packet.total_len(),
        packet.ident(),
        packet.dont_frag(),
        packet.more_frags(),
    );
    let _ = (
        packet.frag_offset(),
        packet.is_fragment(),
        packet.ttl(),
        packet.next_header(),
    );
    let _ = (
        packet.checksum(),
        packet.src_addr(),
        packet.dst_addr(),
        packet.verify_checksum(),
    );
    let _ = (packet.options().len(), packet.payload().len());
    let mut verified = None;
    for policy in POLICIES {
        let Ok(repr) = Ipv4Repr::parse(&packet, policy) else {
            continue;
        };
        match (policy, verified) {
            (ChecksumPolicy::Verify, _) => {
                assert!(
                    packet.verify_checksum(),
                    "Ipv4Repr::parse(Verify) accepted a bad checksum"
                );
                verified = Some(repr);
            }
            (ChecksumPolicy::Trust, Some(v)) => assert_eq!(v, repr, "Verify and Trust disagree"),
            (ChecksumPolicy::Trust, None) => {}
        }
        assert!(!packet.is_fragment(), "Ipv4Repr::parse accepted a fragment");
        assert_eq!(
            repr.payload_len,
            packet.payload().len(),
            "payload_len differs from the view's payload"
        );
        ipv4_round_trip(&repr, packet.payload());
    }
}

/// Emits `repr` with `payload` after it, parses it back and asserts nothing changed.
fn ipv4_round_trip(repr: &Ipv4Repr, payload: &[u8]) {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut ipv4::Packet::new_unchecked(&mut buf[..]))
        .expect("Ipv4Repr::emit failed on a buffer of buffer_len() bytes");
    buf.get_mut(repr.header_len()..)
        .expect("buffer_len() shorter than header_len()")
        .copy_from_slice(payload);
    let packet = ipv4::Packet::new_checked(&buf[..]).expect("emitted IPv4 packet fails new_checked");
    assert!(packet.verify_checksum(), "emitted IPv4 header does not verify");
    let again = Ipv4Repr::parse(&packet, ChecksumPolicy::Verify).expect("emitted IPv4 packet does not parse");
    assert_eq!(again, *repr, "IPv4 round trip changed the Repr");
    assert_eq!(packet.payload(), payload, "IPv4 round trip changed the payload");
}

// ------------------------------------------------------------------------------------------------------------------
// ICMPv4
// ------------------------------------------------------------------------------------------------------------------

/// Target `icmpv4`: the ICMP view and `Icmpv4Repr` (echo, and errors with their quoted IPv4 header) under both
/// checksum policies.
pub fn icmpv4(data: &[u8]) {
    let Ok(packet) = icmpv4::Packet::new_checked(data) else {
        return;
    };
    let _ = (
        packet.msg_type(),
        packet.msg_code(),
        packet.checksum(),
        packet.verify_checksum(),
    );
    let _ = (
        packet.echo_ident(),
        packet.echo_seq_no(),
        packet.next_hop_mtu(),
        packet.data().len(),
    );
    let mut verified = None;
    for policy in POLICIES {
        let Ok(repr) = Icmpv4Repr::parse(&packet, policy) else {
            continue;
        };
        match (policy, verified) {
            (ChecksumPolicy::Verify, _) => {
                assert!(
                    packet.verify_checksum(),
                    "Icmpv4Repr::parse(Verify) accepted a bad checksum"
                );
                verified = Some(repr);
            }
            (ChecksumPolicy::Trust, Some(v)) => assert_eq!(v, repr, "Verify and Trust disagree"),
            (ChecksumPolicy::Trust, None) => {}
        }
        icmpv4_round_trip(&repr);
    }
}

/// Emits `repr`, parses it back and asserts nothing changed.
fn icmpv4_round_trip(repr: &Icmpv4Repr<'_>) {
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut icmpv4::Packet::new_unchecked(&mut buf[..]))
        .expect("Icmpv4Repr::emit failed on a buffer of buffer_len() bytes");
    let packet = icmpv4::Packet::new_checked(&buf[..]).expect("emitted ICMP message fails new_checked");
    assert!(packet.verify_checksum(), "emitted ICMP message does not verify");
    let again = Icmpv4Repr::parse(&packet, ChecksumPolicy::Verify).expect("emitted ICMP message does not parse");
    assert_eq!(again, *repr, "ICMP round trip changed the Repr");
}

// ------------------------------------------------------------------------------------------------------------------
// TCP
// ------------------------------------------------------------------------------------------------------------------

/// Target `tcp`: the first 8 bytes are the pseudo-header's source and destination addresses, the rest a segment.
///
/// Checks the view, `TcpRepr` under both checksum policies with its round trip, and walks [`TcpOptionIter`] over
/// the raw bytes as well as over the view's options.
pub fn tcp(data: &[u8]) {
    let Some((addrs, segment)) = data.split_first_chunk::<8>() else {
        tcp_options(data);
        return;
    };
    let [s0, s1, s2, s3, d0, d1, d2, d3] = *addrs;
    let (src, dst) = (Ipv4Addr::new(s0, s1, s2, s3), Ipv4Addr::new(d0, d1, d2, d3));
    tcp_options(segment);
    let Ok(packet) = tcp::Packet::new_checked(segment) else {
        return;
    };
    let _ = (
        packet.src_port(),
        packet.dst_port(),
        packet.seq_number(),
        packet.ack_number(),
    );
    let _ = (
        packet.header_len(),
        packet.flags(),
        packet.window_len(),
        packet.checksum(),
    );
    let _ = (packet.urgent_at(), packet.payload().len(), packet.segment_len());
    let _ = packet.verify_checksum(src, dst);
    tcp_options(packet.options());
    let mut verified = None;
    for policy in POLICIES {
        let Ok(repr) = TcpRepr::parse(&packet, src, dst, policy) else {
            continue;
        };
        match (policy, verified) {
            (ChecksumPolicy::Verify, _) => {
                assert!(
                    packet.verify_checksum(src, dst),
                    "TcpRepr::parse(Verify) accepted a bad checksum"
                );
                verified = Some(repr);
            }
            (ChecksumPolicy::Trust, Some(v)) => assert_eq!(v, repr, "Verify and Trust disagree"),
            (ChecksumPolicy::Trust, None) => {}
        }
        assert_ne!(repr.src_port.0, 0, "TcpRepr::parse accepted source port 0");
        assert_ne!(repr.dst_port.0, 0, "TcpRepr::parse accepted destination port 0");
        assert_eq!(
            repr.payload,
            packet.payload(),
            "TcpRepr payload differs from the view's"
        );
        assert_eq!(
            repr.segment_len(),
            packet.segment_len(),
            "segment_len differs between Repr and view"
        );
        tcp_round_trip(&repr, src, dst);
    }
}

/// What `repr` reads as after `emit`: only the SACK blocks that fit beside the other options in Linux's layout
/// (documented on `TcpRepr::sack_blocks`) survive.
fn tcp_as_emitted<'a>(repr: &TcpRepr<'a>) -> TcpRepr<'a> {
    let mut fixed = 0;
    if repr.mss.is_some() {
        fixed += 4; // MSS
    }
    if repr.timestamps.is_some() {
        fixed += 12; // NOP NOP TS, or SACK-permitted TS
    } else if repr.sack_permitted {
        fixed += 4; // NOP NOP SACK-permitted
    }
    if repr.window_scale.is_some() {
        fixed += 4; // NOP WS
    }
    // NOP NOP kind len, then 8 bytes per block.
    let room = TCP_MAX_OPTIONS_LEN.saturating_sub(fixed + 4) / 8;
    let mut out = *repr;
    out.sack_blocks.truncate(room);
    out
}

/// Emits `repr` over `src -> dst`, parses it back with verification and asserts it reads as [`tcp_as_emitted`].
fn tcp_round_trip(repr: &TcpRepr<'_>, src: Ipv4Addr, dst: Ipv4Addr) {
    let header_len = repr.header_len();
    assert!(
        (20..=60).contains(&header_len) && header_len.is_multiple_of(4),
        "TcpRepr::header_len() is {header_len}"
    );
    let mut buf = vec![0u8; repr.buffer_len()];
    repr.emit(&mut tcp::Packet::new_unchecked(&mut buf[..]), src, dst);
    let packet = tcp::Packet::new_checked(&buf[..]).expect("emitted TCP segment fails new_checked");
    assert_eq!(
        packet.header_len(),
        header_len,
        "emitted data offset differs from header_len()"
    );
    assert!(packet.verify_checksum(src, dst), "emitted TCP segment does not verify");
    let again = TcpRepr::parse(&packet, src, dst, ChecksumPolicy::Verify).expect("emitted TCP segment does not parse");
    assert_eq!(again, tcp_as_emitted(repr), "TCP round trip changed the Repr");
}

/// Walks [`TcpOptionIter`] over `bytes`: it must end within `bytes.len()` items, stop after its first error, and
/// every option it yields must survive `TcpOption::emit` and `TcpOption::parse`.
pub fn tcp_options(bytes: &[u8]) {
    let mut items = 0usize;
    let mut failed = false;
    for item in TcpOptionIter::new(bytes) {
        assert!(!failed, "TcpOptionIter yielded an item after an error");
        items += 1;
        assert!(
            items <= bytes.len(),
            "TcpOptionIter yielded more items than there are bytes"
        );
        match item {
            Ok(option) => tcp_option_round_trip(&option),
            Err(_) => failed = true,
        }
    }
}

/// Emits one option into exactly `buffer_len()` bytes and parses it back.
fn tcp_option_round_trip(option: &TcpOption<'_>) {
    let mut buf = vec![0u8; option.buffer_len()];
    let rest_len = option.emit(&mut buf).len();
    assert_eq!(rest_len, 0, "TcpOption::emit wrote fewer than buffer_len() bytes");
    let (rest, again) = TcpOption::parse(&buf).expect("emitted TCP option does not parse");
    assert!(rest.is_empty(), "emitted TCP option parses shorter than buffer_len()");
    assert_eq!(again, *option, "TCP option round trip changed it");
}

// ------------------------------------------------------------------------------------------------------------------
// Whole frames
// ------------------------------------------------------------------------------------------------------------------

/// Every layer of a frame that parsed all the way down, as the engine reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Layers<'a> {
    eth: EthernetRepr,
    net: Net<'a>,
}

/// What an Ethernet frame carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Net<'a> {
    Arp(ArpRepr),
    Ipv4(Ipv4Repr, Transport<'a>),
    /// An EtherType the engine drops; its payload is kept so the frame can be rebuilt.
    Other(&'a [u8]),
}

/// What an IPv4 packet carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport<'a> {
    Tcp(TcpRepr<'a>),
    Icmp(Icmpv4Repr<'a>),
    /// A protocol the engine drops; its payload is kept so the packet can be rebuilt.
    Other(&'a [u8]),
}

/// Parses `data` layer by layer the way `Engine::handle_frame` does (Ethernet, then ARP or IPv4, then TCP or ICMP,
/// all with checksum verification) and hands the layers to `visit` while the views they borrow from are alive.
///
/// `None` when any layer the engine would read fails to parse.
fn walk_frame<R>(data: &[u8], visit: impl FnOnce(Layers<'_>) -> R) -> Option<R> {
    let policy = ChecksumPolicy::Verify;
    let frame = Frame::new_checked(data).ok()?;
    let eth = EthernetRepr::parse(&frame).ok()?;
    match eth.ethertype {
        EtherType::Arp => {
            let packet = arp::Packet::new_checked(frame.payload()).ok()?;
            let arp = ArpRepr::parse(&packet).ok()?;
            Some(visit(Layers {
                eth,
                net: Net::Arp(arp),
            }))
        }
        EtherType::Ipv4 => {
            let packet = ipv4::Packet::new_checked(frame.payload()).ok()?;
            let ip = Ipv4Repr::parse(&packet, policy).ok()?;
            let payload = packet.payload();
            let transport = match ip.next_header {
                IpProtocol::Tcp => {
                    let segment = tcp::Packet::new_checked(payload).ok()?;
                    Transport::Tcp(TcpRepr::parse(&segment, ip.src_addr, ip.dst_addr, policy).ok()?)
                }
                IpProtocol::Icmp => {
                    let message = icmpv4::Packet::new_checked(payload).ok()?;
                    Transport::Icmp(Icmpv4Repr::parse(&message, policy).ok()?)
                }
                _ => Transport::Other(payload),
            };
            Some(visit(Layers {
                eth,
                net: Net::Ipv4(ip, transport),
            }))
        }
        _ => Some(visit(Layers {
            eth,
            net: Net::Other(frame.payload()),
        })),
    }
}

impl<'a> Layers<'a> {
    /// What the layers read as after [`Layers::emit`]: the IPv4 payload length follows the re-emitted transport
    /// header, and TCP keeps only the SACK blocks that fit. `None` if that no longer fits an IPv4 packet.
    fn as_emitted(&self) -> Option<Layers<'a>> {
        let net = match self.net {
            Net::Ipv4(ip, transport) => {
                let (transport, payload_len) = match transport {
                    Transport::Tcp(seg) => {
                        let seg = tcp_as_emitted(&seg);
                        (Transport::Tcp(seg), seg.buffer_len())
                    }
                    Transport::Icmp(message) => (transport, message.buffer_len()),
                    Transport::Other(payload) => (transport, payload.len()),
                };
                if payload_len > Ipv4Repr::MAX_PAYLOAD_LEN {
                    return None;
                }
                Net::Ipv4(Ipv4Repr { payload_len, ..ip }, transport)
            }
            other => other,
        };
        Some(Layers { eth: self.eth, net })
    }

    /// Builds the whole frame with every Repr's `emit`, as the engine's transmit path does. The layers must come
    /// from [`Layers::as_emitted`], so that the IPv4 payload length matches the transport's.
    fn emit(&self) -> Vec<u8> {
        let net_len = match self.net {
            Net::Arp(arp) => arp.buffer_len(),
            Net::Ipv4(ip, _) => ip.buffer_len(),
            Net::Other(payload) => payload.len(),
        };
        let mut buf = vec![0u8; self.eth.buffer_len() + net_len];
        let (head, rest) = buf.split_at_mut(self.eth.buffer_len());
        self.eth
            .emit(&mut Frame::new_unchecked(head))
            .expect("EthernetRepr::emit failed on its buffer_len()");
        match self.net {
            Net::Arp(arp) => arp
                .emit(&mut arp::Packet::new_unchecked(rest))
                .expect("ArpRepr::emit failed on its buffer_len()"),
            Net::Other(payload) => rest.copy_from_slice(payload),
            Net::Ipv4(ip, transport) => {
                ip.emit(&mut ipv4::Packet::new_unchecked(&mut *rest))
                    .expect("Ipv4Repr::emit failed on its buffer_len()");
                let body = rest
                    .get_mut(ip.header_len()..)
                    .expect("Ipv4Repr::buffer_len() below header_len()");
                match transport {
                    Transport::Tcp(seg) => {
                        seg.emit(&mut tcp::Packet::new_unchecked(body), ip.src_addr, ip.dst_addr);
                    }
                    Transport::Icmp(message) => message
                        .emit(&mut icmpv4::Packet::new_unchecked(body))
                        .expect("Icmpv4Repr::emit failed on its buffer_len()"),
                    Transport::Other(payload) => body.copy_from_slice(payload),
                }
            }
        }
        buf
    }
}

/// Target `frame`: a whole frame parsed layer by layer as the engine does; a frame that parses all the way down
/// is rebuilt with every layer's `emit` and must parse back to the same layers.
pub fn frame(data: &[u8]) {
    walk_frame(data, |layers| {
        let Some(expected) = layers.as_emitted() else {
            return;
        };
        let buf = expected.emit();
        let again = walk_frame(&buf, |again| {
            assert_eq!(again, expected, "frame round trip changed a layer")
        });
        assert!(again.is_some(), "rebuilt frame does not parse: {}", hex(&buf));
    });
}

/// Lower-case hex of `bytes`, for panic messages a developer can paste into a test.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// The committed seed inputs of one target (hand-built frames with correct checksums; see docs/fuzzing.md).
    fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("seeds").join(target);
        let mut out: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| {
                let path = entry.expect("seed directory entry").path();
                let name = path.display().to_string();
                (name, std::fs::read(&path).expect("seed file"))
            })
            .collect();
        out.sort();
        assert!(!out.is_empty(), "no seeds for {target}");
        out
    }

    /// Runs `check` on every seed of `target`, on each of its prefixes and on each single-bit flip of it.
    fn run_mutated(target: &str, check: fn(&[u8])) {
        for (_, seed) in seeds(target) {
            check(&seed);
            for len in 0..seed.len() {
                check(&seed[..len]);
            }
            let mut flipped = seed.clone();
            for bit in 0..seed.len() * 8 {
                flipped[bit / 8] ^= 1 << (bit % 8);
                check(&flipped);
                flipped[bit / 8] ^= 1 << (bit % 8);
            }
        }
    }

    #[test]
    fn frame_seeds_parse_all_the_way_down() {
        for (name, seed) in seeds("frame") {
            let known = walk_frame(&seed, |layers| {
                matches!(
                    layers.net,
                    Net::Arp(_) | Net::Ipv4(_, Transport::Tcp(_)) | Net::Ipv4(_, Transport::Icmp(_))
                )
            });
            assert_eq!(known, Some(true), "{name} does not parse down to ARP, TCP or ICMP");
        }
    }

    #[test]
    fn tcp_seeds_parse_with_checksum_verification() {
        for (name, seed) in seeds("tcp") {
            let (addrs, segment) = seed.split_at(8);
            let src = Ipv4Addr::new(addrs[0], addrs[1], addrs[2], addrs[3]);
            let dst = Ipv4Addr::new(addrs[4], addrs[5], addrs[6], addrs[7]);
            let packet = tcp::Packet::new_checked(segment).expect("seed segment");
            let repr = TcpRepr::parse(&packet, src, dst, ChecksumPolicy::Verify);
            assert!(repr.is_ok(), "{name}: {repr:?}");
        }
    }

    #[test]
    fn ethernet_mutated_seeds_hold_the_round_trip() {
        run_mutated("ethernet", ethernet);
    }

    #[test]
    fn arp_mutated_seeds_hold_the_round_trip() {
        run_mutated("arp", arp);
    }

    #[test]
    fn ipv4_mutated_seeds_hold_the_round_trip() {
        run_mutated("ipv4", ipv4);
    }

    #[test]
    fn icmpv4_mutated_seeds_hold_the_round_trip() {
        run_mutated("icmpv4", icmpv4);
    }

    #[test]
    fn tcp_mutated_seeds_hold_the_round_trip() {
        run_mutated("tcp", tcp);
    }

    #[test]
    fn frame_mutated_seeds_hold_the_round_trip() {
        run_mutated("frame", frame);
    }

    #[test]
    fn engine_mutated_seeds_keep_the_engine_whole() {
        run_mutated("engine", engine);
    }

    #[test]
    fn tcp_as_emitted_three_sacks_beside_timestamps_keeps_two() {
        let mut repr = TcpRepr {
            mss: Some(1460),
            timestamps: Some(synack::wire::tcp::TcpTimestamps { tsval: 1, tsecr: 2 }),
            ..TcpRepr::default()
        };
        for i in 0..3 {
            repr.sack_blocks
                .push(synack::wire::SeqNum(i * 10), synack::wire::SeqNum(i * 10 + 5));
        }
        assert_eq!(tcp_as_emitted(&repr).sack_blocks.len(), 2);
        assert_eq!(repr.header_len(), 20 + 4 + 12 + 4 + 16);
    }
}
