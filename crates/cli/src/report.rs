//! From a finished run to its report: totals, latency, expectations, findings, verdict.

use fleetbench_fleet::FleetOutcome;
use fleetbench_metrics::env::Environment;
use fleetbench_metrics::report::{
    peak_rss_bytes, BrokerGoneReport, BrokerWatch, Calibration, Generator, Histograms, Latency,
    PhaseReport, QosTotals, Report, Resources, RunInfo, RunTiming, Throughput, Totals, Verdict,
    SCHEMA_VERSION,
};
use fleetbench_scenario::{Plan, Scenario, Shard};

/// What the report needs to know about the run besides the fleet's outcome.
#[derive(Debug, Clone)]
pub struct RunContext {
    pub started_unix_s: u64,
    pub shard: Shard,
    /// The broker as it may be printed: no credentials.
    pub broker: String,
    pub tcp_nodelay: Option<bool>,
    pub embedded: bool,
    /// What the broker's own process used, when it ran as a child.
    pub broker_process: Option<fleetbench_metrics::report::ProcessUsage>,
    /// The calibration workload's units, measured just before the run.
    pub calibration: Option<Calibration>,
    /// What the embedded broker's watch saw (None for an external broker).
    pub broker_health: Option<BrokerWatch>,
    /// Cores the whole machine had busy over the run.
    pub machine_busy_cores: Option<f64>,
}

pub fn environment() -> Environment {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    Environment::detect(
        env!("FLEETBENCH_GIT_REV"),
        profile,
        env!("CARGO_PKG_VERSION"),
    )
}

pub fn build_report(
    scenario: &Scenario,
    plan: &Plan,
    fleet: &FleetOutcome,
    ctx: &RunContext,
) -> Report {
    let acc = &fleet.accounting;
    let totals = Totals {
        sent: fleet.sent,
        expected: acc.total.expected,
        delivered: acc.total.delivered,
        lost: acc.total.lost,
        duplicates: acc.total.duplicates,
        reordered: acc.total.reordered,
        in_flight: acc.total.in_flight,
        unexpected: acc.unexpected,
        skipped: fleet.skipped,
    };
    let by_qos = acc
        .by_qos
        .iter()
        .enumerate()
        .filter(|(_, (streams, _))| *streams > 0)
        .map(|(qos, (streams, outcome))| QosTotals {
            qos: qos as u8,
            streams: *streams,
            outcome: *outcome,
        })
        .collect();
    let window = fleet.publish_window.as_secs_f64();
    let per_s = |n: u64| if window > 0.0 { n as f64 / window } else { 0.0 };
    let t = &fleet.totals;
    let mut report = Report {
        schema_version: SCHEMA_VERSION,
        scenario: serde_json::to_value(scenario).unwrap_or(serde_json::Value::Null),
        environment: environment(),
        run: RunInfo {
            started_unix_s: ctx.started_unix_s,
            elapsed_s: fleet.elapsed.as_secs_f64(),
            publish_window_s: window,
            drain_s: fleet.drain.as_secs_f64(),
            warmup_s: scenario.warmup.as_secs_f64(),
            interrupted: fleet.interrupted,
            broker_gone: fleet.broker_gone.map(|g| BrokerGoneReport {
                since_s: g.since.as_secs_f64(),
                waited_s: g.waited.as_secs_f64(),
            }),
            shard: format!("{}/{}", ctx.shard.index, ctx.shard.count),
            broker: ctx.broker.clone(),
            tcp_nodelay: ctx.tcp_nodelay,
        },
        totals,
        by_qos,
        throughput: Throughput {
            publish_per_s: per_s(fleet.sent),
            deliver_per_s: per_s(acc.total.delivered),
        },
        latency: Latency {
            from_intended: t.from_intended.summary(),
            from_send: t.from_send.summary(),
            puback: t.ack.summary(),
            connect: t.connect.summary(),
        },
        generator: Generator {
            late_sends: t.late_sends,
            max_lag_us: t.max_lag_us,
            cpu_cores: t.cpu.generator,
        },
        timing: RunTiming {
            connect_all_s: fleet.connect_all.map(|d| d.as_secs_f64()),
            never_connected: fleet.never_connected,
            disconnected: fleet.disconnected,
        },
        resources: Resources {
            cpu: t.cpu,
            peak_rss_bytes: peak_rss_bytes(),
            broker_process: ctx.broker_process,
            machine_busy_cores: ctx.machine_busy_cores,
        },
        errors: t
            .errors
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        findings: Vec::new(),
        expectations: Vec::new(),
        verdict: Verdict::Pass,
        calibration: ctx.calibration,
        histograms: None,
        samples: Vec::new(),
        merged: None,
        phases: Vec::new(),
        behaviour: fleet.behaviour.clone(),
        broker_watch: ctx.broker_health.clone(),
    };
    match Histograms::encode(&t.from_intended, &t.from_send, &t.ack, &t.connect) {
        Ok(h) => report.histograms = Some(h),
        Err(e) => report
            .errors
            .entry("hlog".to_string())
            .or_default()
            .record(e.to_string()),
    }
    report.phases = phase_reports(scenario, fleet, &mut report.errors);
    report.samples = vec![report.own_sample()];
    report.expectations = fleetbench_metrics::expect::evaluate(&scenario.expect, &report);
    // Findings speak of the verdict, so they come after the expectations.
    report.findings = crate::findings::findings(plan, fleet, &report, ctx);
    report.verdict = fleetbench_metrics::expect::verdict(&report.expectations, fleet.interrupted);
    report
}

/// The figures of each load phase: messages belong to the phase they were due in.
fn phase_reports(
    scenario: &Scenario,
    fleet: &FleetOutcome,
    errors: &mut std::collections::BTreeMap<String, fleetbench_metrics::aggregate::ErrorGroup>,
) -> Vec<PhaseReport> {
    let empty = fleetbench_metrics::aggregate::PhaseTotals::default();
    scenario
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let t = fleet.totals.phases.get(i).unwrap_or(&empty);
            let secs = p.duration.as_secs_f64();
            let histogram = t.from_intended.to_base64().unwrap_or_else(|e| {
                errors
                    .entry("hlog".into())
                    .or_default()
                    .record(e.to_string());
                String::new()
            });
            PhaseReport {
                name: p.name.clone(),
                start_s: p.start.as_secs_f64(),
                duration_s: secs,
                rate: p.rate,
                rate_end: p.rate_end,
                sent: t.sent,
                expected: t.expected,
                delivered: t.delivered,
                publish_per_s: t.sent as f64 / secs,
                deliver_per_s: t.delivered as f64 / secs,
                from_intended: t.from_intended.summary(),
                histogram,
            }
        })
        .collect()
}
