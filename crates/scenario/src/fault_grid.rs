//! The time grid around the faults over which the report splits loss and duplicates: each
//! device notes how many messages it had sent at every point of it, so that at the end a lost
//! message can be placed in the span of the grid its due time fell in.
//!
//! A fault's span runs from a second before it (a message still on the wire when it struck
//! is lost with it) until a minute after its window, within the run, in whole seconds; when
//! the faults together would need more than [`MAX_POINTS`] points, the step grows so that a
//! device never keeps more than that many numbers.

use std::time::Duration;

use crate::model::Fault;

/// A message due this long before a fault may still be on the wire when it strikes.
pub const LEAD: Duration = Duration::from_secs(1);
/// How long after its window a fault's span runs (recovery, and the "after" of the report).
pub const TAIL: Duration = Duration::from_secs(60);
/// The most points a grid has (each device keeps a `u32` per point).
pub const MAX_POINTS: usize = 128;

/// The grid's points, from the start of the connect ramp, and its step: consecutive points
/// one step apart bound a slot; a larger gap lies between two faults' spans.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultGrid {
    pub points: Vec<Duration>,
    pub step: Duration,
}

impl FaultGrid {
    /// The grid of `faults` in a run whose publish window lasts `duration`; empty without
    /// faults.
    pub fn of(faults: &[Fault], duration: Duration) -> FaultGrid {
        if faults.is_empty() {
            return FaultGrid::default();
        }
        let mut step = Duration::from_secs(1);
        loop {
            let points = points(faults, duration, step);
            if points.len() <= MAX_POINTS {
                return FaultGrid { points, step };
            }
            step *= 2;
        }
    }

    /// The slots (by the index of their first point) that start in `[from, to)`: spans that
    /// meet at a time share no slot, and a slot a span ends in belongs to it.
    pub fn slots(&self, from: Duration, to: Duration) -> impl Iterator<Item = usize> + '_ {
        self.points
            .windows(2)
            .enumerate()
            .filter(move |(_, w)| w[1] - w[0] == self.step && w[0] >= from && w[0] < to)
            .map(|(k, _)| k)
    }

    /// The start of the slot holding `t`, or `t` outside every span.
    pub fn floor(&self, t: Duration) -> Duration {
        self.slot_of(t).map_or(t, |k| self.points[k])
    }

    /// The slot holding `t` (None outside every span).
    pub fn slot_of(&self, t: Duration) -> Option<usize> {
        let k = self.points.partition_point(|p| *p <= t).checked_sub(1)?;
        let next = self.points.get(k + 1)?;
        (*next - self.points[k] == self.step).then_some(k)
    }
}

/// Every fault's span on a grid of `step` from the ramp start, merged and in order.
fn points(faults: &[Fault], duration: Duration, step: Duration) -> Vec<Duration> {
    let on_grid = |t: Duration, up: bool| {
        let n = t.as_nanos() / step.as_nanos();
        let n = if up && !t.as_nanos().is_multiple_of(step.as_nanos()) {
            n + 1
        } else {
            n
        };
        step * u32::try_from(n).unwrap_or(u32::MAX)
    };
    let end = on_grid(duration, true);
    let mut out: Vec<Duration> = Vec::new();
    for f in faults {
        let from = on_grid(f.at.saturating_sub(LEAD), false);
        let to = on_grid(f.at + f.length + TAIL, true).min(end);
        let mut t = from;
        while t <= to {
            out.push(t);
            t += step;
        }
    }
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::FaultKind;

    fn fault(at: u64, length: u64) -> Fault {
        Fault {
            kind: FaultKind::BrokerRestart {
                command: None,
                timeout: Duration::from_secs(10),
            },
            at: Duration::from_secs(at),
            length: Duration::from_secs(length),
        }
    }

    #[test]
    fn a_fault_is_covered_from_a_second_before_until_a_minute_after() {
        let g = FaultGrid::of(&[fault(10, 5)], Duration::from_secs(300));
        assert_eq!(g.step, Duration::from_secs(1));
        assert_eq!(g.points.first(), Some(&Duration::from_secs(9)));
        assert_eq!(g.points.last(), Some(&Duration::from_secs(75)));
        // A message due at 9.5 s is in the first slot; one at 80 s is in none.
        assert_eq!(g.slot_of(Duration::from_millis(9_500)), Some(0));
        assert_eq!(g.slot_of(Duration::from_secs(80)), None);
        // Slots from 10 s until 12.5 s: those starting at 10, 11 and 12; the span after it
        // starts with the slot at 13 s.
        let (t, end) = (Duration::from_millis(12_500), Duration::from_secs(20));
        let during: Vec<usize> = g.slots(Duration::from_secs(10), t).collect();
        assert_eq!(during, vec![1, 2, 3]);
        assert_eq!(g.slots(t, end).next(), Some(4));
        assert_eq!(
            g.floor(Duration::from_millis(9_300)),
            Duration::from_secs(9)
        );
    }

    #[test]
    fn spans_apart_leave_a_gap_and_a_long_run_coarsens_the_step() {
        let g = FaultGrid::of(&[fault(10, 0), fault(200, 0)], Duration::from_secs(300));
        // The gap between 70 s and 199 s is no slot.
        assert_eq!(g.slot_of(Duration::from_secs(100)), None);
        assert!(g.slot_of(Duration::from_secs(199)).is_some());
        let long = FaultGrid::of(&[fault(10, 3000)], Duration::from_secs(4000));
        assert!(long.points.len() <= MAX_POINTS, "{}", long.points.len());
        assert!(long.step > Duration::from_secs(1));
        // Without faults there is no grid: devices keep nothing.
        assert!(FaultGrid::of(&[], Duration::from_secs(60))
            .points
            .is_empty());
    }
}
