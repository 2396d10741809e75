//! Wire types of the scenario file: what the TOML says, with the position of every value so that
//! validation can point at the line of a mistake. Unknown fields are rejected here.
//!
//! The same types generate the scenario JSON Schema (`fleetbench scenario schema`), so the doc
//! comments below are what an editor shows next to each field.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer};

/// A value with its byte range in the file. In the JSON Schema it is just the value.
#[derive(Debug, Clone)]
pub(crate) struct S<T>(toml::Spanned<T>);

impl<T> S<T> {
    pub(crate) fn span(&self) -> Range<usize> {
        self.0.span()
    }
    pub(crate) fn get_ref(&self) -> &T {
        self.0.get_ref()
    }
    pub(crate) fn into_inner(self) -> T {
        self.0.into_inner()
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for S<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        toml::Spanned::<T>::deserialize(d).map(S)
    }
}

impl<T: JsonSchema> JsonSchema for S<T> {
    fn inline_schema() -> bool {
        T::inline_schema()
    }
    fn schema_name() -> Cow<'static, str> {
        T::schema_name()
    }
    fn schema_id() -> Cow<'static, str> {
        T::schema_id()
    }
    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        T::json_schema(generator)
    }
}

/// A fleetbench scenario: device groups that publish, observers that receive, what the run must
/// show, and how the regression gate judges it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "fleetbench scenario")]
pub(crate) struct RawScenario {
    /// Name of the scenario (letters, digits, '-', '_', '.'): names reports and client ids.
    pub name: S<String>,
    /// One line on what the scenario stands for.
    #[serde(default)]
    pub description: Option<S<String>>,
    /// Seed of every random choice (publish offsets, Poisson arrivals, payload values): the same
    /// seed gives the same schedule and the same payload bytes on any machine. Default 1.
    #[serde(default)]
    pub seed: Option<S<u64>>,
    /// How long devices publish, counted from the start of the connect ramp ("30s", "2m").
    /// Leave it out when the scenario has phases: it is then their sum.
    #[serde(default)]
    pub duration: Option<S<String>>,
    /// How long after publishing the run waits for messages still on their way (default "5s").
    #[serde(default)]
    pub drain_timeout: Option<S<String>>,
    /// The start of the publish window that is accounted for but not measured (default "0s").
    #[serde(default)]
    pub warmup: Option<S<String>>,
    /// The broker: embedded (default) or external (`url`).
    #[serde(default)]
    pub broker: Option<S<RawBroker>>,
    /// The MQTT version every client speaks: "3.1.1" (default) or "5". The embedded broker
    /// then listens for that version.
    #[serde(default)]
    pub protocol: Option<S<String>>,
    /// Load phases in order (ramp-up, steady, spike, ramp-down): each scales every group's rate.
    #[serde(default)]
    pub phase: Vec<S<RawPhase>>,
    /// Groups of identical virtual devices.
    #[serde(default)]
    pub group: Vec<S<RawGroup>>,
    /// Clients that subscribe and account for every delivery.
    #[serde(default)]
    pub observer: Vec<S<RawObserver>>,
    /// Clients that send commands to a device group and time the answers.
    #[serde(default)]
    pub controller: Vec<S<RawController>>,
    /// Faults injected into the run: devices dropped at once, devices flapping, the broker
    /// restarted. The report says what each one cost.
    #[serde(default)]
    pub fault: Vec<S<RawFault>>,
    /// What the run must show to pass.
    #[serde(default)]
    pub expect: Option<S<RawExpect>>,
    /// How the regression gate compares this scenario's reports.
    #[serde(default)]
    pub regression: Option<S<RawRegression>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawBroker {
    /// External broker: "mqtt://host:port", "mqtts://host:port" (TLS), "ws://host:port/path"
    /// or "wss://host:port/path" (WebSocket, path "/mqtt" by default). Leave out for the
    /// embedded broker.
    #[serde(default)]
    pub url: Option<S<String>>,
    /// Embedded broker: number of listening ports (default: one per 1,000 clients, 2 to 16).
    #[serde(default)]
    pub listeners: Option<S<i64>>,
    /// Embedded broker: TCP_NODELAY on accepted sockets (default true).
    #[serde(default)]
    pub tcp_nodelay: Option<S<bool>>,
    /// Embedded broker: "in-process" (default) or "child" (a process of its own).
    #[serde(default)]
    pub process: Option<S<String>>,
    /// External broker: user name.
    #[serde(default)]
    pub username: Option<S<String>>,
    /// External broker: name of the environment variable holding the password (the password
    /// never appears in the scenario or the report).
    #[serde(default)]
    pub password_env: Option<S<String>>,
    /// mqtts/wss: PEM file of the certificate authorities to trust (default: the system's),
    /// relative to the scenario file.
    #[serde(default)]
    pub ca_file: Option<S<String>>,
    /// mqtts/wss: PEM file of the client certificate, for brokers that ask for one (with
    /// `client_key`).
    #[serde(default)]
    pub client_cert: Option<S<String>>,
    /// mqtts/wss: PEM file of the client certificate's private key.
    #[serde(default)]
    pub client_key: Option<S<String>>,
}

/// One load phase.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawPhase {
    /// Name shown in the report and the monitor (letters, digits, '-', '_', '.').
    pub name: S<String>,
    /// How long the phase lasts ("20s").
    pub duration: S<String>,
    /// Publish rate as a multiple of each group's `rate` at the start of the phase (default 1.0;
    /// 0 pauses publishing).
    #[serde(default)]
    pub rate: Option<S<f64>>,
    /// Multiple reached at the end of the phase, changing linearly (a ramp); default: `rate`.
    #[serde(default)]
    pub rate_end: Option<S<f64>>,
    /// Devices not yet connected connect at this many per second during the phase (over the
    /// whole fleet, in group order). A phase without it connects every remaining device at its
    /// start.
    #[serde(default)]
    pub connect_rate: Option<S<f64>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawGroup {
    /// Group name (unique; letters, digits, '-', '_', '.').
    pub name: S<String>,
    /// Number of devices.
    pub count: S<i64>,
    /// Client-id pattern with {group}, {index} and {shard} (default "{group}-{index}").
    #[serde(default)]
    pub client_id: Option<S<String>>,
    /// Topic pattern with {group}, {index} and {shard} (the shard running the device, 0 in one
    /// process: a {shard} level lets each shard's observers hear only their own devices).
    pub topic: S<String>,
    /// Messages per second per device (phases scale it).
    pub rate: S<f64>,
    /// "fixed" (evenly spaced, default) or "poisson" (exponential gaps with the same mean).
    #[serde(default)]
    pub arrivals: Option<S<String>>,
    /// QoS of the publishes: 0, 1 (default) or 2.
    #[serde(default)]
    pub qos: Option<S<i64>>,
    /// Binary payload size in bytes, at least the 32-byte delivery header (default 64).
    #[serde(default)]
    pub payload_size: Option<S<i64>>,
    /// JSON telemetry instead of binary: field name -> generator. The delivery header travels
    /// in an extra field "_fb", so the payload stays valid JSON.
    #[serde(default)]
    pub json: Option<S<BTreeMap<String, S<RawGenerator>>>>,
    /// Connections per second for this group (default: all at once). Not with phases that set
    /// connect_rate.
    #[serde(default)]
    pub connect_rate: Option<S<f64>>,
    /// MQTT keep-alive (default "30s", between "5s" and "65535s").
    #[serde(default)]
    pub keep_alive: Option<S<String>>,
    /// A status message each device publishes every time it connects (retained by default, so
    /// that an observer joining later still learns every device's status).
    #[serde(default)]
    pub status: Option<S<RawDeviceMessage>>,
    /// The last will the broker publishes for a device whose connection ends without a
    /// DISCONNECT. Observers subscribed to it must receive it from every device that dropped and
    /// from no other.
    #[serde(default)]
    pub will: Option<S<RawDeviceMessage>>,
    /// This long after the start of the connect ramp, every device of the group drops its
    /// connection abruptly (no DISCONNECT, as on a power cut) and stays away ("10s").
    #[serde(default)]
    pub drop_at: Option<S<String>>,
    /// Devices that subscribe to a command topic of their own and answer every command on a reply
    /// topic; a [[controller]] sends the commands.
    #[serde(default)]
    pub commands: Option<S<RawCommands>>,
    /// How a device waits between attempts after losing its connection.
    #[serde(default)]
    pub reconnect: Option<S<RawReconnect>>,
    /// What a device does with messages that fall due while its connection is down: "queue"
    /// them and send them late once it is back (default; latency from intended shows the
    /// wait), or "skip" them (counted as skipped, neither sent nor expected).
    #[serde(default)]
    pub while_down: Option<S<String>>,
    /// MQTT 5 publish properties of the group's data messages (needs protocol = "5").
    #[serde(default)]
    pub mqtt5: Option<S<RawMqtt5>>,
}

/// MQTT 5 properties a device group sends with every data message; observers check that each
/// arrives with them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawMqtt5 {
    /// User properties (name = value) sent with every message; "{group}" and "{index}" are
    /// replaced.
    #[serde(default)]
    pub user_properties: Option<S<std::collections::BTreeMap<String, String>>>,
    /// Send the topic once per connection, then only a topic alias (default false). Used only
    /// when the broker allows aliases (CONNACK's topic alias maximum).
    #[serde(default)]
    pub topic_alias: Option<bool>,
    /// Message expiry interval ("30s", whole seconds): the broker must not deliver a message
    /// after it, and forwards the time left.
    #[serde(default)]
    pub message_expiry: Option<S<String>>,
}

/// A message a device publishes about itself.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawDeviceMessage {
    /// Topic pattern with {group} and {index}.
    pub topic: S<String>,
    /// Payload text, with {group} and {index} (default "online" for a status, "offline" for a
    /// will).
    #[serde(default)]
    pub payload: Option<S<String>>,
    /// QoS: 0, 1 (default) or 2.
    #[serde(default)]
    pub qos: Option<S<i64>>,
    /// Retained (default: true for a status, false for a will).
    #[serde(default)]
    pub retain: Option<bool>,
}

/// Command and reply topics of a device group.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawCommands {
    /// Topic each device receives its commands on, with {group} and {index}.
    pub topic: S<String>,
    /// Topic each device answers on, with {group} and {index}.
    pub reply: S<String>,
    /// QoS of commands and replies: 0, 1 (default) or 2.
    #[serde(default)]
    pub qos: Option<S<i64>>,
}

/// Reconnect backoff: attempt n waits min * 2^(n-1), at most max, less a random share of up to
/// `jitter` of it.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawReconnect {
    /// Wait before the first attempt (default "100ms").
    #[serde(default)]
    pub min: Option<S<String>>,
    /// Longest wait (default "5s").
    #[serde(default)]
    pub max: Option<S<String>>,
    /// Share of the wait drawn at random, 0.0-1.0 (default 0.5): devices that lost their
    /// connection together do not come back together.
    #[serde(default)]
    pub jitter: Option<S<f64>>,
}

/// A client that sends commands to the devices of a group and measures how long each answer
/// takes (request/response round trip).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawController {
    /// Controller name (unique among groups, observers and controllers).
    pub name: S<String>,
    /// The device group it commands (the group needs a `commands` table).
    pub group: S<String>,
    /// Commands per second to each device of the group, on an open-loop schedule: a command
    /// leaves when it is due, whether or not the previous one was answered.
    pub rate: S<f64>,
}

/// An observer's time away from the broker.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawOffline {
    /// When it leaves, from the start of the connect ramp ("3s").
    pub at: S<String>,
    /// How long it stays away ("2s").
    #[serde(rename = "for")]
    pub length: S<String>,
}

/// How one JSON field's value is made for each message.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum RawGenerator {
    /// The same value every time.
    Constant { value: RawConstant },
    /// start, start + step, ... (one step per message of the device).
    Counter {
        #[serde(default)]
        start: Option<i64>,
        #[serde(default)]
        step: Option<i64>,
    },
    /// Uniform in [min, max).
    Uniform {
        min: f64,
        max: f64,
        #[serde(default)]
        decimals: Option<u32>,
    },
    /// Normal (Gaussian) with this mean and standard deviation.
    Normal {
        mean: f64,
        std_dev: f64,
        #[serde(default)]
        decimals: Option<u32>,
    },
    /// Starts at `start`, moves by a uniform step in [-step, step] per message, kept in
    /// [min, max].
    RandomWalk {
        start: f64,
        step: f64,
        min: f64,
        max: f64,
        #[serde(default)]
        decimals: Option<u32>,
    },
    /// offset + amplitude * sin(2 pi t / period) + normal noise, t the message's intended time.
    Sine {
        period: String,
        amplitude: f64,
        #[serde(default)]
        offset: Option<f64>,
        #[serde(default)]
        noise: Option<f64>,
        #[serde(default)]
        decimals: Option<u32>,
    },
    /// The message's intended send time since the Unix epoch, "ms" (default) or "s".
    Timestamp {
        #[serde(default)]
        unit: Option<String>,
    },
    /// The device's index in its group.
    Index {},
    /// The device's group name.
    Group {},
    /// The device's client id.
    ClientId {},
}

/// A constant JSON value: a string, number or boolean.
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema, serde::Serialize)]
#[serde(untagged)]
pub enum RawConstant {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawObserver {
    /// Observer group name (unique among groups and observers).
    pub name: S<String>,
    /// Number of identical observer clients (default 1). With a shared subscription
    /// ("$share/name/filter") they form one group in which each message reaches one member.
    #[serde(default)]
    pub count: Option<S<i64>>,
    /// Topic filters to subscribe to ("+" and "#" wildcards; "$share/name/" prefix to share;
    /// {shard} for the shard running the observer, so that it hears only that shard's devices).
    pub filters: S<Vec<S<String>>>,
    /// Requested QoS: 0, 1 (default) or 2.
    #[serde(default)]
    pub qos: Option<S<i64>>,
    /// Start a clean session (default true). With false the broker keeps the subscriptions and
    /// queues QoS 1 and 2 messages while the observer is away. The run starts from a fresh
    /// session either way.
    #[serde(default)]
    pub clean_session: Option<bool>,
    /// Leave for a while and come back (needs clean_session = false): the ledger expects every
    /// message published meanwhile to arrive after the reconnect.
    #[serde(default)]
    pub offline: Option<S<RawOffline>>,
    /// Connect and subscribe this long after the start of the connect ramp: a late observer. It
    /// receives only what the broker retained, so its filters may match only status and will
    /// topics.
    #[serde(default)]
    pub join_at: Option<S<String>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawExpect {
    /// Delivered share of expected deliveries, 0.0-1.0.
    #[serde(default)]
    pub delivered_ratio: Option<S<f64>>,
    /// Most messages that may be lost.
    #[serde(default)]
    pub max_lost: Option<S<i64>>,
    /// Most duplicate arrivals.
    #[serde(default)]
    pub max_duplicates: Option<S<i64>>,
    /// Most out-of-order arrivals.
    #[serde(default)]
    pub max_reordered: Option<S<i64>>,
    /// Latency limits (from intended send time), e.g. "20ms".
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
    /// Least deliveries per second over the publish window.
    #[serde(default)]
    pub min_deliver_per_s: Option<S<f64>>,
    /// Least publishes per second over the publish window.
    #[serde(default)]
    pub min_publish_per_s: Option<S<f64>>,
    /// Share of sends that may leave more than 1 ms late (default 0.01). Judged on evidence:
    /// fewer than 20 late sends never fail a run.
    #[serde(default)]
    pub max_late_share: Option<S<f64>>,
    /// Devices that may never connect (default 0).
    #[serde(default)]
    pub max_never_connected: Option<S<i64>>,
    /// Devices that may have lost their connection (not by design) and not have it back when
    /// publishing ends (default 0).
    #[serde(default)]
    pub max_disconnected: Option<S<i64>>,
    /// Errors of every kind the run may log (default 100).
    #[serde(default)]
    pub max_errors: Option<S<i64>>,
    /// Share of expected deliveries that may still be in flight at the cutoff of a run that was
    /// not interrupted (default 0.001).
    #[serde(default)]
    pub max_in_flight_share: Option<S<f64>>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawRegression {
    /// Relative latency increase that regresses (default 0.25).
    #[serde(default)]
    pub latency: Option<S<f64>>,
    /// Latency changes smaller than this never count (default "250us").
    #[serde(default)]
    pub latency_floor: Option<S<String>>,
    /// Relative throughput decrease that regresses (default 0.10).
    #[serde(default)]
    pub throughput: Option<S<f64>>,
    /// Compare latency in calibration units (default true).
    #[serde(default)]
    pub calibrate_latency: Option<bool>,
    /// Compare throughput in calibration units (default false).
    #[serde(default)]
    pub calibrate_throughput: Option<bool>,
    /// Runs per gate comparison (default 1).
    #[serde(default)]
    pub repeat: Option<S<i64>>,
    /// Part of the CI gate set.
    #[serde(default)]
    pub gate: Option<bool>,
    /// Metrics shown but not gated.
    #[serde(default)]
    pub skip: Vec<S<String>>,
}

/// A fault, `[[fault]]`: what happens, when (`at`, from the start of the connect ramp) and for
/// how long (`for`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawFault {
    /// "disconnect": a share (or a count) of a group's devices drop their connections at once,
    /// without a DISCONNECT, and reconnect by the group's backoff (a reconnect storm).
    /// "churn": devices of a group keep dropping and reconnecting at `rate` per second over
    /// the window (flapping). "broker_restart": the broker goes away and comes back on the
    /// same ports (the child broker: killed with SIGKILL, started again after `for`; an
    /// external broker: `command` is run). "network": for the window, the devices' connections
    /// to the broker (through a proxy inside fleetbench; observers connect directly) get
    /// `delay` and `jitter`, lose a share of QoS 0 publishes (`drop`), are `cut`, pass
    /// nothing (`blackhole`), or carry at most `bandwidth`. "slow_consumer": an observer stops reading its socket for the
    /// window (its connection stays open), so that the broker must queue or drop.
    pub kind: S<String>,
    /// When the fault starts, from the start of the connect ramp ("20s").
    pub at: S<String>,
    /// How long it lasts: the churn's window; how long a killed child broker stays down
    /// (default "0s": started again at once).
    #[serde(default, rename = "for")]
    pub length: Option<S<String>>,
    /// The device group (disconnect, churn).
    #[serde(default)]
    pub group: Option<S<String>>,
    /// slow_consumer: the observer (by name) that stops reading its socket for the window.
    #[serde(default)]
    pub observer: Option<S<String>>,
    /// disconnect: the share of the group's devices that drop (0 to 1; default 1).
    #[serde(default)]
    pub share: Option<S<f64>>,
    /// disconnect: how many of the group's devices drop (instead of a share).
    #[serde(default)]
    pub count: Option<S<i64>>,
    /// churn: drops per second over the group, spread at random over its devices.
    #[serde(default)]
    pub rate: Option<S<f64>>,
    /// broker_restart of an external broker: the command that restarts it, as program and
    /// arguments (`["systemctl", "restart", "mosquitto"]`); its output is logged.
    #[serde(default)]
    pub command: Option<S<Vec<String>>>,
    /// How long `command` may take (default "60s").
    #[serde(default)]
    pub timeout: Option<S<String>>,
    /// network: latency added to every packet between the devices and the broker, each way
    /// ("50ms").
    #[serde(default)]
    pub delay: Option<S<String>>,
    /// network: up to this much more or less than `delay`, at random per packet (order kept).
    #[serde(default)]
    pub jitter: Option<S<String>>,
    /// network: the share (0 to 1) of the devices' QoS 0 publishes dropped on their way to the
    /// broker.
    #[serde(default)]
    pub drop: Option<S<f64>>,
    /// network: cut every device connection at the window's start and refuse new ones until
    /// its end.
    #[serde(default)]
    pub cut: Option<S<bool>>,
    /// network: let nothing through for the window while connections stay open (half-open);
    /// what was held goes on at its end.
    #[serde(default)]
    pub blackhole: Option<S<bool>>,
    /// network: each device connection carries at most this much each way ("64 kbit/s",
    /// "1 Mbit/s", "10 kB/s"), like a device's own slow link; what exceeds it queues.
    #[serde(default)]
    pub bandwidth: Option<S<String>>,
}
