//! The report: a versioned wire format, separate from the internal types, written as JSON.
//!
//! Field meanings are documented here and in `docs/REPORT.md`; bump [`SCHEMA_VERSION`] on any
//! change that an existing reader would misread.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use fleetbench_metrics::aggregate::ErrorGroup;
use fleetbench_metrics::env::Environment;
use fleetbench_metrics::hist::{HistogramCodecError, LatencyHistogram, LatencySummary};
use fleetbench_metrics::hlog::Distribution;

/// The calibration units, measured by the fleet (defined with the recordings).
pub use fleetbench_metrics::calibration::Calibration;

/// What the run measured: counts, rates, latency, the generator, timing and resources.
pub use crate::figures::{
    peak_rss_bytes, Generator, LateBy, Latency, ProcessUsage, QosTotals, Resources, RunTiming,
    Throughput, Totals,
};

/// What one fault cost (defined beside the code that works it out).
pub use crate::fault_cost::FaultReport;

pub const SCHEMA_VERSION: u32 = 2;

/// A fleetbench run report (`fleetbench run --report`), or a merge of several
/// (`fleetbench merge`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Report {
    pub schema_version: u32,
    /// The full resolved scenario, every default filled in.
    pub scenario: serde_json::Value,
    pub environment: Environment,
    pub run: RunInfo,
    pub totals: Totals,
    /// The same accounting split by the QoS each stream was actually delivered at (the lower of
    /// the publisher's QoS and the QoS the broker granted the observer).
    pub by_qos: Vec<QosTotals>,
    pub throughput: Throughput,
    pub latency: Latency,
    pub generator: Generator,
    pub timing: RunTiming,
    pub resources: Resources,
    /// Errors by kind (connect, publish, subscribe, decode, ...).
    #[schemars(with = "BTreeMap<String, ErrorGroup>")]
    pub errors: BTreeMap<fleetbench_metrics::ErrorKind, ErrorGroup>,
    /// What the run found out about the broker or the run itself, in words.
    pub findings: Vec<String>,
    pub expectations: Vec<ExpectationResult>,
    pub verdict: Verdict,
    /// The calibration workload's units on this machine, measured just before the run (the
    /// median of the merged runs' for a merged report).
    #[serde(default)]
    pub calibration: Option<Calibration>,
    /// The whole-run latency distributions, lossless, so that reports merge exactly.
    #[serde(default)]
    pub histograms: Option<Histograms>,
    /// The timing figures of each run this report stands for: one for a single run, one per
    /// repeat for merged repeats. Comparisons use their median and spread.
    #[serde(default)]
    pub samples: Vec<Sample>,
    /// Set when this report was merged from several.
    #[serde(default)]
    pub merged: Option<Merged>,
    /// Figures per load phase, in order (absent when the scenario has no phases).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub phases: Vec<PhaseReport>,
    /// Statuses, last wills, persistent sessions and commands (absent when the scenario uses
    /// none of them).
    #[serde(
        default,
        skip_serializing_if = "fleetbench_metrics::behaviour::Behaviour::is_empty"
    )]
    pub behaviour: fleetbench_metrics::behaviour::Behaviour,
    /// What fleetbench's watch saw of the embedded broker: rumqttd's panics and listeners it
    /// found wedged and restarted (absent for an external broker).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_watch: Option<BrokerWatch>,
    /// Subscriptions the broker refused or granted at a lower QoS than asked.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subscriptions_not_granted: Vec<SubscriptionGrant>,
    /// Deliveries made at another QoS than MQTT calls for (the lower of the publish's QoS and
    /// the subscription's grant), by the QoS due and the QoS used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub qos_mismatches: Vec<QosMismatch>,
    /// Each shard of a merged sharded run, in order, the missing ones included (absent from a
    /// single run's report and from merged repeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shards: Vec<ShardRow>,
    /// The run over time (counts and latency percentiles per point, downsampled; what the HTML
    /// report draws). Absent from reports of older versions. A merge of shards adds the
    /// shards' counts point by point and keeps the worst shard's percentiles; a merge of
    /// repeats keeps the first repeat's.
    #[serde(default, skip_serializing_if = "crate::series::Series::is_empty")]
    pub series: crate::series::Series,
    /// The accounting per device group, in the scenario's order (absent from reports of older
    /// versions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<crate::groups::GroupReport>,
    /// What each of the scenario's faults cost, in the order they started (absent without
    /// faults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub faults: Vec<FaultReport>,
}

/// One shard of a merged sharded run: enough to tell a slow, overloaded or failed pod.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ShardRow {
    /// `index/count`.
    pub shard: String,
    /// False when no report of this shard was given to the merge (its pod failed or its
    /// report was not collected); the figures are then 0.
    pub present: bool,
    /// The shard's own verdict; null when it is missing.
    pub verdict: Option<Verdict>,
    /// The expectations the shard failed on its own figures.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
    pub sent: u64,
    pub delivered: u64,
    pub lost: u64,
    /// Share of its sends that left more than 1 ms late.
    pub late_share: f64,
    /// Cores its generator used on average.
    pub generator_cpu_cores: f64,
    pub peak_rss_bytes: u64,
    /// How long after the common start (`--start-at`) it started; null without one.
    pub start_lateness_s: Option<f64>,
}

/// A subscription not granted as asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SubscriptionGrant {
    /// The observer's client id.
    pub observer: String,
    pub filter: String,
    pub asked: u8,
    /// The QoS granted; null when the broker refused the subscription.
    pub granted: Option<u8>,
}

/// Deliveries at a QoS other than the one due.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct QosMismatch {
    pub due: u8,
    pub used: u8,
    pub count: u64,
}

/// The embedded broker's health over the run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BrokerWatch {
    /// Times rumqttd panicked (in a connection's task; the broker lives on).
    pub panics: u64,
    /// Listeners that stopped completing CONNECTs and were restarted, in order (the first 100).
    pub restarts: Vec<ListenerRestartReport>,
    /// Restarts beyond those listed.
    #[serde(default)]
    pub unrecorded_restarts: u64,
}

/// A listener found wedged: it accepted connections and answered none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ListenerRestartReport {
    pub port: u16,
    /// When it was found, in seconds from the broker's start.
    pub at_s: f64,
    /// What the probe saw.
    pub reason: String,
    /// A new listener took the port.
    #[serde(default)]
    pub relistened: bool,
    /// The new listener answered a CONNECT at once.
    pub recovered: bool,
}

/// One load phase of the run. Messages belong to the phase they were due in.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PhaseReport {
    pub name: String,
    /// When the phase started, from the start of the connect ramp.
    pub start_s: f64,
    pub duration_s: f64,
    /// Multiple of each group's rate at the phase's start and end.
    pub rate: f64,
    pub rate_end: f64,
    /// Messages due in the phase that were sent.
    pub sent: u64,
    /// Deliveries the subscriptions call for, for those messages.
    pub expected: u64,
    /// First arrivals of those messages (the ledger's whole-run accounting is in `totals`).
    pub delivered: u64,
    /// sent / duration.
    pub publish_per_s: f64,
    /// delivered / duration.
    pub deliver_per_s: f64,
    /// Latency from intended of the phase's messages (after the warm-up).
    pub from_intended: LatencySummary,
    /// The same distribution, lossless (V2 compressed, base64), so that merges stay exact.
    pub histogram: String,
}

/// Whole-run latency distributions in HdrHistogram's "V2 compressed" encoding, base64: the
/// encoding of interval-log lines, readable by every HdrHistogram library. Microseconds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Histograms {
    pub from_intended: String,
    pub from_send: String,
    pub puback: String,
    pub connect: String,
    /// From intended, of the messages that left on time (absent from older reports).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub on_time: String,
}

impl Histograms {
    /// Encode whole-run distributions.
    pub fn encode(
        from_intended: &LatencyHistogram,
        from_send: &LatencyHistogram,
        puback: &LatencyHistogram,
        connect: &LatencyHistogram,
        on_time: Option<&LatencyHistogram>,
    ) -> Result<Histograms, HistogramCodecError> {
        Ok(Histograms {
            from_intended: from_intended.to_base64()?,
            from_send: from_send.to_base64()?,
            puback: puback.to_base64()?,
            connect: connect.to_base64()?,
            on_time: match on_time {
                Some(h) => h.to_base64()?,
                None => String::new(),
            },
        })
    }

    /// The on-time distribution back; None for a report from before it was recorded.
    pub fn decode_on_time(&self) -> Result<Option<LatencyHistogram>, HistogramCodecError> {
        if self.on_time.is_empty() {
            return Ok(None);
        }
        LatencyHistogram::from_base64(&self.on_time).map(Some)
    }

    /// The distributions back, by the interval log's metric names.
    pub fn decode(&self) -> Result<[(Distribution, LatencyHistogram); 4], HistogramCodecError> {
        let one = LatencyHistogram::from_base64;
        Ok([
            (Distribution::FromIntended, one(&self.from_intended)?),
            (Distribution::FromSend, one(&self.from_send)?),
            (Distribution::Puback, one(&self.puback)?),
            (Distribution::Connect, one(&self.connect)?),
        ])
    }
}

/// The timing figures of one run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Sample {
    pub p50_from_intended_us: u64,
    pub p99_from_intended_us: u64,
    pub p99_from_send_us: u64,
    pub p99_puback_us: u64,
    pub deliver_per_s: f64,
    pub calibration: Option<Calibration>,
}

/// What a merged report was merged from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Merged {
    pub kind: MergeKind,
    pub reports: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum MergeKind {
    /// Shards of one run that ran at the same time: rates add up.
    Shards,
    /// Runs one after the other: counts add up, rates are per run.
    Repeats,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunInfo {
    /// Seconds since the Unix epoch when the run started.
    pub started_unix_s: u64,
    /// From the start of connecting to the cutoff.
    pub elapsed_s: f64,
    /// How long devices published (the scenario's duration unless interrupted).
    pub publish_window_s: f64,
    /// How long the drain after publishing took.
    pub drain_s: f64,
    /// The start of the publish window whose latency and lateness were not measured.
    pub warmup_s: f64,
    /// True when the run was stopped (Ctrl-C, SIGTERM) before it finished.
    pub interrupted: bool,
    /// Set when every client lost its connection and none came back: the broker went away
    /// and the run ended early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub broker_gone: Option<BrokerGoneReport>,
    /// `index/count` of the shard this report covers.
    pub shard: String,
    /// Which broker the run targeted (embedded: its ports; external: host and port; never
    /// credentials).
    pub broker: String,
    /// Whether the embedded broker's accepted sockets had TCP_NODELAY (null for external).
    pub tcp_nodelay: Option<bool>,
    /// The common start this run waited for (`--start-at`), and how late it started against
    /// it; absent when it had none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<StartReport>,
}

/// A run that waited for a common start. Only the wall clock is compared, once, here: latency
/// is measured on each run's own monotonic clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StartReport {
    /// The common start, RFC 3339 in UTC.
    pub at: String,
    /// Seconds from the common start to the moment this run started its fleet (0 or more:
    /// later than 0 when the process came up after the start, or the broker answered late).
    pub lateness_s: f64,
}

/// The broker went away during the run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct BrokerGoneReport {
    /// When the last client lost its connection, in seconds from the start of the run.
    pub since_s: f64,
    /// How long the run waited for any client to come back before ending.
    pub waited_s: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ExpectationResult {
    pub name: String,
    pub ok: bool,
    pub observed: f64,
    pub limit: f64,
    /// How observed compares to limit to pass: "<=" or ">=".
    pub comparison: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Pass,
    Fail,
    /// Stopped before it finished (Ctrl-C, SIGTERM): the figures are partial and judge nothing.
    Interrupted,
}

impl Verdict {
    /// How a verdict is spelled wherever it is shown: the summary, the page, the gate's lines.
    pub fn label(self) -> &'static str {
        match self {
            Verdict::Pass => "PASS",
            Verdict::Fail => "FAIL",
            Verdict::Interrupted => "INTERRUPTED",
        }
    }
}

impl Report {
    /// The share of sends that left more than 1 ms after they were due.
    pub fn late_share(&self) -> f64 {
        self.generator.late_sends as f64 / self.totals.sent.max(1) as f64
    }

    /// Sends that left more than [`crate::figures::BEHIND_MS`] after they were due (0 in a report
    /// from before lateness was counted by steps).
    pub fn behind_sends(&self) -> u64 {
        (self.generator.late_by.iter())
            .filter(|s| s.over_ms >= crate::figures::BEHIND_MS)
            .map(|s| s.sends)
            .next()
            .unwrap_or(0)
    }

    /// Messages lost on streams delivered at QoS 1 or 2: a broken delivery guarantee.
    pub fn lost_at_guaranteed_qos(&self) -> u64 {
        self.by_qos
            .iter()
            .filter(|q| q.qos >= 1)
            .map(|q| q.outcome.lost)
            .sum()
    }

    /// Whether the broker was fleetbench's own (embedded, in this process or a child).
    pub fn embedded_broker(&self) -> bool {
        self.run.tcp_nodelay.is_some()
    }

    /// The scenario's name ("?" in a report without one).
    pub fn scenario_name(&self) -> &str {
        self.scenario
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
    }

    /// This run's timing figures as a sample (for a single, unmerged run).
    pub fn own_sample(&self) -> Sample {
        let l = &self.latency;
        Sample {
            p50_from_intended_us: l.from_intended.p50_us,
            p99_from_intended_us: l.from_intended.p99_us,
            p99_from_send_us: l.from_send.p99_us,
            p99_puback_us: l.puback.p99_us,
            deliver_per_s: self.throughput.deliver_per_s,
            calibration: self.calibration,
        }
    }

    /// The samples this report stands for (its own figures when it carries none).
    pub fn samples(&self) -> Vec<Sample> {
        if self.samples.is_empty() {
            vec![self.own_sample()]
        } else {
            self.samples.clone()
        }
    }

    /// Write as pretty JSON.
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }

    pub fn from_json(text: &str) -> Result<Report, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The JSON Schema of the report, generated from these types (committed as
    /// `docs/report.schema.json`; a test keeps the two equal).
    pub fn json_schema() -> serde_json::Value {
        let mut schema =
            serde_json::to_value(schemars::schema_for!(Report)).unwrap_or(serde_json::Value::Null);
        if let Some(obj) = schema.as_object_mut() {
            obj.insert(
                "$id".into(),
                serde_json::Value::String(format!(
                    "https://fleetbench.invalid/schema/report-v{SCHEMA_VERSION}.json"
                )),
            );
        }
        schema
    }
}
