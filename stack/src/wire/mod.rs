//! Zero-copy wire formats.
//!
//! Each format has a view, `Packet<T: AsRef<[u8]>>` (or `Frame` for Ethernet), whose `new_checked` validates
//! lengths and header fields once, after which no getter can panic; setters (on `T: AsMut<[u8]>`) build a header
//! in place. Beside the view sits a plain `Repr` with `parse`, `emit` and `buffer_len`. Nothing here knows of
//! sockets or connections.

pub mod arp;
pub mod checksum;
pub mod ethernet;
pub mod icmpv4;
pub mod ipv4;
mod seq;
pub mod tcp;
pub mod tcp_writer;

pub use seq::SeqNum;

/// Why a frame could not be read (or a `Repr` not written).
///
/// Each variant maps to one drop counter in the engine, so they are kept distinct rather than folded into one
/// "malformed".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum Error {
    /// The buffer is shorter than the header, or than a length field claims.
    #[error("buffer too short for the header or for a length it declares")]
    Truncated,
    /// A version, header-length or data-offset field holds an impossible value.
    #[error("header field out of range")]
    Malformed,
    /// The checksum does not verify.
    #[error("checksum mismatch")]
    Checksum,
    /// An option list is malformed (zero or overrunning length, wrong fixed length for its kind).
    #[error("malformed option list")]
    BadOption,
    /// An IPv4 fragment (MF set or offset non-zero): synack does not reassemble; the caller counts and drops it.
    #[error("IPv4 fragment")]
    Fragment,
    /// An 802.1Q-tagged Ethernet frame; reported so the caller can count and drop it.
    #[error("802.1Q VLAN-tagged frame")]
    VlanTagged,
    /// A well-formed header of a kind synack does not handle (ARP for another protocol, an ICMP type, ...).
    #[error("unsupported kind of packet")]
    Unsupported,
}

/// Result of parsing or emitting wire data.
pub type Result<T> = core::result::Result<T, Error>;

/// A TCP (or UDP) port number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Port(pub u16);

impl core::fmt::Display for Port {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.fmt(f)
    }
}

/// The IP protocol numbers synack meets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IpProtocol {
    /// ICMP for IPv4 (1).
    Icmp,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// Any other protocol number.
    Unknown(u8),
}

impl From<u8> for IpProtocol {
    fn from(value: u8) -> Self {
        match value {
            1 => IpProtocol::Icmp,
            6 => IpProtocol::Tcp,
            17 => IpProtocol::Udp,
            other => IpProtocol::Unknown(other),
        }
    }
}

impl From<IpProtocol> for u8 {
    fn from(value: IpProtocol) -> Self {
        match value {
            IpProtocol::Icmp => 1,
            IpProtocol::Tcp => 6,
            IpProtocol::Udp => 17,
            IpProtocol::Unknown(other) => other,
        }
    }
}

/// Whether `parse` verifies checksums.
///
/// `Verify` is the default and what the engine uses for frames from the wire; `Trust` is for frames whose checksum
/// a NIC has already checked (or that the stack built itself), so they are not summed twice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ChecksumPolicy {
    /// Verify every checksum; a mismatch is `Error::Checksum`.
    #[default]
    Verify,
    /// Skip verification.
    Trust,
}
