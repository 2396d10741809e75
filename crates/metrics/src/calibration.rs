//! The calibration workload's units, as a run measures them and its report carries them.

use serde::{Deserialize, Serialize};

/// The units of the calibration workload (see the fleet's `calibrate` module): what a loopback
/// TCP round trip between tokio tasks costs one busy core, and how many of them the machine
/// makes per second on every core at once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Calibration {
    /// Microseconds of one busy core per round trip: the latency unit.
    pub core_round_trip_us: f64,
    /// Round trips per second of many connections at once: the throughput unit.
    pub round_trips_per_s: f64,
    /// How long the calibration took.
    pub elapsed_s: f64,
}
