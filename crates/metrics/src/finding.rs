//! What a run found out: about the broker (a broken delivery guarantee, subscriptions not
//! granted, deliveries at another QoS, behaviours it got wrong) and about the run itself
//! (clients that never connected or lost their connection, a broker that went away or wedged,
//! deliveries left in flight, errors by the hundred, a generator that fell behind and why).
//!
//! Findings are worked out from a report's figures alone, so that merging reports works them
//! out again from the merged figures instead of comparing sentences. The report carries them
//! as text (`Display`).

use std::fmt;

use crate::behaviour::Behaviour;
use crate::metric::Metric;
use crate::report::{BrokerWatch, QosMismatch, Report, SubscriptionGrant};
use crate::summary::{fmt_count, fmt_us};

/// One thing a run found out.
#[derive(Debug, Clone, PartialEq)]
pub enum Finding {
    /// Messages delivered at QoS 1 or 2 that never arrived.
    LostAtGuaranteedQos {
        lost: u64,
        embedded: bool,
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
    GeneratorLate {
        late: u64,
        share: f64,
        max_lag_us: u64,
        cause: LateCause,
    },
    Behaviour(BehaviourFinding),
    Unexpected {
        deliveries: u64,
    },
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
        out.push(Finding::LostAtGuaranteedQos { lost, embedded });
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
    if failed(r, Metric::GeneratorLateShare) {
        out.push(Finding::GeneratorLate {
            late: r.generator.late_sends,
            share: r.late_share(),
            max_lag_us: r.generator.max_lag_us,
            cause: late_cause(r),
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

/// " (latest connection error: ...)", when there is one.
fn because(cause: &Option<String>) -> String {
    cause
        .as_ref()
        .map(|e| format!(" (latest connection error: {e})"))
        .unwrap_or_default()
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use Finding::*;
        match self {
            LostAtGuaranteedQos { lost, embedded } => {
                write!(
                    f,
                    "{} messages delivered at QoS 1 or 2 never reached their observer: the \
                     broker broke its delivery guarantee.",
                    fmt_count(*lost)
                )?;
                if *embedded {
                    f.write_str(
                        " rumqttd acknowledges publishes and drops messages when a subscriber \
                         falls further behind than its in-memory log holds (a 'Read cursor start \
                         jumped' warning in its log).",
                    )?;
                }
                Ok(())
            }
            SubscriptionNotGranted(g) => match g.granted {
                None => write!(
                    f,
                    "the broker refused observer {}'s subscription to {:?}",
                    g.observer, g.filter
                ),
                Some(q) => write!(
                    f,
                    "observer {} asked for QoS {} on {:?} and was granted QoS {q}; deliveries \
                     are judged at the granted QoS",
                    g.observer, g.asked, g.filter
                ),
            },
            QosMismatch { m, embedded } => {
                write!(
                    f,
                    "the broker delivered {} messages at QoS {} that MQTT says are due at QoS {} \
                     (the lower of the publish's QoS and the subscription's grant)",
                    fmt_count(m.count),
                    m.used,
                    m.due
                )?;
                if *embedded && m.used == 2 {
                    f.write_str(
                        ": rumqttd sends everything at QoS 2 to a subscriber granted QoS 2, \
                         adding a PUBREC/PUBREL/PUBCOMP exchange per message that QoS 0 and 1 \
                         do not ask for",
                    )?;
                }
                Ok(())
            }
            BrokerGone {
                since_s,
                waited_s,
                cause,
            } => write!(
                f,
                "the broker went away at {since_s:.1}s: every device and observer had lost its \
                 connection and none came back within {waited_s:.0}s, so the run ended early{}",
                because(cause)
            ),
            NeverConnected { devices, cause } => write!(
                f,
                "{} devices never connected{}",
                fmt_count(u64::from(*devices)),
                because(cause)
            ),
            Disconnected { devices, cause } => write!(
                f,
                "{} devices had lost their connection, not by design, when publishing ended{}",
                fmt_count(u64::from(*devices)),
                because(cause)
            ),
            ListenerWedged {
                port,
                first_at_s,
                reason,
                panics,
                restarts,
                serves_again,
            } => write!(
                f,
                "the embedded broker's listener on port {port} stopped completing CONNECTs at \
                 {first_at_s:.1}s ({reason}); rumqttd panicked {} times in all (a CONNECT reset \
                 before its CONNACK poisons a listener's will-handler lock for every later \
                 client); fleetbench restarted it {} and it {}",
                fmt_count(*panics),
                match restarts {
                    1 => "once".to_string(),
                    n => format!("{n} times"),
                },
                if *serves_again {
                    "served again"
                } else {
                    "did not answer after its last restart"
                }
            ),
            InFlight {
                deliveries,
                interrupted,
            } => write!(
                f,
                "{} deliveries were still in flight at the cutoff ({}); they are neither \
                 delivered nor lost",
                fmt_count(*deliveries),
                if *interrupted {
                    "the run was interrupted"
                } else {
                    "the broker had not acknowledged them, or the client not sent them, when \
                     their device left; a broker that is merely behind may deliver them within a \
                     longer drain_timeout"
                }
            ),
            Errors { count } => write!(
                f,
                "{} errors were logged (more than the scenario allows, expect.max_errors): a run \
                 this troubled does not pass",
                fmt_count(*count)
            ),
            GeneratorLate {
                late,
                share,
                max_lag_us,
                cause,
            } => write!(
                f,
                "the generator fell behind its schedule: {} sends ({:.2}%) left more than 1 ms \
                 after they were due (worst {} behind). Latency from intended includes that \
                 delay, so this run measured the load generator as much as the broker; the \
                 verdict fails. {cause}",
                fmt_count(*late),
                share * 100.0,
                fmt_us(*max_lag_us),
            ),
            Behaviour(b) => b.fmt(f),
            Unexpected { deliveries } => write!(
                f,
                "{} deliveries came from devices this run does not expect (another shard or a \
                 stray publisher on the same topics)",
                fmt_count(*deliveries)
            ),
        }
    }
}

impl fmt::Display for LateCause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            LateCause::BusyMachine {
                others,
                ours,
                cores,
            } => write!(
                f,
                "The machine was busy: other processes kept {others:.2} of its {cores:.0} cores \
                 busy while fleetbench used {ours:.2}; the generator was starved, not \
                 overloaded. Run it on a quieter machine or give it cores of its own."
            ),
            LateCause::Saturated {
                machine,
                cores,
                generator,
                broker,
            } => write!(
                f,
                "The machine's cores were saturated ({machine:.2} of {cores:.0} busy; generator \
                 {generator:.2}, broker {broker:.2}): fewer devices per process, the broker in a \
                 process of its own ([broker] process = \"child\") or shards on more machines \
                 help."
            ),
            LateCause::WokenLate { ours, cores } => write!(
                f,
                "fleetbench used {ours:.2} of {cores:.0} cores, so the machine was not \
                 saturated: its threads were woken late (scheduler or timer latency, a virtual \
                 machine's stolen time)."
            ),
        }
    }
}

impl fmt::Display for BehaviourFinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use BehaviourFinding::*;
        let n = |v: &u64| fmt_count(*v);
        match self {
            StatusMissing {
                missing,
                expected,
                late_observers,
            } => write!(
                f,
                "{} of {} statuses never reached an observer subscribed to them{}",
                n(missing),
                n(expected),
                if *late_observers {
                    " (a late observer gets a status only if the broker retained it)"
                } else {
                    ""
                }
            ),
            StatusNotRetained { count } => write!(
                f,
                "{} statuses reached a late observer without the retain flag: MQTT sets it on \
                 messages sent from the broker's store",
                n(count)
            ),
            WillsMissing {
                received,
                expected,
                dropped,
            } => write!(
                f,
                "the broker published {} of {} last wills owed for the {} devices that dropped \
                 their connection",
                n(received),
                n(expected),
                n(dropped)
            ),
            WillsUnexpected { count } => write!(
                f,
                "{} last wills arrived from devices that disconnected properly or never dropped: \
                 a DISCONNECT discards the will",
                n(count)
            ),
            SessionsLost { lost, returns } => write!(
                f,
                "the broker forgot {} of {} persistent sessions while their observers were away \
                 (CONNACK without session-present): their subscriptions and queued messages are \
                 gone",
                n(lost),
                n(returns)
            ),
            CommandsUnanswered { unanswered, sent } => write!(
                f,
                "{} of {} commands got no answer before the cutoff",
                n(unanswered),
                n(sent)
            ),
            UserPropertiesMissing { missing, expected } => write!(
                f,
                "{} of {} messages arrived without the user properties their device sent: MQTT 5 \
                 has the broker forward them unchanged",
                n(missing),
                n(expected)
            ),
            ExpiryMissing { missing, expected } => write!(
                f,
                "{} of {} messages arrived without the time left of their message expiry \
                 interval (or with more than was set): MQTT 5 has the broker forward what is left",
                n(missing),
                n(expected)
            ),
            DeliveredAfterExpiry { count } => write!(
                f,
                "{} messages were delivered after their expiry interval had run out since they \
                 left the device: the broker should have discarded them",
                n(count)
            ),
            AliasesRefused { devices } => write!(
                f,
                "the broker allowed no topic aliases (CONNACK topic alias maximum 0) to {} \
                 devices that asked for them: they sent the whole topic every time",
                n(devices)
            ),
        }
    }
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
