//! What a report read from a file must hold before it is combined with others (merged or
//! compared): its counts add up, its histograms hold what its ledger delivered, and the reports
//! combined are what the combination says they are (one scenario, one build, each run once).
//! A report file can say anything; these checks keep a crafted or damaged one from passing.

use serde_json::Value;

use crate::report::{Report, Totals};

#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("nothing to merge")]
    Empty,
    #[error("report {index} is of scenario {found:?}, the first of {expected:?}; only reports of one scenario merge")]
    OtherScenario {
        index: usize,
        expected: String,
        found: String,
    },
    #[error("report {index} holds no histograms (written by an older fleetbench?): its latency cannot be merged exactly")]
    NoHistograms { index: usize },
    #[error("report {index}: {detail}")]
    Histogram { index: usize, detail: String },
    #[error("the shards do not make one whole run: {0}")]
    Shards(String),
    #[error("the reports are not repeats of one run: {0}")]
    Repeats(String),
    #[error("report {index} does not add up: {detail}")]
    Inconsistent { index: usize, detail: String },
    #[error("the reports' counts overflow when added: no real runs add up to that")]
    Overflow,
    #[error("{0} reports: one merge takes at most {max}", max = MAX_REPORTS)]
    TooMany(usize),
}

/// No figure of a real report comes near this (2^48: a million devices at one message a
/// second for nine years); with at most [`MAX_REPORTS`] reports, no sum of them overflows.
pub const MAX_FIGURE: u64 = 1 << 48;

/// The most reports one merge takes.
pub const MAX_REPORTS: usize = 1 << 15;

/// Check report `index`'s own figures: none beyond [`MAX_FIGURE`], every expected delivery
/// exactly one of delivered, lost or in flight (in total and per QoS, which add up to the
/// total), and its histograms hold as many latencies as it says it measured, no more than it
/// delivered.
pub fn check_report(index: usize, r: &Report) -> Result<(), MergeError> {
    let bad = |detail: String| Err(MergeError::Inconsistent { index, detail });
    let mut figures = serde_json::to_value(r).unwrap_or(Value::Null);
    if let Some(o) = figures.as_object_mut() {
        // The scenario is the user's (a seed may be any number), not a figure of the run.
        o.remove("scenario");
    }
    if let Some((path, v)) = too_large("", &figures) {
        return bad(format!("{path} is {v}, beyond any run"));
    }
    let t = &r.totals;
    let accounted = [t.delivered, t.lost, t.in_flight]
        .into_iter()
        .try_fold(0u64, u64::checked_add);
    if accounted != Some(t.expected) {
        return bad(format!(
            "delivered {} + lost {} + in flight {} is not the {} expected",
            t.delivered, t.lost, t.in_flight, t.expected
        ));
    }
    let mut by_qos = fleetbench_metrics::ledger::StreamOutcome::default();
    for q in &r.by_qos {
        let o = &q.outcome;
        if [o.delivered, o.lost, o.in_flight]
            .into_iter()
            .try_fold(0u64, u64::checked_add)
            != Some(o.expected)
        {
            return bad(format!("QoS {}: its counts do not add up", q.qos));
        }
        by_qos = by_qos
            .checked_add(o)
            .ok_or_else(|| MergeError::Inconsistent {
                index,
                detail: "its counts per QoS overflow".into(),
            })?;
    }
    if !r.by_qos.is_empty() && (by_qos.expected, by_qos.delivered) != (t.expected, t.delivered) {
        return bad(format!(
            "its counts per QoS ({} expected, {} delivered) are not its totals ({}, {})",
            by_qos.expected, by_qos.delivered, t.expected, t.delivered
        ));
    }
    check_histograms(index, r)
}

/// The first number under `v` beyond [`MAX_FIGURE`], with its path.
fn too_large(path: &str, v: &Value) -> Option<(String, f64)> {
    match v {
        Value::Number(n) => n
            .as_f64()
            .filter(|x| x.abs() > MAX_FIGURE as f64)
            .map(|x| (path.to_string(), x)),
        Value::Array(a) => {
            (a.iter().enumerate()).find_map(|(i, x)| too_large(&format!("{path}[{i}]"), x))
        }
        Value::Object(o) => (o.iter()).find_map(|(k, x)| {
            let at = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            too_large(&at, x)
        }),
        _ => None,
    }
}

/// The lossless histograms against the report's own figures.
fn check_histograms(index: usize, r: &Report) -> Result<(), MergeError> {
    let bad = |detail: String| Err(MergeError::Inconsistent { index, detail });
    let Some(h) = &r.histograms else {
        return Ok(());
    };
    let decoded = h.decode().map_err(|e| MergeError::Histogram {
        index,
        detail: e.to_string(),
    })?;
    let count = |d: fleetbench_metrics::hlog::Distribution| {
        (decoded.iter())
            .find(|(x, _)| *x == d)
            .map_or(0, |(_, h)| h.count())
    };
    use fleetbench_metrics::hlog::Distribution::{FromIntended, FromSend};
    let (intended, send) = (count(FromIntended), count(FromSend));
    if intended != r.latency.from_intended.count || send != r.latency.from_send.count {
        return bad(format!(
            "its histograms hold {intended} and {send} latencies, its summaries say {} and {}",
            r.latency.from_intended.count, r.latency.from_send.count
        ));
    }
    // One of each per measured first arrival (a message two members of a shared subscription
    // both received is measured at each, and counted once as a duplicate).
    let arrivals = r.totals.delivered.saturating_add(r.totals.duplicates);
    if intended > arrivals || send != intended {
        return bad(format!(
            "its histograms hold {intended} latencies from intended and {send} from send, \
             beside {} deliveries (one of each per measured delivery)",
            r.totals.delivered
        ));
    }
    let on_time = h.decode_on_time().map_err(|e| MergeError::Histogram {
        index,
        detail: e.to_string(),
    })?;
    if on_time.is_some_and(|o| o.count() > intended) {
        return bad("its on-time histogram holds more latencies than were measured".into());
    }
    Ok(())
}

/// The sum of `reports`' totals, or which count overflows.
pub fn sum_totals(reports: &[Report]) -> Result<Totals, MergeError> {
    reports.iter().try_fold(Totals::default(), |sum, r| {
        sum.checked_add(&r.totals).ok_or(MergeError::Overflow)
    })
}

/// Check that `reports` are repeats of one run: not shards of a sharded run (those merge with
/// `--shards`), one scenario unchanged, one build, and no run given twice.
pub fn check_repeats(reports: &[Report]) -> Result<(), MergeError> {
    let refuse = |why: String| Err(MergeError::Repeats(why));
    let Some(first) = reports.first() else {
        return Err(MergeError::Empty);
    };
    for (at, r) in reports.iter().enumerate() {
        if r.merged.is_none() && r.run.shard != "0/1" {
            return refuse(format!(
                "report {at} is shard {} of a sharded run: shards of one run merge with \
                 --shards, not as repeats",
                r.run.shard
            ));
        }
        let changes = scenario_changes(&first.scenario, &r.scenario, &[]);
        if !changes.is_empty() {
            return refuse(format!(
                "report {at} ran another version of scenario {:?} than report 0 ({}); repeats \
                 of one scenario merge",
                r.scenario_name(),
                changes.join("; ")
            ));
        }
        if build(r) != build(first) {
            return refuse(format!(
                "report {at} was run by {}, report 0 by {}; repeats merge within one build \
                 (compare builds with `fleetbench compare`)",
                build(r),
                build(first)
            ));
        }
        if let Some(other) = reports[..at].iter().position(|o| same_run(o, r)) {
            return refuse(format!(
                "reports {other} and {at} are the same run; give each run's report once"
            ));
        }
    }
    Ok(())
}

/// The build that made a report.
pub(crate) fn build(r: &Report) -> String {
    let e = &r.environment;
    format!("fleetbench {} ({})", e.fleetbench_version, e.git_revision)
}

/// Two reports of one run: the same start, counts and latency distribution.
fn same_run(a: &Report, b: &Report) -> bool {
    a.run.started_unix_s == b.run.started_unix_s
        && a.totals == b.totals
        && a.histograms == b.histograms
        && a.run.shard == b.run.shard
}

/// Where two resolved scenarios differ, as `path: old -> new` (at most five), leaving out the
/// top-level keys in `ignore`.
pub fn scenario_changes(old: &Value, new: &Value, ignore: &[&str]) -> Vec<String> {
    let (mut old, mut new) = (old.clone(), new.clone());
    for key in ignore {
        for v in [&mut old, &mut new] {
            if let Some(o) = v.as_object_mut() {
                o.remove(*key);
            }
        }
    }
    let mut out = Vec::new();
    differences("", &old, &new, &mut out);
    out
}

const MAX_CHANGES: usize = 5;

fn differences(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= MAX_CHANGES || a == b {
        return;
    }
    let at = |key: &str| {
        if path.is_empty() {
            key.to_string()
        } else {
            format!("{path}.{key}")
        }
    };
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let none = Value::Null;
                differences(
                    &at(k),
                    x.get(k).unwrap_or(&none),
                    y.get(k).unwrap_or(&none),
                    out,
                );
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (p, q)) in x.iter().zip(y).enumerate() {
                differences(&format!("{path}[{i}]"), p, q, out);
            }
        }
        _ => out.push(format!("{path}: {} -> {}", short(a), short(b))),
    }
}

/// A value as a change shows it: scalars whole, collections by size.
fn short(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("{} entries", a.len()),
        Value::Object(_) => "a table".to_string(),
        Value::Null => "none".to_string(),
        other => {
            let s = other.to_string();
            if s.chars().count() > 40 {
                format!("{}...", s.chars().take(40).collect::<String>())
            } else {
                s
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_scenario_is_named_where_it_changed() {
        let a =
            serde_json::json!({"name": "s", "groups": [{"rate": 1.0, "count": 10}], "expect": {}});
        let b = serde_json::json!({"name": "s", "groups": [{"rate": 2.0, "count": 10}], "expect": {"p99": "5ms"}});
        assert_eq!(
            scenario_changes(&a, &b, &["expect"]),
            ["groups[0].rate: 1.0 -> 2.0"]
        );
        assert_eq!(scenario_changes(&a, &b, &[]).len(), 2);
        assert!(scenario_changes(&a, &a, &[]).is_empty());
    }

    #[test]
    fn counts_that_do_not_add_up_or_overflow_are_refused() {
        let ok = crate::fixture::report(400, 900, 0, 1_000.0);
        assert!(check_report(0, &ok).is_ok());
        let mut wrapped = ok.clone();
        wrapped.totals.sent = u64::MAX;
        assert!(matches!(
            sum_totals(&[ok.clone(), wrapped]),
            Err(MergeError::Overflow)
        ));
        let mut short = ok.clone();
        short.totals.delivered -= 1;
        assert!(matches!(
            check_report(3, &short),
            Err(MergeError::Inconsistent { index: 3, .. })
        ));
        // A histogram that claims more latencies than the run delivered.
        let mut claims = ok.clone();
        claims.totals.delivered = 40;
        claims.totals.expected = 40;
        claims.by_qos.clear();
        let e = check_report(1, &claims).expect_err("more latencies than deliveries");
        assert!(e.to_string().contains("deliveries"), "{e}");
    }
}
