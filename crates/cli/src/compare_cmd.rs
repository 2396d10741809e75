//! `fleetbench compare OLD.json NEW.json`: the regression verdict for any two reports, and
//! `fleetbench merge`: one report from shards or repeats.

use std::path::Path;

use anyhow::Context;
use fleetbench_metrics::compare::{compare, render_markdown, render_text, tolerances_of};
use fleetbench_metrics::merge::merge;
use fleetbench_metrics::report::MergeKind;
use fleetbench_metrics::Report;

use crate::{CompareArgs, Format, HtmlArgs, MergeArgs, Outcome, UsageError};

fn load(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading report {}", path.display()))
        .map_err(|e| UsageError(format!("{e:#}")))?;
    Report::from_json(&text)
        .map_err(|e| UsageError(format!("{}: not a fleetbench report: {e}", path.display())).into())
}

pub(crate) fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    let old = load(&args.baseline)?;
    let new = load(&args.now)?;
    one_scenario((&old, &args.baseline), (&new, &args.now))?;
    let mut tol = tolerances_of(&new);
    if let Some(t) = args.latency_tolerance {
        tol.latency = t;
    }
    if let Some(t) = args.throughput_tolerance {
        tol.throughput = t;
    }
    let c = compare(&old, &new, &tol);
    match args.format {
        Format::Text => crate::say(render_text(&c)),
        Format::Markdown => crate::say(render_markdown(&c)),
        Format::Json => crate::say(format_args!(
            "{}\n",
            serde_json::to_string_pretty(&c).context("encoding the comparison")?
        )),
    }
    Ok(if c.regressed {
        Outcome::ExpectationsFailed
    } else {
        Outcome::Pass
    })
}

/// Figures of two different scenarios compare nothing: refuse, as merge does.
fn one_scenario(
    (old, old_path): (&Report, &Path),
    (new, new_path): (&Report, &Path),
) -> anyhow::Result<()> {
    if old.scenario_name() == new.scenario_name() {
        return Ok(());
    }
    Err(UsageError(format!(
        "{} is of scenario {:?}, the baseline {} of scenario {:?}; only reports of one \
         scenario compare",
        new_path.display(),
        new.scenario_name(),
        old_path.display(),
        old.scenario_name()
    ))
    .into())
}

/// `fleetbench report html`: a saved report (and a baseline) as one HTML page.
pub(crate) fn run_html(args: HtmlArgs) -> anyhow::Result<Outcome> {
    let report = load(&args.report)?;
    let baseline = match &args.baseline {
        Some(path) => {
            let old = load(path)?;
            one_scenario((&old, path), (&report, &args.report))?;
            Some(old)
        }
        None => None,
    };
    let out = crate::outputs::Reserved::new(&args.output, "HTML report")?;
    let page = fleetbench_metrics::html::render(&report, baseline.as_ref())
        .context("making the HTML report")?;
    let path = out.write(page.as_bytes())?;
    crate::say(format_args!("wrote {}\n", path.display()));
    Ok(Outcome::Pass)
}

/// The reports in a file (or stdin, `-`): a JSON report, or a log holding report lines
/// (`run --report -` in each pod; `kubectl logs` output, several pods' in one file included).
fn reports_in(path: &Path) -> anyhow::Result<Vec<Report>> {
    let shown = path.display();
    let text = if path == Path::new(crate::outputs::STDOUT) {
        std::io::read_to_string(std::io::stdin()).context("reading reports from stdin")
    } else {
        std::fs::read_to_string(path).with_context(|| format!("reading report {shown}"))
    }
    .map_err(|e| UsageError(format!("{e:#}")))?;
    if text.trim_start().starts_with('{') {
        return Report::from_json(&text)
            .map(|r| vec![r])
            .map_err(|e| UsageError(format!("{shown}: not a fleetbench report: {e}")).into());
    }
    let marker = crate::outputs::REPORT_LINE;
    let mut reports = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(at) = line.find(marker) else {
            continue;
        };
        let r = Report::from_json(&line[at + marker.len()..]).map_err(|e| {
            UsageError(format!(
                "{shown}:{}: a report line that does not read as a report ({e}); was the log \
                 cut short?",
                n + 1
            ))
        })?;
        reports.push(r);
    }
    if reports.is_empty() {
        return Err(UsageError(format!(
            "{shown}: neither a JSON report nor a log with {marker:?} lines (written by \
             `fleetbench run --report -`)"
        ))
        .into());
    }
    Ok(reports)
}

pub(crate) fn run_merge(args: MergeArgs) -> anyhow::Result<Outcome> {
    let mut reports = Vec::new();
    for p in &args.reports {
        reports.extend(reports_in(p)?);
    }
    let kind = if args.shards {
        MergeKind::Shards
    } else {
        MergeKind::Repeats
    };
    let merged = merge(&reports, kind).map_err(|e| UsageError(e.to_string()))?;
    let json = merged.to_json().context("encoding the merged report")?;
    crate::write_file(&args.output, json.as_bytes(), "merged report")?;
    crate::say(fleetbench_metrics::summary::render(&merged));
    Ok(
        if merged.verdict == fleetbench_metrics::report::Verdict::Pass {
            Outcome::Pass
        } else {
            Outcome::ExpectationsFailed
        },
    )
}
