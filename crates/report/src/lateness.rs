//! The generator's lateness as the verdict judges it: by its effect on the latency verdicts
//! (on-time latency beside latency from intended) and by the share of sends far behind their
//! schedule, judged on evidence (docs/REPORT.md, "Judging the generator").

use fleetbench_scenario::Metric;

use crate::figures::Latency;
pub use crate::figures::BEHIND_MS;
use crate::report::{ExpectationResult, Report};

/// The share of sends (after the warm-up) that may leave more than [`BEHIND_MS`] late before
/// the run is judged to have measured its own generator.
pub const MAX_BEHIND_SHARE: f64 = 0.05;

/// Fewer late sends than this are never evidence that the generator fell behind: three sends a
/// few milliseconds late out of eighty say nothing about a run.
pub const MIN_LATE_EVIDENCE: u64 = 20;

/// The one-sided 99% normal quantile: the late share is judged at the lower end of its
/// confidence interval.
const Z_99: f64 = 2.326;

/// The late share as the verdict judges it: 0 with fewer than [`MIN_LATE_EVIDENCE`] late sends,
/// otherwise the lower bound of the share's 99% (one-sided) Wilson score interval. A small run
/// needs a large share to fail, a large run only a share that is clearly above the limit.
pub fn judged_late_share(late: u64, sent: u64) -> f64 {
    if late < MIN_LATE_EVIDENCE || sent == 0 {
        return 0.0;
    }
    let n = sent as f64;
    let p = (late as f64 / n).min(1.0);
    let z2 = Z_99 * Z_99;
    let centre = p + z2 / (2.0 * n);
    let spread = Z_99 * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - spread) / (1.0 + z2 / n)).max(0.0)
}

/// How many of the latency verdicts in `judged` the generator's late sends decided: latency
/// expectations from the intended send time that failed on every message and would have
/// passed on the messages that left on time. A run whose every measured send was late has
/// nothing to compare with, and each failed latency verdict counts; a report from before
/// on-time sends were recorded counts none.
pub fn decided_by_late_sends(judged: &[ExpectationResult], r: &Report) -> usize {
    let on_time = &r.latency.on_time;
    let all_late = on_time.count == 0 && r.latency.from_intended.count > 0;
    if on_time.count == 0 && !(all_late && r.generator.late_sends > 0) {
        return 0;
    }
    judged
        .iter()
        .filter(|e| !e.ok)
        .filter_map(|e| Metric::from_name(&e.name).map(|m| (m, e.limit)))
        .filter(|(m, _)| Metric::FROM_INTENDED.contains(m))
        .filter(|(m, limit)| all_late || on_time_value(*m, &r.latency).is_some_and(|v| v <= *limit))
        .count()
}

/// A latency figure from intended, read from the messages that left on time alone.
pub fn on_time_value(m: Metric, l: &Latency) -> Option<f64> {
    let o = &l.on_time;
    Some(match m {
        Metric::P50FromIntended => o.p50_us,
        Metric::P90FromIntended => o.p90_us,
        Metric::P99FromIntended => o.p99_us,
        Metric::P999FromIntended => o.p999_us,
        Metric::MaxFromIntended => o.max_us,
        _ => return None,
    } as f64)
}
