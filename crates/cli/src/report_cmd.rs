//! `fleetbench report html`: a saved report (and a baseline) as one HTML page.

use anyhow::Context;

use std::path::Path;

use fleetbench_report::search::SearchReport;

use crate::inputs::{one_report, read_capped, MAX_REPORT_BYTES};
use crate::outputs::Reserved;
use crate::{HtmlArgs, Outcome, UsageError};

pub(crate) fn html(args: HtmlArgs) -> anyhow::Result<Outcome> {
    let mut inputs = vec![args.report.as_path()];
    inputs.extend(args.baseline.as_deref());
    let out = Reserved::not_over(&args.output, "HTML report", &inputs)?;
    if let Some(search) = read_search(&args.report)? {
        return search_page(search, args.baseline.as_deref(), out);
    }
    let report = one_report(&args.report)?;
    let baseline = match &args.baseline {
        Some(path) => {
            let old = one_report(path)?;
            let note = crate::compare_cmd::one_scenario((&old, path), (&report, &args.report))?;
            if let Some(note) = note {
                eprintln!("note: {note}");
            }
            Some(old)
        }
        None => None,
    };
    let page = fleetbench_report::html::render(&report, baseline.as_ref())
        .context("making the HTML report")?;
    let path = out.write(page.as_bytes())?;
    crate::say(format_args!("wrote {}\n", path.display()));
    Ok(Outcome::Pass)
}

/// The search result in `path`, if it holds one (a run's report is read as such elsewhere).
fn read_search(path: &Path) -> anyhow::Result<Option<SearchReport>> {
    if path == Path::new(crate::outputs::STDOUT) {
        return Ok(None);
    }
    let bytes = read_capped(path, "report", MAX_REPORT_BYTES)?;
    let Ok(serde_json::Value::Object(top)) = serde_json::from_slice(&bytes) else {
        return Ok(None);
    };
    if !top.contains_key("knob") {
        return Ok(None);
    }
    let search = serde_json::from_value(serde_json::Value::Object(top)).map_err(|e| {
        UsageError(format!(
            "{}: not a search result fleetbench reads: {e}",
            path.display()
        ))
    })?;
    Ok(Some(search))
}

/// The page of a search, with another overlaid when given.
fn search_page(
    search: SearchReport,
    other: Option<&Path>,
    out: Reserved,
) -> anyhow::Result<Outcome> {
    let other = match other {
        Some(p) => Some(read_search(p)?.ok_or_else(|| {
            UsageError(format!(
                "{}: not a search result; overlay a search on a search",
                p.display()
            ))
        })?),
        None => None,
    };
    let mut all = vec![&search];
    all.extend(other.as_ref());
    let page = fleetbench_report::html::search::render(&all).context("making the HTML page")?;
    let path = out.write(page.as_bytes())?;
    crate::say(format_args!("wrote {}\n", path.display()));
    Ok(Outcome::Pass)
}
