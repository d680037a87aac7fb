//! IPv4 prefixes ("198.19.0.0/16") and the one range the flood generator may ever address: 198.18.0.0/15, set
//! aside for benchmarking by RFC 2544 (and RFC 5735 §4), so a flood that escaped its namespaces would still hit
//! no one's real address.

use std::fmt;
use std::net::Ipv4Addr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// An IPv4 prefix: a base address with no host bits set and a length of 0..=32.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Cidr {
    base: Ipv4Addr,
    len: u8,
}

/// RFC 2544's benchmarking range, 198.18.0.0/15 (198.18.0.0 to 198.19.255.255): every source and target a flood
/// uses must lie inside it.
pub const BENCHMARK_NET: Cidr = Cidr {
    base: Ipv4Addr::new(198, 18, 0, 0),
    len: 15,
};

/// Why a prefix could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CidrError(pub String);

impl fmt::Display for CidrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CidrError {}

impl Cidr {
    /// The prefix `base/len`; refuses a length over 32 and host bits set (a typo as likely as not, so it is
    /// not silently masked).
    pub fn new(base: Ipv4Addr, len: u8) -> Result<Cidr, CidrError> {
        if len > 32 {
            return Err(CidrError(format!("{base}/{len}: a prefix length is at most 32")));
        }
        let c = Cidr { base, len };
        if u32::from(base) & !c.mask() != 0 {
            let masked = Ipv4Addr::from(u32::from(base) & c.mask());
            return Err(CidrError(format!(
                "{base}/{len} has host bits set (did you mean {masked}/{len}?)"
            )));
        }
        Ok(c)
    }

    fn mask(&self) -> u32 {
        if self.len == 0 { 0 } else { u32::MAX << (32 - self.len) }
    }

    /// The first address.
    pub fn first(&self) -> Ipv4Addr {
        self.base
    }

    /// The last address.
    pub fn last(&self) -> Ipv4Addr {
        Ipv4Addr::from(u32::from(self.base) | !self.mask())
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// How many addresses it holds (2^(32 - len), up to 2^32).
    pub fn size(&self) -> u64 {
        1u64 << (32 - u32::from(self.len))
    }

    /// The `index`-th address, wrapping around past the last.
    pub fn nth(&self, index: u64) -> Ipv4Addr {
        let offset = (index % self.size()) as u32;
        Ipv4Addr::from(u32::from(self.base).wrapping_add(offset))
    }

    /// Whether `addr` lies inside.
    pub fn contains(&self, addr: Ipv4Addr) -> bool {
        u32::from(addr) & self.mask() == u32::from(self.base)
    }

    /// Whether every address of `other` lies inside.
    pub fn covers(&self, other: &Cidr) -> bool {
        other.len >= self.len && self.contains(other.base)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.base, self.len)
    }
}

impl FromStr for Cidr {
    type Err = CidrError;

    /// "a.b.c.d/len", or a bare address meaning "/32".
    fn from_str(s: &str) -> Result<Cidr, CidrError> {
        let s = s.trim();
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, l),
            None => (s, "32"),
        };
        let base: Ipv4Addr = addr
            .parse()
            .map_err(|_| CidrError(format!("{s:?}: expected an IPv4 prefix such as \"198.19.0.0/16\"")))?;
        let len: u8 = len
            .parse()
            .map_err(|_| CidrError(format!("{s:?}: the prefix length must be a number in 0..=32")))?;
        Cidr::new(base, len)
    }
}

impl TryFrom<String> for Cidr {
    type Error = CidrError;
    fn try_from(s: String) -> Result<Cidr, CidrError> {
        s.parse()
    }
}

impl From<Cidr> for String {
    fn from(c: Cidr) -> String {
        c.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cidr(s: &str) -> Cidr {
        s.parse().expect(s)
    }

    #[test]
    fn cidr_parse_prefix_and_bare_address_give_their_ranges() {
        let c = cidr("198.19.0.0/16");
        assert_eq!(
            (c.first(), c.last(), c.size()),
            (Ipv4Addr::new(198, 19, 0, 0), Ipv4Addr::new(198, 19, 255, 255), 65536)
        );
        let one = cidr("198.18.7.9");
        assert_eq!(
            (one.first(), one.last(), one.size()),
            (Ipv4Addr::new(198, 18, 7, 9), Ipv4Addr::new(198, 18, 7, 9), 1)
        );
        assert_eq!(cidr("0.0.0.0/0").size(), 1 << 32);
        assert_eq!(c.to_string(), "198.19.0.0/16");
    }

    #[test]
    fn cidr_parse_host_bits_or_bad_length_is_refused() {
        let e = "198.19.0.5/16".parse::<Cidr>().unwrap_err();
        assert!(e.0.contains("did you mean 198.19.0.0/16"), "{e}");
        assert!("198.19.0.0/33".parse::<Cidr>().is_err());
        assert!("198.19.0.0/x".parse::<Cidr>().is_err());
        assert!("example.com/8".parse::<Cidr>().is_err());
    }

    #[test]
    fn benchmark_net_covers_only_198_18_and_198_19() {
        assert_eq!(BENCHMARK_NET.first(), Ipv4Addr::new(198, 18, 0, 0));
        assert_eq!(BENCHMARK_NET.last(), Ipv4Addr::new(198, 19, 255, 255));
        assert!(BENCHMARK_NET.covers(&cidr("198.19.0.0/16")));
        assert!(BENCHMARK_NET.covers(&cidr("198.18.0.0/15")));
        assert!(BENCHMARK_NET.covers(&cidr("198.19.255.255/32")));
        // Partly outside: a shorter prefix around the range, and neighbours on either side.
        assert!(!BENCHMARK_NET.covers(&cidr("198.16.0.0/14")));
        assert!(!BENCHMARK_NET.covers(&cidr("198.20.0.0/16")));
        assert!(!BENCHMARK_NET.covers(&cidr("198.17.255.255/32")));
        assert!(!BENCHMARK_NET.contains(Ipv4Addr::new(10, 0, 0, 1)));
    }

    #[test]
    fn cidr_nth_wraps_inside_the_range() {
        let c = cidr("198.19.1.0/30");
        let all: Vec<Ipv4Addr> = (0..6).map(|i| c.nth(i)).collect();
        assert_eq!(all[0], Ipv4Addr::new(198, 19, 1, 0));
        assert_eq!(all[3], Ipv4Addr::new(198, 19, 1, 3));
        assert_eq!(all[4], all[0]);
        assert!(all.iter().all(|&a| c.contains(a)));
    }
}
