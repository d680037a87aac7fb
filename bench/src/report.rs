//! What the programs print: a live line every second and a final report (text or JSON), the same for synack
//! and for the kernel so the two can be compared field by field.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::config::StackKind;

/// Latencies in nanoseconds, 3 significant digits, up to an hour.
#[derive(Clone, Debug)]
pub struct Latency {
    hist: Histogram<u64>,
}

impl Default for Latency {
    fn default() -> Self {
        Latency::new()
    }
}

impl Latency {
    /// An empty histogram.
    pub fn new() -> Latency {
        // Bounds are constants that hdrhistogram accepts; a failure would be a bug in this line.
        let hist = Histogram::new_with_bounds(1, 3_600_000_000_000, 3).unwrap_or_else(|_| unreachable!());
        Latency { hist }
    }

    /// Records one latency (clamped into the histogram's range).
    pub fn record(&mut self, d: Duration) {
        let ns = u64::try_from(d.as_nanos())
            .unwrap_or(u64::MAX)
            .clamp(1, 3_600_000_000_000);
        let _ = self.hist.record(ns);
    }

    /// Percentiles in microseconds.
    pub fn summary(&self) -> LatencySummary {
        let us = |ns: u64| ns as f64 / 1000.0;
        LatencySummary {
            count: self.hist.len(),
            mean_us: self.hist.mean() / 1000.0,
            p50_us: us(self.hist.value_at_quantile(0.5)),
            p90_us: us(self.hist.value_at_quantile(0.9)),
            p99_us: us(self.hist.value_at_quantile(0.99)),
            p999_us: us(self.hist.value_at_quantile(0.999)),
            max_us: us(self.hist.max()),
        }
    }
}

/// Percentiles of one latency, in microseconds.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct LatencySummary {
    /// Samples.
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest.
    pub max_us: f64,
}

/// The latencies a program measures.
#[derive(Clone, Debug, Default)]
pub struct Latencies {
    /// Start (scheduled, for the open loop) to established.
    pub connect: Latency,
    /// Start to the first byte of the first response.
    pub first_byte: Latency,
    /// Start to the end of the connection's life (see [`Report::lifecycle`]).
    pub lifecycle: Latency,
}

/// The running totals a program keeps; the live line prints their per-second deltas.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Connections started (connect called / accepted).
    pub started: u64,
    /// Connections that completed their whole exchange and closed normally.
    pub completed: u64,
    /// Connections that failed (refused, reset, timed out, short response, no port).
    pub failed: u64,
    /// Connections open now.
    pub open: u64,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Resets sent or received.
    pub resets: u64,
    /// Frames or segments dropped (any reason).
    pub drops: u64,
}

/// Connections completed in each second since a program's start: the rate over time, so a harness can read
/// the rate of any window (before, during and after a flood) out of one run. Sized up front for the run;
/// recording is an index and an add.
#[derive(Clone, Debug, Default)]
pub struct PerSecond {
    counts: Vec<u64>,
}

impl PerSecond {
    /// Longest series kept (a day); completions later than that are not recorded.
    const MAX_SECS: usize = 86_400;

    /// An empty series with room for `secs` seconds.
    pub fn with_capacity(secs: f64) -> PerSecond {
        let n = if secs.is_finite() && secs > 0.0 {
            secs.ceil() as usize
        } else {
            0
        };
        PerSecond {
            counts: Vec::with_capacity(n.min(Self::MAX_SECS)),
        }
    }

    /// Counts one completion `since_start` after the start.
    pub fn record(&mut self, since_start: Duration) {
        let i = usize::try_from(since_start.as_secs()).unwrap_or(usize::MAX);
        if i >= Self::MAX_SECS {
            return;
        }
        if self.counts.len() <= i {
            self.counts.resize(i + 1, 0);
        }
        self.counts[i] += 1;
    }

    /// The counts of every second up to `run` after the start (the last one partial), zeros included.
    pub fn counts(&self, run: Duration) -> Vec<u64> {
        let secs = usize::try_from(run.as_secs())
            .unwrap_or(usize::MAX)
            .min(Self::MAX_SECS - 1)
            + 1;
        let mut c = self.counts.clone();
        if c.len() < secs {
            c.resize(secs, 0);
        }
        c
    }
}

/// Prints a line every second to stderr.
#[derive(Debug)]
pub struct LiveLine {
    label: String,
    enabled: bool,
    start: std::time::Instant,
    next: Duration,
    last: Totals,
}

impl LiveLine {
    /// A printer labelled `label` (e.g. "loadgen synack").
    pub fn new(label: impl Into<String>, enabled: bool) -> LiveLine {
        LiveLine {
            label: label.into(),
            enabled,
            start: std::time::Instant::now(),
            next: Duration::from_secs(1),
            last: Totals::default(),
        }
    }

    /// Whether a line is due (cheap: lets callers skip gathering totals on most turns).
    pub fn due(&self) -> bool {
        self.enabled && self.start.elapsed() >= self.next
    }

    /// Prints a line if a second has passed since the last.
    pub fn tick(&mut self, totals: Totals) {
        if !self.enabled {
            return;
        }
        let elapsed = self.start.elapsed();
        if elapsed < self.next {
            return;
        }
        self.next = elapsed + Duration::from_secs(1);
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let _ = writeln!(
            std::io::stderr(),
            "[{} {:>5.1}s] conn/s {:>8}  open {:>6}  failed/s {:>5}  retx/s {:>5}  rst/s {:>5}  drops/s {:>5}",
            self.label,
            elapsed.as_secs_f64(),
            d(totals.completed, self.last.completed),
            totals.open,
            d(totals.failed, self.last.failed),
            d(totals.retransmits, self.last.retransmits),
            d(totals.resets, self.last.resets),
            d(totals.drops, self.last.drops),
        );
        self.last = totals;
    }
}

/// A program's final report.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// "loadgen" or "responder".
    pub program: &'static str,
    /// synack or kernel.
    pub stack: StackKind,
    /// Seconds from start to the last completed connection (the rate's denominator).
    pub elapsed_secs: f64,
    /// Connections started.
    pub started: u64,
    /// Connections that completed their whole exchange and closed normally.
    pub completed: u64,
    /// Connections that failed, in all.
    pub failed: u64,
    /// Failures by reason.
    pub failures: BTreeMap<String, u64>,
    /// Requests answered (responder) or responses received (loadgen).
    pub requests: u64,
    /// Completed connections per second.
    pub rate: f64,
    /// What "lifecycle" measures.
    pub lifecycle: &'static str,
    /// Start to established.
    pub connect: LatencySummary,
    /// Start to first response byte.
    pub first_byte: LatencySummary,
    /// Start to the end of the life cycle.
    pub lifecycle_latency: LatencySummary,
    /// Segments retransmitted.
    pub retransmits: u64,
    /// Resets sent or received.
    pub resets: u64,
    /// Drops of any kind.
    pub drops: u64,
    /// Frames received and sent (synack: by the engine; kernel: TCP segments in and out of the namespace).
    pub frames: u64,
    /// The engine's counters (synack) or the namespace's TCP MIB counters (kernel), non-zero ones only.
    pub counters: BTreeMap<String, u64>,
    /// The device's counters (synack over AF_XDP or memory).
    pub device: BTreeMap<String, u64>,
    /// Connections completed in each second since the start (load generator; empty for the responder).
    pub per_second: Vec<u64>,
}

impl Report {
    /// An empty report.
    pub fn new(program: &'static str, stack: StackKind) -> Report {
        Report {
            program,
            stack,
            elapsed_secs: 0.0,
            started: 0,
            completed: 0,
            failed: 0,
            failures: BTreeMap::new(),
            requests: 0,
            rate: 0.0,
            lifecycle: "",
            connect: LatencySummary::default(),
            first_byte: LatencySummary::default(),
            lifecycle_latency: LatencySummary::default(),
            retransmits: 0,
            resets: 0,
            drops: 0,
            frames: 0,
            counters: BTreeMap::new(),
            device: BTreeMap::new(),
            per_second: Vec::new(),
        }
    }

    /// Fills the totals, rate and latencies.
    pub fn fill(&mut self, totals: &Totals, elapsed: Duration, lat: &Latencies) {
        self.started = totals.started;
        self.completed = totals.completed;
        self.failed = totals.failed;
        self.retransmits = totals.retransmits;
        self.resets = totals.resets;
        self.drops = totals.drops;
        self.elapsed_secs = elapsed.as_secs_f64();
        self.rate = if self.elapsed_secs > 0.0 {
            self.completed as f64 / self.elapsed_secs
        } else {
            0.0
        };
        self.connect = lat.connect.summary();
        self.first_byte = lat.first_byte.summary();
        self.lifecycle_latency = lat.lifecycle.summary();
    }

    /// The report as text for people.
    pub fn text(&self) -> String {
        let mut s = String::new();
        let stack = match self.stack {
            StackKind::Synack => "synack",
            StackKind::Kernel => "kernel",
        };
        s += &format!(
            "{} ({stack}): {} completed, {} failed of {} started in {:.2} s: {:.0} conn/s; {} requests\n",
            self.program, self.completed, self.failed, self.started, self.elapsed_secs, self.rate, self.requests
        );
        if !self.failures.is_empty() {
            s += &format!("  failures: {:?}\n", self.failures);
        }
        s += &format!(
            "  retransmits {}  resets {}  drops {}  frames {}\n",
            self.retransmits, self.resets, self.drops, self.frames
        );
        for (name, l) in [
            ("connect", &self.connect),
            ("first byte", &self.first_byte),
            ("lifecycle", &self.lifecycle_latency),
        ] {
            if l.count == 0 {
                continue;
            }
            s += &format!(
                "  {name:<10} us: p50 {:.1}  p90 {:.1}  p99 {:.1}  p99.9 {:.1}  max {:.1}  (n={})\n",
                l.p50_us, l.p90_us, l.p99_us, l.p999_us, l.max_us, l.count
            );
        }
        if !self.lifecycle.is_empty() {
            s += &format!("  (lifecycle = {})\n", self.lifecycle);
        }
        if !self.counters.is_empty() {
            let c: Vec<String> = self.counters.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s += &format!("  counters: {}\n", c.join(" "));
        }
        if !self.device.is_empty() {
            let c: Vec<String> = self.device.iter().map(|(k, v)| format!("{k}={v}")).collect();
            s += &format!("  device: {}\n", c.join(" "));
        }
        if !self.per_second.is_empty() {
            let c: Vec<String> = self.per_second.iter().map(u64::to_string).collect();
            s += &format!("  completed per second: {}\n", c.join(" "));
        }
        s
    }

    /// Writes the report as JSON to `path`.
    pub fn write_json(&self, path: &std::path::Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(path, text + "\n")
    }
}

/// Adds one failure reason.
pub fn count_failure(failures: &mut BTreeMap<String, u64>, reason: &str) {
    *failures.entry(reason.to_owned()).or_insert(0) += 1;
}

/// The whole machine's busy CPU time (user+nice+system+irq+softirq, all cores) from /proc/stat: on veth the
/// receiver's protocol work runs in softirq on the sender's core, so per-process CPU time would mislead.
pub fn machine_busy() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    // user nice system idle iowait irq softirq steal
    let busy = v.first()? + v.get(1)? + v.get(2)? + v.get(5)? + v.get(6)?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = if hz > 0 { hz as u64 } else { 100 };
    Some(Duration::from_nanos(busy.saturating_mul(1_000_000_000 / hz)))
}

fn clock_tick() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as u64 } else { 100 }
}

/// This process's CPU time (user+sys, all threads) plus the whole machine's softirq time: a second view of the
/// cost that leaves out other processes sharing the machine, while still counting the receive work veth does
/// in softirq.
pub fn own_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let rest = stat.rsplit_once(") ")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let line = text.lines().find(|l| l.starts_with("cpu "))?;
    let softirq: u64 = line.split_whitespace().nth(7)?.parse().ok()?;
    Some(Duration::from_nanos(
        (ticks + softirq).saturating_mul(1_000_000_000 / clock_tick()),
    ))
}
