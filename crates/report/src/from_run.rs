//! A report from a finished run: the fleet's outcome and the run's context become the wire
//! type, then the expectations are judged, the findings worked out and the verdict given.
//! Everything that decides a report is here; the CLI only writes and prints it.

use fleetbench_metrics::ErrorKind;
use std::collections::BTreeMap;

use fleetbench_scenario::{Plan, Scenario};

use fleetbench_metrics::aggregate::{ErrorGroup, PhaseTotals};
use fleetbench_metrics::outcome::RunOutcome;

use crate::context::RunContext;
use crate::report::{
    peak_rss_bytes, BrokerGoneReport, Generator, Histograms, Latency, PhaseReport, QosMismatch,
    QosTotals, Report, Resources, RunInfo, RunTiming, SubscriptionGrant, Throughput, Totals,
    Verdict, SCHEMA_VERSION,
};

impl Report {
    /// The report of `scenario` run as `plan`, from what the fleet returned and what the run
    /// knows about itself.
    pub fn from_run(
        scenario: &Scenario,
        plan: &Plan,
        run: &RunOutcome,
        ctx: &RunContext,
    ) -> Report {
        let intervals = run.interval_log.latency_intervals();
        let mut report = Report {
            schema_version: SCHEMA_VERSION,
            scenario: serde_json::to_value(scenario).unwrap_or(serde_json::Value::Null),
            environment: ctx.environment.clone(),
            run: run_info(scenario, run, ctx),
            totals: totals(run),
            by_qos: by_qos(run),
            throughput: throughput(run),
            latency: latency(run),
            generator: Generator {
                late_sends: run.totals.late_sends,
                late_by: crate::report::LateBy::steps(&run.totals.late_by),
                max_lag_us: run.totals.max_lag_us,
                cpu_cores: run.totals.cpu.generator,
            },
            timing: RunTiming {
                connect_all_s: run.connect_all.map(|d| d.as_secs_f64()),
                never_connected: run.never_connected,
                disconnected: run.disconnected,
            },
            resources: Resources {
                cpu: run.totals.cpu,
                peak_rss_bytes: peak_rss_bytes(),
                broker_process: ctx.broker_process,
                machine_busy_cores: ctx.machine_busy_cores,
            },
            errors: errors(run),
            findings: Vec::new(),
            expectations: Vec::new(),
            verdict: Verdict::Pass,
            calibration: ctx.calibration,
            histograms: None,
            samples: Vec::new(),
            merged: None,
            phases: Vec::new(),
            behaviour: run.behaviour.clone(),
            broker_watch: ctx.broker_watch.clone(),
            subscriptions_not_granted: subscriptions_not_granted(plan, run),
            qos_mismatches: qos_mismatches(run),
            shards: Vec::new(),
            faults: crate::fault_cost::costs(scenario, &plan.fault_grid, run, &intervals),
            series: crate::series::Series::build(&run.timeline, &intervals, run.ramp_offset),
            groups: group_reports(scenario, plan, run),
        };
        let t = &run.totals;
        match Histograms::encode(
            &t.from_intended,
            &t.from_send,
            &t.ack,
            &t.connect,
            Some(&t.on_time),
        ) {
            Ok(h) => report.histograms = Some(h),
            Err(e) => hlog_error(&mut report.errors, e.to_string()),
        }
        report.phases = phase_reports(scenario, run, &mut report.errors);
        report.samples = vec![report.own_sample()];
        report.judge(|r| crate::expect::evaluate(&scenario.expect, r));
        report
    }

    /// Judge the expectations `judged` gives for this report, then work out the findings (which
    /// speak of the expectations) and the verdict.
    pub fn judge(&mut self, judged: impl FnOnce(&Report) -> Vec<crate::report::ExpectationResult>) {
        self.expectations = judged(self);
        self.findings = crate::finding::findings(self)
            .iter()
            .map(ToString::to_string)
            .collect();
        self.verdict = crate::expect::verdict(&self.expectations, self.run.interrupted);
    }
}

fn run_info(scenario: &Scenario, run: &RunOutcome, ctx: &RunContext) -> RunInfo {
    RunInfo {
        started_unix_s: ctx.started_unix_s,
        elapsed_s: run.elapsed.as_secs_f64(),
        publish_window_s: run.publish_window.as_secs_f64(),
        drain_s: run.drain.as_secs_f64(),
        warmup_s: scenario.warmup.as_secs_f64(),
        interrupted: run.interrupted,
        broker_gone: run.broker_gone.map(|g| BrokerGoneReport {
            since_s: g.since.as_secs_f64(),
            waited_s: g.waited.as_secs_f64(),
        }),
        shard: format!("{}/{}", ctx.shard.index, ctx.shard.count),
        broker: ctx.broker.clone(),
        tcp_nodelay: ctx.tcp_nodelay,
        start: ctx.start.clone(),
    }
}

fn totals(run: &RunOutcome) -> Totals {
    let acc = &run.accounting;
    Totals {
        sent: run.sent,
        expected: acc.total.expected,
        delivered: acc.total.delivered,
        lost: acc.total.lost,
        duplicates: acc.total.duplicates,
        reordered: acc.total.reordered,
        in_flight: acc.total.in_flight,
        unexpected: acc.unexpected,
        skipped: run.skipped,
    }
}

fn by_qos(run: &RunOutcome) -> Vec<QosTotals> {
    run.accounting
        .by_qos
        .iter()
        .enumerate()
        .filter(|(_, (streams, _))| *streams > 0)
        .map(|(qos, (streams, outcome))| QosTotals {
            qos: qos as u8,
            streams: *streams,
            outcome: *outcome,
        })
        .collect()
}

fn throughput(run: &RunOutcome) -> Throughput {
    let window = run.publish_window.as_secs_f64();
    let per_s = |n: u64| if window > 0.0 { n as f64 / window } else { 0.0 };
    Throughput {
        publish_per_s: per_s(run.sent),
        deliver_per_s: per_s(run.accounting.total.delivered),
    }
}

fn latency(run: &RunOutcome) -> Latency {
    let t = &run.totals;
    Latency {
        from_intended: t.from_intended.summary(),
        from_send: t.from_send.summary(),
        puback: t.ack.summary(),
        connect: t.connect.summary(),
        on_time: t.on_time.summary(),
    }
}

fn errors(run: &RunOutcome) -> BTreeMap<ErrorKind, ErrorGroup> {
    run.totals.errors.clone()
}

fn hlog_error(errors: &mut BTreeMap<ErrorKind, ErrorGroup>, detail: String) {
    errors.entry(ErrorKind::Hlog).or_default().record(detail);
}

/// Each observer's subscriptions the broker refused or granted below what was asked.
fn subscriptions_not_granted(plan: &Plan, run: &RunOutcome) -> Vec<SubscriptionGrant> {
    let mut out = Vec::new();
    for (spec, granted) in plan.observers.iter().zip(&run.granted) {
        for (filter, g) in spec.filters.iter().zip(granted) {
            let asked = spec.qos.level();
            if g.is_none_or(|q| q < asked) {
                out.push(SubscriptionGrant {
                    observer: spec.client_id.clone(),
                    filter: filter.clone(),
                    asked,
                    granted: *g,
                });
            }
        }
    }
    out
}

fn qos_mismatches(run: &RunOutcome) -> Vec<QosMismatch> {
    let mut out = Vec::new();
    for (due, row) in run.delivered_qos.iter().enumerate() {
        for (used, count) in row.iter().enumerate() {
            if used != due && *count > 0 {
                out.push(QosMismatch {
                    due: due as u8,
                    used: used as u8,
                    count: *count,
                });
            }
        }
    }
    out
}

/// The figures of each load phase: messages belong to the phase they were due in.
fn phase_reports(
    scenario: &Scenario,
    run: &RunOutcome,
    errors: &mut BTreeMap<ErrorKind, ErrorGroup>,
) -> Vec<PhaseReport> {
    let empty = PhaseTotals::default();
    scenario
        .phases
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let t = run.totals.phases.get(i).unwrap_or(&empty);
            let secs = p.duration.as_secs_f64();
            let histogram = t.from_intended.to_base64().unwrap_or_else(|e| {
                hlog_error(errors, e.to_string());
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

/// Each group's devices, what they sent and what became of it.
fn group_reports(
    scenario: &Scenario,
    plan: &Plan,
    run: &RunOutcome,
) -> Vec<crate::groups::GroupReport> {
    (scenario.groups.iter().enumerate())
        .map(|(gi, g)| {
            let mine = || {
                plan.devices
                    .iter()
                    .enumerate()
                    .filter(move |(_, d)| d.group == gi)
            };
            crate::groups::GroupReport {
                name: g.name.clone(),
                devices: mine().count() as u64,
                sent: mine()
                    .map(|(p, _)| run.sent_per_device.get(p).copied().unwrap_or(0))
                    .sum(),
                outcome: run.by_group.get(gi).copied().unwrap_or_default(),
            }
        })
        .collect()
}
