//! The one clock of a run: monotonic, in nanoseconds since the run's epoch. Publishers write it
//! into messages and observers in the same process read it, so latencies never compare clocks.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
}

impl RunClock {
    pub fn start() -> Self {
        RunClock {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    #[inline]
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    #[inline]
    pub fn ns_at(&self, t: Instant) -> u64 {
        t.saturating_duration_since(self.epoch).as_nanos() as u64
    }

    pub fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }
}
