//! The result of a capacity search (`fleetbench search`): the answer and the bracket it was
//! found in, the knee of the latency curve, and every step with its own full report. A
//! versioned wire format (`fleetbench schema search`), as the run's report is.

use serde::{Deserialize, Serialize};

use crate::Report;

pub const SEARCH_SCHEMA_VERSION: u32 = 1;

/// What held the answer where it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitedBy {
    /// A step failed on the broker's figures with the generator keeping its schedule.
    Broker,
    /// The lowest failure was the generator's: it fell behind or ran out of cores.
    Generator,
    /// Every step up to `to` held: the limit lies above the range.
    Range,
    /// Even `from` failed: the limit lies below the range.
    BelowRange,
    /// The budget ran out (or the search was stopped) before the bracket was narrow.
    Unfinished,
}

/// A capacity search's result.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchReport {
    pub schema_version: u32,
    pub scenario: String,
    /// The broker searched, as runs name it.
    pub broker: String,
    /// rate, devices or subscribers.
    pub knob: String,
    /// What the knob's values count.
    pub unit: String,
    pub from: f64,
    pub to: f64,
    pub tolerance: f64,
    /// The expectations every step was judged by, as `name <= limit`.
    pub targets: Vec<String>,
    /// The highest value that held (confirmed by a repeat unless `confirmed` is false).
    pub answer: Option<f64>,
    pub confirmed: bool,
    /// The highest pass and the lowest failure (null: none).
    pub bracket: [Option<f64>; 2],
    /// Where p99 from intended starts to climb steeply (Kneedle over the passing and failing
    /// steps), when there are enough steps and it lies below the answer.
    pub knee: Option<f64>,
    pub limited_by: LimitedBy,
    /// What the result means and what to do, in words.
    pub conclusion: String,
    pub duration_s: f64,
    pub interrupted: bool,
    pub steps: Vec<SearchStep>,
}

/// One step of a search.
#[derive(Debug, Clone, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SearchStep {
    pub value: f64,
    /// climb, bisect or confirm.
    pub purpose: String,
    pub devices: u64,
    pub subscribers: u64,
    /// Messages per second the schedule offered over the judged window, and delivered.
    pub offered_per_s: f64,
    /// Deliveries per second the window's sends called for (sends times their subscribers).
    pub due_per_s: f64,
    pub delivered_per_s: f64,
    pub lost: u64,
    /// Messages awaiting delivery at the end of the judged window less at its start.
    pub in_flight_growth: i64,
    pub from_intended_us: [u64; 3],
    pub from_send_us: [u64; 3],
    pub generator_cores: f64,
    pub late_share: f64,
    pub max_lag_us: u64,
    /// The broker's cores: the embedded broker's threads, or the process of `--broker-pid`.
    pub broker_cores: Option<f64>,
    pub passed: bool,
    pub generator_limited: bool,
    /// Why it failed (empty when it passed).
    pub reasons: Vec<String>,
    /// Ended before its time because it was clearly past the limit.
    pub ended_early: bool,
    pub report: Box<Report>,
}

impl SearchReport {
    pub fn json_schema() -> serde_json::Value {
        serde_json::to_value(schemars::schema_for!(SearchReport)).unwrap_or_default()
    }

    /// The steps in rising order of value, one per value (the last run of a repeated value).
    pub fn curve(&self) -> Vec<&SearchStep> {
        let mut by: Vec<&SearchStep> = Vec::new();
        for s in &self.steps {
            by.retain(|o| o.value != s.value);
            by.push(s);
        }
        by.sort_by(|a, b| a.value.total_cmp(&b.value));
        by
    }
}

/// The knee of a rising curve by Kneedle (Satopää et al., 2011): both axes scaled to 0..1, the
/// knee is the point furthest below the straight line from the first point to the last, for a
/// curve that rises slowly and then steeply. None with fewer than three points or a curve that
/// does not bend upwards.
pub fn kneedle(points: &[(f64, f64)]) -> Option<f64> {
    if points.len() < 3 {
        return None;
    }
    let (x0, x1) = (points[0].0, points[points.len() - 1].0);
    let ys = points.iter().map(|p| p.1);
    let (y0, y1) = (
        ys.clone().fold(f64::INFINITY, f64::min),
        ys.fold(f64::NEG_INFINITY, f64::max),
    );
    if x1 <= x0 || y1 <= y0 {
        return None;
    }
    let scaled = points
        .iter()
        .map(|(x, y)| ((x - x0) / (x1 - x0), (y - y0) / (y1 - y0), *x));
    let (best, gap) =
        scaled
            .map(|(x, y, raw)| (raw, x - y))
            .fold(
                (None, 0.0),
                |(b, g), (raw, d)| {
                    if d > g {
                        (Some(raw), d)
                    } else {
                        (b, g)
                    }
                },
            );
    // A curve that is straight within a tenth of its span has no knee to speak of.
    best.filter(|_| gap > 0.1)
}

/// The search as a text table, for the terminal and the CI log.
pub fn render(r: &SearchReport) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "search {} on {}: {} ({}) from {} to {}, within {:.0}%; targets: {}",
        r.scenario,
        r.broker,
        r.knob,
        r.unit,
        num(r.from),
        num(r.to),
        r.tolerance * 100.0,
        r.targets.join(", ")
    );
    let _ = writeln!(
        out,
        "{:>3} {:>9} {:<7} {:>7} {:>10} {:>10} {:>6} {:>8} {:>22} {:>22} {:>5} {:>6} {:>6}  verdict",
        "#", "value", "step", "devices", "offered/s", "deliver/s", "lost", "backlog+",
        "p50/p99/p99.9 intended", "p50/p99/p99.9 send", "gen", "late", "broker"
    );
    for (i, s) in r.steps.iter().enumerate() {
        let verdict = if s.passed {
            "pass".to_string()
        } else {
            let mark = if s.generator_limited {
                " [generator]"
            } else {
                ""
            };
            format!("FAIL{mark} {}", s.reasons.join("; "))
        };
        let _ = writeln!(
            out,
            "{:>3} {:>9} {:<7} {:>7} {:>10.0} {:>10.0} {:>6} {:>8} {:>22} {:>22} {:>5.2} {:>5.1}% {:>6}  {verdict}",
            i + 1,
            num(s.value),
            s.purpose,
            s.devices,
            s.offered_per_s,
            s.delivered_per_s,
            s.lost,
            s.in_flight_growth,
            triple(s.from_intended_us),
            triple(s.from_send_us),
            s.generator_cores,
            s.late_share * 100.0,
            s.broker_cores.map_or("-".into(), |c| format!("{c:.2}")),
        );
    }
    let _ = writeln!(out, "{}", r.conclusion);
    out
}

fn triple(us: [u64; 3]) -> String {
    let [a, b, c] = us.map(fleetbench_metrics::fmt::fmt_us);
    format!("{a}/{b}/{c}")
}

/// A knob value as people write it: whole numbers plainly, rates to three figures.
pub fn num(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.3}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knee_is_where_latency_turns_up() {
        // Flat at 1 ms until 400, then climbing steeply.
        let pts = [
            (100.0, 1.0),
            (200.0, 1.1),
            (300.0, 1.2),
            (400.0, 1.5),
            (500.0, 6.0),
            (600.0, 30.0),
        ];
        assert_eq!(kneedle(&pts), Some(500.0));
        let straight = [(1.0, 1.0), (2.0, 2.0), (3.0, 3.0), (4.0, 4.0)];
        assert_eq!(kneedle(&straight), None, "a straight line has no knee");
        assert_eq!(kneedle(&pts[..2]), None, "two points say nothing");
    }
}
