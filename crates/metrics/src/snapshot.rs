//! What the aggregator hands out once a tick: the run's state for the monitor, the progress
//! line and the live metrics endpoint.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::cpu::CpuUsage;
use crate::error_kind::ErrorGroup;
use crate::hist::LatencySummary;

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    #[default]
    Starting,
    Connecting,
    Running,
    Draining,
    Done,
}

impl Stage {
    pub fn label(self) -> &'static str {
        match self {
            Stage::Starting => "starting",
            Stage::Connecting => "connecting",
            Stage::Running => "running",
            Stage::Draining => "draining",
            Stage::Done => "done",
        }
    }
}

/// The state of a run at one tick: what the monitor and the progress line show.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub elapsed: Duration,
    pub stage: Stage,
    pub devices_target: u32,
    pub devices_connected: u32,
    pub observers_target: u32,
    pub observers_connected: u32,
    pub sent: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub reordered: u64,
    pub unexpected: u64,
    /// Messages published per second over the last tick.
    pub publish_rate: f64,
    /// Deliveries per second over the last tick.
    pub deliver_rate: f64,
    /// Latency over the last tick.
    pub interval_from_intended: LatencySummary,
    pub interval_from_send: LatencySummary,
    /// Latency since the start.
    pub total_from_intended: LatencySummary,
    pub late_sends: u64,
    pub max_lag_us: u64,
    pub errors: BTreeMap<crate::ErrorKind, ErrorGroup>,
    /// Deliveries the subscriptions call for, for the messages sent so far.
    pub expected: u64,
    /// Per device group, in scenario order.
    pub groups: Vec<GroupSnapshot>,
    /// Latency from intended since the start at rising quantiles: (quantile, us).
    pub distribution: Vec<(f64, u64)>,
    /// Cores used over the last tick, by component.
    pub cpu: CpuUsage,
    /// The load phase the run is in (None before the ramp or without phases).
    pub load_phase: Option<usize>,
    /// When the connect ramp started on the run clock (None before it): faults and load
    /// phases count from it.
    pub ramp_at: Option<Duration>,
    /// Latency since the start in fixed buckets (from intended, from send), for a live
    /// metrics endpoint.
    pub latency_buckets: [crate::buckets::Buckets; 2],
    /// Per load phase so far (empty without phases).
    pub phases: Vec<PhaseFigures>,
}

/// One load phase's figures so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhaseFigures {
    pub sent: u64,
    pub expected: u64,
    pub delivered: u64,
    pub from_intended: LatencySummary,
}

impl Snapshot {
    /// Expected deliveries not (yet) arrived: in flight, or lost.
    pub fn outstanding(&self) -> u64 {
        self.expected.saturating_sub(self.delivered)
    }
}

/// One device group at one tick.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GroupSnapshot {
    pub devices_target: u32,
    pub devices_connected: u32,
    pub sent: u64,
    pub late_sends: u64,
    pub publish_rate: f64,
}
