//! What devices do besides publishing data: statuses, last wills, dropping, commands and their
//! controllers, reconnect backoff, MQTT 5 properties and the protocol they need.

use std::collections::HashSet;
use std::time::Duration;

use crate::model::{
    Backoff, Commands, Controller, DeviceGroup, DeviceMessage, GroupBehaviour, Mqtt5Publish,
    Protocol, Qos, WhileDown,
};
use crate::raw::{
    RawCommands, RawController, RawDeviceMessage, RawGroup, RawMqtt5, RawReconnect, RawScenario, S,
};

use super::ctx::{rendered_topic, Ctx, MIN_RATE, R};

pub(crate) const MAX_COMMAND_RATE: f64 = 1_000.0;

pub(crate) fn group_behaviour(
    cx: &Ctx,
    i: usize,
    g: &RawGroup,
    name: &str,
    count: u32,
    duration: Duration,
) -> R<GroupBehaviour> {
    let f = |field: &str| format!("group[{i}].{field}");
    let message = |m: &Option<S<RawDeviceMessage>>, field: &str, payload, retain| {
        m.as_ref()
            .map(|m| device_message(cx, m, &f(field), name, count, payload, retain))
            .transpose()
    };
    let status = message(&g.status, "status", "online", true)?;
    let will = message(&g.will, "will", "offline", false)?;
    if let (Some(s), Some(w), Some(raw)) = (&status, &will, &g.will) {
        if s.topic == w.topic {
            return Err(cx.err(
                raw.get_ref().topic.span(),
                f("will.topic"),
                "the will shares the status topic; give it a topic of its own (for example \
                 \"{group}/{index}/will\") so that each can be checked on its own",
            ));
        }
    }
    Ok(GroupBehaviour {
        status,
        will,
        drop_at: drop_at(cx, g.drop_at.as_ref(), &f("drop_at"), duration)?,
        commands: g
            .commands
            .as_ref()
            .map(|c| commands(cx, c.get_ref(), &f("commands"), name, count))
            .transpose()?,
        reconnect: match &g.reconnect {
            Some(r) => reconnect(cx, r.get_ref(), &f("reconnect"))?,
            None => Backoff::default(),
        },
        while_down: match g.while_down.as_ref() {
            None => WhileDown::Queue,
            Some(w) => match w.get_ref().as_str() {
                "queue" => WhileDown::Queue,
                "skip" => WhileDown::Skip,
                other => {
                    return Err(cx.err(
                        w.span(),
                        f("while_down"),
                        format!("{other:?}: expected \"queue\" (default) or \"skip\""),
                    ))
                }
            },
        },
        mqtt5: g
            .mqtt5
            .as_ref()
            .map(|m| mqtt5(cx, m.get_ref(), &f("mqtt5")))
            .transpose()?,
    })
}

/// When the group's devices lose power: before the run ends.
fn drop_at(
    cx: &Ctx,
    d: Option<&S<String>>,
    field: &str,
    duration: Duration,
) -> R<Option<Duration>> {
    let Some(d) = d else {
        return Ok(None);
    };
    let at = cx.positive_duration(d, field)?;
    if at >= duration {
        return Err(cx.err(
            d.span(),
            field,
            format!(
                "must be shorter than the duration ({}), or the devices would never drop",
                humantime::format_duration(duration)
            ),
        ));
    }
    Ok(Some(at))
}

/// A command topic and a reply topic per device, different from each other.
fn commands(cx: &Ctx, c: &RawCommands, field: &str, name: &str, count: u32) -> R<Commands> {
    per_device_topic(cx, &c.topic, &format!("{field}.topic"), name, count)?;
    per_device_topic(cx, &c.reply, &format!("{field}.reply"), name, count)?;
    if c.topic.get_ref() == c.reply.get_ref() {
        return Err(cx.err(
            c.reply.span(),
            format!("{field}.reply"),
            "the reply topic must differ from the command topic",
        ));
    }
    Ok(Commands {
        topic: c.topic.get_ref().clone(),
        reply: c.reply.get_ref().clone(),
        qos: cx.qos(c.qos.as_ref(), &format!("{field}.qos"), Qos::AtLeastOnce)?,
    })
}

pub(crate) fn mqtt5(cx: &Ctx, m: &RawMqtt5, field: &str) -> R<Mqtt5Publish> {
    let mut user_properties = Vec::new();
    if let Some(props) = &m.user_properties {
        for (name, value) in props.get_ref() {
            if name.is_empty() {
                return Err(cx.err(
                    props.span(),
                    format!("{field}.user_properties"),
                    "a user property needs a name",
                ));
            }
            user_properties.push((name.clone(), value.clone()));
        }
    }
    let message_expiry_s = match &m.message_expiry {
        Some(v) => {
            let d = cx.positive_duration(v, &format!("{field}.message_expiry"))?;
            if d.subsec_nanos() != 0 || d.as_secs() > u64::from(u32::MAX) {
                return Err(cx.err(
                    v.span(),
                    format!("{field}.message_expiry"),
                    "MQTT states message expiry in whole seconds (1s to 136 years)",
                ));
            }
            Some(d.as_secs() as u32)
        }
        None => None,
    };
    Ok(Mqtt5Publish {
        user_properties,
        topic_alias: m.topic_alias.unwrap_or(false),
        message_expiry_s,
    })
}

pub(crate) fn device_message(
    cx: &Ctx,
    m: &S<RawDeviceMessage>,
    field: &str,
    group: &str,
    count: u32,
    default_payload: &str,
    default_retain: bool,
) -> R<DeviceMessage> {
    let m = m.get_ref();
    per_device_topic(cx, &m.topic, &format!("{field}.topic"), group, count)?;
    let payload = match &m.payload {
        // Any text (JSON braces included); {group} and {index} are filled in.
        Some(p) if p.get_ref().is_empty() => {
            return Err(cx.err(
                p.span(),
                format!("{field}.payload"),
                "must not be empty (an empty retained message deletes the retained one)",
            ))
        }
        Some(p) => p.get_ref().clone(),
        None => default_payload.to_string(),
    };
    Ok(DeviceMessage {
        topic: m.topic.get_ref().clone(),
        payload,
        qos: cx.qos(m.qos.as_ref(), &format!("{field}.qos"), Qos::AtLeastOnce)?,
        retain: m.retain.unwrap_or(default_retain),
    })
}

/// A topic that names one device: a valid topic name, with `{index}` when the group has more
/// than one device (each message must tell which device it is about).
pub(crate) fn per_device_topic(
    cx: &Ctx,
    p: &S<String>,
    field: &str,
    group: &str,
    count: u32,
) -> R<()> {
    let sample = rendered_topic(cx, p, field, group, count)?;
    if count > 1 && !p.get_ref().contains("{index}") {
        return Err(cx.err(
            p.span(),
            field,
            format!(
                "{count} devices would share the topic {sample:?}; include \"{{index}}\" so that \
                 each message names its device"
            ),
        ));
    }
    Ok(())
}

pub(crate) fn reconnect(cx: &Ctx, r: &RawReconnect, field: &str) -> R<Backoff> {
    let d = Backoff::default();
    let min = match &r.min {
        Some(v) => cx.positive_duration(v, &format!("{field}.min"))?,
        None => d.min,
    };
    let max = match &r.max {
        Some(v) => {
            let max = cx.positive_duration(v, &format!("{field}.max"))?;
            if max < min {
                return Err(cx.err(
                    v.span(),
                    format!("{field}.max"),
                    format!("must be at least min ({})", humantime::format_duration(min)),
                ));
            }
            max
        }
        None => d.max.max(min),
    };
    let jitter = match &r.jitter {
        Some(v) if !(0.0..=1.0).contains(v.get_ref()) => {
            return Err(cx.err(
                v.span(),
                format!("{field}.jitter"),
                format!(
                    "the random share of each wait, between 0.0 and 1.0, got {}",
                    v.get_ref()
                ),
            ))
        }
        Some(v) => *v.get_ref(),
        None => d.jitter,
    };
    Ok(Backoff { min, max, jitter })
}

pub(crate) fn controllers(
    cx: &Ctx,
    raw: &[S<RawController>],
    groups: &[DeviceGroup],
    names: &mut HashSet<String>,
) -> R<Vec<Controller>> {
    let mut out = Vec::with_capacity(raw.len());
    for (i, c) in raw.iter().enumerate() {
        let f = |field: &str| format!("controller[{i}].{field}");
        let c = c.get_ref();
        let name = cx.name(&c.name, &f("name"))?;
        if !names.insert(name.clone()) {
            return Err(cx.err(
                c.name.span(),
                f("name"),
                format!("name {name:?} is already used by a group, observer or controller"),
            ));
        }
        let wanted = c.group.get_ref();
        let Some(group) = groups.iter().position(|g| &g.name == wanted) else {
            let known: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
            return Err(cx.err(
                c.group.span(),
                f("group"),
                format!("no group is named {wanted:?}; the groups are {known:?}"),
            ));
        };
        if groups[group].behaviour.commands.is_none() {
            return Err(cx.err(
                c.group.span(),
                f("group"),
                format!(
                    "group {wanted:?} takes no commands; give it a commands table with its \
                     command and reply topics"
                ),
            ));
        }
        let rate = *c.rate.get_ref();
        if !(MIN_RATE..=MAX_COMMAND_RATE).contains(&rate) {
            return Err(cx.err(
                c.rate.span(),
                f("rate"),
                format!(
                    "commands per second to each device must be between {} and \
                     {MAX_COMMAND_RATE}, got {rate}",
                    MIN_RATE
                ),
            ));
        }
        out.push(Controller {
            name,
            group,
            group_name: wanted.clone(),
            rate,
        });
    }
    Ok(out)
}

/// The MQTT version the clients speak; MQTT 5 properties need MQTT 5.
pub(crate) fn protocol(cx: &Ctx, raw: &RawScenario) -> R<Protocol> {
    let protocol = match &raw.protocol {
        None => Protocol::V311,
        Some(p) => match p.get_ref().as_str() {
            "3.1.1" | "4" => Protocol::V311,
            "5" | "5.0" => Protocol::V5,
            other => {
                return Err(cx.err(
                    p.span(),
                    "protocol",
                    format!("{other:?}: expected \"3.1.1\" (default) or \"5\""),
                ))
            }
        },
    };
    if protocol != Protocol::V5 {
        for (i, g) in raw.group.iter().enumerate() {
            if let Some(m) = &g.get_ref().mqtt5 {
                return Err(cx.err(
                    m.span(),
                    format!("group[{i}].mqtt5"),
                    "MQTT 5 properties need MQTT 5 clients; set protocol = \"5\" at the top of \
                     the scenario",
                ));
            }
        }
    }
    Ok(protocol)
}

/// Messages that expire while an observer is away are not delivered to it, and the ledger does
/// not tell them from lost ones: a message expiry must outlast every absence (plus a second to
/// reconnect).
pub(crate) fn expiry_outlasts_absences(
    cx: &Ctx,
    raw: &RawScenario,
    groups: &[DeviceGroup],
    observers: &[crate::model::ObserverGroup],
) -> R<()> {
    let longest = observers
        .iter()
        .filter_map(|o| o.offline.map(|off| (o, off.length)))
        .max_by_key(|(_, l)| *l);
    let Some((o, away)) = longest else {
        return Ok(());
    };
    for (i, g) in groups.iter().enumerate() {
        let Some(expiry) = g.behaviour.mqtt5.as_ref().and_then(|m| m.message_expiry_s) else {
            continue;
        };
        if Duration::from_secs(u64::from(expiry)) < away + Duration::from_secs(1) {
            let span = raw.group[i]
                .get_ref()
                .mqtt5
                .as_ref()
                .and_then(|m| m.get_ref().message_expiry.as_ref())
                .map_or(0..0, |v| v.span());
            return Err(cx.err(
                span,
                format!("group[{i}].mqtt5.message_expiry"),
                format!(
                    "messages expire after {expiry}s but observer {:?} is away for {}: what \
                     expires meanwhile would count as lost; make the expiry at least 1s longer \
                     than the absence",
                    o.name,
                    humantime::format_duration(away)
                ),
            ));
        }
    }
    Ok(())
}
