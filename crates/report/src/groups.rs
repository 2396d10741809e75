//! The accounting per device group: what each group's devices sent and what became of it, so
//! that a group that lost messages or connected late is told apart from the others.

use serde::{Deserialize, Serialize};

use fleetbench_metrics::ledger::StreamOutcome;

/// One device group of the scenario, in its order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GroupReport {
    pub name: String,
    /// Its devices in this run (this shard's, or every shard's in a merge).
    pub devices: u64,
    /// Messages its devices sent.
    pub sent: u64,
    /// What became of them, over every observer expecting them (as in `totals`).
    #[serde(flatten)]
    pub outcome: StreamOutcome,
}

/// The groups of merged reports, added group by group (shards and repeats alike: counts).
pub(crate) fn merge(reports: &[crate::Report]) -> Vec<GroupReport> {
    let Some(first) = reports.first() else {
        return Vec::new();
    };
    let mut out = first.groups.clone();
    for r in &reports[1..] {
        for (mine, theirs) in out.iter_mut().zip(&r.groups) {
            mine.devices += theirs.devices;
            mine.sent += theirs.sent;
            mine.outcome.add(&theirs.outcome);
        }
    }
    out
}
