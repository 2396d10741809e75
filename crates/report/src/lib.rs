//! Judging and reporting for fleetbench: the report (a versioned wire format) built from a
//! run's recordings, its expectations and findings, what each fault cost, merges of shards and
//! repeats, comparisons with a baseline, the summary and the HTML page. Reads the recordings of
//! the metrics crate; nothing here runs on a run's hot path.

pub mod compare;
pub mod consistency;
pub mod context;
pub mod expect;
pub mod fault_cost;
mod figures;
pub mod finding;
#[cfg(test)]
mod fixture;
mod from_run;
pub mod groups;
pub mod html;
pub mod lateness;
pub mod merge;
pub mod metric;
pub mod read;
pub mod report;
pub mod search;
pub mod series;
pub mod shards;
pub mod summary;

pub use context::RunContext;
pub use report::Report;
