//! TEMPORARY stand-in wheel for integration testing (O(n) scan); replaced by the real wheel.
#![allow(missing_docs)]
use crate::time::Instant;
use core::time::Duration;
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TimerId(pub u32);
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    pub tick: Duration,
    pub slots_log2: u32,
    pub levels: u32,
}
impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            tick: Duration::from_millis(1),
            slots_log2: 6,
            levels: 4,
        }
    }
}
pub struct TimerWheel {
    d: Vec<Option<Instant>>,
    n: usize,
}
impl TimerWheel {
    pub fn new(capacity: usize, _c: TimerConfig, _now: Instant) -> TimerWheel {
        TimerWheel {
            d: vec![None; capacity],
            n: 0,
        }
    }
    pub fn schedule(&mut self, id: TimerId, at: Instant) {
        let s = &mut self.d[id.0 as usize];
        if s.is_none() {
            self.n += 1;
        }
        *s = Some(at);
    }
    pub fn cancel(&mut self, id: TimerId) {
        let s = &mut self.d[id.0 as usize];
        if s.is_some() {
            self.n -= 1;
        }
        *s = None;
    }
    pub fn deadline(&self, id: TimerId) -> Option<Instant> {
        self.d[id.0 as usize]
    }
    pub fn len(&self) -> usize {
        self.n
    }
    pub fn is_empty(&self) -> bool {
        self.n == 0
    }
    pub fn advance(&mut self, now: Instant, mut f: impl FnMut(TimerId)) {
        for i in 0..self.d.len() {
            if let Some(at) = self.d[i] {
                if at <= now {
                    self.d[i] = None;
                    self.n -= 1;
                    f(TimerId(i as u32));
                }
            }
        }
    }
    pub fn next_deadline(&self) -> Option<Instant> {
        self.d.iter().flatten().min().copied()
    }
}
