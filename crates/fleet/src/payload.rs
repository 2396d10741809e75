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

pub use crate::header::{json_header, JSON_TAIL_LEN};
use crate::header::{Header, HEADER_LEN};

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
        let trimmed = out[start..]
            .trim_end_matches('0')
            .trim_end_matches('.')
            .len();
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

#[cfg(test)]
mod tests {
    use fleetbench_scenario::{parse, Plan, Shard};

    use super::*;

    const SCENARIO: &str = r#"
name = "det"
seed = 99
duration = "10s"
[[group]]
name = "th"
count = 3
topic = "b/{index}"
rate = 5.0
arrivals = "poisson"
[group.json]
id = { kind = "index" }
site = { kind = "group" }
cid = { kind = "client_id" }
n = { kind = "counter", start = 10, step = 2 }
t = { kind = "random_walk", start = 20.0, step = 0.5, min = 19.0, max = 21.0 }
h = { kind = "normal", mean = 50.0, std_dev = 5.0, decimals = 1 }
u = { kind = "uniform", min = -1.0, max = 1.0, decimals = 3 }
s = { kind = "sine", period = "4s", amplitude = 10.0, noise = 0.5 }
ts = { kind = "timestamp" }
label = { kind = "constant", value = "quote \" and \\ back" }
[[observer]]
name = "o"
filters = ["b/#"]
"#;

    /// Every message of every device over the run: (due time, payload bytes), with a fixed
    /// wall-clock start so that timestamps are comparable.
    fn messages(seed_text: &str) -> Vec<(std::time::Duration, Vec<u8>)> {
        let s = parse("det.toml", seed_text).expect("valid");
        let plan = Plan::build(&s, Shard::WHOLE);
        let start_unix_ns = 1_700_000_000_000_000_000u64;
        let mut out = Vec::new();
        for d in &plan.devices {
            let mut schedule = d.schedule();
            let mut maker = PayloadMaker::new(d);
            let mut seq = 0;
            while let Some(due) = schedule.next_due(&plan.shape) {
                let header = Header {
                    device: d.id,
                    seq,
                    intended_ns: due.as_nanos() as u64,
                    sent_ns: due.as_nanos() as u64,
                };
                out.push((due, maker.make(&header, start_unix_ns + header.intended_ns)));
                seq += 1;
            }
        }
        out
    }

    #[test]
    fn same_seed_same_schedule_and_bytes() {
        let a = messages(SCENARIO);
        assert!(a.len() > 100, "{} messages", a.len());
        assert_eq!(a, messages(SCENARIO));
        let other = messages(&SCENARIO.replace("seed = 99", "seed = 100"));
        assert_ne!(a, other, "another seed gives other values");
    }

    #[test]
    fn json_payloads_stay_valid_and_carry_the_header() {
        for (due, bytes) in messages(SCENARIO).iter().take(200) {
            let v: serde_json::Value = serde_json::from_slice(bytes).expect("valid JSON");
            let header = Header::from_payload(bytes).expect("header found");
            assert_eq!(header.intended_ns, due.as_nanos() as u64);
            assert_eq!(v["site"], "th");
            assert_eq!(v["cid"], format!("th-{}", v["id"]));
            assert_eq!(v["n"], 10 + 2 * header.seq);
            assert_eq!(v["label"], "quote \" and \\ back");
            let t = v["t"].as_f64().expect("walk");
            assert!((19.0..=21.0).contains(&t));
            let u = v["u"].as_f64().expect("uniform");
            assert!((-1.0..=1.0).contains(&u));
            let ts = v["ts"].as_u64().expect("timestamp");
            assert_eq!(
                ts,
                (1_700_000_000_000_000_000 + header.intended_ns) / 1_000_000
            );
            assert_eq!(v["_fb"].as_str().map(str::len), Some(64));
        }
    }

    #[test]
    fn numbers_are_rounded_and_never_negative_zero() {
        let mut s = String::new();
        push_number(&mut s, 21.456, 1);
        s.push(' ');
        push_number(&mut s, -0.001, 2);
        s.push(' ');
        push_number(&mut s, 3.0, 2);
        s.push(' ');
        push_number(&mut s, f64::NAN, 2);
        assert_eq!(s, "21.5 0 3 0");
    }

    /// The bytes written down once, on x86-64 Linux: if another platform's maths or a change
    /// of the generators moves a single byte, this says so (the same seed must give the same
    /// payloads everywhere).
    #[test]
    fn the_bytes_are_the_ones_written_down() {
        let first: Vec<String> = messages(SCENARIO)
            .iter()
            .take(3)
            .map(|(_, b)| String::from_utf8_lossy(&b[..b.len() - JSON_TAIL_LEN]).to_string())
            .collect();
        assert_eq!(
            first,
            [
                r#"{"cid":"th-0","h":44.6,"id":0,"label":"quote \" and \\ back","n":10,"s":2.9,"site":"th","t":20,"ts":1700000000162,"u":0.274"#,
                r#"{"cid":"th-0","h":53.1,"id":0,"label":"quote \" and \\ back","n":12,"s":4.42,"site":"th","t":20.13,"ts":1700000000288,"u":-0.79"#,
                r#"{"cid":"th-0","h":44.1,"id":0,"label":"quote \" and \\ back","n":14,"s":5.82,"site":"th","t":20.4,"ts":1700000000363,"u":-0.578"#,
            ]
        );
    }

    #[test]
    fn a_foreign_json_payload_is_refused() {
        assert!(Header::from_payload(br#"{"temp":21}"#).is_err());
        assert!(json_header(br#"{"_fb":"zz"}"#).is_none());
    }
}
