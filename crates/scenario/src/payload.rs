//! Payload models: fixed-size binary, or JSON telemetry whose fields come from generators.

use std::time::Duration;

use serde::Serialize;

use crate::durations::ser_duration;
pub use crate::raw::RawConstant as Constant;

/// Bytes of the delivery header every message carries (device, sequence number, intended and
/// actual send time; laid out by the fleet's codec): the smallest payload. Defined once, here.
pub const HEADER_LEN: usize = 32;

/// What a group's messages carry besides the delivery header.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "format", rename_all = "snake_case")]
pub enum Payload {
    /// The 32-byte header, then filler up to `size` bytes.
    Binary { size: u32 },
    /// A JSON object with these fields (in name order) and the header in the field "_fb".
    Json { fields: Vec<JsonField> },
}

impl Payload {
    /// Most bytes one message of this model can take (to size packet limits).
    pub fn max_size(&self) -> usize {
        match self {
            Payload::Binary { size } => *size as usize,
            // Names, values (numbers up to 24 characters, strings up to 256) and the header.
            Payload::Json { fields } => {
                fields.iter().map(|f| f.name.len() + 6 + 256).sum::<usize>() + 128
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JsonField {
    pub name: String,
    pub generator: Generator,
}

/// How a field's value is made for each message (see the scenario schema for the meaning).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Generator {
    Constant {
        value: Constant,
    },
    Counter {
        start: i64,
        step: i64,
    },
    Uniform {
        min: f64,
        max: f64,
        decimals: u32,
    },
    Normal {
        mean: f64,
        std_dev: f64,
        decimals: u32,
    },
    RandomWalk {
        start: f64,
        step: f64,
        min: f64,
        max: f64,
        decimals: u32,
    },
    Sine {
        #[serde(serialize_with = "ser_duration")]
        period: Duration,
        amplitude: f64,
        offset: f64,
        noise: f64,
        decimals: u32,
    },
    Timestamp {
        unit: TimeUnit,
    },
    Index,
    Group,
    ClientId,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeUnit {
    Ms,
    S,
}

/// Decimal places of generated numbers unless the field says otherwise.
pub const DEFAULT_DECIMALS: u32 = 2;
