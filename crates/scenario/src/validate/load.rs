//! Validation of load phases, arrival processes and payload models.

use std::time::Duration;

use crate::error::ScenarioError;
use crate::load::{Arrivals, LoadPhase};
use crate::payload::{Generator, JsonField, Payload, TimeUnit, DEFAULT_DECIMALS};
use crate::raw::{RawGenerator, RawGroup, RawPhase, S};

use super::ctx::{Ctx, MAX_DURATION, MAX_PAYLOAD, MIN_PAYLOAD, R};

/// Largest rate multiple a phase may ask for.
pub(crate) const MAX_SCALE: f64 = 1_000.0;

pub(crate) const MAX_DECIMALS: u32 = 9;

pub(crate) fn phases(cx: &Ctx, raw: &[S<RawPhase>]) -> R<Vec<LoadPhase>> {
    let mut out: Vec<LoadPhase> = Vec::with_capacity(raw.len());
    for (i, p) in raw.iter().enumerate() {
        let f = |name: &str| format!("phase[{i}].{name}");
        let p = p.get_ref();
        let name = cx.name(&p.name, &f("name"))?;
        if out.iter().any(|q| q.name == name) {
            return Err(cx.err(
                p.name.span(),
                f("name"),
                format!("phase name {name:?} is used twice; phase names must be unique"),
            ));
        }
        let duration = cx.positive_duration(&p.duration, &f("duration"))?;
        let scale = |v: &Option<S<f64>>, field: &str, default: f64| -> R<f64> {
            match v {
                None => Ok(default),
                Some(v) if !(0.0..=MAX_SCALE).contains(v.get_ref()) => Err(cx.err(
                    v.span(),
                    f(field),
                    format!(
                        "a multiple of each group's rate between 0 and {MAX_SCALE} (1.0 = the \
                         group's rate, 0 = pause), got {}",
                        v.get_ref()
                    ),
                )),
                Some(v) => Ok(*v.get_ref()),
            }
        };
        let rate = scale(&p.rate, "rate", 1.0)?;
        let rate_end = scale(&p.rate_end, "rate_end", rate)?;
        let connect_rate = cx.connect_rate(
            p.connect_rate.as_ref(),
            &f("connect_rate"),
            "connect the remaining devices at the phase's start",
        )?;
        let start = out.last().map_or(Duration::ZERO, LoadPhase::end);
        out.push(LoadPhase {
            name,
            start,
            duration,
            rate,
            rate_end,
            connect_rate,
        });
    }
    Ok(out)
}

pub(crate) fn arrivals(cx: &Ctx, v: Option<&S<String>>, field: &str) -> R<Arrivals> {
    match v.map(|v| (v, v.get_ref().as_str())) {
        None | Some((_, "fixed")) => Ok(Arrivals::Fixed),
        Some((_, "poisson")) => Ok(Arrivals::Poisson),
        Some((v, other)) => Err(cx.err(
            v.span(),
            field,
            format!("{other:?}: expected \"fixed\" (evenly spaced) or \"poisson\""),
        )),
    }
}

pub(crate) fn payload(cx: &Ctx, g: &RawGroup, prefix: &str) -> R<Payload> {
    let f = |name: &str| format!("{prefix}.{name}");
    match (&g.payload_size, &g.json) {
        (Some(size), Some(_)) => Err(cx.err(
            size.span(),
            f("payload_size"),
            "a group sends either binary payloads (payload_size) or JSON (json), not both",
        )),
        (Some(p), None) => {
            let size = cx
                .count(p, &f("payload_size"), MIN_PAYLOAD, MAX_PAYLOAD)
                .map_err(|mut e| {
                    e.message.push_str(&format!(
                        " (bytes; every message carries a {MIN_PAYLOAD}-byte delivery header)"
                    ));
                    e
                })?;
            Ok(Payload::Binary { size })
        }
        (None, None) => Ok(Payload::Binary { size: 64 }),
        (None, Some(json)) => {
            let mut fields = Vec::new();
            for (name, g) in json.get_ref() {
                let field = f(&format!("json.{name}"));
                if name == "_fb" || name.is_empty() || name.len() > 64 {
                    return Err(cx.err(
                        g.span(),
                        field,
                        "field names are 1-64 characters and \"_fb\" is reserved for the \
                         delivery header",
                    ));
                }
                fields.push(JsonField {
                    name: name.clone(),
                    generator: generator(cx, g, &field)?,
                });
            }
            Ok(Payload::Json { fields })
        }
    }
}

pub(crate) fn generator(cx: &Ctx, g: &S<RawGenerator>, field: &str) -> R<Generator> {
    let check = Check { cx, g, field };
    Ok(match g.get_ref() {
        RawGenerator::Constant { value } => {
            if let crate::raw::RawConstant::Text(t) = value {
                if t.len() > 256 {
                    return Err(check.bad("a constant string is at most 256 bytes".into()));
                }
            }
            Generator::Constant {
                value: value.clone(),
            }
        }
        RawGenerator::Counter { start, step } => Generator::Counter {
            start: start.unwrap_or(0),
            step: step.unwrap_or(1),
        },
        RawGenerator::Timestamp { unit } => Generator::Timestamp {
            unit: match unit.as_deref() {
                None | Some("ms") => TimeUnit::Ms,
                Some("s") => TimeUnit::S,
                Some(other) => {
                    return Err(check.bad(format!("unit {other:?}: expected \"ms\" or \"s\"")))
                }
            },
        },
        RawGenerator::Index {} => Generator::Index,
        RawGenerator::Group {} => Generator::Group,
        RawGenerator::ClientId {} => Generator::ClientId,
        RawGenerator::Sine { .. } => check.sine()?,
        RawGenerator::Uniform { .. }
        | RawGenerator::Normal { .. }
        | RawGenerator::RandomWalk { .. } => check.random()?,
    })
}

/// The checks of one generator, naming its field.
struct Check<'a> {
    cx: &'a Ctx<'a>,
    g: &'a S<RawGenerator>,
    field: &'a str,
}

impl Check<'_> {
    fn bad(&self, msg: String) -> ScenarioError {
        self.cx.err(self.g.span(), self.field, msg)
    }

    fn decimals(&self, d: &Option<u32>) -> R<u32> {
        match d {
            Some(d) if *d > MAX_DECIMALS => {
                Err(self.bad(format!("decimals must be at most {MAX_DECIMALS}, got {d}")))
            }
            Some(d) => Ok(*d),
            None => Ok(DEFAULT_DECIMALS),
        }
    }

    fn finite(&self, vals: &[(&str, f64)]) -> R<()> {
        match vals.iter().find(|(_, v)| !v.is_finite()) {
            Some((name, v)) => Err(self.bad(format!("{name} must be a finite number, got {v}"))),
            None => Ok(()),
        }
    }

    fn at_least_zero(&self, name: &str, v: f64) -> R<()> {
        if v < 0.0 {
            return Err(self.bad(format!("{name} must be 0 or more, got {v}")));
        }
        Ok(())
    }

    /// The random generators: uniform, normal, random walk.
    fn random(&self) -> R<Generator> {
        Ok(match self.g.get_ref() {
            RawGenerator::Uniform { min, max, decimals } => {
                self.finite(&[("min", *min), ("max", *max)])?;
                if min > max {
                    return Err(self.bad(format!("min ({min}) is above max ({max})")));
                }
                Generator::Uniform {
                    min: *min,
                    max: *max,
                    decimals: self.decimals(decimals)?,
                }
            }
            RawGenerator::Normal {
                mean,
                std_dev,
                decimals,
            } => {
                self.finite(&[("mean", *mean), ("std_dev", *std_dev)])?;
                self.at_least_zero("std_dev", *std_dev)?;
                Generator::Normal {
                    mean: *mean,
                    std_dev: *std_dev,
                    decimals: self.decimals(decimals)?,
                }
            }
            RawGenerator::RandomWalk {
                start,
                step,
                min,
                max,
                decimals,
            } => {
                let (start, step, min, max) = (*start, *step, *min, *max);
                self.finite(&[("start", start), ("step", step), ("min", min), ("max", max)])?;
                if !(min <= start && start <= max) {
                    return Err(self.bad(format!(
                        "start ({start}) must lie between min ({min}) and max ({max})"
                    )));
                }
                self.at_least_zero("step", step)?;
                Generator::RandomWalk {
                    start,
                    step,
                    min,
                    max,
                    decimals: self.decimals(decimals)?,
                }
            }
            _ => return Err(self.bad("not a random generator".into())),
        })
    }

    fn sine(&self) -> R<Generator> {
        let RawGenerator::Sine {
            period,
            amplitude,
            offset,
            noise,
            decimals,
        } = self.g.get_ref()
        else {
            return Err(self.bad("not a sine".into()));
        };
        let period = humantime::parse_duration(period.trim())
            .ok()
            .filter(|p| !p.is_zero() && *p <= MAX_DURATION)
            .ok_or_else(|| {
                self.bad(format!(
                    "period {period:?} is not a duration above zero and at most 7 days (such as \
                     \"60s\")"
                ))
            })?;
        let (offset, noise) = (offset.unwrap_or(0.0), noise.unwrap_or(0.0));
        self.finite(&[
            ("amplitude", *amplitude),
            ("offset", offset),
            ("noise", noise),
        ])?;
        self.at_least_zero("noise", noise)?;
        Ok(Generator::Sine {
            period,
            amplitude: *amplitude,
            offset,
            noise,
            decimals: self.decimals(decimals)?,
        })
    }
}
