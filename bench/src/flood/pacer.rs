//! Pacing: how many frames the generator may send now to hold a rate, in small batches.
//!
//! The schedule is absolute: frame `k` is due at `k / rate` seconds after the start, so a late wake-up (a sleep
//! overshoots by tens of microseconds) is made up by the next batch instead of lowering the rate, and the
//! achieved rate converges on the configured one. Batches are small (one TX ring kick's worth), so the flood
//! arrives as a steady stream, not as bursts a receive ring would drop for reasons of its own.
//!
//! When the link cannot keep up (the TX ring stays full, or the thread was off its core), the debt is capped at
//! `max_lag` frames: what is owed beyond is dropped from the schedule and counted as `behind`, rather than
//! released later as one long burst at line rate. The report then shows an achieved rate below the
//! configured one, which is the truth.

use std::time::Duration;

/// The frame schedule of one flood.
#[derive(Clone, Debug)]
pub struct Pacer {
    /// Frames per second; 0 = no schedule (as fast as the link takes them).
    rate: f64,
    /// Most frames released at once.
    batch: u64,
    /// Most frames owed before the schedule moves on without them.
    max_lag: u64,
    /// Frames released so far.
    released: u64,
    /// Frames dropped from the schedule because the generator fell behind.
    behind: u64,
}

impl Pacer {
    /// A schedule of `rate` frames per second (0 = unpaced), released at most `batch` at a time. The debt is
    /// capped at the larger of four batches and 2 ms of frames.
    pub fn new(rate: f64, batch: u64) -> Pacer {
        let batch = batch.max(1);
        let max_lag = if rate > 0.0 {
            (4 * batch).max((rate * 0.002) as u64)
        } else {
            0
        };
        Pacer {
            rate,
            batch,
            max_lag,
            released: 0,
            behind: 0,
        }
    }

    /// Frames scheduled by `elapsed` since the start: floor(rate * t).
    fn scheduled(&self, elapsed: Duration) -> u64 {
        (self.rate * elapsed.as_secs_f64()) as u64
    }

    /// How many frames may go now, `elapsed` after the start: those due and not yet released, at most one
    /// batch. Falling more than `max_lag` behind moves the schedule on (see the module docs).
    pub fn allowance(&mut self, elapsed: Duration) -> u64 {
        if self.rate <= 0.0 {
            return self.batch;
        }
        let owed = self.scheduled(elapsed).saturating_sub(self.released + self.behind);
        if owed > self.max_lag {
            self.behind += owed - self.max_lag;
        }
        owed.min(self.max_lag).min(self.batch)
    }

    /// Records that `n` frames went out (at most what [`Pacer::allowance`] allowed).
    pub fn release(&mut self, n: u64) {
        self.released += n;
    }

    /// When, after the start, the next frame falls due; `None` when unpaced (always due).
    pub fn next_due(&self) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        let next = (self.released + self.behind + 1) as f64 / self.rate;
        Some(Duration::from_secs_f64(next.min(1e9)))
    }

    /// Frames dropped from the schedule because the generator could not keep up.
    pub fn behind(&self) -> u64 {
        self.behind
    }

    /// Frames released so far.
    pub fn released(&self) -> u64 {
        self.released
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn pacer_start_allows_nothing_until_the_first_frame_is_due() {
        let mut p = Pacer::new(100_000.0, 64);
        assert_eq!(p.allowance(Duration::ZERO), 0);
        assert_eq!(p.next_due(), Some(Duration::from_micros(10)));
        assert_eq!(p.allowance(Duration::from_micros(10)), 1);
    }

    #[test]
    fn pacer_due_frames_are_released_one_batch_at_a_time() {
        // 100k/s: 100 frames are due after 1 ms; a batch is 64, the rest follows at once.
        let mut p = Pacer::new(100_000.0, 64);
        assert_eq!(p.allowance(MS), 64);
        p.release(64);
        assert_eq!(p.allowance(MS), 36);
        p.release(36);
        assert_eq!(p.allowance(MS), 0);
        assert_eq!(p.next_due(), Some(Duration::from_micros(1010)));
    }

    #[test]
    fn pacer_held_rate_sends_rate_times_seconds() {
        // Wake every 300 us for one second, sending what is allowed: exactly the scheduled frames go.
        let mut p = Pacer::new(300_000.0, 64);
        let mut t = Duration::ZERO;
        while t <= Duration::from_secs(1) {
            loop {
                let n = p.allowance(t);
                if n == 0 {
                    break;
                }
                p.release(n);
            }
            t += Duration::from_micros(300);
        }
        assert_eq!(p.behind(), 0);
        let expected = (300_000.0 * (t - Duration::from_micros(300)).as_secs_f64()) as u64;
        assert_eq!(p.released(), expected);
    }

    #[test]
    fn pacer_late_wakeup_makes_up_the_debt_within_max_lag() {
        // 100k/s, batch 64: max_lag = max(256, 200) = 256. A 2 ms stall owes 200 frames: all of them follow.
        let mut p = Pacer::new(100_000.0, 64);
        let mut sent = 0;
        while let n @ 1.. = p.allowance(2 * MS) {
            p.release(n);
            sent += n;
        }
        assert_eq!((sent, p.behind()), (200, 0));
    }

    #[test]
    fn pacer_stall_beyond_max_lag_drops_the_excess_from_the_schedule() {
        // 10 ms at 100k/s owes 1000 frames; only max_lag (256) are sent, 744 are counted behind.
        let mut p = Pacer::new(100_000.0, 64);
        let mut sent = 0;
        while let n @ 1.. = p.allowance(10 * MS) {
            p.release(n);
            sent += n;
        }
        assert_eq!((sent, p.behind()), (256, 744));
        // The schedule goes on from there: the next frame is due 10 us after the stall ended.
        assert_eq!(p.next_due(), Some(Duration::from_micros(10_010)));
    }

    #[test]
    fn pacer_unpaced_always_allows_a_batch() {
        let mut p = Pacer::new(0.0, 32);
        assert_eq!(p.allowance(Duration::ZERO), 32);
        p.release(32);
        assert_eq!(p.allowance(Duration::ZERO), 32);
        assert_eq!(p.next_due(), None);
        assert_eq!(p.behind(), 0);
    }
}
