//! Merging per-task recordings on the tick into totals and live snapshots.
//!
//! Tasks send [`Flush`]es through a std channel (lock-free for senders); the aggregator drains it
//! once a tick. A slow reader of snapshots only ever sees an older snapshot: nothing upstream
//! waits for it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::mpsc::{Receiver, Sender};
use std::time::Duration;

use crate::cpu::{CpuSampler, CpuUsage};
pub use crate::error_kind::ErrorGroup;
use crate::hist::LatencyHistogram;
use crate::hlog::{Distribution, IntervalLog};
pub use crate::snapshot::{GroupSnapshot, PhaseFigures, Snapshot, Stage};

pub use crate::flush::{DeviceFlush, Flush, ObserverFlush, PhaseFlush};

/// The quantiles of [`Snapshot::distribution`].
pub const LADDER: [f64; 7] = [0.5, 0.75, 0.9, 0.99, 0.999, 0.9999, 1.0];

/// What a whole run recorded beside its counts: its latency distributions, lateness, errors,
/// CPU and load phases, as the report needs them.
#[derive(Debug, Clone, Default)]
pub struct RunTotals {
    pub from_intended: LatencyHistogram,
    pub from_send: LatencyHistogram,
    /// From intended, of the messages that left on time.
    pub on_time: LatencyHistogram,
    pub ack: LatencyHistogram,
    pub connect: LatencyHistogram,
    pub late_sends: u64,
    pub max_lag_us: u64,
    /// Sends late by more than each step of [`crate::flush::LATE_BY_MS`].
    pub late_by: [u64; crate::flush::LATE_BY_MS.len()],
    pub errors: BTreeMap<crate::ErrorKind, ErrorGroup>,
    /// Average cores used from the first tick to the last, by component.
    pub cpu: CpuUsage,
    /// Per load phase (empty without phases).
    pub phases: Vec<PhaseTotals>,
}

/// One load phase over the whole run.
#[derive(Debug, Clone, Default)]
pub struct PhaseTotals {
    /// Messages due in the phase that were sent.
    pub sent: u64,
    /// Deliveries the subscriptions call for, for those messages.
    pub expected: u64,
    /// First arrivals of those messages.
    pub delivered: u64,
    pub from_intended: LatencyHistogram,
}

impl RunTotals {
    fn phase(&mut self, phase: usize) -> &mut PhaseTotals {
        if self.phases.len() <= phase {
            self.phases.resize_with(phase + 1, PhaseTotals::default);
        }
        &mut self.phases[phase]
    }
}

pub struct Aggregator {
    rx: Receiver<Flush>,
    totals: RunTotals,
    interval_intended: LatencyHistogram,
    interval_send: LatencyHistogram,
    /// Latency since the start in a Prometheus histogram's buckets.
    latency_buckets: [crate::buckets::Buckets; 2],
    interval_ack: LatencyHistogram,
    interval_connect: LatencyHistogram,
    /// Every tick's four distributions, for the run's HdrHistogram interval log.
    log: IntervalLog,
    last_tick: Duration,
    sent: Vec<u64>,
    sent_total: u64,
    delivered: u64,
    duplicates: u64,
    reordered: u64,
    unexpected: u64,
    observers_connected: u32,
    last: Snapshot,
    /// Sent counts per device at past ticks, kept for one drain timeout, to tell at the cutoff
    /// which messages had their full drain timeout to arrive.
    history: VecDeque<(Duration, Vec<u64>)>,
    keep_history: Duration,
    /// (elapsed, sent, delivered, sent per group) at recent ticks, for rates over
    /// [`RATE_WINDOW`].
    recent: VecDeque<(Duration, u64, u64, Vec<u64>)>,
    /// Device position -> group index.
    device_group: Vec<u32>,
    /// Device position -> number of observers that expect its messages.
    watchers: Vec<u32>,
    expected: u64,
    groups: Vec<GroupSnapshot>,
    cpu: CpuSampler,
    timeline: Vec<crate::timeline::Point>,
    /// Devices that left on purpose so far (their publish window over, or `drop_at`).
    devices_left: u32,
    /// Every connection a fault cut: the device's group, when, and how long until it was back.
    cut_downs: Vec<crate::timeline::CutDown>,
}

/// Rates of one tick, per second.
struct Rates {
    publish: f64,
    deliver: f64,
    groups: Vec<f64>,
}

/// Apply a connection change (connected, disconnected, or none) to a count of connections.
fn count_connection(count: &mut u32, change: Option<bool>) {
    match change {
        Some(true) => *count += 1,
        Some(false) => *count = count.saturating_sub(1),
        None => {}
    }
}

/// Rates are averaged over about this long: flushes arrive once a tick per task, not aligned
/// with the ticks, so a single tick's rate jitters.
pub const RATE_WINDOW: Duration = Duration::from_secs(1);

impl Aggregator {
    /// A channel for the tasks and the aggregator that drains it.
    pub fn new(
        devices: u32,
        observers: u32,
        keep_history: Duration,
    ) -> (Sender<Flush>, Aggregator) {
        let (tx, rx) = std::sync::mpsc::channel();
        let agg = Aggregator {
            rx,
            totals: RunTotals::default(),
            interval_intended: LatencyHistogram::new(),
            interval_send: LatencyHistogram::new(),
            latency_buckets: Default::default(),
            interval_ack: LatencyHistogram::new(),
            interval_connect: LatencyHistogram::new(),
            log: IntervalLog::new(),
            last_tick: Duration::ZERO,
            sent: vec![0; devices as usize],
            sent_total: 0,
            delivered: 0,
            duplicates: 0,
            reordered: 0,
            unexpected: 0,
            observers_connected: 0,
            last: Snapshot {
                devices_target: devices,
                observers_target: observers,
                ..Snapshot::default()
            },
            history: VecDeque::new(),
            keep_history,
            recent: VecDeque::from([(Duration::ZERO, 0, 0, vec![0])]),
            device_group: vec![0; devices as usize],
            watchers: vec![0; devices as usize],
            expected: 0,
            groups: vec![GroupSnapshot {
                devices_target: devices,
                ..GroupSnapshot::default()
            }],
            cpu: CpuSampler::new(),
            timeline: Vec::new(),
            devices_left: 0,
            cut_downs: Vec::new(),
        };
        (tx, agg)
    }

    /// Say which group each device belongs to and how many observers expect it, so that
    /// snapshots carry per-group figures and the deliveries expected so far.
    pub fn with_layout(mut self, device_group: Vec<u32>, watchers: Vec<u32>) -> Self {
        let groups = device_group
            .iter()
            .map(|g| *g as usize + 1)
            .max()
            .unwrap_or(1);
        self.groups = vec![GroupSnapshot::default(); groups];
        for g in &device_group {
            self.groups[*g as usize].devices_target += 1;
        }
        self.recent = VecDeque::from([(Duration::ZERO, 0, 0, vec![0; self.groups.len()])]);
        self.device_group = device_group;
        self.watchers = watchers;
        self
    }

    fn apply(&mut self, flush: Flush) {
        match flush {
            Flush::Device(d) => {
                let pos = d.device as usize;
                let group = self.device_group.get(pos).map_or(0, |g| *g as usize);
                let watchers = u64::from(self.watchers.get(pos).copied().unwrap_or(0));
                if let Some(slot) = self.sent.get_mut(pos) {
                    if d.sent > *slot {
                        let more = d.sent - *slot;
                        self.sent_total += more;
                        self.expected += more * watchers;
                        if let Some(g) = self.groups.get_mut(group) {
                            g.sent += more;
                        }
                        *slot = d.sent;
                    }
                }
                if let Some(g) = self.groups.get_mut(group) {
                    g.late_sends += d.late_sends;
                    count_connection(&mut g.devices_connected, d.connected);
                }
                self.totals.late_sends += d.late_sends;
                for (sum, n) in self.totals.late_by.iter_mut().zip(d.late_by) {
                    *sum += u64::from(n);
                }
                self.totals.max_lag_us = self.totals.max_lag_us.max(d.max_lag_us);
                for us in d.ack_us {
                    self.interval_ack.record_us(u64::from(us));
                }
                if let Some(us) = d.connect_us {
                    self.interval_connect.record_us(us);
                }
                self.devices_left += u32::from(d.left);
                self.cut_downs
                    .extend(d.downs.iter().map(|d| crate::timeline::CutDown {
                        group,
                        at: d.at,
                        down: d.back_after,
                        planned: d.planned,
                    }));
                for (i, n) in d.phase_sent.iter().enumerate().filter(|(_, n)| **n > 0) {
                    let p = self.totals.phase(i);
                    p.sent += n;
                    p.expected += n * watchers;
                }
            }
            Flush::Observer(o) => {
                self.interval_intended.add(&o.from_intended);
                self.interval_send.add(&o.from_send);
                self.totals.on_time.add(&o.on_time);
                self.delivered += o.delivered;
                self.duplicates += o.duplicates;
                self.reordered += o.reordered;
                self.unexpected += o.unexpected;
                count_connection(&mut self.observers_connected, o.connected);
                for (i, f) in o.phases.iter().enumerate() {
                    let p = self.totals.phase(i);
                    p.delivered += f.delivered;
                    p.from_intended.add(&f.from_intended);
                }
            }
            Flush::Error { kind, detail } => {
                self.totals.errors.entry(kind).or_default().record(detail);
            }
        }
    }

    /// Take in everything flushed so far and produce the snapshot for `elapsed`.
    pub fn tick(&mut self, elapsed: Duration, stage: Stage) -> &Snapshot {
        while let Ok(flush) = self.rx.try_recv() {
            self.apply(flush);
        }
        self.totals.from_intended.add(&self.interval_intended);
        self.totals.from_send.add(&self.interval_send);
        self.latency_buckets[0].add(&self.interval_intended);
        self.latency_buckets[1].add(&self.interval_send);
        self.totals.ack.add(&self.interval_ack);
        self.totals.connect.add(&self.interval_connect);
        self.log_interval(elapsed);
        let rates = self.rates(elapsed);
        let snapshot = self.snapshot(elapsed, stage, &rates);
        let errors_by = crate::timeline::connection_errors(&snapshot.errors);
        self.timeline.push(crate::timeline::Point {
            elapsed,
            devices_connected: snapshot.devices_connected,
            devices_left: self.devices_left,
            connects: self.interval_connect.count(),
            connection_errors: errors_by.iter().sum(),
            connection_errors_by: errors_by,
            sent: self.sent_total,
            delivered: self.delivered,
        });
        self.totals.cpu = self.cpu.average();
        self.interval_intended.reset();
        self.interval_send.reset();
        self.interval_ack.reset();
        self.interval_connect.reset();
        self.history.push_back((elapsed, self.sent.clone()));
        while self
            .history
            .get(1)
            .is_some_and(|(t, _)| elapsed.saturating_sub(*t) >= self.keep_history)
        {
            self.history.pop_front();
        }
        self.last = snapshot;
        &self.last
    }

    /// Rates over the last [`RATE_WINDOW`]: publishes, deliveries and each group's publishes.
    fn rates(&mut self, elapsed: Duration) -> Rates {
        let group_sent: Vec<u64> = self.groups.iter().map(|g| g.sent).collect();
        self.recent
            .push_back((elapsed, self.sent_total, self.delivered, group_sent));
        while self
            .recent
            .get(1)
            .is_some_and(|(t, ..)| elapsed.saturating_sub(*t) >= RATE_WINDOW)
        {
            self.recent.pop_front();
        }
        // The window always holds an older entry: it starts with one at zero and only drops
        // its front while a newer one is at least a window old.
        let (t0, sent_before, delivered_before, groups_before) =
            self.recent.front().cloned().unwrap_or_default();
        let dt = elapsed.saturating_sub(t0).as_secs_f64();
        let rate = |now: u64, before: u64| {
            if dt > 0.0 {
                now.saturating_sub(before) as f64 / dt
            } else {
                0.0
            }
        };
        Rates {
            publish: rate(self.sent_total, sent_before),
            deliver: rate(self.delivered, delivered_before),
            groups: (self.groups.iter().enumerate())
                .map(|(i, g)| rate(g.sent, groups_before.get(i).copied().unwrap_or(0)))
                .collect(),
        }
    }

    fn snapshot(&mut self, elapsed: Duration, stage: Stage, rates: &Rates) -> Snapshot {
        Snapshot {
            elapsed,
            stage,
            devices_target: self.last.devices_target,
            devices_connected: self.groups.iter().map(|g| g.devices_connected).sum(),
            observers_target: self.last.observers_target,
            observers_connected: self.observers_connected,
            sent: self.sent_total,
            delivered: self.delivered,
            duplicates: self.duplicates,
            reordered: self.reordered,
            unexpected: self.unexpected,
            publish_rate: rates.publish,
            deliver_rate: rates.deliver,
            interval_from_intended: self.interval_intended.summary(),
            interval_from_send: self.interval_send.summary(),
            total_from_intended: self.totals.from_intended.summary(),
            late_sends: self.totals.late_sends,
            max_lag_us: self.totals.max_lag_us,
            errors: self.totals.errors.clone(),
            expected: self.expected,
            groups: (self.groups.iter().zip(&rates.groups))
                .map(|(g, rate)| GroupSnapshot {
                    publish_rate: *rate,
                    ..g.clone()
                })
                .collect(),
            distribution: if self.totals.from_intended.count() == 0 {
                Vec::new()
            } else {
                LADDER
                    .iter()
                    .map(|q| (*q, self.totals.from_intended.quantile_us(*q)))
                    .collect()
            },
            cpu: self.cpu.sample_smoothed(),
            load_phase: None,
            ramp_at: None,
            latency_buckets: self.latency_buckets,
            phases: (self.totals.phases.iter())
                .map(|p| PhaseFigures {
                    sent: p.sent,
                    expected: p.expected,
                    delivered: p.delivered,
                    from_intended: p.from_intended.summary(),
                })
                .collect(),
        }
    }

    /// Append this tick's four distributions to the interval log. An encoding failure is
    /// counted as an error of kind "hlog" (the totals are unaffected).
    fn log_interval(&mut self, elapsed: Duration) {
        let start = self.last_tick;
        let length = elapsed.saturating_sub(start);
        self.last_tick = elapsed;
        for (metric, h) in [
            (Distribution::FromIntended, &self.interval_intended),
            (Distribution::FromSend, &self.interval_send),
            (Distribution::Puback, &self.interval_ack),
            (Distribution::Connect, &self.interval_connect),
        ] {
            if let Err(e) = self.log.push(metric, start, length, h) {
                self.totals
                    .errors
                    .entry(crate::ErrorKind::Hlog)
                    .or_default()
                    .record(e.to_string());
            }
        }
    }

    /// Every connection a fault cut: its group, when (from the ramp start) and how long it
    /// was down.
    pub fn take_cut_downs(&mut self) -> Vec<crate::timeline::CutDown> {
        std::mem::take(&mut self.cut_downs)
    }

    /// Every tick so far, from the run clock's start.
    pub fn take_timeline(&mut self) -> Vec<crate::timeline::Point> {
        std::mem::take(&mut self.timeline)
    }

    /// The interval log so far (one interval per tick and distribution); leaves an empty one.
    pub fn take_interval_log(&mut self) -> IntervalLog {
        std::mem::take(&mut self.log)
    }

    /// Sent counts per device as they stood at `at` (the newest tick at or before it); zeros if
    /// no tick is that old.
    pub fn sent_at(&self, at: Duration) -> Vec<u64> {
        self.history
            .iter()
            .rev()
            .find(|(t, _)| *t <= at)
            .map_or_else(|| vec![0; self.sent.len()], |(_, s)| s.clone())
    }

    /// Final sent counts per device.
    pub fn sent(&self) -> &[u64] {
        &self.sent
    }

    pub fn totals(&self) -> &RunTotals {
        &self.totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_merges_flushes_into_rates_and_latency() {
        let (tx, mut agg) = Aggregator::new(2, 1, Duration::from_secs(5));
        let _ = tx.send(Flush::Device(DeviceFlush {
            device: 0,
            sent: 10,
            connected: Some(true),
            ack_us: vec![100, 200],
            ..Default::default()
        }));
        let mut from_intended = LatencyHistogram::new();
        from_intended.record_us(1_000);
        let _ = tx.send(Flush::Observer(ObserverFlush {
            from_intended,
            delivered: 10,
            ..Default::default()
        }));
        let s = agg.tick(Duration::from_secs(2), Stage::Running);
        assert_eq!((s.sent, s.delivered, s.devices_connected), (10, 10, 1));
        assert!((s.publish_rate - 5.0).abs() < 1e-9);
        assert_eq!(s.interval_from_intended.count, 1);
        assert_eq!(agg.totals().ack.count(), 2);
        // A later tick with no traffic reports zero rates but keeps totals.
        let s = agg.tick(Duration::from_secs(3), Stage::Running);
        assert_eq!(
            (s.sent, s.publish_rate, s.interval_from_intended.count),
            (10, 0.0, 0)
        );
        assert_eq!(s.total_from_intended.count, 1);
        // Each tick wrote its four distributions to the interval log, and they sum to the
        // totals.
        let mut file = Vec::new();
        agg.take_interval_log()
            .write_to(&mut file, std::time::SystemTime::UNIX_EPOCH, "test")
            .expect("hlog");
        let intervals = crate::hlog::read(&file).expect("read");
        assert_eq!(intervals.len(), 8);
        assert_eq!(intervals[4].start, Duration::from_secs(2));
        assert_eq!(intervals[4].length, Duration::from_secs(1));
        let totals = crate::hlog::totals(&intervals);
        assert_eq!(totals[&Distribution::FromIntended].count(), 1);
        assert_eq!(totals[&Distribution::Puback].hdr(), agg.totals().ack.hdr());
    }

    #[test]
    fn sent_history_answers_what_was_sent_a_drain_timeout_ago() {
        let (tx, mut agg) = Aggregator::new(1, 1, Duration::from_secs(2));
        for t in 1..=5u64 {
            let _ = tx.send(Flush::Device(DeviceFlush {
                device: 0,
                sent: t * 10,
                ..Default::default()
            }));
            agg.tick(Duration::from_secs(t), Stage::Running);
        }
        assert_eq!(agg.sent_at(Duration::from_secs(3)), vec![30]);
        assert_eq!(agg.sent_at(Duration::from_millis(3500)), vec![30]);
        assert_eq!(agg.sent(), &[50]);
    }
}
