//! Wire types of the scenario file: what the TOML says, with the position of every value so that
//! validation can point at the line of a mistake. Unknown fields are rejected here.

use serde::Deserialize;
use toml::Spanned;

pub type S<T> = Spanned<T>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawScenario {
    pub name: S<String>,
    #[serde(default)]
    pub description: Option<S<String>>,
    #[serde(default)]
    pub seed: Option<S<u64>>,
    pub duration: S<String>,
    #[serde(default)]
    pub drain_timeout: Option<S<String>>,
    #[serde(default)]
    pub warmup: Option<S<String>>,
    #[serde(default)]
    pub broker: Option<S<RawBroker>>,
    #[serde(default)]
    pub group: Vec<S<RawGroup>>,
    #[serde(default)]
    pub observer: Vec<S<RawObserver>>,
    #[serde(default)]
    pub expect: Option<S<RawExpect>>,
    #[serde(default)]
    pub regression: Option<S<RawRegression>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBroker {
    #[serde(default)]
    pub url: Option<S<String>>,
    #[serde(default)]
    pub listeners: Option<S<i64>>,
    #[serde(default)]
    pub tcp_nodelay: Option<S<bool>>,
    #[serde(default)]
    pub process: Option<S<String>>,
    #[serde(default)]
    pub username: Option<S<String>>,
    #[serde(default)]
    pub password_env: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGroup {
    pub name: S<String>,
    pub count: S<i64>,
    #[serde(default)]
    pub client_id: Option<S<String>>,
    pub topic: S<String>,
    pub rate: S<f64>,
    #[serde(default)]
    pub qos: Option<S<i64>>,
    #[serde(default)]
    pub payload_size: Option<S<i64>>,
    #[serde(default)]
    pub connect_rate: Option<S<f64>>,
    #[serde(default)]
    pub keep_alive: Option<S<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawObserver {
    pub name: S<String>,
    #[serde(default)]
    pub count: Option<S<i64>>,
    pub filters: S<Vec<S<String>>>,
    #[serde(default)]
    pub qos: Option<S<i64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawExpect {
    #[serde(default)]
    pub delivered_ratio: Option<S<f64>>,
    #[serde(default)]
    pub max_lost: Option<S<i64>>,
    #[serde(default)]
    pub max_duplicates: Option<S<i64>>,
    #[serde(default)]
    pub max_reordered: Option<S<i64>>,
    #[serde(default)]
    pub p50: Option<S<String>>,
    #[serde(default)]
    pub p90: Option<S<String>>,
    #[serde(default)]
    pub p99: Option<S<String>>,
    #[serde(default)]
    pub p999: Option<S<String>>,
    #[serde(default)]
    pub max_latency: Option<S<String>>,
    #[serde(default)]
    pub min_deliver_per_s: Option<S<f64>>,
    #[serde(default)]
    pub min_publish_per_s: Option<S<f64>>,
    #[serde(default)]
    pub max_late_share: Option<S<f64>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRegression {
    #[serde(default)]
    pub latency: Option<S<f64>>,
    #[serde(default)]
    pub latency_floor: Option<S<String>>,
    #[serde(default)]
    pub throughput: Option<S<f64>>,
    #[serde(default)]
    pub calibrate_latency: Option<bool>,
    #[serde(default)]
    pub calibrate_throughput: Option<bool>,
    #[serde(default)]
    pub repeat: Option<S<i64>>,
    #[serde(default)]
    pub gate: Option<bool>,
    #[serde(default)]
    pub skip: Vec<S<String>>,
}
