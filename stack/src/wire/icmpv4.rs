//! ICMP for IPv4 (RFC 792): echo, so the stack answers `ping`, and the two error messages a TCP stack reacts to
//! (destination unreachable, time exceeded; RFC 5927 on how to treat them).
//!
//! The view's buffer must be exactly the ICMP message (the IPv4 payload, which ends at the total length), since
//! the checksum covers all of it.

use super::ipv4::{self, Ipv4Repr};
use super::{ChecksumPolicy, Error, Result, checksum};

/// The ICMP message type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    /// Echo reply (0).
    EchoReply,
    /// Destination unreachable (3).
    DstUnreachable,
    /// Redirect (5).
    Redirect,
    /// Echo request (8).
    EchoRequest,
    /// Time exceeded (11).
    TimeExceeded,
    /// Parameter problem (12).
    ParamProblem,
    /// Any other type.
    Unknown(u8),
}

impl From<u8> for Message {
    fn from(value: u8) -> Self {
        match value {
            0 => Message::EchoReply,
            3 => Message::DstUnreachable,
            5 => Message::Redirect,
            8 => Message::EchoRequest,
            11 => Message::TimeExceeded,
            12 => Message::ParamProblem,
            other => Message::Unknown(other),
        }
    }
}

impl From<Message> for u8 {
    fn from(value: Message) -> Self {
        match value {
            Message::EchoReply => 0,
            Message::DstUnreachable => 3,
            Message::Redirect => 5,
            Message::EchoRequest => 8,
            Message::TimeExceeded => 11,
            Message::ParamProblem => 12,
            Message::Unknown(other) => other,
        }
    }
}

/// Why a destination was unreachable: the code of a type-3 message (RFC 792, RFC 1122, RFC 1812).
///
/// RFC 5927 §4 treats the "hard" codes (protocol, port, fragmentation needed) apart from the soft ones, hence a
/// name for each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DstUnreachable {
    /// 0: net unreachable.
    NetUnreachable,
    /// 1: host unreachable.
    HostUnreachable,
    /// 2: protocol unreachable.
    ProtoUnreachable,
    /// 3: port unreachable.
    PortUnreachable,
    /// 4: fragmentation needed and DF set; the next-hop MTU is in [`Packet::next_hop_mtu`].
    FragRequired,
    /// 5: source route failed.
    SrcRouteFailed,
    /// 6: destination network unknown.
    DstNetUnknown,
    /// 7: destination host unknown.
    DstHostUnknown,
    /// 8: source host isolated.
    SrcHostIsolated,
    /// 9: network administratively prohibited.
    NetProhibited,
    /// 10: host administratively prohibited.
    HostProhibited,
    /// 11: network unreachable for the type of service.
    NetUnreachToS,
    /// 12: host unreachable for the type of service.
    HostUnreachToS,
    /// 13: communication administratively prohibited.
    CommProhibited,
    /// 14: host precedence violation.
    HostPrecedenceViolation,
    /// 15: precedence cutoff in effect.
    PrecedenceCutoff,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for DstUnreachable {
    fn from(value: u8) -> Self {
        use DstUnreachable::*;
        match value {
            0 => NetUnreachable,
            1 => HostUnreachable,
            2 => ProtoUnreachable,
            3 => PortUnreachable,
            4 => FragRequired,
            5 => SrcRouteFailed,
            6 => DstNetUnknown,
            7 => DstHostUnknown,
            8 => SrcHostIsolated,
            9 => NetProhibited,
            10 => HostProhibited,
            11 => NetUnreachToS,
            12 => HostUnreachToS,
            13 => CommProhibited,
            14 => HostPrecedenceViolation,
            15 => PrecedenceCutoff,
            other => Unknown(other),
        }
    }
}

impl From<DstUnreachable> for u8 {
    fn from(value: DstUnreachable) -> Self {
        use DstUnreachable::*;
        match value {
            NetUnreachable => 0,
            HostUnreachable => 1,
            ProtoUnreachable => 2,
            PortUnreachable => 3,
            FragRequired => 4,
            SrcRouteFailed => 5,
            DstNetUnknown => 6,
            DstHostUnknown => 7,
            SrcHostIsolated => 8,
            NetProhibited => 9,
            HostProhibited => 10,
            NetUnreachToS => 11,
            HostUnreachToS => 12,
            CommProhibited => 13,
            HostPrecedenceViolation => 14,
            PrecedenceCutoff => 15,
            Unknown(other) => other,
        }
    }
}

/// What expired: the code of a type-11 message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TimeExceeded {
    /// 0: the TTL reached zero in transit (what `traceroute` provokes).
    TtlExpired,
    /// 1: fragment reassembly time exceeded.
    FragExpired,
    /// Any other code.
    Unknown(u8),
}

impl From<u8> for TimeExceeded {
    fn from(value: u8) -> Self {
        match value {
            0 => TimeExceeded::TtlExpired,
            1 => TimeExceeded::FragExpired,
            other => TimeExceeded::Unknown(other),
        }
    }
}

impl From<TimeExceeded> for u8 {
    fn from(value: TimeExceeded) -> Self {
        match value {
            TimeExceeded::TtlExpired => 0,
            TimeExceeded::FragExpired => 1,
            TimeExceeded::Unknown(other) => other,
        }
    }
}

mod field {
    use core::ops::{Range, RangeFrom};

    pub const TYPE: usize = 0;
    pub const CODE: usize = 1;
    pub const CHECKSUM: Range<usize> = 2..4;
    /// The second word: echo identifier and sequence number, or unused/MTU in error messages.
    pub const REST: Range<usize> = 4..8;
    pub const ECHO_IDENT: Range<usize> = 4..6;
    pub const ECHO_SEQNO: Range<usize> = 6..8;
    pub const NEXT_HOP_MTU: Range<usize> = 6..8;
    pub const DATA: RangeFrom<usize> = 8..;
}

/// Length of the fixed ICMP header: type, code, checksum and one word that depends on the type.
pub const HEADER_LEN: usize = field::DATA.start;

/// A view of an ICMPv4 message in a byte buffer that holds exactly the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps `buffer` without checking it; getters panic if it is shorter than 8 bytes.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps `buffer` after checking it holds the 8-byte header, so no getter can panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Err(Truncated)` when the buffer is shorter than the 8-byte header.
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

    /// The message type.
    #[inline]
    pub fn msg_type(&self) -> Message {
        Message::from(self.buffer.as_ref()[field::TYPE])
    }

    /// The message code (meaning depends on the type).
    #[inline]
    pub fn msg_code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    /// The checksum field.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.buffer.as_ref(), field::CHECKSUM.start)
    }

    /// The echo identifier (echo request and reply only).
    #[inline]
    pub fn echo_ident(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_IDENT.start)
    }

    /// The echo sequence number (echo request and reply only).
    #[inline]
    pub fn echo_seq_no(&self) -> u16 {
        be16(self.buffer.as_ref(), field::ECHO_SEQNO.start)
    }

    /// The next-hop MTU of a "fragmentation needed" message (RFC 1191); zero from routers that predate it.
    #[inline]
    pub fn next_hop_mtu(&self) -> u16 {
        be16(self.buffer.as_ref(), field::NEXT_HOP_MTU.start)
    }

    /// The bytes after the 8-byte header: echo data, or the quoted datagram of an error message.
    #[inline]
    pub fn data(&self) -> &[u8] {
        &self.buffer.as_ref()[field::DATA]
    }

    /// Whether the whole buffer sums to `0xffff`.
    #[inline]
    pub fn verify_checksum(&self) -> bool {
        checksum::data(self.buffer.as_ref()) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the message type.
    #[inline]
    pub fn set_msg_type(&mut self, value: Message) {
        self.buffer.as_mut()[field::TYPE] = u8::from(value);
    }

    /// Sets the message code.
    #[inline]
    pub fn set_msg_code(&mut self, value: u8) {
        self.buffer.as_mut()[field::CODE] = value;
    }

    /// Sets the checksum field as is.
    #[inline]
    pub fn set_checksum(&mut self, value: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the echo identifier.
    #[inline]
    pub fn set_echo_ident(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_IDENT].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the echo sequence number.
    #[inline]
    pub fn set_echo_seq_no(&mut self, value: u16) {
        self.buffer.as_mut()[field::ECHO_SEQNO].copy_from_slice(&value.to_be_bytes());
    }

    /// Sets the next-hop MTU of a "fragmentation needed" message.
    #[inline]
    pub fn set_next_hop_mtu(&mut self, value: u16) {
        self.buffer.as_mut()[field::NEXT_HOP_MTU].copy_from_slice(&value.to_be_bytes());
    }

    /// Zeroes the type-dependent second word (the "unused" word of error messages).
    #[inline]
    pub fn clear_rest(&mut self) {
        self.buffer.as_mut()[field::REST].fill(0);
    }

    /// The bytes after the header, to build the data in place.
    #[inline]
    pub fn data_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::DATA]
    }

    /// Computes the checksum over the whole buffer and stores it.
    #[inline]
    pub fn fill_checksum(&mut self) {
        self.set_checksum(0);
        let sum = checksum::data(self.buffer.as_ref());
        self.set_checksum(!sum);
    }
}

#[inline]
fn be16(d: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([d[at], d[at + 1]])
}

/// The ICMP messages synack handles.
///
/// For the error messages, `header` is the quoted IPv4 header (its `payload_len` that of the original datagram)
/// and `data` the quoted bytes after it: at least the first 8 bytes of the original payload (ports and, for TCP,
/// the sequence number, which RFC 5927 says to check), more if the sender quoted more, never past the original's
/// total length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Icmpv4Repr<'a> {
    /// A `ping`, to be answered with an [`Icmpv4Repr::EchoReply`] carrying the same fields.
    EchoRequest {
        /// Identifier, echoed back.
        ident: u16,
        /// Sequence number, echoed back.
        seq_no: u16,
        /// Data, echoed back.
        data: &'a [u8],
    },
    /// An answer to an echo request.
    EchoReply {
        /// Identifier of the request.
        ident: u16,
        /// Sequence number of the request.
        seq_no: u16,
        /// Data of the request.
        data: &'a [u8],
    },
    /// A datagram could not be delivered.
    DstUnreachable {
        /// The code.
        reason: DstUnreachable,
        /// The quoted IPv4 header.
        header: Ipv4Repr,
        /// The quoted start of the datagram's payload.
        data: &'a [u8],
    },
    /// A datagram was discarded in transit.
    TimeExceeded {
        /// The code.
        reason: TimeExceeded,
        /// The quoted IPv4 header.
        header: Ipv4Repr,
        /// The quoted start of the datagram's payload.
        data: &'a [u8],
    },
}

/// Quoted payload bytes an error message must carry (RFC 792: "64 bits of Original Data Datagram").
const QUOTED_DATA_MIN: usize = 8;

impl<'a> Icmpv4Repr<'a> {
    /// Reads a message; the checksum is verified under `ChecksumPolicy::Verify` (`Err(Checksum)`).
    ///
    /// Types other than echo request/reply, destination unreachable and time exceeded are `Err(Unsupported)`. An
    /// error message's quoted header must be a valid IPv4 header (its checksum is not checked: routers may have
    /// rewritten it): `Err(Truncated)` or `Err(Malformed)` otherwise; a quoted fragment is `Err(Unsupported)`
    /// (synack never sends fragments, so the message cannot be about its traffic).
    pub fn parse<T: AsRef<[u8]> + ?Sized>(packet: &Packet<&'a T>, policy: ChecksumPolicy) -> Result<Icmpv4Repr<'a>> {
        packet.check_len()?;
        if policy == ChecksumPolicy::Verify && !packet.verify_checksum() {
            return Err(Error::Checksum);
        }
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let data = bytes.get(field::DATA).unwrap_or_default();
        match packet.msg_type() {
            Message::EchoRequest => Ok(Icmpv4Repr::EchoRequest {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Message::EchoReply => Ok(Icmpv4Repr::EchoReply {
                ident: packet.echo_ident(),
                seq_no: packet.echo_seq_no(),
                data,
            }),
            Message::DstUnreachable => {
                let (header, data) = parse_quoted(data)?;
                Ok(Icmpv4Repr::DstUnreachable {
                    reason: DstUnreachable::from(packet.msg_code()),
                    header,
                    data,
                })
            }
            Message::TimeExceeded => {
                let (header, data) = parse_quoted(data)?;
                Ok(Icmpv4Repr::TimeExceeded {
                    reason: TimeExceeded::from(packet.msg_code()),
                    header,
                    data,
                })
            }
            _ => Err(Error::Unsupported),
        }
    }

    /// Length of the whole message `emit` writes: the buffer handed to it must be exactly this long for the
    /// checksum to verify on the view.
    #[inline]
    pub const fn buffer_len(&self) -> usize {
        match self {
            Icmpv4Repr::EchoRequest { data, .. } | Icmpv4Repr::EchoReply { data, .. } => HEADER_LEN + data.len(),
            Icmpv4Repr::DstUnreachable { data, .. } | Icmpv4Repr::TimeExceeded { data, .. } => {
                HEADER_LEN + ipv4::HEADER_LEN + data.len()
            }
        }
    }

    /// Writes the message and its checksum into the first [`Icmpv4Repr::buffer_len`] bytes of `packet`.
    ///
    /// `Err(Truncated)` if the buffer is shorter; `Err(Malformed)` if a quoted header's length overflows.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, packet: &mut Packet<T>) -> Result<()> {
        let len = self.buffer_len();
        let Some(buf) = packet.buffer.as_mut().get_mut(..len) else {
            return Err(Error::Truncated);
        };
        let mut out = Packet::new_unchecked(buf);
        match *self {
            Icmpv4Repr::EchoRequest { ident, seq_no, data } => {
                emit_echo(&mut out, Message::EchoRequest, ident, seq_no, data)
            }
            Icmpv4Repr::EchoReply { ident, seq_no, data } => {
                emit_echo(&mut out, Message::EchoReply, ident, seq_no, data)
            }
            Icmpv4Repr::DstUnreachable { reason, header, data } => {
                out.set_msg_type(Message::DstUnreachable);
                out.set_msg_code(u8::from(reason));
                out.clear_rest();
                emit_quoted(out.data_mut(), &header, data)?;
            }
            Icmpv4Repr::TimeExceeded { reason, header, data } => {
                out.set_msg_type(Message::TimeExceeded);
                out.set_msg_code(u8::from(reason));
                out.clear_rest();
                emit_quoted(out.data_mut(), &header, data)?;
            }
        }
        out.fill_checksum();
        Ok(())
    }
}

/// Writes an echo message's header and data into `out`, which is exactly `8 + data.len()` bytes long.
fn emit_echo(out: &mut Packet<&mut [u8]>, kind: Message, ident: u16, seq_no: u16, data: &[u8]) {
    out.set_msg_type(kind);
    out.set_msg_code(0);
    out.set_echo_ident(ident);
    out.set_echo_seq_no(seq_no);
    out.data_mut().copy_from_slice(data);
}

/// The quoted header and payload bytes of an error message.
fn parse_quoted(quoted: &[u8]) -> Result<(Ipv4Repr, &[u8])> {
    let ip = ipv4::Packet::new_unchecked(quoted);
    ip.check_header()?;
    let header = Ipv4Repr::parse_header(&ip, ChecksumPolicy::Trust).map_err(|e| match e {
        Error::Fragment => Error::Unsupported,
        other => other,
    })?;
    let end = quoted.len().min(usize::from(ip.total_len()));
    let data = quoted.get(ip.header_len()..end).unwrap_or_default();
    if data.len() < QUOTED_DATA_MIN.min(header.payload_len) {
        return Err(Error::Truncated);
    }
    Ok((header, data))
}

/// Writes a quoted header and payload bytes into `out`, which is exactly `20 + data.len()` bytes long.
fn emit_quoted(out: &mut [u8], header: &Ipv4Repr, data: &[u8]) -> Result<()> {
    let (head, rest) = out.split_at_mut_checked(ipv4::HEADER_LEN).ok_or(Error::Truncated)?;
    header.emit_header(&mut ipv4::Packet::new_unchecked(head))?;
    rest.copy_from_slice(data);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::IpProtocol;
    use crate::wire::ethernet::{EtherType, EthernetRepr, Frame, MacAddr};
    use core::net::Ipv4Addr;
    use proptest::prelude::*;

    const MAC1: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
    const MAC2: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);
    const IP1: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const IP2: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);
    const ROUTER: Ipv4Addr = Ipv4Addr::new(198, 19, 0, 1);

    /// `ping 198.18.0.2` from 198.18.0.1 as Linux (iputils) sends it: id 0x0b7e, seq 1, 56 data bytes (a
    /// little-endian `struct timeval`, then 0x10, 0x11, ... 0x37).
    const ECHO_REQUEST_FRAME: [u8; 98] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x54, 0x5e, 0x3a, 0x40, 0x00, 0x40, 0x01, 0x50, 0x47, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x02, // IPv4
        0x08, 0x00, 0x3d, 0x3c, 0x0b, 0x7e, 0x00, 0x01, // ICMP echo request
        0x8e, 0x26, 0x20, 0x69, 0x00, 0x00, 0x00, 0x00, 0x40, 0xe2, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // timeval
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21,
        0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
        0x34, 0x35, 0x36, 0x37,
    ];

    /// The reply from 198.18.0.2: new IP ident, DF clear, same ICMP id/seq/data.
    const ECHO_REPLY_FRAME: [u8; 98] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, // Ethernet
        0x45, 0x00, 0x00, 0x54, 0x9c, 0x1d, 0x00, 0x00, 0x40, 0x01, 0x52, 0x64, 0xc6, 0x12, 0x00, 0x02, 0xc6, 0x12,
        0x00, 0x01, // IPv4
        0x00, 0x00, 0x45, 0x3c, 0x0b, 0x7e, 0x00, 0x01, // ICMP echo reply
        0x8e, 0x26, 0x20, 0x69, 0x00, 0x00, 0x00, 0x00, 0x40, 0xe2, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, // timeval
        0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x1b, 0x1c, 0x1d, 0x1e, 0x1f, 0x20, 0x21,
        0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, 0x29, 0x2a, 0x2b, 0x2c, 0x2d, 0x2e, 0x2f, 0x30, 0x31, 0x32, 0x33,
        0x34, 0x35, 0x36, 0x37,
    ];

    /// 198.18.0.2 answers a UDP datagram 198.18.0.1:54321 -> :33434 (60 bytes, 32 of data) with port
    /// unreachable, quoting its IPv4 header and the 8-byte UDP header (IP TOS 0xc0, internetwork control).
    const PORT_UNREACHABLE_FRAME: [u8; 70] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, // Ethernet
        0x45, 0xc0, 0x00, 0x38, 0x7d, 0x21, 0x00, 0x00, 0x40, 0x01, 0x70, 0xbc, 0xc6, 0x12, 0x00, 0x02, 0xc6, 0x12,
        0x00, 0x01, // IPv4
        0x03, 0x03, 0x7e, 0x63, 0x00, 0x00, 0x00, 0x00, // ICMP port unreachable
        0x45, 0x00, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x9c, 0x55, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x02, // quoted IPv4 header
        0xd4, 0x31, 0x82, 0x9a, 0x00, 0x28, 0x27, 0xa5, // quoted UDP header
    ];

    /// A router at 198.19.0.1 reports the same datagram's TTL expired in transit.
    const TIME_EXCEEDED_FRAME: [u8; 70] = [
        0x02, 0x00, 0x00, 0x00, 0x00, 0x01, 0x02, 0x00, 0x00, 0x00, 0x00, 0x02, 0x08, 0x00, // Ethernet
        0x45, 0xc0, 0x00, 0x38, 0x00, 0x42, 0x00, 0x00, 0xff, 0x01, 0x2e, 0x9b, 0xc6, 0x13, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x01, // IPv4
        0x0b, 0x00, 0x76, 0x66, 0x00, 0x00, 0x00, 0x00, // ICMP time exceeded, TTL
        0x45, 0x00, 0x00, 0x3c, 0x12, 0x34, 0x40, 0x00, 0x40, 0x11, 0x9c, 0x55, 0xc6, 0x12, 0x00, 0x01, 0xc6, 0x12,
        0x00, 0x02, // quoted IPv4 header
        0xd4, 0x31, 0x82, 0x9a, 0x00, 0x28, 0x27, 0xa5, // quoted UDP header
    ];

    /// The UDP datagram the error messages quote.
    fn quoted_udp_header() -> Ipv4Repr {
        Ipv4Repr {
            src_addr: IP1,
            dst_addr: IP2,
            next_header: IpProtocol::Udp,
            payload_len: 40,
            ttl: 64,
            dont_frag: true,
            ident: 0x1234,
            tos: 0,
        }
    }

    /// Parses all three layers of a captured frame, checking the two checksums on the way.
    fn parse_frame(bytes: &[u8]) -> (EthernetRepr, Ipv4Repr, Icmpv4Repr<'_>) {
        let frame = Frame::new_checked(bytes).unwrap();
        let eth = EthernetRepr::parse(&frame).unwrap();
        assert_eq!(eth.ethertype, EtherType::Ipv4);
        let ip_bytes = &bytes[EthernetRepr::HEADER_LEN..];
        let ip = ipv4::Packet::new_checked(ip_bytes).unwrap();
        assert!(ip.verify_checksum());
        let ip_repr = Ipv4Repr::parse(&ip, ChecksumPolicy::Verify).unwrap();
        assert_eq!(ip_repr.next_header, IpProtocol::Icmp);
        let icmp_bytes = &ip_bytes[ipv4::HEADER_LEN..usize::from(ip.total_len())];
        let icmp = Packet::new_checked(icmp_bytes).unwrap();
        assert!(icmp.verify_checksum());
        (eth, ip_repr, Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify).unwrap())
    }

    /// Builds a frame from the three Reprs, as the stack would to send it.
    fn emit_frame(eth: &EthernetRepr, ip: &Ipv4Repr, icmp: &Icmpv4Repr<'_>) -> Vec<u8> {
        assert_eq!(ip.payload_len, icmp.buffer_len());
        let mut buf = vec![0xa5u8; eth.buffer_len() + ip.buffer_len()];
        let mut frame = Frame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame).unwrap();
        let mut packet = ipv4::Packet::new_unchecked(frame.payload_mut());
        ip.emit(&mut packet).unwrap();
        icmp.emit(&mut Packet::new_unchecked(packet.payload_mut())).unwrap();
        buf
    }

    /// The 56 data bytes of the captured ping.
    fn ping_data() -> &'static [u8] {
        &ECHO_REQUEST_FRAME[42..]
    }

    #[test]
    fn icmp_echo_request_reads_every_field() {
        let icmp = Packet::new_checked(&ECHO_REQUEST_FRAME[34..]).unwrap();
        assert_eq!(icmp.msg_type(), Message::EchoRequest);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.checksum(), 0x3d3c);
        assert_eq!(icmp.echo_ident(), 0x0b7e);
        assert_eq!(icmp.echo_seq_no(), 1);
        assert_eq!(icmp.data().len(), 56);
        assert_eq!(icmp.data()[..8], 1_763_714_702u64.to_le_bytes());
        assert_eq!(icmp.data()[16..], (0x10u8..0x38).collect::<Vec<_>>()[..]);
        assert!(icmp.verify_checksum());

        let (eth, ip, repr) = parse_frame(&ECHO_REQUEST_FRAME);
        assert_eq!(
            eth,
            EthernetRepr {
                src_addr: MAC1,
                dst_addr: MAC2,
                ethertype: EtherType::Ipv4
            }
        );
        assert_eq!(
            ip,
            Ipv4Repr {
                src_addr: IP1,
                dst_addr: IP2,
                next_header: IpProtocol::Icmp,
                payload_len: 64,
                ttl: 64,
                dont_frag: true,
                ident: 0x5e3a,
                tos: 0
            }
        );
        assert_eq!(
            repr,
            Icmpv4Repr::EchoRequest {
                ident: 0x0b7e,
                seq_no: 1,
                data: ping_data()
            }
        );
        assert_eq!(repr.buffer_len(), 64);
    }

    #[test]
    fn icmp_echo_request_emit_matches_captured_frame() {
        let (eth, ip, repr) = parse_frame(&ECHO_REQUEST_FRAME);
        assert_eq!(emit_frame(&eth, &ip, &repr), ECHO_REQUEST_FRAME);
    }

    #[test]
    fn icmp_echo_reply_reads_every_field() {
        let icmp = Packet::new_checked(&ECHO_REPLY_FRAME[34..]).unwrap();
        assert_eq!(icmp.msg_type(), Message::EchoReply);
        assert_eq!(icmp.msg_code(), 0);
        assert_eq!(icmp.checksum(), 0x453c);
        assert_eq!((icmp.echo_ident(), icmp.echo_seq_no()), (0x0b7e, 1));
        assert_eq!(icmp.data(), ping_data());

        let (eth, ip, repr) = parse_frame(&ECHO_REPLY_FRAME);
        assert_eq!(
            eth,
            EthernetRepr {
                src_addr: MAC2,
                dst_addr: MAC1,
                ethertype: EtherType::Ipv4
            }
        );
        assert_eq!(
            (ip.src_addr, ip.dst_addr, ip.ident, ip.dont_frag, ip.ttl),
            (IP2, IP1, 0x9c1d, false, 64)
        );
        assert_eq!(
            repr,
            Icmpv4Repr::EchoReply {
                ident: 0x0b7e,
                seq_no: 1,
                data: ping_data()
            }
        );
    }

    #[test]
    fn icmp_echo_request_answered_emits_captured_reply() {
        let (eth, ip, request) = parse_frame(&ECHO_REQUEST_FRAME);
        let Icmpv4Repr::EchoRequest { ident, seq_no, data } = request else {
            panic!("not a request: {request:?}")
        };
        let reply = Icmpv4Repr::EchoReply { ident, seq_no, data };
        let eth = EthernetRepr {
            src_addr: eth.dst_addr,
            dst_addr: eth.src_addr,
            ethertype: EtherType::Ipv4,
        };
        let ip = Ipv4Repr {
            src_addr: ip.dst_addr,
            dst_addr: ip.src_addr,
            payload_len: reply.buffer_len(),
            dont_frag: false,
            ident: 0x9c1d,
            ..ip
        };
        assert_eq!(emit_frame(&eth, &ip, &reply), ECHO_REPLY_FRAME);
    }

    #[test]
    fn icmp_port_unreachable_reads_every_field() {
        let icmp = Packet::new_checked(&PORT_UNREACHABLE_FRAME[34..]).unwrap();
        assert_eq!(icmp.msg_type(), Message::DstUnreachable);
        assert_eq!(icmp.msg_code(), 3);
        assert_eq!(icmp.checksum(), 0x7e63);
        assert_eq!(icmp.next_hop_mtu(), 0);
        assert_eq!(icmp.data().len(), 28);

        let (eth, ip, repr) = parse_frame(&PORT_UNREACHABLE_FRAME);
        assert_eq!(eth.src_addr, MAC2);
        assert_eq!(
            (ip.src_addr, ip.dst_addr, ip.tos, ip.payload_len, ip.ident),
            (IP2, IP1, 0xc0, 36, 0x7d21)
        );
        let Icmpv4Repr::DstUnreachable { reason, header, data } = repr else {
            panic!("wrong kind: {repr:?}")
        };
        assert_eq!(reason, DstUnreachable::PortUnreachable);
        assert_eq!(header, quoted_udp_header());
        // The UDP header: 54321 -> 33434, length 40, checksum 0x27a5.
        assert_eq!(data, &[0xd4, 0x31, 0x82, 0x9a, 0x00, 0x28, 0x27, 0xa5]);
        assert_eq!(repr.buffer_len(), 36);
    }

    #[test]
    fn icmp_port_unreachable_emit_matches_captured_frame() {
        let (eth, ip, repr) = parse_frame(&PORT_UNREACHABLE_FRAME);
        assert_eq!(emit_frame(&eth, &ip, &repr), PORT_UNREACHABLE_FRAME);
    }

    #[test]
    fn icmp_time_exceeded_round_trips_captured_frame() {
        let (eth, ip, repr) = parse_frame(&TIME_EXCEEDED_FRAME);
        assert_eq!((ip.src_addr, ip.ttl), (ROUTER, 255));
        let Icmpv4Repr::TimeExceeded { reason, header, data } = repr else {
            panic!("wrong kind: {repr:?}")
        };
        assert_eq!(reason, TimeExceeded::TtlExpired);
        assert_eq!(header, quoted_udp_header());
        assert_eq!(data, &TIME_EXCEEDED_FRAME[62..]);
        assert_eq!(emit_frame(&eth, &ip, &repr), TIME_EXCEEDED_FRAME);
    }

    #[test]
    fn icmp_new_checked_short_is_truncated() {
        assert_eq!(Packet::new_checked(&ECHO_REQUEST_FRAME[34..41]), Err(Error::Truncated));
        assert_eq!(Packet::new_checked(&[][..]), Err(Error::Truncated));
        assert!(Packet::new_checked(&ECHO_REQUEST_FRAME[34..42]).is_ok());
    }

    #[test]
    fn icmp_parse_bad_checksum_is_rejected() {
        let mut bytes = ECHO_REQUEST_FRAME[34..].to_vec();
        bytes[63] ^= 0x80; // last data byte
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!icmp.verify_checksum());
        assert_eq!(Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify), Err(Error::Checksum));
        assert!(matches!(
            Icmpv4Repr::parse(&icmp, ChecksumPolicy::Trust),
            Ok(Icmpv4Repr::EchoRequest { .. })
        ));
    }

    #[test]
    fn icmp_parse_unsupported_type_is_rejected() {
        // A timestamp request (type 13): well formed, checksummed, not handled.
        let mut bytes = [13u8, 0, 0, 0, 0x0b, 0x7e, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
        let mut icmp = Packet::new_unchecked(&mut bytes[..]);
        icmp.fill_checksum();
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert!(icmp.verify_checksum());
        assert_eq!(icmp.msg_type(), Message::Unknown(13));
        assert_eq!(
            Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify),
            Err(Error::Unsupported)
        );
    }

    /// The ICMP part of the port-unreachable frame with `edit` applied and the ICMP checksum refilled.
    fn edited_unreachable(edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut bytes = PORT_UNREACHABLE_FRAME[34..].to_vec();
        edit(&mut bytes);
        Packet::new_unchecked(&mut bytes[..]).fill_checksum();
        bytes
    }

    #[test]
    fn icmp_parse_quoted_bad_version_is_malformed() {
        let bytes = edited_unreachable(|b| b[8] = 0x65);
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify), Err(Error::Malformed));
    }

    #[test]
    fn icmp_parse_quoted_short_header_is_truncated() {
        let bytes = edited_unreachable(|b| b.truncate(8 + 19));
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify), Err(Error::Truncated));
    }

    #[test]
    fn icmp_parse_quoted_payload_under_eight_bytes_is_truncated() {
        let bytes = edited_unreachable(|b| b.truncate(8 + 20 + 7));
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify), Err(Error::Truncated));
    }

    #[test]
    fn icmp_parse_quoted_fragment_is_unsupported() {
        let bytes = edited_unreachable(|b| b[14] |= 0x20); // MF in the quoted header
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(
            Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify),
            Err(Error::Unsupported)
        );
    }

    #[test]
    fn icmp_parse_quoted_bad_checksum_is_trusted() {
        // Routers may rewrite the quoted header (NAT); its checksum is not the ICMP message's business.
        let bytes = edited_unreachable(|b| b[18] ^= 0xff);
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        let repr = Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify).unwrap();
        assert!(matches!(repr, Icmpv4Repr::DstUnreachable { header, .. } if header == quoted_udp_header()));
    }

    #[test]
    fn icmp_parse_quoted_data_stops_at_original_total_length() {
        // A short original datagram (IHL 5, total 30) quoted whole, with two stray bytes after it.
        let bytes = edited_unreachable(|b| {
            b[10..12].copy_from_slice(&30u16.to_be_bytes());
            b.extend_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        });
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        let Ok(Icmpv4Repr::DstUnreachable { header, data, .. }) = Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify)
        else {
            panic!("not parsed")
        };
        assert_eq!(header.payload_len, 10);
        assert_eq!(data, &[0xd4, 0x31, 0x82, 0x9a, 0x00, 0x28, 0x27, 0xa5, 0xde, 0xad]);
    }

    #[test]
    fn icmp_frag_required_reads_next_hop_mtu() {
        let bytes = edited_unreachable(|b| {
            b[1] = 4;
            b[6..8].copy_from_slice(&1400u16.to_be_bytes());
        });
        let icmp = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(icmp.next_hop_mtu(), 1400);
        let repr = Icmpv4Repr::parse(&icmp, ChecksumPolicy::Verify).unwrap();
        assert!(matches!(
            repr,
            Icmpv4Repr::DstUnreachable {
                reason: DstUnreachable::FragRequired,
                ..
            }
        ));
    }

    #[test]
    fn icmp_emit_short_buffer_is_truncated() {
        let repr = Icmpv4Repr::EchoReply {
            ident: 1,
            seq_no: 2,
            data: &[1, 2, 3],
        };
        let mut buf = [0u8; 10];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::Truncated)
        );
        let repr = Icmpv4Repr::TimeExceeded {
            reason: TimeExceeded::TtlExpired,
            header: quoted_udp_header(),
            data: &[],
        };
        let mut buf = [0u8; 27];
        assert_eq!(
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])),
            Err(Error::Truncated)
        );
    }

    #[test]
    fn icmp_codes_convert_both_ways() {
        for code in 0..=255u8 {
            assert_eq!(u8::from(DstUnreachable::from(code)), code);
            assert_eq!(u8::from(TimeExceeded::from(code)), code);
            assert_eq!(u8::from(Message::from(code)), code);
        }
        assert_eq!(DstUnreachable::from(3), DstUnreachable::PortUnreachable);
        assert_eq!(DstUnreachable::from(16), DstUnreachable::Unknown(16));
        assert_eq!(Message::from(11), Message::TimeExceeded);
    }

    /// A Repr strategy over owned data; the test borrows it.
    #[derive(Debug, Clone)]
    enum Shape {
        Echo {
            request: bool,
            ident: u16,
            seq_no: u16,
        },
        Error {
            unreachable: bool,
            code: u8,
            header: Ipv4Repr,
        },
    }

    fn arb_header(min_payload: usize) -> impl Strategy<Value = Ipv4Repr> {
        (
            any::<u32>(),
            any::<u32>(),
            any::<u8>(),
            min_payload..=Ipv4Repr::MAX_PAYLOAD_LEN,
            any::<(u8, bool, u16, u8)>(),
        )
            .prop_map(|(s, d, p, payload_len, (ttl, dont_frag, ident, tos))| Ipv4Repr {
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

    fn arb_case() -> impl Strategy<Value = (Shape, Vec<u8>)> {
        prop_oneof![
            (
                any::<(bool, u16, u16)>(),
                proptest::collection::vec(any::<u8>(), 0..200)
            )
                .prop_map(|((request, ident, seq_no), data)| (Shape::Echo { request, ident, seq_no }, data)),
            proptest::collection::vec(any::<u8>(), 8..64).prop_flat_map(|data| {
                (any::<(bool, u8)>(), arb_header(data.len()), Just(data)).prop_map(
                    |((unreachable, code), header, data)| {
                        (
                            Shape::Error {
                                unreachable,
                                code,
                                header,
                            },
                            data,
                        )
                    },
                )
            }),
        ]
    }

    fn repr_of<'a>(shape: &Shape, data: &'a [u8]) -> Icmpv4Repr<'a> {
        match *shape {
            Shape::Echo {
                request: true,
                ident,
                seq_no,
            } => Icmpv4Repr::EchoRequest { ident, seq_no, data },
            Shape::Echo {
                request: false,
                ident,
                seq_no,
            } => Icmpv4Repr::EchoReply { ident, seq_no, data },
            Shape::Error {
                unreachable: true,
                code,
                header,
            } => Icmpv4Repr::DstUnreachable {
                reason: DstUnreachable::from(code),
                header,
                data,
            },
            Shape::Error {
                unreachable: false,
                code,
                header,
            } => Icmpv4Repr::TimeExceeded {
                reason: TimeExceeded::from(code),
                header,
                data,
            },
        }
    }

    proptest! {
        #[test]
        fn icmp_any_repr_round_trips((shape, data) in arb_case()) {
            let repr = repr_of(&shape, &data);
            let mut buf = vec![0u8; repr.buffer_len()];
            repr.emit(&mut Packet::new_unchecked(&mut buf[..])).unwrap();
            let packet = Packet::new_checked(&buf[..]).unwrap();
            prop_assert!(packet.verify_checksum());
            prop_assert_eq!(Icmpv4Repr::parse(&packet, ChecksumPolicy::Verify), Ok(repr));
        }

        #[test]
        fn icmp_any_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..96), kind in 0u8..4) {
            if bytes.len() >= 9 {
                // Steer most cases to the handled types and a plausible quoted header.
                bytes[0] = [0, 3, 8, 11][usize::from(kind)];
                bytes[8] = 0x45;
                Packet::new_unchecked(&mut bytes[..]).fill_checksum();
            }
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.msg_type(), packet.msg_code(), packet.checksum(), packet.echo_ident());
                let _ = (packet.echo_seq_no(), packet.next_hop_mtu(), packet.data(), packet.verify_checksum());
                let _ = Icmpv4Repr::parse(&packet, ChecksumPolicy::Verify);
                let _ = Icmpv4Repr::parse(&packet, ChecksumPolicy::Trust);
            }
            let _ = Icmpv4Repr::parse(&Packet::new_unchecked(&bytes[..]), ChecksumPolicy::Trust);
        }
    }
}
