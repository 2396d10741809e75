//! The validated scenario: every default resolved, every value checked. Serialisable so that a
//! report can carry the full resolved scenario it ran.

use crate::durations::ser_duration;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Located;
use crate::load::{Arrivals, LoadPhase, LoadShape};
use crate::payload::Payload;

/// MQTT quality of service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Qos {
    AtMostOnce = 0,
    AtLeastOnce = 1,
    ExactlyOnce = 2,
}

impl Qos {
    pub fn from_level(level: u8) -> Option<Qos> {
        match level {
            0 => Some(Qos::AtMostOnce),
            1 => Some(Qos::AtLeastOnce),
            2 => Some(Qos::ExactlyOnce),
            _ => None,
        }
    }

    pub fn level(self) -> u8 {
        self as u8
    }
}

impl Serialize for Qos {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u8(self.level())
    }
}

fn de_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(d)?;
    humantime::parse_duration(&text).map_err(serde::de::Error::custom)
}

fn ser_opt_duration<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => ser_duration(d, s),
        None => s.serialize_none(),
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    pub seed: u64,
    #[serde(serialize_with = "ser_duration")]
    pub duration: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub drain_timeout: Duration,
    /// The start of the publish window whose latency and lateness are not measured (the
    /// fleet connecting); its messages are still accounted for.
    #[serde(serialize_with = "ser_duration")]
    pub warmup: Duration,
    pub broker: BrokerTarget,
    pub protocol: Protocol,
    /// Load phases in order (empty: one constant phase for the whole duration).
    pub phases: Vec<LoadPhase>,
    pub groups: Vec<DeviceGroup>,
    pub observers: Vec<ObserverGroup>,
    /// Clients that command device groups and time the answers.
    pub controllers: Vec<Controller>,
    /// Faults injected into the run, in the order of their start.
    pub faults: Vec<Fault>,
    pub expect: Expectations,
    pub regression: Regression,
}

impl Scenario {
    /// Total number of virtual devices over all groups.
    pub fn device_count(&self) -> u64 {
        self.groups.iter().map(|g| u64::from(g.count)).sum()
    }

    /// The load over time: the phases, or a constant load for the duration.
    pub fn load_shape(&self) -> LoadShape {
        if self.phases.is_empty() {
            LoadShape::constant(self.duration)
        } else {
            LoadShape::new(self.phases.clone())
        }
    }

    /// Total number of observer clients.
    pub fn observer_count(&self) -> u64 {
        self.observers.iter().map(|o| u64::from(o.count)).sum()
    }
}

#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum BrokerTarget {
    Embedded(EmbeddedSettings),
    External(Box<ExternalBroker>),
}

#[derive(Debug, Clone, Serialize)]
pub struct EmbeddedSettings {
    /// Listening ports: connections are spread over them so that accepts are not serialised.
    pub listeners: u16,
    /// Make accepted sockets inherit TCP_NODELAY (off only to measure what Nagle costs).
    pub tcp_nodelay: bool,
    /// Run the broker as a child process (`fleetbench broker`) instead of inside this one:
    /// it then has open-file and CPU budgets of its own.
    pub child_process: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// MQTT over TCP.
    Mqtt,
    /// MQTT over TLS.
    Mqtts,
    /// MQTT over WebSocket.
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Mqtt => "mqtt",
            Scheme::Mqtts => "mqtts",
            Scheme::Ws => "ws",
            Scheme::Wss => "wss",
        }
    }

    pub fn uses_tls(self) -> bool {
        matches!(self, Scheme::Mqtts | Scheme::Wss)
    }

    pub fn is_websocket(self) -> bool {
        matches!(self, Scheme::Ws | Scheme::Wss)
    }

    /// The port a URL without one means.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Mqtt => 1883,
            Scheme::Mqtts => 8883,
            Scheme::Ws => 80,
            Scheme::Wss => 443,
        }
    }
}

/// Certificates for a TLS connection (`mqtts://`, `wss://`), as paths relative to the scenario
/// file's directory (or absolute).
#[derive(Debug, Clone, Default, Serialize)]
pub struct TlsFiles {
    /// PEM file of the certificate authorities to trust; `None` trusts the system's.
    pub ca_file: Option<Located<String>>,
    /// PEM files of the client certificate (chain) and its private key, sent when the broker
    /// asks for one.
    pub client_cert: Option<Located<String>>,
    pub client_key: Option<Located<String>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ExternalBroker {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// The HTTP path of a WebSocket URL ("/mqtt" when the URL has none); empty otherwise.
    pub path: String,
    pub tls: TlsFiles,
    pub username: Option<String>,
    /// Name of the environment variable holding the password; the password itself is never
    /// stored in the scenario model, so it cannot reach a report. Only with `username`.
    pub password_env: Option<Located<String>>,
}

impl ExternalBroker {
    /// The broker's URL as a report may show it (credentials are never part of it).
    pub fn url_without_credentials(&self) -> String {
        let host = url_host(&self.host);
        let (scheme, port, path) = (self.scheme.as_str(), self.port, &self.path);
        format!("{scheme}://{host}:{port}{path}")
    }
}

/// A host as a URL writes it: an IPv6 address in brackets.
pub fn url_host(host: &str) -> std::borrow::Cow<'_, str> {
    if host.contains(':') {
        format!("[{host}]").into()
    } else {
        host.into()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct DeviceGroup {
    pub name: String,
    pub count: u32,
    /// Client-id pattern with `{group}` and `{index}`.
    pub client_id: String,
    /// Topic pattern with `{group}` and `{index}`.
    pub topic: String,
    /// Messages per second per device.
    pub rate: f64,
    pub qos: Qos,
    pub arrivals: Arrivals,
    pub payload: Payload,
    /// New connections per second for this group; `None` connects all at once.
    pub connect_rate: Option<f64>,
    #[serde(serialize_with = "ser_duration")]
    pub keep_alive: Duration,
    /// Status, last will, dropping, commands and reconnecting.
    #[serde(flatten)]
    pub behaviour: GroupBehaviour,
}

/// What a device group does besides publishing its telemetry.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GroupBehaviour {
    /// Published by each device every time it connects.
    pub status: Option<DeviceMessage>,
    /// Left with the broker at connect, published by it when the connection drops.
    pub will: Option<DeviceMessage>,
    /// When every device of the group drops its connection without a DISCONNECT, from the
    /// start of the connect ramp.
    #[serde(serialize_with = "ser_opt_duration")]
    pub drop_at: Option<Duration>,
    pub commands: Option<Commands>,
    pub reconnect: Backoff,
    /// What happens to messages due while the connection is down.
    pub while_down: WhileDown,
    pub mqtt5: Option<Mqtt5Publish>,
}

/// What a device does with messages that fall due while its connection is down.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WhileDown {
    /// Keep them and send them, late, once connected again.
    #[default]
    Queue,
    /// Do not send them; count them as skipped.
    Skip,
}

/// The MQTT version the clients speak.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "3.1.1")]
    V311,
    #[serde(rename = "5")]
    V5,
}

/// MQTT 5 properties of a group's data messages.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Mqtt5Publish {
    /// Name and value patterns (with `{group}` and `{index}`).
    pub user_properties: Vec<(String, String)>,
    pub topic_alias: bool,
    /// Message expiry interval in seconds.
    pub message_expiry_s: Option<u32>,
}

/// A message a device publishes about itself; topic and payload are patterns with `{group}`
/// and `{index}`.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceMessage {
    pub topic: String,
    pub payload: String,
    pub qos: Qos,
    pub retain: bool,
}

/// The command and reply topics (patterns) of a commanded group.
#[derive(Debug, Clone, Serialize)]
pub struct Commands {
    pub topic: String,
    pub reply: String,
    pub qos: Qos,
}

/// Exponential reconnect backoff with jitter.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Backoff {
    #[serde(serialize_with = "ser_duration")]
    pub min: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub max: Duration,
    /// Share of each wait drawn at random, 0-1.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(5),
            jitter: 0.5,
        }
    }
}

impl Backoff {
    /// The wait before reconnect attempt `attempt` (1 for the first), given a uniform draw
    /// `unit` in [0, 1): `min * 2^(attempt - 1)` capped at `max`, less up to `jitter` of it.
    pub fn wait(&self, attempt: u32, unit: f64) -> Duration {
        let doublings = attempt.saturating_sub(1).min(30);
        let cap = self.min.saturating_mul(1 << doublings).min(self.max);
        cap.mul_f64(1.0 - self.jitter * unit.clamp(0.0, 1.0))
    }
}

/// A client that sends commands to every device of one group.
#[derive(Debug, Clone, Serialize)]
pub struct Controller {
    pub name: String,
    /// The commanded group (by position in [`Scenario::groups`]).
    #[serde(skip)]
    pub group: usize,
    #[serde(rename = "group")]
    pub group_name: String,
    /// Commands per second to each device.
    pub rate: f64,
}

impl DeviceGroup {
    /// Time between two messages of one device.
    pub fn period(&self) -> Duration {
        crate::load::seconds(1.0 / self.rate)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ObserverGroup {
    pub name: String,
    pub count: u32,
    /// Topic filters as written: `{shard}` stands for the shard that runs the observer.
    pub filters: Vec<String>,
    pub qos: Qos,
    /// The shared-subscription name when the filters are `$share/{name}/...`: the group's
    /// members then split the messages, each reaching exactly one of them.
    pub share: Option<String>,
    /// False: the broker keeps the session (subscriptions, queued messages) while it is away.
    pub clean_session: bool,
    pub offline: Option<Offline>,
    /// A late observer connects this long after the ramp start and receives retained messages
    /// only.
    #[serde(serialize_with = "ser_opt_duration")]
    pub join_at: Option<Duration>,
}

/// When an observer leaves and for how long, from the start of the connect ramp.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Offline {
    #[serde(serialize_with = "ser_duration")]
    pub at: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub length: Duration,
}

/// What a run must show to pass. Unset limits are not checked; the QoS guarantees (nothing lost
/// on a stream delivered at QoS 1 or 2, no duplicate at QoS 2) are always checked.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Expectations {
    pub delivered_ratio: Option<f64>,
    pub max_lost: Option<u64>,
    pub max_duplicates: Option<u64>,
    pub max_reordered: Option<u64>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub p50: Option<Duration>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub p90: Option<Duration>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub p99: Option<Duration>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub p999: Option<Duration>,
    #[serde(serialize_with = "ser_opt_duration")]
    pub max_latency: Option<Duration>,
    pub min_deliver_per_s: Option<f64>,
    pub min_publish_per_s: Option<f64>,
    /// The share of sends that may leave more than 1 ms late before the generator is judged to
    /// have fallen behind (default 1%, judged on evidence: see the metrics' `expect` module).
    pub max_late_share: Option<f64>,
    /// Devices that may never connect (default 0).
    pub max_never_connected: Option<u64>,
    /// Devices that may have lost their connection, not by design, and not have it back when
    /// publishing ends (default 0).
    pub max_disconnected: Option<u64>,
    /// Errors of every kind that the run may log (default 100).
    pub max_errors: Option<u64>,
    /// The share of expected deliveries that may still be in flight at the cutoff of a run that
    /// was not interrupted (default 0.001).
    pub max_in_flight_share: Option<f64>,
}

/// How the regression gate judges this scenario (the `[regression]` table). The report carries
/// it, so that `fleetbench compare` applies the tolerances of the scenario it compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Regression {
    /// Relative increase of a latency percentile that counts as a regression (0.25 = +25%).
    pub latency: f64,
    /// Latency changes smaller than this never count (noise at small values).
    #[serde(serialize_with = "ser_duration", deserialize_with = "de_duration")]
    pub latency_floor: Duration,
    /// Relative decrease of deliveries per second that counts as a regression (0.10 = -10%).
    pub throughput: f64,
    /// Compare latency as multiples of the calibration workload's round trip (true) or in
    /// microseconds (false).
    pub calibrate_latency: bool,
    /// Compare throughput as a multiple of the calibration workload's rate: for scenarios that
    /// publish as fast as the machine allows. A fixed-rate scenario's throughput is set by its
    /// schedule, not by the machine, and compares as it is (false, the default).
    pub calibrate_throughput: bool,
    /// How many times the gate runs the scenario (`--repeat` overrides); comparisons use the
    /// median and the spread of the runs.
    pub repeat: u32,
    /// Part of the CI gate set (`cargo xtask scenarios --gate`).
    pub gate: bool,
    /// Comparison metrics shown but not gated, by name (see [`crate::Metric::COMPARED`]).
    pub skip: Vec<String>,
}

impl Regression {
    /// The largest relative change a tolerance may be: 10.0 (+1,000%).
    pub const MAX_TOLERANCE: f64 = 10.0;

    /// A tolerance (a relative change: 0.25 = 25%) as the regression gate takes it, or what it
    /// expects: a number from 0.0 to [`Regression::MAX_TOLERANCE`] (not NaN, not infinite,
    /// not negative, any of which would switch the gate off).
    pub fn tolerance(v: f64) -> Result<f64, String> {
        if (0.0..=Self::MAX_TOLERANCE).contains(&v) {
            Ok(v)
        } else {
            Err(format!(
                "a relative change between 0.0 and {:.1} (0.25 = 25%), got {v}",
                Self::MAX_TOLERANCE
            ))
        }
    }

    /// Whether every tolerance is one the gate takes (a report's scenario can say anything).
    pub fn is_valid(&self) -> bool {
        Self::tolerance(self.latency).is_ok() && Self::tolerance(self.throughput).is_ok()
    }
}

impl Default for Regression {
    fn default() -> Self {
        Regression {
            latency: 0.25,
            latency_floor: Duration::from_micros(250),
            throughput: 0.10,
            calibrate_latency: true,
            calibrate_throughput: false,
            repeat: 1,
            gate: false,
            skip: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap_and_jitter_only_shortens() {
        let b = Backoff {
            min: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: 0.5,
        };
        let ms = |attempt, unit| b.wait(attempt, unit).as_millis();
        assert_eq!(
            [ms(1, 0.0), ms(2, 0.0), ms(3, 0.0), ms(4, 0.0)],
            [100, 200, 400, 800]
        );
        assert_eq!(ms(5, 0.0), 1_000, "capped at max");
        assert_eq!(ms(60, 0.0), 1_000, "no overflow after many attempts");
        // The random share takes away at most `jitter` of the wait.
        assert_eq!(ms(2, 0.999_999), 100);
        let fixed = Backoff { jitter: 0.0, ..b };
        assert_eq!(fixed.wait(2, 0.7), Duration::from_millis(200));
    }
}

/// A fault injected into the run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fault {
    #[serde(flatten)]
    pub kind: FaultKind,
    /// When it starts, from the start of the connect ramp.
    #[serde(serialize_with = "ser_duration")]
    pub at: Duration,
    /// How long it lasts (0 for a disconnect, which happens at once).
    #[serde(rename = "for", serialize_with = "ser_duration")]
    pub length: Duration,
}

impl Fault {
    /// A name for reports: "disconnect of sensor at 20s".
    pub fn label(&self) -> String {
        let at = humantime::format_duration(self.at);
        match &self.kind {
            FaultKind::Disconnect { group, .. } => format!("disconnect of {group} at {at}"),
            FaultKind::Churn { group, .. } => format!("churn of {group} at {at}"),
            FaultKind::BrokerRestart { .. } | FaultKind::Network(_) => {
                format!("{} at {at}", self.kind.kind())
            }
            FaultKind::SlowConsumer { observer } => format!("slow_consumer {observer} at {at}"),
        }
    }
}

/// What a fault does.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FaultKind {
    /// `devices` of group `group` drop their connections at once and reconnect by backoff.
    Disconnect { group: String, devices: u32 },
    /// Devices of `group` drop at `rate` per second over the window.
    Churn { group: String, rate: f64 },
    /// The broker goes away and comes back: the child broker killed and started again after
    /// the fault's length, or `command` run for an external broker.
    BrokerRestart {
        command: Option<Vec<String>>,
        #[serde(serialize_with = "ser_duration")]
        timeout: Duration,
    },
    /// For the window, the devices' connections pass through a proxy that delays packets,
    /// drops a share of QoS 0 publishes, cuts connections or holds everything.
    Network(NetworkFault),
    /// The observers of `observer` stop reading their sockets for the window.
    SlowConsumer { observer: String },
}

impl FaultKind {
    /// Which kind of fault it is.
    pub fn kind(&self) -> crate::FaultType {
        use crate::FaultType as T;
        match self {
            FaultKind::Disconnect { .. } => T::Disconnect,
            FaultKind::Churn { .. } => T::Churn,
            FaultKind::BrokerRestart { .. } => T::BrokerRestart,
            FaultKind::Network(_) => T::Network,
            FaultKind::SlowConsumer { .. } => T::SlowConsumer,
        }
    }
}

/// What a network fault does to the devices' connections for its window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct NetworkFault {
    #[serde(serialize_with = "ser_duration")]
    pub delay: Duration,
    #[serde(serialize_with = "ser_duration")]
    pub jitter: Duration,
    /// Share of the devices' QoS 0 publishes dropped.
    pub drop: f64,
    pub cut: bool,
    pub blackhole: bool,
    /// Bytes per second each device connection carries each way, at most.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bandwidth_bytes_per_s: Option<f64>,
}
