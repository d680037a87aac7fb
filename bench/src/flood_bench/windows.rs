//! The measurement windows of one run, read out of the legitimate client's per-second completions.
//!
//! A run is `baseline + flood + after` whole seconds from the client's start, and the flood is started on a
//! second boundary of the client's clock, so each window is a whole number of the series' one-second buckets:
//! - before: seconds 1 .. baseline (second 0 is the client's warm-up: its first connections, cold caches);
//! - during: seconds baseline .. baseline + flood;
//! - after: the one second baseline + flood, the first after the flood stopped.

use serde::Serialize;

/// Legitimate connections per second in each window.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Windows {
    /// Before the flood.
    pub before: f64,
    /// During the flood.
    pub during: f64,
    /// The first second after it.
    pub after: f64,
}

/// The mean of `series[from..from + len]`, a missing second counting as 0.
fn mean(series: &[u64], from: usize, len: usize) -> f64 {
    if len == 0 {
        return 0.0;
    }
    let sum: u64 = (from..from + len).map(|i| series.get(i).copied().unwrap_or(0)).sum();
    sum as f64 / len as f64
}

/// The windows of a run with `baseline` seconds before a flood of `flood` seconds.
pub fn windows(series: &[u64], baseline: u32, flood: u32) -> Windows {
    let (b, f) = (baseline as usize, flood as usize);
    Windows {
        before: mean(series, 1, b.saturating_sub(1)),
        during: mean(series, b, f),
        after: mean(series, b + f, 1),
    }
}

/// `part` as a percentage of `whole` (NaN when there is no whole to compare with).
pub fn retained_pct(part: f64, whole: f64) -> f64 {
    if whole > 0.0 { 100.0 * part / whole } else { f64::NAN }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_skip_the_warm_up_second_and_split_at_the_flood() {
        // 3 s before (the first is warm-up), 3 s of flood, then the first second after.
        let series = [50, 100, 110, 10, 20, 30, 40, 90];
        let w = windows(&series, 3, 3);
        assert_eq!(w.before, 105.0);
        assert_eq!(w.during, 20.0);
        assert_eq!(w.after, 40.0);
    }

    #[test]
    fn windows_short_series_counts_missing_seconds_as_zero() {
        let w = windows(&[5, 100, 100], 3, 2);
        assert_eq!((w.before, w.during, w.after), (100.0, 0.0, 0.0));
        assert_eq!(windows(&[], 2, 1), Windows::default());
    }

    #[test]
    fn retained_pct_without_a_baseline_is_nan() {
        assert_eq!(retained_pct(25.0, 100.0), 25.0);
        assert!(retained_pct(1.0, 0.0).is_nan());
    }
}
