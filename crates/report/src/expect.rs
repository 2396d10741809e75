//! Judging a report against the scenario's `[expect]` table and the QoS guarantees.

use std::time::Duration;

use fleetbench_scenario::Expectations;

pub use crate::lateness::{
    decided_by_late_sends, judged_late_share, BEHIND_MS, MAX_BEHIND_SHARE, MIN_LATE_EVIDENCE,
};
use crate::metric::{value, Better, Metric};
use crate::report::{ExpectationResult, Report, Verdict};

/// Defaults of the checks every run gets unless its `[expect]` table says otherwise: what a
/// broken run looks like.
pub const DEFAULT_DELIVERED_RATIO: f64 = 0.99;
pub const DEFAULT_MAX_ERRORS: u64 = 100;
pub const DEFAULT_MAX_IN_FLIGHT_SHARE: f64 = 0.001;

/// Add the check that the generator's late sends decided no latency verdict, when `judged`
/// holds one (a scenario with no latency expectation has no verdict lateness could decide).
fn with_generator_check(mut judged: Vec<ExpectationResult>, r: &Report) -> Vec<ExpectationResult> {
    judged.retain(|e| e.name != Metric::GeneratorLimited.name());
    let latency = |e: &ExpectationResult| {
        Metric::from_name(&e.name).is_some_and(|m| Metric::FROM_INTENDED.contains(&m))
    };
    if judged.iter().any(latency) {
        let decided = decided_by_late_sends(&judged, r) as f64;
        judged.push(ExpectationResult {
            name: Metric::GeneratorLimited.name().to_string(),
            ok: decided <= 0.0,
            observed: decided,
            limit: 0.0,
            comparison: "<=".to_string(),
        });
    }
    judged
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

/// Judge metric `m` of report `r` against `limit`, the way the metric gets better (at most
/// the limit for what is better lower, at least for what is better higher).
fn judge(m: Metric, r: &Report, limit: f64) -> ExpectationResult {
    // A figure the report does not have fails loudly rather than passing unseen.
    let observed = value(m, r).unwrap_or(f64::NAN);
    let (ok, comparison) = match m.better() {
        Better::Lower => (observed <= limit, "<="),
        Better::Higher => (observed >= limit, ">="),
    };
    ExpectationResult {
        name: m.name().to_string(),
        ok,
        observed,
        limit,
        comparison: comparison.to_string(),
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
    use Metric::*;
    let count = |v: Option<u64>| v.map(|v| v as f64);
    let latency = |v: Option<Duration>| v.map(us);
    let or = |v: Option<u64>, default: u64| Some(v.unwrap_or(default) as f64);
    let b = &r.behaviour;
    let zero_if = |used: bool| used.then_some(0.0);
    let limits: [(Metric, Option<f64>); 32] = [
        (
            DeliveredRatio,
            Some(e.delivered_ratio.unwrap_or(DEFAULT_DELIVERED_RATIO)),
        ),
        (Lost, count(e.max_lost)),
        (Duplicates, count(e.max_duplicates)),
        (Reordered, count(e.max_reordered)),
        (P50FromIntended, latency(e.p50)),
        (P90FromIntended, latency(e.p90)),
        (P99FromIntended, latency(e.p99)),
        (P999FromIntended, latency(e.p999)),
        (MaxFromIntended, latency(e.max_latency)),
        (DeliverPerS, e.min_deliver_per_s),
        (PublishPerS, e.min_publish_per_s),
        // The QoS guarantees are always checked.
        (LostAtQos12, Some(0.0)),
        (DuplicatesAtQos2, Some(0.0)),
        // So is what a broken run looks like.
        (NeverConnected, or(e.max_never_connected, 0)),
        (Disconnected, or(e.max_disconnected, 0)),
        (BrokerGone, Some(0.0)),
        (BrokerRestarts, zero_if(r.broker_watch.is_some())),
        (
            InFlightShare,
            Some(e.max_in_flight_share.unwrap_or(DEFAULT_MAX_IN_FLIGHT_SHARE)),
        ),
        (Errors, or(e.max_errors, DEFAULT_MAX_ERRORS)),
        // So are the behaviours the scenario uses: what MQTT promises about them is all or
        // nothing.
        (StatusMissing, zero_if(b.status.is_some())),
        (StatusNotRetained, zero_if(b.status.is_some())),
        (WillsMissing, zero_if(b.wills.is_some())),
        (WillsUnexpected, zero_if(b.wills.is_some())),
        (SessionsLost, zero_if(b.sessions.is_some())),
        (CommandsUnanswered, zero_if(b.commands.is_some())),
        (UserPropsMissing, zero_if(b.mqtt5.is_some())),
        (ExpiryMissing, zero_if(b.mqtt5.is_some())),
        (DeliveredAfterExpiry, zero_if(b.mqtt5.is_some())),
        // A fault that could not be injected leaves a run that did not test what it says.
        (FaultsFailed, zero_if(!r.faults.is_empty())),
        // So does one its devices never came back from: the errors of a fault are its cost,
        // and a device a fault cut is not counted as disconnected, so this is where such a run
        // fails.
        (FaultsUnrecovered, zero_if(!r.faults.is_empty())),
        // A generator that could not keep its schedule offered another load than the
        // scenario's; the share of sends more than 1 ms late is judged when the scenario asks.
        (GeneratorBehind, Some(MAX_BEHIND_SHARE)),
        (GeneratorLateShare, e.max_late_share),
    ];
    let judged = limits
        .into_iter()
        .filter_map(|(m, limit)| limit.map(|l| judge(m, r, l)))
        .collect();
    with_generator_check(judged, r)
}

/// What a merged sharded run always checks: every shard present, and each passing on its own.
pub fn shard_checks(r: &Report) -> Vec<ExpectationResult> {
    [Metric::ShardsMissing, Metric::ShardsFailed]
        .into_iter()
        .map(|m| judge(m, r, 0.0))
        .collect()
}

/// The same expectations judged again on another report (a merge of several runs): names and
/// limits travel in the report, so no scenario file is needed. A name this version does not
/// know is judged as failed.
pub fn reevaluate(previous: &[ExpectationResult], r: &Report) -> Vec<ExpectationResult> {
    let judged = previous
        .iter()
        .filter(|e| e.name != Metric::GeneratorLimited.name())
        .map(|e| match Metric::from_name(&e.name) {
            Some(m) => judge(m, r, e.limit),
            None => ExpectationResult {
                observed: f64::NAN,
                ok: false,
                ..e.clone()
            },
        })
        .collect();
    with_generator_check(judged, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_late_sends_are_no_evidence_and_many_are() {
        // Three sends a few milliseconds late out of eighty: nothing to judge.
        assert_eq!(judged_late_share(3, 80), 0.0);
        assert_eq!(judged_late_share(MIN_LATE_EVIDENCE - 1, 100), 0.0);
        // A quarter of a small run late: clearly above 5%.
        assert!(judged_late_share(20, 80) > 0.1);
        // A large run barely above the limit is not judged above it...
        let barely = judged_late_share(5_100, 100_000);
        assert!(barely > 0.0 && barely < MAX_BEHIND_SHARE, "{barely}");
        // ... one well above it is.
        assert!(judged_late_share(6_000, 100_000) > MAX_BEHIND_SHARE);
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
        // Judged in the order the summary lists them, the generator last.
        let names: Vec<String> = evaluate(&Expectations::default(), &r)
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(names.first().map(String::as_str), Some("delivered_ratio"));
        assert_eq!(names.last().map(String::as_str), Some("generator_behind"));
        let broken_run_checks = [
            "never_connected",
            "disconnected",
            "broker_gone",
            "in_flight_share",
            "errors",
        ];
        for name in broken_run_checks {
            assert!(ok(&r, name), "{name} passes a healthy run");
        }
        r.timing.never_connected = 1;
        r.timing.disconnected = 2;
        r.totals.in_flight = 100;
        r.run.broker_gone = Some(crate::report::BrokerGoneReport::default());
        r.errors.insert(
            fleetbench_metrics::ErrorKind::Io,
            fleetbench_metrics::aggregate::ErrorGroup {
                count: 101,
                latest: String::new(),
            },
        );
        for name in broken_run_checks {
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

    /// A report whose p99 from intended is `all_us` over every message and `on_time_us` over
    /// the messages that left on time, with `late` sends over 1 ms and `behind` over 10 ms.
    fn late_run(all_us: u64, on_time_us: u64, late: u64, behind: u64) -> Report {
        let mut r = crate::fixture::report(400, 900, 0, 1_000.0);
        r.latency.from_intended.p99_us = all_us;
        r.latency.on_time.p99_us = on_time_us;
        r.generator.late_sends = late;
        r.generator.late_by = crate::report::LateBy::steps(&[late, behind, behind, behind]);
        r
    }

    fn judged(e: &Expectations, r: &Report, name: &str) -> Option<bool> {
        evaluate(e, r)
            .into_iter()
            .find(|x| x.name == name)
            .map(|x| x.ok)
    }

    #[test]
    fn late_sends_fail_a_run_only_when_they_decide_a_latency_verdict() {
        let p99 = |ms| Expectations {
            p99: Some(Duration::from_millis(ms)),
            ..Expectations::default()
        };
        // A virtual machine's jitter: 3% of sends a few ms late lift p99 from 1.1 to 3.5 ms,
        // well inside a 20 ms target: the run passes, whatever the share.
        let jitter = late_run(3_500, 1_100, 300, 0);
        assert_eq!(judged(&p99(20), &jitter, "generator_limited"), Some(true));
        assert_eq!(judged(&p99(20), &jitter, "p99_from_intended"), Some(true));
        // Against a 2 ms target the late sends decide the verdict: without them p99 passes.
        assert_eq!(judged(&p99(2), &jitter, "generator_limited"), Some(false));
        let mut r = jitter.clone();
        r.judge(|r| evaluate(&p99(2), r));
        assert!(
            r.findings
                .iter()
                .any(|f| f.contains("decided the latency verdict")
                    && f.contains("on the sends that left on time")),
            "{:?}",
            r.findings
        );
        // A broker too slow with or without them: the verdict is the broker's, not the
        // generator's.
        let slow = late_run(9_000, 8_000, 300, 0);
        assert_eq!(judged(&p99(2), &slow, "generator_limited"), Some(true));
        assert_eq!(judged(&p99(2), &slow, "p99_from_intended"), Some(false));
        // Without a latency expectation there is no latency verdict to decide.
        assert_eq!(
            judged(&Expectations::default(), &jitter, "generator_limited"),
            None
        );
        // Every send late: nothing to compare with, and the failed verdict is the generator's.
        let mut all_late = late_run(90_000, 0, 10_000, 0);
        all_late.latency.on_time.count = 0;
        assert_eq!(judged(&p99(2), &all_late, "generator_limited"), Some(false));
    }

    #[test]
    fn a_generator_far_behind_its_schedule_fails_any_run() {
        let none = Expectations::default();
        // 20% of sends more than 10 ms late: another load than the scenario's.
        let behind = late_run(300_000, 1_000, 5_000, 2_000);
        assert_eq!(judged(&none, &behind, "generator_behind"), Some(false));
        let mut r = behind;
        r.judge(|r| evaluate(&none, r));
        assert!(
            r.findings
                .iter()
                .any(|f| f.contains("could not keep its schedule")),
            "{:?}",
            r.findings
        );
        // Jitter of a few ms never reaches it.
        let jitter = late_run(3_500, 1_100, 1_500, 30);
        assert_eq!(judged(&none, &jitter, "generator_behind"), Some(true));
        // The share of sends over 1 ms is judged only when the scenario asks for it.
        assert_eq!(judged(&none, &jitter, "generator_late_share"), None);
        let strict = Expectations {
            max_late_share: Some(0.01),
            ..Expectations::default()
        };
        assert_eq!(
            judged(&strict, &jitter, "generator_late_share"),
            Some(false)
        );
    }

    #[test]
    fn a_fault_nobody_recovered_from_fails_the_run() {
        let mut r = crate::fixture::report(400, 900, 0, 1_000.0);
        r.faults = vec![crate::report::FaultReport {
            fault: "disconnect of s at 5s".into(),
            recovery_s: Some(0.4),
            ..Default::default()
        }];
        let judged = |r: &Report| {
            evaluate(&Expectations::default(), r)
                .into_iter()
                .find(|e| e.name == "faults_unrecovered")
                .map(|e| e.ok)
        };
        assert_eq!(judged(&r), Some(true));
        // Devices cut and never back are not "disconnected" and their errors are the fault's:
        // this check is what fails such a run.
        r.faults[0].recovery_s = None;
        assert_eq!(judged(&r), Some(false));
        r.faults.clear();
        assert_eq!(judged(&r), None, "judged only when there are faults");
    }
}
