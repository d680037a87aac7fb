//! ARP (RFC 826), of which synack speaks only the IPv4-over-Ethernet dialect.
//!
//! The view reads any hardware/protocol address lengths (it sizes the packet by `hlen`/`plen`), so an odd ARP
//! packet can still be inspected; [`ArpRepr`] accepts only Ethernet + IPv4 and reports the rest as `Unsupported`.

use core::net::Ipv4Addr;

use super::ethernet::{EtherType, MacAddr};
use super::{Error, Result};

/// The ARP operation code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpOperation {
    /// Who has `target_ip`? (1)
    Request,
    /// `source_ip` is at `source_mac`. (2)
    Reply,
    /// Any other operation (RARP, InARP, ...), carried through so it can be counted.
    Unknown(u16),
}

impl From<u16> for ArpOperation {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpOperation::Request,
            2 => ArpOperation::Reply,
            other => ArpOperation::Unknown(other),
        }
    }
}

impl From<ArpOperation> for u16 {
    fn from(value: ArpOperation) -> Self {
        match value {
            ArpOperation::Request => 1,
            ArpOperation::Reply => 2,
            ArpOperation::Unknown(other) => other,
        }
    }
}

/// The ARP hardware type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ArpHardware {
    /// Ethernet (1), the only link synack runs on.
    Ethernet,
    /// Any other hardware type.
    Unknown(u16),
}

impl From<u16> for ArpHardware {
    fn from(value: u16) -> Self {
        match value {
            1 => ArpHardware::Ethernet,
            other => ArpHardware::Unknown(other),
        }
    }
}

impl From<ArpHardware> for u16 {
    fn from(value: ArpHardware) -> Self {
        match value {
            ArpHardware::Ethernet => 1,
            ArpHardware::Unknown(other) => other,
        }
    }
}

mod field {
    use core::ops::Range;

    pub const HTYPE: Range<usize> = 0..2;
    pub const PTYPE: Range<usize> = 2..4;
    pub const HLEN: usize = 4;
    pub const PLEN: usize = 5;
    pub const OPER: Range<usize> = 6..8;
    /// Start of the variable part: SHA, SPA, THA, TPA.
    pub const ADDRS: usize = 8;

    pub const fn sha(hlen: u8, _plen: u8) -> Range<usize> {
        ADDRS..ADDRS + hlen as usize
    }
    pub const fn spa(hlen: u8, plen: u8) -> Range<usize> {
        let start = sha(hlen, plen).end;
        start..start + plen as usize
    }
    pub const fn tha(hlen: u8, plen: u8) -> Range<usize> {
        let start = spa(hlen, plen).end;
        start..start + hlen as usize
    }
    pub const fn tpa(hlen: u8, plen: u8) -> Range<usize> {
        let start = tha(hlen, plen).end;
        start..start + plen as usize
    }
}

/// A view of an ARP packet in a byte buffer (an Ethernet payload; trailing padding is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than the addresses it declares.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the fixed part and the four addresses `hlen`/`plen` declare.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` when the buffer is shorter than 8 bytes plus twice `hlen + plen`.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        let d = self.buffer.as_ref();
        match (d.get(field::HLEN), d.get(field::PLEN)) {
            (Some(&hlen), Some(&plen)) if d.len() >= field::tpa(hlen, plen).end => Ok(()),
            _ => Err(Error::Truncated),
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The hardware type.
    #[inline]
    pub fn hardware_type(&self) -> ArpHardware {
        ArpHardware::from(be16(self.buffer.as_ref(), field::HTYPE.start))
    }

    /// The protocol type (an EtherType).
    #[inline]
    pub fn protocol_type(&self) -> EtherType {
        EtherType::from(be16(self.buffer.as_ref(), field::PTYPE.start))
    }

    /// The hardware address length in bytes.
    #[inline]
    pub fn hardware_len(&self) -> u8 {
        self.buffer.as_ref()[field::HLEN]
    }

    /// The protocol address length in bytes.
    #[inline]
    pub fn protocol_len(&self) -> u8 {
        self.buffer.as_ref()[field::PLEN]
    }

    /// The operation.
    #[inline]
    pub fn operation(&self) -> ArpOperation {
        ArpOperation::from(be16(self.buffer.as_ref(), field::OPER.start))
    }

    /// The sender hardware address (`hlen` bytes).
    #[inline]
    pub fn source_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::sha(self.hardware_len(), self.protocol_len())]
    }

    /// The sender protocol address (`plen` bytes).
    #[inline]
    pub fn source_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::spa(self.hardware_len(), self.protocol_len())]
    }

    /// The target hardware address (`hlen` bytes).
    #[inline]
    pub fn target_hardware_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tha(self.hardware_len(), self.protocol_len())]
    }

    /// The target protocol address (`plen` bytes).
    #[inline]
    pub fn target_protocol_addr(&self) -> &[u8] {
        &self.buffer.as_ref()[field::tpa(self.hardware_len(), self.protocol_len())]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the hardware type.
    #[inline]
    pub fn set_hardware_type(&mut self, value: ArpHardware) {
        self.buffer.as_mut()[field::HTYPE].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Sets the protocol type.
    #[inline]
    pub fn set_protocol_type(&mut self, value: EtherType) {
        self.buffer.as_mut()[field::PTYPE].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Sets the hardware address length; set it before the addresses, whose positions depend on it.
    #[inline]
    pub fn set_hardware_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::HLEN] = value;
    }

    /// Sets the protocol address length; set it before the addresses, whose positions depend on it.
    #[inline]
    pub fn set_protocol_len(&mut self, value: u8) {
        self.buffer.as_mut()[field::PLEN] = value;
    }

    /// Sets the operation.
    #[inline]
    pub fn set_operation(&mut self, value: ArpOperation) {
        self.buffer.as_mut()[field::OPER].copy_from_slice(&u16::from(value).to_be_bytes());
    }

    /// Sets the sender hardware address; `addr` must be `hlen` bytes long.
    #[inline]
    pub fn set_source_hardware_addr(&mut self, addr: &[u8]) {
        let range = field::sha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[range].copy_from_slice(addr);
    }

    /// Sets the sender protocol address; `addr` must be `plen` bytes long.
    #[inline]
    pub fn set_source_protocol_addr(&mut self, addr: &[u8]) {
        let range = field::spa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[range].copy_from_slice(addr);
    }

    /// Sets the target hardware address; `addr` must be `hlen` bytes long.
    #[inline]
    pub fn set_target_hardware_addr(&mut self, addr: &[u8]) {
        let range = field::tha(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[range].copy_from_slice(addr);
    }

    /// Sets the target protocol address; `addr` must be `plen` bytes long.
    #[inline]
    pub fn set_target_protocol_addr(&mut self, addr: &[u8]) {
        let range = field::tpa(self.hardware_len(), self.protocol_len());
        self.buffer.as_mut()[range].copy_from_slice(addr);
    }
}

/// A big-endian u16 at `at` (within a range the caller has checked).
#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// An ARP packet for IPv4 over Ethernet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ArpRepr {
    /// Request, reply, or another code carried through.
    pub operation: ArpOperation,
    /// The sender's hardware address.
    pub source_mac: MacAddr,
    /// The sender's IPv4 address.
    pub source_ip: Ipv4Addr,
    /// The target's hardware address (zero in a request).
    pub target_mac: MacAddr,
    /// The target's IPv4 address (the address asked about, in a request).
    pub target_ip: Ipv4Addr,
}

impl ArpRepr {
    /// Length of an Ethernet/IPv4 ARP packet: 8 fixed bytes and two (6 + 4)-byte address pairs.
    pub const PACKET_LEN: usize = 28;

    /// A request asking who has `target_ip`, from `source_mac`/`source_ip`.
    #[inline]
    pub const fn request(source_mac: MacAddr, source_ip: Ipv4Addr, target_ip: Ipv4Addr) -> ArpRepr {
        ArpRepr {
            operation: ArpOperation::Request,
            source_mac,
            source_ip,
            target_mac: MacAddr::ZERO,
            target_ip,
        }
    }

    /// The reply to this request, answering that its target address is at `our_mac`.
    ///
    /// `None` when `self` is not a request. The caller decides whether `target_ip` is ours.
    #[inline]
    pub fn reply_to(&self, our_mac: MacAddr) -> Option<ArpRepr> {
        (self.operation == ArpOperation::Request).then_some(ArpRepr {
            operation: ArpOperation::Reply,
            source_mac: our_mac,
            source_ip: self.target_ip,
            target_mac: self.source_mac,
            target_ip: self.source_ip,
        })
    }

    /// Reads a checked packet; `Err(Unsupported)` unless it is Ethernet (6-byte) over IPv4 (4-byte).
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&T>) -> Result<ArpRepr> {
        packet.check_len()?;
        if packet.hardware_type() != ArpHardware::Ethernet
            || packet.protocol_type() != EtherType::Ipv4
            || packet.hardware_len() != 6
            || packet.protocol_len() != 4
        {
            return Err(Error::Unsupported);
        }
        let mac = |b: &[u8]| MacAddr::from_bytes(b).ok_or(Error::Truncated);
        let ip = |b: &[u8]| <[u8; 4]>::try_from(b).map(Ipv4Addr::from).map_err(|_| Error::Truncated);
        Ok(ArpRepr {
            operation: packet.operation(),
            source_mac: mac(packet.source_hardware_addr())?,
            source_ip: ip(packet.source_protocol_addr())?,
            target_mac: mac(packet.target_hardware_addr())?,
            target_ip: ip(packet.target_protocol_addr())?,
        })
    }

    /// Bytes `emit` writes: always 28.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        Self::PACKET_LEN
    }

    /// Writes the packet into the first 28 bytes of `packet`; `Err(Truncated)` if the buffer is shorter.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        if packet.buffer.as_ref().len() < Self::PACKET_LEN {
            return Err(Error::Truncated);
        }
        packet.set_hardware_type(ArpHardware::Ethernet);
        packet.set_protocol_type(EtherType::Ipv4);
        packet.set_hardware_len(6);
        packet.set_protocol_len(4);
        packet.set_operation(self.operation);
        packet.set_source_hardware_addr(&self.source_mac.0);
        packet.set_source_protocol_addr(&self.source_ip.octets());
        packet.set_target_hardware_addr(&self.target_mac.0);
        packet.set_target_protocol_addr(&self.target_ip.octets());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::ethernet::{EthernetRepr, Frame};
    use proptest::prelude::*;

    /// Linux (02:00:00:00:00:01, 198.18.0.1) asks who has 198.18.0.2: 42 bytes as captured on the sender.
    const REQUEST_FRAME: [u8; 42] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x01, // Ethernet/IPv4, request
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x01, // sender 02:..:01 198.18.0.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xc6, 0x12, 0x00, 0x02, // target ?, 198.18.0.2
    ];

    /// The reply from 02:00:00:00:00:02 as received off the wire: padded to the 60-byte Ethernet minimum.
    const REPLY_FRAME: [u8; 60] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x06, // Ethernet
        0x00, 0x01, 0x08, 0x00, 0x06, 0x04, 0x00, 0x02, // Ethernet/IPv4, reply
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0xc6, 0x12, 0x00, 0x02, // sender 02:..:02 198.18.0.2
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0xc6, 0x12, 0x00, 0x01, // target 02:..:01 198.18.0.1
        0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, // padding
    ];

    const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const IP1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    fn arp_of(frame_bytes: &[u8]) -> (EthernetRepr, ArpRepr) {
        let frame = Frame::new_checked(frame_bytes).unwrap();
        let eth = EthernetRepr::parse(&frame).unwrap();
        let packet = Packet::new_checked(frame.payload()).unwrap();
        (eth, ArpRepr::parse(&packet).unwrap())
    }

    #[test]
    fn arp_request_frame_reads_every_field() {
        let frame = Frame::new_checked(&REQUEST_FRAME[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Arp);
        let packet = Packet::new_checked(frame.payload()).unwrap();
        assert_eq!(packet.hardware_type(), ArpHardware::Ethernet);
        assert_eq!(packet.protocol_type(), EtherType::Ipv4);
        assert_eq!(packet.hardware_len(), 6);
        assert_eq!(packet.protocol_len(), 4);
        assert_eq!(packet.operation(), ArpOperation::Request);
        assert_eq!(packet.source_hardware_addr(), &MAC1.0);
        assert_eq!(packet.source_protocol_addr(), &IP1.octets());
        assert_eq!(packet.target_hardware_addr(), &[0; 6]);
        assert_eq!(packet.target_protocol_addr(), &IP2.octets());

        let (eth, arp) = arp_of(&REQUEST_FRAME);
        assert_eq!(
            eth,
            EthernetRepr {
                src_addr: MAC1,
                dst_addr: MacAddr::BROADCAST,
                ethertype: EtherType::Arp
            }
        );
        assert_eq!(arp, ArpRepr::request(MAC1, IP1, IP2));
    }

    #[test]
    fn arp_request_emit_matches_captured_frame() {
        let eth = EthernetRepr {
            src_addr: MAC1,
            dst_addr: MacAddr::BROADCAST,
            ethertype: EtherType::Arp,
        };
        let arp = ArpRepr::request(MAC1, IP1, IP2);
        let mut buf = [0xeeu8; 42];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame).unwrap();
        arp.emit(&mut Packet::new_unchecked(frame.payload_mut())).unwrap();
        assert_eq!(buf, REQUEST_FRAME);
    }

    #[test]
    fn arp_reply_padded_frame_reads_every_field() {
        let frame = Frame::new_checked(&REPLY_FRAME[..]).unwrap();
        let packet = Packet::new_checked(frame.payload()).unwrap();
        assert_eq!(packet.operation(), ArpOperation::Reply);
        assert_eq!(packet.source_hardware_addr(), &MAC2.0);
        assert_eq!(packet.source_protocol_addr(), &IP2.octets());
        assert_eq!(packet.target_hardware_addr(), &MAC1.0);
        assert_eq!(packet.target_protocol_addr(), &IP1.octets());
        let (eth, arp) = arp_of(&REPLY_FRAME);
        assert_eq!(
            eth,
            EthernetRepr {
                src_addr: MAC2,
                dst_addr: MAC1,
                ethertype: EtherType::Arp
            }
        );
        assert_eq!(
            arp,
            ArpRepr {
                operation: ArpOperation::Reply,
                source_mac: MAC2,
                source_ip: IP2,
                target_mac: MAC1,
                target_ip: IP1
            }
        );
    }

    #[test]
    fn arp_reply_to_request_emits_captured_reply() {
        let (_, request) = arp_of(&REQUEST_FRAME);
        let reply = request.reply_to(MAC2).unwrap();
        let eth = EthernetRepr {
            src_addr: MAC2,
            dst_addr: request.source_mac,
            ethertype: EtherType::Arp,
        };
        let mut buf = [0u8; 60];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame).unwrap();
        reply.emit(&mut Packet::new_unchecked(frame.payload_mut())).unwrap();
        assert_eq!(buf, REPLY_FRAME);
        assert_eq!(reply.reply_to(MAC1), None);
    }

    #[test]
    fn arp_new_checked_short_is_truncated() {
        let arp = &REQUEST_FRAME[14..];
        assert_eq!(Packet::new_checked(&arp[..27]), Err(Error::Truncated));
        assert_eq!(Packet::new_checked(&arp[..5]), Err(Error::Truncated));
        assert_eq!(Packet::new_checked(&arp[..0]), Err(Error::Truncated));
        assert!(Packet::new_checked(arp).is_ok());
    }

    #[test]
    fn arp_new_checked_sizes_by_declared_lengths() {
        // hlen 8 would need 8 + 2 * (8 + 4) = 32 bytes.
        let mut bytes = [0u8; 32];
        bytes[..28].copy_from_slice(&REQUEST_FRAME[14..]);
        bytes[4] = 8;
        assert_eq!(Packet::new_checked(&bytes[..31]), Err(Error::Truncated));
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.target_protocol_addr().len(), 4);
        assert_eq!(ArpRepr::parse(&packet), Err(Error::Unsupported));
    }

    #[test]
    fn arp_parse_unsupported_hardware_type_is_rejected() {
        let mut bytes = [0u8; 28];
        bytes.copy_from_slice(&REQUEST_FRAME[14..]);
        bytes[1] = 6; // IEEE 802 networks
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(packet.hardware_type(), ArpHardware::Unknown(6));
        assert_eq!(ArpRepr::parse(&packet), Err(Error::Unsupported));
    }

    #[test]
    fn arp_parse_unsupported_protocol_is_rejected() {
        let mut bytes = [0u8; 28];
        bytes.copy_from_slice(&REQUEST_FRAME[14..]);
        bytes[2..4].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(
            ArpRepr::parse(&Packet::new_checked(&bytes[..]).unwrap()),
            Err(Error::Unsupported)
        );
        bytes.copy_from_slice(&REQUEST_FRAME[14..]);
        bytes[5] = 16;
        // plen 16 needs 48 bytes: the view refuses before the Repr is asked.
        assert_eq!(Packet::new_checked(&bytes[..]), Err(Error::Truncated));
    }

    #[test]
    fn arp_unknown_operation_is_carried_through() {
        let mut bytes = [0u8; 28];
        bytes.copy_from_slice(&REQUEST_FRAME[14..]);
        bytes[7] = 3; // RARP request
        let repr = ArpRepr::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(repr.operation, ArpOperation::Unknown(3));
        assert_eq!(repr.reply_to(MAC2), None);
    }

    #[test]
    fn arp_emit_short_buffer_is_truncated() {
        let mut buf = [0u8; 27];
        let repr = ArpRepr::request(MAC1, IP1, IP2);
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::Truncated)
        );
        assert_eq!(repr.buffer_len(), 28);
    }

    fn arb_repr() -> impl Strategy<Value = ArpRepr> {
        (
            any::<u16>(),
            any::<[u8; 6]>(),
            any::<u32>(),
            any::<[u8; 6]>(),
            any::<u32>(),
        )
            .prop_map(|(op, sm, si, tm, ti)| ArpRepr {
                operation: ArpOperation::from(op),
                source_mac: MacAddr(sm),
                source_ip: Ipv4Addr::from(si),
                target_mac: MacAddr(tm),
                target_ip: Ipv4Addr::from(ti),
            })
    }

    proptest! {
        #[test]
        fn arp_any_repr_round_trips(repr in arb_repr(), extra in 0usize..32) {
            let mut buf = vec![0u8; repr.buffer_len() + extra];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(ArpRepr::parse(&packet), Ok(repr));
        }

        #[test]
        fn arp_any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..80), lens in any::<bool>()) {
            let mut bytes = bytes;
            if lens && bytes.len() >= 6 {
                // Steer half the cases to the lengths the Repr accepts, so parse gets past the first check.
                bytes[..6].copy_from_slice(&[0, 1, 8, 0, 6, 4]);
            }
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.hardware_type(), packet.protocol_type(), packet.operation());
                let _ = (packet.source_hardware_addr(), packet.source_protocol_addr());
                let _ = (packet.target_hardware_addr(), packet.target_protocol_addr());
                let _ = ArpRepr::parse(&packet);
            }
        }
    }
}
