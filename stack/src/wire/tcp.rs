//! TCP segments (RFC 9293 §3.1) and their options (RFC 9293 §3.2, RFC 7323, RFC 2018).
//!
//! [`Packet`] is a zero-copy view over a TCP segment (header, options and payload, without the IP header);
//! [`TcpRepr`] is the parsed header with its options folded into plain fields. Both sit on the per-packet hot path,
//! so neither allocates: options are walked once, SACK blocks live inline in [`SackBlocks`], and the checksum is
//! one pass of [`checksum::data`] over the segment plus the pseudo-header sum.
//!
//! Emitted option layouts copy Linux's (`tcp_options_write`), byte for byte, so that a segment synack sends looks
//! like one a kernel sends and every chunk stays 32-bit aligned without padding:
//!
//! | present                    | bytes                                  |
//! |----------------------------|----------------------------------------|
//! | MSS                        | `02 04 mm mm`                          |
//! | timestamps + SACK-permitted| `04 02 08 0a tsval tsecr`              |
//! | timestamps alone           | `01 01 08 0a tsval tsecr`              |
//! | SACK-permitted alone       | `01 01 04 02`                          |
//! | window scale               | `01 03 03 ss`                          |
//! | n SACK blocks              | `01 01 05 (2+8n) left right ...`       |
//!
//! in that order. The fixed chunks take at most 20 bytes, so the header never exceeds 60; SACK blocks that do not
//! fit in the remaining option space are left out (RFC 2018 §3), and [`TcpRepr::header_len`] and
//! [`TcpRepr::emit`] agree on how many are written.

use core::fmt;
use core::net::Ipv4Addr;
use core::ops::{BitAnd, BitOr, BitOrAssign};

use super::checksum;
use super::tcp_writer::{self, TcpOptions};
use super::{ChecksumPolicy, Error, IpProtocol, Port, Result, SeqNum};

/// Byte ranges of the fixed header (RFC 9293 §3.1).
mod field {
    use core::ops::Range;

    pub const SRC_PORT: Range<usize> = 0..2;
    pub const DST_PORT: Range<usize> = 2..4;
    pub const SEQ_NUM: Range<usize> = 4..8;
    pub const ACK_NUM: Range<usize> = 8..12;
    /// Data offset (high nibble) and reserved bits.
    pub const DATA_OFFSET: usize = 12;
    pub const FLAGS: usize = 13;
    pub const WINDOW: Range<usize> = 14..16;
    pub const CHECKSUM: Range<usize> = 16..18;
    pub const URGENT: Range<usize> = 18..20;
    pub const OPTIONS_START: usize = 20;
}

/// Length of a TCP header without options.
pub const HEADER_LEN: usize = field::OPTIONS_START;

/// Longest TCP header: a data offset of 15 words.
pub const MAX_HEADER_LEN: usize = 60;

/// Most option bytes a header can carry (`MAX_HEADER_LEN - HEADER_LEN`).
pub const MAX_OPTIONS_LEN: usize = MAX_HEADER_LEN - HEADER_LEN;

/// Option kinds (IANA "TCP Option Kind Numbers").
mod kind {
    pub const END_OF_LIST: u8 = 0;
    pub const NO_OPERATION: u8 = 1;
    pub const MSS: u8 = 2;
    pub const WINDOW_SCALE: u8 = 3;
    pub const SACK_PERMITTED: u8 = 4;
    pub const SACK: u8 = 5;
    pub const TIMESTAMPS: u8 = 8;
}

/// The big-endian 16-bit field at a constant offset of the fixed header.
#[inline(always)]
fn be16(fixed: &[u8; HEADER_LEN], at: usize) -> u16 {
    u16::from_be_bytes([fixed[at], fixed[at + 1]])
}

/// The big-endian 32-bit field at a constant offset of the fixed header.
#[inline(always)]
fn be32(fixed: &[u8; HEADER_LEN], at: usize) -> u32 {
    u32::from_be_bytes([fixed[at], fixed[at + 1], fixed[at + 2], fixed[at + 3]])
}

/// The length checks of [`Packet::check_len`], done once: the fixed header as an array and the header length
/// (20 to 60, within `bytes`), for [`TcpRepr::parse`] to read from without further bounds checks.
#[inline(always)]
fn check_header(bytes: &[u8]) -> Result<(&[u8; HEADER_LEN], usize)> {
    let Some(fixed) = bytes.first_chunk::<HEADER_LEN>() else {
        return Err(Error::Truncated);
    };
    let header_len = usize::from(fixed[field::DATA_OFFSET] >> 4) * 4;
    if header_len < HEADER_LEN {
        Err(Error::Malformed)
    } else if header_len > bytes.len() {
        Err(Error::Truncated)
    } else {
        Ok((fixed, header_len))
    }
}

/// Whether a received segment's checksum over the IPv4 pseudo-header and `bytes` verifies (RFC 9293 §3.1,
/// MUST-3). A buffer of 64 KiB or more cannot be a segment inside IPv4: it fails rather than wrapping its length.
#[inline(always)]
fn verify_segment(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> bool {
    checksum::verify_pseudo_header_v4(src, dst, u8::from(IpProtocol::Tcp), bytes)
}

/// The panic of a getter on an unchecked view too short for the fixed header, kept out of line.
#[cold]
#[inline(never)]
#[track_caller]
fn shorter_than_header() -> ! {
    panic!("TCP buffer shorter than the 20-byte header (use Packet::new_checked on received data)")
}

// ------------------------------------------------------------------------------------------------------------------
// Flags
// ------------------------------------------------------------------------------------------------------------------

/// The eight control bits of byte 13 (RFC 9293 §3.1, RFC 3168 for ECE/CWR).
///
/// A newtype rather than eight bools so a whole set is compared, masked and copied as one byte, which is how the
/// engine's `match` on (state, flags) wants it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    /// No more data from the sender; consumes one sequence number.
    pub const FIN: TcpFlags = TcpFlags(0x01);
    /// Synchronize sequence numbers; consumes one sequence number.
    pub const SYN: TcpFlags = TcpFlags(0x02);
    /// Reset the connection.
    pub const RST: TcpFlags = TcpFlags(0x04);
    /// Push function.
    pub const PSH: TcpFlags = TcpFlags(0x08);
    /// The acknowledgment number is significant.
    pub const ACK: TcpFlags = TcpFlags(0x10);
    /// The urgent pointer is significant.
    pub const URG: TcpFlags = TcpFlags(0x20);
    /// ECN-Echo (RFC 3168).
    pub const ECE: TcpFlags = TcpFlags(0x40);
    /// Congestion Window Reduced (RFC 3168).
    pub const CWR: TcpFlags = TcpFlags(0x80);

    /// The empty set.
    pub const fn empty() -> TcpFlags {
        TcpFlags(0)
    }

    /// The raw byte.
    pub const fn bits(self) -> u8 {
        self.0
    }

    /// Whether every flag of `other` is set.
    #[inline]
    pub const fn contains(self, other: TcpFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any flag of `other` is set.
    #[inline]
    pub const fn intersects(self, other: TcpFlags) -> bool {
        self.0 & other.0 != 0
    }

    /// Whether no flag is set.
    #[inline]
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// FIN is set.
    #[inline]
    pub const fn fin(self) -> bool {
        self.contains(Self::FIN)
    }

    /// SYN is set.
    #[inline]
    pub const fn syn(self) -> bool {
        self.contains(Self::SYN)
    }

    /// RST is set.
    #[inline]
    pub const fn rst(self) -> bool {
        self.contains(Self::RST)
    }

    /// PSH is set.
    #[inline]
    pub const fn psh(self) -> bool {
        self.contains(Self::PSH)
    }

    /// ACK is set.
    #[inline]
    pub const fn ack(self) -> bool {
        self.contains(Self::ACK)
    }

    /// URG is set.
    #[inline]
    pub const fn urg(self) -> bool {
        self.contains(Self::URG)
    }
}

impl BitOr for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitor(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    #[inline]
    fn bitor_assign(&mut self, rhs: TcpFlags) {
        self.0 |= rhs.0;
    }
}

impl BitAnd for TcpFlags {
    type Output = TcpFlags;
    #[inline]
    fn bitand(self, rhs: TcpFlags) -> TcpFlags {
        TcpFlags(self.0 & rhs.0)
    }
}

impl fmt::Debug for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const NAMES: [&str; 8] = ["FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR"];
        if self.0 == 0 {
            return f.write_str("(none)");
        }
        let mut first = true;
        for (bit, name) in NAMES.iter().enumerate() {
            if self.0 & (1 << bit) != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        Ok(())
    }
}

impl fmt::Display for TcpFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Packet view
// ------------------------------------------------------------------------------------------------------------------

/// A zero-copy view over a TCP segment (header + payload, no IP header).
///
/// After [`Packet::new_checked`] every getter is panic-free; [`Packet::new_unchecked`] is for buffers the caller is
/// building, whose getters may panic until the header is long enough.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// Wraps a buffer without checks, for building a segment in place.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Packet<T> {
        Packet { buffer }
    }

    /// Wraps a received buffer and validates the lengths once, so later getters cannot panic.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Packet<T>> {
        let packet = Packet::new_unchecked(buffer);
        packet.check_len()?;
        Ok(packet)
    }

    /// `Truncated` if the buffer is shorter than 20 bytes or than the data offset claims; `Malformed` if the data
    /// offset is below 5 words.
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        check_header(self.buffer.as_ref()).map(|_| ())
    }

    /// Gives back the buffer.
    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
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

    /// Source port.
    #[inline]
    pub fn src_port(&self) -> Port {
        Port(be16(self.fixed(), field::SRC_PORT.start))
    }

    /// Destination port.
    #[inline]
    pub fn dst_port(&self) -> Port {
        Port(be16(self.fixed(), field::DST_PORT.start))
    }

    /// Sequence number of the first octet (of the SYN, when SYN is set).
    #[inline]
    pub fn seq_number(&self) -> SeqNum {
        SeqNum(be32(self.fixed(), field::SEQ_NUM.start))
    }

    /// Acknowledgment number; meaningful only when [`TcpFlags::ACK`] is set.
    #[inline]
    pub fn ack_number(&self) -> SeqNum {
        SeqNum(be32(self.fixed(), field::ACK_NUM.start))
    }

    /// Header length in bytes, from the data offset (options included).
    #[inline]
    pub fn header_len(&self) -> usize {
        usize::from(self.fixed()[field::DATA_OFFSET] >> 4) * 4
    }

    /// The control bits.
    #[inline]
    pub fn flags(&self) -> TcpFlags {
        TcpFlags(self.fixed()[field::FLAGS])
    }

    /// The advertised window, unscaled as it is on the wire.
    #[inline]
    pub fn window_len(&self) -> u16 {
        be16(self.fixed(), field::WINDOW.start)
    }

    /// The checksum field as stored.
    #[inline]
    pub fn checksum(&self) -> u16 {
        be16(self.fixed(), field::CHECKSUM.start)
    }

    /// The urgent pointer; meaningful only when [`TcpFlags::URG`] is set.
    #[inline]
    pub fn urgent_at(&self) -> u16 {
        be16(self.fixed(), field::URGENT.start)
    }

    /// The raw option bytes (possibly padded), for [`TcpOptionIter`].
    #[inline]
    pub fn options(&self) -> &[u8] {
        let header_len = self.header_len();
        &self.buffer.as_ref()[field::OPTIONS_START..header_len]
    }

    /// The data after the header.
    #[inline]
    pub fn payload(&self) -> &[u8] {
        let header_len = self.header_len();
        &self.buffer.as_ref()[header_len..]
    }

    /// Sequence space the segment occupies: payload length plus one each for SYN and FIN (RFC 9293 §3.4).
    #[inline]
    pub fn segment_len(&self) -> u32 {
        let flags = self.flags();
        self.payload().len() as u32 + u32::from(flags.syn()) + u32::from(flags.fin())
    }

    /// The non-complemented sum over pseudo-header and segment; `0xffff` for an intact segment.
    #[inline]
    fn sum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> u16 {
        let bytes = self.buffer.as_ref();
        // A TCP segment inside IPv4 is below 64 KiB; a longer buffer cannot be a real segment and its length wraps,
        // which makes verification fail rather than panic.
        checksum::pseudo_header_v4_with(src, dst, u8::from(IpProtocol::Tcp), bytes)
    }

    /// Whether the checksum over the IPv4 pseudo-header and the whole buffer verifies (RFC 9293 §3.1, MUST-3).
    #[inline]
    pub fn verify_checksum(&self, src: Ipv4Addr, dst: Ipv4Addr) -> bool {
        u16::try_from(self.buffer.as_ref().len()).is_ok() && self.sum(src, dst) == 0xffff
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    /// Sets the source port.
    #[inline]
    pub fn set_src_port(&mut self, port: Port) {
        self.buffer.as_mut()[field::SRC_PORT].copy_from_slice(&port.0.to_be_bytes());
    }

    /// Sets the destination port.
    #[inline]
    pub fn set_dst_port(&mut self, port: Port) {
        self.buffer.as_mut()[field::DST_PORT].copy_from_slice(&port.0.to_be_bytes());
    }

    /// Sets the sequence number.
    #[inline]
    pub fn set_seq_number(&mut self, seq: SeqNum) {
        self.buffer.as_mut()[field::SEQ_NUM].copy_from_slice(&seq.0.to_be_bytes());
    }

    /// Sets the acknowledgment number.
    #[inline]
    pub fn set_ack_number(&mut self, ack: SeqNum) {
        self.buffer.as_mut()[field::ACK_NUM].copy_from_slice(&ack.0.to_be_bytes());
    }

    /// Sets the data offset from a header length in bytes (a multiple of 4 in `20..=60`); clears the reserved bits.
    #[inline]
    pub fn set_header_len(&mut self, len: usize) {
        debug_assert!(len % 4 == 0 && (HEADER_LEN..=MAX_HEADER_LEN).contains(&len));
        self.buffer.as_mut()[field::DATA_OFFSET] = ((len / 4) as u8) << 4;
    }

    /// Sets the control bits.
    #[inline]
    pub fn set_flags(&mut self, flags: TcpFlags) {
        self.buffer.as_mut()[field::FLAGS] = flags.0;
    }

    /// Sets the window field (already scaled down by the caller).
    #[inline]
    pub fn set_window_len(&mut self, window: u16) {
        self.buffer.as_mut()[field::WINDOW].copy_from_slice(&window.to_be_bytes());
    }

    /// Sets the checksum field as is; see [`Packet::fill_checksum`] to compute it.
    #[inline]
    pub fn set_checksum(&mut self, checksum: u16) {
        self.buffer.as_mut()[field::CHECKSUM].copy_from_slice(&checksum.to_be_bytes());
    }

    /// Sets the urgent pointer.
    #[inline]
    pub fn set_urgent_at(&mut self, urgent: u16) {
        self.buffer.as_mut()[field::URGENT].copy_from_slice(&urgent.to_be_bytes());
    }

    /// The option bytes, as delimited by the data offset already set.
    #[inline]
    pub fn options_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[field::OPTIONS_START..header_len]
    }

    /// The payload area, as delimited by the data offset already set; the engine copies send-buffer bytes here.
    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        let header_len = self.header_len();
        &mut self.buffer.as_mut()[header_len..]
    }

    /// Computes and stores the checksum over the IPv4 pseudo-header and the whole buffer (MUST-2).
    ///
    /// The buffer must be exactly the segment: any trailing bytes would be summed too.
    #[inline]
    pub fn fill_checksum(&mut self, src: Ipv4Addr, dst: Ipv4Addr) {
        self.set_checksum(0);
        let sum = self.sum(src, dst);
        self.set_checksum(!sum);
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Options
// ------------------------------------------------------------------------------------------------------------------

/// Up to four SACK blocks (RFC 2018), stored inline so a [`TcpRepr`] stays `Copy` and allocation-free.
///
/// Four is the most a 40-byte option space can hold (2 + 4 * 8 = 34 bytes).
#[derive(Clone, Copy, Default)]
pub struct SackBlocks {
    blocks: [(SeqNum, SeqNum); SackBlocks::CAPACITY],
    len: u8,
}

impl SackBlocks {
    /// Most blocks one SACK option can carry.
    pub const CAPACITY: usize = 4;

    /// No blocks.
    pub const fn new() -> SackBlocks {
        SackBlocks {
            blocks: [(SeqNum(0), SeqNum(0)); SackBlocks::CAPACITY],
            len: 0,
        }
    }

    /// Appends a block `[left, right)`; returns `false` (and drops it) when four are already held.
    #[inline]
    pub fn push(&mut self, left: SeqNum, right: SeqNum) -> bool {
        match self.blocks.get_mut(usize::from(self.len)) {
            Some(slot) => {
                *slot = (left, right);
                self.len += 1;
                true
            }
            None => false,
        }
    }

    /// The blocks held, in order.
    #[inline]
    pub fn as_slice(&self) -> &[(SeqNum, SeqNum)] {
        let len = usize::from(self.len).min(Self::CAPACITY);
        &self.blocks[..len]
    }

    /// Iterates over the `(left, right)` blocks.
    #[inline]
    pub fn iter(&self) -> core::iter::Copied<core::slice::Iter<'_, (SeqNum, SeqNum)>> {
        self.as_slice().iter().copied()
    }

    /// Number of blocks held.
    #[inline]
    pub fn len(&self) -> usize {
        usize::from(self.len)
    }

    /// Whether no block is held.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the first `len` blocks.
    #[inline]
    pub fn truncate(&mut self, len: usize) {
        if len < usize::from(self.len) {
            // Clear the dropped slots so that no stale block can be observed.
            for slot in self.blocks.iter_mut().skip(len) {
                *slot = (SeqNum(0), SeqNum(0));
            }
            self.len = len as u8;
        }
    }

    /// Removes every block.
    #[inline]
    pub fn clear(&mut self) {
        self.truncate(0);
    }
}

impl PartialEq for SackBlocks {
    fn eq(&self, other: &SackBlocks) -> bool {
        self.as_slice() == other.as_slice()
    }
}

impl Eq for SackBlocks {}

impl fmt::Debug for SackBlocks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.as_slice().iter().map(|(l, r)| l.0..r.0))
            .finish()
    }
}

impl<'a> IntoIterator for &'a SackBlocks {
    type Item = (SeqNum, SeqNum);
    type IntoIter = core::iter::Copied<core::slice::Iter<'a, (SeqNum, SeqNum)>>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The timestamps option's two values (RFC 7323 §3), kept together because they are sent and echoed together.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TcpTimestamps {
    /// The sender's timestamp clock.
    pub tsval: u32,
    /// The most recent `tsval` received from the peer (0 on a SYN).
    pub tsecr: u32,
}

/// One TCP option as it appears on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcpOption<'a> {
    /// Kind 0: the end of the list; whatever follows is padding and ignored.
    EndOfList,
    /// Kind 1: padding between options.
    NoOperation,
    /// Kind 2: the largest segment the sender can receive (RFC 9293 §3.7.1).
    MaxSegmentSize(u16),
    /// Kind 3: the sender's window shift count (RFC 7323 §2).
    WindowScale(u8),
    /// Kind 4: the sender accepts SACK blocks (RFC 2018).
    SackPermitted,
    /// Kind 5: selectively acknowledged blocks (RFC 2018).
    SackRange(SackBlocks),
    /// Kind 8: timestamps (RFC 7323 §3).
    Timestamps {
        /// The sender's timestamp clock.
        tsval: u32,
        /// The echoed peer timestamp.
        tsecr: u32,
    },
    /// Any other kind, kept so callers can log it; the data excludes the kind and length bytes.
    Unknown {
        /// The option kind.
        kind: u8,
        /// The option data.
        data: &'a [u8],
    },
}

impl<'a> TcpOption<'a> {
    /// Parses the option at the start of `bytes`, returning the bytes after it.
    ///
    /// Kinds 0 and 1 are one byte; every other kind needs a length byte of at least 2 that fits in `bytes`
    /// (MUST-68, MUST-7), and the known kinds need their fixed lengths; otherwise `BadOption`, as is empty input.
    /// `EndOfList` returns an empty rest, because everything after it is padding (MUST-69), so a loop
    /// `while !rest.is_empty()` stops there. Unknown kinds are skipped by their length (MUST-6).
    #[inline]
    pub fn parse(bytes: &'a [u8]) -> Result<(&'a [u8], TcpOption<'a>)> {
        let Some((&kind, after_kind)) = bytes.split_first() else {
            return Err(Error::BadOption);
        };
        match kind {
            kind::END_OF_LIST => return Ok((&[], TcpOption::EndOfList)),
            kind::NO_OPERATION => return Ok((after_kind, TcpOption::NoOperation)),
            _ => {}
        }
        let Some(&len) = after_kind.first() else {
            return Err(Error::BadOption);
        };
        // A length below 2 would not cover its own kind and length bytes; rejecting it guarantees progress.
        if len < 2 {
            return Err(Error::BadOption);
        }
        let Some((option, rest)) = bytes.split_at_checked(usize::from(len)) else {
            return Err(Error::BadOption);
        };
        let [_, _, data @ ..] = option else {
            return Err(Error::BadOption);
        };
        let option = match (kind, data) {
            (kind::MSS, &[hi, lo]) => TcpOption::MaxSegmentSize(u16::from_be_bytes([hi, lo])),
            (kind::WINDOW_SCALE, &[shift]) => TcpOption::WindowScale(shift),
            (kind::SACK_PERMITTED, &[]) => TcpOption::SackPermitted,
            (kind::TIMESTAMPS, &[a, b, c, d, e, f, g, h]) => TcpOption::Timestamps {
                tsval: u32::from_be_bytes([a, b, c, d]),
                tsecr: u32::from_be_bytes([e, f, g, h]),
            },
            (kind::SACK, _) => TcpOption::SackRange(parse_sack_blocks(data)?),
            (kind::MSS | kind::WINDOW_SCALE | kind::SACK_PERMITTED | kind::TIMESTAMPS, _) => {
                return Err(Error::BadOption);
            }
            (kind, data) => TcpOption::Unknown { kind, data },
        };
        Ok((rest, option))
    }

    /// Bytes the option occupies on the wire.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        match self {
            TcpOption::EndOfList | TcpOption::NoOperation => 1,
            TcpOption::MaxSegmentSize(_) => 4,
            TcpOption::WindowScale(_) => 3,
            TcpOption::SackPermitted => 2,
            TcpOption::SackRange(blocks) => 2 + 8 * blocks.len(),
            TcpOption::Timestamps { .. } => 10,
            TcpOption::Unknown { data, .. } => 2 + data.len(),
        }
    }

    /// Writes the option at the start of `buffer` and returns the bytes after it.
    ///
    /// # Panics
    /// If `buffer` is shorter than [`TcpOption::buffer_len`]. An `Unknown` option's data must be at most 253 bytes
    /// (its length byte would overflow); a header has room for 38 anyway.
    pub fn emit<'b>(&self, buffer: &'b mut [u8]) -> &'b mut [u8] {
        let len = self.buffer_len();
        let (out, rest) = buffer.split_at_mut(len);
        match *self {
            TcpOption::EndOfList => out[0] = kind::END_OF_LIST,
            TcpOption::NoOperation => out[0] = kind::NO_OPERATION,
            TcpOption::MaxSegmentSize(mss) => {
                out[..2].copy_from_slice(&[kind::MSS, 4]);
                out[2..].copy_from_slice(&mss.to_be_bytes());
            }
            TcpOption::WindowScale(shift) => out.copy_from_slice(&[kind::WINDOW_SCALE, 3, shift]),
            TcpOption::SackPermitted => out.copy_from_slice(&[kind::SACK_PERMITTED, 2]),
            TcpOption::SackRange(ref blocks) => {
                out[..2].copy_from_slice(&[kind::SACK, len as u8]);
                write_sack_blocks(&mut out[2..], blocks.as_slice());
            }
            TcpOption::Timestamps { tsval, tsecr } => {
                out[..2].copy_from_slice(&[kind::TIMESTAMPS, 10]);
                out[2..6].copy_from_slice(&tsval.to_be_bytes());
                out[6..].copy_from_slice(&tsecr.to_be_bytes());
            }
            TcpOption::Unknown { kind, data } => {
                debug_assert!(data.len() <= 253);
                out[..2].copy_from_slice(&[kind, len as u8]);
                out[2..].copy_from_slice(data);
            }
        }
        rest
    }
}

/// Reads 1..=4 SACK blocks from the data of a kind-5 option (its length must be 2 + 8n).
#[inline]
fn parse_sack_blocks(data: &[u8]) -> Result<SackBlocks> {
    if data.is_empty() || data.len() % 8 != 0 || data.len() > 8 * SackBlocks::CAPACITY {
        return Err(Error::BadOption);
    }
    let mut blocks = SackBlocks::new();
    for chunk in data.chunks_exact(8) {
        let &[a, b, c, d, e, f, g, h] = chunk else {
            return Err(Error::BadOption);
        };
        blocks.push(
            SeqNum(u32::from_be_bytes([a, b, c, d])),
            SeqNum(u32::from_be_bytes([e, f, g, h])),
        );
    }
    Ok(blocks)
}

/// Writes `blocks` as consecutive big-endian (left, right) pairs; `out` is exactly `8 * blocks.len()` bytes.
#[inline]
fn write_sack_blocks(out: &mut [u8], blocks: &[(SeqNum, SeqNum)]) {
    for (chunk, (left, right)) in out.chunks_exact_mut(8).zip(blocks) {
        chunk[..4].copy_from_slice(&left.0.to_be_bytes());
        chunk[4..].copy_from_slice(&right.0.to_be_bytes());
    }
}

/// Walks an option list, yielding each option until the list ends, `EndOfList` is met, or an option is malformed
/// (yielded as one `Err`, after which the walk stops).
///
/// Every step consumes at least one byte, so the walk ends after at most `bytes.len()` items whatever the input.
#[derive(Debug, Clone)]
pub struct TcpOptionIter<'a> {
    rest: &'a [u8],
}

impl<'a> TcpOptionIter<'a> {
    /// Starts a walk over raw option bytes (e.g. [`Packet::options`]).
    #[inline]
    pub fn new(options: &'a [u8]) -> TcpOptionIter<'a> {
        TcpOptionIter { rest: options }
    }
}

impl<'a> Iterator for TcpOptionIter<'a> {
    type Item = Result<TcpOption<'a>>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        if self.rest.is_empty() {
            return None;
        }
        match TcpOption::parse(self.rest) {
            Ok((rest, option)) => {
                self.rest = rest;
                Some(Ok(option))
            }
            Err(error) => {
                self.rest = &[];
                Some(Err(error))
            }
        }
    }
}

// ------------------------------------------------------------------------------------------------------------------
// Repr
// ------------------------------------------------------------------------------------------------------------------

/// A parsed TCP header with its options as plain fields, and its payload.
///
/// `Default` gives an all-zero, option-less segment, handy as the base of `TcpRepr { flags, .. }` literals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpRepr<'a> {
    /// Source port (never 0 after `parse`).
    pub src_port: Port,
    /// Destination port (never 0 after `parse`).
    pub dst_port: Port,
    /// Sequence number.
    pub seq: SeqNum,
    /// Acknowledgment number: meaningful only when `flags` has ACK. `parse` reads it as 0 otherwise and `emit`
    /// writes 0 otherwise, so stale values never leak onto the wire or into the engine.
    pub ack: SeqNum,
    /// Control bits.
    pub flags: TcpFlags,
    /// The window field as on the wire (not scaled).
    pub window: u16,
    /// The urgent pointer field.
    pub urgent: u16,
    /// Maximum segment size option.
    pub mss: Option<u16>,
    /// Window scale option: the shift count as received (RFC 7323 clamps it to 14 at use, not here).
    pub window_scale: Option<u8>,
    /// SACK-permitted option.
    pub sack_permitted: bool,
    /// Timestamps option.
    pub timestamps: Option<TcpTimestamps>,
    /// SACK blocks; when emitting, only as many as fit in the option space are written.
    pub sack_blocks: SackBlocks,
    /// The segment's data.
    pub payload: &'a [u8],
}

/// NOP NOP TS(10): the head of the options of every established-connection segment with timestamps.
const NOP_NOP_TS: u32 = u32::from_be_bytes([kind::NO_OPERATION, kind::NO_OPERATION, kind::TIMESTAMPS, 10]);
/// The kind and length bytes of an MSS option.
const MSS_HEAD: u16 = u16::from_be_bytes([kind::MSS, 4]);
/// SACK-permitted then the head of TS, as a SYN from Linux or synack carries them.
const SACK_PERMITTED_TS: u32 = u32::from_be_bytes([kind::SACK_PERMITTED, 2, kind::TIMESTAMPS, 10]);
/// NOP then the kind and length of window scale, with the shift count masked to zero.
const NOP_WS_HEAD: u32 = u32::from_be_bytes([kind::NO_OPERATION, kind::WINDOW_SCALE, 3, 0]);

impl<'a> TcpRepr<'a> {
    /// Parses a packet: checks its lengths like [`Packet::check_len`] (`Truncated`, `Malformed`), verifies the
    /// checksum under `Verify` (`Checksum`), folds the options into fields (`BadOption` for a malformed list), and
    /// rejects port 0 on either side (`Malformed`).
    ///
    /// Repeated options: the last one wins.
    ///
    /// Speed (this runs once per received segment): the lengths are checked once and the fixed header is read
    /// from an array, so no getter repeats a bounds check; the option layouts synack and Linux send (NOP NOP TS
    /// on established connections; MSS, SACK-permitted, TS, NOP, WS on a SYN) are matched whole before the
    /// generic walk, and those paths build the result in place rather than copying a finished `TcpRepr`.
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(
        packet: &Packet<&'a T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        checksum: ChecksumPolicy,
    ) -> Result<TcpRepr<'a>> {
        // Reborrow the buffer with its full lifetime so the payload outlives `packet`.
        let bytes: &'a [u8] = packet.buffer.as_ref();
        let (fixed, header_len) = check_header(bytes)?;
        if checksum == ChecksumPolicy::Verify && !verify_segment(bytes, src, dst) {
            return Err(Error::Checksum);
        }
        if be16(fixed, field::SRC_PORT.start) == 0 || be16(fixed, field::DST_PORT.start) == 0 {
            return Err(Error::Malformed);
        }
        let (header, payload) = bytes.split_at_checked(header_len).ok_or(Error::Truncated)?;
        let options = header.get(HEADER_LEN..).unwrap_or_default();
        // The fields are read where the result is built: computed up front they outlived the option
        // match in spilled registers, each costing a store and a load more.
        let flags = || TcpFlags(fixed[field::FLAGS]);
        let repr = |mss, window_scale, sack_permitted, timestamps| TcpRepr {
            src_port: Port(be16(fixed, field::SRC_PORT.start)),
            dst_port: Port(be16(fixed, field::DST_PORT.start)),
            seq: SeqNum(be32(fixed, field::SEQ_NUM.start)),
            ack: if flags().ack() {
                SeqNum(be32(fixed, field::ACK_NUM.start))
            } else {
                SeqNum(0)
            },
            flags: flags(),
            window: be16(fixed, field::WINDOW.start),
            urgent: be16(fixed, field::URGENT.start),
            mss,
            window_scale,
            sack_permitted,
            timestamps,
            sack_blocks: SackBlocks::new(),
            payload,
        };

        // The known layouts are recognised by whole 32-bit words (one compare each, not one per byte).
        match *options {
            // Header prediction: an established connection's segments carry exactly NOP NOP TS.
            [h0, h1, h2, h3, a, b, c, d, e, f, g, h] if u32::from_be_bytes([h0, h1, h2, h3]) == NOP_NOP_TS => {
                let timestamps = TcpTimestamps {
                    tsval: u32::from_be_bytes([a, b, c, d]),
                    tsecr: u32::from_be_bytes([e, f, g, h]),
                };
                return Ok(repr(None, None, false, Some(timestamps)));
            }
            // A SYN or SYN-ACK from Linux or synack: MSS, SACK-permitted, TS, NOP, WS.
            #[rustfmt::skip]
            [
                h0, h1, m0, m1,
                s0, s1, s2, s3,
                a, b, c, d,
                e, f, g, h,
                w0, w1, w2, shift,
            ] if u16::from_be_bytes([h0, h1]) == MSS_HEAD
                && u32::from_be_bytes([s0, s1, s2, s3]) == SACK_PERMITTED_TS
                && u32::from_be_bytes([w0, w1, w2, 0]) == NOP_WS_HEAD =>
            {
                let timestamps = TcpTimestamps {
                    tsval: u32::from_be_bytes([a, b, c, d]),
                    tsecr: u32::from_be_bytes([e, f, g, h]),
                };
                let mss = u16::from_be_bytes([m0, m1]);
                return Ok(repr(Some(mss), Some(shift), true, Some(timestamps)));
            }
            [] => return Ok(repr(None, None, false, None)),
            _ => {}
        }
        let mut repr = repr(None, None, false, None);
        for option in TcpOptionIter::new(options) {
            match option? {
                TcpOption::EndOfList | TcpOption::NoOperation | TcpOption::Unknown { .. } => {}
                TcpOption::MaxSegmentSize(mss) => repr.mss = Some(mss),
                TcpOption::WindowScale(shift) => repr.window_scale = Some(shift),
                TcpOption::SackPermitted => repr.sack_permitted = true,
                TcpOption::SackRange(blocks) => repr.sack_blocks = blocks,
                TcpOption::Timestamps { tsval, tsecr } => repr.timestamps = Some(TcpTimestamps { tsval, tsecr }),
            }
        }
        Ok(repr)
    }

    /// The options as the segment writer takes them: one layout (and one length rule) for both emitters.
    #[inline]
    fn options(&self) -> TcpOptions<'_> {
        TcpOptions {
            mss: self.mss,
            window_scale: self.window_scale,
            sack_permitted: self.sack_permitted,
            timestamps: self.timestamps,
            sack_blocks: self.sack_blocks.as_slice(),
        }
    }

    /// Header length `emit` writes: 20 plus the options in Linux's layout, a multiple of 4 and at most 60.
    #[inline]
    pub fn header_len(&self) -> usize {
        HEADER_LEN + self.options().len()
    }

    /// Bytes `emit` needs: header plus payload.
    #[inline]
    pub fn buffer_len(&self) -> usize {
        self.header_len() + self.payload.len()
    }

    /// Sequence space the segment occupies: payload length plus one each for SYN and FIN (RFC 9293 §3.4).
    #[inline]
    pub fn segment_len(&self) -> u32 {
        self.payload.len() as u32 + u32::from(self.flags.syn()) + u32::from(self.flags.fin())
    }

    /// Writes header and options, leaving the payload area untouched and the checksum field zero.
    ///
    /// For callers that place the payload themselves (the engine copies straight from its send buffer into the
    /// frame): size the packet to `header_len() + n`, call this, write the `n` bytes into
    /// [`Packet::payload_mut`], then [`Packet::fill_checksum`]. `self.payload` is ignored.
    ///
    /// # Panics
    /// If the buffer is shorter than [`TcpRepr::header_len`].
    pub fn emit_header<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, packet: &mut Packet<&mut T>) {
        self.emit_header_sized(packet, self.header_len());
    }

    /// [`TcpRepr::emit_header`] for a caller that has `header_len()` at hand already (it sized the frame).
    #[inline]
    pub(crate) fn emit_header_sized<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
        header_len: usize,
    ) {
        debug_assert_eq!(header_len, self.header_len());
        debug_assert!(header_len % 4 == 0 && (HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len));
        let ack = if self.flags.ack() { self.ack } else { SeqNum(0) };
        // The fixed header assembled in registers and stored at once: ten setters meant ten bounds checks.
        let mut fixed = [0u8; HEADER_LEN];
        fixed[field::SRC_PORT].copy_from_slice(&self.src_port.0.to_be_bytes());
        fixed[field::DST_PORT].copy_from_slice(&self.dst_port.0.to_be_bytes());
        fixed[field::SEQ_NUM].copy_from_slice(&self.seq.0.to_be_bytes());
        fixed[field::ACK_NUM].copy_from_slice(&ack.0.to_be_bytes());
        fixed[field::DATA_OFFSET] = ((header_len / 4) as u8) << 4;
        fixed[field::FLAGS] = self.flags.0;
        fixed[field::WINDOW].copy_from_slice(&self.window.to_be_bytes());
        // The checksum field stays zero.
        fixed[field::URGENT].copy_from_slice(&self.urgent.to_be_bytes());
        let buffer = packet.buffer.as_mut();
        buffer[..HEADER_LEN].copy_from_slice(&fixed);
        tcp_writer::write_options(&mut buffer[field::OPTIONS_START..header_len], &self.options());
    }

    /// Writes the whole segment (header, options, payload) and its checksum over the IPv4 pseudo-header.
    ///
    /// # Panics
    /// If the packet's buffer is not exactly [`TcpRepr::buffer_len`] bytes: the checksum covers the whole buffer.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(
        &self,
        packet: &mut Packet<&mut T>,
        src: Ipv4Addr,
        dst: Ipv4Addr,
    ) {
        self.emit_header(packet);
        packet.payload_mut().copy_from_slice(self.payload);
        packet.fill_checksum(src, dst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
    const SERVER: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

    /// A Linux client SYN, 198.18.0.1:43210 -> 198.18.0.2:80, seq 0x5f3a91c4, window 64240,
    /// options MSS 1460, SACK-permitted, TS (tsval 0x1b2c3d4e, tsecr 0), NOP, WS 7.
    const SYN: [u8; 40] = [
        0xa8, 0xca, 0x00, 0x50, 0x5f, 0x3a, 0x91, 0xc4, 0x00, 0x00, 0x00, 0x00, 0xa0, 0x02, 0xfa, 0xf0, //
        0xce, 0x53, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x1b, 0x2c, 0x3d, 0x4e, //
        0x00, 0x00, 0x00, 0x00, 0x01, 0x03, 0x03, 0x07,
    ];

    /// The server's SYN-ACK, 198.18.0.2:80 -> 198.18.0.1:43210, seq 0x8d2e7a13, ack 0x5f3a91c5, window 65160,
    /// options MSS 1460, SACK-permitted, TS (tsval 0x7e1f0a55, tsecr 0x1b2c3d4e), NOP, WS 7.
    const SYN_ACK: [u8; 40] = [
        0x00, 0x50, 0xa8, 0xca, 0x8d, 0x2e, 0x7a, 0x13, 0x5f, 0x3a, 0x91, 0xc5, 0xa0, 0x12, 0xfe, 0x88, //
        0x3a, 0xf4, 0x00, 0x00, 0x02, 0x04, 0x05, 0xb4, 0x04, 0x02, 0x08, 0x0a, 0x7e, 0x1f, 0x0a, 0x55, //
        0x1b, 0x2c, 0x3d, 0x4e, 0x01, 0x03, 0x03, 0x07,
    ];

    /// A client PSH|ACK carrying "GET / HTTP/1.1\r\n\r\n", with NOP NOP TS and NOP NOP SACK of two blocks.
    const DATA: [u8; 70] = [
        0xa8, 0xca, 0x00, 0x50, 0x5f, 0x3a, 0x91, 0xc5, 0x8d, 0x2e, 0x7d, 0xfc, 0xd0, 0x18, 0x01, 0xf6, //
        0xc5, 0xde, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x1b, 0x2c, 0x3f, 0x10, 0x7e, 0x1f, 0x0b, 0x01, //
        0x01, 0x01, 0x05, 0x12, 0x8d, 0x2e, 0x83, 0xa4, 0x8d, 0x2e, 0x89, 0x4c, 0x8d, 0x2e, 0x8e, 0xf4, //
        0x8d, 0x2e, 0x94, 0x9c, 0x47, 0x45, 0x54, 0x20, 0x2f, 0x20, 0x48, 0x54, 0x54, 0x50, 0x2f, 0x31, //
        0x2e, 0x31, 0x0d, 0x0a, 0x0d, 0x0a,
    ];

    /// A client FIN|ACK with NOP NOP TS.
    const FIN_ACK: [u8; 32] = [
        0xa8, 0xca, 0x00, 0x50, 0x5f, 0x3a, 0x91, 0xd7, 0x8d, 0x2e, 0x94, 0x9c, 0x80, 0x11, 0x01, 0xf5, //
        0x47, 0x3b, 0x00, 0x00, 0x01, 0x01, 0x08, 0x0a, 0x1b, 0x2c, 0x40, 0x01, 0x7e, 0x1f, 0x0c, 0x20,
    ];

    /// Linux's RST|ACK to a SYN for a closed port: 198.18.0.2:80 -> 198.18.0.1:43212, seq 0, ack 0x12345679.
    const RST_ACK: [u8; 20] = [
        0x00, 0x50, 0xa8, 0xcc, 0x00, 0x00, 0x00, 0x00, 0x12, 0x34, 0x56, 0x79, 0x50, 0x14, 0x00, 0x00, //
        0x11, 0xdf, 0x00, 0x00,
    ];

    fn parse(bytes: &[u8], src: Ipv4Addr, dst: Ipv4Addr) -> Result<TcpRepr<'_>> {
        let packet = Packet::new_checked(bytes)?;
        TcpRepr::parse(&packet, src, dst, ChecksumPolicy::Verify)
    }

    fn emit(repr: &TcpRepr<'_>, src: Ipv4Addr, dst: Ipv4Addr) -> Vec<u8> {
        let mut buf = vec![0xa5; repr.buffer_len()];
        repr.emit(&mut Packet::new_unchecked(&mut buf[..]), src, dst);
        buf
    }

    /// A client -> server segment with the given raw option bytes (a multiple of 4) and a valid checksum.
    fn segment_with_options(options: &[u8]) -> Vec<u8> {
        let mut buf = vec![0u8; HEADER_LEN + options.len()];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_src_port(Port(43210));
        packet.set_dst_port(Port(80));
        packet.set_seq_number(SeqNum(1));
        packet.set_header_len(HEADER_LEN + options.len());
        packet.set_flags(TcpFlags::ACK);
        packet.set_window_len(1000);
        packet.options_mut().copy_from_slice(options);
        packet.fill_checksum(CLIENT, SERVER);
        buf
    }

    fn parse_options(options: &[u8]) -> Result<TcpRepr<'static>> {
        let buf: &'static [u8] = segment_with_options(options).leak();
        parse(buf, CLIENT, SERVER)
    }

    #[test]
    fn tcp_flags_debug_lists_names_in_bit_order() {
        assert_eq!(format!("{:?}", TcpFlags::SYN | TcpFlags::ACK), "SYN|ACK");
        assert_eq!(format!("{:?}", TcpFlags::ACK | TcpFlags::FIN), "FIN|ACK");
        assert_eq!(format!("{:?}", TcpFlags(0xff)), "FIN|SYN|RST|PSH|ACK|URG|ECE|CWR");
        assert_eq!(format!("{:?}", TcpFlags::empty()), "(none)");
    }

    #[test]
    fn tcp_flags_contains_and_intersects_differ() {
        let mut flags = TcpFlags::SYN;
        flags |= TcpFlags::ACK;
        assert!(flags.contains(TcpFlags::SYN | TcpFlags::ACK));
        assert!(!flags.contains(TcpFlags::SYN | TcpFlags::FIN));
        assert!(flags.intersects(TcpFlags::SYN | TcpFlags::FIN));
        assert!(!flags.intersects(TcpFlags::RST | TcpFlags::FIN));
        assert!(flags.syn() && flags.ack() && !flags.fin() && !flags.rst() && !flags.psh() && !flags.urg());
        assert_eq!(flags & TcpFlags::ACK, TcpFlags::ACK);
        assert!(TcpFlags::empty().is_empty());
    }

    #[test]
    fn tcp_packet_linux_syn_fields_read_back() {
        let packet = Packet::new_checked(&SYN[..]).unwrap();
        assert_eq!(packet.src_port(), Port(43210));
        assert_eq!(packet.dst_port(), Port(80));
        assert_eq!(packet.seq_number(), SeqNum(0x5f3a_91c4));
        assert_eq!(packet.ack_number(), SeqNum(0));
        assert_eq!(packet.header_len(), 40);
        assert_eq!(packet.flags(), TcpFlags::SYN);
        assert_eq!(packet.window_len(), 64240);
        assert_eq!(packet.checksum(), 0xce53);
        assert_eq!(packet.urgent_at(), 0);
        assert_eq!(packet.options(), &SYN[20..40]);
        assert!(packet.payload().is_empty());
        assert_eq!(packet.segment_len(), 1);
        assert!(packet.verify_checksum(CLIENT, SERVER));
        // The pseudo-header is covered: swapping the addresses' roles changes nothing, another address does.
        assert!(packet.verify_checksum(SERVER, CLIENT));
        assert!(!packet.verify_checksum(CLIENT, Ipv4Addr::new(198, 18, 0, 3)));
    }

    #[test]
    fn tcp_option_linux_syn_options_walk_in_order() {
        let options: Vec<_> = TcpOptionIter::new(&SYN[20..]).collect::<Result<_>>().unwrap();
        assert_eq!(
            options,
            [
                TcpOption::MaxSegmentSize(1460),
                TcpOption::SackPermitted,
                TcpOption::Timestamps {
                    tsval: 0x1b2c_3d4e,
                    tsecr: 0
                },
                TcpOption::NoOperation,
                TcpOption::WindowScale(7),
            ]
        );
        let lens: Vec<_> = options.iter().map(TcpOption::buffer_len).collect();
        assert_eq!(lens, [4, 2, 10, 1, 3]);
    }

    #[test]
    fn tcp_repr_linux_syn_parses_and_reemits_identically() {
        let repr = parse(&SYN, CLIENT, SERVER).unwrap();
        assert_eq!(
            repr,
            TcpRepr {
                src_port: Port(43210),
                dst_port: Port(80),
                seq: SeqNum(0x5f3a_91c4),
                ack: SeqNum(0),
                flags: TcpFlags::SYN,
                window: 64240,
                urgent: 0,
                mss: Some(1460),
                window_scale: Some(7),
                sack_permitted: true,
                timestamps: Some(TcpTimestamps {
                    tsval: 0x1b2c_3d4e,
                    tsecr: 0
                }),
                sack_blocks: SackBlocks::new(),
                payload: &[],
            }
        );
        assert_eq!(repr.segment_len(), 1);
        assert_eq!(repr.header_len(), 40);
        assert_eq!(emit(&repr, CLIENT, SERVER), SYN);
    }

    #[test]
    fn tcp_repr_linux_syn_ack_parses_and_reemits_identically() {
        let syn = parse(&SYN, CLIENT, SERVER).unwrap();
        let repr = parse(&SYN_ACK, SERVER, CLIENT).unwrap();
        assert_eq!(repr.src_port, Port(80));
        assert_eq!(repr.dst_port, Port(43210));
        assert_eq!(repr.seq, SeqNum(0x8d2e_7a13));
        assert_eq!(repr.ack, syn.seq + 1);
        assert_eq!(repr.flags, TcpFlags::SYN | TcpFlags::ACK);
        assert_eq!(repr.window, 65160);
        assert_eq!(repr.mss, Some(1460));
        assert_eq!(repr.window_scale, Some(7));
        assert!(repr.sack_permitted);
        assert_eq!(
            repr.timestamps,
            Some(TcpTimestamps {
                tsval: 0x7e1f_0a55,
                tsecr: syn.timestamps.unwrap().tsval
            })
        );
        assert!(repr.sack_blocks.is_empty());
        assert_eq!(Packet::new_checked(&SYN_ACK[..]).unwrap().checksum(), 0x3af4);
        assert_eq!(emit(&repr, SERVER, CLIENT), SYN_ACK);
    }

    #[test]
    fn tcp_repr_data_with_sack_parses_and_reemits_identically() {
        let repr = parse(&DATA, CLIENT, SERVER).unwrap();
        assert_eq!(repr.seq, SeqNum(0x5f3a_91c5));
        assert_eq!(repr.ack, SeqNum(0x8d2e_7dfc));
        assert_eq!(repr.flags, TcpFlags::PSH | TcpFlags::ACK);
        assert_eq!(repr.window, 502);
        assert_eq!(repr.mss, None);
        assert_eq!(repr.window_scale, None);
        assert!(!repr.sack_permitted);
        assert_eq!(
            repr.timestamps,
            Some(TcpTimestamps {
                tsval: 0x1b2c_3f10,
                tsecr: 0x7e1f_0b01
            })
        );
        assert_eq!(
            repr.sack_blocks.as_slice(),
            [
                (SeqNum(0x8d2e_83a4), SeqNum(0x8d2e_894c)),
                (SeqNum(0x8d2e_8ef4), SeqNum(0x8d2e_949c))
            ]
        );
        assert_eq!(repr.payload, b"GET / HTTP/1.1\r\n\r\n");
        assert_eq!(repr.segment_len(), 18);
        assert_eq!(repr.header_len(), 52);
        assert_eq!(emit(&repr, CLIENT, SERVER), DATA);
    }

    #[test]
    fn tcp_repr_fin_ack_consumes_one_sequence_number() {
        let repr = parse(&FIN_ACK, CLIENT, SERVER).unwrap();
        assert_eq!(repr.flags, TcpFlags::FIN | TcpFlags::ACK);
        assert_eq!(repr.seq, SeqNum(0x5f3a_91d7));
        assert_eq!(repr.ack, SeqNum(0x8d2e_949c));
        assert_eq!(repr.window, 501);
        assert_eq!(
            repr.timestamps,
            Some(TcpTimestamps {
                tsval: 0x1b2c_4001,
                tsecr: 0x7e1f_0c20
            })
        );
        assert!(repr.payload.is_empty());
        assert_eq!(repr.segment_len(), 1);
        assert_eq!(Packet::new_checked(&FIN_ACK[..]).unwrap().segment_len(), 1);
        assert_eq!(emit(&repr, CLIENT, SERVER), FIN_ACK);
    }

    #[test]
    fn tcp_repr_rst_ack_has_no_options() {
        let repr = parse(&RST_ACK, SERVER, CLIENT).unwrap();
        assert_eq!(repr.flags, TcpFlags::RST | TcpFlags::ACK);
        assert!(repr.flags.rst());
        assert_eq!(repr.src_port, Port(80));
        assert_eq!(repr.dst_port, Port(43212));
        assert_eq!(repr.seq, SeqNum(0));
        assert_eq!(repr.ack, SeqNum(0x1234_5679));
        assert_eq!(repr.window, 0);
        assert_eq!(
            (repr.mss, repr.window_scale, repr.sack_permitted, repr.timestamps),
            (None, None, false, None)
        );
        assert_eq!(repr.segment_len(), 0);
        assert_eq!(repr.header_len(), 20);
        assert_eq!(emit(&repr, SERVER, CLIENT), RST_ACK);
    }

    #[test]
    fn tcp_repr_ack_without_ack_flag_is_zeroed() {
        let mut syn = SYN;
        syn[8..12].copy_from_slice(&[0xde, 0xad, 0xbe, 0xef]);
        let mut packet = Packet::new_unchecked(&mut syn[..]);
        packet.fill_checksum(CLIENT, SERVER);
        let repr = parse(&syn, CLIENT, SERVER).unwrap();
        assert_eq!(repr.ack, SeqNum(0));
        let bogus = TcpRepr {
            ack: SeqNum(0xdead_beef),
            ..repr
        };
        assert_eq!(emit(&bogus, CLIENT, SERVER), SYN);
    }

    #[test]
    fn tcp_repr_emit_header_then_in_place_payload_matches_emit() {
        let repr = parse(&DATA, CLIENT, SERVER).unwrap();
        let mut buf = vec![0u8; repr.buffer_len()];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        repr.emit_header(&mut packet);
        packet.payload_mut().copy_from_slice(b"GET / HTTP/1.1\r\n\r\n");
        packet.fill_checksum(CLIENT, SERVER);
        assert_eq!(buf, DATA);
    }

    #[test]
    fn tcp_packet_setters_write_every_field() {
        let mut buf = [0u8; 24];
        let mut packet = Packet::new_unchecked(&mut buf[..]);
        packet.set_src_port(Port(0x0102));
        packet.set_dst_port(Port(0x0304));
        packet.set_seq_number(SeqNum(0x0506_0708));
        packet.set_ack_number(SeqNum(0x090a_0b0c));
        packet.set_header_len(24);
        packet.set_flags(TcpFlags(0x0e));
        packet.set_window_len(0x0f10);
        packet.set_checksum(0x1112);
        packet.set_urgent_at(0x1314);
        packet.options_mut().copy_from_slice(&[0x15, 0x16, 0x17, 0x18]);
        assert!(packet.payload_mut().is_empty());
        assert_eq!(
            buf,
            [
                0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x60, 0x0e, 0x0f, 0x10, 0x11,
                0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18
            ]
        );
    }

    #[test]
    fn tcp_packet_truncated_is_rejected() {
        assert_eq!(Packet::new_checked(&SYN[..19]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&[][..]).unwrap_err(), Error::Truncated);
        assert_eq!(Packet::new_checked(&SYN[..12]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn tcp_packet_data_offset_below_five_is_malformed() {
        let mut bytes = RST_ACK;
        bytes[12] = 0x40;
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
        bytes[12] = 0x00;
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn tcp_packet_data_offset_beyond_buffer_is_truncated() {
        // The SYN's header claims 40 bytes; hand it only 36.
        assert_eq!(Packet::new_checked(&SYN[..36]).unwrap_err(), Error::Truncated);
        let mut bytes = RST_ACK;
        bytes[12] = 0x60;
        assert_eq!(Packet::new_checked(&bytes[..]).unwrap_err(), Error::Truncated);
    }

    #[test]
    fn tcp_repr_parse_bad_checksum_is_rejected() {
        let mut bytes = SYN;
        bytes[39] ^= 0x01;
        let packet = Packet::new_checked(&bytes[..]).unwrap();
        assert!(!packet.verify_checksum(CLIENT, SERVER));
        assert_eq!(
            TcpRepr::parse(&packet, CLIENT, SERVER, ChecksumPolicy::Verify).unwrap_err(),
            Error::Checksum
        );
        // Under Trust the same segment parses, with the corrupted window scale.
        let repr = TcpRepr::parse(&packet, CLIENT, SERVER, ChecksumPolicy::Trust).unwrap();
        assert_eq!(repr.window_scale, Some(6));
        // Wrong addresses fail too: the pseudo-header is covered.
        assert_eq!(
            parse(&SYN, SERVER, Ipv4Addr::new(198, 18, 0, 9)).unwrap_err(),
            Error::Checksum
        );
    }

    #[test]
    fn tcp_repr_parse_port_zero_is_malformed() {
        let mut bytes = RST_ACK;
        bytes[0..2].copy_from_slice(&[0, 0]);
        Packet::new_unchecked(&mut bytes[..]).fill_checksum(SERVER, CLIENT);
        assert_eq!(parse(&bytes, SERVER, CLIENT).unwrap_err(), Error::Malformed);
        let mut bytes = RST_ACK;
        bytes[2..4].copy_from_slice(&[0, 0]);
        Packet::new_unchecked(&mut bytes[..]).fill_checksum(SERVER, CLIENT);
        assert_eq!(parse(&bytes, SERVER, CLIENT).unwrap_err(), Error::Malformed);
    }

    #[test]
    fn tcp_option_zero_length_is_rejected() {
        assert_eq!(TcpOption::parse(&[2, 0, 5, 0xb4]).unwrap_err(), Error::BadOption);
        assert_eq!(TcpOption::parse(&[0x1e, 0, 0, 0]).unwrap_err(), Error::BadOption);
        assert_eq!(TcpOption::parse(&[0x1e, 1, 0, 0]).unwrap_err(), Error::BadOption);
        assert_eq!(parse_options(&[0x1e, 0, 1, 1]).unwrap_err(), Error::BadOption);
    }

    #[test]
    fn tcp_option_length_overrunning_list_is_rejected() {
        assert_eq!(TcpOption::parse(&[8, 10, 0, 0]).unwrap_err(), Error::BadOption);
        assert_eq!(TcpOption::parse(&[2]).unwrap_err(), Error::BadOption);
        assert_eq!(TcpOption::parse(&[]).unwrap_err(), Error::BadOption);
        assert_eq!(parse_options(&[1, 1, 1, 2]).unwrap_err(), Error::BadOption);
        assert_eq!(parse_options(&[1, 0x1e, 4, 0]).unwrap_err(), Error::BadOption);
    }

    #[test]
    fn tcp_option_wrong_fixed_length_is_rejected() {
        for bytes in [
            &[2, 3, 5, 1][..],
            &[2, 5, 5, 0xb4, 0],
            &[3, 2, 7, 0],
            &[3, 4, 7, 0],
            &[4, 3, 0, 0],
            &[8, 8, 0, 0, 0, 0, 0, 0],
            &[8, 11, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        ] {
            assert_eq!(TcpOption::parse(bytes).unwrap_err(), Error::BadOption, "{bytes:02x?}");
        }
        assert_eq!(parse_options(&[3, 4, 7, 0]).unwrap_err(), Error::BadOption);
    }

    #[test]
    fn tcp_option_sack_length_not_2_plus_8n_is_rejected() {
        let mut bytes = [0u8; 42];
        bytes[0] = kind::SACK;
        for len in [2u8, 3, 9, 11, 17, 42] {
            bytes[1] = len;
            assert_eq!(TcpOption::parse(&bytes).unwrap_err(), Error::BadOption, "length {len}");
        }
        for (len, n) in [(10u8, 1), (18, 2), (26, 3), (34, 4)] {
            bytes[1] = len;
            let (rest, option) = TcpOption::parse(&bytes).unwrap();
            assert_eq!(rest.len(), 42 - usize::from(len));
            let TcpOption::SackRange(blocks) = option else {
                panic!("not SACK: {option:?}")
            };
            assert_eq!(blocks.len(), n);
        }
        assert_eq!(
            parse_options(&[1, 1, 5, 11, 0, 0, 0, 0, 0, 0, 0, 0]).unwrap_err(),
            Error::BadOption
        );
    }

    #[test]
    fn tcp_option_unknown_kind_is_skipped_by_length() {
        let (rest, option) = TcpOption::parse(&[0x1e, 4, 0xaa, 0xbb, 1]).unwrap();
        assert_eq!(
            option,
            TcpOption::Unknown {
                kind: 0x1e,
                data: &[0xaa, 0xbb]
            }
        );
        assert_eq!(rest, [1]);
        let repr = parse_options(&[0x1e, 4, 0xaa, 0xbb, 1, 1, 8, 10, 0, 0, 0, 9, 0, 0, 0, 7]).unwrap();
        assert_eq!(repr.timestamps, Some(TcpTimestamps { tsval: 9, tsecr: 7 }));
    }

    #[test]
    fn tcp_option_end_of_list_stops_parsing() {
        let (rest, option) = TcpOption::parse(&[0, 3, 3, 7]).unwrap();
        assert_eq!(option, TcpOption::EndOfList);
        assert!(rest.is_empty());
        // The window scale after EOL is padding, and so is garbage that would otherwise be malformed.
        let repr = parse_options(&[2, 4, 5, 0xb4, 0, 3, 3, 7]).unwrap();
        assert_eq!(repr.mss, Some(1460));
        assert_eq!(repr.window_scale, None);
        let repr = parse_options(&[1, 0, 0xff, 0]).unwrap();
        assert_eq!(repr, parse_options(&[]).unwrap());
    }

    #[test]
    fn tcp_option_emit_round_trips_every_kind() {
        let mut blocks = SackBlocks::new();
        assert!(blocks.push(SeqNum(1), SeqNum(2)));
        assert!(blocks.push(SeqNum(3), SeqNum(4)));
        let options = [
            TcpOption::EndOfList,
            TcpOption::NoOperation,
            TcpOption::MaxSegmentSize(1460),
            TcpOption::WindowScale(14),
            TcpOption::SackPermitted,
            TcpOption::SackRange(blocks),
            TcpOption::Timestamps {
                tsval: 0xdead_beef,
                tsecr: 1,
            },
            TcpOption::Unknown {
                kind: 0xfd,
                data: &[1, 2, 3],
            },
        ];
        for option in options {
            let mut buf = [0xeeu8; 48];
            let rest_len = option.emit(&mut buf).len();
            assert_eq!(rest_len, 48 - option.buffer_len());
            let (rest, parsed) = TcpOption::parse(&buf[..option.buffer_len()]).unwrap();
            assert_eq!(parsed, option);
            assert!(rest.is_empty());
        }
    }

    #[test]
    fn sack_blocks_push_beyond_capacity_is_refused() {
        let mut blocks = SackBlocks::new();
        for i in 0..4 {
            assert!(blocks.push(SeqNum(i), SeqNum(i + 1)));
        }
        assert!(!blocks.push(SeqNum(9), SeqNum(10)));
        assert_eq!(blocks.len(), 4);
        assert_eq!(blocks.iter().last(), Some((SeqNum(3), SeqNum(4))));
        let mut short = blocks;
        short.truncate(2);
        assert_eq!(short.len(), 2);
        assert_ne!(short, blocks);
        let mut rebuilt = SackBlocks::new();
        rebuilt.push(SeqNum(0), SeqNum(1));
        rebuilt.push(SeqNum(1), SeqNum(2));
        assert_eq!(short, rebuilt);
        short.clear();
        assert!(short.is_empty());
        assert_eq!(format!("{rebuilt:?}"), "[0..1, 1..2]");
    }

    fn four_blocks() -> SackBlocks {
        let mut blocks = SackBlocks::new();
        for i in 0..4u32 {
            blocks.push(SeqNum(1000 * i), SeqNum(1000 * i + 500));
        }
        blocks
    }

    #[test]
    fn tcp_repr_sack_blocks_beyond_option_space_are_truncated() {
        let base = TcpRepr {
            src_port: Port(1),
            dst_port: Port(2),
            flags: TcpFlags::ACK,
            sack_blocks: four_blocks(),
            ..TcpRepr::default()
        };
        // (repr, blocks that fit): 4 alone, 3 beside timestamps, 2 beside MSS + TS + WS.
        let ts = Some(TcpTimestamps { tsval: 5, tsecr: 6 });
        let cases = [
            (base, 4, 56),
            (TcpRepr { timestamps: ts, ..base }, 3, 60),
            (
                TcpRepr {
                    timestamps: ts,
                    sack_permitted: true,
                    ..base
                },
                3,
                60,
            ),
            (
                TcpRepr {
                    timestamps: ts,
                    mss: Some(536),
                    window_scale: Some(2),
                    ..base
                },
                2,
                60,
            ),
            (
                TcpRepr {
                    timestamps: ts,
                    mss: Some(536),
                    window_scale: Some(2),
                    sack_permitted: true,
                    ..base
                },
                2,
                60,
            ),
        ];
        for (repr, fit, header_len) in cases {
            assert_eq!(repr.header_len(), header_len, "{repr:?}");
            let bytes = emit(&repr, CLIENT, SERVER);
            assert_eq!(bytes.len(), header_len);
            let parsed = parse(&bytes, CLIENT, SERVER).unwrap();
            let mut expected = repr.sack_blocks;
            expected.truncate(fit);
            assert_eq!(parsed.sack_blocks, expected);
            assert_eq!(
                parsed,
                TcpRepr {
                    sack_blocks: expected,
                    ..repr
                }
            );
        }
    }

    #[test]
    fn tcp_repr_sack_permitted_alone_uses_nop_nop_layout() {
        let repr = TcpRepr {
            src_port: Port(1),
            dst_port: Port(2),
            flags: TcpFlags::SYN,
            mss: Some(1460),
            sack_permitted: true,
            window_scale: Some(7),
            ..TcpRepr::default()
        };
        let bytes = emit(&repr, CLIENT, SERVER);
        assert_eq!(bytes[20..], [2, 4, 5, 0xb4, 1, 1, 4, 2, 1, 3, 3, 7]);
        assert_eq!(parse(&bytes, CLIENT, SERVER).unwrap(), repr);
    }

    prop_compose! {
        fn arb_sack_blocks()(pairs in proptest::collection::vec(any::<(u32, u32)>(), 0..=4)) -> SackBlocks {
            let mut blocks = SackBlocks::new();
            for (l, r) in pairs {
                blocks.push(SeqNum(l), SeqNum(r));
            }
            blocks
        }
    }

    prop_compose! {
        fn arb_repr()(
            (src, dst) in (1u16..=u16::MAX, 1u16..=u16::MAX), seq in any::<u32>(), ack in any::<u32>(), flags in any::<u8>(),
            window in any::<u16>(), urgent in any::<u16>(), mss in any::<Option<u16>>(),
            window_scale in any::<Option<u8>>(), sack_permitted in any::<bool>(),
            timestamps in any::<Option<(u32, u32)>>(), sack_blocks in arb_sack_blocks(),
            payload in proptest::collection::vec(any::<u8>(), 0..=100),
        ) -> (TcpRepr<'static>, Vec<u8>) {
            let flags = TcpFlags(flags);
            let mut repr = TcpRepr {
                src_port: Port(src),
                dst_port: Port(dst),
                seq: SeqNum(seq),
                ack: if flags.ack() { SeqNum(ack) } else { SeqNum(0) },
                flags,
                window,
                urgent,
                mss,
                window_scale,
                sack_permitted,
                timestamps: timestamps.map(|(tsval, tsecr)| TcpTimestamps { tsval, tsecr }),
                sack_blocks,
                payload: &[],
            };
            // Keep only the blocks that fit, so the round trip is exact; truncation has its own test.
            let fit = repr.options().sack_blocks_fitting();
            repr.sack_blocks.truncate(fit);
            (repr, payload)
        }
    }

    proptest! {
        #[test]
        fn tcp_repr_any_emit_then_parse_round_trips((repr, payload) in arb_repr()) {
            let repr = TcpRepr { payload: &payload, ..repr };
            let bytes = emit(&repr, CLIENT, SERVER);
            prop_assert_eq!(bytes.len(), repr.buffer_len());
            prop_assert!(repr.header_len() <= MAX_HEADER_LEN && repr.header_len() % 4 == 0);
            let packet = Packet::new_checked(&bytes[..]).unwrap();
            prop_assert_eq!(packet.header_len(), repr.header_len());
            prop_assert!(packet.verify_checksum(CLIENT, SERVER));
            prop_assert_eq!(packet.segment_len(), repr.segment_len());
            let parsed = TcpRepr::parse(&packet, CLIENT, SERVER, ChecksumPolicy::Verify).unwrap();
            prop_assert_eq!(parsed, repr);
        }

        #[test]
        fn tcp_repr_any_sack_blocks_header_len_matches_emit((repr, _payload) in arb_repr(), extra in arb_sack_blocks()) {
            // Untruncated blocks: header_len must still bound and agree with what emit writes.
            let repr = TcpRepr { sack_blocks: extra, ..repr };
            let bytes = emit(&repr, CLIENT, SERVER);
            prop_assert!(bytes.len() <= MAX_HEADER_LEN);
            let parsed = parse(&bytes, CLIENT, SERVER).unwrap();
            prop_assert!(parsed.sack_blocks.len() <= extra.len());
            prop_assert_eq!(parsed.sack_blocks.as_slice(), &extra.as_slice()[..parsed.sack_blocks.len()]);
        }

        #[test]
        fn tcp_any_bytes_parse_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..100)) {
            if let Ok(packet) = Packet::new_checked(&bytes[..]) {
                let _ = (packet.options(), packet.payload(), packet.segment_len(), packet.flags());
                for policy in [ChecksumPolicy::Verify, ChecksumPolicy::Trust] {
                    if let Ok(repr) = TcpRepr::parse(&packet, CLIENT, SERVER, policy) {
                        prop_assert!(repr.src_port.0 != 0 && repr.dst_port.0 != 0);
                        prop_assert_eq!(repr.payload, packet.payload());
                    }
                }
            }
        }

        #[test]
        fn tcp_repr_any_option_bytes_parse_never_panics(words in proptest::collection::vec(any::<[u8; 4]>(), 0..=10)) {
            // Random bytes rarely pass new_checked; this builds a valid header around arbitrary options instead.
            let options: Vec<u8> = words.concat();
            let buf = segment_with_options(&options);
            let walked: Result<Vec<_>> = TcpOptionIter::new(&options).collect();
            match parse(&buf, CLIENT, SERVER) {
                Ok(repr) => {
                    prop_assert!(walked.is_ok());
                    prop_assert!(repr.sack_blocks.len() <= SackBlocks::CAPACITY);
                }
                Err(error) => {
                    prop_assert_eq!(error, Error::BadOption);
                    prop_assert_eq!(walked.unwrap_err(), Error::BadOption);
                }
            }
        }

        #[test]
        fn tcp_option_walk_any_bytes_terminates(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut steps = 0;
            let mut errors = 0;
            for option in TcpOptionIter::new(&bytes) {
                steps += 1;
                prop_assert!(steps <= bytes.len());
                if option.is_err() {
                    errors += 1;
                }
            }
            prop_assert!(errors <= 1);
        }
    }
}
