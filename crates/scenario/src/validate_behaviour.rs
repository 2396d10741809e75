//! Validation of device behaviours (status, last will, dropping, commands, reconnecting), of the
//! observers' sessions and of controllers.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::model::{
    Backoff, Commands, Controller, DeviceGroup, DeviceMessage, GroupBehaviour, Mqtt5Publish,
    Offline, Protocol, Qos,
};
use crate::raw::{
    RawController, RawDeviceMessage, RawGroup, RawMqtt5, RawObserver, RawReconnect, RawScenario, S,
};
use crate::topic;
use crate::validate::{rendered_topic, Ctx, R};

const MAX_COMMAND_RATE: f64 = 1_000.0;

pub(crate) fn group_behaviour(
    cx: &Ctx,
    i: usize,
    g: &RawGroup,
    name: &str,
    count: u32,
    duration: Duration,
) -> R<GroupBehaviour> {
    let f = |field: &str| format!("group[{i}].{field}");
    let status = match &g.status {
        Some(m) => Some(device_message(
            cx,
            m,
            &f("status"),
            name,
            count,
            "online",
            true,
        )?),
        None => None,
    };
    let will = match &g.will {
        Some(m) => Some(device_message(
            cx,
            m,
            &f("will"),
            name,
            count,
            "offline",
            false,
        )?),
        None => None,
    };
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
    let drop_at = match &g.drop_at {
        Some(d) => {
            let at = cx.positive_duration(d, &f("drop_at"))?;
            if at >= duration {
                return Err(cx.err(
                    d.span(),
                    f("drop_at"),
                    format!(
                        "must be shorter than the duration ({}), or the devices would never drop",
                        humantime::format_duration(duration)
                    ),
                ));
            }
            Some(at)
        }
        None => None,
    };
    let commands = match &g.commands {
        Some(c) => {
            let c = c.get_ref();
            per_device_topic(cx, &c.topic, &f("commands.topic"), name, count)?;
            per_device_topic(cx, &c.reply, &f("commands.reply"), name, count)?;
            if c.topic.get_ref() == c.reply.get_ref() {
                return Err(cx.err(
                    c.reply.span(),
                    f("commands.reply"),
                    "the reply topic must differ from the command topic",
                ));
            }
            Some(Commands {
                topic: c.topic.get_ref().clone(),
                reply: c.reply.get_ref().clone(),
                qos: cx.qos(c.qos.as_ref(), &f("commands.qos"), Qos::AtLeastOnce)?,
            })
        }
        None => None,
    };
    let reconnect = match &g.reconnect {
        Some(r) => reconnect(cx, r.get_ref(), &f("reconnect"))?,
        None => Backoff::default(),
    };
    let mqtt5 = match &g.mqtt5 {
        Some(m) => Some(mqtt5(cx, m.get_ref(), &f("mqtt5"))?),
        None => None,
    };
    Ok(GroupBehaviour {
        status,
        will,
        drop_at,
        commands,
        reconnect,
        mqtt5,
    })
}

fn mqtt5(cx: &Ctx, m: &RawMqtt5, field: &str) -> R<Mqtt5Publish> {
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

fn device_message(
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
fn per_device_topic(cx: &Ctx, p: &S<String>, field: &str, group: &str, count: u32) -> R<()> {
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

fn reconnect(cx: &Ctx, r: &RawReconnect, field: &str) -> R<Backoff> {
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

/// An observer's session settings: clean_session, offline, join_at.
pub(crate) fn observer_session(
    cx: &Ctx,
    i: usize,
    o: &RawObserver,
    duration: Duration,
) -> R<(bool, Option<Offline>, Option<Duration>)> {
    let f = |field: &str| format!("observer[{i}].{field}");
    let clean_session = o.clean_session.unwrap_or(true);
    let before_end = |v: &S<String>, field: &str, d: Duration| -> R<()> {
        if d >= duration {
            return Err(cx.err(
                v.span(),
                f(field),
                format!(
                    "must end before the publishing does ({})",
                    humantime::format_duration(duration)
                ),
            ));
        }
        Ok(())
    };
    let offline = match &o.offline {
        Some(off) => {
            if clean_session {
                return Err(cx.err(
                    off.span(),
                    f("offline"),
                    "an observer with a clean session loses what is published while it is \
                     away; set clean_session = false so that the broker queues it",
                ));
            }
            let off = off.get_ref();
            let at = cx.positive_duration(&off.at, &f("offline.at"))?;
            let length = cx.positive_duration(&off.length, &f("offline.for"))?;
            before_end(&off.length, "offline.for", at + length)?;
            Some(Offline { at, length })
        }
        None => None,
    };
    let join_at = match &o.join_at {
        Some(j) => {
            let at = cx.positive_duration(j, &f("join_at"))?;
            before_end(j, "join_at", at)?;
            Some(at)
        }
        None => None,
    };
    Ok((clean_session, offline, join_at))
}

/// The topics a filter can be checked against: what devices publish as data, and what they
/// publish about themselves (statuses and wills).
pub(crate) struct Topics {
    pub data: Vec<String>,
    pub events: Vec<String>,
}

impl Topics {
    pub(crate) fn of(groups: &[DeviceGroup]) -> Topics {
        let mut data = Vec::new();
        let mut events = Vec::new();
        for g in groups {
            data.extend((0..g.count).map(|i| topic::render(&g.topic, &g.name, i)));
            for m in [&g.behaviour.status, &g.behaviour.will]
                .into_iter()
                .flatten()
            {
                events.extend((0..g.count).map(|i| topic::render(&m.topic, &g.name, i)));
            }
        }
        Topics { data, events }
    }
}

/// Every status, will, command and reply topic names exactly one device and is no device's
/// data topic: otherwise a message could not be told apart.
pub(crate) fn check_device_topics(cx: &Ctx, raw: &[S<RawGroup>], groups: &[DeviceGroup]) -> R<()> {
    let mut owner: HashMap<String, String> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        for index in 0..g.count {
            owner.insert(
                topic::render(&g.topic, &g.name, index),
                format!("group[{i}].topic"),
            );
        }
    }
    for (i, (g, r)) in groups.iter().zip(raw).enumerate() {
        let r = r.get_ref();
        let b = &g.behaviour;
        let fields = [
            (
                b.status.as_ref().map(|m| &m.topic),
                r.status.as_ref().map(|m| m.get_ref().topic.span()),
                "status.topic",
            ),
            (
                b.will.as_ref().map(|m| &m.topic),
                r.will.as_ref().map(|m| m.get_ref().topic.span()),
                "will.topic",
            ),
            (
                b.commands.as_ref().map(|c| &c.topic),
                r.commands.as_ref().map(|c| c.get_ref().topic.span()),
                "commands.topic",
            ),
            (
                b.commands.as_ref().map(|c| &c.reply),
                r.commands.as_ref().map(|c| c.get_ref().reply.span()),
                "commands.reply",
            ),
        ];
        for (pattern, span, name) in fields {
            let (Some(pattern), Some(span)) = (pattern, span) else {
                continue;
            };
            let field = format!("group[{i}].{name}");
            for index in 0..g.count {
                let t = topic::render(pattern, &g.name, index);
                if let Some(other) = owner.insert(t.clone(), field.clone()) {
                    return Err(cx.err(
                        span,
                        field,
                        format!("topic {t:?} is also {other}'s; each topic must have one use"),
                    ));
                }
            }
        }
    }
    Ok(())
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
        if !(crate::validate::MIN_RATE..=MAX_COMMAND_RATE).contains(&rate) {
            return Err(cx.err(
                c.rate.span(),
                f("rate"),
                format!(
                    "commands per second to each device must be between {} and \
                     {MAX_COMMAND_RATE}, got {rate}",
                    crate::validate::MIN_RATE
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
