//! What a run found out, in words: about the broker (loss at QoS 1 or 2, grants, QoS used,
//! behaviours) and about the run itself (clients that never connected or lost their
//! connection, a broker that went away or wedged, deliveries left in flight, a generator that
//! fell behind and why).

use fleetbench_fleet::FleetOutcome;
use fleetbench_metrics::metric::Metric;
use fleetbench_metrics::report::Report;
use fleetbench_metrics::summary::{fmt_count, fmt_us};
use fleetbench_scenario::Plan;

use crate::report::RunContext;

pub(crate) fn findings(
    plan: &Plan,
    fleet: &FleetOutcome,
    r: &Report,
    ctx: &RunContext,
) -> Vec<String> {
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
    out.extend(run_health(r, ctx));
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

/// Whether the expectation on `m` failed.
fn failed(r: &Report, m: Metric) -> bool {
    r.expectations.iter().any(|e| e.name == m.name() && !e.ok)
}

/// The latest error of the connection kinds, for naming a cause.
fn latest_connection_error(r: &Report) -> Option<String> {
    [
        "connect refused",
        "io",
        "timeout",
        "tls",
        "websocket",
        "connection",
        "protocol",
    ]
    .iter()
    .filter_map(|k| r.errors.get(*k))
    .map(|g| g.latest.chars().take(120).collect::<String>())
    .next()
}

/// What the run itself says about its trustworthiness.
fn run_health(r: &Report, ctx: &RunContext) -> Vec<String> {
    let mut out = Vec::new();
    let cause = latest_connection_error(r)
        .map(|e| format!(" (latest connection error: {e})"))
        .unwrap_or_default();
    if let Some(g) = &r.run.broker_gone {
        out.push(format!(
            "the broker went away at {:.1}s: every device and observer had lost its connection \
             and none came back within {:.0}s, so the run ended early{cause}",
            g.since_s, g.waited_s
        ));
    }
    if r.timing.never_connected > 0 && !r.run.interrupted {
        out.push(format!(
            "{} devices never connected{cause}",
            fmt_count(u64::from(r.timing.never_connected))
        ));
    }
    if r.timing.disconnected > 0 {
        out.push(format!(
            "{} devices had lost their connection, not by design, when publishing ended{cause}",
            fmt_count(u64::from(r.timing.disconnected))
        ));
    }
    if let Some(w) = &r.broker_watch {
        out.extend(wedged_listeners(w));
    }
    if r.totals.in_flight > 0 {
        out.push(format!(
            "{} deliveries were still in flight at the cutoff ({}); they are neither delivered \
             nor lost",
            fmt_count(r.totals.in_flight),
            if r.run.interrupted {
                "the run was interrupted"
            } else {
                "the broker had not acknowledged them, or the client not sent them, when their \
                 device left; a broker that is merely behind may deliver them within a longer \
                 drain_timeout"
            }
        ));
    }
    if failed(r, Metric::Errors) {
        let n: u64 = r.errors.values().map(|g| g.count).sum();
        out.push(format!(
            "{} errors were logged (more than the scenario allows, expect.max_errors): a run \
             this troubled does not pass",
            fmt_count(n)
        ));
    }
    if failed(r, Metric::GeneratorLateShare) {
        out.push(late_finding(r, ctx));
    }
    out
}

/// The generator fell behind: how far, and why, from what the machine was doing.
fn late_finding(r: &Report, ctx: &RunContext) -> String {
    let head = format!(
        "the generator fell behind its schedule: {} sends ({:.2}%) left more than 1 ms after \
         they were due (worst {} behind). Latency from intended includes that delay, so this run \
         measured the load generator as much as the broker; the verdict fails.",
        fmt_count(r.generator.late_sends),
        r.late_share() * 100.0,
        fmt_us(r.generator.max_lag_us),
    );
    let cpu = Cpu {
        cores: f64::from(r.environment.cores.max(1)),
        machine: ctx.machine_busy_cores,
        ours: r.resources.cpu.total() + r.resources.broker_process.map_or(0.0, |p| p.cpu_cores),
        generator: r.generator.cpu_cores,
        broker: r.resources.cpu.broker,
    };
    head + &late_cause(&cpu)
}

/// Where the run's CPU went, in cores.
struct Cpu {
    cores: f64,
    /// The whole machine, every process (None where unknown).
    machine: Option<f64>,
    /// fleetbench's process, and its broker's when that ran as a child.
    ours: f64,
    generator: f64,
    broker: f64,
}

/// Why a generator falls behind: other work on the machine, saturated cores, or threads woken
/// late on a machine with room to spare. The advice follows the cause.
fn late_cause(c: &Cpu) -> String {
    let Cpu {
        cores,
        ours,
        generator,
        broker,
        ..
    } = *c;
    match c.machine {
        Some(machine) if machine - ours >= 0.5 && machine - ours >= ours => format!(
            " The machine was busy: other processes kept {:.2} of its {cores:.0} cores busy \
             while fleetbench used {ours:.2}; the generator was starved, not overloaded. Run it \
             on a quieter machine or give it cores of its own.",
            machine - ours
        ),
        Some(machine) if machine >= 0.85 * cores => format!(
            " The machine's cores were saturated ({machine:.2} of {cores:.0} busy; generator \
             {generator:.2}, broker {broker:.2}): fewer devices per process, the broker in a \
             process of its own ([broker] process = \"child\") or shards on more machines help."
        ),
        _ => format!(
            " fleetbench used {ours:.2} of {cores:.0} cores, so the machine was not saturated: \
             its threads were woken late (scheduler or timer latency, a virtual machine's \
             stolen time)."
        ),
    }
}

/// One finding per listener the broker's watch restarted.
fn wedged_listeners(w: &fleetbench_metrics::report::BrokerWatch) -> Vec<String> {
    let mut ports: Vec<u16> = w.restarts.iter().map(|x| x.port).collect();
    ports.dedup();
    ports
        .into_iter()
        .filter_map(|port| {
            let of_port: Vec<_> = w.restarts.iter().filter(|x| x.port == port).collect();
            let (first, last) = (of_port.first()?, of_port.last()?);
            Some(format!(
                "the embedded broker's listener on port {port} stopped completing CONNECTs at \
                 {:.1}s ({}); rumqttd panicked {} times in all (a CONNECT reset before its \
                 CONNACK poisons a listener's will-handler lock for every later client); \
                 fleetbench restarted it {} and it {}",
                first.at_s,
                first.reason,
                fmt_count(w.panics),
                match of_port.len() {
                    1 => "once".to_string(),
                    n => format!("{n} times"),
                },
                if last.recovered {
                    "served again"
                } else {
                    "did not answer after its last restart"
                }
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cpu(machine: f64, ours: f64) -> Cpu {
        Cpu {
            cores: 2.0,
            machine: Some(machine),
            ours,
            generator: ours * 0.8,
            broker: ours * 0.2,
        }
    }

    #[test]
    fn the_advice_follows_the_cause_of_lateness() {
        // Others kept the machine busy while fleetbench used a sliver: starved, not overloaded.
        let starved = late_cause(&cpu(1.9, 0.01));
        assert!(starved.contains("other processes kept 1.89"), "{starved}");
        assert!(!starved.contains("fewer devices"), "{starved}");
        // fleetbench itself filled the cores.
        let saturated = late_cause(&cpu(1.95, 1.9));
        assert!(
            saturated.contains("saturated") && saturated.contains("fewer devices"),
            "{saturated}"
        );
        // Room to spare, and still late.
        let woken_late = late_cause(&cpu(0.4, 0.3));
        assert!(woken_late.contains("not saturated"), "{woken_late}");
        // Without /proc/stat, nothing is claimed about other processes.
        let unknown = late_cause(&Cpu {
            machine: None,
            ..cpu(0.0, 0.3)
        });
        assert!(!unknown.contains("other processes"), "{unknown}");
    }
}
