//! Validation of load phases, arrival processes and payload models.

use std::time::Duration;

use crate::load::{Arrivals, LoadPhase};
use crate::payload::{Generator, JsonField, Payload, TimeUnit, DEFAULT_DECIMALS};
use crate::raw::{RawGenerator, RawGroup, RawPhase, S};
use crate::validate::{Ctx, MAX_PAYLOAD, MIN_PAYLOAD, R};

/// Largest rate multiple a phase may ask for.
const MAX_SCALE: f64 = 1_000.0;
const MAX_DECIMALS: u32 = 9;

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

fn generator(cx: &Ctx, g: &S<RawGenerator>, field: &str) -> R<Generator> {
    let bad = |msg: String| cx.err(g.span(), field, msg);
    let decimals = |d: &Option<u32>| -> R<u32> {
        match d {
            Some(d) if *d > MAX_DECIMALS => Err(bad(format!(
                "decimals must be at most {MAX_DECIMALS}, got {d}"
            ))),
            Some(d) => Ok(*d),
            None => Ok(DEFAULT_DECIMALS),
        }
    };
    let finite = |vals: &[(&str, f64)]| -> R<()> {
        match vals.iter().find(|(_, v)| !v.is_finite()) {
            Some((name, v)) => Err(bad(format!("{name} must be a finite number, got {v}"))),
            None => Ok(()),
        }
    };
    Ok(match g.get_ref() {
        RawGenerator::Constant { value } => {
            if let crate::raw::RawConstant::Text(t) = value {
                if t.len() > 256 {
                    return Err(bad("a constant string is at most 256 bytes".into()));
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
        RawGenerator::Uniform {
            min,
            max,
            decimals: d,
        } => {
            finite(&[("min", *min), ("max", *max)])?;
            if min > max {
                return Err(bad(format!("min ({min}) is above max ({max})")));
            }
            Generator::Uniform {
                min: *min,
                max: *max,
                decimals: decimals(d)?,
            }
        }
        RawGenerator::Normal {
            mean,
            std_dev,
            decimals: d,
        } => {
            finite(&[("mean", *mean), ("std_dev", *std_dev)])?;
            if *std_dev < 0.0 {
                return Err(bad(format!("std_dev must be 0 or more, got {std_dev}")));
            }
            Generator::Normal {
                mean: *mean,
                std_dev: *std_dev,
                decimals: decimals(d)?,
            }
        }
        RawGenerator::RandomWalk {
            start,
            step,
            min,
            max,
            decimals: d,
        } => {
            finite(&[
                ("start", *start),
                ("step", *step),
                ("min", *min),
                ("max", *max),
            ])?;
            if !(min <= start && start <= max) {
                return Err(bad(format!(
                    "start ({start}) must lie between min ({min}) and max ({max})"
                )));
            }
            if *step < 0.0 {
                return Err(bad(format!("step must be 0 or more, got {step}")));
            }
            Generator::RandomWalk {
                start: *start,
                step: *step,
                min: *min,
                max: *max,
                decimals: decimals(d)?,
            }
        }
        RawGenerator::Sine {
            period,
            amplitude,
            offset,
            noise,
            decimals: d,
        } => {
            let period = humantime::parse_duration(period.trim())
                .ok()
                .filter(|p| !p.is_zero())
                .ok_or_else(|| {
                    bad(format!(
                        "period {period:?} is not a duration above zero (such as \"60s\")"
                    ))
                })?;
            let (offset, noise) = (offset.unwrap_or(0.0), noise.unwrap_or(0.0));
            finite(&[
                ("amplitude", *amplitude),
                ("offset", offset),
                ("noise", noise),
            ])?;
            if noise < 0.0 {
                return Err(bad(format!("noise must be 0 or more, got {noise}")));
            }
            Generator::Sine {
                period,
                amplitude: *amplitude,
                offset,
                noise,
                decimals: decimals(d)?,
            }
        }
        RawGenerator::Timestamp { unit } => Generator::Timestamp {
            unit: match unit.as_deref() {
                None | Some("ms") => TimeUnit::Ms,
                Some("s") => TimeUnit::S,
                Some(other) => {
                    return Err(bad(format!("unit {other:?}: expected \"ms\" or \"s\"")))
                }
            },
        },
        RawGenerator::Index {} => Generator::Index,
        RawGenerator::Group {} => Generator::Group,
        RawGenerator::ClientId {} => Generator::ClientId,
    })
}
