//! What a report is made of besides the fleet's outcome: the machine, the broker, the shard,
//! the calibration, the common start.

use fleetbench_metrics::calibration::Calibration;
use fleetbench_metrics::env::Environment;
use fleetbench_scenario::Shard;

use crate::report::{BrokerWatch, ProcessUsage, StartReport};

/// What the report needs to know about the run besides the fleet's outcome.
#[derive(Debug, Clone)]
pub struct RunContext {
    /// The machine and the build.
    pub environment: Environment,
    pub started_unix_s: u64,
    pub shard: Shard,
    /// The broker as it may be printed: no credentials.
    pub broker: String,
    /// Whether the embedded broker's accepted sockets had TCP_NODELAY; None for an external
    /// broker (the report tells the embedded broker by it).
    pub tcp_nodelay: Option<bool>,
    /// What the broker's own process used, when it ran as a child.
    pub broker_process: Option<ProcessUsage>,
    /// The calibration workload's units, measured just before the run.
    pub calibration: Option<Calibration>,
    /// What the embedded broker's watch saw (None for an external broker).
    pub broker_watch: Option<BrokerWatch>,
    /// Cores the whole machine had busy over the run.
    pub machine_busy_cores: Option<f64>,
    /// The common start the run waited for, and how late it started.
    pub start: Option<StartReport>,
}
