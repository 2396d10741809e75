//! What each fault cost, read from the run's timeline (devices connected, connects, connection
//! errors and deliveries, tick by tick, from the start of the connect ramp) and the plan (which
//! connections the faults cut).

use fleetbench_scenario::FaultType;
use std::collections::BTreeMap;
use std::time::Duration;

use fleetbench_scenario::fault_grid::LEAD;
use fleetbench_scenario::{Fault, FaultGrid, FaultKind, Scenario};

use fleetbench_metrics::hist::LatencyHistogram;
use fleetbench_metrics::hlog::{Distribution, LoggedInterval};
use fleetbench_metrics::outcome::{RestartEvent, RunOutcome};
use fleetbench_metrics::timeline::{CutDown, Point};
use fleetbench_metrics::ErrorKind;
use serde::{Deserialize, Serialize};

/// What one fault cost. Times are seconds from the fault's start unless named otherwise.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct FaultReport {
    /// What and when, in words ("disconnect of sensor at 20s").
    pub fault: String,
    /// "disconnect", "churn", "broker_restart", "network" or "slow_consumer".
    #[schemars(with = "String")]
    pub kind: FaultType,
    /// When it started, from the start of the connect ramp, and how long it was meant to last.
    pub at_s: f64,
    pub for_s: f64,
    /// Connections it cut: the devices a disconnect dropped, the drops of a churn, every
    /// device for a broker restart.
    pub cuts: u64,
    /// Devices connected just before it, and the fewest while it lasted and recovered.
    pub connected_before: u64,
    pub lowest_connected: u64,
    /// Until as many devices were connected as before, after the fault's window; null when
    /// they never were.
    pub recovery_s: Option<f64>,
    /// The most connections completed per second from its start to its recovery.
    pub peak_reconnects_per_s: f64,
    /// Connection errors (refused, reset, timed out, ...) from its start to its recovery.
    pub connection_errors: u64,
    /// The same by kind ("connect refused", "io", "timeout", ...), the kinds that occurred.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(with = "BTreeMap<String, u64>")]
    pub connection_errors_by: BTreeMap<ErrorKind, u64>,
    /// Until the delivery rate was back within 5% of its level in the 5 s before the fault,
    /// after the fault's window; null when it never was (or there was no steady level).
    pub delivery_recovery_s: Option<f64>,
    /// p99 latency from intended of the deliveries made during the fault (its window, or until
    /// its devices were back if that was later), and in as long again after it (at least 5 s,
    /// within the run, and ending a second before the next fault); null when none were made.
    #[serde(default)]
    pub p99_during_us: Option<u64>,
    #[serde(default)]
    pub p99_after_us: Option<u64>,
    /// Messages lost and duplicated that were due during the fault (from a second before its
    /// start, for those still on the wire when it struck, until the end of the span
    /// `p99_during_us` covers) and after it (the span of `p99_after_us`), in whole seconds of
    /// due time, and no more than a minute past its window. The report's totals hold every
    /// message; these place the ones due around the fault. A duplicate that reached two
    /// members of a shared subscription is in the totals only.
    #[serde(default)]
    pub lost_during: u64,
    #[serde(default)]
    pub lost_after: u64,
    #[serde(default)]
    pub duplicates_during: u64,
    #[serde(default)]
    pub duplicates_after: u64,
    /// A network fault: the devices' QoS 0 publishes the proxy dropped (each one lost: the
    /// report's `lost` includes them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dropped: Option<u64>,
    /// A broker restart: what happened and how long it took.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_s: Option<f64>,
    /// A broker restart that failed: why. The fault did not happen as the scenario says, and
    /// the verdict fails (`faults_failed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failed: Option<String>,
}

/// The steady delivery rate is taken over this long before a fault.
const STEADY_WINDOW: Duration = Duration::from_secs(5);
/// The delivery rate after a fault is taken over this long.
const RATE_WINDOW: Duration = Duration::from_secs(1);
/// How close to the steady rate counts as recovered.
const RATE_TOLERANCE: f64 = 0.05;

/// One row per fault of `scenario`, in the order they started; `grid` is the plan's fault grid
/// (what loss and duplicates were counted over), `intervals` are the run's interval log's.
/// What the run measured of a fault is found by the fault's index.
pub fn costs(
    scenario: &Scenario,
    grid: &FaultGrid,
    run: &RunOutcome,
    intervals: &[LoggedInterval],
) -> Vec<FaultReport> {
    if scenario.faults.is_empty() {
        return Vec::new();
    }
    let intended: Vec<&LoggedInterval> = (intervals.iter())
        .filter(|i| i.metric == Some(Distribution::FromIntended))
        .collect();
    // The steady level before a fault is taken after the warm-up and after the previous
    // fault's window and reconnects.
    let mut quiet_from = scenario.warmup;
    scenario
        .faults
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (measured, restart, proxy) = match &f.kind {
                FaultKind::Disconnect { group, .. } => {
                    (cut(scenario, run, group, |c| c == f.at), None, None)
                }
                FaultKind::Churn { group, .. } => {
                    let end = f.at + f.length;
                    (
                        cut(scenario, run, group, |c| c >= f.at && c < end),
                        None,
                        None,
                    )
                }
                FaultKind::BrokerRestart { .. } => {
                    let restart = run.restarts.iter().find(|r| r.fault == i);
                    (Some(lost(run, f, restart)), restart, None)
                }
                FaultKind::Network(_) => (None, None, run.network.get(&i).copied()),
                FaultKind::SlowConsumer { .. } => (None, None, None),
            };
            let mut row = cost(f, measured, (&run.timeline, quiet_from), restart);
            // During: the window, or until the devices were back (a disconnect has no window).
            let during = [row.restart_s, row.recovery_s]
                .into_iter()
                .flatten()
                .fold(row.for_s, f64::max);
            let window_end = f.at + Duration::from_secs_f64(during);
            // After: as long as the fault lasted (at least 5 s), and not into the next fault.
            let next = (scenario.faults.iter().map(|g| g.at))
                .filter(|t| *t > f.at)
                .min()
                .map_or(Duration::MAX, |t| t.saturating_sub(LEAD));
            let after_end = (window_end + (window_end - f.at).max(AFTER_WINDOW))
                .min(next)
                .max(window_end);
            row.p99_during_us = p99_between(&intended, run.ramp_offset, f.at, window_end);
            row.p99_after_us = p99_between(&intended, run.ramp_offset, window_end, after_end);
            let during_from = grid.floor(f.at.saturating_sub(LEAD));
            let sum = |v: &[u64], from, to| grid.slots(from, to).filter_map(|k| v.get(k)).sum();
            row.lost_during = sum(&run.lost_by_slot, during_from, window_end);
            row.lost_after = sum(&run.lost_by_slot, window_end, after_end);
            row.duplicates_during = sum(&run.duplicates_by_slot, during_from, window_end);
            row.duplicates_after = sum(&run.duplicates_by_slot, window_end, after_end);
            if let Some((dropped, cut)) = proxy {
                row.dropped = Some(dropped);
                row.cuts = cut;
            }
            let settled = row.recovery_s.unwrap_or(0.0).max(row.for_s);
            quiet_from = quiet_from.max(f.at + Duration::from_secs_f64(settled));
            row
        })
        .collect()
}

/// Latency after a fault is taken over as long as its window, and at least this long.
const AFTER_WINDOW: Duration = Duration::from_secs(5);

/// p99 of the deliveries recorded in the ticks that overlap `[from, to)` (from the ramp start).
fn p99_between(
    intervals: &[&LoggedInterval],
    ramp_offset: Duration,
    from: Duration,
    to: Duration,
) -> Option<u64> {
    let mut h = LatencyHistogram::new();
    for i in intervals {
        let Some(start) = i.start.checked_sub(ramp_offset) else {
            continue;
        };
        // Every tick that overlaps the span: a short span still has its tick.
        if start < to && start + i.length > from {
            h.add(&i.histogram());
        }
    }
    (h.count() > 0).then(|| h.summary().p99_us)
}

/// What the devices said of a disconnect's or churn's cuts: how many, the time from the fault's
/// start until the last was back (None: one never was), and how many were down at once.
struct Cuts {
    count: u64,
    recovery: Option<Duration>,
    most_down: u64,
}

/// The planned cuts of `group` whose time `when` accepts.
fn cut(
    scenario: &Scenario,
    run: &RunOutcome,
    group: &str,
    when: impl Fn(Duration) -> bool,
) -> Option<Cuts> {
    let gi = scenario.groups.iter().position(|g| g.name == group)?;
    let mine: Vec<&CutDown> = (run.cut_downs.iter())
        .filter(|c| c.planned && c.group == gi && when(c.at))
        .collect();
    downs(&mine, None)
}

/// How long after a restart's end devices may still find their connection gone (a dead
/// connection can take a keep-alive to notice; a closed one is seen at once).
const RESTART_NOTICED: Duration = Duration::from_secs(2);

/// What the devices saw of broker restart `f` (`restart`: what the hook did): the connections
/// they lost from its start until a little after it ended, and when they were back. A restart
/// that cut nothing has no cuts, however it was planned.
fn lost(run: &RunOutcome, f: &Fault, restart: Option<&RestartEvent>) -> Cuts {
    let took = restart.map_or(f.length, |r| r.took.max(f.length));
    let until = f.at + took + RESTART_NOTICED;
    let mine: Vec<&CutDown> = (run.cut_downs.iter())
        .filter(|c| !c.planned && c.at >= f.at && c.at <= until)
        .collect();
    downs(&mine, Some(f.at)).unwrap_or(Cuts {
        count: 0,
        recovery: Some(Duration::ZERO),
        most_down: 0,
    })
}

/// Cuts, recovery and the most down at once of `mine`; recovery counts from `from` (the first
/// cut when None). None without any.
fn downs(mine: &[&CutDown], from: Option<Duration>) -> Option<Cuts> {
    let first = from.or_else(|| mine.iter().map(|c| c.at).min())?;
    if mine.is_empty() {
        return None;
    }
    let back: Option<Vec<Duration>> = mine.iter().map(|c| c.down.map(|d| c.at + d)).collect();
    // The most down at once: sweep the intervals' starts and ends in time order.
    let mut edges: Vec<(Duration, i64)> = mine
        .iter()
        .flat_map(|c| [(c.at, 1), (c.down.map_or(Duration::MAX, |d| c.at + d), -1)])
        .collect();
    edges.sort();
    let (mut down, mut most) = (0i64, 0i64);
    for (_, step) in edges {
        down += step;
        most = most.max(down);
    }
    Some(Cuts {
        count: mine.len() as u64,
        recovery: back.map(|b| b.into_iter().max().unwrap_or(first).saturating_sub(first)),
        most_down: most.max(0) as u64,
    })
}

fn cost(
    f: &Fault,
    cuts: Option<Cuts>,
    (timeline, warmup): (&[Point], Duration),
    restart: Option<&RestartEvent>,
) -> FaultReport {
    let before = last_at_or_before(timeline, f.at);
    let connected_before = before.map_or(0, |p| u64::from(p.devices_connected));
    // The window ends when the fault is over: a restart when the broker is back.
    let window_end = f.at + restart.map_or(f.length, |r| r.took.max(f.length));
    let (count, recovery, lowest) = match cuts {
        Some(c) => (
            c.count,
            c.recovery,
            connected_before.saturating_sub(c.most_down),
        ),
        // A network fault or a slow consumer: read from the timeline (the proxy counts its
        // own cuts; a slow consumer cuts nothing).
        None => {
            let after = timeline.iter().filter(|p| p.elapsed > f.at);
            // Back: as many connected as before, but for those that left on purpose since.
            let left_before = before.map_or(0, |p| p.devices_left);
            let back = after
                .clone()
                .find(|p| {
                    let left = u64::from(p.devices_left.saturating_sub(left_before));
                    p.elapsed >= window_end
                        && u64::from(p.devices_connected) + left >= connected_before
                })
                .map(|p| p.elapsed - f.at);
            let until = back.map_or(Duration::MAX, |b| f.at + b);
            let lowest = (after.filter(|p| p.elapsed <= until))
                .map(|p| u64::from(p.devices_connected))
                .min()
                .unwrap_or(connected_before);
            (0, back, lowest)
        }
    };
    // A restart that could not be done, or that no device saw (it restarted nothing), did not
    // test what the scenario says: it fails, and there is nothing to recover from.
    let failed = restart.and_then(|r| match &r.result {
        Err(why) => Some(why.clone()),
        Ok(what) if count == 0 => Some(format!(
            "{what}, but no device lost its connection: nothing was restarted (a command that \
             starts a broker already running, or restarts another one?)"
        )),
        Ok(_) => None,
    });
    let recovery = if failed.is_some() && count == 0 {
        None
    } else {
        recovery
    };
    let until = recovery.map_or(Duration::MAX, |r| f.at + r);
    let errors = errors_between(timeline, f.at, until);
    FaultReport {
        fault: f.label(),
        kind: f.kind.kind(),
        at_s: f.at.as_secs_f64(),
        for_s: f.length.as_secs_f64(),
        cuts: count,
        connected_before,
        lowest_connected: lowest,
        recovery_s: recovery.map(|r| r.as_secs_f64()),
        peak_reconnects_per_s: peak_connects(timeline, f.at, until),
        connection_errors: errors.values().sum(),
        connection_errors_by: errors,
        delivery_recovery_s: delivery_recovery(timeline, f.at, window_end, warmup)
            .map(|t| t.saturating_sub(f.at).as_secs_f64()),
        restart: restart.and_then(|r| r.result.as_ref().ok().cloned()),
        restart_s: restart.map(|r| r.took.as_secs_f64()),
        failed,
        // Set by the caller, which knows the spans around the fault.
        ..FaultReport::default()
    }
}

/// The faults of merged reports, fault by fault: counts add up (shards cut and reconnect side
/// by side; repeats one after the other), times, rates and the p99s around the window are the
/// worst report's (reconnect rates add up over shards, which run at the same time). A failure
/// in any report stays.
pub(crate) fn merge(reports: &[crate::Report], concurrent: bool) -> Vec<FaultReport> {
    let Some(first) = reports.first() else {
        return Vec::new();
    };
    let mut out = first.faults.clone();
    for (i, f) in out.iter_mut().enumerate() {
        let all: Vec<&FaultReport> = reports.iter().filter_map(|r| r.faults.get(i)).collect();
        let max = |v: &dyn Fn(&FaultReport) -> Option<f64>| -> Option<f64> {
            let each: Vec<Option<f64>> = all.iter().map(|f| v(f)).collect();
            // Unrecovered anywhere is unrecovered.
            each.iter().try_fold(0.0f64, |m, x| x.map(|x| m.max(x)))
        };
        f.cuts = all.iter().map(|f| f.cuts).sum();
        f.connected_before = all.iter().map(|f| f.connected_before).sum();
        f.lowest_connected = all.iter().map(|f| f.lowest_connected).sum();
        f.connection_errors = all.iter().map(|f| f.connection_errors).sum();
        f.connection_errors_by = BTreeMap::new();
        for (kind, n) in all.iter().flat_map(|f| &f.connection_errors_by) {
            *f.connection_errors_by.entry(*kind).or_default() += n;
        }
        f.recovery_s = max(&|f| f.recovery_s);
        f.delivery_recovery_s = max(&|f| f.delivery_recovery_s);
        let peaks = all.iter().map(|f| f.peak_reconnects_per_s);
        f.peak_reconnects_per_s = if concurrent {
            peaks.sum()
        } else {
            peaks.fold(0.0, f64::max)
        };
        f.failed = all.iter().find_map(|f| f.failed.clone());
        // Percentiles do not add up: the worst report's stands for the merge.
        f.p99_during_us = all.iter().filter_map(|f| f.p99_during_us).max();
        f.p99_after_us = all.iter().filter_map(|f| f.p99_after_us).max();
        f.lost_during = all.iter().map(|f| f.lost_during).sum();
        f.lost_after = all.iter().map(|f| f.lost_after).sum();
        f.duplicates_during = all.iter().map(|f| f.duplicates_during).sum();
        f.duplicates_after = all.iter().map(|f| f.duplicates_after).sum();
        if f.dropped.is_some() {
            f.dropped = Some(all.iter().filter_map(|f| f.dropped).sum());
        }
    }
    out
}

/// Connection errors by kind from `from` to the first tick at or after `until` (the end of
/// the timeline when there is none).
fn errors_between(timeline: &[Point], from: Duration, until: Duration) -> BTreeMap<ErrorKind, u64> {
    let at_start = last_at_or_before(timeline, from).map(|p| p.connection_errors_by);
    let at_end = (timeline.iter())
        .find(|p| p.elapsed >= until)
        .or(timeline.last())
        .map(|p| p.connection_errors_by);
    let (start, end) = (at_start.unwrap_or_default(), at_end.unwrap_or_default());
    (ErrorKind::CONNECTION.into_iter())
        .zip(start.iter().zip(end))
        .filter(|(_, (s, e))| e > *s)
        .map(|(k, (s, e))| (k, e - s))
        .collect()
}

fn last_at_or_before(timeline: &[Point], t: Duration) -> Option<&Point> {
    timeline.iter().take_while(|p| p.elapsed <= t).last()
}

/// The most connections completed per second in one tick between `from` and `until`.
fn peak_connects(timeline: &[Point], from: Duration, until: Duration) -> f64 {
    timeline
        .windows(2)
        // Ticks from the fault's start through the one holding its recovery.
        .filter(|w| w[1].elapsed > from && w[0].elapsed < until)
        .map(|w| {
            let tick = (w[1].elapsed - w[0].elapsed).as_secs_f64();
            if tick > 0.0 {
                w[1].connects as f64 / tick
            } else {
                0.0
            }
        })
        .fold(0.0, f64::max)
}

/// Deliveries per second over `window` ending at point `i`.
fn rate_at(timeline: &[Point], i: usize, window: Duration) -> Option<f64> {
    let end = timeline.get(i)?;
    let start = timeline[..i]
        .iter()
        .rev()
        .find(|p| end.elapsed.saturating_sub(p.elapsed) >= window)?;
    let secs = (end.elapsed - start.elapsed).as_secs_f64();
    (secs > 0.0).then(|| (end.delivered - start.delivered.min(end.delivered)) as f64 / secs)
}

/// When, at or after `window_end`, the delivery rate over a second was back within 5% of the
/// steady rate before `at` (over the 5 s before it, from `quiet_from` at the earliest: the end
/// of the warm-up or of the previous fault; at least a second of it).
fn delivery_recovery(
    timeline: &[Point],
    at: Duration,
    window_end: Duration,
    quiet_from: Duration,
) -> Option<Duration> {
    let before = timeline.iter().rposition(|p| p.elapsed <= at)?;
    let from = at.saturating_sub(STEADY_WINDOW).max(quiet_from);
    let span = timeline[before].elapsed.checked_sub(from)?;
    if span < RATE_WINDOW {
        return None;
    }
    let steady = rate_at(timeline, before, span)?;
    if steady <= 0.0 {
        return None;
    }
    (0..timeline.len())
        .filter(|i| timeline[*i].elapsed >= window_end + RATE_WINDOW)
        .find(|i| {
            rate_at(timeline, *i, RATE_WINDOW)
                .is_some_and(|r| (r - steady).abs() <= RATE_TOLERANCE * steady)
        })
        .map(|i| timeline[i].elapsed)
}

#[cfg(test)]
mod tests;
