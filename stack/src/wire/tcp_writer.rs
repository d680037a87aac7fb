//! A direct writer for the frames synack transmits: Ethernet + IPv4 + TCP headers at fixed offsets, the options,
//! the payload and both checksums, in one go.
//!
//! [`TcpRepr::emit`](super::tcp::TcpRepr::emit) plus the Ethernet and IPv4 emits go through views with a bounds
//! check per field, a 100-byte `Repr` with inline SACK blocks, and two separate checksum passes. Sending is on the
//! per-segment hot path (every data segment, ACK, SYN and FIN), so this module writes the fixed 54 bytes through
//! one fixed-size array view, sums the IPv4 header from the values it writes, and sums the TCP segment (header and
//! payload together) once, seeded with the pseudo-header (RFC 9293 §3.1).
//!
//! The output is byte for byte what `EthernetRepr::emit` + `Ipv4Repr::emit` (TTL 64, DF, TOS 0) +
//! `TcpRepr::emit` write for the same values: the option layout is Linux's, as documented in [`super::tcp`], and
//! the tests below compare the two for every option combination. Nothing here knows about connections: callers
//! pass plain values.

use core::net::Ipv4Addr;

use super::checksum;
use super::ethernet::MacAddr;
use super::tcp::{HEADER_LEN as TCP_HEADER_LEN, MAX_OPTIONS_LEN, TcpFlags, TcpTimestamps};
use super::{IpProtocol, Port, SeqNum};

/// Ethernet header bytes.
pub const ETHERNET_LEN: usize = 14;
/// IPv4 header bytes (synack sends no IP options).
pub const IPV4_LEN: usize = 20;
/// Ethernet + IPv4 header bytes in front of every TCP segment or ICMP message synack sends.
pub const L2_L3_LEN: usize = ETHERNET_LEN + IPV4_LEN;
/// Bytes from the start of the frame to the first TCP option.
pub const FIXED_LEN: usize = L2_L3_LEN + TCP_HEADER_LEN;

/// Time to live of every datagram synack sends (Linux's default, `net.ipv4.ip_default_ttl`).
const TTL: u8 = 64;
/// The IPv4 flags/fragment-offset word: Don't Fragment, offset 0 (RFC 791; synack never fragments).
const FLAGS_DF: u16 = 0x4000;
/// IPv4 version 4, header length 5 words, in the first byte.
const VERSION_IHL: u8 = 0x45;

/// Option kinds (IANA "TCP Option Kind Numbers").
const NOP: u8 = 1;
const KIND_MSS: u8 = 2;
const KIND_WINDOW_SCALE: u8 = 3;
const KIND_SACK_PERMITTED: u8 = 4;
const KIND_SACK: u8 = 5;
const KIND_TIMESTAMPS: u8 = 8;

/// Bytes of each option chunk in Linux's layout (see [`super::tcp`]).
const MSS_LEN: usize = 4;
const TIMESTAMPS_LEN: usize = 12;
const SACK_PERMITTED_LEN: usize = 4;
const WINDOW_SCALE_LEN: usize = 4;
const SACK_PREFIX_LEN: usize = 4;
const SACK_BLOCK_LEN: usize = 8;

/// The link and network addresses of a frame: constant for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// Our MAC address.
    pub src_mac: MacAddr,
    /// The next hop's MAC address.
    pub dst_mac: MacAddr,
    /// Our IPv4 address.
    pub src_addr: Ipv4Addr,
    /// The peer's IPv4 address.
    pub dst_addr: Ipv4Addr,
}

/// The TCP header of a segment to write, with its options as plain values (the emit side of
/// [`TcpRepr`](super::tcp::TcpRepr), without the payload and the urgent pointer, which synack never sets).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SegmentHeader<'a> {
    /// Source port.
    pub src_port: Port,
    /// Destination port.
    pub dst_port: Port,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgment number; written as 0 unless `flags` has ACK, like `TcpRepr::emit`.
    pub ack: SeqNum,
    /// Control bits.
    pub flags: TcpFlags,
    /// The window field as on the wire (already scaled down).
    pub window: u16,
    /// The options.
    pub options: SegmentOptions<'a>,
}

impl SegmentHeader<'_> {
    /// The TCP header length written: 20 plus the options, a multiple of 4 and at most 60 (the same as
    /// `TcpRepr::header_len` for the same values).
    #[inline]
    pub fn header_len(&self) -> usize {
        TCP_HEADER_LEN + self.options.len()
    }
}

/// The options of a segment, split by how often each shape is sent.
///
/// After the handshake a connection's segments carry timestamps or nothing, unless it has SACK blocks to report:
/// that shape is a variant of its own, so the hot path sizes, writes and sums its options without looking at
/// the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentOptions<'a> {
    /// NOP NOP TS, or no options at all.
    Timestamps(Option<TcpTimestamps>),
    /// Any combination (SYNs, SACK blocks), by reference: the enum stays two words, which the hot path passes
    /// and matches in registers rather than copying a whole `TcpOptions` around for the rare shape.
    Any(&'a TcpOptions<'a>),
}

impl Default for SegmentOptions<'_> {
    fn default() -> Self {
        SegmentOptions::Timestamps(None)
    }
}

impl<'a> SegmentOptions<'a> {
    /// The same options as a [`TcpOptions`].
    #[inline]
    pub fn to_options(self) -> TcpOptions<'a> {
        match self {
            SegmentOptions::Timestamps(timestamps) => TcpOptions {
                timestamps,
                ..TcpOptions::default()
            },
            SegmentOptions::Any(options) => *options,
        }
    }

    /// Option bytes written: a multiple of 4, at most 40.
    #[inline(always)]
    pub fn len(&self) -> usize {
        match self {
            SegmentOptions::Timestamps(timestamps) => {
                if timestamps.is_some() {
                    TIMESTAMPS_LEN
                } else {
                    0
                }
            }
            SegmentOptions::Any(options) => options.len(),
        }
    }

    /// Whether no option is written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes the options into `out`, which is exactly [`SegmentOptions::len`] bytes.
    ///
    /// Returns their checksum contribution as a plain sum of 32-bit values when it is known without reading
    /// them back (timestamps or nothing), `None` when the caller must sum the bytes.
    #[inline(always)]
    fn write(&self, out: &mut [u8]) -> Option<u64> {
        match *self {
            SegmentOptions::Timestamps(None) => Some(0),
            SegmentOptions::Timestamps(Some(ts)) => {
                // A fixed-size view: no cursor, no bounds checks.
                if let Ok(out) = <&mut [u8; TIMESTAMPS_LEN]>::try_from(out) {
                    write_timestamps(out, [NOP, NOP], ts);
                }
                let kind_len = u32::from_be_bytes([NOP, NOP, KIND_TIMESTAMPS, 10]);
                Some(u64::from(kind_len) + u64::from(ts.tsval) + u64::from(ts.tsecr))
            }
            SegmentOptions::Any(options) => {
                write_options_slow(out, options);
                None
            }
        }
    }
}

/// The options of a segment to write, as plain values, in any combination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpOptions<'a> {
    /// Maximum segment size option.
    pub mss: Option<u16>,
    /// Window scale option (the shift count).
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// Timestamps option.
    pub timestamps: Option<TcpTimestamps>,
    /// SACK blocks; only as many as fit in the option space are written (RFC 2018 §3).
    pub sack_blocks: &'a [(SeqNum, SeqNum)],
}

impl TcpOptions<'_> {
    /// Option bytes of everything but the SACK blocks.
    #[inline]
    fn fixed_len(&self) -> usize {
        let mut len = 0;
        if self.mss.is_some() {
            len += MSS_LEN;
        }
        if self.timestamps.is_some() {
            len += TIMESTAMPS_LEN;
        } else if self.sack_permitted {
            len += SACK_PERMITTED_LEN;
        }
        if self.window_scale.is_some() {
            len += WINDOW_SCALE_LEN;
        }
        len
    }

    /// How many SACK blocks fit after `fixed` option bytes (3 beside timestamps, 4 alone).
    #[inline]
    fn sack_blocks_written(&self, fixed: usize) -> usize {
        if self.sack_blocks.is_empty() {
            return 0;
        }
        let room = MAX_OPTIONS_LEN.saturating_sub(fixed + SACK_PREFIX_LEN) / SACK_BLOCK_LEN;
        self.sack_blocks.len().min(room)
    }

    /// How many of the SACK blocks are written (as many as fit beside the other options).
    #[inline]
    pub fn sack_blocks_fitting(&self) -> usize {
        self.sack_blocks_written(self.fixed_len())
    }

    /// Option bytes written in Linux's layout: a multiple of 4, at most 40.
    #[inline]
    pub fn len(&self) -> usize {
        let fixed = self.fixed_len();
        let sacks = self.sack_blocks_written(fixed);
        let sack_len = if sacks == 0 {
            0
        } else {
            SACK_PREFIX_LEN + SACK_BLOCK_LEN * sacks
        };
        fixed + sack_len
    }

    /// Whether no option is written.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// [`SegmentOptions::write`] for every combination but the hot one (SYNs, SACK blocks): a cursor over 4-byte words.
///
/// Out of line, so that the hot path does not carry its code.
///
/// The SYN and SYN-ACK of every connection between synack and Linux peers carry all four SYN options: that
/// layout (20 bytes: MSS; SACK-permitted and TS; NOP and WS) is stored whole, without the cursor.
#[inline(never)]
fn write_options_slow(out: &mut [u8], options: &TcpOptions<'_>) {
    if let (Some(mss), true, Some(ts), Some(shift), []) = (
        options.mss,
        options.sack_permitted,
        options.timestamps,
        options.window_scale,
        options.sack_blocks,
    ) && let Ok(out) = <&mut [u8; MSS_LEN + TIMESTAMPS_LEN + WINDOW_SCALE_LEN]>::try_from(&mut *out)
    {
        let [m0, m1] = mss.to_be_bytes();
        let [a, b, c, d] = ts.tsval.to_be_bytes();
        let [e, f, g, h] = ts.tsecr.to_be_bytes();
        *out = [
            KIND_MSS,
            4,
            m0,
            m1,
            KIND_SACK_PERMITTED,
            2,
            KIND_TIMESTAMPS,
            10,
            a,
            b,
            c,
            d,
            e,
            f,
            g,
            h,
            NOP,
            KIND_WINDOW_SCALE,
            3,
            shift,
        ];
        return;
    }
    write_options(out, options);
}

/// Writes `options` in Linux's layout (MSS; NOP NOP TS or SACK-permitted + TS; window scale; SACK blocks) into
/// `out`, which is exactly `options.len()` bytes; a shorter `out` gets what fits. `TcpRepr::emit` uses it too.
#[inline]
pub(crate) fn write_options(out: &mut [u8], options: &TcpOptions<'_>) {
    /// Writes one 4-byte word at `at` and advances it.
    #[inline(always)]
    fn put(out: &mut [u8], at: &mut usize, word: [u8; 4]) {
        if let Some(dst) = out.get_mut(*at..*at + 4) {
            dst.copy_from_slice(&word);
        }
        *at += 4;
    }
    let mut at = 0;
    if let Some(mss) = options.mss {
        let [hi, lo] = mss.to_be_bytes();
        put(out, &mut at, [KIND_MSS, 4, hi, lo]);
    }
    if let Some(ts) = options.timestamps {
        let lead = if options.sack_permitted {
            [KIND_SACK_PERMITTED, 2]
        } else {
            [NOP, NOP]
        };
        if let Some(chunk) = out.get_mut(at..at + TIMESTAMPS_LEN)
            && let Ok(chunk) = <&mut [u8; TIMESTAMPS_LEN]>::try_from(chunk)
        {
            write_timestamps(chunk, lead, ts);
        }
        at += TIMESTAMPS_LEN;
    } else if options.sack_permitted {
        put(out, &mut at, [NOP, NOP, KIND_SACK_PERMITTED, 2]);
    }
    if let Some(shift) = options.window_scale {
        put(out, &mut at, [NOP, KIND_WINDOW_SCALE, 3, shift]);
    }
    let sacks = options.sack_blocks_written(at);
    if sacks > 0 {
        let len = (2 + SACK_BLOCK_LEN * sacks) as u8;
        put(out, &mut at, [NOP, NOP, KIND_SACK, len]);
        for &(left, right) in options.sack_blocks.iter().take(sacks) {
            put(out, &mut at, left.0.to_be_bytes());
            put(out, &mut at, right.0.to_be_bytes());
        }
    }
    debug_assert_eq!(at, out.len());
}

/// The timestamps chunk: two lead bytes (NOP NOP, or SACK-permitted), then kind 8, length 10, TSval, TSecr.
#[inline(always)]
fn write_timestamps(out: &mut [u8; TIMESTAMPS_LEN], lead: [u8; 2], ts: TcpTimestamps) {
    let [a, b, c, d] = ts.tsval.to_be_bytes();
    let [e, f, g, h] = ts.tsecr.to_be_bytes();
    *out = [lead[0], lead[1], KIND_TIMESTAMPS, 10, a, b, c, d, e, f, g, h];
}

/// Writes the Ethernet header and a 20-byte IPv4 header (TTL 64, DF, TOS 0, checksum filled) for a datagram
/// carrying `payload_len` bytes of `protocol`.
///
/// The header checksum is summed from the values rather than read back from the bytes: nine 16-bit words, five
/// of them constant.
#[inline(always)]
pub fn write_l2_l3(out: &mut [u8; L2_L3_LEN], route: &Route, protocol: IpProtocol, payload_len: usize, ident: u16) {
    // The sink bounds a frame far below 64 KiB, so the total length fits.
    debug_assert!(payload_len <= usize::from(u16::MAX) - IPV4_LEN);
    let total_len = (IPV4_LEN + payload_len) as u16;
    let protocol = u8::from(protocol);
    let src = u32::from(route.src_addr);
    let dst = u32::from(route.dst_addr);
    // 32-bit values may be added whole: 2^16 = 1 modulo 0xffff, so a word's halves sum to the same.
    let sum = u64::from(u16::from_be_bytes([VERSION_IHL, 0]))
        + u64::from(total_len)
        + u64::from(ident)
        + u64::from(FLAGS_DF)
        + u64::from(u16::from_be_bytes([TTL, protocol]))
        + u64::from(src)
        + u64::from(dst);
    let ip_checksum = !checksum::fold_words(sum);
    // Fixed ranges of a fixed-size array: each is one store, none is bounds-checked.
    out[0..6].copy_from_slice(&route.dst_mac.0);
    out[6..12].copy_from_slice(&route.src_mac.0);
    out[12..16].copy_from_slice(&[0x08, 0x00, VERSION_IHL, 0]);
    out[16..18].copy_from_slice(&total_len.to_be_bytes());
    out[18..20].copy_from_slice(&ident.to_be_bytes());
    out[20..22].copy_from_slice(&FLAGS_DF.to_be_bytes());
    out[22..24].copy_from_slice(&[TTL, protocol]);
    out[24..26].copy_from_slice(&ip_checksum.to_be_bytes());
    out[26..30].copy_from_slice(&src.to_be_bytes());
    out[30..34].copy_from_slice(&dst.to_be_bytes());
}

/// Frame bytes for a segment with a `tcp_header_len`-byte TCP header and `payload_len` bytes of data.
#[inline]
pub const fn frame_len(tcp_header_len: usize, payload_len: usize) -> usize {
    L2_L3_LEN + tcp_header_len + payload_len
}

/// Writes a whole frame: Ethernet, IPv4, TCP header and options, the payload (given as up to two parts, as a
/// ring buffer holds it) and both checksums.
///
/// `frame` must be exactly [`frame_len`]`(tcp_header_len, payload_len)` bytes with `tcp_header_len` =
/// [`SegmentHeader::header_len`]: every byte of it is written, so the sink need not zero it. A frame of another
/// length is a caller bug: the writer then leaves it unwritten (or partly written) rather than panic.
///
/// The TCP checksum (RFC 9293 §3.1) covers the pseudo-header and the fixed 20 bytes summed from the values in
/// registers, then the options and payload in one pass over the frame.
#[inline(always)]
pub fn write_frame(
    frame: &mut [u8],
    route: &Route,
    ident: u16,
    header: &SegmentHeader<'_>,
    tcp_header_len: usize,
    payload: [&[u8]; 2],
) {
    debug_assert_eq!(tcp_header_len, header.header_len());
    debug_assert_eq!(
        frame.len(),
        frame_len(tcp_header_len, payload[0].len() + payload[1].len())
    );
    let Some((fixed, rest)) = frame.split_first_chunk_mut::<FIXED_LEN>() else {
        return;
    };
    let Some((options, data)) = rest.split_at_mut_checked(tcp_header_len.wrapping_sub(TCP_HEADER_LEN)) else {
        return;
    };
    let tcp_len = tcp_header_len + data.len();
    let (l2_l3, tcp) = fixed.split_at_mut(L2_L3_LEN);
    if let Ok(l2_l3) = <&mut [u8; L2_L3_LEN]>::try_from(l2_l3) {
        write_l2_l3(l2_l3, route, IpProtocol::Tcp, tcp_len, ident);
    }

    let ack = if header.flags.ack() { header.ack.0 } else { 0 };
    let ports = u32::from(header.src_port.0) << 16 | u32::from(header.dst_port.0);
    let offset = ((tcp_header_len / 4) as u8) << 4;
    let offset_flags_window = u32::from(offset) << 24 | u32::from(header.flags.bits()) << 16 | u32::from(header.window);
    if let Ok(tcp) = <&mut [u8; TCP_HEADER_LEN]>::try_from(tcp) {
        tcp[0..4].copy_from_slice(&ports.to_be_bytes());
        tcp[4..8].copy_from_slice(&header.seq.0.to_be_bytes());
        tcp[8..12].copy_from_slice(&ack.to_be_bytes());
        tcp[12..16].copy_from_slice(&offset_flags_window.to_be_bytes());
        // The checksum, filled below, and the urgent pointer (never set).
        tcp[16..20].copy_from_slice(&[0; 4]);
    }
    // Summed before the payload copy (a call): one value, not eight, stays live across it.
    let fixed_sum = u64::from(u32::from(route.src_addr))
        + u64::from(u32::from(route.dst_addr))
        + u64::from(u8::from(IpProtocol::Tcp))
        + tcp_len as u64
        + u64::from(ports)
        + u64::from(header.seq.0)
        + u64::from(ack)
        + u64::from(offset_flags_window);
    // The options' sum, when known from the values; otherwise the options are summed with the payload below.
    let options_sum = header.options.write(options);
    let options_len = options.len();
    let [first, second] = payload;
    if !data.is_empty() {
        // Exact lengths when the caller sized the frame as documented; clipped (never a panic) otherwise.
        let (a, b) = data.split_at_mut(first.len().min(data.len()));
        a.copy_from_slice(&first[..a.len()]);
        if !b.is_empty() {
            let n = b.len().min(second.len());
            b[..n].copy_from_slice(&second[..n]);
        }
    }
    // Pseudo-header and fixed header as 32-bit values (see `write_l2_l3`), and the options if they are known,
    // then what is left (options otherwise, and the payload), which starts at an even offset, from the frame.
    let (known, unsummed) = match options_sum {
        Some(options_sum) => (fixed_sum + options_sum, rest.get(options_len..).unwrap_or_default()),
        None => (fixed_sum, &rest[..]),
    };
    let sum = if unsummed.is_empty() {
        checksum::fold_words(known)
    } else {
        checksum::data_with(checksum::fold_words(known), unsummed)
    };
    if let Some(field) = frame.get_mut(L2_L3_LEN + 16..L2_L3_LEN + 18) {
        field.copy_from_slice(&(!sum).to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EtherType, EthernetRepr, Frame};
    use crate::wire::ipv4::{self, Ipv4Repr};
    use crate::wire::tcp::{self, SackBlocks, TcpRepr};
    use proptest::prelude::*;

    const ROUTE: Route = Route {
        src_mac: MacAddr([0x02, 0, 0, 0, 0, 0x01]),
        dst_mac: MacAddr([0x02, 0, 0, 0, 0, 0x02]),
        src_addr: Ipv4Addr::new(198, 18, 0, 1),
        dst_addr: Ipv4Addr::new(198, 18, 0, 2),
    };

    /// The frame as the per-layer emits write it: the reference the writer must match byte for byte.
    fn reference(route: &Route, ident: u16, header: &SegmentHeader<'_>, payload: &[u8]) -> Vec<u8> {
        let options = header.options.to_options();
        let mut blocks = SackBlocks::new();
        for &(left, right) in options.sack_blocks {
            assert!(blocks.push(left, right));
        }
        let repr = TcpRepr {
            src_port: header.src_port,
            dst_port: header.dst_port,
            seq: header.seq,
            ack: header.ack,
            flags: header.flags,
            window: header.window,
            urgent: 0,
            mss: options.mss,
            window_scale: options.window_scale,
            sack_permitted: options.sack_permitted,
            timestamps: options.timestamps,
            sack_blocks: blocks,
            payload,
        };
        let tcp_len = repr.buffer_len();
        let mut frame = vec![0u8; L2_L3_LEN + tcp_len];
        let eth = EthernetRepr {
            src_addr: route.src_mac,
            dst_addr: route.dst_mac,
            ethertype: EtherType::Ipv4,
        };
        eth.emit(&mut Frame::new_unchecked(&mut frame[..ETHERNET_LEN])).unwrap();
        let ip = Ipv4Repr {
            src_addr: route.src_addr,
            dst_addr: route.dst_addr,
            next_header: IpProtocol::Tcp,
            payload_len: tcp_len,
            ttl: 64,
            dont_frag: true,
            ident,
            tos: 0,
        };
        ip.emit(&mut ipv4::Packet::new_unchecked(&mut frame[ETHERNET_LEN..]))
            .unwrap();
        repr.emit(
            &mut tcp::Packet::new_unchecked(&mut frame[L2_L3_LEN..]),
            route.src_addr,
            route.dst_addr,
        );
        frame
    }

    /// The frame as the writer writes it, into a buffer full of garbage (the bench sink does not zero frames),
    /// with the payload split at `split` as a wrapped ring buffer hands it over.
    fn written(route: &Route, ident: u16, header: &SegmentHeader<'_>, payload: &[u8], split: usize) -> Vec<u8> {
        let header_len = header.header_len();
        let mut frame = vec![0xa5u8; frame_len(header_len, payload.len())];
        let (first, second) = payload.split_at(split.min(payload.len()));
        write_frame(&mut frame, route, ident, header, header_len, [first, second]);
        frame
    }

    /// Asserts the writer matches the reference and both checksums verify.
    fn check(header: &SegmentHeader<'_>, payload: &[u8]) {
        let expected = reference(&ROUTE, 0x1234, header, payload);
        for split in [0, payload.len() / 2, payload.len()] {
            let frame = written(&ROUTE, 0x1234, header, payload, split);
            assert_eq!(
                frame,
                expected,
                "header {header:?}, {} payload bytes split at {split}",
                payload.len()
            );
            let ip = ipv4::Packet::new_checked(&frame[ETHERNET_LEN..]).unwrap();
            assert!(ip.verify_checksum());
            let segment = tcp::Packet::new_checked(&frame[L2_L3_LEN..]).unwrap();
            assert!(segment.verify_checksum(ROUTE.src_addr, ROUTE.dst_addr));
        }
    }

    fn base(flags: TcpFlags) -> SegmentHeader<'static> {
        SegmentHeader {
            src_port: Port(43210),
            dst_port: Port(80),
            seq: SeqNum(0x5f3a_91c4),
            ack: SeqNum(0x8d2e_7a13),
            flags,
            window: 64240,
            options: SegmentOptions::default(),
        }
    }

    const BLOCKS: [(SeqNum, SeqNum); 4] = [
        (SeqNum(0x8d2e_83a4), SeqNum(0x8d2e_894c)),
        (SeqNum(0x8d2e_8ef4), SeqNum(0x8d2e_949c)),
        (SeqNum(0xffff_fff0), SeqNum(0x0000_0010)),
        (SeqNum(1), SeqNum(2)),
    ];

    const TS: TcpTimestamps = TcpTimestamps {
        tsval: 0x1b2c_3d4e,
        tsecr: 0x7e1f_0a55,
    };

    #[test]
    fn write_frame_syn_every_option_combination_matches_emit() {
        for bits in 0..16u8 {
            for flags in [TcpFlags::SYN, TcpFlags::SYN | TcpFlags::ACK] {
                let mut header = base(flags);
                let any = TcpOptions {
                    mss: (bits & 1 != 0).then_some(1460),
                    window_scale: (bits & 2 != 0).then_some(7),
                    sack_permitted: bits & 4 != 0,
                    timestamps: (bits & 8 != 0).then_some(TcpTimestamps {
                        tsval: TS.tsval,
                        tsecr: 0,
                    }),
                    sack_blocks: &[],
                };
                header.options = SegmentOptions::Any(&any);
                check(&header, &[]);
            }
        }
    }

    #[test]
    fn write_frame_data_with_timestamps_matches_emit() {
        let payload: Vec<u8> = (0..200u8).collect();
        for len in [0, 1, 2, 3, 7, 8, 31, 32, 33, 64, 65, 200] {
            for flags in [
                TcpFlags::ACK,
                TcpFlags::ACK | TcpFlags::PSH,
                TcpFlags::ACK | TcpFlags::FIN,
                TcpFlags::FIN,
            ] {
                let mut header = base(flags);
                header.options = SegmentOptions::Timestamps(Some(TS));
                check(&header, &payload[..len]);
                // The general path writes the same bytes.
                let any = TcpOptions {
                    timestamps: Some(TS),
                    ..TcpOptions::default()
                };
                header.options = SegmentOptions::Any(&any);
                check(&header, &payload[..len]);
            }
        }
    }

    #[test]
    fn write_frame_without_timestamps_matches_emit() {
        let payload = [0xc3u8; 65];
        for len in [0, 1, 64, 65] {
            let mut header = base(TcpFlags::ACK | TcpFlags::PSH);
            check(&header, &payload[..len]);
            let any = TcpOptions::default();
            header.options = SegmentOptions::Any(&any);
            check(&header, &payload[..len]);
        }
    }

    #[test]
    fn write_frame_sack_blocks_with_and_without_timestamps_match_emit() {
        let payload = b"GET / HTTP/1.1\r\n\r\n";
        for n in 1..=4 {
            for timestamps in [None, Some(TS)] {
                let mut header = base(TcpFlags::ACK);
                let any = TcpOptions {
                    timestamps,
                    sack_blocks: &BLOCKS[..n],
                    ..TcpOptions::default()
                };
                header.options = SegmentOptions::Any(&any);
                // Beside timestamps only three blocks fit (RFC 2018 §3); the fourth is left out like `emit` does.
                check(&header, &[]);
                check(&header, payload);
            }
        }
    }

    #[test]
    fn write_frame_rst_and_bare_ack_match_emit() {
        let mut rst = base(TcpFlags::RST);
        rst.ack = SeqNum(0xdead_beef);
        check(&rst, &[]);
        check(&base(TcpFlags::RST | TcpFlags::ACK), &[]);
        let mut ack = base(TcpFlags::ACK);
        ack.window = 0;
        ack.options = SegmentOptions::Timestamps(Some(TcpTimestamps {
            tsval: u32::MAX,
            tsecr: u32::MAX,
        }));
        check(&ack, &[]);
    }

    #[test]
    fn write_frame_linux_data_segment_reproduced() {
        // The client PSH|ACK of the TCP tests (NOP NOP TS, NOP NOP SACK of two blocks, 18 bytes of data), whose
        // checksum Linux computed.
        let header = SegmentHeader {
            src_port: Port(43210),
            dst_port: Port(80),
            seq: SeqNum(0x5f3a_91c5),
            ack: SeqNum(0x8d2e_7dfc),
            flags: TcpFlags::ACK | TcpFlags::PSH,
            window: 0x01f6,
            options: SegmentOptions::Any(&TcpOptions {
                timestamps: Some(TcpTimestamps {
                    tsval: 0x1b2c_3f10,
                    tsecr: 0x7e1f_0b01,
                }),
                sack_blocks: &BLOCKS[..2],
                ..TcpOptions::default()
            }),
        };
        let frame = written(&ROUTE, 7, &header, b"GET / HTTP/1.1\r\n\r\n", 5);
        assert_eq!(&frame[L2_L3_LEN + 16..L2_L3_LEN + 18], &[0xc5, 0xde]);
    }

    #[test]
    fn write_l2_l3_matches_emit_for_icmp() {
        let mut expected = [0u8; L2_L3_LEN + 8];
        let eth = EthernetRepr {
            src_addr: ROUTE.src_mac,
            dst_addr: ROUTE.dst_mac,
            ethertype: EtherType::Ipv4,
        };
        eth.emit(&mut Frame::new_unchecked(&mut expected[..ETHERNET_LEN]))
            .unwrap();
        let ip = Ipv4Repr {
            src_addr: ROUTE.src_addr,
            dst_addr: ROUTE.dst_addr,
            next_header: IpProtocol::Icmp,
            payload_len: 8,
            ttl: 64,
            dont_frag: true,
            ident: 0xffff,
            tos: 0,
        };
        ip.emit(&mut ipv4::Packet::new_unchecked(&mut expected[ETHERNET_LEN..]))
            .unwrap();
        let mut head = [0x5au8; L2_L3_LEN];
        write_l2_l3(&mut head, &ROUTE, IpProtocol::Icmp, 8, 0xffff);
        assert_eq!(head[..], expected[..L2_L3_LEN]);
    }

    /// A mis-sized frame is a caller bug that debug builds assert on; release builds must still not panic.
    #[cfg(not(debug_assertions))]
    #[test]
    fn write_frame_wrong_length_does_not_panic() {
        let header = base(TcpFlags::ACK);
        for len in [0, 10, FIXED_LEN - 1, FIXED_LEN + 3, 200] {
            let mut frame = vec![0u8; len];
            write_frame(&mut frame, &ROUTE, 1, &header, header.header_len(), [b"abc", b"de"]);
        }
    }

    proptest! {
        #[test]
        fn write_frame_any_segment_matches_emit(
            ports in any::<(u16, u16)>(),
            seq in any::<u32>(),
            ack in any::<u32>(),
            flags in any::<u8>(),
            window in any::<u16>(),
            ident in any::<u16>(),
            addrs in any::<(u32, u32)>(),
            mss in proptest::option::of(any::<u16>()),
            window_scale in proptest::option::of(any::<u8>()),
            sack_permitted in any::<bool>(),
            timestamps in proptest::option::of(any::<(u32, u32)>()),
            blocks in proptest::collection::vec(any::<(u32, u32)>(), 0..=4),
            payload in proptest::collection::vec(any::<u8>(), 0..300),
            split in any::<usize>(),
        ) {
            let blocks: Vec<(SeqNum, SeqNum)> = blocks.into_iter().map(|(l, r)| (SeqNum(l), SeqNum(r))).collect();
            let route = Route { src_addr: Ipv4Addr::from(addrs.0), dst_addr: Ipv4Addr::from(addrs.1), ..ROUTE };
            let header = SegmentHeader {
                src_port: Port(ports.0),
                dst_port: Port(ports.1),
                seq: SeqNum(seq),
                ack: SeqNum(ack),
                flags: TcpFlags(flags),
                window,
                options: SegmentOptions::Any(&TcpOptions {
                    mss,
                    window_scale,
                    sack_permitted,
                    timestamps: timestamps.map(|(tsval, tsecr)| TcpTimestamps { tsval, tsecr }),
                    sack_blocks: &blocks,
                }),
            };
            let frame = written(&route, ident, &header, &payload, split % (payload.len() + 1));
            prop_assert_eq!(&frame, &reference(&route, ident, &header, &payload));
            // The hot-path shape, where it applies, writes the same bytes.
            let plain = SegmentHeader { options: SegmentOptions::Timestamps(header.options.to_options().timestamps), ..header };
            prop_assert_eq!(
                written(&route, ident, &plain, &payload, split % (payload.len() + 1)),
                reference(&route, ident, &plain, &payload)
            );
            let segment = tcp::Packet::new_checked(&frame[L2_L3_LEN..]).unwrap();
            prop_assert!(segment.verify_checksum(route.src_addr, route.dst_addr));
        }
    }
}
