//! Comparing two reports of the same scenario: what got worse, by how much, and whether that is
//! a regression.
//!
//! - Counts that must not grow (lost, duplicates, errors) compare exactly.
//! - Timing figures compare as the median of each report's samples (one per run; several when
//!   repeats were merged), within the scenario's `[regression]` tolerances.
//! - Timing compares in units of the calibration workload each run measured on its own machine
//!   (see `Calibration`), so that a slower CI runner is not a regression; the raw change is
//!   shown beside the adjusted one.
//! - A change smaller than the latency floor, or (with repeats on both sides) one where some new
//!   run is as good as the baseline's median run, is noise.

use fleetbench_scenario::Regression;
use serde::{Deserialize, Serialize};

use crate::metric::{self, Better, Metric, Unit as MetricUnit};
use crate::report::{Calibration, Report, Sample};

mod render;
pub use render::{render_markdown, render_text};

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
    /// The metric's name in `[regression] skip`.
    pub id: String,
    /// The metric as the table shows it.
    pub metric: String,
    /// The baseline's figure (the median of its samples for timing figures).
    pub baseline: f64,
    pub now: f64,
    /// Relative spread of the samples, `(max - min) / median`, when there are several.
    pub baseline_spread: Option<f64>,
    pub now_spread: Option<f64>,
    /// `now / baseline - 1`, when the baseline is not zero.
    pub change: Option<f64>,
    /// The change in units of each machine's calibration workload, when both reports were
    /// calibrated and the scenario compares this figure calibrated.
    pub adjusted_change: Option<f64>,
    /// The relative change allowed in the worse direction (0 for exact figures).
    pub tolerance: f64,
    pub direction: Direction,
    pub unit: Unit,
    /// Set when the row is shown but not judged, and why.
    pub not_gated: Option<NotGated>,
    /// Not a regression (always true when not gated).
    pub ok: bool,
}

/// Why a row is not judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotGated {
    /// The scenario's `[regression] skip` names it.
    Skipped,
    /// A percentile needs [`MIN_BEYOND`] values beyond it in every run to be compared; the runs
    /// had fewer (`per_run` values, `needed` for this percentile).
    TooFewValues { per_run: u64, needed: u64 },
}

/// How many values must lie beyond a percentile, in each run, before it is compared: a p99 of
/// 80 values is the largest of them, and one hiccup moves it by a factor of three.
pub const MIN_BEYOND: f64 = 10.0;

impl Row {
    /// Whether this row is judged.
    pub fn gated(&self) -> bool {
        self.not_gated.is_none()
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub scenario: String,
    /// Runs behind each side.
    pub baseline_runs: usize,
    pub now_runs: usize,
    /// The calibration units of each side (median over its runs).
    pub baseline_calibration: Option<Calibration>,
    pub now_calibration: Option<Calibration>,
    /// The tolerances applied (the new report's scenario's, unless overridden).
    pub tolerances: Regression,
    pub rows: Vec<Row>,
    /// True when any gated row is not ok.
    pub regressed: bool,
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => 0.0,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

fn spread(v: &[f64]) -> Option<f64> {
    let m = median(v);
    if v.len() < 2 || m == 0.0 {
        return None;
    }
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
    Some((hi - lo) / m)
}

/// The tolerances the new report's scenario asks for (defaults for reports without them).
pub fn tolerances_of(r: &Report) -> Regression {
    r.scenario
        .get("regression")
        .and_then(|v| serde_json::from_value::<Regression>(v.clone()).ok())
        // A report's scenario can say anything: tolerances the gate would refuse in a scenario
        // file do not switch it off here either.
        .filter(Regression::is_valid)
        .unwrap_or_default()
}

/// A timing figure of every sample, raw and in calibration units.
struct Timing {
    raw: Vec<f64>,
    /// `None` unless every sample was calibrated.
    adjusted: Option<Vec<f64>>,
}

fn timing(
    samples: &[Sample],
    pick: impl Fn(&Sample) -> f64,
    unit: fn(&Calibration) -> f64,
) -> Timing {
    let raw: Vec<f64> = samples.iter().map(&pick).collect();
    let adjusted = samples
        .iter()
        .map(|s| {
            let u = unit(s.calibration.as_ref()?);
            (u > 0.0).then(|| pick(s) / u)
        })
        .collect();
    Timing { raw, adjusted }
}

fn core_rt(c: &Calibration) -> f64 {
    c.core_round_trip_us
}

fn rate(c: &Calibration) -> f64 {
    c.round_trips_per_s
}

/// Which timing figure a row is about, and whether it is judged in calibration units.
struct What {
    m: Metric,
    calibrate: bool,
}

/// How a comparison judges a metric: counts may not grow at all, the rest in the direction
/// that is better.
fn direction(m: Metric) -> Direction {
    match (m.unit(), m.better()) {
        (MetricUnit::Count, _) => Direction::Exact,
        (_, Better::Lower) => Direction::LowerIsBetter,
        (_, Better::Higher) => Direction::HigherIsBetter,
    }
}

/// A metric's unit as a comparison's rows state it.
fn unit(m: Metric) -> Unit {
    match m.unit() {
        MetricUnit::Count => Unit::Count,
        MetricUnit::Micros => Unit::Micros,
        MetricUnit::PerSecond => Unit::PerSecond,
        MetricUnit::Ratio => Unit::Ratio,
    }
}

struct Judge<'a> {
    tol: &'a Regression,
}

impl Judge<'_> {
    /// A row that may not get worse at all.
    fn exact(&self, m: Metric, base: f64, now: f64) -> Row {
        Row {
            id: m.name().into(),
            metric: m.label().into(),
            baseline: base,
            now,
            baseline_spread: None,
            now_spread: None,
            change: (base != 0.0).then(|| now / base - 1.0),
            adjusted_change: None,
            tolerance: 0.0,
            direction: direction(m),
            unit: unit(m),
            not_gated: None,
            ok: match m.better() {
                Better::Lower => now <= base,
                Better::Higher => now >= base,
            },
        }
    }

    /// A timing row: medians, spreads, the raw and the adjusted change, and the verdict.
    fn timing(&self, what: What, base: Timing, now: Timing) -> Row {
        let What { m, calibrate } = what;
        let direction = direction(m);
        let (b, n) = (median(&base.raw), median(&now.raw));
        let change = (b != 0.0).then(|| n / b - 1.0);
        let (baseline_spread, now_spread) = (spread(&base.raw), spread(&now.raw));
        // Judge in calibration units when both sides have them and the scenario wants it.
        let (judged_base, judged_now, adjusted_change) = match (calibrate, base, now) {
            (
                true,
                Timing {
                    adjusted: Some(ba), ..
                },
                Timing {
                    adjusted: Some(na), ..
                },
            ) => {
                let (mb, mn) = (median(&ba), median(&na));
                let adjusted = (mb != 0.0).then(|| mn / mb - 1.0);
                (ba, na, adjusted)
            }
            (_, base, now) => (base.raw, now.raw, None),
        };
        let judged_change = adjusted_change.or(change);
        let (tolerance, worse_than_tolerance) = match direction {
            Direction::LowerIsBetter => (
                self.tol.latency,
                judged_change.is_some_and(|c| c > self.tol.latency),
            ),
            _ => (
                self.tol.throughput,
                judged_change.is_some_and(|c| c < -self.tol.throughput),
            ),
        };
        // The floor applies to the baseline's figure carried over to this machine: scaled by
        // how much slower this machine's calibration unit is, (1 + raw) / (1 + adjusted).
        let carried = match (change, adjusted_change) {
            (Some(c), Some(a)) if a > -1.0 => b * (1.0 + c) / (1.0 + a),
            _ => b,
        };
        let beyond_floor = direction != Direction::LowerIsBetter
            || n - carried >= self.tol.latency_floor.as_micros() as f64;
        // With several runs on both sides, a regression makes every new run worse than the
        // typical baseline run: when the best new run is as good as the baseline's median, the
        // runs overlap and the change is noise. (Medians, not extremes: one slow baseline run
        // must not blind the gate.)
        let outside_spread = if judged_base.len() >= 2 && judged_now.len() >= 2 {
            let m = median(&judged_base);
            match direction {
                Direction::LowerIsBetter => judged_now.iter().all(|x| *x > m),
                _ => judged_now.iter().all(|x| *x < m),
            }
        } else {
            true
        };
        Row {
            id: m.name().into(),
            metric: m.label().into(),
            baseline: b,
            now: n,
            baseline_spread,
            now_spread,
            change,
            adjusted_change,
            tolerance,
            direction,
            unit: unit(m),
            not_gated: None,
            ok: !(worse_than_tolerance && beyond_floor && outside_spread),
        }
    }
}

/// Compare `new` with `old` under `tol` (usually [`tolerances_of`] the new report): a row per
/// metric of [`Metric::COMPARED`]. Counts and the delivered ratio compare exactly, as the
/// expectations read them; timing figures as the medians of the runs' samples.
pub fn compare(old: &Report, new: &Report, tol: &Regression) -> Comparison {
    let (os, ns) = (old.samples(), new.samples());
    let j = Judge { tol };
    let mut rows: Vec<Row> = Metric::COMPARED
        .into_iter()
        .map(|m| match m.unit() {
            MetricUnit::Micros | MetricUnit::PerSecond => {
                let pick = |s: &Sample| metric::sample_value(m, s).unwrap_or(f64::NAN);
                let (calibrate, unit): (bool, fn(&Calibration) -> f64) =
                    if m.unit() == MetricUnit::Micros {
                        (tol.calibrate_latency, core_rt)
                    } else {
                        (tol.calibrate_throughput, rate)
                    };
                let what = What { m, calibrate };
                let mut row = j.timing(what, timing(&os, pick, unit), timing(&ns, pick, unit));
                row.not_gated = too_few_values(m, old, new);
                row
            }
            _ => {
                let figure = |r: &Report| metric::value(m, r).unwrap_or(f64::NAN);
                j.exact(m, figure(old), figure(new))
            }
        })
        .collect();
    for r in &mut rows {
        if tol.skip.contains(&r.id) {
            r.not_gated = Some(NotGated::Skipped);
        }
        if r.not_gated.is_some() {
            r.ok = true;
        }
    }
    let regressed = rows.iter().any(|r| !r.ok);
    Comparison {
        scenario: new.scenario_name().to_string(),
        baseline_runs: os.len(),
        now_runs: ns.len(),
        baseline_calibration: old.calibration,
        now_calibration: new.calibration,
        tolerances: tol.clone(),
        rows,
        regressed,
    }
}

/// Whether either side's runs had too few values to compare the percentile `m` stands for.
fn too_few_values(m: Metric, old: &Report, new: &Report) -> Option<NotGated> {
    // Values per run: a merged report's count over its runs.
    let per_run = |r: &Report| {
        let (_, count) = metric::percentile(m, &r.latency)?;
        Some(count / r.samples().len().max(1) as u64)
    };
    let (quantile, _) = metric::percentile(m, &old.latency)?;
    let fewest = per_run(old)?.min(per_run(new)?);
    let needed = (MIN_BEYOND / (1.0 - quantile)).round() as u64;
    (fewest < needed).then_some(NotGated::TooFewValues {
        per_run: fewest,
        needed,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::report;

    fn failed(c: &Comparison) -> Vec<&str> {
        c.rows
            .iter()
            .filter(|r| !r.ok)
            .map(|r| r.id.as_str())
            .collect()
    }

    fn calibrated(mut r: Report, rtt_us: f64) -> Report {
        let c = Calibration {
            core_round_trip_us: rtt_us,
            round_trips_per_s: 1e6 / rtt_us,
            elapsed_s: 0.5,
        };
        r.calibration = Some(c);
        for s in &mut r.samples {
            s.calibration = Some(c);
        }
        r
    }

    /// Merge-like: several samples with the given p99s.
    fn repeats(p99s: &[u64]) -> Report {
        let mut r = report(500, p99s[0], 0, 1_000.0);
        r.samples = p99s
            .iter()
            .map(|p| report(500, *p, 0, 1_000.0).own_sample())
            .collect();
        // 1,000 values in every run.
        let runs = p99s.len() as u64;
        let l = &mut r.latency;
        for s in [&mut l.from_intended, &mut l.from_send, &mut l.puback] {
            s.count *= runs;
        }
        r
    }

    #[test]
    fn an_unchanged_run_and_small_noise_pass() {
        let base = report(400, 2_000, 0, 1_000.0);
        let tol = Regression::default();
        assert!(!compare(&base, &base, &tol).regressed);
        // +10% latency and -5% throughput are within tolerance.
        let c = compare(&base, &report(400, 2_200, 0, 950.0), &tol);
        assert!(!c.regressed, "{:?}", failed(&c));
        // A large relative change that is tiny in absolute terms is noise.
        let c = compare(
            &report(50, 100, 0, 1_000.0),
            &report(50, 200, 0, 1_000.0),
            &tol,
        );
        assert!(!c.regressed, "{:?}", failed(&c));
    }

    #[test]
    fn slower_lossier_or_lower_throughput_runs_regress() {
        let base = report(400, 2_000, 0, 1_000.0);
        let tol = Regression::default();
        let slow = compare(&base, &report(400, 4_000, 0, 1_000.0), &tol);
        assert_eq!(failed(&slow), ["p99_from_intended", "p99_from_send"]);
        let lossy = compare(&base, &report(400, 2_000, 1, 1_000.0), &tol);
        assert!(failed(&lossy).contains(&"lost"));
        assert!(failed(&lossy).contains(&"lost_at_qos_1_or_2"));
        assert!(failed(&lossy).contains(&"delivered_ratio"));
        let starved = compare(&base, &report(400, 2_000, 0, 800.0), &tol);
        assert_eq!(failed(&starved), ["deliver_per_s"]);
    }

    #[test]
    fn a_slower_machine_is_not_a_regression_but_a_slower_build_is() {
        let tol = Regression::default();
        let base = calibrated(report(400, 2_000, 0, 1_000.0), 50.0);
        // Everything twice as slow, the calibration workload too: the machine, not the build.
        let slow_machine = calibrated(report(800, 4_000, 0, 1_000.0), 100.0);
        let c = compare(&base, &slow_machine, &tol);
        assert!(!c.regressed, "{:?}", failed(&c));
        let p99 = &c.rows[6];
        assert_eq!(p99.id, "p99_from_intended");
        // (HDR histograms keep 3 significant digits: 2,000 reads back as 2,001.)
        assert!((p99.change.unwrap_or(0.0) - 1.0).abs() < 0.002);
        assert!(p99.adjusted_change.unwrap_or(1.0).abs() < 0.002);
        // Same machine speed, twice the latency: the build.
        let slow_build = calibrated(report(800, 4_000, 0, 1_000.0), 50.0);
        assert!(compare(&base, &slow_build, &tol).regressed);
        // Uncalibrated comparison when the scenario asks for raw figures.
        let raw = Regression {
            calibrate_latency: false,
            ..Regression::default()
        };
        assert!(compare(&base, &slow_machine, &raw).regressed);
    }

    #[test]
    fn repeats_judge_the_median_against_the_baselines_spread() {
        let tol = Regression::default();
        let base = repeats(&[2_000, 2_100, 3_000]);
        // One noisy run among three does not move the median.
        let noisy = compare(&base, &repeats(&[2_050, 4_000, 2_000]), &tol);
        assert!(!noisy.regressed, "{:?}", failed(&noisy));
        // A median 29% up, while one new run is as fast as the baseline's median: the runs
        // overlap, and that is noise.
        let overlap = compare(&base, &repeats(&[2_000, 2_700, 2_800]), &tol);
        assert!(!overlap.regressed, "{:?}", failed(&overlap));
        // Every new run well above the typical baseline run: a regression, although the one
        // slow baseline run (3,000) was slower than some of them.
        let slow = compare(&base, &repeats(&[2_900, 2_950, 2_940]), &tol);
        assert!(slow.regressed);
        let p99 = &slow.rows[6];
        assert!((p99.baseline - 2_100.0).abs() <= 2.0, "{}", p99.baseline);
        assert!((p99.baseline_spread.unwrap_or(0.0) - 1_000.0 / 2_100.0).abs() < 0.002);
    }

    #[test]
    fn skipped_metrics_are_shown_but_not_judged() {
        let tol = Regression {
            skip: vec!["p99_from_intended".into(), "p99_from_send".into()],
            ..Regression::default()
        };
        let c = compare(
            &report(400, 2_000, 0, 1_000.0),
            &report(400, 4_000, 0, 1_000.0),
            &tol,
        );
        assert!(!c.regressed);
        assert!(render_text(&c).contains("not gated"));
    }

    #[test]
    fn a_percentile_of_too_few_values_is_shown_but_not_judged() {
        let tol = Regression::default();
        let base = report(400, 2_000, 0, 1_000.0);
        let mut slow = report(400, 4_000, 0, 1_000.0);
        // 1,000 values per run: the p99 has 10 beyond it, enough.
        assert!(compare(&base, &slow, &tol).regressed);
        // 999: not enough for a p99, plenty for a median.
        slow.latency.from_intended.count = 999;
        slow.latency.from_send.count = 999;
        let c = compare(&base, &slow, &tol);
        assert!(!c.regressed, "{:?}", failed(&c));
        let p99 = &c.rows[6];
        assert_eq!(
            p99.not_gated,
            Some(NotGated::TooFewValues {
                per_run: 999,
                needed: 1_000
            })
        );
        assert!(c.rows[5].gated(), "the median is still judged");
        assert!(render_text(&c).contains("too few"));
    }

    #[test]
    fn the_rows_are_the_metrics_the_scenario_can_skip() {
        let r = report(400, 2_000, 0, 1_000.0);
        let c = compare(&r, &r, &Regression::default());
        let ids: Vec<&str> = c.rows.iter().map(|r| r.id.as_str()).collect();
        let names: Vec<&str> = Metric::COMPARED.iter().map(|m| m.name()).collect();
        assert_eq!(ids, names);
    }

    #[test]
    fn renders_as_text_and_markdown() {
        let c = compare(
            &report(400, 2_000, 0, 1_000.0),
            &report(400, 4_000, 0, 1_000.0),
            &Regression::default(),
        );
        let text = render_text(&c);
        assert!(text.starts_with("sensors: REGRESSION"), "{text}");
        assert!(
            text.contains("+100.1%") && text.contains("REGRESSED"),
            "{text}"
        );
        assert!(text.lines().all(|l| l.chars().count() <= 100), "{text}");
        let md = render_markdown(&c);
        assert!(
            md.contains("| p99 from intended | 2.00ms | 4.00ms | +100.1% | - | REGRESSED |"),
            "{md}"
        );
        let json = serde_json::to_value(&c).expect("json");
        assert_eq!(json["regressed"], true);
    }
}
