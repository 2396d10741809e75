//! A comparison as text: a table for the terminal and CI logs, Markdown for job summaries and
//! pull-request comments.

use std::fmt::Write;

use super::{Comparison, NotGated, Row, Unit};
use crate::report::Calibration;
use fleetbench_metrics::fmt::fmt_us;

fn value(unit: Unit, v: f64) -> String {
    match unit {
        Unit::Count => format!("{v:.0}"),
        Unit::Micros => fmt_us(v.max(0.0) as u64),
        Unit::PerSecond => format!("{v:.1}/s"),
        Unit::Ratio => format!("{v:.6}"),
    }
}

fn with_spread(unit: Unit, v: f64, spread: Option<f64>) -> String {
    match spread {
        // Half the range: "median ± half the distance between the extremes".
        Some(s) => format!("{} ±{:.0}%", value(unit, v), s * 50.0),
        None => value(unit, v),
    }
}

fn pct(c: Option<f64>) -> Option<String> {
    c.map(|c| format!("{:+.1}%", c * 100.0))
}

/// A row as the text that both renderings show: metric, baseline, now, change, adjusted
/// change, verdict.
fn cells(r: &Row) -> [String; 6] {
    let change = pct(r.change).unwrap_or_else(|| {
        if r.now == r.baseline {
            "=".to_string()
        } else {
            "new".to_string()
        }
    });
    let verdict = match (r.not_gated, r.ok) {
        (Some(NotGated::Skipped), _) => "not gated",
        (Some(NotGated::TooFewValues { per_run: 0, .. }), _) => "no values",
        (Some(NotGated::TooFewValues { .. }), _) => "too few",
        (None, true) => "ok",
        (None, false) => "REGRESSED",
    };
    [
        r.metric.clone(),
        with_spread(r.unit, r.baseline, r.baseline_spread),
        with_spread(r.unit, r.now, r.now_spread),
        change,
        pct(r.adjusted_change).unwrap_or_else(|| "-".to_string()),
        verdict.to_string(),
    ]
}

/// One line on what was compared: runs and machine units on each side.
fn context(c: &Comparison) -> String {
    let unit = |cal: Option<Calibration>| {
        cal.map_or("uncalibrated".to_string(), |c| {
            format!(
                "unit {:.2}us/rt, {:.0} rt/s",
                c.core_round_trip_us, c.round_trips_per_s
            )
        })
    };
    format!(
        "baseline {} run(s), {}; now {} run(s), {}",
        c.baseline_runs,
        unit(c.baseline_calibration),
        c.now_runs,
        unit(c.now_calibration)
    )
}

/// A table for the terminal (fits 100 columns).
pub fn render_text(c: &Comparison) -> String {
    let mut out = format!(
        "{}: {}\n  {}\n",
        c.scenario,
        if c.regressed {
            "REGRESSION"
        } else {
            "no regression"
        },
        context(c)
    );
    let _ = writeln!(
        out,
        "  {:<18} {:>17} {:>17} {:>8} {:>9}  verdict",
        "metric", "baseline", "now", "change", "adjusted"
    );
    for [metric, baseline, now, change, adjusted, verdict] in c.rows.iter().map(cells) {
        let _ = writeln!(
            out,
            "  {metric:<18} {baseline:>17} {now:>17} {change:>8} {adjusted:>9}  {verdict}"
        );
    }
    out
}

/// The same as Markdown, for CI job summaries and pull-request comments.
pub fn render_markdown(c: &Comparison) -> String {
    let mut out = format!(
        "### {} — {}\n\n{}\n\n| metric | baseline | now | change | adjusted | verdict |\n\
         |---|---:|---:|---:|---:|---|\n",
        c.scenario,
        if c.regressed {
            "❌ regression"
        } else {
            "✅ no regression"
        },
        context(c)
    );
    for row in c.rows.iter().map(cells) {
        let _ = writeln!(out, "| {} |", row.join(" | "));
    }
    out
}
