//! Recording for fleetbench: what the tasks of a run record and the aggregator merges on the
//! tick, the delivery ledger, live snapshots, the interval log and the outcome a run hands over.
//! Judging and reporting (the report, expectations, findings, merges, comparisons, pages) live
//! in the report crate, which reads these.
//!
//! Nothing here is shared between tasks on the hot path: observers own their histograms and
//! ledgers, devices buffer raw samples, and both hand them over through a channel once a tick.

pub mod aggregate;
pub mod behaviour;
pub mod buckets;
pub mod calibration;
pub mod cpu;
pub mod env;
pub mod error_kind;
pub mod flush;
pub mod fmt;
pub mod hist;
pub mod hlog;
pub mod ledger;
pub mod outcome;
pub mod snapshot;
pub mod timeline;

pub use aggregate::{Aggregator, DeviceFlush, Flush, ObserverFlush, Snapshot};
pub use error_kind::ErrorKind;
pub use hist::LatencyHistogram;
pub use ledger::{Delivery, Ledger, StreamOutcome};
pub use outcome::{BrokerGone, RestartEvent, RunOutcome};
