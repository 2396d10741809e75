//! From wire types to the validated model, one module per part of a scenario. Every check names
//! the file, line, field and what was expected; nothing here touches the network. Parts that do
//! not depend on each other are all checked, so that a file's mistakes are reported together;
//! a part that depends on a broken one (observers on the groups' topics) is not.
//!
//! `ctx` holds what all share; the other modules import from it and from nothing else here,
//! except that groups use the behaviour and load checks of a group.

mod behaviours;
mod broker;
mod ctx;
mod expect;
mod faults;
mod groups;
mod load;
mod observers;
mod regression;
mod toml;

use std::collections::HashSet;
use std::time::Duration;

use crate::error::ScenarioErrors;
use crate::model::{Expectations, Regression, Scenario};
use crate::raw::RawScenario;

pub use broker::external_url;
pub use ctx::MAX_MQTT_STRING;
use ctx::{Ctx, Found, MAX_DURATION, R};
use groups::groups;
use observers::observers;
use toml::deserialize;

pub(crate) fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioErrors> {
    let raw = deserialize(file, text)?;
    let cx = Ctx { file, text };
    let mut found = Found::default();
    let name = found.keep(cx.name(&raw.name, "name"));
    let timing = Timing::check(&cx, &raw, &mut found);
    let fleet = Fleet::check(&cx, &raw, &timing, &mut found);
    let broker = found.keep(broker::broker(&cx, raw.broker.as_ref(), fleet.clients()));
    let protocol = found.keep(behaviours::protocol(&cx, &raw));
    let expect = found.keep(match &raw.expect {
        Some(e) => expect::expectations(&cx, e.get_ref()),
        None => Ok(Expectations::default()),
    });
    let faults = match (&fleet.groups, &fleet.observers, &broker) {
        (Some(groups), Some(observers), Some(broker)) => faults::faults(
            &cx,
            &raw.fault,
            (groups, observers),
            broker,
            Timing::known(timing.duration),
            &mut found,
        ),
        _ => None,
    };
    let regression = found.keep(match &raw.regression {
        Some(r) => regression::regression(&cx, r.get_ref()),
        None => Ok(Regression::default()),
    });
    if !found.0.is_empty() {
        return Err(ScenarioErrors::new(found.0));
    }
    let incomplete = || cx.err(0..0, "(file)", "could not be validated").into();
    let (Some(name), Some(broker), Some(protocol), Some(expect), Some(regression)) =
        (name, broker, protocol, expect, regression)
    else {
        return Err(incomplete());
    };
    let (Some(duration), Some(drain_timeout), Some(warmup)) =
        (timing.duration, timing.drain_timeout, timing.warmup)
    else {
        return Err(incomplete());
    };
    let (Some(groups), Some(observers), Some(controllers), Some(faults)) =
        (fleet.groups, fleet.observers, fleet.controllers, faults)
    else {
        return Err(incomplete());
    };
    Ok(Scenario {
        name,
        description: raw.description.map(|d| d.into_inner()).unwrap_or_default(),
        seed: raw.seed.map_or(1, |s| s.into_inner()),
        duration,
        drain_timeout,
        warmup,
        broker,
        protocol,
        phases: timing.phases,
        groups,
        observers,
        controllers,
        faults,
        expect,
        regression,
    })
}

/// When things happen: the phases, the run's duration, the drain and the warm-up (None where
/// wrong; the mistake is in `found`).
struct Timing {
    phases: Vec<crate::load::LoadPhase>,
    duration: Option<Duration>,
    drain_timeout: Option<Duration>,
    warmup: Option<Duration>,
}

impl Timing {
    fn check(cx: &Ctx, raw: &RawScenario, found: &mut Found) -> Timing {
        let checked = found.keep(load::phases(cx, &raw.phase));
        // Without right phases there is no total to take the duration from: a duration left
        // out is then no mistake of its own.
        let duration = match &checked {
            None if raw.duration.is_none() => None,
            phases => found.keep(run_duration(cx, raw, phases.as_deref().unwrap_or_default())),
        };
        let phases = checked.unwrap_or_default();
        let drain_timeout = found.keep(match &raw.drain_timeout {
            Some(d) => cx.positive_duration(d, "drain_timeout"),
            None => Ok(Duration::from_secs(5)),
        });
        let warmup = found.keep(warmup(cx, raw, Timing::known(duration)));
        Timing {
            phases,
            duration,
            drain_timeout,
            warmup,
        }
    }

    /// Later checks compare with the duration; when it is wrong, with the longest.
    fn known(duration: Option<Duration>) -> Duration {
        duration.unwrap_or(MAX_DURATION)
    }
}

/// The clients: device groups, observers (checked only when the groups are right: their
/// filters must match the groups' topics), controllers; and what depends on groups and
/// observers together.
struct Fleet {
    groups: Option<Vec<crate::model::DeviceGroup>>,
    observers: Option<Vec<crate::model::ObserverGroup>>,
    controllers: Option<Vec<crate::model::Controller>>,
}

impl Fleet {
    fn check(cx: &Ctx, raw: &RawScenario, timing: &Timing, found: &mut Found) -> Fleet {
        let known = Timing::known(timing.duration);
        let groups = groups(cx, raw, &timing.phases, known, found);
        let observers = match &groups {
            Some(groups) => observers(cx, raw, groups, known, found),
            None => None,
        };
        let mut names: HashSet<String> = groups.iter().flatten().map(|g| g.name.clone()).collect();
        names.extend(observers.iter().flatten().map(|o| o.name.clone()));
        let controllers = match &groups {
            Some(g) => found.keep(behaviours::controllers(cx, &raw.controller, g, &mut names)),
            None => None,
        };
        if let (Some(g), Some(o)) = (&groups, &observers) {
            found.keep(behaviours::expiry_outlasts_absences(cx, raw, g, o));
        }
        Fleet {
            groups,
            observers,
            controllers,
        }
    }

    /// Clients of the groups and observers found right (the broker's listeners follow).
    fn clients(&self) -> u64 {
        let devices: u64 = self
            .groups
            .iter()
            .flatten()
            .map(|g| u64::from(g.count))
            .sum();
        let observers: u64 = self
            .observers
            .iter()
            .flatten()
            .map(|o| u64::from(o.count))
            .sum();
        devices + observers
    }
}

/// How long devices publish: `duration`, or the phases' total (both only when they agree).
pub(crate) fn run_duration(
    cx: &Ctx,
    raw: &RawScenario,
    phases: &[crate::load::LoadPhase],
) -> R<Duration> {
    let total = match (&raw.duration, phases.last()) {
        (Some(d), None) => cx.positive_duration(d, "duration")?,
        (None, Some(last)) => last.end(),
        (Some(d), Some(last)) => {
            let given = cx.positive_duration(d, "duration")?;
            if given != last.end() {
                return Err(cx.err(
                    d.span(),
                    "duration",
                    format!(
                        "{} differs from the phases' total of {}; leave duration out when the \
                         scenario has phases",
                        humantime::format_duration(given),
                        humantime::format_duration(last.end())
                    ),
                ));
            }
            given
        }
        (None, None) => {
            return Err(cx.err(
                0..0,
                "duration",
                "missing; expected duration = \"30s\" (or [[phase]] tables)",
            ))
        }
    };
    if total > MAX_DURATION {
        let span = raw.duration.as_ref().map_or_else(
            || raw.phase.first().map_or(0..0, |p| p.span()),
            |d| d.span(),
        );
        return Err(cx.err(
            span,
            "duration",
            format!(
                "the phases add up to {}; a run lasts at most {}",
                humantime::format_duration(total),
                humantime::format_duration(MAX_DURATION)
            ),
        ));
    }
    Ok(total)
}

pub(crate) fn warmup(cx: &Ctx, raw: &RawScenario, duration: Duration) -> R<Duration> {
    let Some(w) = &raw.warmup else {
        return Ok(Duration::ZERO);
    };
    let d = cx.duration(w, "warmup")?;
    if d >= duration {
        return Err(cx.err(
            w.span(),
            "warmup",
            format!(
                "must be shorter than the duration ({}), or nothing would be measured",
                humantime::format_duration(duration)
            ),
        ));
    }
    Ok(d)
}
