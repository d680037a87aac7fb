//! Round-trip time estimation and the retransmission timeout, RFC 6298.

use core::time::Duration;

/// SRTT, RTTVAR and RTO as RFC 6298 §2 defines them, in microseconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RttEstimator {
    srtt: u32,
    rttvar: u32,
    rto: u32,
    has_sample: bool,
    /// Consecutive timeouts: the RTO is doubled this many times (§5.5), up to the maximum.
    backoff: u8,
}

/// Clock granularity G of RFC 6298 §2: the engine's timer tick.
const GRANULARITY_US: u32 = 1000;

/// Whole microseconds, saturating at `u32::MAX` (about 71 minutes). In 64-bit arithmetic: `as_micros` goes
/// through `u128`, and this runs three times per RTT sample.
#[inline]
fn micros(d: Duration) -> u32 {
    let secs = d.as_secs();
    if secs > u64::from(u32::MAX) / 1_000_000 {
        return u32::MAX;
    }
    u32::try_from(secs * 1_000_000 + u64::from(d.subsec_micros())).unwrap_or(u32::MAX)
}

/// RFC 6298's lower and upper RTO bounds (§2.4, §2.5) in microseconds, converted once from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RtoBounds {
    min: u32,
    max: u32,
}

impl RtoBounds {
    pub(crate) fn new(min: Duration, max: Duration) -> RtoBounds {
        RtoBounds {
            min: micros(min),
            max: micros(max),
        }
    }

    /// The lower bound in microseconds: no RTO the estimator computes is shorter.
    #[inline]
    pub(crate) fn min_micros(self) -> u64 {
        u64::from(self.min)
    }
}

impl RttEstimator {
    /// Before any sample, RTO is the initial value (§2.1: 1 s).
    pub(crate) fn new(initial: Duration) -> RttEstimator {
        RttEstimator {
            srtt: 0,
            rttvar: 0,
            rto: micros(initial),
            has_sample: false,
            backoff: 0,
        }
    }

    /// Takes one RTT measurement R (§2.2, §2.3), in whole microseconds (saturated at `u32::MAX`): the engine
    /// measures in microseconds or milliseconds already, so no `Duration` round trip on every ACK. Callers follow
    /// Karn's rule (RFC 9293 MUST-18): no samples from retransmitted segments, unless timestamps disambiguate them.
    pub(crate) fn sample(&mut self, rtt_us: u32, bounds: RtoBounds) {
        let r = rtt_us.max(1);
        if self.has_sample {
            // RTTVAR <- 3/4 RTTVAR + 1/4 |SRTT - R'|; SRTT <- 7/8 SRTT + 1/8 R'
            let delta = self.srtt.abs_diff(r);
            self.rttvar = (3 * (self.rttvar / 4)).saturating_add(delta / 4);
            self.srtt = (7 * (self.srtt / 8)).saturating_add(r / 8);
        } else {
            self.srtt = r;
            self.rttvar = r / 2;
            self.has_sample = true;
        }
        let rto = self
            .srtt
            .saturating_add(GRANULARITY_US.max(self.rttvar.saturating_mul(4)));
        self.rto = rto.max(bounds.min).min(bounds.max);
        self.backoff = 0;
    }

    /// The current RTO in microseconds (deadlines are microseconds too), with exponential backoff applied
    /// (§5.5), bounded by the maximum.
    #[inline]
    pub(crate) fn rto(&self, bounds: RtoBounds) -> u64 {
        let backed = u64::from(self.rto) << self.backoff.min(32);
        backed.min(u64::from(bounds.max))
    }

    /// A retransmission timeout fired: back off.
    pub(crate) fn on_timeout(&mut self) {
        self.backoff = self.backoff.saturating_add(1);
    }

    /// The smoothed RTT, once there is a sample.
    #[cfg(test)]
    pub(crate) fn srtt(&self) -> Option<Duration> {
        self.has_sample.then(|| Duration::from_micros(u64::from(self.srtt)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: Duration = Duration::from_millis(200);
    const MAX: Duration = Duration::from_secs(60);

    fn bounds(min: Duration, max: Duration) -> RtoBounds {
        RtoBounds::new(min, max)
    }

    #[test]
    fn micros_matches_as_micros_saturated() {
        for d in [
            Duration::ZERO,
            Duration::from_nanos(999),
            Duration::from_micros(1_500_123),
            Duration::new(4294, 967_295_999),
            Duration::new(4294, 967_296_000),
            Duration::new(4295, 0),
            Duration::MAX,
        ] {
            assert_eq!(micros(d), u32::try_from(d.as_micros()).unwrap_or(u32::MAX), "{d:?}");
        }
    }

    #[test]
    fn rtt_no_sample_uses_initial_rto() {
        let rtt = RttEstimator::new(Duration::from_secs(1));
        assert_eq!(Duration::from_micros(rtt.rto(bounds(MIN, MAX))), Duration::from_secs(1));
        assert_eq!(rtt.srtt(), None);
    }

    #[test]
    fn rtt_first_sample_sets_srtt_and_rttvar_rfc6298_2_2() {
        let mut rtt = RttEstimator::new(Duration::from_secs(1));
        rtt.sample(micros(Duration::from_millis(100)), bounds(Duration::ZERO, MAX));
        // SRTT = 100 ms, RTTVAR = 50 ms, RTO = SRTT + 4*RTTVAR = 300 ms.
        assert_eq!(rtt.srtt(), Some(Duration::from_millis(100)));
        assert_eq!(
            Duration::from_micros(rtt.rto(bounds(MIN, MAX))),
            Duration::from_millis(300)
        );
    }

    #[test]
    fn rtt_next_sample_smooths_rfc6298_2_3() {
        let mut rtt = RttEstimator::new(Duration::from_secs(1));
        rtt.sample(micros(Duration::from_millis(100)), bounds(Duration::ZERO, MAX));
        rtt.sample(micros(Duration::from_millis(200)), bounds(Duration::ZERO, MAX));
        // RTTVAR = 3/4*50 + 1/4*100 = 62.5 ms; SRTT = 7/8*100 + 1/8*200 = 112.5 ms; RTO = 112.5 + 250 = 362.5 ms.
        assert_eq!(rtt.srtt(), Some(Duration::from_micros(112_500)));
        assert_eq!(
            Duration::from_micros(rtt.rto(bounds(MIN, MAX))),
            Duration::from_micros(362_500)
        );
    }

    #[test]
    fn rtt_small_sample_is_clamped_to_minimum() {
        let mut rtt = RttEstimator::new(Duration::from_secs(1));
        rtt.sample(micros(Duration::from_micros(50)), bounds(Duration::ZERO, MAX));
        assert_eq!(
            Duration::from_micros(rtt.rto(bounds(MIN, MAX))),
            Duration::from_micros(50 + 1000)
        );
        rtt.sample(micros(Duration::from_micros(50)), bounds(MIN, MAX));
        assert_eq!(Duration::from_micros(rtt.rto(bounds(MIN, MAX))), MIN);
    }

    #[test]
    fn rtt_timeout_doubles_up_to_maximum_rfc6298_5_5() {
        let mut rtt = RttEstimator::new(Duration::from_secs(1));
        rtt.on_timeout();
        assert_eq!(Duration::from_micros(rtt.rto(bounds(MIN, MAX))), Duration::from_secs(2));
        for _ in 0..10 {
            rtt.on_timeout();
        }
        assert_eq!(Duration::from_micros(rtt.rto(bounds(MIN, MAX))), MAX);
        rtt.sample(micros(Duration::from_millis(100)), bounds(MIN, MAX));
        assert_eq!(
            Duration::from_micros(rtt.rto(bounds(MIN, MAX))),
            Duration::from_millis(300)
        );
    }
}
