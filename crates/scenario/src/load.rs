//! Load shapes: the scenario's phases, each scaling every group's publish rate (constant or
//! ramping linearly) and setting how fast devices connect; and the arrival schedule a device
//! follows through them (fixed gaps or Poisson), drawn from the scenario's seed.

use std::time::Duration;

use serde::Serialize;

use crate::durations::ser_duration;

/// One load phase, resolved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LoadPhase {
    pub name: String,
    /// When the phase starts, from the start of the connect ramp.
    #[serde(serialize_with = "ser_duration")]
    pub start: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    /// Multiple of each group's rate at the start of the phase.
    pub rate: f64,
    /// Multiple at the end of the phase (linear in between).
    pub rate_end: f64,
    /// Connections per second during the phase, over the fleet (None: all remaining at once).
    pub connect_rate: Option<f64>,
}

impl LoadPhase {
    pub fn end(&self) -> Duration {
        self.start + self.duration
    }
}

/// How a device spaces its messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arrivals {
    /// Evenly spaced: one message every 1 / rate.
    Fixed,
    /// A Poisson process: exponential gaps with mean 1 / rate.
    Poisson,
}

/// The phases of a run; a scenario without phases has one implicit phase at rate 1.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadShape {
    phases: Vec<LoadPhase>,
    /// The scenario declared its phases (figures are then kept per phase).
    declared: bool,
}

impl LoadShape {
    /// A constant load for `duration`.
    pub fn constant(duration: Duration) -> LoadShape {
        LoadShape {
            phases: vec![LoadPhase {
                name: "run".into(),
                start: Duration::ZERO,
                duration,
                rate: 1.0,
                rate_end: 1.0,
                connect_rate: None,
            }],
            declared: false,
        }
    }

    pub fn new(phases: Vec<LoadPhase>) -> LoadShape {
        LoadShape {
            phases,
            declared: true,
        }
    }

    /// Whether the scenario declared phases, so that figures are kept per phase.
    pub fn is_declared(&self) -> bool {
        self.declared
    }

    pub fn phases(&self) -> &[LoadPhase] {
        &self.phases
    }

    /// Index of the phase `t` (from the ramp start) falls in; the last phase for times past the
    /// end.
    pub fn phase_at(&self, t: Duration) -> usize {
        self.phases
            .partition_point(|p| p.end() <= t)
            .min(self.phases.len().saturating_sub(1))
    }

    /// Whether the phases set connect rates: connections then follow them over the whole fleet
    /// (see [`connect_at`](Self::connect_at)) instead of each group's own `connect_rate`.
    pub fn paces_connections(&self) -> bool {
        self.phases.iter().any(|p| p.connect_rate.is_some())
    }

    /// When the `n`-th device of the fleet (0-based, in group order) connects, from the ramp
    /// start, when the phases pace connections.
    pub fn connect_at(&self, n: u32) -> Duration {
        // Walk the phases: each connects `rate * duration` devices; one without a rate connects
        // everyone left at its start.
        let mut left = f64::from(n);
        for p in &self.phases {
            match p.connect_rate {
                None => return p.start,
                Some(r) => {
                    let here = r * p.duration.as_secs_f64();
                    if left < here {
                        return p.start + seconds(left / r);
                    }
                    left -= here;
                }
            }
        }
        // Past the last phase: at the shape's end (nothing is published by then).
        self.end()
    }
}

/// A device's arrival times, from the ramp start: deterministic for a seed.
#[derive(Debug, Clone)]
pub struct Schedule {
    rate: f64,
    arrivals: Arrivals,
    rng: SplitMix64,
    next: Option<Duration>,
    /// Work (seconds at rate multiple 1) before the first arrival, consumed on the first call.
    first: Option<f64>,
}

impl Schedule {
    /// The schedule of a device publishing `rate` messages per second (before phase scaling),
    /// whose first message is due after `offset` (at rate multiple 1; phases stretch it).
    pub fn new(rate: f64, arrivals: Arrivals, seed: u64, offset: Duration) -> Schedule {
        Schedule {
            rate,
            arrivals,
            rng: SplitMix64(seed),
            next: None,
            first: Some(offset.as_secs_f64()),
        }
    }

    /// The next due time, or None once the shape is over.
    pub fn next_due(&mut self, shape: &LoadShape) -> Option<Duration> {
        if let Some(work) = self.first.take() {
            self.next = shape.advance(Duration::ZERO, work);
        }
        let t = self.next?;
        let units = match self.arrivals {
            Arrivals::Fixed => 1.0,
            Arrivals::Poisson => -(1.0 - self.rng.unit()).ln(),
        };
        // `advance` only returns times inside the shape.
        self.next = shape.advance(t, units / self.rate);
        Some(t)
    }
}

impl LoadShape {
    /// When the load shape ends.
    pub fn end(&self) -> Duration {
        self.phases.last().map_or(Duration::ZERO, LoadPhase::end)
    }

    /// The time after `t` by which the rate multiple, integrated, has added up to `work`
    /// (seconds at rate 1): the next arrival of a process that needs `work` between arrivals.
    /// Exact for linear ramps, so a ramp from zero starts gently instead of waiting out a huge
    /// first gap. None when the shape ends first.
    fn advance(&self, t: Duration, mut work: f64) -> Option<Duration> {
        // A zero gap (a first message at the ramp start) still has to land where the rate is
        // above zero.
        work = work.max(1e-9);
        let mut i = self.phase_at(t);
        let mut at = t;
        while let Some(p) = self.phases.get(i) {
            let d = p.duration.as_secs_f64();
            let x = at.saturating_sub(p.start).as_secs_f64().min(d);
            let a = p.rate;
            let k = if d > 0.0 {
                (p.rate_end - p.rate) / d
            } else {
                0.0
            };
            // Integral of the multiple from the phase start to x.
            let integral = |x: f64| a * x + k * x * x / 2.0;
            let left = integral(d) - integral(x);
            // Strictly inside: an arrival that would land on the phase's end belongs to the
            // next phase where the rate is above zero.
            if work < left {
                let c = integral(x) + work;
                let x_new = if k.abs() < 1e-12 {
                    c / a
                } else {
                    (-a + (a * a + 2.0 * k * c).max(0.0).sqrt()) / k
                };
                let due = p.start + seconds(x_new.clamp(x, d));
                if due < p.end() {
                    return Some(due);
                }
                // Rounded onto the end: it belongs to the next phase with a rate above zero.
                work = 1e-9;
            } else {
                work -= left;
            }
            i += 1;
            at = p.end();
        }
        None
    }
}

/// A small, portable, seedable generator: the same seed gives the same numbers on any machine.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.unit();
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// Seconds as a duration, saturating: validation keeps every figure in range, and no value
/// that slips past it may panic.
pub fn seconds(x: f64) -> Duration {
    Duration::try_from_secs_f64(x.max(0.0)).unwrap_or(Duration::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(name: &str, start: u64, len: u64, rate: f64, rate_end: f64) -> LoadPhase {
        LoadPhase {
            name: name.into(),
            start: Duration::from_secs(start),
            duration: Duration::from_secs(len),
            rate,
            rate_end,
            connect_rate: None,
        }
    }

    fn count(shape: &LoadShape, rate: f64, arrivals: Arrivals, from: u64, to: u64) -> usize {
        let mut s = Schedule::new(rate, arrivals, 42, Duration::ZERO);
        let mut n = 0;
        while let Some(t) = s.next_due(shape) {
            if t >= Duration::from_secs(from) && t < Duration::from_secs(to) {
                n += 1;
            }
        }
        n
    }

    #[test]
    fn phases_scale_the_rate_and_a_ramp_averages_its_ends() {
        let shape = LoadShape::new(vec![
            phase("ramp", 0, 10, 0.0, 1.0),
            phase("steady", 10, 10, 1.0, 1.0),
            phase("spike", 20, 5, 4.0, 4.0),
            phase("pause", 25, 5, 0.0, 0.0),
        ]);
        // 10 msg/s: the ramp averages 0.5x, steady 1x, spike 4x, pause nothing.
        let ramp = count(&shape, 10.0, Arrivals::Fixed, 0, 10);
        assert!((45..=52).contains(&ramp), "ramp {ramp}");
        // A message may fall either side of a boundary (floating point): one either way.
        let steady = count(&shape, 10.0, Arrivals::Fixed, 10, 20);
        assert!((99..=101).contains(&steady), "steady {steady}");
        let spike = count(&shape, 10.0, Arrivals::Fixed, 20, 25);
        assert!((199..=201).contains(&spike), "spike {spike}");
        assert_eq!(count(&shape, 10.0, Arrivals::Fixed, 25, 30), 0);
    }

    #[test]
    fn poisson_keeps_the_mean_and_varies_the_gaps() {
        let shape = LoadShape::constant(Duration::from_secs(1000));
        let n = count(&shape, 10.0, Arrivals::Poisson, 0, 1000);
        // 10,000 expected; a Poisson count's sd is 100.
        assert!((9_600..=10_400).contains(&n), "{n}");
        let mut s = Schedule::new(10.0, Arrivals::Poisson, 1, Duration::ZERO);
        let a = s.next_due(&shape).expect("an arrival");
        let b = s.next_due(&shape).expect("an arrival");
        let c = s.next_due(&shape).expect("an arrival");
        assert_ne!(b - a, c - b);
    }

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let shape = LoadShape::constant(Duration::from_secs(10));
        let times = |seed| {
            let mut s = Schedule::new(5.0, Arrivals::Poisson, seed, Duration::ZERO);
            std::iter::from_fn(|| s.next_due(&shape)).collect::<Vec<_>>()
        };
        assert_eq!(times(3), times(3));
        assert_ne!(times(3), times(4));
    }

    #[test]
    fn connect_rates_per_phase_spread_the_fleet() {
        let mut a = phase("ramp", 0, 10, 1.0, 1.0);
        a.connect_rate = Some(5.0);
        let b = phase("steady", 10, 10, 1.0, 1.0);
        let shape = LoadShape::new(vec![a, b]);
        assert!(shape.paces_connections());
        assert_eq!(shape.connect_at(0), Duration::ZERO);
        assert_eq!(shape.connect_at(10), Duration::from_secs(2));
        // 50 connect during the ramp; the rest at the start of "steady".
        assert_eq!(shape.connect_at(60), Duration::from_secs(10));
    }
}
