//! Ethernet II frames (IEEE 802.3 with an EtherType), and the 802.1Q tag that synack recognises only to drop.
//!
//! The frame check sequence is not part of the buffer: NICs strip it on receive and append it on transmit.

use core::fmt;

use super::{Error, Result};

/// A 48-bit Ethernet (MAC) address.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct MacAddr(pub [u8; 6]);

impl MacAddr {
    /// The all-ones address every station receives; ARP requests go here.
    pub const BROADCAST: MacAddr = MacAddr([0xff; 6]);
    /// The all-zeros address: the "unknown" target hardware address of an ARP request.
    pub const ZERO: MacAddr = MacAddr([0; 6]);

    /// The address from the first six bytes of `bytes`, or `None` when there are fewer.
    #[inline]
    pub fn from_bytes(bytes: &[u8]) -> Option<MacAddr> {
        let six: [u8; 6] = bytes.get(..6)?.try_into().ok()?;
        Some(MacAddr(six))
    }

    /// The six octets, in wire order.
    #[inline]
    pub const fn octets(self) -> [u8; 6] {
        self.0
    }

    /// Whether this is the broadcast address, which a receive filter must accept besides our own.
    #[inline]
    pub const fn is_broadcast(self) -> bool {
        matches!(self.0, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff])
    }

    /// Whether the group bit (least significant bit of the first octet) is set; broadcast is a multicast too.
    #[inline]
    pub const fn is_multicast(self) -> bool {
        self.0[0] & 0x01 != 0
    }

    /// Whether this names a single station: the only kind of address a frame may come *from*.
    #[inline]
    pub const fn is_unicast(self) -> bool {
        !self.is_multicast()
    }

    /// Whether the locally-administered bit is set (addresses such as `02:..` that no vendor assigned).
    #[inline]
    pub const fn is_local(self) -> bool {
        self.0[0] & 0x02 != 0
    }
}

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl fmt::Debug for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl From<[u8; 6]> for MacAddr {
    fn from(octets: [u8; 6]) -> Self {
        MacAddr(octets)
    }
}

/// The protocol carried in an Ethernet frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EtherType {
    /// IPv4 (0x0800): the one payload synack processes.
    Ipv4,
    /// ARP (0x0806): answered so peers can reach us, and used to learn next-hop addresses.
    Arp,
    /// An 802.1Q customer VLAN tag (0x8100); the real EtherType follows the tag.
    Vlan,
    /// An 802.1ad service tag (0x88a8, "QinQ"); dropped like [`EtherType::Vlan`].
    QinQ,
    /// IPv6 (0x86dd): not handled, but named so the drop can be counted apart from junk.
    Ipv6,
    /// Any other value.
    Unknown(u16),
}

impl EtherType {
    /// The IPv4 EtherType as a number, for the receive path's match on the raw field.
    pub(crate) const IPV4_RAW: u16 = 0x0800;
    /// The ARP EtherType as a number.
    pub(crate) const ARP_RAW: u16 = 0x0806;

    /// [`EtherType::is_vlan`] on the raw field: 0x8100 (802.1Q) or 0x88a8 (802.1ad).
    #[inline]
    pub(crate) const fn is_vlan_raw(value: u16) -> bool {
        matches!(value, 0x8100 | 0x88a8)
    }

    /// Whether the frame carries a VLAN tag (802.1Q or 802.1ad) in place of its payload's EtherType.
    #[inline]
    pub const fn is_vlan(self) -> bool {
        matches!(self, EtherType::Vlan | EtherType::QinQ)
    }
}

impl From<u16> for EtherType {
    fn from(value: u16) -> Self {
        match value {
            0x0800 => EtherType::Ipv4,
            0x0806 => EtherType::Arp,
            0x8100 => EtherType::Vlan,
            0x88a8 => EtherType::QinQ,
            0x86dd => EtherType::Ipv6,
            other => EtherType::Unknown(other),
        }
    }
}

impl From<EtherType> for u16 {
    fn from(value: EtherType) -> Self {
        match value {
            EtherType::Ipv4 => 0x0800,
            EtherType::Arp => 0x0806,
            EtherType::Vlan => 0x8100,
            EtherType::QinQ => 0x88a8,
            EtherType::Ipv6 => 0x86dd,
            EtherType::Unknown(other) => other,
        }
    }
}

/// An 802.1Q tag: reported so the caller can log or count VLAN traffic it drops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VlanTag {
    /// The tag control information: PCP (3 bits), DEI (1 bit), VID (12 bits).
    pub tci: u16,
    /// The EtherType of the payload after the tag.
    pub inner: EtherType,
}

impl VlanTag {
    /// The VLAN identifier (low 12 bits of the TCI).
    #[inline]
    pub const fn vid(&self) -> u16 {
        self.tci & 0x0fff
    }

    /// The priority code point (top 3 bits of the TCI).
    #[inline]
    pub const fn pcp(&self) -> u8 {
        (self.tci >> 13) as u8
    }

    /// The drop-eligible indicator.
    #[inline]
    pub const fn dei(&self) -> bool {
        self.tci & 0x1000 != 0
    }
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const DST: Range<usize> = 0..6;
    pub const SRC: Range<usize> = 6..12;
    pub const ETHERTYPE: Range<usize> = 12..14;
    pub const PAYLOAD: RangeFrom<usize> = 14..;
    pub const VLAN_TCI: Range<usize> = 14..16;
    pub const VLAN_INNER: Range<usize> = 16..18;
}

/// Length of the untagged header: destination, source, EtherType.
pub const HEADER_LEN: usize = field::PAYLOAD.start;

/// A view of an Ethernet II frame in a byte buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than [`HEADER_LEN`].
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Frame<T> {
        Frame { buffer }
    }

    /// Wraps `buffer` after checking it holds a full header, so no getter can panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Frame<T>> {
        let frame = Frame::new_unchecked(buffer);
        frame.check_len()?;
        Ok(frame)
    }

    /// `Err(Truncated)` when the buffer is shorter than the 14-byte header.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < HEADER_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    /// The underlying buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The 14-byte header as an array, so that the getters read constant offsets without bounds checks.
    ///
    /// # Panics
    /// If the buffer is shorter than 14 bytes, which [`Frame::new_checked`] rules out.
    #[inline]
    fn fixed(&self) -> &[u8; HEADER_LEN] {
        match self.buffer.as_ref().first_chunk() {
            Some(fixed) => fixed,
            None => shorter_than_header(),
        }
    }

    /// The destination address.
    #[inline]
    pub fn dst_addr(&self) -> MacAddr {
        mac_at(self.fixed(), field::DST.start)
    }

    /// The source address.
    #[inline]
    pub fn src_addr(&self) -> MacAddr {
        mac_at(self.fixed(), field::SRC.start)
    }

    /// The EtherType field (for a tagged frame, the tag's TPID).
    #[inline]
    pub fn ethertype(&self) -> EtherType {
        EtherType::from(self.ethertype_raw())
    }

    /// The EtherType field as a number: the receive path matches on it directly, which spares the cascade of
    /// comparisons that building an [`EtherType`] takes.
    #[inline]
    pub(crate) fn ethertype_raw(&self) -> u16 {
        let fixed = self.fixed();
        u16::from_be_bytes([fixed[field::ETHERTYPE.start], fixed[field::ETHERTYPE.start + 1]])
    }

    /// The VLAN tag of a tagged frame, `None` for an untagged one.
    ///
    /// `Err(Truncated)` when the frame is tagged but too short to hold the 4-byte tag.
    #[inline]
    pub fn vlan_tag(&self) -> Result<Option<VlanTag>> {
        if !self.ethertype().is_vlan() {
            return Ok(None);
        }
        let d = self.buffer.as_ref();
        match (d.get(field::VLAN_TCI), d.get(field::VLAN_INNER)) {
            (Some(&[t0, t1]), Some(&[e0, e1])) => Ok(Some(VlanTag {
                tci: u16::from_be_bytes([t0, t1]),
                inner: EtherType::from(u16::from_be_bytes([e0, e1])),
            })),
            _ => Err(Error::Truncated),
        }
    }

    /// The bytes after the 14-byte header (for a tagged frame, this starts with the tag).
    #[inline]
    pub fn payload(&self) -> &[u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    /// Sets the destination address.
    #[inline]
    pub fn set_dst_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::DST].copy_from_slice(&addr.0);
    }

    /// Sets the source address.
    #[inline]
    pub fn set_src_addr(&mut self, addr: MacAddr) {
        self.buffer.as_mut()[field::SRC].copy_from_slice(&addr.0);
    }

    /// Sets the EtherType.
    #[inline]
    pub fn set_ethertype(&mut self, ethertype: EtherType) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&u16::from(ethertype).to_be_bytes());
    }

    /// The bytes after the header, to build the payload in place.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

/// The address at a constant offset of the header: one 4-byte and one 2-byte copy.
#[inline(always)]
fn mac_at(fixed: &[u8; HEADER_LEN], at: usize) -> MacAddr {
    let mut out = [0u8; 6];
    out.copy_from_slice(&fixed[at..at + 6]);
    MacAddr(out)
}

/// The panic of a getter on an unchecked view too short for the header, kept out of line.
#[cold]
#[inline(never)]
#[track_caller]
fn shorter_than_header() -> ! {
    panic!("Ethernet buffer shorter than the 14-byte header (use Frame::new_checked on received data)")
}

/// The parsed header of an untagged Ethernet II frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EthernetRepr {
    /// Who sent the frame.
    pub src_addr: MacAddr,
    /// Whom the frame is for.
    pub dst_addr: MacAddr,
    /// What the payload is.
    pub ethertype: EtherType,
}

impl EthernetRepr {
    /// Length of the header `emit` writes.
    pub const HEADER_LEN: usize = HEADER_LEN;

    /// Reads the header of a checked frame.
    ///
    /// A VLAN-tagged frame is `Err(VlanTagged)`: synack runs on untagged links, and the caller counts the drop.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&T>) -> Result<EthernetRepr> {
        frame.check_len()?;
        let ethertype = frame.ethertype();
        if ethertype.is_vlan() {
            return Err(Error::VlanTagged);
        }
        Ok(EthernetRepr {
            src_addr: frame.src_addr(),
            dst_addr: frame.dst_addr(),
            ethertype,
        })
    }

    /// Length of the header alone.
    #[inline]
    pub const fn header_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// Bytes `emit` needs (the header; the caller sizes the buffer for the payload).
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        Self::HEADER_LEN
    }

    /// Writes the header into the first 14 bytes of `frame`; `Err(Truncated)` if the buffer is shorter.
    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, frame: &mut Frame<T>) -> Result<()> {
        frame.check_len()?;
        frame.set_dst_addr(self.dst_addr);
        frame.set_src_addr(self.src_addr);
        frame.set_ethertype(self.ethertype);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The head of an ARP request as Linux sends it: broadcast, from 02:00:00:00:00:01, EtherType ARP.
    const ARP_REQUEST_HEAD: [u8; 16] = [
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x01,
    ];

    /// An 802.1Q-tagged IPv4 frame head: TPID 0x8100, PCP 5, DEI 0, VID 100, inner EtherType IPv4.
    const TAGGED: [u8; 20] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x81, 0x00, 0xa0, 0x64, 0x08, 0x00,
        0x45, 0x00,
    ];

    #[test]
    fn raw_ethertype_constants_agree_with_ethertype() {
        // The receive path matches the raw field against these; they must name what `EtherType` names.
        assert_eq!(EtherType::from(EtherType::IPV4_RAW), EtherType::Ipv4);
        assert_eq!(EtherType::from(EtherType::ARP_RAW), EtherType::Arp);
        for value in 0..=u16::MAX {
            assert_eq!(
                EtherType::is_vlan_raw(value),
                EtherType::from(value).is_vlan(),
                "{value:#06x}"
            );
        }
    }

    #[test]
    fn frame_arp_request_reads_every_field() {
        let frame = Frame::new_checked(&ARP_REQUEST_HEAD[..]).unwrap();
        assert_eq!(frame.dst_addr(), MacAddr::BROADCAST);
        assert_eq!(frame.src_addr(), MacAddr([2, 0, 0, 0, 0, 1]));
        assert_eq!(frame.ethertype(), EtherType::Arp);
        assert_eq!(frame.vlan_tag(), Ok(None));
        assert_eq!(frame.payload(), &[0x00, 0x01]);
        let repr = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(
            repr,
            EthernetRepr {
                src_addr: MacAddr([2, 0, 0, 0, 0, 1]),
                dst_addr: MacAddr::BROADCAST,
                ethertype: EtherType::Arp
            }
        );
    }

    #[test]
    fn ethernet_emit_matches_captured_header() {
        let repr = EthernetRepr {
            src_addr: MacAddr([2, 0, 0, 0, 0, 1]),
            dst_addr: MacAddr::BROADCAST,
            ethertype: EtherType::Arp,
        };
        let mut buf = [0u8; 14];
        repr.emit(&mut Frame::new_unchecked(&mut buf[..])).unwrap();
        assert_eq!(buf, ARP_REQUEST_HEAD[..14]);
        assert_eq!(repr.buffer_len(), 14);
    }

    #[test]
    fn ethernet_emit_short_buffer_is_truncated() {
        let repr = EthernetRepr {
            src_addr: MacAddr::ZERO,
            dst_addr: MacAddr::ZERO,
            ethertype: EtherType::Ipv4,
        };
        let mut buf = [0u8; 13];
        assert_eq!(
            repr.emit(&mut Frame::new_unchecked(&mut buf[..])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn frame_new_checked_short_is_truncated() {
        assert_eq!(Frame::new_checked(&ARP_REQUEST_HEAD[..13]), Err(Error::Truncated));
        assert_eq!(Frame::new_checked(&[][..]), Err(Error::Truncated));
        assert!(Frame::new_checked(&ARP_REQUEST_HEAD[..14]).is_ok());
    }

    #[test]
    fn ethernet_parse_vlan_tagged_is_rejected() {
        let frame = Frame::new_checked(&TAGGED[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::Vlan);
        let tag = frame.vlan_tag().unwrap().unwrap();
        assert_eq!(tag.tci, 0xa064);
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.pcp(), 5);
        assert!(!tag.dei());
        assert_eq!(tag.inner, EtherType::Ipv4);
        assert_eq!(EthernetRepr::parse(&frame), Err(Error::VlanTagged));
    }

    #[test]
    fn ethernet_parse_qinq_tagged_is_rejected() {
        let mut bytes = TAGGED;
        bytes[12..14].copy_from_slice(&[0x88, 0xa8]);
        let frame = Frame::new_checked(&bytes[..]).unwrap();
        assert_eq!(frame.ethertype(), EtherType::QinQ);
        assert_eq!(frame.vlan_tag().unwrap().map(|t| t.vid()), Some(100));
        assert_eq!(EthernetRepr::parse(&frame), Err(Error::VlanTagged));
    }

    #[test]
    fn frame_vlan_tag_short_is_truncated() {
        let frame = Frame::new_checked(&TAGGED[..17]).unwrap();
        assert_eq!(frame.vlan_tag(), Err(Error::Truncated));
        // The tag is still reported as such by the Repr, whatever its length.
        assert_eq!(EthernetRepr::parse(&frame), Err(Error::VlanTagged));
        assert!(Frame::new_checked(&TAGGED[..18]).unwrap().vlan_tag().unwrap().is_some());
    }

    #[test]
    fn frame_setters_write_in_place() {
        let mut buf = [0u8; 16];
        let mut frame = Frame::new_checked(&mut buf[..]).unwrap();
        frame.set_dst_addr(MacAddr([2, 0, 0, 0, 0, 2]));
        frame.set_src_addr(MacAddr([2, 0, 0, 0, 0, 1]));
        frame.set_ethertype(EtherType::Ipv4);
        frame.payload_mut().copy_from_slice(&[0x45, 0x00]);
        assert_eq!(frame.into_inner().len(), 16);
        assert_eq!(buf, [2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00, 0x45, 0x00]);
    }

    #[test]
    fn macaddr_kinds_classify_by_first_octet() {
        assert!(MacAddr::BROADCAST.is_broadcast());
        assert!(MacAddr::BROADCAST.is_multicast());
        assert!(!MacAddr::BROADCAST.is_unicast());
        let mcast = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
        assert!(mcast.is_multicast() && !mcast.is_broadcast() && !mcast.is_unicast());
        let local = MacAddr([0x02, 0, 0, 0, 0, 1]);
        assert!(local.is_unicast() && local.is_local() && !local.is_multicast());
        assert!(!MacAddr([0x00, 0x1b, 0x21, 0, 0, 1]).is_local());
        assert!(MacAddr::ZERO.is_unicast() && !MacAddr::ZERO.is_broadcast());
    }

    #[test]
    fn macaddr_display_is_colon_hex() {
        let mac = MacAddr([0x02, 0xab, 0x00, 0x0c, 0xff, 0x10]);
        assert_eq!(mac.to_string(), "02:ab:00:0c:ff:10");
        assert_eq!(format!("{mac:?}"), "02:ab:00:0c:ff:10");
        assert_eq!(MacAddr::from_bytes(&[2, 0xab, 0, 0x0c, 0xff, 0x10, 9]), Some(mac));
        assert_eq!(MacAddr::from_bytes(&[1, 2, 3, 4, 5]), None);
    }

    #[test]
    fn ethertype_known_values_round_trip() {
        for (value, kind) in [
            (0x0800, EtherType::Ipv4),
            (0x0806, EtherType::Arp),
            (0x8100, EtherType::Vlan),
            (0x88a8, EtherType::QinQ),
            (0x86dd, EtherType::Ipv6),
            (0x1234, EtherType::Unknown(0x1234)),
        ] {
            assert_eq!(EtherType::from(value), kind);
            assert_eq!(u16::from(kind), value);
        }
    }

    fn arb_repr() -> impl Strategy<Value = EthernetRepr> {
        (any::<[u8; 6]>(), any::<[u8; 6]>(), any::<u16>()).prop_filter_map("untagged", |(s, d, t)| {
            let ethertype = EtherType::from(t);
            (!ethertype.is_vlan()).then_some(EthernetRepr {
                src_addr: MacAddr(s),
                dst_addr: MacAddr(d),
                ethertype,
            })
        })
    }

    proptest! {
        #[test]
        fn ethernet_any_repr_round_trips(repr in arb_repr(), extra in 0usize..64) {
            let mut buf = vec![0u8; repr.buffer_len() + extra];
            repr.emit(&mut Frame::new_unchecked(&mut buf[..])).unwrap();
            let frame = Frame::new_checked(&buf[..]).unwrap();
            prop_assert_eq!(EthernetRepr::parse(&frame), Ok(repr));
            prop_assert_eq!(frame.payload().len(), extra);
        }

        #[test]
        fn ethernet_any_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            if let Ok(frame) = Frame::new_checked(&bytes[..]) {
                let _ = (frame.dst_addr(), frame.src_addr(), frame.ethertype(), frame.payload());
                let _ = frame.vlan_tag();
                let _ = EthernetRepr::parse(&frame);
            } else {
                prop_assert!(bytes.len() < 14);
            }
        }
    }
}
