//! From a finished run to its report: totals, latency, expectations, findings, verdict.

use fleetbench_fleet::FleetOutcome;
use fleetbench_metrics::env::Environment;
use fleetbench_metrics::report::{
    peak_rss_bytes, Calibration, Generator, Histograms, Latency, PhaseReport, QosTotals, Report,
    Resources, RunInfo, RunTiming, Throughput, Totals, Verdict, SCHEMA_VERSION,
};
use fleetbench_metrics::summary::fmt_count;
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
        },
        resources: Resources {
            cpu: t.cpu,
            peak_rss_bytes: peak_rss_bytes(),
            broker_process: ctx.broker_process,
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
    report.findings = findings(plan, fleet, &report, ctx);
    report.verdict = if report.expectations.iter().all(|e| e.ok) {
        Verdict::Pass
    } else {
        Verdict::Fail
    };
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

fn findings(plan: &Plan, fleet: &FleetOutcome, r: &Report, ctx: &RunContext) -> Vec<String> {
    let mut out = Vec::new();
    let lost_guaranteed = r.lost_at_guaranteed_qos();
    if lost_guaranteed > 0 {
        let mut f = format!(
            "{} messages delivered at QoS 1 or 2 never reached their observer: the broker broke \
             its delivery guarantee.",
            fmt_count(lost_guaranteed)
        );
        if ctx.embedded {
            f.push_str(
                " rumqttd acknowledges publishes and drops messages when a subscriber falls \
                 further behind than its in-memory log holds (a 'Read cursor start jumped' \
                 warning in its log).",
            );
        }
        out.push(f);
    }
    for (spec, granted) in plan.observers.iter().zip(&fleet.granted) {
        for (filter, g) in spec.filters.iter().zip(granted) {
            match g {
                None => out.push(format!(
                    "the broker refused observer {}'s subscription to {filter:?}",
                    spec.client_id
                )),
                Some(q) if *q < spec.qos.level() => out.push(format!(
                    "observer {} asked for QoS {} on {filter:?} and was granted QoS {q}; \
                     deliveries are judged at the granted QoS",
                    spec.client_id,
                    spec.qos.level()
                )),
                _ => {}
            }
        }
    }
    for (due, row) in fleet.delivered_qos.iter().enumerate() {
        for (used, n) in row.iter().enumerate().filter(|(u, n)| *u != due && **n > 0) {
            let mut f = format!(
                "the broker delivered {} messages at QoS {used} that MQTT says are due at QoS \
                 {due} (the lower of the publish's QoS and the subscription's grant)",
                fmt_count(*n)
            );
            if ctx.embedded && used == 2 {
                f.push_str(
                    ": rumqttd sends everything at QoS 2 to a subscriber granted QoS 2, \
                     adding a PUBREC/PUBREL/PUBCOMP exchange per message that QoS 0 and 1 do \
                     not ask for",
                );
            }
            out.push(f);
        }
    }
    if r.totals.in_flight > 0 {
        out.push(format!(
            "{} deliveries were still in flight at the cutoff ({}); they are neither delivered \
             nor lost",
            fmt_count(r.totals.in_flight),
            if r.run.interrupted {
                "the run was interrupted"
            } else {
                "the broker had not acknowledged them, or the client not sent them, when the \
                 drain timeout ended: the broker is behind; a longer drain_timeout may let them \
                 arrive"
            }
        ));
    }
    // The same judgement as the verdict's, with the scenario's own limit.
    let generator_failed = r
        .expectations
        .iter()
        .any(|e| e.name == "generator_late_share" && !e.ok);
    if generator_failed {
        out.push(format!(
            "the generator fell behind its schedule: {} sends ({:.2}%) left more than 1 ms after \
             they were due (worst {} behind, generator threads at {:.2} cores). Latency from \
             intended includes that delay, so this run measured the load generator as much as \
             the broker; the verdict fails. Fewer devices per process or shards help.",
            fmt_count(r.generator.late_sends),
            r.late_share() * 100.0,
            fleetbench_metrics::summary::fmt_us(r.generator.max_lag_us),
            r.generator.cpu_cores
        ));
    }
    out.extend(behaviour_findings(&r.behaviour));
    if r.totals.unexpected > 0 {
        out.push(format!(
            "{} deliveries came from devices this run does not expect (another shard or a stray \
             publisher on the same topics)",
            fmt_count(r.totals.unexpected)
        ));
    }
    out
}

/// What the behaviours' checks say about the broker, in words.
fn behaviour_findings(b: &fleetbench_metrics::behaviour::Behaviour) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(s) = b.status.as_ref().filter(|s| s.missing > 0) {
        out.push(format!(
            "{} of {} statuses never reached an observer subscribed to them{}",
            fmt_count(s.missing),
            fmt_count(s.expected),
            if s.retained_expected > 0 {
                " (a late observer gets a status only if the broker retained it)"
            } else {
                ""
            }
        ));
    }
    if let Some(s) = b.status.as_ref().filter(|s| s.not_retained > 0) {
        out.push(format!(
            "{} statuses reached a late observer without the retain flag: MQTT sets it on \
             messages sent from the broker's store",
            fmt_count(s.not_retained)
        ));
    }
    if let Some(w) = b.wills.as_ref().filter(|w| w.missing > 0) {
        out.push(format!(
            "the broker published {} of {} last wills owed for the {} devices that dropped \
             their connection",
            fmt_count(w.received),
            fmt_count(w.expected),
            fmt_count(w.dropped)
        ));
    }
    if let Some(w) = b.wills.as_ref().filter(|w| w.unexpected > 0) {
        out.push(format!(
            "{} last wills arrived from devices that disconnected properly or never dropped: \
             a DISCONNECT discards the will",
            fmt_count(w.unexpected)
        ));
    }
    if let Some(s) = b.sessions.as_ref().filter(|s| s.lost > 0) {
        out.push(format!(
            "the broker forgot {} of {} persistent sessions while their observers were away \
             (CONNACK without session-present): their subscriptions and queued messages are gone",
            fmt_count(s.lost),
            fmt_count(s.returns)
        ));
    }
    if let Some(c) = b.commands.as_ref().filter(|c| c.unanswered > 0) {
        out.push(format!(
            "{} of {} commands got no answer before the cutoff",
            fmt_count(c.unanswered),
            fmt_count(c.sent)
        ));
    }
    if let Some(m) = &b.mqtt5 {
        out.extend(mqtt5_findings(m));
    }
    out
}

fn mqtt5_findings(m: &fleetbench_metrics::behaviour::Mqtt5Check) -> Vec<String> {
    let mut out = Vec::new();
    if m.user_properties_missing > 0 {
        out.push(format!(
            "{} of {} messages arrived without the user properties their device sent: MQTT 5 \
             has the broker forward them unchanged",
            fmt_count(m.user_properties_missing),
            fmt_count(m.user_properties_expected)
        ));
    }
    if m.expiry_missing > 0 {
        out.push(format!(
            "{} of {} messages arrived without the time left of their message expiry interval \
             (or with more than was set): MQTT 5 has the broker forward what is left",
            fmt_count(m.expiry_missing),
            fmt_count(m.expiry_expected)
        ));
    }
    if m.delivered_after_expiry > 0 {
        out.push(format!(
            "{} messages were delivered after their expiry interval had run out since they left \
             the device: the broker should have discarded them",
            fmt_count(m.delivered_after_expiry)
        ));
    }
    if m.aliases_refused > 0 {
        out.push(format!(
            "the broker allowed no topic aliases (CONNACK topic alias maximum 0) to {} devices \
             that asked for them: they sent the whole topic every time",
            fmt_count(m.aliases_refused)
        ));
    }
    out
}
