//! `fleetbench compare OLD.json NEW.json`: the regression verdict for any two reports.

use std::path::Path;

use anyhow::Context;
use fleetbench_metrics::compare::{compare, render_markdown, render_text, Tolerances};
use fleetbench_metrics::Report;

use crate::{CompareArgs, Format, Outcome, UsageError};

fn load(path: &Path) -> anyhow::Result<Report> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading report {}", path.display()))
        .map_err(|e| UsageError(format!("{e:#}")))?;
    Report::from_json(&text)
        .map_err(|e| UsageError(format!("{}: not a fleetbench report: {e}", path.display())).into())
}

pub fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    let old = load(&args.baseline)?;
    let new = load(&args.now)?;
    let tol = Tolerances {
        latency: args.latency_tolerance,
        throughput: args.throughput_tolerance,
        ..Tolerances::default()
    };
    let c = compare(&old, &new, &tol);
    match args.format {
        Format::Text => print!("{}", render_text(&c)),
        Format::Markdown => print!("{}", render_markdown(&c)),
        Format::Json => println!(
            "{}",
            serde_json::to_string_pretty(&c).context("encoding the comparison")?
        ),
    }
    Ok(if c.regressed {
        Outcome::ExpectationsFailed
    } else {
        Outcome::Pass
    })
}
