//! Pacing: how many frames the generator may send now to hold a rate, in small batches.
//!
//! The schedule is absolute: frame `k` is due at `k / rate` seconds after the start, so a late wake-up (a sleep
//! overshoots by tens of microseconds) is made up by the next batch instead of lowering the rate, and the
//! achieved rate converges on the configured one. Frames are released a whole batch at a time, once a batch is
//! due: one TX ring kick (a syscall in copy mode) per batch, not per frame, and sleeps long enough to leave the
//! core to whatever shares it. Batches are small (64 frames at 100,000/s is 640 us of schedule), so the flood
//! still arrives as a steady stream.
//!
//! When the link cannot keep up (the TX ring stays full, or the thread was off its core too long), the debt is
//! capped at `max_lag` frames: what is owed beyond is dropped from the schedule and counted as `behind`, rather
//! than released later as one long burst at line rate. The report then shows an achieved rate below the
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
    /// A schedule of `rate` frames per second (0 = unpaced), released `batch` at a time. The debt is capped at
    /// the larger of four batches and 5 ms of frames: a thread sharing its core is off it for a few
    /// milliseconds at a time, and that much is made up; a longer stall is not.
    pub fn new(rate: f64, batch: u64) -> Pacer {
        let batch = batch.max(1);
        let max_lag = if rate > 0.0 {
            (4 * batch).max((rate * 0.005) as u64)
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

    /// How many frames may go now, `elapsed` after the start: a batch once a whole batch is due and not yet
    /// released, else none. Falling more than `max_lag` behind moves the schedule on (see the module docs).
    pub fn allowance(&mut self, elapsed: Duration) -> u64 {
        if self.rate <= 0.0 {
            return self.batch;
        }
        let owed = self.scheduled(elapsed).saturating_sub(self.released + self.behind);
        if owed > self.max_lag {
            self.behind += owed - self.max_lag;
        }
        if owed.min(self.max_lag) >= self.batch {
            self.batch
        } else {
            0
        }
    }

    /// Records that `n` frames went out (at most what [`Pacer::allowance`] allowed).
    pub fn release(&mut self, n: u64) {
        self.released += n;
    }

    /// When, after the start, the next batch falls due; `None` when unpaced (always due).
    pub fn next_due(&self) -> Option<Duration> {
        if self.rate <= 0.0 {
            return None;
        }
        let next = (self.released + self.behind + self.batch) as f64 / self.rate;
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

    /// Sends everything allowed at `t`; returns how many frames went.
    fn drain(p: &mut Pacer, t: Duration) -> u64 {
        let mut sent = 0;
        loop {
            let n = p.allowance(t);
            if n == 0 {
                return sent;
            }
            p.release(n);
            sent += n;
        }
    }

    #[test]
    fn pacer_start_allows_nothing_until_a_whole_batch_is_due() {
        // 100k/s, batch 64: the first batch is due at 640 us.
        let mut p = Pacer::new(100_000.0, 64);
        assert_eq!(p.allowance(Duration::ZERO), 0);
        assert_eq!(p.next_due(), Some(Duration::from_micros(640)));
        assert_eq!(p.allowance(Duration::from_micros(639)), 0);
        assert_eq!(p.allowance(Duration::from_micros(640)), 64);
    }

    #[test]
    fn pacer_due_frames_are_released_in_whole_batches() {
        // 100k/s: 100 frames are due after 1 ms: one batch of 64 goes, the other 36 wait for the next.
        let mut p = Pacer::new(100_000.0, 64);
        assert_eq!(drain(&mut p, MS), 64);
        assert_eq!(p.next_due(), Some(Duration::from_micros(1280)));
        assert_eq!(drain(&mut p, Duration::from_micros(1280)), 64);
    }

    #[test]
    fn pacer_held_rate_sends_rate_times_seconds() {
        // Wake every 300 us for one second, sending what is allowed: the scheduled frames go, less at most the
        // one batch not yet complete.
        let mut p = Pacer::new(300_000.0, 64);
        let mut t = Duration::ZERO;
        while t <= Duration::from_secs(1) {
            drain(&mut p, t);
            t += Duration::from_micros(300);
        }
        assert_eq!(p.behind(), 0);
        let scheduled = (300_000.0 * (t - Duration::from_micros(300)).as_secs_f64()) as u64;
        assert!(
            p.released() <= scheduled && scheduled - p.released() < 64,
            "{}",
            p.released()
        );
    }

    #[test]
    fn pacer_late_wakeup_makes_up_the_debt_within_max_lag() {
        // 100k/s, batch 64: max_lag = max(256, 500) = 500. A 4 ms stall owes 400 frames: six batches follow
        // at once, the rest with the next.
        let mut p = Pacer::new(100_000.0, 64);
        assert_eq!(drain(&mut p, 4 * MS), 384);
        assert_eq!(p.behind(), 0);
    }

    #[test]
    fn pacer_stall_beyond_max_lag_drops_the_excess_from_the_schedule() {
        // 10 ms at 100k/s owes 1000 frames: 500 (max_lag) are dropped from the schedule, seven batches of the
        // other 500 go at once, the last 52 with the next batch.
        let mut p = Pacer::new(100_000.0, 64);
        assert_eq!(drain(&mut p, 10 * MS), 448);
        assert_eq!(p.behind(), 500);
        // The schedule goes on from there: the next batch is due when 12 more frames are, 120 us later.
        assert_eq!(p.next_due(), Some(Duration::from_micros(10_120)));
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

    #[test]
    fn pacer_low_rate_big_batch_still_releases_whole_batches() {
        // max_lag is at least four batches, so a whole batch always fits in the debt.
        let mut p = Pacer::new(1000.0, 512);
        assert_eq!(drain(&mut p, Duration::from_millis(511)), 0);
        assert_eq!(drain(&mut p, Duration::from_millis(512)), 512);
    }
}
