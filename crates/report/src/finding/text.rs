//! Findings in words: what the report carries and the summary prints.

use std::fmt::{self, Formatter, Result};

use super::{BehaviourFinding, Finding, LateCause, LateRule};
use crate::report::{QosMismatch, SubscriptionGrant, Verdict};
use fleetbench_metrics::fmt::{fmt_count, fmt_us};

/// " (latest connection error: ...)", when there is one.
fn because(cause: &Option<String>) -> String {
    cause
        .as_ref()
        .map(|e| format!(" (latest connection error: {e})"))
        .unwrap_or_default()
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
        use Finding::*;
        match self {
            LostAtGuaranteedQos {
                lost,
                embedded,
                restarts,
            } => lost_guarantee(f, *lost, *embedded, restarts),
            SubscriptionNotGranted(g) => not_granted(f, g),
            QosMismatch { m, embedded } => other_qos(f, m, *embedded),
            BrokerGone {
                since_s,
                waited_s,
                cause,
            } => broker_gone(f, *since_s, *waited_s, cause),
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
            ListenerWedged { .. } => wedged(f, self),
            InFlight {
                deliveries,
                interrupted,
            } => in_flight(f, *deliveries, *interrupted),
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
                rule,
                cause,
            } => {
                generator_late(f, rule)?;
                write!(
                    f,
                    " ({} sends, {:.2}%, left more than 1 ms after they were due, the worst {} \
                     behind). {cause}",
                    fmt_count(*late),
                    share * 100.0,
                    fmt_us(*max_lag_us),
                )
            }
            Behaviour(b) => b.fmt(f),
            Unexpected { deliveries } => write!(
                f,
                "{} deliveries came from devices this run does not expect (another shard or a \
                 stray publisher on the same topics)",
                fmt_count(*deliveries)
            ),
            ShardsMissing { shards } => shards_missing(f, shards),
            ShardsFailed { shards } => shards_failed(f, shards),
            FaultUnrecovered {
                fault,
                connected_before,
                lowest,
                refused,
                rumqttd,
            } => unrecovered(f, fault, (*connected_before, *lowest), refused, *rumqttd),
            FaultFailed { fault, why } => write!(
                f,
                "the {fault} did not happen as the scenario says ({why}): the run did not test \
                 what it claims, so the verdict fails"
            ),
        }
    }
}

fn broker_gone(
    f: &mut Formatter<'_>,
    since_s: f64,
    waited_s: f64,
    cause: &Option<String>,
) -> Result {
    write!(
        f,
        "the broker went away at {since_s:.1}s: every device and observer had lost its \
         connection and none came back within {waited_s:.0}s, so the run ended early{}",
        because(cause)
    )
}

fn shards_missing(f: &mut Formatter<'_>, shards: &[String]) -> Result {
    write!(
        f,
        "shard{} {} of this run {} no report in the merge (the pod failed, or its report was not \
         collected): the run is not whole, so the verdict fails",
        if shards.len() == 1 { "" } else { "s" },
        shards.join(", "),
        if shards.len() == 1 { "has" } else { "have" },
    )
}

/// A fault the devices never came back from; `refused`: the connection errors meanwhile and
/// their kinds, when reconnects kept failing.
fn unrecovered(
    f: &mut Formatter<'_>,
    fault: &str,
    (connected_before, lowest): (u64, u64),
    refused: &Option<(u64, String)>,
    rumqttd: bool,
) -> Result {
    write!(
        f,
        "the {fault} was never recovered from: {} devices were connected before it, as few as \
         {} during it, and they were not all back before publishing ended; the verdict fails",
        fmt_count(connected_before),
        fmt_count(lowest)
    )?;
    let Some((errors, by)) = refused else {
        return Ok(());
    };
    write!(
        f,
        ". Reconnects kept failing ({} connection errors: {by}) while the connections that \
         stayed up went on: the broker's listener refuses new CONNECTs",
        fmt_count(*errors)
    )?;
    if rumqttd {
        f.write_str(
            ". rumqttd does this after reconnects with reused client ids were reset before their \
             CONNACK (it poisons a lock of the listener); restart the broker, and reconnect with \
             a jittered backoff",
        )?;
    }
    Ok(())
}

fn lost_guarantee(f: &mut Formatter<'_>, lost: u64, embedded: bool, restarts: &[String]) -> Result {
    write!(
        f,
        "{} messages delivered at QoS 1 or 2 never reached their observer: the broker broke its \
         delivery guarantee.",
        fmt_count(lost)
    )?;
    match (embedded, restarts.is_empty()) {
        (true, false) => write!(
            f,
            " The run restarted the broker ({}), and rumqttd keeps sessions and queued messages \
             in memory only: what it had acknowledged and not yet delivered went with it.",
            restarts.join(", ")
        ),
        (false, false) => write!(
            f,
            " The run restarted the broker ({}): a broker that persists sessions loses nothing \
             across a restart.",
            restarts.join(", ")
        ),
        (true, true) => f.write_str(
            " rumqttd acknowledges publishes and drops messages when a subscriber falls further \
             behind than its in-memory log holds (a 'Read cursor start jumped' warning in its \
             log).",
        ),
        (false, true) => Ok(()),
    }
}

fn not_granted(f: &mut Formatter<'_>, g: &SubscriptionGrant) -> Result {
    match g.granted {
        None => write!(
            f,
            "the broker refused observer {}'s subscription to {:?}",
            g.observer, g.filter
        ),
        Some(q) => write!(
            f,
            "observer {} asked for QoS {} on {:?} and was granted QoS {q}; deliveries are judged \
             at the granted QoS",
            g.observer, g.asked, g.filter
        ),
    }
}

fn other_qos(f: &mut Formatter<'_>, m: &QosMismatch, embedded: bool) -> Result {
    write!(
        f,
        "the broker delivered {} messages at QoS {} that MQTT says are due at QoS {} (the lower \
         of the publish's QoS and the subscription's grant)",
        fmt_count(m.count),
        m.used,
        m.due
    )?;
    if embedded && m.used == 2 {
        f.write_str(
            ": rumqttd sends everything at QoS 2 to a subscriber granted QoS 2, adding a \
             PUBREC/PUBREL/PUBCOMP exchange per message that QoS 0 and 1 do not ask for",
        )?;
    }
    Ok(())
}

fn wedged(f: &mut Formatter<'_>, w: &Finding) -> Result {
    let Finding::ListenerWedged {
        port,
        first_at_s,
        reason,
        panics,
        restarts,
        serves_again,
    } = w
    else {
        return Ok(());
    };
    write!(
        f,
        "the embedded broker's listener on port {port} stopped completing CONNECTs at \
         {first_at_s:.1}s ({reason}); rumqttd panicked {} times in all (a CONNECT reset before \
         its CONNACK poisons a listener's will-handler lock for every later client); fleetbench \
         restarted it {} and it {}",
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
    )
}

fn in_flight(f: &mut Formatter<'_>, deliveries: u64, interrupted: bool) -> Result {
    write!(
        f,
        "{} deliveries were still in flight at the cutoff ({}); they are neither delivered nor \
         lost",
        fmt_count(deliveries),
        if interrupted {
            "the run was interrupted"
        } else {
            "the broker had not acknowledged them, or the client not sent them, when their \
             device left; a broker that is merely behind may deliver them within a longer \
             drain_timeout"
        }
    )
}

/// What the generator's lateness decided, by the rule it broke.
fn generator_late(f: &mut fmt::Formatter<'_>, rule: &LateRule) -> fmt::Result {
    match rule {
        LateRule::Decided(decided) => {
            f.write_str("the generator's late sends decided the latency verdict: ")?;
            for (i, (label, observed, on_time, limit)) in decided.iter().enumerate() {
                if i > 0 {
                    f.write_str("; ")?;
                }
                write!(
                    f,
                    "{label} was {} against {}, {} on the sends that left on time",
                    fmt_us(*observed as u64),
                    fmt_us(*limit as u64),
                    fmt_us(*on_time as u64)
                )?;
            }
            f.write_str(
                ". Without the generator's delay the run would pass: it measured the load \
                 generator, not the broker, and the verdict fails",
            )
        }
        LateRule::Behind { sends, share } => write!(
            f,
            "the generator could not keep its schedule: {} sends ({:.2}%) left more than {} ms \
             after they were due, so the broker was offered another load than the scenario's \
             and the verdict fails",
            fmt_count(*sends),
            share * 100.0,
            crate::expect::BEHIND_MS
        ),
        LateRule::Share { limit } => write!(
            f,
            "more sends left more than 1 ms late than the scenario allows (max_late_share \
             {:.2}%); the verdict fails",
            limit * 100.0
        ),
    }
}

impl fmt::Display for LateCause {
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
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
    fn fmt(&self, f: &mut Formatter<'_>) -> Result {
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
            _ => mqtt5(f, self),
        }
    }
}

/// What MQTT 5's checks say.
fn mqtt5(f: &mut Formatter<'_>, b: &BehaviourFinding) -> Result {
    use BehaviourFinding::*;
    let n = |v: &u64| fmt_count(*v);
    match b {
        UserPropertiesMissing { missing, expected } => write!(
            f,
            "{} of {} messages arrived without the user properties their device sent: MQTT 5 has \
             the broker forward them unchanged",
            n(missing),
            n(expected)
        ),
        ExpiryMissing { missing, expected } => write!(
            f,
            "{} of {} messages arrived without the time left of their message expiry interval \
             (or with more than was set): MQTT 5 has the broker forward what is left",
            n(missing),
            n(expected)
        ),
        DeliveredAfterExpiry { count } => write!(
            f,
            "{} messages were delivered after their expiry interval had run out since they left \
             the device: the broker should have discarded them",
            n(count)
        ),
        AliasesRefused { devices } => write!(
            f,
            "the broker allowed no topic aliases (CONNACK topic alias maximum 0) to {} devices \
             that asked for them: they sent the whole topic every time",
            n(devices)
        ),
        StatusMissing { .. }
        | StatusNotRetained { .. }
        | WillsMissing { .. }
        | WillsUnexpected { .. }
        | SessionsLost { .. }
        | CommandsUnanswered { .. } => Ok(()),
    }
}

/// Shards that did not pass on their own, each with its verdict and failed expectations.
fn shards_failed(
    f: &mut Formatter<'_>,
    shards: &[(String, Option<Verdict>, Vec<String>)],
) -> Result {
    let each: Vec<String> = shards
        .iter()
        .map(|(shard, verdict, failed)| match verdict {
            Some(Verdict::Interrupted) => format!("{shard} was interrupted"),
            _ if failed.is_empty() => format!("{shard} failed"),
            _ => format!("{shard} failed {}", failed.join(", ")),
        })
        .collect();
    write!(
        f,
        "shard {} on its own figures: a sharded run passes only when every shard does",
        each.join("; ")
    )
}
