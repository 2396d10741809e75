//! The figures of a report: every message accounted for, throughput, latency, the generator,
//! the run's timing and the resources it used. Part of the report's wire format
//! ([`crate::report`]); the same rules for changing it apply.

use serde::{Deserialize, Serialize};

use fleetbench_metrics::hist::LatencySummary;
use fleetbench_metrics::ledger::StreamOutcome;

/// Every message accounted for: `delivered + lost + in_flight == expected`, per stream and in
/// total. A stream is one device as seen by one observer.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct Totals {
    /// Messages published by devices.
    pub sent: u64,
    /// Deliveries the observers' subscriptions call for: each sent message once per observer
    /// whose filters match its topic.
    pub expected: u64,
    /// Expected deliveries that arrived (one message seen by two observers counts twice).
    pub delivered: u64,
    pub lost: u64,
    pub duplicates: u64,
    pub reordered: u64,
    /// Not arrived at the cutoff, and sent less than a drain timeout before it.
    pub in_flight: u64,
    /// Arrivals from devices no observer expected (other shards, stray publishers).
    pub unexpected: u64,
    /// Messages that fell due before their device had connected (all of a device's that never
    /// connected), or while it was down in a group that skips them (`while_down = "skip"`),
    /// and were not sent: not part of `sent` or `expected`.
    #[serde(default)]
    pub skipped: u64,
}

impl Totals {
    /// The sum of two runs' (or shards') totals, or None when a count overflows.
    pub fn checked_add(&self, o: &Totals) -> Option<Totals> {
        Some(Totals {
            sent: self.sent.checked_add(o.sent)?,
            expected: self.expected.checked_add(o.expected)?,
            delivered: self.delivered.checked_add(o.delivered)?,
            lost: self.lost.checked_add(o.lost)?,
            duplicates: self.duplicates.checked_add(o.duplicates)?,
            reordered: self.reordered.checked_add(o.reordered)?,
            in_flight: self.in_flight.checked_add(o.in_flight)?,
            unexpected: self.unexpected.checked_add(o.unexpected)?,
            skipped: self.skipped.checked_add(o.skipped)?,
        })
    }

    /// Add another run's (or shard's) totals: every field is a count.
    pub fn add(&mut self, o: &Totals) {
        let Totals {
            sent,
            expected,
            delivered,
            lost,
            duplicates,
            reordered,
            in_flight,
            unexpected,
            skipped,
        } = *o;
        self.sent += sent;
        self.expected += expected;
        self.delivered += delivered;
        self.lost += lost;
        self.duplicates += duplicates;
        self.reordered += reordered;
        self.in_flight += in_flight;
        self.unexpected += unexpected;
        self.skipped += skipped;
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct QosTotals {
    pub qos: u8,
    pub streams: u64,
    #[serde(flatten)]
    pub outcome: StreamOutcome,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Throughput {
    /// Messages published per second of the publish window.
    pub publish_per_s: f64,
    /// Deliveries per second of the publish window.
    pub deliver_per_s: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Latency {
    /// From the time the schedule said the message was due to its arrival at an observer: what
    /// a user of the system sees, including any delay of the generator.
    pub from_intended: LatencySummary,
    /// From the moment the device handed the message to its client to its arrival: the
    /// broker's and network's part alone.
    pub from_send: LatencySummary,
    /// From the PUBLISH leaving the client to its PUBACK (QoS 1) or PUBCOMP (QoS 2).
    pub puback: LatencySummary,
    /// From opening a device's connection to its CONNACK.
    pub connect: LatencySummary,
    /// From intended, of the messages that left on time (within 1 ms of their due time): the
    /// figures as they would be without the generator's late sends, which judge whether the
    /// late sends decided a latency verdict (zero in reports from before it was recorded).
    #[serde(default)]
    pub on_time: LatencySummary,
}

/// The load generator's own health: when it falls behind, latency from intended includes that.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Generator {
    /// Sends that left more than 1 ms after they were due.
    pub late_sends: u64,
    /// Sends that left later than each step after they were due (1, 2, 5 ... 1,000 ms): the
    /// lateness distribution (absent from older reports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub late_by: Vec<LateBy>,
    /// The furthest any device fell behind its schedule.
    pub max_lag_us: u64,
    /// Cores the generator's threads used on average over the run.
    pub cpu_cores: f64,
}

/// Sends that left more than `over_ms` after they were due.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct LateBy {
    pub over_ms: u64,
    pub sends: u64,
}

impl LateBy {
    /// The steps of `counts` (by [`fleetbench_metrics::flush::LATE_BY_MS`]), up to the last one any send
    /// passed.
    pub fn steps(counts: &[u64]) -> Vec<LateBy> {
        let used = counts.iter().rposition(|n| *n > 0).map_or(0, |i| i + 1);
        (fleetbench_metrics::flush::LATE_BY_MS.iter().zip(counts))
            .take(used.max(1))
            .map(|(over_ms, sends)| LateBy {
                over_ms: *over_ms,
                sends: *sends,
            })
            .collect()
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct RunTiming {
    /// From the start of the connect ramp until the last device was connected; null when some
    /// device never connected.
    pub connect_all_s: Option<f64>,
    /// Devices that never connected.
    pub never_connected: u32,
    /// Devices that had connected and had lost their connection (not by design) when their
    /// publish window ended.
    #[serde(default)]
    pub disconnected: u32,
}

/// What the run cost the machine.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Resources {
    /// Average cores used over the run: generator (fleet threads), embedded broker (its router
    /// and connection threads; 0 for an external broker), and the rest of the process.
    pub cpu: fleetbench_metrics::cpu::CpuUsage,
    /// Peak resident memory of the fleetbench process (VmHWM), broker included when embedded.
    pub peak_rss_bytes: u64,
    /// The broker's own process, when it runs as a child of fleetbench.
    pub broker_process: Option<ProcessUsage>,
    /// Average cores the whole machine had busy over the run (all processes; from /proc/stat),
    /// to tell a busy machine from a saturated generator.
    #[serde(default)]
    pub machine_busy_cores: Option<f64>,
}

/// What one process used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ProcessUsage {
    /// Average cores over its lifetime.
    pub cpu_cores: f64,
    pub peak_rss_bytes: u64,
}

/// Peak resident set size of this process, from /proc/self/status (0 where unavailable).
pub fn peak_rss_bytes() -> u64 {
    fleetbench_metrics::env::proc_kb("/proc/self/status", "VmHWM").unwrap_or(0)
}

/// Sends this late (milliseconds) are no timer's jitter: on a virtual machine with jitter,
/// healthy runs sent 0.03% of their messages this late, and 0.7% with a busy neighbour on the
/// other core; generators short of CPU sent 37-62% (docs/REPORT.md, "Judging the generator").
pub const BEHIND_MS: u64 = 10;
