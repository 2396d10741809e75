//! Judging a report against the scenario's `[expect]` table and the QoS guarantees.

use std::time::Duration;

use fleetbench_scenario::Expectations;

use crate::report::{ExpectationResult, Report, Verdict};

/// The default share of sends (after the warm-up) that may leave more than 1 ms late before the
/// run is judged to have measured its own generator rather than the broker.
pub const MAX_LATE_SHARE: f64 = 0.01;

/// Fewer late sends than this are never evidence that the generator fell behind: three sends a
/// few milliseconds late out of eighty say nothing about a run.
pub const MIN_LATE_EVIDENCE: u64 = 20;

/// The one-sided 99% normal quantile: the late share is judged at the lower end of its
/// confidence interval.
const Z_99: f64 = 2.326;

/// Defaults of the checks every run gets unless its `[expect]` table says otherwise: what a
/// broken run looks like.
pub const DEFAULT_DELIVERED_RATIO: f64 = 0.99;
pub const DEFAULT_MAX_ERRORS: u64 = 100;
pub const DEFAULT_MAX_IN_FLIGHT_SHARE: f64 = 0.001;

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

/// The verdict of judged expectations: an interrupted run judges nothing.
pub fn verdict(expectations: &[ExpectationResult], interrupted: bool) -> Verdict {
    if interrupted {
        Verdict::Interrupted
    } else if expectations.iter().all(|e| e.ok) {
        Verdict::Pass
    } else {
        Verdict::Fail
    }
}

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
/// delivered at QoS 1 or 2, no duplicate at QoS 2, what a broken run looks like (devices that
/// never connected or lost their connection, a broker gone or wedged, deliveries left in
/// flight, errors by the hundred; each with a default the scenario may change), every status,
/// will, session and command answer the scenario's behaviours call for, and a generator that
/// kept its schedule (judged on evidence: [`judged_late_share`]).
pub fn evaluate(e: &Expectations, r: &Report) -> Vec<ExpectationResult> {
    let count = |v: Option<u64>| v.map(|v| v as f64);
    let latency = |v: Option<Duration>| v.map(us);
    let limits: [(&str, Option<f64>, bool); 12] = [
        (
            "delivered_ratio",
            Some(e.delivered_ratio.unwrap_or(DEFAULT_DELIVERED_RATIO)),
            true,
        ),
        ("lost", count(e.max_lost), false),
        ("duplicates", count(e.max_duplicates), false),
        ("reordered", count(e.max_reordered), false),
        ("p50_us", latency(e.p50), false),
        ("p90_us", latency(e.p90), false),
        ("p99_us", latency(e.p99), false),
        ("p999_us", latency(e.p999), false),
        ("max_latency_us", latency(e.max_latency), false),
        ("deliver_per_s", e.min_deliver_per_s, true),
        ("publish_per_s", e.min_publish_per_s, true),
        // A generator that fell behind its schedule measures itself, not the broker.
        (
            "generator_late_share",
            Some(e.max_late_share.unwrap_or(MAX_LATE_SHARE)),
            false,
        ),
    ];
    let mut out: Vec<ExpectationResult> = limits
        .iter()
        .filter_map(|(name, limit, at_least)| limit.map(|l| judge(name, r, l, *at_least)))
        .collect();
    // The QoS guarantees are always checked, just before the generator's health.
    let generator = out.pop();
    out.push(judge("lost_at_qos_1_or_2", r, 0.0, false));
    out.push(judge("duplicates_at_qos_2", r, 0.0, false));
    // So is what a broken run looks like: clients that never connected or lost their
    // connection, a broker that went away or stopped answering, deliveries left in flight,
    // errors by the hundred.
    let count = |v: Option<u64>, default: u64| v.unwrap_or(default) as f64;
    out.push(judge(
        "never_connected",
        r,
        count(e.max_never_connected, 0),
        false,
    ));
    out.push(judge(
        "disconnected",
        r,
        count(e.max_disconnected, 0),
        false,
    ));
    out.push(judge("broker_gone", r, 0.0, false));
    if r.broker_watch.is_some() {
        out.push(judge("broker_restarts", r, 0.0, false));
    }
    let in_flight = e.max_in_flight_share.unwrap_or(DEFAULT_MAX_IN_FLIGHT_SHARE);
    out.push(judge("in_flight_share", r, in_flight, false));
    out.push(judge(
        "errors",
        r,
        count(e.max_errors, DEFAULT_MAX_ERRORS),
        false,
    ));
    // So are the behaviours the scenario uses: what MQTT promises about them is all or nothing.
    let b = &r.behaviour;
    let behaviour_checks: [(&str, bool); 9] = [
        ("status_missing", b.status.is_some()),
        ("status_not_retained", b.status.is_some()),
        ("wills_missing", b.wills.is_some()),
        ("wills_unexpected", b.wills.is_some()),
        ("sessions_lost", b.sessions.is_some()),
        ("commands_unanswered", b.commands.is_some()),
        ("user_props_missing", b.mqtt5.is_some()),
        ("expiry_missing", b.mqtt5.is_some()),
        ("delivered_after_expiry", b.mqtt5.is_some()),
    ];
    for (name, used) in behaviour_checks {
        if used {
            out.push(judge(name, r, 0.0, false));
        }
    }
    out.extend(generator);
    out
}

/// The same expectations judged again on another report (a merge of several runs): names,
/// limits and comparisons travel in the report, so no scenario file is needed.
pub fn reevaluate(previous: &[ExpectationResult], r: &Report) -> Vec<ExpectationResult> {
    previous
        .iter()
        .map(|e| judge(&e.name, r, e.limit, e.comparison == ">="))
        .collect()
}

fn judge(name: &str, r: &Report, limit: f64, at_least_limit: bool) -> ExpectationResult {
    // An expectation this version does not know fails loudly rather than passing unseen.
    let observed = observe(name, r).unwrap_or(f64::NAN);
    if at_least_limit {
        at_least(name, observed, limit)
    } else {
        at_most(name, observed, limit)
    }
}

/// The figure of a report an expectation judges, by the expectation's name.
pub fn observe(name: &str, r: &Report) -> Option<f64> {
    let t = &r.totals;
    let l = &r.latency.from_intended;
    Some(match name {
        "delivered_ratio" => {
            if t.expected == 0 {
                0.0
            } else {
                t.delivered as f64 / t.expected as f64
            }
        }
        "lost" => t.lost as f64,
        "duplicates" => t.duplicates as f64,
        "reordered" => t.reordered as f64,
        "p50_us" => l.p50_us as f64,
        "p90_us" => l.p90_us as f64,
        "p99_us" => l.p99_us as f64,
        "p999_us" => l.p999_us as f64,
        "max_latency_us" => l.max_us as f64,
        "deliver_per_s" => r.throughput.deliver_per_s,
        "publish_per_s" => r.throughput.publish_per_s,
        "lost_at_qos_1_or_2" => r.lost_at_guaranteed_qos() as f64,
        "duplicates_at_qos_2" => r
            .by_qos
            .iter()
            .filter(|q| q.qos == 2)
            .map(|q| q.outcome.duplicates)
            .sum::<u64>() as f64,
        "generator_late_share" => judged_late_share(r.generator.late_sends, r.totals.sent),
        "never_connected" => f64::from(r.timing.never_connected),
        "disconnected" => f64::from(r.timing.disconnected),
        "broker_gone" => f64::from(u8::from(r.run.broker_gone.is_some())),
        "broker_restarts" => {
            let w = r.broker_watch.as_ref()?;
            (w.restarts.len() as u64 + w.unrecorded_restarts) as f64
        }
        "in_flight_share" => {
            if t.expected == 0 {
                0.0
            } else {
                t.in_flight as f64 / t.expected as f64
            }
        }
        "errors" => r.errors.values().map(|g| g.count).sum::<u64>() as f64,
        "status_missing" => r.behaviour.status.as_ref()?.missing as f64,
        "status_not_retained" => r.behaviour.status.as_ref()?.not_retained as f64,
        "wills_missing" => r.behaviour.wills.as_ref()?.missing as f64,
        "wills_unexpected" => r.behaviour.wills.as_ref()?.unexpected as f64,
        "sessions_lost" => r.behaviour.sessions.as_ref()?.lost as f64,
        "commands_unanswered" => r.behaviour.commands.as_ref()?.unanswered as f64,
        "user_props_missing" => r.behaviour.mqtt5.as_ref()?.user_properties_missing as f64,
        "expiry_missing" => r.behaviour.mqtt5.as_ref()?.expiry_missing as f64,
        "delivered_after_expiry" => r.behaviour.mqtt5.as_ref()?.delivered_after_expiry as f64,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_late_sends_are_no_evidence_and_many_are() {
        // Three sends a few milliseconds late out of eighty: nothing to judge.
        assert_eq!(judged_late_share(3, 80), 0.0);
        assert_eq!(judged_late_share(MIN_LATE_EVIDENCE - 1, 100), 0.0);
        // A quarter of a small run late: clearly above 1%.
        assert!(judged_late_share(20, 80) > 0.1);
        // A large run barely above the limit is not judged above it...
        let barely = judged_late_share(1_030, 100_000);
        assert!(barely > 0.0 && barely < MAX_LATE_SHARE, "{barely}");
        // ... one well above it is.
        assert!(judged_late_share(3_000, 100_000) > MAX_LATE_SHARE);
        // The bound never exceeds the share itself.
        for (late, sent) in [(20, 20), (50, 1_000), (10_000, 10_000)] {
            let share = late as f64 / sent as f64;
            assert!(judged_late_share(late, sent) <= share, "{late}/{sent}");
        }
    }

    #[test]
    fn default_checks_fail_a_broken_run() {
        let mut r = crate::fixture::report(400, 900, 0, 1_000.0);
        let ok = |r: &Report, name: &str| {
            evaluate(&Expectations::default(), r)
                .into_iter()
                .find(|e| e.name == name)
                .unwrap_or_else(|| panic!("no {name}"))
                .ok
        };
        for name in [
            "never_connected",
            "disconnected",
            "broker_gone",
            "in_flight_share",
            "errors",
        ] {
            assert!(ok(&r, name), "{name} passes a healthy run");
        }
        r.timing.never_connected = 1;
        r.timing.disconnected = 2;
        r.totals.in_flight = 100;
        r.run.broker_gone = Some(crate::report::BrokerGoneReport::default());
        r.errors.insert(
            "io".into(),
            crate::aggregate::ErrorGroup {
                count: 101,
                latest: String::new(),
            },
        );
        for name in [
            "never_connected",
            "disconnected",
            "broker_gone",
            "in_flight_share",
            "errors",
        ] {
            assert!(!ok(&r, name), "{name} fails a broken run");
        }
        // The scenario may allow what it expects.
        let allowing = Expectations {
            max_never_connected: Some(1),
            max_errors: Some(1_000),
            ..Expectations::default()
        };
        let judged = evaluate(&allowing, &r);
        assert!(judged.iter().any(|e| e.name == "never_connected" && e.ok));
        assert!(judged.iter().any(|e| e.name == "errors" && e.ok));
        assert_eq!(verdict(&judged, true), Verdict::Interrupted);
        assert_eq!(verdict(&judged, false), Verdict::Fail);
    }
}
