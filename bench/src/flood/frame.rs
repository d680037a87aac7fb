//! The flood's frames, written straight into transmit buffers with the stack's own frame writer
//! ([`synack::wire::tcp_writer`]): valid Ethernet, IPv4 and TCP with both checksums, so every frame gets past
//! a receiver's parsing and checksum checks and costs it the whole path a real segment of its kind costs.
//!
//! A SYN carries what a Linux SYN carries, in Linux's layout: MSS, SACK-permitted, timestamps (TSecr 0), NOP,
//! window scale; 74 bytes in all. ACKs carry NOP NOP TS, RSTs nothing.

use std::net::SocketAddrV4;

use synack::wire::ethernet::MacAddr;
use synack::wire::tcp::{TcpFlags, TcpTimestamps};
use synack::wire::tcp_writer::{L2_L3_LEN, Route, SegmentHeader, SegmentOptions, TcpOptions, frame_len, write_frame};
use synack::wire::{Port, SeqNum};

use super::cidr::Cidr;
use super::rng::{Rng, next_u32};
use super::settings::{FloodConfig, FloodKind, SourceOrder, SynOption};
use crate::config::{ConfigError, bad};

/// Builds one flood frame after another: each from a new spoofed source (see [`SourceOrder`]) with random
/// sequence number, IP identification and TSval.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    kind: FloodKind,
    src_mac: MacAddr,
    dst_mac: MacAddr,
    sources: Cidr,
    order: SourceOrder,
    port_first: u16,
    port_count: u64,
    target: SocketAddrV4,
    mss: Option<u16>,
    window_scale: Option<u8>,
    sack_permitted: bool,
    timestamps: bool,
    window: u16,
    tcp_header_len: usize,
    rng: Rng,
    index: u64,
}

impl FrameBuilder {
    /// A builder for `cfg`'s frames, sent from `src_mac`, with random numbers from `seed`. Refuses a
    /// configuration that breaks the address rule ([`FloodConfig::check_addresses`]) or has no target MAC.
    pub fn new(cfg: &FloodConfig, src_mac: [u8; 6], seed: u64) -> Result<FrameBuilder, ConfigError> {
        cfg.check_addresses()?;
        let dst_mac = cfg
            .target_mac
            .filter(|m| m.is_unicast())
            .ok_or_else(|| bad("target_mac", "the target's unicast MAC address"))?;
        let syn = cfg.kind == FloodKind::Syn;
        let mut b = FrameBuilder {
            kind: cfg.kind,
            src_mac: MacAddr(src_mac),
            dst_mac: MacAddr(dst_mac.0),
            sources: cfg.sources,
            order: cfg.source_order,
            port_first: cfg.source_ports[0],
            port_count: u64::from(cfg.source_ports[1].saturating_sub(cfg.source_ports[0])) + 1,
            target: cfg.target,
            mss: (syn && cfg.has_option(SynOption::Mss)).then_some(cfg.mss),
            window_scale: (syn && cfg.has_option(SynOption::WindowScale)).then_some(cfg.window_scale),
            sack_permitted: syn && cfg.has_option(SynOption::SackPermitted),
            timestamps: cfg.kind != FloodKind::Rst && cfg.has_option(SynOption::Timestamps),
            window: if cfg.kind == FloodKind::Rst { 0 } else { cfg.window },
            tcp_header_len: 0,
            rng: Rng::new(seed),
            index: 0,
        };
        let options = b.options(TcpTimestamps::default());
        b.tcp_header_len = b.header(Port(1), SeqNum(0), SeqNum(0), &options).header_len();
        Ok(b)
    }

    /// Bytes of every frame this builder writes (all frames of a flood have the same shape).
    pub fn frame_len(&self) -> usize {
        frame_len(self.tcp_header_len, 0)
    }

    /// Frames written so far.
    pub fn built(&self) -> u64 {
        self.index
    }

    fn options(&self, ts: TcpTimestamps) -> TcpOptions<'static> {
        TcpOptions {
            mss: self.mss,
            window_scale: self.window_scale,
            sack_permitted: self.sack_permitted,
            timestamps: self.timestamps.then_some(ts),
            sack_blocks: &[],
        }
    }

    fn header<'a>(&self, src_port: Port, seq: SeqNum, ack: SeqNum, options: &'a TcpOptions<'a>) -> SegmentHeader<'a> {
        let (flags, options) = match self.kind {
            FloodKind::Syn => (TcpFlags::SYN, SegmentOptions::Any(options)),
            FloodKind::Ack => (TcpFlags::ACK, SegmentOptions::Timestamps(options.timestamps)),
            FloodKind::Rst => (TcpFlags::RST, SegmentOptions::Timestamps(None)),
        };
        SegmentHeader {
            src_port,
            dst_port: Port(self.target.port()),
            seq,
            ack,
            flags,
            window: self.window,
            options,
        }
    }

    /// The next spoofed (address, port).
    fn next_source(&mut self) -> (std::net::Ipv4Addr, u16) {
        let (addr_index, port_index) = match self.order {
            SourceOrder::Random => (self.rng.below(self.sources.size()), self.rng.below(self.port_count)),
            SourceOrder::Sequential => (self.index, (self.index / self.sources.size()) % self.port_count),
        };
        // `port_index < port_count <= last - first + 1`, so the sum is at most `last`.
        let port = self.port_first.saturating_add(port_index as u16);
        (self.sources.nth(addr_index), port)
    }

    /// Writes the next frame into `frame`, which must be [`FrameBuilder::frame_len`] bytes (another length is
    /// left partly written, never a panic: see [`write_frame`]).
    pub fn write(&mut self, frame: &mut [u8]) {
        let (src_addr, src_port) = self.next_source();
        let seq = SeqNum(next_u32(&mut self.rng));
        let ack = SeqNum(if self.kind == FloodKind::Ack {
            next_u32(&mut self.rng)
        } else {
            0
        });
        let ts = TcpTimestamps {
            tsval: next_u32(&mut self.rng),
            tsecr: if self.kind == FloodKind::Ack {
                next_u32(&mut self.rng)
            } else {
                0
            },
        };
        let ident = next_u32(&mut self.rng) as u16;
        let options = self.options(ts);
        let header = self.header(Port(src_port), seq, ack, &options);
        let route = Route {
            src_mac: self.src_mac,
            dst_mac: self.dst_mac,
            src_addr,
            dst_addr: *self.target.ip(),
        };
        debug_assert_eq!(frame.len(), L2_L3_LEN + self.tcp_header_len);
        write_frame(frame, &route, ident, &header, self.tcp_header_len, [&[], &[]]);
        self.index += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use synack::wire::ChecksumPolicy;
    use synack::wire::ethernet::{EtherType, EthernetRepr, Frame};
    use synack::wire::ipv4::{self, Ipv4Repr};
    use synack::wire::tcp::{self, TcpRepr};

    use super::*;
    use crate::flood::mac::Mac;

    const SRC_MAC: [u8; 6] = [2, 0x53, 0, 0, 0, 1];
    const DST_MAC: [u8; 6] = [2, 0x53, 0, 0, 0, 2];

    fn config(kind: FloodKind, order: SourceOrder) -> FloodConfig {
        FloodConfig {
            interface: "veth0".into(),
            kind,
            source_order: order,
            sources: "198.19.4.0/30".parse().unwrap(),
            source_ports: [5000, 5001],
            target: SocketAddrV4::new(Ipv4Addr::new(198, 18, 0, 2), 8080),
            target_mac: Some(Mac(DST_MAC)),
            ..FloodConfig::default()
        }
    }

    /// Parses a frame back with synack's wire code, verifying both checksums.
    fn parse(frame: &[u8]) -> (EthernetRepr, Ipv4Repr, TcpRepr<'_>) {
        let eth_frame = Frame::new_checked(frame).expect("ethernet");
        let eth = EthernetRepr::parse(&eth_frame).expect("ethernet repr");
        let ip_packet = ipv4::Packet::new_checked(&frame[14..]).expect("ipv4");
        assert!(ip_packet.verify_checksum());
        let ip = Ipv4Repr::parse(&ip_packet, ChecksumPolicy::Verify).expect("ipv4 repr");
        let tcp_packet = tcp::Packet::new_checked(&frame[L2_L3_LEN..]).expect("tcp");
        assert!(tcp_packet.verify_checksum(ip.src_addr, ip.dst_addr));
        let seg = TcpRepr::parse(&tcp_packet, ip.src_addr, ip.dst_addr, ChecksumPolicy::Verify).expect("tcp repr");
        (eth, ip, seg)
    }

    fn frames(b: &mut FrameBuilder, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|_| {
                let mut f = vec![0xa5; b.frame_len()];
                b.write(&mut f);
                f
            })
            .collect()
    }

    #[test]
    fn syn_flood_frame_parses_back_as_a_linux_like_syn() {
        let cfg = config(FloodKind::Syn, SourceOrder::Random);
        let mut b = FrameBuilder::new(&cfg, SRC_MAC, 42).unwrap();
        assert_eq!(b.frame_len(), 74);
        for f in frames(&mut b, 64) {
            let (eth, ip, seg) = parse(&f);
            assert_eq!(eth.src_addr, MacAddr(SRC_MAC));
            assert_eq!(eth.dst_addr, MacAddr(DST_MAC));
            assert_eq!(eth.ethertype, EtherType::Ipv4);
            assert!(cfg.sources.contains(ip.src_addr), "{}", ip.src_addr);
            assert_eq!(ip.dst_addr, *cfg.target.ip());
            assert_eq!((ip.ttl, ip.dont_frag, ip.payload_len), (64, true, 40));
            assert_eq!(seg.flags, TcpFlags::SYN);
            assert!((5000..=5001).contains(&seg.src_port.0));
            assert_eq!(seg.dst_port, Port(8080));
            assert_eq!(seg.mss, Some(1460));
            assert_eq!(seg.window_scale, Some(7));
            assert!(seg.sack_permitted);
            assert_eq!(seg.timestamps.map(|t| t.tsecr), Some(0));
            assert_eq!(seg.window, 64240);
            assert_eq!(seg.ack, SeqNum(0));
            assert!(seg.payload.is_empty());
        }
        assert_eq!(b.built(), 64);
    }

    #[test]
    fn syn_flood_frames_differ_in_sequence_number() {
        let mut b = FrameBuilder::new(&config(FloodKind::Syn, SourceOrder::Random), SRC_MAC, 1).unwrap();
        let fs = frames(&mut b, 32);
        let mut seqs: Vec<u32> = fs.iter().map(|f| parse(f).2.seq.0).collect();
        seqs.sort_unstable();
        seqs.dedup();
        assert_eq!(seqs.len(), 32);
    }

    #[test]
    fn syn_flood_without_options_writes_a_bare_syn() {
        let cfg = FloodConfig {
            options: vec![],
            ..config(FloodKind::Syn, SourceOrder::Random)
        };
        let mut b = FrameBuilder::new(&cfg, SRC_MAC, 3).unwrap();
        assert_eq!(b.frame_len(), 54);
        let f = &frames(&mut b, 1)[0];
        let (_, _, seg) = parse(f);
        assert_eq!(
            (seg.mss, seg.window_scale, seg.sack_permitted, seg.timestamps),
            (None, None, false, None)
        );
    }

    #[test]
    fn sequential_sources_walk_addresses_then_ports() {
        let mut b = FrameBuilder::new(&config(FloodKind::Syn, SourceOrder::Sequential), SRC_MAC, 5).unwrap();
        let got: Vec<(Ipv4Addr, u16)> = frames(&mut b, 9)
            .iter()
            .map(|f| {
                let (_, ip, seg) = parse(f);
                (ip.src_addr, seg.src_port.0)
            })
            .collect();
        let a = |last| Ipv4Addr::new(198, 19, 4, last);
        assert_eq!(
            got,
            vec![
                (a(0), 5000),
                (a(1), 5000),
                (a(2), 5000),
                (a(3), 5000),
                (a(0), 5001),
                (a(1), 5001),
                (a(2), 5001),
                (a(3), 5001),
                (a(0), 5000),
            ]
        );
    }

    #[test]
    fn ack_and_rst_floods_parse_back_with_their_flags() {
        let mut b = FrameBuilder::new(&config(FloodKind::Ack, SourceOrder::Random), SRC_MAC, 9).unwrap();
        assert_eq!(b.frame_len(), 66);
        let ack = frames(&mut b, 1);
        let (_, _, seg) = parse(&ack[0]);
        assert_eq!(seg.flags, TcpFlags::ACK);
        assert!(seg.timestamps.is_some());
        assert_eq!((seg.mss, seg.window_scale, seg.sack_permitted), (None, None, false));

        let mut b = FrameBuilder::new(&config(FloodKind::Rst, SourceOrder::Random), SRC_MAC, 9).unwrap();
        assert_eq!(b.frame_len(), 54);
        let rst = frames(&mut b, 1);
        let (_, _, seg) = parse(&rst[0]);
        assert_eq!(seg.flags, TcpFlags::RST);
        assert_eq!((seg.window, seg.timestamps), (0, None));
    }

    #[test]
    fn builder_config_outside_the_benchmark_range_is_refused() {
        let cfg = FloodConfig {
            sources: "10.0.0.0/8".parse().unwrap(),
            ..config(FloodKind::Syn, SourceOrder::Random)
        };
        let e = FrameBuilder::new(&cfg, SRC_MAC, 1).unwrap_err();
        assert!(e.0.contains("198.18.0.0/15"), "{e}");
        let cfg = FloodConfig {
            target: "192.0.2.1:80".parse().unwrap(),
            ..config(FloodKind::Syn, SourceOrder::Random)
        };
        assert!(FrameBuilder::new(&cfg, SRC_MAC, 1).is_err());
        let cfg = FloodConfig {
            target_mac: None,
            ..config(FloodKind::Syn, SourceOrder::Random)
        };
        assert!(FrameBuilder::new(&cfg, SRC_MAC, 1).is_err());
    }
}
