//! SYN cookies (RFC 4987 §3.6, on Linux's design): a listener under a SYN flood answers SYNs without keeping any
//! state, and rebuilds the connection from the third ACK alone.
//!
//! The cookie is our initial sequence number. Its top 29 bits are a keyed hash (SipHash-2-4, with a key derived
//! from the ISN secret, so engines that share the ISN secret can check each other's cookies) of the 4-tuple, the
//! peer's ISN, a coarse counter (64 s) and the MSS index; its low 3 bits are the index of the largest entry of
//! [`MSS_TABLE`] not above the peer's MSS. The ACK that completes the handshake acknowledges ISS + 1, so its
//! acknowledgment number minus one is the cookie; it is valid if the hash matches for the current counter or
//! the one before (a cookie lives 64-128 s).
//!
//! Options a SYN-ACK agreed to must survive too. With timestamps, as in Linux, the low 6 bits of our TSval carry
//! them and the peer echoes them in the ACK's TSecr: the peer's window shift (4 bits, 15 for none) and
//! SACK-permitted (1 bit); one bit is left for ECN. Without timestamps there is nowhere to carry them, so a
//! cookie SYN-ACK offers neither window scaling nor SACK, and the connection runs without (RFC 7323 §2.2 lets a
//! SYN-ACK decline window scaling; RFC 2018 lets it decline SACK).

use core::net::Ipv4Addr;

use siphasher::sip::SipHasher24;

use crate::isn::Secret;
use crate::time::Instant;
use crate::wire::{Port, SeqNum};

/// When a listener answers SYNs with cookies instead of keeping half-open state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SynCookieMode {
    /// Only when the listener's backlog, the half-open share of the connection table, or the table itself is
    /// full (Linux's `tcp_syncookies = 1`). ACKs are checked for cookies only while cookies were recently sent.
    #[default]
    Auto,
    /// Every SYN gets a cookie and no state (Linux's `tcp_syncookies = 2`).
    Always,
    /// Never: SYNs beyond the limits are dropped, counted.
    Never,
}

/// The MSS values a cookie can carry, by 3-bit index: the peer gets the largest entry not above what it
/// announced (so never more than it can take), the common Ethernet, PPPoE and tunnel values among them.
pub const MSS_TABLE: [u16; 8] = [64, 536, 1200, 1300, 1380, 1440, 1460, 8960];

/// The cookie's time counter ticks every 64 s (Linux's `COOKIE_TIMEOUT` step).
const COUNTER_PERIOD_MICROS: u64 = 64_000_000;

/// How long a cookie stays valid at most: two counter periods.
pub(crate) const LIFETIME: core::time::Duration = core::time::Duration::from_micros(2 * COUNTER_PERIOD_MICROS);

/// TSval bits that carry the options (the low six).
const TS_OPTION_BITS: u32 = 0x3f;
/// The window-shift field's value for "no window scaling".
const NO_WSCALE: u32 = 0xf;
/// The SACK-permitted bit in the TSval.
const TS_SACK_BIT: u32 = 1 << 4;

/// The keyed hash behind the cookies.
#[derive(Clone)]
pub(crate) struct SynCookies {
    key: [u8; 16],
}

impl core::fmt::Debug for SynCookies {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("SynCookies(..)")
    }
}

/// The 4-tuple as the cookie sees it, from our side.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CookieTuple {
    pub local: (Ipv4Addr, Port),
    pub remote: (Ipv4Addr, Port),
}

impl SynCookies {
    /// Cookies keyed from `isn_secret` (a domain-separated derivation: the cookie hash never equals the ISN
    /// hash, and engines that share the ISN secret agree on cookies).
    pub(crate) fn new(isn_secret: &Secret) -> SynCookies {
        let prf = SipHasher24::new_with_key(&isn_secret.to_bytes());
        let lo = prf.hash(b"synack syn cookie key 0").to_le_bytes();
        let hi = prf.hash(b"synack syn cookie key 1").to_le_bytes();
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&lo);
        key[8..].copy_from_slice(&hi);
        SynCookies { key }
    }

    /// The counter at `now`.
    fn counter(now: Instant) -> u32 {
        (now.as_micros() / COUNTER_PERIOD_MICROS) as u32
    }

    /// The hash's top 29 bits for one counter and MSS index.
    fn hash(&self, tuple: &CookieTuple, peer_isn: SeqNum, counter: u32, mss_index: u32) -> u32 {
        let (l, r) = (tuple.local.0.octets(), tuple.remote.0.octets());
        let (lp, rp) = (tuple.local.1.0.to_be_bytes(), tuple.remote.1.0.to_be_bytes());
        let mut input = [0u8; 24];
        input[0..4].copy_from_slice(&l);
        input[4..6].copy_from_slice(&lp);
        input[6..10].copy_from_slice(&r);
        input[10..12].copy_from_slice(&rp);
        input[12..16].copy_from_slice(&peer_isn.0.to_be_bytes());
        input[16..20].copy_from_slice(&counter.to_be_bytes());
        input[20..24].copy_from_slice(&mss_index.to_be_bytes());
        let hash = SipHasher24::new_with_key(&self.key).hash(&input);
        (hash as u32) & !7
    }

    /// The cookie ISS for a SYN from `tuple` with sequence number `peer_isn` announcing `peer_mss`.
    pub(crate) fn encode(&self, now: Instant, tuple: &CookieTuple, peer_isn: SeqNum, peer_mss: u16) -> SeqNum {
        let mss_index = mss_index(peer_mss);
        SeqNum(self.hash(tuple, peer_isn, Self::counter(now), mss_index) | mss_index)
    }

    /// Checks the cookie an ACK returns (`ack - 1`) against the peer's ISN (`seq - 1`): the MSS it carries if it
    /// is one we made within the last two counter periods.
    pub(crate) fn check(&self, now: Instant, tuple: &CookieTuple, seq: SeqNum, ack: SeqNum) -> Option<u16> {
        let cookie = (ack - 1).0;
        let peer_isn = seq - 1;
        let mss_index = cookie & 7;
        let counter = Self::counter(now);
        let valid = [counter, counter.wrapping_sub(1)]
            .into_iter()
            .any(|c| self.hash(tuple, peer_isn, c, mss_index) == cookie & !7);
        valid.then(|| MSS_TABLE[mss_index as usize])
    }
}

/// The index of the largest [`MSS_TABLE`] entry not above `peer_mss` (the smallest entry for anything below it).
fn mss_index(peer_mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= peer_mss).unwrap_or(0) as u32
}

/// Our TSval for a cookie SYN-ACK: `ts_now` with its low six bits replaced by the options, never above `ts_now`
/// (the connection's later TSvals come from the same clock and must not run backwards, RFC 7323 §5.4).
pub(crate) fn encode_ts(ts_now: u32, window_scale: Option<u8>, sack_permitted: bool) -> u32 {
    let shift = window_scale.map_or(NO_WSCALE, |s| u32::from(s.min(14)));
    let bits = shift | if sack_permitted { TS_SACK_BIT } else { 0 };
    let tsval = (ts_now & !TS_OPTION_BITS) | bits;
    if tsval > ts_now { tsval.wrapping_sub(64) } else { tsval }
}

/// The options the echoed TSval carries: (window shift, SACK-permitted), or `None` if the bits cannot be ours.
pub(crate) fn decode_ts(tsecr: u32) -> Option<(Option<u8>, bool)> {
    let shift = tsecr & 0xf;
    if tsecr & (1 << 5) != 0 {
        return None; // the ECN bit: never set by us
    }
    let window_scale = match shift {
        NO_WSCALE => None,
        s if s <= 14 => Some(s as u8),
        _ => return None,
    };
    Some((window_scale, tsecr & TS_SACK_BIT != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUPLE: CookieTuple = CookieTuple {
        local: (Ipv4Addr::new(198, 18, 0, 2), Port(80)),
        remote: (Ipv4Addr::new(198, 19, 4, 5), Port(40000)),
    };

    fn cookies() -> SynCookies {
        SynCookies::new(&Secret::from_seed(7))
    }

    #[test]
    fn cookie_from_same_syn_checks_with_its_mss() {
        let c = cookies();
        let now = Instant::from_millis(1_000_000);
        let isn = SeqNum(0xdead_beef);
        let iss = c.encode(now, &TUPLE, isn, 1460);
        assert_eq!(c.check(now, &TUPLE, isn + 1, iss + 1), Some(1460));
        assert_eq!(
            c.encode(now, &TUPLE, isn, 1400).0 & 7,
            4,
            "1380 is the largest entry <= 1400"
        );
        assert_eq!(
            c.check(now, &TUPLE, isn + 1, c.encode(now, &TUPLE, isn, 1400) + 1),
            Some(1380)
        );
    }

    #[test]
    fn cookie_from_previous_counter_checks_older_does_not() {
        let c = cookies();
        let sent = Instant::from_micros(10 * COUNTER_PERIOD_MICROS + 5);
        let isn = SeqNum(1);
        let iss = c.encode(sent, &TUPLE, isn, 536);
        let next_period = Instant::from_micros(11 * COUNTER_PERIOD_MICROS + 5);
        let two_later = Instant::from_micros(12 * COUNTER_PERIOD_MICROS + 5);
        assert_eq!(c.check(next_period, &TUPLE, isn + 1, iss + 1), Some(536));
        assert_eq!(c.check(two_later, &TUPLE, isn + 1, iss + 1), None);
    }

    #[test]
    fn cookie_other_tuple_isn_mss_or_key_fails() {
        let c = cookies();
        let now = Instant::from_millis(50_000);
        let isn = SeqNum(77);
        let iss = c.encode(now, &TUPLE, isn, 1460);
        let other = CookieTuple {
            remote: (TUPLE.remote.0, Port(40001)),
            ..TUPLE
        };
        assert_eq!(c.check(now, &other, isn + 1, iss + 1), None);
        assert_eq!(c.check(now, &TUPLE, isn + 2, iss + 1), None);
        // A changed MSS index is caught: the index is part of the hashed input.
        assert_eq!(c.check(now, &TUPLE, isn + 1, SeqNum((iss.0 & !7) | 1) + 1), None);
        assert_eq!(
            SynCookies::new(&Secret::from_seed(8)).check(now, &TUPLE, isn + 1, iss + 1),
            None
        );
    }

    #[test]
    fn cookie_random_acks_almost_never_check() {
        // An attacker guessing cookies: each guess has about a 2 * 2^-29 chance.
        let c = cookies();
        let now = Instant::from_millis(500_000);
        let mut x = 0x1234_5678_9abc_def0_u64;
        let mut hits = 0;
        for _ in 0..100_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            if c.check(now, &TUPLE, SeqNum(x as u32), SeqNum((x >> 32) as u32))
                .is_some()
            {
                hits += 1;
            }
        }
        assert_eq!(hits, 0);
    }

    #[test]
    fn mss_index_picks_largest_entry_not_above() {
        assert_eq!(MSS_TABLE[mss_index(1460) as usize], 1460);
        assert_eq!(MSS_TABLE[mss_index(1459) as usize], 1440);
        assert_eq!(MSS_TABLE[mss_index(9000) as usize], 8960);
        assert_eq!(MSS_TABLE[mss_index(536) as usize], 536);
        assert_eq!(MSS_TABLE[mss_index(100) as usize], 64);
        assert_eq!(MSS_TABLE[mss_index(10) as usize], 64);
    }

    #[test]
    fn ts_options_round_trip_and_never_exceed_clock() {
        for now in [0u32, 63, 64, 1000, 0xffff_ffc0, u32::MAX] {
            for ws in [None, Some(0), Some(7), Some(14), Some(20)] {
                for sack in [false, true] {
                    let ts = encode_ts(now, ws, sack);
                    assert!(now.wrapping_sub(ts) < 64, "tsval {ts} vs clock {now}");
                    assert_eq!(decode_ts(ts), Some((ws.map(|s| s.min(14)), sack)));
                }
            }
        }
        assert_eq!(decode_ts(0x20), None, "ECN bit");
        assert_eq!(decode_ts(0x0e), Some((Some(14), false)));
    }
}
