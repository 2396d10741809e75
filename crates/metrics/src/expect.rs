//! Judging a report against the scenario's `[expect]` table and the QoS guarantees.

use std::time::Duration;

use fleetbench_scenario::Expectations;

use crate::report::{ExpectationResult, Report};

/// The default share of sends (after the warm-up) that may leave more than 1 ms late before the
/// run is judged to have measured its own generator rather than the broker.
pub const MAX_LATE_SHARE: f64 = 0.01;

fn at_most(name: &str, observed: f64, limit: f64) -> ExpectationResult {
    ExpectationResult {
        name: name.to_string(),
        ok: observed <= limit,
        observed,
        limit,
        comparison: "<=".to_string(),
    }
}

fn at_least(name: &str, observed: f64, limit: f64) -> ExpectationResult {
    ExpectationResult {
        name: name.to_string(),
        ok: observed >= limit,
        observed,
        limit,
        comparison: ">=".to_string(),
    }
}

fn us(d: Duration) -> f64 {
    d.as_micros() as f64
}

/// Every expectation the scenario sets, then the checks that always hold: no loss on a stream
/// delivered at QoS 1 or 2, no duplicate at QoS 2, and a generator that kept its schedule (at
/// most 1% of sends more than 1 ms late).
pub fn evaluate(e: &Expectations, r: &Report) -> Vec<ExpectationResult> {
    let mut out = Vec::new();
    let t = &r.totals;
    if let Some(limit) = e.delivered_ratio {
        let ratio = if t.expected == 0 {
            0.0
        } else {
            t.delivered as f64 / t.expected as f64
        };
        out.push(at_least("delivered_ratio", ratio, limit));
    }
    if let Some(limit) = e.max_lost {
        out.push(at_most("lost", t.lost as f64, limit as f64));
    }
    if let Some(limit) = e.max_duplicates {
        out.push(at_most("duplicates", t.duplicates as f64, limit as f64));
    }
    if let Some(limit) = e.max_reordered {
        out.push(at_most("reordered", t.reordered as f64, limit as f64));
    }
    let l = &r.latency.from_intended;
    for (name, limit, observed) in [
        ("p50_us", e.p50, l.p50_us),
        ("p90_us", e.p90, l.p90_us),
        ("p99_us", e.p99, l.p99_us),
        ("p999_us", e.p999, l.p999_us),
        ("max_latency_us", e.max_latency, l.max_us),
    ] {
        if let Some(limit) = limit {
            out.push(at_most(name, observed as f64, us(limit)));
        }
    }
    if let Some(limit) = e.min_deliver_per_s {
        out.push(at_least("deliver_per_s", r.throughput.deliver_per_s, limit));
    }
    if let Some(limit) = e.min_publish_per_s {
        out.push(at_least("publish_per_s", r.throughput.publish_per_s, limit));
    }
    out.push(at_most(
        "lost_at_qos_1_or_2",
        r.lost_at_guaranteed_qos() as f64,
        0.0,
    ));
    let dup_qos2: u64 = r
        .by_qos
        .iter()
        .filter(|q| q.qos == 2)
        .map(|q| q.outcome.duplicates)
        .sum();
    out.push(at_most("duplicates_at_qos_2", dup_qos2 as f64, 0.0));
    // A generator that fell behind its schedule measures itself, not the broker.
    let limit = e.max_late_share.unwrap_or(MAX_LATE_SHARE);
    out.push(at_most("generator_late_share", r.late_share(), limit));
    out
}
