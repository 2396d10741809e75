//! Observers: their filters (each must receive some device's messages), sessions, absences and
//! late joins.

use std::collections::HashSet;
use std::time::Duration;

use crate::model::{DeviceGroup, ObserverGroup, Offline, Qos};
use crate::raw::{RawObserver, RawScenario, S};
use crate::topic;

use super::ctx::{Ctx, Found, R};

/// Every observer (their filters are checked against the groups' topics), or None when any is
/// wrong.
pub(crate) fn observers(
    cx: &Ctx,
    raw: &RawScenario,
    groups: &[DeviceGroup],
    duration: Duration,
    found: &mut Found,
) -> Option<Vec<ObserverGroup>> {
    if raw.observer.is_empty() {
        let end = cx.text.trim_end().len();
        found.keep::<()>(Err(cx.err(
            end..end,
            "observer",
            "no observer; add at least one [[observer]] table with the filters it subscribes to, \
             so that deliveries can be measured",
        )));
        return None;
    }
    let mut names: HashSet<String> = groups.iter().map(|g| g.name.clone()).collect();
    let topics = Topics::of(groups);
    let mut observers = Vec::with_capacity(raw.observer.len());
    let mut all = true;
    for (i, o) in raw.observer.iter().enumerate() {
        let Some(observer) = found.keep(observer(cx, i, o.get_ref(), &topics, duration)) else {
            all = false;
            continue;
        };
        if !names.insert(observer.name.clone()) {
            found.keep::<()>(Err(cx.err(
                o.get_ref().name.span(),
                format!("observer[{i}].name"),
                format!(
                    "name {:?} is already used by a group or observer",
                    observer.name
                ),
            )));
            all = false;
        }
        observers.push(observer);
    }
    all.then_some(observers)
}

pub(crate) fn observer(
    cx: &Ctx,
    i: usize,
    o: &RawObserver,
    topics: &Topics,
    duration: Duration,
) -> R<ObserverGroup> {
    let f = |name: &str| format!("observer[{i}].{name}");
    let name = cx.name(&o.name, &f("name"))?;
    let count = match &o.count {
        Some(c) => cx.count(c, &f("count"), 1, 10_000)?,
        None => 1,
    };
    if o.filters.get_ref().is_empty() {
        return Err(cx.err(
            o.filters.span(),
            f("filters"),
            "needs at least one topic filter",
        ));
    }
    let (clean_session, offline, join_at) = observer_session(cx, i, o, duration)?;
    let mut filters = Vec::new();
    let mut share = None;
    for (j, filter) in o.filters.get_ref().iter().enumerate() {
        let field = format!("observer[{i}].filters[{j}]");
        // Checked as the unsharded run renders it; sharded runs are checked again per shard.
        let rendered = topic::render_filter(filter.get_ref(), 0);
        let text = rendered.as_str();
        if let Some(problem) = topic::filter_problem(text) {
            return Err(cx.err(filter.span(), field, format!("{text:?}: {problem}")));
        }
        let data = topics.data.iter().find(|t| topic::matches(text, t));
        if let (Some(t), Some(_)) = (data, join_at) {
            return Err(cx.err(
                filter.span(),
                field,
                format!(
                    "{text:?} matches the data topic {t:?}, but a late observer (join_at) \
                     receives only retained messages; subscribe it to status or will topics"
                ),
            ));
        }
        let event = || topics.events.iter().any(|t| topic::matches(text, t));
        if data.is_none() && !event() {
            let example = topics.data.first().map(String::as_str).unwrap_or("");
            return Err(cx.err(
                filter.span(),
                field,
                format!(
                    "{text:?} matches no device topic (for example {example:?}); \
                     expected a filter that receives at least one group's messages"
                ),
            ));
        }
        let this_share = topic::shared(text).map(|(n, _)| n.to_string());
        if j > 0 && this_share != share {
            return Err(cx.err(
                filter.span(),
                field,
                "an observer's filters are either all shared under one name or none is; \
                 use another [[observer]] for the other kind",
            ));
        }
        share = this_share;
        filters.push(filter.get_ref().clone());
    }
    let qos = cx.qos(o.qos.as_ref(), &f("qos"), Qos::AtLeastOnce)?;
    Ok(ObserverGroup {
        name,
        count,
        filters,
        qos,
        share,
        clean_session,
        offline,
        join_at,
    })
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
            data.extend((0..g.count).map(|i| topic::render(&g.topic, &g.name, i, 0)));
            for m in [&g.behaviour.status, &g.behaviour.will]
                .into_iter()
                .flatten()
            {
                events.extend((0..g.count).map(|i| topic::render(&m.topic, &g.name, i, 0)));
            }
        }
        Topics { data, events }
    }
}
