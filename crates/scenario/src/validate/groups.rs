//! Device groups: names, counts, client ids, topics, rates, payloads, connect rates; and that
//! every topic a device uses is its own.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::model::{DeviceGroup, Qos};
use crate::raw::{RawGroup, RawScenario, S};
use crate::topic;

use super::ctx::{
    pattern, rendered_topic, shown, Ctx, Found, MAX_COUNT, MAX_MQTT_STRING, MAX_RATE, MIN_RATE, R,
};

/// Every device group, or None when any is wrong (each mistake is in `found`).
pub(crate) fn groups(
    cx: &Ctx,
    raw: &RawScenario,
    phases: &[crate::load::LoadPhase],
    duration: Duration,
    found: &mut Found,
) -> Option<Vec<DeviceGroup>> {
    if raw.group.is_empty() {
        found.keep::<()>(Err(cx.err(
            0..0,
            "group",
            "no device group; add at least one [[group]] table",
        )));
        return None;
    }
    let mut groups = Vec::with_capacity(raw.group.len());
    let mut names = HashSet::new();
    let mut all = true;
    for (i, g) in raw.group.iter().enumerate() {
        let Some(group) = found.keep(group(cx, i, g.get_ref(), phases, duration)) else {
            all = false;
            continue;
        };
        if !names.insert(group.name.clone()) {
            found.keep::<()>(Err(cx.err(
                g.get_ref().name.span(),
                format!("group[{i}].name"),
                format!(
                    "group name {:?} is used twice; group names must be unique",
                    group.name
                ),
            )));
            all = false;
        }
        groups.push(group);
    }
    all &= found
        .keep(check_device_topics(cx, &raw.group, &groups))
        .is_some();
    all &= found.keep(check_client_ids(cx, raw, &groups)).is_some();
    all.then_some(groups)
}

pub(crate) fn group(
    cx: &Ctx,
    i: usize,
    g: &RawGroup,
    phases: &[crate::load::LoadPhase],
    duration: Duration,
) -> R<DeviceGroup> {
    let f = |name: &str| format!("group[{i}].{name}");
    let name = cx.name(&g.name, &f("name"))?;
    let count = cx.count(&g.count, &f("count"), 1, MAX_COUNT)?;
    let client_id = match &g.client_id {
        Some(p) => client_id(cx, p, &f("client_id"), &name, count)?,
        None => "{group}-{index}".to_string(),
    };
    rendered_topic(cx, &g.topic, &f("topic"), &name, count)?;
    let rate = *g.rate.get_ref();
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(cx.err(
            g.rate.span(),
            f("rate"),
            format!(
                "messages per second per device must be between {MIN_RATE} and {MAX_RATE}, got {rate}"
            ),
        ));
    }
    Ok(DeviceGroup {
        count,
        client_id,
        topic: g.topic.get_ref().clone(),
        rate,
        qos: cx.qos(g.qos.as_ref(), &f("qos"), Qos::AtLeastOnce)?,
        arrivals: super::load::arrivals(cx, g.arrivals.as_ref(), &f("arrivals"))?,
        payload: super::load::payload(cx, g, &format!("group[{i}]"))?,
        connect_rate: connect_rate(cx, g, &f("connect_rate"), phases, count, duration)?,
        keep_alive: keep_alive(cx, g.keep_alive.as_ref(), &f("keep_alive"))?,
        behaviour: super::behaviours::group_behaviour(cx, i, g, &name, count, duration)?,
        name,
    })
}

/// A client-id pattern: valid placeholders, one id per device, each within MQTT's length.
fn client_id(cx: &Ctx, p: &S<String>, field: &str, name: &str, count: u32) -> R<String> {
    pattern(cx, p, field)?;
    if count > 1 && !p.get_ref().contains("{index}") {
        return Err(cx.err(
            p.span(),
            field,
            format!(
                "{count} devices would share the client id {}; include \"{{index}}\" in the pattern",
                shown(p.get_ref())
            ),
        ));
    }
    let longest = topic::render(p.get_ref(), name, count - 1, 0);
    if longest.len() > MAX_MQTT_STRING {
        return Err(cx.err(
            p.span(),
            field,
            format!(
                "renders to {} bytes; MQTT allows client ids of at most {MAX_MQTT_STRING}",
                longest.len()
            ),
        ));
    }
    Ok(p.get_ref().clone())
}

/// A group's own connect rate: not beside phases that pace the whole fleet, and fast enough
/// for the last device to connect before the run ends.
fn connect_rate(
    cx: &Ctx,
    g: &RawGroup,
    field: &str,
    phases: &[crate::load::LoadPhase],
    count: u32,
    duration: Duration,
) -> R<Option<f64>> {
    let Some(raw) = &g.connect_rate else {
        return Ok(None);
    };
    if phases.iter().any(|p| p.connect_rate.is_some()) {
        return Err(cx.err(
            raw.span(),
            field,
            "the phases set connect rates for the whole fleet; remove the group's",
        ));
    }
    let rate = cx.connect_rate(Some(raw), field, "connect all at once")?;
    if let Some(rate) = rate {
        let last = f64::from(count - 1) / rate;
        if last >= duration.as_secs_f64() {
            return Err(cx.err(
                raw.span(),
                field,
                format!(
                    "the last of {count} devices would connect {last:.1}s into a run of {}: \
                     after it ended; raise connect_rate or lengthen the run",
                    humantime::format_duration(duration)
                ),
            ));
        }
    }
    Ok(rate)
}

fn keep_alive(cx: &Ctx, k: Option<&S<String>>, field: &str) -> R<Duration> {
    let Some(k) = k else {
        return Ok(Duration::from_secs(30));
    };
    let d = cx.duration(k, field)?;
    if d < Duration::from_secs(5) || d > Duration::from_secs(65_535) {
        return Err(cx.err(
            k.span(),
            field,
            "must be between 5s and 65535s (rumqttd refuses a keep-alive of 0)",
        ));
    }
    Ok(d)
}

pub(crate) fn check_client_ids(cx: &Ctx, raw: &RawScenario, groups: &[DeviceGroup]) -> R<()> {
    let mut seen = HashSet::new();
    for (i, g) in groups.iter().enumerate() {
        for index in 0..g.count {
            let id = topic::render(&g.client_id, &g.name, index, 0);
            if !seen.insert(id.clone()) {
                let span = raw.group[i]
                    .get_ref()
                    .client_id
                    .as_ref()
                    .map_or(raw.group[i].span(), |c| c.span());
                return Err(cx.err(
                    span,
                    format!("group[{i}].client_id"),
                    format!("client id {id:?} is used by two devices; client ids must be unique"),
                ));
            }
        }
    }
    Ok(())
}

/// Every status, will, command and reply topic names exactly one device and is no device's
/// data topic: otherwise a message could not be told apart.
pub(crate) fn check_device_topics(cx: &Ctx, raw: &[S<RawGroup>], groups: &[DeviceGroup]) -> R<()> {
    let mut owner: HashMap<String, String> = HashMap::new();
    for (i, g) in groups.iter().enumerate() {
        for index in 0..g.count {
            owner.insert(
                topic::render(&g.topic, &g.name, index, 0),
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
                let t = topic::render(pattern, &g.name, index, 0);
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
