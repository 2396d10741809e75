//! From wire types to the validated model. Every check names the file, line, field and what was
//! expected; nothing here touches the network.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use crate::error::{Location, ScenarioError, ScenarioErrors};
use crate::model::*;
use crate::raw::*;
use crate::topic;
use crate::validate_behaviour::Topics;

/// Smallest payload: the delivery header every message carries (see the fleet's payload codec).
pub const MIN_PAYLOAD: i64 = 32;
pub const MAX_PAYLOAD: i64 = 1 << 20;
const MAX_RATE: f64 = 100_000.0;
/// The slowest rate: a message a day, about.
pub(crate) const MIN_RATE: f64 = 0.00001;
const MAX_COUNT: i64 = 1_000_000;
/// The longest any duration in a scenario may be, and the longest run: a week. Beyond that a
/// value is a typo, and deadlines computed from it would leave the clock's range.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);
/// Connections per second a connect rate may ask for.
const MIN_CONNECT_RATE: f64 = 0.001;
const MAX_CONNECT_RATE: f64 = 1_000_000.0;
/// MQTT's strings (client ids, topics, user names) are at most this many bytes.
pub const MAX_MQTT_STRING: usize = 65_535;
/// Names of groups, observers, controllers and the scenario: they go into client ids and file
/// names.
const MAX_NAME: usize = 100;

/// A value as an error message may quote it: at most 60 characters.
pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
        None => format!("{s:?}"),
    }
}

pub(crate) struct Ctx<'a> {
    file: &'a str,
    text: &'a str,
}

pub(crate) type R<T> = Result<T, ScenarioError>;

impl Ctx<'_> {
    pub(crate) fn err(
        &self,
        span: Range<usize>,
        field: impl Into<String>,
        msg: impl Into<String>,
    ) -> ScenarioError {
        ScenarioError::new(Location::at(self.file, self.text, span.start), field, msg)
    }

    pub(crate) fn location(&self, span: Range<usize>) -> Location {
        Location::at(self.file, self.text, span.start)
    }

    /// A duration of at most [`MAX_DURATION`].
    pub(crate) fn duration(&self, v: &S<String>, field: &str) -> R<Duration> {
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                field,
                format!(
                    "{} is not a duration ({e}); expected a number with a unit, such as \"30s\", \"500ms\" or \"2m\"",
                    shown(v.get_ref())
                ),
            )
        })?;
        if d > MAX_DURATION {
            return Err(self.err(
                v.span(),
                field,
                format!(
                    "{} is longer than {}, the longest duration a scenario may give",
                    shown(v.get_ref()),
                    humantime::format_duration(MAX_DURATION)
                ),
            ));
        }
        Ok(d)
    }

    pub(crate) fn positive_duration(&self, v: &S<String>, field: &str) -> R<Duration> {
        let d = self.duration(v, field)?;
        if d.is_zero() {
            return Err(self.err(v.span(), field, "must be longer than zero"));
        }
        Ok(d)
    }

    pub(crate) fn count(&self, v: &S<i64>, field: &str, min: i64, max: i64) -> R<u32> {
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.err(
                v.span(),
                field,
                format!("must be between {min} and {max}, got {n}"),
            ));
        }
        u32::try_from(n).map_err(|_| self.err(v.span(), field, "out of range"))
    }

    pub(crate) fn qos(&self, v: Option<&S<i64>>, field: &str, default: Qos) -> R<Qos> {
        match v {
            None => Ok(default),
            Some(v) => u8::try_from(*v.get_ref())
                .ok()
                .and_then(Qos::from_level)
                .ok_or_else(|| {
                    self.err(
                        v.span(),
                        field,
                        format!("must be 0, 1 or 2, got {}", v.get_ref()),
                    )
                }),
        }
    }

    /// An optional connections-per-second figure: above zero; `otherwise` says what leaving it
    /// out does.
    pub(crate) fn connect_rate(
        &self,
        v: Option<&S<f64>>,
        field: &str,
        otherwise: &str,
    ) -> R<Option<f64>> {
        match v {
            Some(r) if !(MIN_CONNECT_RATE..=MAX_CONNECT_RATE).contains(r.get_ref()) => Err(self
                .err(
                    r.span(),
                    field,
                    format!(
                        "connections per second must be between {MIN_CONNECT_RATE} and \
                         {MAX_CONNECT_RATE}, got {}; leave it out to {otherwise}",
                        r.get_ref()
                    ),
                )),
            r => Ok(r.map(|r| *r.get_ref())),
        }
    }

    pub(crate) fn name(&self, v: &S<String>, field: &str) -> R<String> {
        let s = v.get_ref();
        if s.is_empty()
            || !s
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            return Err(self.err(
                v.span(),
                field,
                format!(
                    "{} is not a valid name; expected letters, digits, '-', '_' or '.'",
                    shown(s)
                ),
            ));
        }
        if s.len() > MAX_NAME {
            return Err(self.err(
                v.span(),
                field,
                format!(
                    "is {} characters long; a name has at most {MAX_NAME}",
                    s.len()
                ),
            ));
        }
        Ok(s.clone())
    }
}

/// A mistake per part that was checked; the parts that did not fail.
#[derive(Default)]
struct Found(Vec<ScenarioError>);

impl Found {
    fn keep<T>(&mut self, r: R<T>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
}

pub fn parse(file: &str, text: &str) -> Result<Scenario, ScenarioErrors> {
    let raw = deserialize(file, text)?;
    let cx = Ctx { file, text };
    let mut found = Found::default();
    let name = found.keep(cx.name(&raw.name, "name"));
    let phases = found
        .keep(crate::validate_load::phases(&cx, &raw.phase))
        .unwrap_or_default();
    let duration = found.keep(run_duration(&cx, &raw, &phases));
    let drain_timeout = found.keep(match &raw.drain_timeout {
        Some(d) => cx.positive_duration(d, "drain_timeout"),
        None => Ok(Duration::from_secs(5)),
    });
    // Later checks compare with the duration; when it is wrong they compare with the longest.
    let known = duration.unwrap_or(MAX_DURATION);
    let warmup = found.keep(warmup(&cx, &raw, known));
    let groups = groups(&cx, &raw, &phases, known, &mut found);
    let observers = match &groups {
        Some(groups) => observers(&cx, &raw, groups, known, &mut found),
        None => None,
    };
    let mut names: HashSet<String> = groups.iter().flatten().map(|g| g.name.clone()).collect();
    names.extend(observers.iter().flatten().map(|o| o.name.clone()));
    let controllers = match &groups {
        Some(g) => found.keep(crate::validate_behaviour::controllers(
            &cx,
            &raw.controller,
            g,
            &mut names,
        )),
        None => None,
    };
    let clients = groups
        .iter()
        .flatten()
        .map(|g| u64::from(g.count))
        .sum::<u64>()
        + observers
            .iter()
            .flatten()
            .map(|o| u64::from(o.count))
            .sum::<u64>();
    let broker = found.keep(crate::validate_broker::broker(
        &cx,
        raw.broker.as_ref(),
        clients,
    ));
    let protocol = found.keep(crate::validate_behaviour::protocol(&cx, &raw));
    if let (Some(g), Some(o)) = (&groups, &observers) {
        found.keep(crate::validate_behaviour::expiry_outlasts_absences(
            &cx, &raw, g, o,
        ));
    }
    let expect = found.keep(match &raw.expect {
        Some(e) => crate::validate_expect::expectations(&cx, e.get_ref()),
        None => Ok(Expectations::default()),
    });
    let regression = found.keep(match &raw.regression {
        Some(r) => crate::validate_expect::regression(&cx, r.get_ref()),
        None => Ok(Regression::default()),
    });
    if !found.0.is_empty() {
        return Err(ScenarioErrors::new(found.0));
    }
    let parts = (
        name,
        duration,
        drain_timeout,
        warmup,
        groups,
        observers,
        controllers,
    );
    let (
        Some(name),
        Some(duration),
        Some(drain_timeout),
        Some(warmup),
        Some(groups),
        Some(observers),
        Some(controllers),
    ) = parts
    else {
        return Err(cx.err(0..0, "(file)", "could not be validated").into());
    };
    let (Some(broker), Some(protocol), Some(expect), Some(regression)) =
        (broker, protocol, expect, regression)
    else {
        return Err(cx.err(0..0, "(file)", "could not be validated").into());
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
        phases,
        groups,
        observers,
        controllers,
        expect,
        regression,
    })
}

/// How long devices publish: `duration`, or the phases' total (both only when they agree).
fn run_duration(cx: &Ctx, raw: &RawScenario, phases: &[crate::load::LoadPhase]) -> R<Duration> {
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

fn warmup(cx: &Ctx, raw: &RawScenario, duration: Duration) -> R<Duration> {
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

/// Every device group, or None when any is wrong (each mistake is in `found`).
fn groups(
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
        .keep(crate::validate_behaviour::check_device_topics(
            cx, &raw.group, &groups,
        ))
        .is_some();
    all &= found.keep(check_client_ids(cx, raw, &groups)).is_some();
    all.then_some(groups)
}

/// Every observer (their filters are checked against the groups' topics), or None when any is
/// wrong.
fn observers(
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

fn group(
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
        Some(p) => {
            pattern(cx, p, &f("client_id"))?;
            if count > 1 && !p.get_ref().contains("{index}") {
                return Err(cx.err(
                    p.span(),
                    f("client_id"),
                    format!(
                        "{count} devices would share the client id {}; include \"{{index}}\" in the pattern",
                        shown(p.get_ref())
                    ),
                ));
            }
            let longest = topic::render(p.get_ref(), &name, count - 1);
            if longest.len() > MAX_MQTT_STRING {
                return Err(cx.err(
                    p.span(),
                    f("client_id"),
                    format!(
                        "renders to {} bytes; MQTT allows client ids of at most {MAX_MQTT_STRING}",
                        longest.len()
                    ),
                ));
            }
            p.get_ref().clone()
        }
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
    let qos = cx.qos(g.qos.as_ref(), &f("qos"), Qos::AtLeastOnce)?;
    let arrivals = crate::validate_load::arrivals(cx, g.arrivals.as_ref(), &f("arrivals"))?;
    let payload = crate::validate_load::payload(cx, g, &format!("group[{i}]"))?;
    let connect_rate = match &g.connect_rate {
        Some(r) if phases.iter().any(|p| p.connect_rate.is_some()) => {
            return Err(cx.err(
                r.span(),
                f("connect_rate"),
                "the phases set connect rates for the whole fleet; remove the group's",
            ))
        }
        r => cx.connect_rate(r.as_ref(), &f("connect_rate"), "connect all at once")?,
    };
    if let (Some(rate), Some(raw)) = (connect_rate, &g.connect_rate) {
        let last = f64::from(count - 1) / rate;
        if last >= duration.as_secs_f64() {
            return Err(cx.err(
                raw.span(),
                f("connect_rate"),
                format!(
                    "the last of {count} devices would connect {last:.1}s into a run of {}: \
                     after it ended; raise connect_rate or lengthen the run",
                    humantime::format_duration(duration)
                ),
            ));
        }
    }
    let keep_alive = match &g.keep_alive {
        Some(k) => {
            let d = cx.duration(k, &f("keep_alive"))?;
            if d < Duration::from_secs(5) || d > Duration::from_secs(65_535) {
                return Err(cx.err(
                    k.span(),
                    f("keep_alive"),
                    "must be between 5s and 65535s (rumqttd refuses a keep-alive of 0)",
                ));
            }
            d
        }
        None => Duration::from_secs(30),
    };
    Ok(DeviceGroup {
        count,
        client_id,
        topic: g.topic.get_ref().clone(),
        rate,
        qos,
        arrivals,
        payload,
        connect_rate,
        keep_alive,
        behaviour: crate::validate_behaviour::group_behaviour(cx, i, g, &name, count, duration)?,
        name,
    })
}

/// A topic pattern of a group: valid placeholders, and every device's rendering a topic name a
/// device may publish to (the longest index checked for length). Returns device 0's topic.
pub(crate) fn rendered_topic(
    cx: &Ctx,
    p: &S<String>,
    field: &str,
    group: &str,
    count: u32,
) -> R<String> {
    pattern(cx, p, field)?;
    let sample = topic::render(p.get_ref(), group, 0);
    let longest = topic::render(p.get_ref(), group, count.saturating_sub(1));
    for t in [&sample, &longest] {
        if let Some(problem) = topic::topic_name_problem(t) {
            return Err(cx.err(
                p.span(),
                field,
                format!("{problem} (rendered {})", shown(t)),
            ));
        }
    }
    Ok(sample)
}

pub(crate) fn pattern(cx: &Ctx, p: &S<String>, field: &str) -> R<()> {
    if let Some(bad) = topic::unknown_placeholder(p.get_ref()) {
        return Err(cx.err(
            p.span(),
            field,
            format!("unknown placeholder {bad:?}; expected {{group}} or {{index}}"),
        ));
    }
    if p.get_ref().is_empty() {
        return Err(cx.err(p.span(), field, "must not be empty"));
    }
    Ok(())
}

fn observer(
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
    let (clean_session, offline, join_at) =
        crate::validate_behaviour::observer_session(cx, i, o, duration)?;
    let mut filters = Vec::new();
    let mut share = None;
    for (j, filter) in o.filters.get_ref().iter().enumerate() {
        let field = format!("observer[{i}].filters[{j}]");
        let text = filter.get_ref();
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
        filters.push(text.clone());
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

fn check_client_ids(cx: &Ctx, raw: &RawScenario, groups: &[DeviceGroup]) -> R<()> {
    let mut seen = HashSet::new();
    for (i, g) in groups.iter().enumerate() {
        for index in 0..g.count {
            let id = topic::render(&g.client_id, &g.name, index);
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

/// Deserialise the file into its wire types; a syntax or type error names its line and the
/// field path the deserializer was at (`observer[0].filters[2]`), taken from the deserializer
/// itself rather than guessed from the text.
fn deserialize(file: &str, text: &str) -> R<RawScenario> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        toml_error(file, text, &e, &field_at(text, at))
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = field_path(e.path());
        toml_error(file, text, e.inner(), &path)
    })
}

/// A path as a scenario error names fields: `group[0].json.temperature`. toml's own spans
/// travel through the path as private keys; they are left out.
fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

fn toml_error(file: &str, text: &str, e: &toml::de::Error, path: &str) -> ScenarioError {
    let offset = e.span().map_or(0, |s| s.start);
    let message = e.message().trim().to_string();
    // A missing field has no position of its own: name it after the table it is missing from.
    let field = match message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        Some(missing) if path.is_empty() => missing.to_string(),
        Some(missing) => format!("{path}.{missing}"),
        None if path.is_empty() => "(file)".to_string(),
        None => path.to_string(),
    };
    ScenarioError::new(Location::at(file, text, offset), field, message)
}

/// For a syntax error (the deserializer has no path yet), the dotted field a byte offset stands
/// in: its table header (with the array index for `[[array]]` tables) and the key of its line,
/// or of the line a multi-line value started on.
fn field_at(text: &str, offset: usize) -> String {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in text[..line_start].lines().chain(std::iter::once(line)) {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            let name = name.trim();
            // A sub-table of the latest entry of an array of tables: `[group.json]`.
            table = match name.split_once('.') {
                Some((array, rest)) if counts.get(array).is_some_and(|n| *n > 0) => {
                    format!("{array}[{}].{rest}", counts[array] - 1)
                }
                _ => name.to_string(),
            };
        }
    }
    if line.starts_with('[') && !line.contains('=') {
        return table;
    }
    // The key of this line, or of the nearest line above it in the same table that has one (a
    // value spread over several lines).
    let keyed = std::iter::once(line)
        .chain(text[..line_start].lines().rev().map(str::trim))
        .take_while(|l| !l.starts_with('[') || l.contains('='))
        .find(|l| l.contains('=') && !l.starts_with('#'));
    let key = keyed
        .and_then(|l| l.split('=').next())
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let key = if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        key
    } else {
        ""
    };
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}
