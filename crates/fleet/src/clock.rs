//! The one clock of a run: monotonic, in nanoseconds since the run's epoch. Publishers write it
//! into messages and observers in the same process read it, so latencies never compare clocks.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy)]
pub struct RunClock {
    epoch: Instant,
    /// Wall-clock time at the epoch, ns since the Unix epoch: only for timestamps that devices
    /// put in their payloads, never for latency.
    unix_epoch_ns: u64,
}

impl RunClock {
    pub fn start() -> Self {
        let unix_epoch_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        RunClock {
            epoch: Instant::now(),
            unix_epoch_ns,
        }
    }

    /// A run-clock reading as wall-clock time (ns since the Unix epoch).
    #[inline]
    pub fn unix_ns_at(&self, run_ns: u64) -> u64 {
        self.unix_epoch_ns + run_ns
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

    /// The instant `d` after the epoch.
    pub fn instant_at(&self, d: Duration) -> Instant {
        self.epoch + d
    }

    pub fn elapsed(&self) -> Duration {
        self.epoch.elapsed()
    }
}
