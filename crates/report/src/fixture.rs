//! Reports made up for tests, with histograms that agree with their figures.

use std::collections::BTreeMap;

use crate::report::*;
use fleetbench_metrics::env::Environment;
use fleetbench_metrics::hist::LatencyHistogram;
use fleetbench_metrics::ledger::StreamOutcome;

/// A latency distribution whose median is `p50` and 99th percentile `p99` (98% at p50, 2% at
/// p99), 1,000 values.
pub(crate) fn histogram(p50: u64, p99: u64) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for i in 0..1_000 {
        h.record_us(if i < 980 { p50 } else { p99 });
    }
    h
}

/// A single run of scenario "sensors": 10,000 QoS 1 messages, `lost` of them lost.
pub(crate) fn report(p50: u64, p99: u64, lost: u64, deliver_per_s: f64) -> Report {
    let outcome = StreamOutcome {
        expected: 10_000,
        delivered: 10_000 - lost,
        lost,
        ..StreamOutcome::default()
    };
    let (intended, send) = (histogram(p50, p99), histogram(p50 * 3 / 4, p99));
    let (ack, connect) = (histogram(200, 500), histogram(2_000, 5_000));
    let mut r = Report {
        schema_version: SCHEMA_VERSION,
        scenario: serde_json::json!({ "name": "sensors" }),
        environment: Environment::detect("test", "debug", "0"),
        run: RunInfo {
            started_unix_s: 0,
            elapsed_s: 10.0,
            publish_window_s: 10.0,
            drain_s: 0.0,
            warmup_s: 0.0,
            interrupted: false,
            broker_gone: None,
            shard: "0/1".into(),
            broker: "embedded".into(),
            tcp_nodelay: Some(true),
            start: None,
        },
        totals: Totals {
            sent: 10_000,
            expected: 10_000,
            delivered: 10_000 - lost,
            lost,
            ..Totals::default()
        },
        by_qos: vec![QosTotals {
            qos: 1,
            streams: 10,
            outcome,
        }],
        throughput: Throughput {
            publish_per_s: deliver_per_s,
            deliver_per_s,
        },
        latency: Latency {
            from_intended: intended.summary(),
            from_send: send.summary(),
            puback: ack.summary(),
            connect: connect.summary(),
            on_time: intended.summary(),
        },
        generator: Generator::default(),
        timing: RunTiming::default(),
        resources: Resources::default(),
        errors: BTreeMap::new(),
        findings: Vec::new(),
        expectations: Vec::new(),
        verdict: Verdict::Pass,
        calibration: None,
        histograms: Histograms::encode(&intended, &send, &ack, &connect, Some(&intended)).ok(),
        samples: Vec::new(),
        merged: None,
        phases: Vec::new(),
        behaviour: Default::default(),
        broker_watch: None,
        subscriptions_not_granted: Vec::new(),
        qos_mismatches: Vec::new(),
        shards: Vec::new(),
        faults: Vec::new(),
        series: Default::default(),
        groups: Vec::new(),
    };
    r.samples = vec![r.own_sample()];
    r
}
