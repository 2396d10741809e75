//! Measurement for fleetbench: recorders owned by each task, the delivery ledger, the tick-wise
//! aggregator that turns them into live snapshots, and the report with its expectations.
//!
//! Nothing here is shared between tasks on the hot path: observers own their histograms and
//! ledgers, devices buffer raw samples, and both hand them over through a channel once a tick.

pub mod aggregate;
pub mod behaviour;
pub mod buckets;
pub mod compare;
pub mod consistency;
pub mod cpu;
pub mod env;
pub mod expect;
pub mod fault_cost;
pub mod finding;
#[cfg(test)]
mod fixture;
pub mod flush;
mod from_run;
pub mod groups;
pub mod hist;
pub mod hlog;
pub mod html;
pub mod ledger;
pub mod merge;
pub mod metric;
pub mod outcome;
pub mod read;
pub mod report;
pub mod series;
pub mod shards;
pub mod snapshot;
pub mod summary;
pub mod timeline;

pub use aggregate::{Aggregator, DeviceFlush, Flush, ObserverFlush, Snapshot};
pub use hist::LatencyHistogram;
pub use ledger::{Delivery, Ledger, StreamOutcome};
pub use outcome::{BrokerGone, RestartEvent, RunContext, RunOutcome};
pub use report::Report;
