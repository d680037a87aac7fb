//! Limits on the ACKs an attacker can make the engine send (RFC 5961 §7): challenge ACKs, ACKs for
//! unacceptable segments and TIME-WAIT re-ACKs.
//!
//! A single fixed global count per second is an off-path side channel (CVE-2016-5696): an attacker who spoofs
//! segments for a guessed connection and counts the challenge ACKs on its own connection learns whether the
//! guessed one exists, because both drain the same count. So, as Linux does since that CVE, two limits apply:
//! per connection, one such ACK per `oow_ack_interval` (which also caps what any one connection can observe),
//! and globally a budget per second drawn at random (keyed, so it replays in the simulator but cannot be
//! predicted from outside) from `limit/2 .. limit*3/2`.

use core::time::Duration;

use siphasher::sip::SipHasher24;

use crate::isn::Secret;
use crate::time::Instant;

/// The global per-second budget of challenge ACKs.
#[derive(Debug, Clone)]
pub(crate) struct ChallengeBudget {
    key: [u8; 16],
    second: u64,
    left: u32,
}

impl ChallengeBudget {
    /// A budget whose per-second draws are keyed from `secret` (domain-separated from its other uses).
    pub(crate) fn new(secret: &Secret) -> ChallengeBudget {
        let prf = SipHasher24::new_with_key(&secret.to_bytes());
        let mut key = [0u8; 16];
        key[..8].copy_from_slice(&prf.hash(b"synack challenge budget 0").to_le_bytes());
        key[8..].copy_from_slice(&prf.hash(b"synack challenge budget 1").to_le_bytes());
        ChallengeBudget {
            key,
            second: u64::MAX,
            left: 0,
        }
    }

    /// This second's budget for a configured `limit`: `limit/2 + r` with `r` uniform-ish in `0..limit`.
    fn draw(&self, second: u64, limit: u32) -> u32 {
        if limit == 0 {
            return 0;
        }
        let r = SipHasher24::new_with_key(&self.key).hash(&second.to_le_bytes());
        limit / 2 + (r % u64::from(limit)) as u32
    }

    /// Takes one ACK from the budget of the second `now` lies in; `false` when it is spent.
    pub(crate) fn take(&mut self, now: Instant, limit: u32) -> bool {
        let second = now.as_micros() / 1_000_000;
        if second != self.second {
            self.second = second;
            self.left = self.draw(second, limit);
        }
        if self.left == 0 {
            return false;
        }
        self.left -= 1;
        true
    }
}

/// The per-connection limit: whether an ACK may go at `now` when the last one went at `last` (a millisecond
/// clock, 0 for never), and if so records `now`.
pub(crate) fn per_connection_allows(last: &mut u32, now: Instant, interval: Duration) -> bool {
    let now_ms = (now.as_millis() as u32).max(1);
    let interval_ms = u32::try_from(interval.as_millis()).unwrap_or(u32::MAX);
    if *last != 0 && now_ms.wrapping_sub(*last) < interval_ms {
        return false;
    }
    *last = now_ms;
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_each_second_lies_in_half_to_three_halves_and_varies() {
        let mut b = ChallengeBudget::new(&Secret::from_seed(3));
        let mut seen = std::collections::BTreeSet::new();
        for second in 0..50u64 {
            let t = Instant::from_micros(second * 1_000_000 + 10);
            let mut n = 0;
            while b.take(t, 1000) {
                n += 1;
                assert!(n <= 1500, "budget unbounded");
            }
            assert!((500..1500).contains(&n), "second {second}: {n}");
            seen.insert(n);
        }
        assert!(
            seen.len() > 40,
            "the budget should vary from second to second: {seen:?}"
        );
    }

    #[test]
    fn budget_zero_limit_allows_nothing() {
        let mut b = ChallengeBudget::new(&Secret::from_seed(3));
        assert!(!b.take(Instant::from_millis(5), 0));
    }

    #[test]
    fn per_connection_one_per_interval() {
        let mut last = 0;
        let interval = Duration::from_millis(500);
        assert!(per_connection_allows(&mut last, Instant::from_millis(1000), interval));
        assert!(!per_connection_allows(&mut last, Instant::from_millis(1001), interval));
        assert!(!per_connection_allows(&mut last, Instant::from_millis(1499), interval));
        assert!(per_connection_allows(&mut last, Instant::from_millis(1500), interval));
        // At time zero the clock reads as 1 ms, so "never" stays distinguishable.
        let mut fresh = 0;
        assert!(per_connection_allows(&mut fresh, Instant::from_millis(0), interval));
        assert!(!per_connection_allows(&mut fresh, Instant::from_millis(0), interval));
    }
}
