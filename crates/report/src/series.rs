//! The run over time, for pictures: counts and latency percentiles per point, in columns (one
//! array per figure, as charting libraries take them), downsampled so that a long run's report
//! stays small. Each point stands for a span of ticks: its counts are those at the span's end,
//! its devices connected the fewest in it (a dip stays visible), its percentiles those of the
//! span's deliveries (the ticks' histograms added, so they are exact for the span). The
//! interval log keeps every tick.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use fleetbench_metrics::hist::LatencyHistogram;
use fleetbench_metrics::hlog::{Distribution, LoggedInterval};
use fleetbench_metrics::timeline::Point;

/// At most this many points: a one-hour run at 250 ms ticks is merged 20 ticks to a point.
pub const MAX_POINTS: usize = 720;

/// Latency percentiles per point, in microseconds (0 where the span had no deliveries).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct PercentileSeries {
    pub count: Vec<u64>,
    pub p50_us: Vec<u64>,
    pub p99_us: Vec<u64>,
    pub p999_us: Vec<u64>,
    pub max_us: Vec<u64>,
}

/// The run over time; every array has one value per point.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Series {
    /// When each point's span ended, in seconds from the start of the connect ramp.
    pub t_s: Vec<f64>,
    /// Messages sent and delivered (first arrivals) so far.
    pub sent: Vec<u64>,
    pub delivered: Vec<u64>,
    /// The fewest devices connected during the span.
    pub devices_connected: Vec<u32>,
    /// Connection errors so far.
    pub connection_errors: Vec<u64>,
    /// Latency of the span's deliveries, from the time each message was due and from the
    /// time it was sent.
    pub from_intended: PercentileSeries,
    pub from_send: PercentileSeries,
}

impl Series {
    pub fn is_empty(&self) -> bool {
        self.t_s.is_empty()
    }

    /// The series of a run: `timeline` from the ramp start, `intervals` the interval log's
    /// (on the run clock, whose reading at the ramp start was `ramp_offset`).
    pub fn build(
        timeline: &[Point],
        intervals: &[LoggedInterval],
        ramp_offset: Duration,
    ) -> Series {
        let per = timeline.len().div_ceil(MAX_POINTS).max(1);
        let mut s = Series::default();
        let mut from = Duration::ZERO;
        for span in timeline.chunks(per) {
            let Some(last) = span.last() else { continue };
            s.t_s.push(last.elapsed.as_secs_f64());
            s.sent.push(last.sent);
            s.delivered.push(last.delivered);
            s.connection_errors.push(last.connection_errors);
            let fewest = span.iter().map(|p| p.devices_connected).min();
            s.devices_connected.push(fewest.unwrap_or(0));
            let (start, end) = (ramp_offset + from, ramp_offset + last.elapsed);
            for (metric, out) in [
                (Distribution::FromIntended, &mut s.from_intended),
                (Distribution::FromSend, &mut s.from_send),
            ] {
                out.push(&span_histogram(intervals, metric, start, end));
            }
            from = last.elapsed;
        }
        s
    }

    /// The series of runs that ran side by side (shards on one common start): counts add up
    /// point by point (as far as every run has the point), percentiles are the worst run's (they
    /// do not add up; the merged histograms hold the exact whole-run figures).
    pub fn merge_concurrent(all: &[&Series]) -> Series {
        let Some(first) = all.first() else {
            return Series::default();
        };
        // Reports come from files: a short column reads as zeros, never out of bounds.
        let n = all.iter().map(|s| s.t_s.len()).min().unwrap_or(0);
        let at = |v: &[u64], i: usize| v.get(i).copied().unwrap_or(0);
        let each = |f: &dyn Fn(&Series) -> &Vec<u64>, add: bool| -> Vec<u64> {
            (0..n)
                .map(|i| {
                    let values = all.iter().map(|s| at(f(s), i));
                    if add {
                        values.sum()
                    } else {
                        values.max().unwrap_or(0)
                    }
                })
                .collect()
        };
        let worst = |f: &dyn Fn(&Series) -> &PercentileSeries| PercentileSeries {
            count: each(&|s| &f(s).count, true),
            p50_us: each(&|s| &f(s).p50_us, false),
            p99_us: each(&|s| &f(s).p99_us, false),
            p999_us: each(&|s| &f(s).p999_us, false),
            max_us: each(&|s| &f(s).max_us, false),
        };
        Series {
            t_s: first.t_s[..n].to_vec(),
            sent: each(&|s| &s.sent, true),
            delivered: each(&|s| &s.delivered, true),
            devices_connected: (0..n)
                .map(|i| {
                    (all.iter())
                        .map(|s| s.devices_connected.get(i).copied().unwrap_or(0))
                        .sum()
                })
                .collect(),
            connection_errors: each(&|s| &s.connection_errors, true),
            from_intended: worst(&|s| &s.from_intended),
            from_send: worst(&|s| &s.from_send),
        }
    }
}

impl PercentileSeries {
    fn push(&mut self, h: &LatencyHistogram) {
        let s = h.summary();
        self.count.push(s.count);
        self.p50_us.push(s.p50_us);
        self.p99_us.push(s.p99_us);
        self.p999_us.push(s.p999_us);
        self.max_us.push(s.max_us);
    }
}

/// The deliveries of `metric` in the ticks that ended in `(start, end]`.
fn span_histogram(
    intervals: &[LoggedInterval],
    metric: Distribution,
    start: Duration,
    end: Duration,
) -> LatencyHistogram {
    let mut h = LatencyHistogram::new();
    for i in intervals.iter().filter(|i| i.metric == Some(metric)) {
        let ended = i.start + i.length;
        if ended > start && ended <= end + TOLERANCE {
            h.add(&i.histogram());
        }
    }
    h
}

/// A tick's interval and its timeline point are stamped by two clock readings a moment apart.
const TOLERANCE: Duration = Duration::from_millis(5);

#[cfg(test)]
mod tests {
    use super::*;

    fn point(ms: u64, connected: u32, sent: u64) -> Point {
        Point {
            elapsed: Duration::from_millis(ms),
            devices_connected: connected,
            sent,
            delivered: sent,
            ..Point::default()
        }
    }

    fn interval(end_ms: u64, us: &[u64]) -> LoggedInterval {
        let mut h = LatencyHistogram::new();
        for u in us {
            h.record_us(*u);
        }
        LoggedInterval::new(
            Distribution::FromIntended,
            Duration::from_millis(end_ms - 250),
            Duration::from_millis(250),
            &h,
        )
    }

    #[test]
    fn each_point_holds_its_spans_deliveries_and_its_dip() {
        // Ramp at 1 s on the run clock; ticks every 250 ms.
        let timeline = [point(250, 10, 5), point(500, 4, 9), point(750, 10, 14)];
        let ramp = Duration::from_secs(1);
        let intervals = [
            interval(1_250, &[100, 200]),
            interval(1_500, &[300]),
            interval(1_750, &[5_000]),
        ];
        let s = Series::build(&timeline, &intervals, ramp);
        assert_eq!(s.t_s, vec![0.25, 0.5, 0.75]);
        assert_eq!(s.from_intended.count, vec![2, 1, 1]);
        assert!(s.from_intended.max_us[2] >= 4_990, "{:?}", s.from_intended);
        assert_eq!(s.devices_connected, vec![10, 4, 10]);
        assert!(s.from_send.count.iter().all(|c| *c == 0));
    }

    #[test]
    fn a_long_run_is_merged_into_spans_without_losing_counts_or_dips() {
        let n = MAX_POINTS * 3 + 1;
        let timeline: Vec<Point> = (1..=n as u64)
            .map(|i| point(i * 250, if i == 1_000 { 0 } else { 10 }, i))
            .collect();
        let intervals: Vec<LoggedInterval> =
            (1..=n as u64).map(|i| interval(i * 250, &[i])).collect();
        let s = Series::build(&timeline, &intervals, Duration::ZERO);
        assert!(s.t_s.len() <= MAX_POINTS, "{}", s.t_s.len());
        // The last point ends with the run; every delivery is in exactly one point.
        assert_eq!(s.sent.last(), Some(&(n as u64)));
        assert_eq!(s.from_intended.count.iter().sum::<u64>(), n as u64);
        // The device that dropped for one tick still shows.
        assert_eq!(s.devices_connected.iter().min(), Some(&0));
    }

    #[test]
    fn shards_add_up_and_a_short_column_from_a_file_does_not_panic() {
        let a = Series::build(&[point(250, 10, 5), point(500, 10, 9)], &[], Duration::ZERO);
        let mut b = a.clone();
        b.sent.pop();
        let m = Series::merge_concurrent(&[&a, &b]);
        assert_eq!(m.sent, vec![10, 9]);
        assert_eq!(m.devices_connected, vec![20, 20]);
    }
}
