//! The shards of one sharded run, as a merge sees them: which belong together (one split, one
//! scenario, one build, each shard once), the per-shard table, and which shards are missing or
//! failed, so that the merged verdict never passes a run with a hole in it.

use std::collections::BTreeMap;

use crate::consistency::MergeError;
use crate::report::{Report, ShardRow, Verdict};

/// `index/count` of a report's shard.
fn parse(shard: &str) -> Option<(u32, u32)> {
    let (i, n) = shard.split_once('/')?;
    let (i, n) = (i.parse::<u32>().ok()?, n.parse::<u32>().ok()?);
    (n >= 1 && i < n).then_some((i, n))
}

/// The shard count of `reports`, when they are shards of one run: one split, the same resolved
/// scenario (seed and broker included) and the same build, no shard twice. Missing shards are
/// not refused here: the merged verdict names them.
pub(crate) fn check(reports: &[Report]) -> Result<u32, MergeError> {
    let refuse = |why: String| Err(MergeError::Shards(why));
    let Some(first) = reports.first() else {
        return Err(MergeError::Empty);
    };
    let build = |r: &Report| {
        let e = &r.environment;
        format!("fleetbench {} ({})", e.fleetbench_version, e.git_revision)
    };
    let mut seen: BTreeMap<u32, usize> = BTreeMap::new();
    let mut count = None;
    for (at, r) in reports.iter().enumerate() {
        let Some((i, n)) = parse(&r.run.shard) else {
            return refuse(format!(
                "report {at}: shard {:?} is not I/N (a merged report cannot be merged as a shard)",
                r.run.shard
            ));
        };
        let first_n = *count.get_or_insert(n);
        if first_n != n {
            return refuse(format!(
                "report {at} is shard {i}/{n}, report 0 of a split into {first_n}"
            ));
        }
        if let Some(other) = seen.insert(i, at) {
            return refuse(format!(
                "shard {i}/{n} appears twice (reports {other} and {at}); give each shard's report once"
            ));
        }
        if without_broker(&r.scenario) != without_broker(&first.scenario) {
            return refuse(format!(
                "shard {i}/{n} ran another version of scenario {:?} than report 0 (its resolved \
                 scenario differs: seed, devices, observers or settings)",
                r.scenario_name()
            ));
        }
        if build(r) != build(first) {
            return refuse(format!(
                "shard {i}/{n} was run by {}, report 0 by {}; shards of one run use one build",
                build(r),
                build(first)
            ));
        }
    }
    Ok(count.unwrap_or(1))
}

/// A resolved scenario without its broker: shards may test different nodes of one broker
/// cluster, and are still one run.
fn without_broker(scenario: &serde_json::Value) -> serde_json::Value {
    let mut s = scenario.clone();
    if let Some(o) = s.as_object_mut() {
        o.remove("broker");
    }
    s
}

/// The brokers the shards targeted, as the merged report names them.
pub(crate) fn brokers(reports: &[Report]) -> String {
    let mut all: Vec<&str> = reports.iter().map(|r| r.run.broker.as_str()).collect();
    all.sort_unstable();
    all.dedup();
    match all.as_slice() {
        [one] => (*one).to_string(),
        many => format!("{} brokers: {}", many.len(), many.join(", ")),
    }
}

/// The per-shard table: one row per shard of the split, in order, missing ones included.
pub(crate) fn rows(reports: &[Report], count: u32) -> Vec<ShardRow> {
    let by_index: BTreeMap<u32, &Report> = reports
        .iter()
        .filter_map(|r| parse(&r.run.shard).map(|(i, _)| (i, r)))
        .collect();
    (0..count)
        .map(|i| {
            let shard = format!("{i}/{count}");
            match by_index.get(&i) {
                None => ShardRow {
                    shard,
                    ..ShardRow::default()
                },
                Some(r) => ShardRow {
                    shard,
                    present: true,
                    verdict: Some(r.verdict),
                    failed: (r.expectations.iter())
                        .filter(|e| !e.ok)
                        .map(|e| e.name.clone())
                        .collect(),
                    sent: r.totals.sent,
                    delivered: r.totals.delivered,
                    lost: r.totals.lost,
                    late_share: r.late_share(),
                    generator_cpu_cores: r.generator.cpu_cores,
                    peak_rss_bytes: r.resources.peak_rss_bytes,
                    start_lateness_s: r.run.start.as_ref().map(|s| s.lateness_s),
                },
            }
        })
        .collect()
}

/// The shards of a merged sharded run that are missing; None for any other report.
pub fn missing(r: &Report) -> Option<Vec<&ShardRow>> {
    (!r.shards.is_empty()).then(|| r.shards.iter().filter(|s| !s.present).collect())
}

/// The shards of a merged sharded run that failed on their own (any verdict but pass); None
/// for any other report.
pub fn failed(r: &Report) -> Option<Vec<&ShardRow>> {
    (!r.shards.is_empty()).then(|| {
        r.shards
            .iter()
            .filter(|s| s.present && s.verdict != Some(Verdict::Pass))
            .collect()
    })
}
