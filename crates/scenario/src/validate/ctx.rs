//! What every part of validation shares: where the file is, how errors are made, the limits a
//! scenario must keep, and the checks of single values (durations, counts, names, patterns).

use std::ops::Range;
use std::time::Duration;

use crate::error::{Location, ScenarioError};
use crate::model::Qos;
use crate::raw::S;
use crate::topic;

/// Smallest payload: the delivery header every message carries (see the fleet's payload codec).
pub(super) const MIN_PAYLOAD: i64 = crate::payload::HEADER_LEN as i64;

pub(super) const MAX_PAYLOAD: i64 = 1 << 20;

pub(crate) const MAX_RATE: f64 = 100_000.0;

/// The slowest rate: a message a day, about.
pub(crate) const MIN_RATE: f64 = 0.00001;

pub(crate) const MAX_COUNT: i64 = 1_000_000;

/// The longest any duration in a scenario may be, and the longest run: a week. Beyond that a
/// value is a typo, and deadlines computed from it would leave the clock's range.
pub(crate) const MAX_DURATION: Duration = Duration::from_secs(7 * 24 * 3600);

/// Connections per second a connect rate may ask for.
pub(crate) const MIN_CONNECT_RATE: f64 = 0.001;

pub(crate) const MAX_CONNECT_RATE: f64 = 1_000_000.0;

/// MQTT's strings (client ids, topics, user names) are at most this many bytes.
pub const MAX_MQTT_STRING: usize = 65_535;

/// Names of groups, observers, controllers and the scenario: they go into client ids and file
/// names.
pub(crate) const MAX_NAME: usize = 100;

/// A value as an error message may quote it: at most 60 characters.
pub(crate) fn shown(s: &str) -> String {
    match s.char_indices().nth(60) {
        Some((cut, _)) => format!("{:?}... ({} bytes)", &s[..cut], s.len()),
        None => format!("{s:?}"),
    }
}

pub(crate) struct Ctx<'a> {
    pub(crate) file: &'a str,
    pub(crate) text: &'a str,
}

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

pub(crate) type R<T> = Result<T, ScenarioError>;

/// A mistake per part that was checked; the parts that did not fail.
#[derive(Default)]
pub(crate) struct Found(pub(crate) Vec<ScenarioError>);

impl Found {
    pub(crate) fn keep<T>(&mut self, r: R<T>) -> Option<T> {
        r.map_err(|e| self.0.push(e)).ok()
    }
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
    let sample = topic::render(p.get_ref(), group, 0, 0);
    let longest = topic::render(p.get_ref(), group, count.saturating_sub(1), 0);
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
            format!("unknown placeholder {bad:?}; expected {{group}}, {{index}} or {{shard}}"),
        ));
    }
    if p.get_ref().is_empty() {
        return Err(cx.err(p.span(), field, "must not be empty"));
    }
    Ok(())
}
