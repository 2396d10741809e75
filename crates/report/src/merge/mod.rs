//! Merging reports exactly: shards of one run (at the same time, rates add up) or repeats of a
//! scenario (one after the other, counts add up and each run stays a sample).
//!
//! Counts are summed; latency figures come from the sum of the runs' lossless histograms, never
//! from averaging percentiles; expectations are judged again on the merged figures.

use std::collections::BTreeMap;

use crate::metric::Metric;
use crate::report::{
    BrokerWatch, Calibration, Histograms, Latency, MergeKind, Merged, PhaseReport, ProcessUsage,
    QosTotals, Report,
};
use fleetbench_metrics::hist::LatencyHistogram;
use fleetbench_metrics::hlog::Distribution;

pub use crate::consistency::MergeError;

/// Merge `reports` of one scenario.
pub fn merge(reports: &[Report], kind: MergeKind) -> Result<Report, MergeError> {
    let first = reports.first().ok_or(MergeError::Empty)?;
    if reports.len() > crate::consistency::MAX_REPORTS {
        return Err(MergeError::TooMany(reports.len()));
    }
    for (index, r) in reports.iter().enumerate() {
        crate::consistency::check_report(index, r)?;
    }
    let hists = histograms(reports)?;
    let concurrent = kind == MergeKind::Shards;
    let split = if concurrent {
        Some(crate::shards::check(reports)?)
    } else {
        crate::consistency::check_repeats(reports)?;
        None
    };
    let mut out = first.clone();
    counts(&mut out, reports)?;
    latency(&mut out, &hists);
    if concurrent {
        side_by_side(&mut out, reports);
    } else {
        one_after_another(&mut out, reports);
    }
    out.phases = merge_phases(reports, concurrent)?;
    out.behaviour = behaviour(reports)?;
    out.resources.broker_process = merge_process(reports, concurrent);
    out.run.interrupted = reports.iter().any(|r| r.run.interrupted);
    out.run.started_unix_s = (reports.iter().map(|r| r.run.started_unix_s))
        .min()
        .unwrap_or(0);
    // Per-run figures: shards make one run together, repeats one sample each.
    out.calibration = median_calibration(reports);
    out.samples = if concurrent {
        let mut s = out.own_sample();
        s.calibration = out.calibration;
        vec![s]
    } else {
        reports.iter().flat_map(|r| r.samples()).collect()
    };
    out.merged = Some(Merged {
        kind,
        reports: reports.len() as u32,
    });
    out.faults = crate::fault_cost::merge(reports, concurrent);
    out.groups = crate::groups::merge(reports);
    // Shards ran side by side and add up; repeats ran one after the other: the first stands.
    if concurrent {
        let all: Vec<&crate::series::Series> = reports.iter().map(|r| &r.series).collect();
        out.series = crate::series::Series::merge_concurrent(&all);
    }
    shard_rows(&mut out, reports, split);
    // Expectations, findings and the verdict, worked out again from the merged figures; a
    // sharded run also needs every shard, each passing on its own.
    out.judge(|r| {
        let mut judged = crate::expect::reevaluate(&first.expectations, r);
        if !r.shards.is_empty() {
            let known = |name: &str| judged.iter().any(|e| e.name == name);
            if !known(Metric::ShardsMissing.name()) {
                judged.extend(crate::expect::shard_checks(r));
            }
        }
        judged
    });
    Ok(out)
}

/// Behaviour counts add up whether the reports are shards or repeats.
fn behaviour(reports: &[Report]) -> Result<fleetbench_metrics::behaviour::Behaviour, MergeError> {
    let mut out = fleetbench_metrics::behaviour::Behaviour::default();
    for (index, r) in reports.iter().enumerate() {
        out.absorb(&r.behaviour)
            .map_err(|e| MergeError::Histogram {
                index,
                detail: format!("command round trips: {e}"),
            })?;
    }
    Ok(out)
}

/// The shards' rows and what names the run: `split` is the shard count of a sharded run
/// (None for repeats, which keep every repeat's shards: any hole in any of them counts).
fn shard_rows(out: &mut Report, reports: &[Report], split: Option<u32>) {
    out.shards = match split {
        Some(n) => crate::shards::rows(reports, n),
        None => reports.iter().flat_map(|r| r.shards.clone()).collect(),
    };
    if let Some(n) = split {
        out.run.shard = format!("merged {} of {n} shards", reports.len());
        out.run.broker = crate::shards::brokers(reports);
        // The latest shard's start stands for the run's.
        out.run.start = (reports.iter().filter_map(|r| r.run.start.clone()))
            .max_by(|a, b| a.lateness_s.total_cmp(&b.lateness_s));
    }
}

/// The reports' whole-run distributions, added.
struct Hists {
    by: BTreeMap<Distribution, LatencyHistogram>,
    /// From intended, of the messages sent on time: None when a report predates it.
    on_time: Option<LatencyHistogram>,
}

/// The reports' whole-run distributions, added; every report must be of the first one's
/// scenario and carry its histograms.
fn histograms(reports: &[Report]) -> Result<Hists, MergeError> {
    let scenario = reports.first().map_or("?", |r| r.scenario_name());
    let mut hists: BTreeMap<Distribution, LatencyHistogram> = BTreeMap::new();
    let mut on_time = Some(LatencyHistogram::new());
    for (index, r) in reports.iter().enumerate() {
        if r.scenario_name() != scenario {
            return Err(MergeError::OtherScenario {
                index,
                expected: scenario.to_string(),
                found: r.scenario_name().to_string(),
            });
        }
        let h = r
            .histograms
            .as_ref()
            .ok_or(MergeError::NoHistograms { index })?;
        let bad = |e: fleetbench_metrics::hist::HistogramCodecError| MergeError::Histogram {
            index,
            detail: e.to_string(),
        };
        for (d, h) in h.decode().map_err(bad)? {
            hists.entry(d).or_default().add(&h);
        }
        on_time = match (on_time, h.decode_on_time().map_err(bad)?) {
            (Some(mut sum), Some(h)) => {
                sum.add(&h);
                Some(sum)
            }
            _ => None,
        };
    }
    Ok(Hists { by: hists, on_time })
}

/// Every count, summed: totals, per QoS, errors, late sends, connections, what the broker did.
/// The totals and their split by QoS are checked sums; the figures beside them saturate.
fn counts(out: &mut Report, reports: &[Report]) -> Result<(), MergeError> {
    out.totals = crate::consistency::sum_totals(reports)?;
    let mut by_qos: BTreeMap<u8, QosTotals> = BTreeMap::new();
    for q in reports.iter().flat_map(|r| &r.by_qos) {
        let e = by_qos.entry(q.qos).or_insert(QosTotals {
            qos: q.qos,
            ..QosTotals::default()
        });
        e.streams = e.streams.saturating_add(q.streams);
        e.outcome = e
            .outcome
            .checked_add(&q.outcome)
            .ok_or(MergeError::Overflow)?;
    }
    out.by_qos = by_qos.into_values().collect();
    out.errors = BTreeMap::new();
    for (kind, g) in reports.iter().flat_map(|r| &r.errors) {
        let e = out.errors.entry(*kind).or_default();
        e.count += g.count;
        e.latest = g.latest.clone();
    }
    out.generator.late_sends = reports.iter().map(|r| r.generator.late_sends).sum();
    let mut late_by = vec![0u64; fleetbench_metrics::flush::LATE_BY_MS.len()];
    for step in reports.iter().flat_map(|r| &r.generator.late_by) {
        if let Some(i) = fleetbench_metrics::flush::LATE_BY_MS
            .iter()
            .position(|s| *s == step.over_ms)
        {
            late_by[i] = late_by[i].saturating_add(step.sends);
        }
    }
    out.generator.late_by = crate::report::LateBy::steps(&late_by);
    out.generator.max_lag_us = (reports.iter().map(|r| r.generator.max_lag_us))
        .max()
        .unwrap_or(0);
    out.timing.never_connected = reports.iter().map(|r| r.timing.never_connected).sum();
    out.timing.disconnected = reports.iter().map(|r| r.timing.disconnected).sum();
    out.timing.connect_all_s = (reports.iter().map(|r| r.timing.connect_all_s))
        .try_fold(0.0f64, |m, c| c.map(|c| m.max(c)));
    out.run.broker_gone = (reports.iter().filter_map(|r| r.run.broker_gone))
        .min_by(|a, b| a.since_s.total_cmp(&b.since_s));
    out.broker_watch = merge_watch(reports);
    out.subscriptions_not_granted = Vec::new();
    for g in reports.iter().flat_map(|r| &r.subscriptions_not_granted) {
        // Repeats refuse the same subscription each time: once is enough to say.
        if !out.subscriptions_not_granted.contains(g) {
            out.subscriptions_not_granted.push(g.clone());
        }
    }
    out.qos_mismatches = merge_qos_mismatches(reports);
    Ok(())
}

/// Latency from the merged histograms: the percentiles of all deliveries.
fn latency(out: &mut Report, hists: &Hists) {
    let summary = |d: Distribution| hists.by.get(&d).map(|h| h.summary()).unwrap_or_default();
    out.latency = Latency {
        from_intended: summary(Distribution::FromIntended),
        from_send: summary(Distribution::FromSend),
        puback: summary(Distribution::Puback),
        connect: summary(Distribution::Connect),
        on_time: hists
            .on_time
            .as_ref()
            .map(|h| h.summary())
            .unwrap_or_default(),
    };
    let empty = LatencyHistogram::new();
    let h = |d: Distribution| hists.by.get(&d).unwrap_or(&empty);
    out.histograms = Histograms::encode(
        h(Distribution::FromIntended),
        h(Distribution::FromSend),
        h(Distribution::Puback),
        h(Distribution::Connect),
        hists.on_time.as_ref(),
    )
    .ok();
}

/// Shards ran side by side: rates and what the machines spent add up, times are the longest.
fn side_by_side(out: &mut Report, reports: &[Report]) {
    let sum = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).sum::<f64>();
    let max = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).fold(0.0, f64::max);
    out.run.elapsed_s = max(&|r| r.run.elapsed_s);
    out.run.publish_window_s = max(&|r| r.run.publish_window_s);
    out.run.drain_s = max(&|r| r.run.drain_s);
    out.throughput.publish_per_s = sum(&|r| r.throughput.publish_per_s);
    out.throughput.deliver_per_s = sum(&|r| r.throughput.deliver_per_s);
    out.generator.cpu_cores = sum(&|r| r.generator.cpu_cores);
    out.resources.cpu = sum_cpu(reports, 1.0);
    out.resources.peak_rss_bytes = reports.iter().map(|r| r.resources.peak_rss_bytes).sum();
}

/// Repeats ran one after the other: times add up, rates are over the summed publish windows,
/// what the machine spent is the average run's.
fn one_after_another(out: &mut Report, reports: &[Report]) {
    let n = reports.len() as f64;
    let sum = |f: &dyn Fn(&Report) -> f64| reports.iter().map(f).sum::<f64>();
    let total_window = sum(&|r| r.run.publish_window_s);
    let per_s = |count: u64| {
        if total_window > 0.0 {
            count as f64 / total_window
        } else {
            0.0
        }
    };
    out.run.elapsed_s = sum(&|r| r.run.elapsed_s);
    out.run.publish_window_s = total_window;
    out.run.drain_s = sum(&|r| r.run.drain_s);
    out.throughput.publish_per_s = per_s(out.totals.sent);
    out.throughput.deliver_per_s = per_s(out.totals.delivered);
    out.generator.cpu_cores = sum(&|r| r.generator.cpu_cores) / n;
    out.resources.cpu = sum_cpu(reports, 1.0 / n);
    out.resources.peak_rss_bytes = (reports.iter().map(|r| r.resources.peak_rss_bytes))
        .max()
        .unwrap_or(0);
}

/// Load phases, phase by phase: counts summed, distributions added; rates add up over shards
/// and are per run over repeats.
fn merge_phases(reports: &[Report], concurrent: bool) -> Result<Vec<PhaseReport>, MergeError> {
    let first = &reports[0].phases;
    let mut out = first.clone();
    for (i, p) in out.iter_mut().enumerate() {
        let mut hist = LatencyHistogram::new();
        (p.sent, p.expected, p.delivered) = (0, 0, 0);
        for (index, r) in reports.iter().enumerate() {
            let q = r
                .phases
                .get(i)
                .filter(|q| q.name == p.name)
                .ok_or_else(|| {
                    MergeError::Shards(format!(
                        "report {index} does not have load phase {:?} at position {i}",
                        p.name
                    ))
                })?;
            p.sent += q.sent;
            p.expected += q.expected;
            p.delivered += q.delivered;
            let h =
                LatencyHistogram::from_base64(&q.histogram).map_err(|e| MergeError::Histogram {
                    index,
                    detail: format!("phase {:?}: {e}", p.name),
                })?;
            hist.add(&h);
        }
        let runs = if concurrent {
            1.0
        } else {
            reports.len() as f64
        };
        let per_s = |n: u64| {
            if p.duration_s > 0.0 {
                n as f64 / (p.duration_s * runs)
            } else {
                0.0
            }
        };
        p.publish_per_s = per_s(p.sent);
        p.deliver_per_s = per_s(p.delivered);
        p.from_intended = hist.summary();
        p.histogram = hist.to_base64().map_err(|e| MergeError::Histogram {
            index: 0,
            detail: e.to_string(),
        })?;
    }
    Ok(out)
}

fn sum_cpu(reports: &[Report], scale: f64) -> fleetbench_metrics::cpu::CpuUsage {
    let mut c = fleetbench_metrics::cpu::CpuUsage::default();
    for r in reports {
        let o = &r.resources.cpu;
        c.generator += o.generator * scale;
        c.broker += o.broker * scale;
        c.other += o.other * scale;
    }
    c
}

fn merge_process(reports: &[Report], concurrent: bool) -> Option<ProcessUsage> {
    let all: Vec<ProcessUsage> = reports
        .iter()
        .filter_map(|r| r.resources.broker_process)
        .collect();
    if all.is_empty() {
        return None;
    }
    let cpu: f64 = all.iter().map(|p| p.cpu_cores).sum();
    Some(ProcessUsage {
        cpu_cores: if concurrent {
            cpu
        } else {
            cpu / all.len() as f64
        },
        peak_rss_bytes: all.iter().map(|p| p.peak_rss_bytes).max().unwrap_or(0),
    })
}

/// The median calibration by latency unit, so that both units come from one real measurement.
fn median_calibration(reports: &[Report]) -> Option<Calibration> {
    let mut all: Vec<Calibration> = reports.iter().filter_map(|r| r.calibration).collect();
    all.sort_by(|a, b| a.core_round_trip_us.total_cmp(&b.core_round_trip_us));
    all.get(all.len() / 2).copied()
}

/// Deliveries at another QoS than due, summed by (due, used).
fn merge_qos_mismatches(reports: &[Report]) -> Vec<crate::report::QosMismatch> {
    let mut sums: BTreeMap<(u8, u8), u64> = BTreeMap::new();
    for m in reports.iter().flat_map(|r| &r.qos_mismatches) {
        *sums.entry((m.due, m.used)).or_default() += m.count;
    }
    sums.into_iter()
        .map(|((due, used), count)| crate::report::QosMismatch { due, used, count })
        .collect()
}

/// The embedded brokers' watches, together: panics add up, restarts are listed in order.
fn merge_watch(reports: &[Report]) -> Option<BrokerWatch> {
    let mut out: Option<BrokerWatch> = None;
    for w in reports.iter().filter_map(|r| r.broker_watch.as_ref()) {
        let all = out.get_or_insert_with(BrokerWatch::default);
        all.panics += w.panics;
        all.unrecorded_restarts += w.unrecorded_restarts;
        all.restarts.extend(w.restarts.iter().cloned());
    }
    out
}

#[cfg(test)]
mod tests;
