//! Message bodies from a group's payload model. Binary: the delivery header, then filler. JSON:
//! the fields' generated values, then the header as 64 hex digits in the last field, "_fb", so
//! the payload stays valid JSON and the observer finds the header at a fixed distance from the
//! end.
//!
//! Every value is drawn from the device's own seeded generator in message order: the same seed
//! gives the same bytes on any machine.

use std::fmt::Write as _;

use fleetbench_scenario::load::SplitMix64;
use fleetbench_scenario::payload::{Constant, Generator, JsonField, Payload, TimeUnit};
use fleetbench_scenario::DeviceSpec;

use crate::codec::{Header, HEADER_LEN};

/// Bytes the JSON header field takes at the end of a payload: `,"_fb":"<64 hex>"}`.
pub const JSON_TAIL_LEN: usize = 10 + 2 * HEADER_LEN;

/// Makes one device's payloads.
pub enum PayloadMaker {
    Binary(Vec<u8>),
    Json(JsonMaker),
}

impl PayloadMaker {
    pub fn new(spec: &DeviceSpec) -> PayloadMaker {
        match &*spec.payload {
            Payload::Binary { size } => PayloadMaker::Binary(Header::template(*size as usize)),
            Payload::Json { fields } => PayloadMaker::Json(JsonMaker::new(spec, fields)),
        }
    }

    /// The payload of message `header.seq`, intended at `intended_unix_ns`.
    pub fn make(&mut self, header: &Header, intended_unix_ns: u64) -> Vec<u8> {
        match self {
            PayloadMaker::Binary(template) => {
                let mut payload = template.clone();
                header.write(&mut payload);
                payload
            }
            PayloadMaker::Json(j) => {
                let mut out = String::with_capacity(j.capacity);
                j.body(header.seq, intended_unix_ns, &mut out);
                let mut bytes = out.into_bytes();
                push_header(header, &mut bytes);
                bytes
            }
        }
    }
}

/// One device's JSON fields and their state (counters, random walks, the random stream).
pub struct JsonMaker {
    fields: Vec<JsonField>,
    state: Vec<f64>,
    rng: SplitMix64,
    index: u32,
    group: String,
    client_id: String,
    capacity: usize,
}

impl JsonMaker {
    pub fn new(spec: &DeviceSpec, fields: &[JsonField]) -> JsonMaker {
        let state = fields
            .iter()
            .map(|f| match f.generator {
                Generator::RandomWalk { start, .. } => start,
                _ => 0.0,
            })
            .collect();
        JsonMaker {
            fields: fields.to_vec(),
            state,
            rng: SplitMix64(spec.payload_seed()),
            index: spec.index,
            group: spec.group_name.clone(),
            client_id: spec.client_id.clone(),
            capacity: spec.payload.max_size(),
        }
    }

    /// The JSON object of message `seq` without its closing brace: `{"a":1,"b":2`. Values
    /// depend only on the seed, the message's sequence number and its intended time.
    pub fn body(&mut self, seq: u64, intended_unix_ns: u64, out: &mut String) {
        out.push('{');
        for (i, f) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_string(out, &f.name);
            out.push(':');
            let rng = &mut self.rng;
            match &f.generator {
                Generator::Constant { value } => match value {
                    Constant::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
                    Constant::Int(n) => {
                        let _ = write!(out, "{n}");
                    }
                    Constant::Float(x) => push_number(out, *x, 9),
                    Constant::Text(t) => push_json_string(out, t),
                },
                Generator::Counter { start, step } => {
                    let v = start.wrapping_add(step.wrapping_mul(seq as i64));
                    let _ = write!(out, "{v}");
                }
                Generator::Uniform { min, max, decimals } => {
                    push_number(out, min + (max - min) * rng.unit(), *decimals)
                }
                Generator::Normal {
                    mean,
                    std_dev,
                    decimals,
                } => push_number(out, mean + std_dev * rng.normal(), *decimals),
                Generator::RandomWalk {
                    step,
                    min,
                    max,
                    decimals,
                    ..
                } => {
                    let v = &mut self.state[i];
                    if seq > 0 {
                        *v = (*v + step * (2.0 * rng.unit() - 1.0)).clamp(*min, *max);
                    }
                    push_number(out, *v, *decimals);
                }
                Generator::Sine {
                    period,
                    amplitude,
                    offset,
                    noise,
                    decimals,
                } => {
                    let t = intended_unix_ns as f64 / 1e9;
                    let phase = 2.0 * std::f64::consts::PI * t / period.as_secs_f64();
                    let v = offset + amplitude * phase.sin() + noise * rng.normal();
                    push_number(out, v, *decimals);
                }
                Generator::Timestamp { unit } => {
                    let v = match unit {
                        TimeUnit::Ms => intended_unix_ns / 1_000_000,
                        TimeUnit::S => intended_unix_ns / 1_000_000_000,
                    };
                    let _ = write!(out, "{v}");
                }
                Generator::Index => {
                    let _ = write!(out, "{}", self.index);
                }
                Generator::Group => push_json_string(out, &self.group),
                Generator::ClientId => push_json_string(out, &self.client_id),
            }
        }
    }
}

/// A finite number with at most `decimals` places, trailing zeros dropped (JSON has no NaN).
fn push_number(out: &mut String, x: f64, decimals: u32) {
    if !x.is_finite() {
        out.push('0');
        return;
    }
    let start = out.len();
    let _ = write!(out, "{x:.prec$}", prec = decimals as usize);
    if out[start..].contains('.') {
        let trimmed = out[start..].trim_end_matches('0').trim_end_matches('.').len();
        out.truncate(start + trimmed);
    }
    if &out[start..] == "-0" {
        out.truncate(start);
        out.push('0');
    }
}

fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Close a JSON body with the header field: `,"_fb":"<hex>"}` (or `"_fb":...` alone in `{`).
fn push_header(header: &Header, out: &mut Vec<u8>) {
    let mut raw = [0u8; HEADER_LEN];
    header.write(&mut raw);
    if out.len() > 1 {
        out.push(b',');
    } else {
        // An object with no other field: keep the tail's length fixed with a leading space.
        out.push(b' ');
    }
    out.extend_from_slice(b"\"_fb\":\"");
    for b in raw {
        out.push(HEX[usize::from(b >> 4)]);
        out.push(HEX[usize::from(b & 15)]);
    }
    out.extend_from_slice(b"\"}");
}

/// The header of a JSON payload (see [`push_header`]), if it ends with one.
pub fn json_header(payload: &[u8]) -> Option<[u8; HEADER_LEN]> {
    let tail = payload.get(payload.len().checked_sub(JSON_TAIL_LEN)?..)?;
    let hex = tail.strip_prefix(b",\"_fb\":\"".as_slice())
        .or_else(|| tail.strip_prefix(b" \"_fb\":\"".as_slice()))?
        .strip_suffix(b"\"}".as_slice())?;
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut raw = [0u8; HEADER_LEN];
    for (i, pair) in hex.chunks_exact(2).enumerate() {
        raw[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(raw)
}
