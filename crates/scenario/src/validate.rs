//! From wire types to the validated model. Every check names the file, line, field and what was
//! expected; nothing here touches the network.

use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;

use crate::error::{Location, ScenarioError};
use crate::model::*;
use crate::raw::*;
use crate::topic;
use crate::validate_behaviour::Topics;

/// Smallest payload: the delivery header every message carries (see the fleet's payload codec).
pub const MIN_PAYLOAD: i64 = 32;
pub const MAX_PAYLOAD: i64 = 1 << 20;
const MAX_RATE: f64 = 100_000.0;
const MAX_COUNT: i64 = 1_000_000;

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

    pub(crate) fn duration(&self, v: &S<String>, field: &str) -> R<Duration> {
        humantime::parse_duration(v.get_ref().trim()).map_err(|e| {
            self.err(
                v.span(),
                field,
                format!(
                    "{:?} is not a duration ({e}); expected a number with a unit, such as \"30s\", \"500ms\" or \"2m\"",
                    v.get_ref()
                ),
            )
        })
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
            Some(r) if r.get_ref().is_nan() || *r.get_ref() <= 0.0 => Err(self.err(
                r.span(),
                field,
                format!(
                    "connections per second must be above 0, got {}; leave it out to {otherwise}",
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
                format!("{s:?} is not a valid name; expected letters, digits, '-', '_' or '.'"),
            ));
        }
        Ok(s.clone())
    }
}

pub fn parse(file: &str, text: &str) -> R<Scenario> {
    let raw: RawScenario = toml::from_str(text).map_err(|e| serde_error(file, text, &e))?;
    let cx = Ctx { file, text };
    let name = cx.name(&raw.name, "name")?;
    let phases = crate::validate_load::phases(&cx, &raw.phase)?;
    let duration = match (&raw.duration, phases.last()) {
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
    let drain_timeout = match &raw.drain_timeout {
        Some(d) => cx.positive_duration(d, "drain_timeout")?,
        None => Duration::from_secs(5),
    };
    let warmup = match &raw.warmup {
        Some(w) => {
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
            d
        }
        None => Duration::ZERO,
    };

    if raw.group.is_empty() {
        return Err(cx.err(
            0..0,
            "group",
            "no device group; add at least one [[group]] table",
        ));
    }
    let mut groups = Vec::with_capacity(raw.group.len());
    let mut names = HashSet::new();
    for (i, g) in raw.group.iter().enumerate() {
        let group = group(&cx, i, g.get_ref(), &phases, duration)?;
        if !names.insert(group.name.clone()) {
            return Err(cx.err(
                g.get_ref().name.span(),
                format!("group[{i}].name"),
                format!(
                    "group name {:?} is used twice; group names must be unique",
                    group.name
                ),
            ));
        }
        groups.push(group);
    }

    if raw.observer.is_empty() {
        let end = text.trim_end().len();
        return Err(cx.err(
            end..end,
            "observer",
            "no observer; add at least one [[observer]] table with the filters it subscribes to, \
             so that deliveries can be measured",
        ));
    }
    crate::validate_behaviour::check_device_topics(&cx, &raw.group, &groups)?;
    let mut observers = Vec::with_capacity(raw.observer.len());
    let topics = Topics::of(&groups);
    for (i, o) in raw.observer.iter().enumerate() {
        let observer = observer(&cx, i, o.get_ref(), &topics, duration)?;
        if !names.insert(observer.name.clone()) {
            return Err(cx.err(
                o.get_ref().name.span(),
                format!("observer[{i}].name"),
                format!(
                    "name {:?} is already used by a group or observer",
                    observer.name
                ),
            ));
        }
        observers.push(observer);
    }
    let controllers =
        crate::validate_behaviour::controllers(&cx, &raw.controller, &groups, &mut names)?;
    check_client_ids(&cx, &raw, &groups)?;

    let clients = groups.iter().map(|g| u64::from(g.count)).sum::<u64>()
        + observers.iter().map(|o| u64::from(o.count)).sum::<u64>();
    let broker = broker(&cx, raw.broker.as_ref(), clients)?;
    let protocol = crate::validate_behaviour::protocol(&cx, &raw)?;
    crate::validate_behaviour::expiry_outlasts_absences(&cx, &raw, &groups, &observers)?;
    let expect = match &raw.expect {
        Some(e) => expectations(&cx, e.get_ref())?,
        None => Expectations::default(),
    };
    let regression = match &raw.regression {
        Some(r) => regression(&cx, r.get_ref())?,
        None => Regression::default(),
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
                        "{count} devices would share the client id {:?}; include \"{{index}}\" in the pattern",
                        p.get_ref()
                    ),
                ));
            }
            p.get_ref().clone()
        }
        None => "{group}-{index}".to_string(),
    };
    pattern(cx, &g.topic, &f("topic"))?;
    let sample = topic::render(g.topic.get_ref(), &name, 0);
    if let Some(problem) = topic::topic_name_problem(&sample) {
        return Err(cx.err(
            g.topic.span(),
            f("topic"),
            format!("{problem} (rendered {sample:?})"),
        ));
    }
    let rate = *g.rate.get_ref();
    if !(rate > 0.0 && rate <= MAX_RATE) {
        return Err(cx.err(
            g.rate.span(),
            f("rate"),
            format!(
                "messages per second per device must be above 0 and at most {MAX_RATE}, got {rate}"
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

fn broker(cx: &Ctx, b: Option<&S<RawBroker>>, clients: u64) -> R<BrokerTarget> {
    let default_listeners = clients.div_ceil(1_000).clamp(2, 16) as u16;
    let Some(b) = b else {
        return Ok(BrokerTarget::Embedded(EmbeddedBroker {
            listeners: default_listeners,
            tcp_nodelay: true,
            child_process: false,
        }));
    };
    let b = b.get_ref();
    match &b.url {
        None => {
            let external_only = [
                &b.username,
                &b.password_env,
                &b.ca_file,
                &b.client_cert,
                &b.client_key,
            ];
            if let Some(u) = external_only.into_iter().flatten().next() {
                return Err(cx.err(
                    u.span(),
                    "broker",
                    "credentials and certificates apply to an external broker; set broker.url as well",
                ));
            }
            let listeners = match &b.listeners {
                Some(l) => cx.count(l, "broker.listeners", 1, 64)? as u16,
                None => default_listeners,
            };
            let child_process = match &b.process {
                None => false,
                Some(p) => match p.get_ref().as_str() {
                    "in-process" => false,
                    "child" => true,
                    other => {
                        return Err(cx.err(
                            p.span(),
                            "broker.process",
                            format!("{other:?}: expected \"in-process\" (default) or \"child\""),
                        ))
                    }
                },
            };
            Ok(BrokerTarget::Embedded(EmbeddedBroker {
                listeners,
                tcp_nodelay: b.tcp_nodelay.as_ref().is_none_or(|v| *v.get_ref()),
                child_process,
            }))
        }
        Some(url) => external_broker(cx, b, url),
    }
}

/// An external broker from its URL, credentials and certificates.
fn external_broker(cx: &Ctx, b: &RawBroker, url: &S<String>) -> R<BrokerTarget> {
    for (field, v) in [
        ("broker.listeners", b.listeners.as_ref().map(|v| v.span())),
        ("broker.process", b.process.as_ref().map(|v| v.span())),
    ] {
        if let Some(span) = v {
            return Err(cx.err(
                span,
                field,
                "applies to the embedded broker only; remove it or remove broker.url",
            ));
        }
    }
    let (scheme, rest) = url.get_ref().split_once("://").ok_or_else(|| {
        cx.err(
            url.span(),
            "broker.url",
            "expected a URL such as \"mqtt://127.0.0.1:1883\"",
        )
    })?;
    let scheme = match scheme {
        "mqtt" | "tcp" => Scheme::Mqtt,
        "mqtts" | "ssl" => Scheme::Mqtts,
        "ws" => Scheme::Ws,
        "wss" => Scheme::Wss,
        other => {
            return Err(cx.err(
                url.span(),
                "broker.url",
                format!(
                    "unsupported scheme {other:?}; expected \"mqtt\", \"mqtts\", \"ws\" or \"wss\""
                ),
            ))
        }
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let path = match (scheme.is_websocket(), path.trim_end_matches('/')) {
        (true, "") => "/mqtt".to_string(),
        (true, p) => p.to_string(),
        (false, "") => String::new(),
        (false, p) => {
            return Err(cx.err(
                url.span(),
                "broker.url",
                format!("{p:?}: only ws:// and wss:// URLs have a path"),
            ))
        }
    };
    let (host, port) = match authority
        .rsplit_once(':')
        .filter(|(h, _)| !h.ends_with(':'))
    {
        Some((h, p)) => (
            h,
            p.parse::<u16>().map_err(|_| {
                cx.err(
                    url.span(),
                    "broker.url",
                    format!("{p:?} is not a port number (1-65535)"),
                )
            })?,
        ),
        None => (authority, scheme.default_port()),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() || port == 0 {
        return Err(cx.err(
            url.span(),
            "broker.url",
            "expected host and port, such as \"mqtt://127.0.0.1:1883\"",
        ));
    }
    let tls = TlsFiles {
        ca_file: b.ca_file.as_ref().map(|v| v.get_ref().clone()),
        client_cert: b.client_cert.as_ref().map(|v| v.get_ref().clone()),
        client_key: b.client_key.as_ref().map(|v| v.get_ref().clone()),
    };
    if !scheme.uses_tls() {
        if let Some(f) = [&b.ca_file, &b.client_cert, &b.client_key]
            .into_iter()
            .flatten()
            .next()
        {
            return Err(cx.err(
                f.span(),
                "broker",
                format!(
                    "certificates apply to TLS connections; use an mqtts:// or wss:// URL instead of {}://",
                    scheme.as_str()
                ),
            ));
        }
    }
    match (&b.client_cert, &b.client_key) {
        (Some(v), None) | (None, Some(v)) => {
            return Err(cx.err(
                v.span(),
                "broker",
                "client_cert and client_key go together: set both or neither",
            ))
        }
        _ => {}
    }
    Ok(BrokerTarget::External(ExternalBroker {
        scheme,
        host: host.to_string(),
        port,
        path,
        tls,
        username: b.username.as_ref().map(|u| u.get_ref().clone()),
        password_env: b.password_env.as_ref().map(|u| u.get_ref().clone()),
    }))
}

fn expectations(cx: &Ctx, e: &RawExpect) -> R<Expectations> {
    let limit = |v: &Option<S<i64>>, field: &str| -> R<Option<u64>> {
        match v {
            None => Ok(None),
            Some(v) if *v.get_ref() < 0 => Err(cx.err(
                v.span(),
                format!("expect.{field}"),
                format!("must be 0 or more, got {}", v.get_ref()),
            )),
            Some(v) => Ok(Some(*v.get_ref() as u64)),
        }
    };
    let latency = |v: &Option<S<String>>, field: &str| -> R<Option<Duration>> {
        v.as_ref()
            .map(|v| cx.duration(v, &format!("expect.{field}")))
            .transpose()
    };
    let rate = |v: &Option<S<f64>>, field: &str| -> R<Option<f64>> {
        match v {
            Some(v) if v.get_ref().is_nan() || *v.get_ref() < 0.0 => Err(cx.err(
                v.span(),
                format!("expect.{field}"),
                format!("messages per second must be 0 or more, got {}", v.get_ref()),
            )),
            v => Ok(v.as_ref().map(|v| *v.get_ref())),
        }
    };
    let delivered_ratio = match &e.delivered_ratio {
        Some(r) if !(0.0..=1.0).contains(r.get_ref()) => {
            return Err(cx.err(
                r.span(),
                "expect.delivered_ratio",
                format!(
                    "a ratio between 0.0 and 1.0 (1.0 = everything delivered), got {}",
                    r.get_ref()
                ),
            ))
        }
        r => r.as_ref().map(|r| *r.get_ref()),
    };
    Ok(Expectations {
        delivered_ratio,
        max_lost: limit(&e.max_lost, "max_lost")?,
        max_duplicates: limit(&e.max_duplicates, "max_duplicates")?,
        max_reordered: limit(&e.max_reordered, "max_reordered")?,
        p50: latency(&e.p50, "p50")?,
        p90: latency(&e.p90, "p90")?,
        p99: latency(&e.p99, "p99")?,
        p999: latency(&e.p999, "p999")?,
        max_latency: latency(&e.max_latency, "max_latency")?,
        min_deliver_per_s: rate(&e.min_deliver_per_s, "min_deliver_per_s")?,
        min_publish_per_s: rate(&e.min_publish_per_s, "min_publish_per_s")?,
        max_late_share: match &e.max_late_share {
            Some(r) if !(0.0..=1.0).contains(r.get_ref()) => {
                return Err(cx.err(
                    r.span(),
                    "expect.max_late_share",
                    format!("a share between 0.0 and 1.0, got {}", r.get_ref()),
                ))
            }
            r => r.as_ref().map(|r| *r.get_ref()),
        },
    })
}

/// Turn a TOML syntax or type error into a [`ScenarioError`] naming line and field.
fn serde_error(file: &str, text: &str, e: &toml::de::Error) -> ScenarioError {
    let offset = e.span().map_or(0, |s| s.start);
    let location = Location::at(file, text, offset);
    let mut message = e.message().trim().to_string();
    if let Some(rest) = message.strip_prefix("unknown field") {
        message = format!("unknown field{rest}");
    }
    ScenarioError::new(location, field_at(text, offset), message)
}

/// The dotted field a byte offset stands in: its table header (with the array index for
/// `[[array]]` tables) and the key on its line.
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
    if line.starts_with('[') {
        return table;
    }
    let key = line
        .split('=')
        .next()
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}

fn regression(cx: &Ctx, r: &RawRegression) -> R<Regression> {
    let d = Regression::default();
    let share = |v: &Option<S<f64>>, field: &str, default: f64| -> R<f64> {
        match v {
            None => Ok(default),
            Some(v) if !(0.0..=10.0).contains(v.get_ref()) => Err(cx.err(
                v.span(),
                format!("regression.{field}"),
                format!(
                    "a relative change between 0.0 and 10.0 (0.25 = 25%), got {}",
                    v.get_ref()
                ),
            )),
            Some(v) => Ok(*v.get_ref()),
        }
    };
    let repeat = match &r.repeat {
        Some(n) => cx.count(n, "regression.repeat", 1, 100)?,
        None => d.repeat,
    };
    let mut skip = Vec::new();
    for s in &r.skip {
        if !REGRESSION_METRICS.contains(&s.get_ref().as_str()) {
            return Err(cx.err(
                s.span(),
                "regression.skip",
                format!(
                    "{:?} is not a compared metric; expected one of {}",
                    s.get_ref(),
                    REGRESSION_METRICS.join(", ")
                ),
            ));
        }
        skip.push(s.get_ref().clone());
    }
    Ok(Regression {
        latency: share(&r.latency, "latency", d.latency)?,
        latency_floor: match &r.latency_floor {
            Some(v) => cx.duration(v, "regression.latency_floor")?,
            None => d.latency_floor,
        },
        throughput: share(&r.throughput, "throughput", d.throughput)?,
        calibrate_latency: r.calibrate_latency.unwrap_or(d.calibrate_latency),
        calibrate_throughput: r.calibrate_throughput.unwrap_or(d.calibrate_throughput),
        repeat,
        gate: r.gate.unwrap_or(d.gate),
        skip,
    })
}
