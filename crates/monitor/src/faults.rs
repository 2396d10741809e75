//! The scenario's faults on the monitor: the one under way named in the header, and every
//! fault's window marked on the charts, so that a dip in the rates or a climb in latency shows
//! next to its cause.

use std::time::Duration;

use fleetbench_metrics::aggregate::Snapshot;

/// A fault of the scenario, as the monitor marks it.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultMark {
    /// "network at 20s", as the report names it.
    pub label: String,
    /// From the start of the connect ramp.
    pub at: Duration,
    pub length: Duration,
}

/// A fault without a window (a disconnect) is named for this long after it.
const SHOWN_AT_LEAST: Duration = Duration::from_secs(2);

/// The fault under way at snapshot `s`, and how long it has left.
pub(crate) fn under_way<'a>(
    faults: &'a [FaultMark],
    s: &Snapshot,
) -> Option<(&'a FaultMark, Duration)> {
    let since_ramp = s.elapsed.checked_sub(s.ramp_at?)?;
    faults.iter().find_map(|f| {
        let end = f.at + f.length.max(SHOWN_AT_LEAST);
        (since_ramp >= f.at && since_ramp < end)
            .then(|| (f, (f.at + f.length).saturating_sub(since_ramp)))
    })
}

/// Where the faults' windows start and end on the charts' time axis (the run clock, in
/// seconds), within `span`: a start and an end per fault (one line for a fault without a
/// window).
pub(crate) fn edges(faults: &[FaultMark], ramp_at: Option<Duration>, span: [f64; 2]) -> Vec<f64> {
    let Some(ramp) = ramp_at else {
        return Vec::new();
    };
    let mut out: Vec<f64> = faults
        .iter()
        .flat_map(|f| [ramp + f.at, ramp + f.at + f.length])
        .map(|t| t.as_secs_f64())
        .filter(|x| *x >= span[0] && *x <= span[1])
        .collect();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(elapsed_s: f64) -> Snapshot {
        Snapshot {
            elapsed: Duration::from_secs_f64(elapsed_s),
            ramp_at: Some(Duration::from_secs(1)),
            ..Snapshot::default()
        }
    }

    #[test]
    fn the_fault_under_way_is_found_from_the_ramp_start() {
        let faults = [
            FaultMark {
                label: "disconnect of s at 5s".into(),
                at: Duration::from_secs(5),
                length: Duration::ZERO,
            },
            FaultMark {
                label: "network at 10s".into(),
                at: Duration::from_secs(10),
                length: Duration::from_secs(4),
            },
        ];
        // 12 s on the run clock is 11 s from the ramp: the network fault, 3 s left.
        let (f, left) = under_way(&faults, &at(12.0)).expect("under way");
        assert_eq!(
            (f.label.as_str(), left),
            ("network at 10s", Duration::from_secs(3))
        );
        // A disconnect is named for two seconds after it.
        assert_eq!(
            under_way(&faults, &at(7.5)).map(|f| f.0.at),
            Some(Duration::from_secs(5))
        );
        assert!(under_way(&faults, &at(8.5)).is_none());
        // Before the ramp nothing is under way.
        assert!(under_way(
            &faults,
            &Snapshot {
                ramp_at: None,
                ..at(12.0)
            }
        )
        .is_none());
        // Edges on the run clock, within the charts' span.
        assert_eq!(
            edges(&faults, Some(Duration::from_secs(1)), [0.0, 12.0]),
            vec![6.0, 11.0]
        );
    }
}
