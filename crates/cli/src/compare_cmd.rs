//! `fleetbench compare OLD.json NEW.json`: the regression verdict for any two reports of one
//! scenario.

use std::path::Path;

use anyhow::Context;
use fleetbench_report::compare::{compare, render_markdown, render_text, tolerances_of};
use fleetbench_report::consistency::scenario_changes;
use fleetbench_report::Report;

use crate::inputs::one_report;
use crate::{CompareArgs, Format, Outcome, UsageError};

pub(crate) fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    let old = one_report(&args.baseline)?;
    let new = one_report(&args.now)?;
    if let Some(note) = one_scenario((&old, &args.baseline), (&new, &args.now))? {
        eprintln!("note: {note}");
    }
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

/// What two reports of one scenario may differ in and still compare: what is judged and how
/// (`expect`, `regression`), the words (`description`) and the broker (a comparison of brokers
/// is one; it is said).
const MAY_DIFFER: [&str; 4] = ["description", "expect", "regression", "broker"];

/// Figures of two scenarios, or of two versions of one, compare nothing: refuse them, naming
/// what changed. Two brokers compare, with a note that says so.
pub(crate) fn one_scenario(
    (old, old_path): (&Report, &Path),
    (new, new_path): (&Report, &Path),
) -> anyhow::Result<Option<String>> {
    if old.scenario_name() != new.scenario_name() {
        return Err(UsageError(format!(
            "{} is of scenario {:?}, the baseline {} of scenario {:?}; only reports of one \
             scenario compare",
            new_path.display(),
            new.scenario_name(),
            old_path.display(),
            old.scenario_name()
        ))
        .into());
    }
    let changes = scenario_changes(&old.scenario, &new.scenario, &MAY_DIFFER);
    if !changes.is_empty() {
        return Err(UsageError(format!(
            "scenario {:?} changed between the baseline {} and {} ({}): the load is not the \
             same, so the figures compare nothing; save a new baseline",
            new.scenario_name(),
            old_path.display(),
            new_path.display(),
            changes.join("; ")
        ))
        .into());
    }
    Ok((old.run.broker != new.run.broker).then(|| {
        format!(
            "the baseline ran against {}, this report against {}: the comparison is of brokers",
            old.run.broker, new.run.broker
        )
    }))
}
