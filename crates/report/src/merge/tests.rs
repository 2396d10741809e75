//! Merging shards and repeats.

use super::*;
use crate::fixture::{histogram, report};
use crate::report::{ExpectationResult, Histograms, Verdict};

fn with_p99_limit(mut r: Report, limit_us: f64) -> Report {
    r.expectations = vec![ExpectationResult {
        name: "p99_us".into(),
        ok: true,
        observed: 0.0,
        limit: limit_us,
        comparison: "<=".into(),
    }];
    r
}

#[test]
fn repeats_sum_counts_merge_histograms_exactly_and_keep_each_run_as_a_sample() {
    let a = with_p99_limit(report(400, 1_000, 0, 1_000.0), 3_000.0);
    let b = with_p99_limit(report(600, 9_000, 3, 1_000.0), 3_000.0);
    let m = merge(&[a.clone(), b.clone()], MergeKind::Repeats).expect("merge");
    assert_eq!(m.totals.sent, 20_000);
    assert_eq!(m.totals.lost, 3);
    assert_eq!(m.by_qos[0].outcome.lost, 3);
    assert_eq!(m.by_qos[0].streams, 20);
    // The merged p99 is the p99 of all 2,000 values, not an average of the two p99s.
    let mut all = histogram(400, 1_000);
    all.add(&histogram(600, 9_000));
    assert_eq!(m.latency.from_intended, all.summary());
    assert_eq!(m.latency.from_intended.count, 2_000);
    // Sequential runs: the rate is the count over both windows.
    assert!((m.throughput.deliver_per_s - 19_997.0 / 20.0).abs() < 1e-9);
    assert_eq!(m.samples.len(), 2);
    assert_eq!(
        m.samples[1].p99_from_intended_us,
        b.latency.from_intended.p99_us
    );
    // Expectations are judged again on the merged figures, with the check that late sends
    // decided no latency verdict beside the latency one.
    assert_eq!(m.expectations.len(), 2);
    assert_eq!(m.expectations[1].name, "generator_limited");
    assert!(m.expectations[1].ok);
    assert_eq!(
        m.expectations[0].observed,
        m.latency.from_intended.p99_us as f64
    );
    assert_eq!(m.merged.map(|x| x.reports), Some(2));
    // Merging is associative: (a+b) then +c equals a+b+c in counts and distributions (c:
    // another run with a's figures).
    let mut c = a.clone();
    c.run.started_unix_s += 60;
    let three = merge(&[a.clone(), b.clone(), c.clone()], MergeKind::Repeats).expect("3");
    let nested = merge(&[m, c], MergeKind::Repeats).expect("nested");
    assert_eq!(three.latency, nested.latency);
    assert_eq!(three.totals, nested.totals);
    assert_eq!(three.samples.len(), nested.samples.len());
}

#[test]
fn repeats_are_refused_unless_they_are_runs_of_one_scenario_each_given_once() {
    let a = report(400, 1_000, 0, 1_000.0);
    let refused = |reports: &[Report], part: &str| {
        let e = merge(reports, MergeKind::Repeats).expect_err(part);
        assert!(e.to_string().contains(part), "{e}");
    };
    refused(&[a.clone(), a.clone(), a.clone()], "are the same run");
    let mut shard = a.clone();
    shard.run.shard = "1/4".into();
    refused(&[shard.clone()], "merge with --shards");
    let mut changed = a.clone();
    changed.run.started_unix_s += 60;
    changed.scenario = serde_json::json!({ "name": "sensors", "duration": "60s" });
    refused(&[a.clone(), changed], "duration: none -> \"60s\"");
    let mut other_build = a.clone();
    other_build.run.started_unix_s += 60;
    other_build.environment.git_revision = "0123abc".into();
    refused(&[a.clone(), other_build], "one build");
    // Counts past what any run holds, or that wrap when added, are refused, not summed.
    let mut huge = a.clone();
    huge.run.started_unix_s += 60;
    huge.totals.sent = u64::MAX;
    refused(&[a, huge], "beyond any run");
}

#[test]
fn shards_add_rates_and_must_make_a_whole_run() {
    let mut a = report(400, 1_000, 0, 1_000.0);
    let mut b = report(400, 1_000, 0, 2_000.0);
    a.run.shard = "0/2".into();
    b.run.shard = "1/2".into();
    let m = merge(&[a.clone(), b.clone()], MergeKind::Shards).expect("merge");
    assert!((m.throughput.deliver_per_s - 3_000.0).abs() < 1e-9);
    assert_eq!(m.samples.len(), 1);
    assert_eq!(m.verdict, Verdict::Pass);
    let rows: Vec<(&str, bool, u64)> = (m.shards.iter())
        .map(|s| (s.shard.as_str(), s.present, s.sent))
        .collect();
    assert_eq!(rows, [("0/2", true, 10_000), ("1/2", true, 10_000)]);
    // A duplicated shard, or shards of different splits or builds, are refused.
    assert!(matches!(
        merge(&[a.clone(), a.clone()], MergeKind::Shards),
        Err(MergeError::Shards(e)) if e.contains("0/2 appears twice")
    ));
    let mut other_split = b.clone();
    other_split.run.shard = "1/3".into();
    assert!(matches!(
        merge(&[a.clone(), other_split], MergeKind::Shards),
        Err(MergeError::Shards(e)) if e.contains("split into 2")
    ));
    let mut other_build = b.clone();
    other_build.environment.git_revision = "0123abc".into();
    assert!(matches!(
        merge(&[a.clone(), other_build], MergeKind::Shards),
        Err(MergeError::Shards(e)) if e.contains("one build")
    ));
}

#[test]
fn a_missing_or_failed_shard_fails_the_merged_verdict_by_name() {
    let mut shards: Vec<Report> = (0..3)
        .map(|i| {
            let mut r = report(400, 1_000, 0, 1_000.0);
            r.run.shard = format!("{i}/3");
            r.verdict = Verdict::Pass;
            r
        })
        .collect();
    let present = [shards[0].clone(), shards[2].clone()];
    let m = merge(&present, MergeKind::Shards).expect("merges what is there");
    assert_eq!(m.verdict, Verdict::Fail);
    assert_eq!(m.run.shard, "merged 2 of 3 shards");
    let missing = m.expectations.iter().find(|e| e.name == "shards_missing");
    assert_eq!(missing.map(|e| (e.ok, e.observed)), Some((false, 1.0)));
    assert!(
        m.findings.iter().any(|f| f.contains("shard 1/3 ")),
        "{:?}",
        m.findings
    );
    // A shard that failed on its own fails the whole, though the sums look fine.
    shards[1].verdict = Verdict::Fail;
    shards[1].expectations = vec![ExpectationResult {
        name: "p99_from_intended".into(),
        ok: false,
        observed: 9_000.0,
        limit: 2_000.0,
        comparison: "<=".into(),
    }];
    let m = merge(&shards, MergeKind::Shards).expect("merge");
    assert_eq!(m.verdict, Verdict::Fail);
    assert!(
        (m.findings.iter()).any(|f| f.contains("1/3 failed p99_from_intended")),
        "{:?}",
        m.findings
    );
    // Merging a merged sharded report again keeps the shard checks, once.
    let again = merge(std::slice::from_ref(&m), MergeKind::Repeats).expect("merge");
    let named = |n: &str| again.expectations.iter().filter(|e| e.name == n).count();
    assert_eq!((named("shards_missing"), named("shards_failed")), (1, 1));
}

#[test]
fn reports_that_cannot_merge_exactly_are_refused() {
    let a = report(400, 1_000, 0, 1_000.0);
    let mut other = a.clone();
    other.scenario = serde_json::json!({ "name": "other" });
    assert!(matches!(
        merge(&[a.clone(), other], MergeKind::Repeats),
        Err(MergeError::OtherScenario { index: 1, .. })
    ));
    let mut old = a.clone();
    old.histograms = None;
    assert!(matches!(
        merge(&[a.clone(), old], MergeKind::Repeats),
        Err(MergeError::NoHistograms { index: 1 })
    ));
    let mut damaged = a.clone();
    damaged.histograms = Some(Histograms {
        from_intended: "bm90IGEgaGlzdG9ncmFt".into(),
        ..damaged.histograms.clone().unwrap_or_default()
    });
    assert!(matches!(
        merge(&[a, damaged], MergeKind::Repeats),
        Err(MergeError::Histogram { index: 1, .. })
    ));
    assert!(matches!(
        merge(&[], MergeKind::Repeats),
        Err(MergeError::Empty)
    ));
}
