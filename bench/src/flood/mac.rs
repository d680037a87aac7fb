//! The target's MAC address as configured ("02:53:00:00:00:02"). The generator never resolves it (a flood that
//! ARPs for its target would announce itself and wait on an answer); the bench harness knows it from the veth.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A unicast Ethernet address, read from and written as "aa:bb:cc:dd:ee:ff".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Mac(pub [u8; 6]);

impl Mac {
    /// Whether the group bit is clear: a flood to a broadcast or multicast address would reach every station
    /// on the segment, not the one target, so such an address is refused.
    pub fn is_unicast(&self) -> bool {
        self.0[0] & 1 == 0 && self.0 != [0; 6]
    }
}

impl fmt::Display for Mac {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Mac, String> {
        let bad = || format!("{s:?}: expected a MAC address such as \"02:53:00:00:00:02\"");
        let mut out = [0u8; 6];
        let mut parts = s.trim().split([':', '-']);
        for byte in &mut out {
            let part = parts.next().ok_or_else(bad)?;
            if part.len() != 2 {
                return Err(bad());
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| bad())?;
        }
        if parts.next().is_some() {
            return Err(bad());
        }
        Ok(Mac(out))
    }
}

impl TryFrom<String> for Mac {
    type Error = String;
    fn try_from(s: String) -> Result<Mac, String> {
        s.parse()
    }
}

impl From<Mac> for String {
    fn from(m: Mac) -> String {
        m.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_parse_round_trips_and_checks_unicast() {
        let m: Mac = "02:53:00:0a:FF:02".parse().unwrap();
        assert_eq!(m.0, [0x02, 0x53, 0, 0x0a, 0xff, 0x02]);
        assert_eq!(m.to_string(), "02:53:00:0a:ff:02");
        assert!(m.is_unicast());
        assert!(!"ff:ff:ff:ff:ff:ff".parse::<Mac>().unwrap().is_unicast());
        assert!(!"01:00:5e:00:00:01".parse::<Mac>().unwrap().is_unicast());
        assert!(!"00:00:00:00:00:00".parse::<Mac>().unwrap().is_unicast());
    }

    #[test]
    fn mac_parse_malformed_is_refused() {
        for s in [
            "02:53:00:00:00",
            "02:53:00:00:00:02:03",
            "2:53:00:00:00:02",
            "zz:53:00:00:00:02",
            "",
        ] {
            assert!(s.parse::<Mac>().is_err(), "{s}");
        }
    }
}
