//! `fleetbench merge`: one report from the shards of a run or from repeats of it.

use anyhow::Context;
use fleetbench_report::merge::merge;
use fleetbench_report::report::{MergeKind, Verdict};

use crate::inputs::reports_in;
use crate::outputs::Reserved;
use crate::{MergeArgs, Outcome, UsageError};

pub(crate) fn run(args: MergeArgs) -> anyhow::Result<Outcome> {
    let inputs: Vec<&std::path::Path> = args.reports.iter().map(|p| p.as_path()).collect();
    // Reserved first: a merge that cannot be written is refused before anything is read.
    let out = Reserved::not_over(&args.output, "merged report", &inputs)?;
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
    out.write(json.as_bytes())?;
    crate::say(fleetbench_report::summary::render(&merged));
    Ok(if merged.verdict == Verdict::Pass {
        Outcome::Pass
    } else {
        Outcome::ExpectationsFailed
    })
}
