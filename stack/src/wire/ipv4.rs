//! IPv4 headers (RFC 791).
//!
//! synack neither reassembles nor sends fragments nor options: [`Ipv4Repr::parse`] reports fragments as
//! `Err(Fragment)` and skips over options, and [`Ipv4Repr::emit`] always writes a bare 20-byte header.

use core::net::Ipv4Addr;

use super::{ChecksumPolicy, Error, IpProtocol, Result, checksum};

mod field {
    use core::ops::Range;

    pub const VER_IHL: usize = 0;
    pub const TOS: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const IDENT: Range<usize> = 4..6;
    pub const FLG_OFF: Range<usize> = 6..8;
    pub const TTL: usize = 8;
    pub const PROTOCOL: usize = 9;
    pub const CHECKSUM: Range<usize> = 10..12;
    pub const SRC: Range<usize> = 12..16;
    pub const DST: Range<usize> = 16..20;
}

/// Length of a header without options, the only kind synack writes.
pub const HEADER_LEN: usize = field::DST.end;

const FLAG_DF: u16 = 0x4000;
const FLAG_MF: u16 = 0x2000;
const OFFSET_MASK: u16 = 0x1fff;

/// A view of an IPv4 packet in a byte buffer.
///
/// The buffer may run past the packet (Ethernet pads short frames to 60 bytes): [`Packet::payload`] ends at the
/// total length, not at the end of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; getters may panic until [`Packet::check_len`] has passed.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after [`Packet::check_len`], so no getter can panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// Checks the buffer holds the whole packet its header describes.
    ///
    /// `Truncated` if it is shorter than 20 bytes, than the header length, or than the total length; `Malformed`
    /// if the version is not 4, the header length is under 20 bytes, or the total length is under the header
    /// length. Bytes beyond the total length are allowed.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        self.check_header()?;
        if usize::from(self.total_len()) > self.buffer.as_ref().len() {
            return Err(Error::Truncated);
        }
        Ok(())
    }

    /// [`Packet::check_len`] without the last test, for the header quoted in an ICMP error, whose datagram is
    /// cut short on purpose: after it, header getters are safe but [`Packet::payload`] is not.
    #[inline]
    pub(crate) fn check_header(&self) -> Result<()> {
        check_header(self.buffer.as_ref()).map(|_| ())
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The version field (4 after a successful check).
    #[inline]
    pub fn version(&self) -> u8 {
        self.fixed()[field::VER_IHL] >> 4
    }

    /// The header length in bytes (IHL × 4), options included.
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.fixed()[field::VER_IHL] & 0x0f) * 4
    }

    /// The whole type-of-service byte (DSCP and ECN).
    #[inline]
    pub fn tos(&self) -> u8 {
        self.fixed()[field::TOS]
    }

    /// The differentiated services code point (top six bits of the TOS byte).
    #[inline]
    pub fn dscp(&self) -> u8 {
        self.tos() >> 2
    }

    /// The explicit congestion notification bits (low two bits of the TOS byte).
    #[inline]
    pub fn ecn(&self) -> u8 {
        self.tos() & 0x03
    }

    /// The total length of header and payload in bytes.
    #[inline]
    pub fn total_len(&self) -> u16 {
        be16(self.fixed(), field::LENGTH.start)
    }

    /// The identification field.
    #[inline]
    pub fn ident(&self) -> u16 {
        be16(self.fixed(), field::IDENT.start)
    }

    /// The don't-fragment flag.
    #[inline]
    pub fn dont_frag(&self) -> bool {
        self.flags_offset() & FLAG_DF != 0
    }

    /// The more-fragments flag.
    #[inline]
    pub fn more_frags(&self) -> bool {
        self.flags_offset() & FLAG_MF != 0
    }

    /// The fragment offset in bytes (the field counts 8-byte units).
    #[inline]
    pub fn frag_offset(&self) -> u16 {
        (self.flags_offset() & OFFSET_MASK) << 3
    }

    /// Whether this is a fragment (MF set or a non-zero offset), which synack drops.
    #[inline]
    pub fn is_fragment(&self) -> bool {
        self.flags_offset() & (FLAG_MF | OFFSET_MASK) != 0
    }

    #[inline]
    fn flags_offset(&self) -> u16 {
        be16(self.fixed(), field::FLG_OFF.start)
    }

    /// The time-to-live.
    #[inline]
    pub fn ttl(&self) -> u8 {
        self.fixed()[field::TTL]
    }

    /// The protocol of the payload.
    #[inline]
    pub fn next_header(&self) -> IpProtocol {
        IpProtocol::from(self.next_header_raw())
    }

    /// The protocol field as a number, for the receive path's match (no [`IpProtocol`] built on the way).
    #[inline]
    pub(crate) fn next_header_raw(&self) -> u8 {
        self.fixed()[field::PROTOCOL]
    }

    /// The header checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.fixed(), field::CHECKSUM.start)
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> Ipv4Addr {
        addr(self.fixed(), field::SRC.start)
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> Ipv4Addr {
        addr(self.fixed(), field::DST.start)
    }

    /// The option bytes between the fixed header and the payload (empty for IHL 5).
    #[inline]
    pub fn options(&self) -> &[u8] {
        &self.buffer.as_ref()[HEADER_LEN..self.header_len()]
    }

    /// The payload: from the end of the header to the total length, without any link-layer padding.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[self.header_len()..usize::from(self.total_len())]
    }

    /// Whether the header (options included) sums to `0xffff`.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        let header_len = self.header_len();
        if header_len == HEADER_LEN {
            // The usual option-less header: a sum over a constant 20 bytes unrolls to three additions.
            checksum::data(self.fixed()) == 0xffff
        } else {
            checksum::data(&self.buffer.as_ref()[..header_len]) == 0xffff
        }
    }

    /// The fixed 20-byte header as an array, so that every getter reads a constant offset without a bounds check.
    ///
    /// # Panics
    /// If the buffer is shorter than 20 bytes, which [`Packet::new_checked`] rules out.
    #[inline]
    fn fixed(&self) -> &[u8; HEADER_LEN] {
        match self.buffer.as_ref().first_chunk() {
            Some(fixed) => fixed,
            None => shorter_than_header(),
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the version field.
    #[inline]
    pub fn set_version(&mut self, version: u8) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0x0f) | (version << 4);
    }

    /// Sets the header length in bytes (a multiple of 4, 20 to 60).
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        let b = &mut self.buffer.as_mut()[field::VER_IHL];
        *b = (*b & 0xf0) | ((len / 4) as u8 & 0x0f);
    }

    /// Sets the type-of-service byte.
    #[inline]
    pub fn set_tos(&mut self, tos: u8) {
        self.buffer.as_mut()[field::TOS] = tos;
    }

    /// Sets the total length.
    #[inline]
    pub fn set_total_len(&mut self, len: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&len.to_be_bytes());
    }

    /// Sets the identification field.
    #[inline]
    pub fn set_ident(&mut self, ident: u16) {
        self.buffer.as_mut()[field::IDENT].copy_from_slice(&ident.to_be_bytes());
    }

    #[inline]
    fn set_flags_offset(&mut self, value: u16) {
        self.buffer.as_mut()[field::FLG_OFF].copy_from_slice(&value.to_be_bytes());
    }

    /// Clears both flags and the fragment offset.
    #[inline]
    pub fn clear_flags(&mut self) {
        self.set_flags_offset(0);
    }

    /// Sets or clears the don't-fragment flag.
    #[inline]
    pub fn set_dont_frag(&mut self, value: bool) {
        let v = self.flags_offset();
        self.set_flags_offset(if value { v | FLAG_DF } else { v & !FLAG_DF });
    }

    /// Sets or clears the more-fragments flag.
    #[inline]
    pub fn set_more_frags(&mut self, value: bool) {
        let v = self.flags_offset();
        self.set_flags_offset(if value { v | FLAG_MF } else { v & !FLAG_MF });
    }

    /// Sets the fragment offset, in bytes (a multiple of 8).
    #[inline]
    pub fn set_frag_offset(&mut self, offset: u16) {
        let v = self.flags_offset();
        self.set_flags_offset((v & !OFFSET_MASK) | ((offset >> 3) & OFFSET_MASK));
    }

    /// Sets the time-to-live.
    #[inline]
    pub fn set_ttl(&mut self, ttl: u8) {
        self.buffer.as_mut()[field::TTL] = ttl;
    }

    /// Sets the protocol of the payload.
    #[inline]
    pub fn set_next_header(&mut self, protocol: IpProtocol) {
        self.buffer.as_mut()[field::PROTOCOL] = u8::from(protocol);
    }

    /// Sets the checksum field as is.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.octets());
    }

    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: Ipv4Addr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.octets());
    }

    /// Computes the header checksum over the header length's bytes and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(&self.buffer.as_ref()[..self.header_len()]);
        self.set_checksum(!sum);
    }

    /// The option bytes, to write options in place.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let end = self.header_len();
        &mut self.buffer.as_mut()[HEADER_LEN..end]
    }

    /// The payload, to build it in place; bounded by the total length like [`Packet::payload`].
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let range = self.header_len()..usize::from(self.total_len());
        &mut self.buffer.as_mut()[range]
    }
}

/// The big-endian 16-bit field at a constant offset of the fixed header.
#[inline(always)]
fn be16(fixed: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_be_bytes([fixed[at], fixed[at + 1]])
}

/// The address at a constant offset of the fixed header.
#[inline(always)]
fn addr(fixed: &[u8; HEADER_LEN], at: usize) -> Ipv4Addr {
    Ipv4Addr::new(fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3])
}

/// The checks of [`Packet::check_header`] in one place, in the order that decides which error a bad header
/// gets: the fixed header as an array, and the header length (20 to 60, within `d`, not above the total length).
#[inline(always)]
fn check_header(d: &[u8]) -> Result<(&[u8; HEADER_LEN], usize)> {
    let Some(fixed) = d.first_chunk::<HEADER_LEN>() else {
        return Err(Error::Truncated);
    };
    let ver_ihl = fixed[field::VER_IHL];
    if ver_ihl >> 4 != 4 {
        return Err(Error::Malformed);
    }
    let header_len = usize::from(ver_ihl & 0x0f) * 4;
    if header_len < HEADER_LEN {
        return Err(Error::Malformed);
    }
    if header_len > d.len() {
        return Err(Error::Truncated);
    }
    if usize::from(be16(fixed, field::LENGTH.start)) < header_len {
        return Err(Error::Malformed);
    }
    Ok((fixed, header_len))
}

/// The panic of a getter on an unchecked view too short for the fixed header, kept out of line.
#[cold]
#[inline(never)]
#[track_caller]
fn shorter_than_header() -> ! {
    panic!("IPv4 buffer shorter than the 20-byte header (use Packet::new_checked on received data)")
}

/// The parts of an IPv4 header synack acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Repr {
    /// The sender.
    pub src_addr: Ipv4Addr,
    /// The receiver.
    pub dst_addr: Ipv4Addr,
    /// What the payload is.
    pub next_header: IpProtocol,
    /// Payload length in bytes (total length minus header length).
    pub payload_len: usize,
    /// Time-to-live.
    pub ttl: u8,
    /// Don't-fragment: synack sets it on everything it sends (path MTU discovery).
    pub dont_frag: bool,
    /// Identification; only meaningful for fragments, but echoed in tests and seen in captures.
    pub ident: u16,
    /// The type-of-service byte (DSCP and ECN).
    pub tos: u8,
}

impl Ipv4Repr {
    /// Length of the header `emit` writes (no options).
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Largest payload a 20-byte header can describe.
    pub const MAX_PAYLOAD_LEN: usize = u16::MAX as usize - HEADER_LEN;

    /// Reads a packet, checking its lengths, and its checksum under `ChecksumPolicy::Verify`.
    ///
    /// Fragments are `Err(Fragment)` (synack does not reassemble). Options are skipped: the payload begins after
    /// the header length, and `payload_len` excludes them.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>, policy: ChecksumPolicy) -> Result<Ipv4Repr> {
        let d = packet.buffer.as_ref();
        match d.first_chunk::<HEADER_LEN>() {
            // Nearly every packet is version 4 without options: then the header length is the 20 bytes already
            // there, and the length checks of `check_len` reduce to the total length lying within 20..=d.len(),
            // with the same error for each failure as the general path gives.
            Some(fixed) if fixed[field::VER_IHL] == 0x45 => {
                let total_len = usize::from(be16(fixed, field::LENGTH.start));
                if total_len < HEADER_LEN {
                    return Err(Error::Malformed);
                }
                if total_len > d.len() {
                    return Err(Error::Truncated);
                }
            }
            _ => packet.check_len()?,
        }
        Self::parse_header(packet, policy)
    }

    /// `parse` on a packet that has passed [`Packet::check_header`] (its payload may be cut short).
    #[inline]
    pub(crate) fn parse_header<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&T>,
        policy: ChecksumPolicy,
    ) -> Result<Ipv4Repr> {
        if policy == ChecksumPolicy::Verify && !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        if packet.is_fragment() {
            return Err(Error::Fragment);
        }
        Ok(Ipv4Repr {
            src_addr: packet.src_addr(),
            dst_addr: packet.dst_addr(),
            next_header: packet.next_header(),
            payload_len: usize::from(packet.total_len()) - packet.header_len(),
            ttl: packet.ttl(),
            dont_frag: packet.dont_frag(),
            ident: packet.ident(),
            tos: packet.tos(),
        })
    }

    /// Length of the header alone.
    #[inline]
    pub const fn header_len(&self) -> usize {
        HEADER_LEN
    }

    /// Length of header and payload: what the buffer handed to `emit` must hold.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        HEADER_LEN + self.payload_len
    }

    /// Writes a 20-byte header with its checksum; the caller then fills [`Packet::payload_mut`].
    ///
    /// `Err(Truncated)` if the buffer is shorter than [`Ipv4Repr::buffer_len`]; `Err(Malformed)` if the payload
    /// is longer than [`Ipv4Repr::MAX_PAYLOAD_LEN`].
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        if self.payload_len > Self::MAX_PAYLOAD_LEN {
            return Err(Error::Malformed);
        }
        if packet.buffer.as_ref().len() < self.buffer_len() {
            return Err(Error::Truncated);
        }
        self.emit_header(packet)
    }

    /// Writes the 20-byte header alone, for the header quoted in an ICMP error (whose payload is not all there).
    #[inline]
    pub(crate) fn emit_header<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let Ok(total_len) = u16::try_from(self.buffer_len()) else {
            return Err(Error::Malformed);
        };
        if packet.buffer.as_ref().len() < HEADER_LEN {
            return Err(Error::Truncated);
        }
        packet.set_version(4);
        packet.set_header_len(HEADER_LEN);
        packet.set_tos(self.tos);
        packet.set_total_len(total_len);
        packet.set_ident(self.ident);
        packet.set_flags_offset(if self.dont_frag { FLAG_DF } else { 0 });
        packet.set_ttl(self.ttl);
        packet.set_next_header(self.next_header);
        packet.set_src_addr(self.src_addr);
        packet.set_dst_addr(self.dst_addr);
        packet.fill_checksum();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EtherType, Frame};
    use proptest::prelude::*;

    /// The IPv4 header of a Linux `ping` echo request, 198.18.0.1 -> 198.18.0.2 (ICMP, 84 bytes, DF, TTL 64).
    const PING_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x54, 0x5e, 0x3a, 0x40, 0x00, 0x40, 0x01, 0x50, 0x47, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x02,
    ];

    /// A bare TCP ACK (20-byte IPv4 + 20-byte TCP) as received: the NIC padded the 54-byte frame to 60 bytes.
    const PADDED_ACK_FRAME: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x28, 0x43, 0x21, 0x40, 0x00, 0x40, 0x06, 0x6b, 0x87, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x02, // IPv4, total length 40
        0xc3, 0x50, 0x00, 0x50, 0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, 0x50, 0x10, 0xfa, 0xf0, 0x4a, 0xfd,
        0x00, 0x00, // TCP 50000 -> 80, ACK
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // Ethernet padding
    ];

    /// A UDP datagram whose header carries a Router Alert option (IHL 6), 198.18.0.1:1234 -> 198.18.0.2:5678.
    const WITH_OPTIONS: [u8; 32] = [
        0x46, 0x00, 0x00, 0x20, 0x00, 0x07, 0x40, 0x00, 0x40, 0x11, 0x19, 0x9a, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x02, // fixed header
        0x94, 0x04, 0x00, 0x00, // Router Alert
        0x04, 0xd2, 0x16, 0x2e, 0x00, 0x08, 0x58, 0xb6, // UDP header, empty payload
    ];

    const IP1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// The ping header followed by a 64-byte payload, so the total length fits the buffer.
    fn ping_packet() -> [u8; 84] {
        let mut bytes = [0u8; 84];
        bytes[..20].copy_from_slice(&PING_HEADER);
        bytes
    }

    fn ping_repr() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: IP1,
            dst_addr: IP2,
            next_header: IpProtocol::Icmp,
            payload_len: 64,
            ttl: 64,
            dont_frag: true,
            ident: 0x5e3a,
            tos: 0,
        }
    }

    /// `bytes` with the checksum recomputed after a test edited a field.
    fn refill(mut bytes: [u8; 84]) -> [u8; 84] {
        Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes
    }

    #[test]
    fn ipv4_ping_header_reads_every_field() {
        let bytes = ping_packet();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.version(), 4);
        assert_eq!(packet.header_len(), 20);
        assert_eq!((packet.tos(), packet.dscp(), packet.ecn()), (0, 0, 0));
        assert_eq!(packet.total_len(), 84);
        assert_eq!(packet.ident(), 0x5e3a);
        assert!(packet.dont_frag());
        assert!(!packet.more_frags());
        assert_eq!(packet.frag_offset(), 0);
        assert!(!packet.is_fragment());
        assert_eq!(packet.ttl(), 64);
        assert_eq!(packet.next_header(), IpProtocol::Icmp);
        assert_eq!(packet.checksum(), 0x5047);
        assert_eq!(packet.src_addr(), IP1);
        assert_eq!(packet.dst_addr(), IP2);
        assert!(packet.options().is_empty());
        assert_eq!(packet.payload().len(), 64);
        assert!(packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet, ChecksumPolicy::Verify), Ok(ping_repr()));
    }

    #[test]
    fn ipv4_emit_matches_captured_header() {
        let mut buf = [0xaau8; 84];
        let repr = ping_repr();
        assert_eq!(repr.buffer_len(), 84);
        repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf[..20], PING_HEADER);
    }

    #[test]
    fn ipv4_padded_frame_payload_ends_at_total_length() {
        let frame = Frame::new_checked(&PADDED_ACK_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Ipv4);
        assert_eq!(frame.payload().len(), 46);
        let packet = Packet::new_checked(frame.payload()).unwrap();
        assert_eq!(packet.total_len(), 40);
        assert_eq!(packet.payload(), &PADDED_ACK_FRAME[34..54]);
        let repr = Ipv4Repr::parse(&packet, ChecksumPolicy::Verify).unwrap();
        assert_eq!(
            repr,
            Ipv4Repr {
                src_addr: IP1,
                dst_addr: IP2,
                next_header: IpProtocol::Tcp,
                payload_len: 20,
                ttl: 64,
                dont_frag: true,
                ident: 0x4321,
                tos: 0
            }
        );
    }

    #[test]
    fn ipv4_options_are_skipped() {
        let packet = Packet::new_checked(&WITH_OPTIONS[..]).unwrap();
        assert_eq!(packet.header_len(), 24);
        assert_eq!(packet.options(), &[0x94, 0x04, 0x00, 0x00]);
        assert_eq!(packet.payload(), &WITH_OPTIONS[24..]);
        assert!(packet.verify_checksum());
        let repr = Ipv4Repr::parse(&packet, ChecksumPolicy::Verify).unwrap();
        assert_eq!(repr.payload_len, 8);
        assert_eq!(repr.next_header, IpProtocol::Udp);
        assert_eq!(repr.ident, 7);
    }

    #[test]
    fn ipv4_new_checked_short_is_truncated() {
        let bytes = ping_packet();
        assert_eq!(Packet::new_checked(&bytes[..19]), Err(Error::Truncated));
        assert_eq!(Packet::new_checked(&bytes[..0]), Err(Error::Truncated));
    }

    #[test]
    fn ipv4_new_checked_bad_version_is_malformed() {
        let mut bytes = ping_packet();
        bytes[0] = 0x65;
        assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Malformed));
    }

    #[test]
    fn ipv4_new_checked_ihl_under_five_is_malformed() {
        let mut bytes = ping_packet();
        bytes[0] = 0x44;
        assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Malformed));
    }

    #[test]
    fn ipv4_new_checked_ihl_beyond_buffer_is_truncated() {
        // IHL 15 claims 60 header bytes; only 24 are there (and the total length claims 32).
        let mut bytes = WITH_OPTIONS;
        bytes[0] = 0x4f;
        assert_eq!(Packet::new_checked(&bytes[..24]), Err(Error::Truncated));
    }

    #[test]
    fn ipv4_new_checked_total_length_under_header_is_malformed() {
        let mut bytes = ping_packet();
        bytes[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Malformed));
        let mut bytes = WITH_OPTIONS;
        bytes[2..4].copy_from_slice(&20u16.to_be_bytes()); // less than the 24-byte header
        assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Malformed));
    }

    #[test]
    fn ipv4_new_checked_total_length_beyond_buffer_is_truncated() {
        let bytes = ping_packet();
        assert_eq!(Packet::new_checked(&bytes[..83]), Err(Error::Truncated));
        assert!(Packet::new_checked(&bytes[..84]).is_ok());
    }

    #[test]
    fn ipv4_parse_bad_checksum_is_rejected() {
        let mut bytes = ping_packet();
        bytes[11] ^= 0x01;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum());
        assert_eq!(Ipv4Repr::parse(&packet, ChecksumPolicy::Verify), Err(Error::Checksum));
        // A NIC-verified packet is not summed again.
        assert_eq!(Ipv4Repr::parse(&packet, ChecksumPolicy::Trust), Ok(ping_repr()));
    }

    #[test]
    fn ipv4_parse_more_fragments_is_rejected() {
        let mut bytes = ping_packet();
        Packet::new_unchecked(&mut bytes[..]).set_more_frags(true);
        let bytes = refill(bytes);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(packet.more_frags() && packet.dont_frag());
        assert_eq!(Ipv4Repr::parse(&packet, ChecksumPolicy::Verify), Err(Error::Fragment));
    }

    #[test]
    fn ipv4_parse_fragment_offset_is_rejected() {
        let mut bytes = ping_packet();
        {
            let mut packet = Packet::new_unchecked(&mut bytes[..]);
            packet.clear_flags();
            packet.set_frag_offset(1480);
        }
        assert_eq!(bytes[6..8], [0x00, 0xb9]);
        let bytes = refill(bytes);
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.frag_offset(), 1480);
        assert!(!packet.more_frags() && !packet.dont_frag());
        assert_eq!(Ipv4Repr::parse(&packet, ChecksumPolicy::Verify), Err(Error::Fragment));
    }

    #[test]
    fn ipv4_parse_unchecked_short_view_is_an_error_not_a_panic() {
        let bytes = ping_packet();
        let packet = Packet::new_unchecked(&bytes[..40]);
        assert_eq!(Ipv4Repr::parse(&packet, ChecksumPolicy::Verify), Err(Error::Truncated));
    }

    #[test]
    fn ipv4_emit_short_buffer_is_truncated() {
        let mut buf = [0u8; 83];
        assert_eq!(
            ping_repr().emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn ipv4_emit_oversized_payload_is_malformed() {
        let repr = Ipv4Repr {
            payload_len: Ipv4Repr::MAX_PAYLOAD_LEN + 1,
            ..ping_repr()
        };
        let mut buf = vec![0u8; repr.buffer_len()];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::Malformed)
        );
    }

    #[test]
    fn ipv4_setters_write_dscp_ecn_and_header_len() {
        let mut bytes = [0u8; 24];
        let mut packet = Packet::new_unchecked(&mut bytes[..]);
        packet.set_version(4);
        packet.set_header_len(24);
        packet.set_tos((46 << 2) | 0x01); // EF, ECT(1)
        packet.set_total_len(24);
        packet.options_mut().copy_from_slice(&[1, 1, 1, 0]);
        packet.fill_checksum();
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!((packet.version(), packet.header_len()), (4, 24));
        assert_eq!((packet.dscp(), packet.ecn()), (46, 1));
        assert_eq!(packet.options(), &[1, 1, 1, 0]);
        assert!(packet.payload().is_empty());
        assert!(packet.verify_checksum());
    }

    fn arb_repr() -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            0usize..1500,
            any::<u8>(),
            any::<bool>(),
            any::<u16>(),
            any::<u8>(),
        )
            .prop_map(|(s, d, p, payload_len, ttl, dont_frag, ident, tos)| Ipv4Repr {
                src_addr: Ipv4Addr::from(s),
                dst_addr: Ipv4Addr::from(d),
                next_header: IpProtocol::from(p),
                payload_len,
                ttl,
                dont_frag,
                ident,
                tos,
            })
    }

    proptest! {
        #[test]
        fn parse_fast_path_equals_check_len_then_parse_header(mut bytes in proptest::collection::vec(any::<u8>(), 0..80), total in 0u16..100, plain in any::<bool>()) {
            // `parse` short-cuts the length checks of a version-4, 20-byte header; its result (error kind
            // included) must be what `check_len` followed by `parse_header` gives, for that header and any other.
            if bytes.len() >= HEADER_LEN && plain {
                bytes[0] = 0x45;
                bytes[2..4].copy_from_slice(&total.to_be_bytes());
            }
            let packet = Packet::new_unchecked(&bytes[..]);
            for policy in [ChecksumPolicy::Verify, ChecksumPolicy::Trust] {
                let general = packet.check_len().and_then(|()| Ipv4Repr::parse_header(&packet, policy));
                prop_assert_eq!(Ipv4Repr::parse(&packet, policy), general);
            }
        }

        #[test]
        fn ipv4_any_repr_round_trips(repr in arb_repr(), padding in 0usize..16) {
            let mut buf = vec![0u8; repr.buffer_len() + padding];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(packet.payload().len(), repr.payload_len);
            prop_assert_eq!(Ipv4Repr::parse(&packet, ChecksumPolicy::Verify), Ok(repr));
        }

        #[test]
        fn ipv4_any_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..128), shape in any::<bool>()) {
            if shape && bytes.len() >= 4 {
                // Steer half the cases past the version and length checks.
                let len = bytes.len().min(usize::from(u16::MAX)) as u16;
                bytes[0] = 0x40 | (bytes[0] & 0x0f);
                let total = len.saturating_sub(u16::from(bytes[1] & 0x07));
                bytes[2..4].copy_from_slice(&total.to_be_bytes());
            }
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.version(), packet.header_len(), packet.tos(), packet.dscp(), packet.ecn());
                let _ = (packet.total_len(), packet.ident(), packet.dont_frag(), packet.more_frags());
                let _ = (packet.frag_offset(), packet.ttl(), packet.next_header(), packet.checksum());
                let _ = (packet.src_addr(), packet.dst_addr(), packet.options(), packet.payload());
                let _ = packet.verify_checksum();
                prop_assert!(packet.payload().len() + packet.header_len() <= bytes.len());
            }
            let _ = Ipv4Repr::parse(&Packet::new_unchecked(&bytes[..]), ChecksumPolicy::Verify);
            let _ = Ipv4Repr::parse(&Packet::new_unchecked(&bytes[..]), ChecksumPolicy::Trust);
        }
    }
}
