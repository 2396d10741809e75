//! What a run found out: about the broker (a broken delivery guarantee, subscriptions not
//! granted, deliveries at another QoS, behaviours it got wrong) and about the run itself
//! (clients that never connected or lost their connection, a broker that went away or wedged,
//! deliveries left in flight, errors by the hundred, a generator that fell behind and why).
//!
//! Findings are worked out from a report's figures alone, so that merging reports works them
//! out again from the merged figures instead of comparing sentences. The report carries them
//! as text (`Display`).

mod text;

use crate::metric::Metric;
use crate::report::{BrokerWatch, QosMismatch, Report, SubscriptionGrant, Verdict};
use fleetbench_metrics::behaviour::Behaviour;
use fleetbench_metrics::fmt::fmt_count;
use fleetbench_scenario::FaultType;

/// One thing a run found out.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// Messages delivered at QoS 1 or 2 that never arrived.
    LostAtGuaranteedQos {
        lost: u64,
        embedded: bool,
        /// The broker restarts the run made (their labels): the loss happened across them.
        restarts: Vec<String>,
    },
    SubscriptionNotGranted(SubscriptionGrant),
    QosMismatch {
        m: QosMismatch,
        embedded: bool,
    },
    BrokerGone {
        since_s: f64,
        waited_s: f64,
        cause: Option<String>,
    },
    NeverConnected {
        devices: u32,
        cause: Option<String>,
    },
    Disconnected {
        devices: u32,
        cause: Option<String>,
    },
    /// A listener of the embedded broker stopped completing CONNECTs.
    ListenerWedged {
        port: u16,
        first_at_s: f64,
        reason: String,
        panics: u64,
        restarts: usize,
        serves_again: bool,
    },
    InFlight {
        deliveries: u64,
        interrupted: bool,
    },
    Errors {
        count: u64,
    },
    /// The generator's lateness decided what the run judged.
    GeneratorLate {
        /// Sends more than 1 ms late, and their share.
        late: u64,
        share: f64,
        max_lag_us: u64,
        /// Which rule it broke.
        rule: LateRule,
        cause: LateCause,
    },
    Behaviour(BehaviourFinding),
    Unexpected {
        deliveries: u64,
    },
    /// A fault that could not be injected (a restart that failed).
    FaultFailed {
        fault: String,
        why: String,
    },
    /// A fault whose devices were not all connected again before publishing ended.
    FaultUnrecovered {
        fault: String,
        connected_before: u64,
        lowest: u64,
        /// Every reconnect kept failing: more connection errors than connections cut, by kind
        /// ("io 320, connect refused 12"); None when the devices simply were not back.
        refused: Option<(u64, String)>,
        /// The broker is rumqttd (embedded or a child process).
        rumqttd: bool,
    },
    /// Shards of a sharded run whose reports were not merged, by `index/count`.
    ShardsMissing {
        shards: Vec<String>,
    },
    /// Shards that did not pass on their own: `index/count`, verdict, failed expectations.
    ShardsFailed {
        shards: Vec<(String, Option<Verdict>, Vec<String>)>,
    },
}

/// Which rule of the generator's lateness a run broke.
#[derive(Debug, Clone, PartialEq)]
pub enum LateRule {
    /// Latency verdicts that failed on every message and pass on the on-time sends: (name,
    /// observed, observed on the on-time sends, limit), microseconds.
    Decided(Vec<(String, f64, f64, f64)>),
    /// Sends more than [`crate::expect::BEHIND_MS`] late, and their share.
    Behind { sends: u64, share: f64 },
    /// More sends over 1 ms late than the scenario's `max_late_share`.
    Share { limit: f64 },
}

/// Why a generator fell behind: the advice follows the cause.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LateCause {
    /// Other processes kept the machine busy; fleetbench used little.
    BusyMachine { others: f64, ours: f64, cores: f64 },
    /// The machine's cores were full, fleetbench's own work among it.
    Saturated {
        machine: f64,
        cores: f64,
        generator: f64,
        broker: f64,
    },
    /// The machine had room to spare (or its load is unknown), and threads still woke late.
    WokenLate { ours: f64, cores: f64 },
}

/// What the behaviours' checks say about the broker.
#[derive(Debug, Clone, PartialEq)]
pub enum BehaviourFinding {
    StatusMissing {
        missing: u64,
        expected: u64,
        late_observers: bool,
    },
    StatusNotRetained {
        count: u64,
    },
    WillsMissing {
        received: u64,
        expected: u64,
        dropped: u64,
    },
    WillsUnexpected {
        count: u64,
    },
    SessionsLost {
        lost: u64,
        returns: u64,
    },
    CommandsUnanswered {
        unanswered: u64,
        sent: u64,
    },
    UserPropertiesMissing {
        missing: u64,
        expected: u64,
    },
    ExpiryMissing {
        missing: u64,
        expected: u64,
    },
    DeliveredAfterExpiry {
        count: u64,
    },
    AliasesRefused {
        devices: u64,
    },
}

/// Every finding of a report, in the order the summary prints them.
pub fn findings(r: &Report) -> Vec<Finding> {
    let embedded = r.embedded_broker();
    let mut out = Vec::new();
    let lost = r.lost_at_guaranteed_qos();
    if lost > 0 {
        let restarts = (r.faults.iter())
            .filter(|f| f.kind == FaultType::BrokerRestart && f.failed.is_none())
            .map(|f| f.fault.clone())
            .collect();
        out.push(Finding::LostAtGuaranteedQos {
            lost,
            embedded,
            restarts,
        });
    }
    out.extend(
        r.subscriptions_not_granted
            .iter()
            .cloned()
            .map(Finding::SubscriptionNotGranted),
    );
    out.extend(
        r.qos_mismatches
            .iter()
            .map(|m| Finding::QosMismatch { m: *m, embedded }),
    );
    out.extend(shard_health(r));
    out.extend(r.faults.iter().filter_map(|f| {
        Some(Finding::FaultFailed {
            fault: f.fault.clone(),
            why: f.failed.clone()?,
        })
    }));
    out.extend(
        (r.faults.iter())
            .filter(|f| f.recovery_s.is_none() && f.failed.is_none())
            .map(|f| Finding::FaultUnrecovered {
                fault: f.fault.clone(),
                connected_before: f.connected_before,
                lowest: f.lowest_connected,
                refused: (f.connection_errors > f.cuts).then(|| {
                    let by: Vec<String> = (f.connection_errors_by.iter())
                        .map(|(k, n)| format!("{k} {}", fmt_count(*n)))
                        .collect();
                    (f.connection_errors, by.join(", "))
                }),
                rumqttd: embedded || r.resources.broker_process.is_some(),
            }),
    );
    out.extend(run_health(r));
    out.extend(behaviour(&r.behaviour).into_iter().map(Finding::Behaviour));
    if r.totals.unexpected > 0 {
        out.push(Finding::Unexpected {
            deliveries: r.totals.unexpected,
        });
    }
    out
}

/// Whether the expectation on `m` failed.
fn failed(r: &Report, m: Metric) -> bool {
    r.expectations.iter().any(|e| e.name == m.name() && !e.ok)
}

/// The latest error of the connection kinds, for naming a cause.
fn latest_connection_error(r: &Report) -> Option<String> {
    (fleetbench_metrics::ErrorKind::CONNECTION.iter())
        .filter_map(|k| r.errors.get(k))
        .map(|g| g.latest.chars().take(120).collect::<String>())
        .next()
}

/// What the run says about its own trustworthiness.
fn run_health(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    let cause = latest_connection_error(r);
    if let Some(g) = &r.run.broker_gone {
        out.push(Finding::BrokerGone {
            since_s: g.since_s,
            waited_s: g.waited_s,
            cause: cause.clone(),
        });
    }
    if r.timing.never_connected > 0 && !r.run.interrupted {
        out.push(Finding::NeverConnected {
            devices: r.timing.never_connected,
            cause: cause.clone(),
        });
    }
    if r.timing.disconnected > 0 {
        out.push(Finding::Disconnected {
            devices: r.timing.disconnected,
            cause,
        });
    }
    if let Some(w) = &r.broker_watch {
        out.extend(wedged_listeners(w));
    }
    if r.totals.in_flight > 0 {
        out.push(Finding::InFlight {
            deliveries: r.totals.in_flight,
            interrupted: r.run.interrupted,
        });
    }
    if failed(r, Metric::Errors) {
        out.push(Finding::Errors {
            count: r.errors.values().map(|g| g.count).sum(),
        });
    }
    out.extend(generator_late(r));
    out
}

/// The generator's lateness, when it decided a verdict (one finding, by the first rule broken).
fn generator_late(r: &Report) -> Option<Finding> {
    let rule = if failed(r, Metric::GeneratorLimited) {
        let decided = (r.expectations.iter())
            .filter(|e| !e.ok)
            .filter_map(|e| Some((e, Metric::from_name(&e.name)?)))
            .filter_map(|(e, m)| {
                let on_time = crate::lateness::on_time_value(m, &r.latency)?;
                let all_late = r.latency.on_time.count == 0;
                (all_late || on_time <= e.limit)
                    .then(|| (m.label().to_string(), e.observed, on_time, e.limit))
            })
            .collect();
        LateRule::Decided(decided)
    } else if failed(r, Metric::GeneratorBehind) {
        LateRule::Behind {
            sends: r.behind_sends(),
            share: r.behind_sends() as f64 / r.totals.sent.max(1) as f64,
        }
    } else if let Some(e) =
        (r.expectations.iter()).find(|e| e.name == Metric::GeneratorLateShare.name() && !e.ok)
    {
        LateRule::Share { limit: e.limit }
    } else {
        return None;
    };
    Some(Finding::GeneratorLate {
        late: r.generator.late_sends,
        share: r.late_share(),
        max_lag_us: r.generator.max_lag_us,
        rule,
        cause: late_cause(r),
    })
}

/// Missing and failed shards of a merged sharded run, named.
fn shard_health(r: &Report) -> Vec<Finding> {
    let mut out = Vec::new();
    if let Some(missing) = crate::shards::missing(r).filter(|m| !m.is_empty()) {
        out.push(Finding::ShardsMissing {
            shards: missing.iter().map(|s| s.shard.clone()).collect(),
        });
    }
    if let Some(failed) = crate::shards::failed(r).filter(|f| !f.is_empty()) {
        out.push(Finding::ShardsFailed {
            shards: (failed.iter())
                .map(|s| (s.shard.clone(), s.verdict, s.failed.clone()))
                .collect(),
        });
    }
    out
}

/// One finding per listener the broker's watch restarted.
fn wedged_listeners(w: &BrokerWatch) -> Vec<Finding> {
    let mut ports: Vec<u16> = w.restarts.iter().map(|x| x.port).collect();
    ports.dedup();
    ports
        .into_iter()
        .filter_map(|port| {
            let of_port: Vec<_> = w.restarts.iter().filter(|x| x.port == port).collect();
            let (first, last) = (of_port.first()?, of_port.last()?);
            Some(Finding::ListenerWedged {
                port,
                first_at_s: first.at_s,
                reason: first.reason.clone(),
                panics: w.panics,
                restarts: of_port.len(),
                serves_again: last.recovered,
            })
        })
        .collect()
}

/// Why the generator was late, from where the CPU went: other work on the machine, full
/// cores, or threads woken late on a machine with room to spare.
pub fn late_cause(r: &Report) -> LateCause {
    let cores = f64::from(r.environment.cores.max(1));
    let ours = r.resources.cpu.total() + r.resources.broker_process.map_or(0.0, |p| p.cpu_cores);
    match r.resources.machine_busy_cores {
        Some(machine) if machine - ours >= 0.5 && machine - ours >= ours => {
            LateCause::BusyMachine {
                others: machine - ours,
                ours,
                cores,
            }
        }
        Some(machine) if machine >= 0.85 * cores => LateCause::Saturated {
            machine,
            cores,
            generator: r.generator.cpu_cores,
            broker: r.resources.cpu.broker,
        },
        _ => LateCause::WokenLate { ours, cores },
    }
}

/// What the behaviours' checks say about the broker.
fn behaviour(b: &Behaviour) -> Vec<BehaviourFinding> {
    use BehaviourFinding::*;
    let mut out = Vec::new();
    if let Some(s) = &b.status {
        if s.missing > 0 {
            out.push(StatusMissing {
                missing: s.missing,
                expected: s.expected,
                late_observers: s.retained_expected > 0,
            });
        }
        if s.not_retained > 0 {
            out.push(StatusNotRetained {
                count: s.not_retained,
            });
        }
    }
    if let Some(w) = &b.wills {
        if w.missing > 0 {
            out.push(WillsMissing {
                received: w.received,
                expected: w.expected,
                dropped: w.dropped,
            });
        }
        if w.unexpected > 0 {
            out.push(WillsUnexpected {
                count: w.unexpected,
            });
        }
    }
    if let Some(s) = b.sessions.as_ref().filter(|s| s.lost > 0) {
        out.push(SessionsLost {
            lost: s.lost,
            returns: s.returns,
        });
    }
    if let Some(c) = b.commands.as_ref().filter(|c| c.unanswered > 0) {
        out.push(CommandsUnanswered {
            unanswered: c.unanswered,
            sent: c.sent,
        });
    }
    if let Some(m) = &b.mqtt5 {
        let found = [
            (m.user_properties_missing > 0).then_some(UserPropertiesMissing {
                missing: m.user_properties_missing,
                expected: m.user_properties_expected,
            }),
            (m.expiry_missing > 0).then_some(ExpiryMissing {
                missing: m.expiry_missing,
                expected: m.expiry_expected,
            }),
            (m.delivered_after_expiry > 0).then_some(DeliveredAfterExpiry {
                count: m.delivered_after_expiry,
            }),
            (m.aliases_refused > 0).then_some(AliasesRefused {
                devices: m.aliases_refused,
            }),
        ];
        out.extend(found.into_iter().flatten());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::MergeKind;

    fn with_cpu(machine: f64, ours: f64) -> Report {
        let mut r = crate::fixture::report(400, 900, 0, 1_000.0);
        r.environment.cores = 2;
        r.resources.machine_busy_cores = Some(machine);
        r.resources.cpu.generator = ours * 0.8;
        r.resources.cpu.broker = ours * 0.2;
        r.generator.cpu_cores = ours * 0.8;
        r
    }

    #[test]
    fn a_listener_that_refuses_every_reconnect_after_a_storm_is_named() {
        let mut r = crate::fixture::report(400, 900, 0, 1_000.0);
        r.faults = vec![crate::report::FaultReport {
            fault: "disconnect of sensor at 6s".into(),
            kind: fleetbench_scenario::FaultType::Disconnect,
            cuts: 250,
            connected_before: 500,
            lowest_connected: 250,
            recovery_s: None,
            connection_errors: 4_000,
            connection_errors_by: [(fleetbench_metrics::ErrorKind::Io, 4_000)].into(),
            ..Default::default()
        }];
        let text = |r: &Report| {
            (findings(r).iter())
                .map(ToString::to_string)
                .find(|f| f.contains("never recovered"))
                .expect("unrecovered")
        };
        let wedged = text(&r);
        assert!(
            wedged.contains("4,000 connection errors: io 4,000"),
            "{wedged}"
        );
        assert!(wedged.contains("refuses new CONNECTs"), "{wedged}");
        // rumqttd's lock is named only when the broker is rumqttd.
        assert_eq!(
            wedged.contains("poisons a lock"),
            r.embedded_broker(),
            "{wedged}"
        );
        r.run.tcp_nodelay = Some(true);
        assert!(text(&r).contains("poisons a lock"));
        // Devices merely not back (no failing reconnects) are not called refused.
        r.faults[0].connection_errors = 10;
        assert!(!text(&r).contains("refuses"));
    }

    #[test]
    fn the_advice_follows_the_cause_of_lateness() {
        // Others kept the machine busy while fleetbench used a sliver: starved, not overloaded.
        let starved = late_cause(&with_cpu(1.9, 0.01)).to_string();
        assert!(starved.contains("other processes kept 1.89"), "{starved}");
        assert!(!starved.contains("fewer devices"), "{starved}");
        // fleetbench itself filled the cores.
        let saturated = late_cause(&with_cpu(1.95, 1.9)).to_string();
        assert!(saturated.contains("saturated"), "{saturated}");
        assert!(saturated.contains("fewer devices"), "{saturated}");
        // Room to spare, and still late.
        let woken = late_cause(&with_cpu(0.4, 0.3)).to_string();
        assert!(woken.contains("not saturated"), "{woken}");
        // Without /proc/stat, nothing is claimed about other processes.
        let mut unknown = with_cpu(0.0, 0.3);
        unknown.resources.machine_busy_cores = None;
        let unknown = late_cause(&unknown).to_string();
        assert!(!unknown.contains("other processes"), "{unknown}");
    }

    #[test]
    fn merging_works_findings_out_again_from_the_merged_figures() {
        // Two shards, each losing 3 messages at QoS 1 and refusing one subscription.
        let shard = |i: u32| {
            let mut r = crate::fixture::report(400, 900, 3, 1_000.0);
            r.run.shard = format!("{i}/2");
            r.subscriptions_not_granted.push(SubscriptionGrant {
                observer: format!("o-{i}"),
                filter: "a/#".into(),
                asked: 1,
                granted: None,
            });
            r.judge(|r| crate::expect::evaluate(&Default::default(), r));
            r
        };
        let (a, b) = (shard(0), shard(1));
        assert!(
            a.findings[0].starts_with("3 messages delivered at QoS 1 or 2"),
            "{:?}",
            a.findings
        );
        let merged = crate::merge::merge(&[a, b], MergeKind::Shards).expect("merge");
        let lost: Vec<&String> = merged
            .findings
            .iter()
            .filter(|f| f.contains("delivered at QoS 1 or 2"))
            .collect();
        assert_eq!(
            lost.len(),
            1,
            "one finding, of the merged count: {:?}",
            merged.findings
        );
        assert!(lost[0].starts_with("6 messages"), "{lost:?}");
        let refused = merged
            .findings
            .iter()
            .filter(|f| f.contains("refused observer"))
            .count();
        assert_eq!(refused, 2, "{:?}", merged.findings);
    }
}
