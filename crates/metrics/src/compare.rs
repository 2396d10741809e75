//! Comparing two reports of the same scenario: what got worse, by how much, and whether that is
//! a regression.
//!
//! Counts that must not grow (lost, duplicates, errors) compare exactly. Latency and throughput
//! compare as relative changes within tolerances, with an absolute floor below which a change
//! is noise (100 us to 130 us is +30% and means nothing).

use std::fmt::Write;

use serde::{Deserialize, Serialize};

use crate::report::Report;
use crate::summary::fmt_us;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// A count that must not grow at all.
    Exact,
    LowerIsBetter,
    HigherIsBetter,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    Micros,
    PerSecond,
    Ratio,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    pub metric: String,
    pub baseline: f64,
    pub now: f64,
    /// `now / baseline - 1`, when the baseline is not zero.
    pub change: Option<f64>,
    /// The relative change allowed in the worse direction (0 for exact figures).
    pub tolerance: f64,
    pub direction: Direction,
    pub unit: Unit,
    pub ok: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub scenario: String,
    pub rows: Vec<Row>,
    /// True when any row is not ok.
    pub regressed: bool,
}

/// How much worse a figure may get before it counts as a regression.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerances {
    /// Relative increase allowed for latency percentiles (0.25 = +25%).
    pub latency: f64,
    /// Latency changes smaller than this many microseconds are never regressions.
    pub latency_floor_us: f64,
    /// Relative decrease allowed for throughput (0.10 = -10%).
    pub throughput: f64,
}

impl Default for Tolerances {
    fn default() -> Self {
        Tolerances {
            latency: 0.25,
            latency_floor_us: 250.0,
            throughput: 0.10,
        }
    }
}

fn row(
    metric: &str,
    baseline: f64,
    now: f64,
    direction: Direction,
    unit: Unit,
    tol: &Tolerances,
) -> Row {
    let change = (baseline != 0.0).then(|| now / baseline - 1.0);
    let (tolerance, ok) = match direction {
        Direction::Exact => (0.0, now <= baseline),
        Direction::LowerIsBetter => {
            let ok = now <= baseline * (1.0 + tol.latency) || now - baseline < tol.latency_floor_us;
            (tol.latency, ok)
        }
        Direction::HigherIsBetter => (tol.throughput, now >= baseline * (1.0 - tol.throughput)),
    };
    Row {
        metric: metric.to_string(),
        baseline,
        now,
        change,
        tolerance,
        direction,
        unit,
        ok,
    }
}

pub fn compare(old: &Report, new: &Report, tol: &Tolerances) -> Comparison {
    use Direction::*;
    let errors = |r: &Report| r.errors.values().map(|e| e.count).sum::<u64>() as f64;
    let delivered_ratio = |r: &Report| {
        if r.totals.expected == 0 {
            0.0
        } else {
            r.totals.delivered as f64 / r.totals.expected as f64
        }
    };
    let (o, n) = (&old.latency, &new.latency);
    let latency = |name: &str, pick: fn(&crate::report::Latency) -> u64| {
        row(
            name,
            pick(o) as f64,
            pick(n) as f64,
            LowerIsBetter,
            Unit::Micros,
            tol,
        )
    };
    let rows = vec![
        row(
            "lost",
            old.totals.lost as f64,
            new.totals.lost as f64,
            Exact,
            Unit::Count,
            tol,
        ),
        row(
            "lost at QoS 1/2",
            old.lost_at_guaranteed_qos() as f64,
            new.lost_at_guaranteed_qos() as f64,
            Exact,
            Unit::Count,
            tol,
        ),
        row(
            "duplicates",
            old.totals.duplicates as f64,
            new.totals.duplicates as f64,
            Exact,
            Unit::Count,
            tol,
        ),
        row("errors", errors(old), errors(new), Exact, Unit::Count, tol),
        row(
            "delivered ratio",
            delivered_ratio(old),
            delivered_ratio(new),
            HigherIsBetter,
            Unit::Ratio,
            &Tolerances {
                throughput: 0.0,
                ..*tol
            },
        ),
        latency("p50 from intended", |l| l.from_intended.p50_us),
        latency("p99 from intended", |l| l.from_intended.p99_us),
        latency("p99 from send", |l| l.from_send.p99_us),
        latency("p99 puback", |l| l.puback.p99_us),
        row(
            "deliveries/s",
            old.throughput.deliver_per_s,
            new.throughput.deliver_per_s,
            HigherIsBetter,
            Unit::PerSecond,
            tol,
        ),
    ];
    let regressed = rows.iter().any(|r| !r.ok);
    Comparison {
        scenario: new
            .scenario
            .get("name")
            .and_then(|n| n.as_str())
            .unwrap_or("?")
            .to_string(),
        rows,
        regressed,
    }
}

fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Count => format!("{v:.0}"),
        Unit::Micros => fmt_us(v.max(0.0) as u64),
        Unit::PerSecond => format!("{v:.1}/s"),
        Unit::Ratio => format!("{v:.6}"),
    }
}

fn change(r: &Row) -> String {
    match r.change {
        Some(c) => format!("{:+.1}%", c * 100.0),
        None if r.now == r.baseline => "=".to_string(),
        None => "new".to_string(),
    }
}

/// A row as the text that both renderings show: metric, baseline, now, change, verdict.
fn cells(r: &Row) -> [String; 5] {
    [
        r.metric.clone(),
        value(r.unit, r.baseline),
        value(r.unit, r.now),
        change(r),
        if r.ok { "ok" } else { "REGRESSED" }.to_string(),
    ]
}

/// A table for the terminal (fits 100 columns).
pub fn render_text(c: &Comparison) -> String {
    let mut out = format!(
        "{}: {}\n",
        c.scenario,
        if c.regressed {
            "REGRESSION"
        } else {
            "no regression"
        }
    );
    let _ = writeln!(
        out,
        "  {:<20} {:>14} {:>14} {:>9}  verdict",
        "metric", "baseline", "now", "change"
    );
    for [metric, baseline, now, change, verdict] in c.rows.iter().map(cells) {
        let _ = writeln!(
            out,
            "  {metric:<20} {baseline:>14} {now:>14} {change:>9}  {verdict}"
        );
    }
    out
}

/// The same as Markdown, for CI job summaries and pull-request comments.
pub fn render_markdown(c: &Comparison) -> String {
    let mut out =
        format!(
        "### {} — {}\n\n| metric | baseline | now | change | verdict |\n|---|---:|---:|---:|---|\n",
        c.scenario,
        if c.regressed { "❌ regression" } else { "✅ no regression" }
    );
    for row in c.rows.iter().map(cells) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::env::Environment;
    use crate::hist::LatencySummary;
    use crate::ledger::StreamOutcome;
    use crate::report::*;

    fn latency(p50: u64, p99: u64) -> LatencySummary {
        LatencySummary {
            count: 1_000,
            p50_us: p50,
            p90_us: p99,
            p99_us: p99,
            p999_us: p99,
            max_us: p99,
            mean_us: p50 as f64,
        }
    }

    fn report(p99_us: u64, lost: u64, deliver_per_s: f64) -> Report {
        let outcome = StreamOutcome {
            expected: 10_000,
            delivered: 10_000 - lost,
            lost,
            ..StreamOutcome::default()
        };
        Report {
            schema_version: SCHEMA_VERSION,
            scenario: serde_json::json!({ "name": "sensors" }),
            environment: Environment::detect("test", "debug", "0"),
            run: RunInfo {
                started_unix_s: 0,
                elapsed_s: 10.0,
                publish_window_s: 10.0,
                drain_s: 0.0,
                warmup_s: 0.0,
                interrupted: false,
                shard: "0/1".into(),
                broker: "embedded".into(),
                tcp_nodelay: Some(true),
            },
            totals: Totals {
                sent: 10_000,
                expected: 10_000,
                delivered: 10_000 - lost,
                lost,
                ..Totals::default()
            },
            by_qos: vec![QosTotals {
                qos: 1,
                streams: 10,
                outcome,
            }],
            throughput: Throughput {
                publish_per_s: deliver_per_s,
                deliver_per_s,
            },
            latency: Latency {
                from_intended: latency(400, p99_us),
                from_send: latency(300, p99_us),
                puback: latency(200, 500),
                connect: latency(2_000, 5_000),
            },
            generator: Generator::default(),
            timing: RunTiming::default(),
            resources: Resources::default(),
            errors: BTreeMap::new(),
            findings: Vec::new(),
            expectations: Vec::new(),
            verdict: Verdict::Pass,
            calibration: None,
            histograms: None,
            samples: Vec::new(),
            merged: None,
        }
    }

    fn failed(c: &Comparison) -> Vec<&str> {
        c.rows
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.metric.as_str())
            .collect()
    }

    #[test]
    fn an_unchanged_run_and_small_noise_pass() {
        let base = report(2_000, 0, 1_000.0);
        let tol = Tolerances::default();
        assert!(!compare(&base, &base, &tol).regressed);
        // +10% latency and -5% throughput are within tolerance.
        let c = compare(&base, &report(2_200, 0, 950.0), &tol);
        assert!(!c.regressed, "{:?}", failed(&c));
        // A large relative change that is tiny in absolute terms is noise.
        let c = compare(&report(100, 0, 1_000.0), &report(200, 0, 1_000.0), &tol);
        assert!(!c.regressed, "{:?}", failed(&c));
    }

    #[test]
    fn slower_lossier_or_lower_throughput_runs_regress() {
        let base = report(2_000, 0, 1_000.0);
        let tol = Tolerances::default();
        let slow = compare(&base, &report(4_000, 0, 1_000.0), &tol);
        assert_eq!(failed(&slow), ["p99 from intended", "p99 from send"]);
        let lossy = compare(&base, &report(2_000, 1, 1_000.0), &tol);
        assert!(failed(&lossy).contains(&"lost"));
        assert!(failed(&lossy).contains(&"lost at QoS 1/2"));
        assert!(failed(&lossy).contains(&"delivered ratio"));
        let starved = compare(&base, &report(2_000, 0, 800.0), &tol);
        assert_eq!(failed(&starved), ["deliveries/s"]);
    }

    #[test]
    fn renders_as_text_and_markdown() {
        let c = compare(
            &report(2_000, 0, 1_000.0),
            &report(4_000, 0, 1_000.0),
            &Tolerances::default(),
        );
        let text = render_text(&c);
        assert!(text.starts_with("sensors: REGRESSION"), "{text}");
        assert!(
            text.contains("+100.0%") && text.contains("REGRESSED"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        let md = render_markdown(&c);
        assert!(
            md.contains("| p99 from intended | 2.00ms | 4.00ms | +100.0% | REGRESSED |"),
            "{md}"
        );
        let json = serde_json::to_value(&c).expect("json");
        assert_eq!(json["regressed"], true);
    }
}
