//! `fleetbench report html`: a saved report (and a baseline) as one HTML page.

use anyhow::Context;

use crate::inputs::one_report;
use crate::outputs::Reserved;
use crate::{HtmlArgs, Outcome};

pub(crate) fn html(args: HtmlArgs) -> anyhow::Result<Outcome> {
    let mut inputs = vec![args.report.as_path()];
    inputs.extend(args.baseline.as_deref());
    let out = Reserved::not_over(&args.output, "HTML report", &inputs)?;
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
