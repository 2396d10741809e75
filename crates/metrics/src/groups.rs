//! The accounting per device group: what each group's devices sent and what became of it, so
//! that a group that lost messages or connected late is told apart from the others.

use serde::{Deserialize, Serialize};

use crate::ledger::{Ledger, StreamOutcome};

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

/// The streams of `ledgers` accounted per group: `group_of[d]` is device `d`'s group, `sent`
/// and `settled` as in [`crate::ledger::account`].
pub fn account_by_group<'a>(
    ledgers: impl IntoIterator<Item = &'a Ledger>,
    (sent, settled): (&[u64], &[u64]),
    group_of: &[usize],
    groups: usize,
) -> Vec<StreamOutcome> {
    let mut out = vec![StreamOutcome::default(); groups];
    for ledger in ledgers {
        for (device, stream) in ledger.streams() {
            let Some(g) = group_of.get(device).and_then(|g| out.get_mut(*g)) else {
                continue;
            };
            let s = sent.get(device).copied().unwrap_or(0);
            let settled = settled.get(device).copied().unwrap_or(0).min(s);
            g.add(&stream.outcome(s, settled));
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_groups_streams_are_its_own() {
        // Devices 0 and 2 in group 0, device 1 in group 1; one observer expects all three.
        let mut l = Ledger::new(&[true, true, true]);
        for seq in 0..5 {
            l.record(0, seq);
            l.record(2, seq);
        }
        l.record(1, 0);
        let by = account_by_group([&l], (&[5, 3, 6], &[5, 3, 6]), &[0, 1, 0], 2);
        assert_eq!((by[0].expected, by[0].delivered, by[0].lost), (11, 10, 1));
        assert_eq!((by[1].expected, by[1].delivered, by[1].lost), (3, 1, 2));
    }
}
