//! What a search found, in words and figures: the answer, what held it there, the knee, and the
//! result written, printed and turned into the exit code.

use fleetbench_report::search::{
    kneedle, num, LimitedBy, SearchReport, SearchStep, SEARCH_SCHEMA_VERSION,
};

use super::method::Method;
use super::SearchArgs;
use crate::outputs::Reserved;
use crate::Outcome;

/// What the search knew when it ended.
pub(crate) struct Found<'a> {
    pub(crate) args: &'a SearchArgs,
    pub(crate) scenario: String,
    pub(crate) broker: String,
    pub(crate) range: (f64, f64),
    pub(crate) targets: Vec<String>,
    pub(crate) duration_s: f64,
    pub(crate) interrupted: bool,
}

/// The result of the search's steps.
pub(crate) fn conclude(f: Found, method: &Method, steps: Vec<SearchStep>) -> SearchReport {
    let knob = f.args.vary;
    let answer = method.confirmed().or(method.highest_pass());
    let fail = method.lowest_fail();
    let fail_step = fail.and_then(|v| steps.iter().rev().find(|s| s.value == v && !s.passed));
    let generator_fail = fail_step.is_some_and(|s| s.generator_limited);
    let fail_reasons = fail_step.map(|s| s.reasons.join("; "));
    let finished = method.next().is_none() || method.out_of_confirmations();
    let limited_by = match (answer, fail) {
        _ if f.interrupted || !finished => LimitedBy::Unfinished,
        (_, Some(_)) if generator_fail => LimitedBy::Generator,
        (None, _) => LimitedBy::BelowRange,
        (Some(_), None) => LimitedBy::Range,
        (Some(_), Some(_)) => LimitedBy::Broker,
    };
    let mut r = SearchReport {
        schema_version: SEARCH_SCHEMA_VERSION,
        scenario: f.scenario,
        broker: f.broker,
        knob: knob.name().to_string(),
        unit: knob.unit().to_string(),
        from: f.range.0,
        to: f.range.1,
        tolerance: f.args.tolerance,
        targets: f.targets,
        answer,
        confirmed: method.confirmed().is_some(),
        bracket: [method.highest_pass(), fail],
        knee: None,
        limited_by,
        conclusion: String::new(),
        duration_s: f.duration_s,
        interrupted: f.interrupted,
        steps,
    };
    let curve: Vec<(f64, f64)> = (r.curve().iter())
        .map(|s| (s.value, s.from_intended_us[1] as f64))
        .collect();
    r.knee = kneedle(&curve).filter(|k| answer.is_some_and(|a| *k < a));
    r.conclusion = conclusion(&r, fail_reasons.as_deref(), f.args.budget);
    r
}

fn conclusion(r: &SearchReport, fail: Option<&str>, budget: std::time::Duration) -> String {
    let unit = &r.unit;
    let why = |s: Option<&str>| s.map_or(String::new(), |s| format!(" ({s})"));
    let held = r
        .answer
        .map_or("nothing".into(), |a| format!("{} {unit}", num(a)));
    let knee = r.knee.map_or(String::new(), |k| {
        format!(
            " p99 from intended starts to climb steeply at {} {unit} (the knee).",
            num(k)
        )
    });
    let took = format!(" {} steps in {:.0} s.", r.steps.len(), r.duration_s);
    let unconfirmed = if r.confirmed || r.answer.is_none() {
        ""
    } else {
        " (not confirmed by a repeat)"
    };
    let body =
        match r.limited_by {
            LimitedBy::Broker => format!(
                "answer: {held}{unconfirmed}; {} {unit} failed{}.{knee}",
                num(r.bracket[1].unwrap_or(r.to)),
                why(fail)
            ),
            LimitedBy::Generator => format!(
            "the generator, not the broker, was the limit at {} {unit}{}: the broker held {held} \
             with the generator keeping up. To find the broker's limit, run the fleet on another \
             machine or in shards (fleetbench deploy kubernetes), or give the broker its own \
             cores.",
            num(r.bracket[1].unwrap_or(r.to)),
            why(fail)
        ),
            LimitedBy::Range => format!(
                "every step up to --to held: the broker takes at least {held}{unconfirmed}; raise \
             --to to find its limit.{knee}"
            ),
            LimitedBy::BelowRange => format!(
                "even --from {} {unit} failed{}: the limit lies below it; lower --from.",
                num(r.from),
                why(fail)
            ),
            LimitedBy::Unfinished => format!(
            "unfinished ({}): the highest pass so far is {held}, the lowest failure {}; give a \
             longer --budget or a wider --tolerance.",
            if r.interrupted {
                "stopped".to_string()
            } else {
                format!("the budget of {} ran out", humantime::format_duration(budget))
            },
            r.bracket[1].map_or("none".into(), |v| format!("{} {unit}", num(v)))
        ),
        };
    body + &took
}

/// Write the result and the page, print the table, and turn the result into the exit code.
pub(crate) fn finish(
    r: &SearchReport,
    report: Option<Reserved>,
    html: Option<Reserved>,
) -> anyhow::Result<Outcome> {
    crate::say(fleetbench_report::search::render(r));
    let mut failed = Vec::new();
    if let Some(out) = report {
        match serde_json::to_vec_pretty(r) {
            Ok(json) => failed.extend(out.write(&json).err()),
            Err(e) => failed.push(anyhow::Error::new(e).context("encoding the search result")),
        }
    }
    if let Some(out) = html {
        match fleetbench_report::html::search::render(&[r]) {
            Ok(page) => failed.extend(out.write(page.as_bytes()).err()),
            Err(e) => failed.push(anyhow::Error::new(e).context("making the HTML page")),
        }
    }
    if let Some(e) = failed.pop() {
        for other in failed {
            eprintln!("error: {other:#}");
        }
        return Err(e);
    }
    Ok(match r.limited_by {
        _ if r.interrupted => Outcome::Interrupted,
        LimitedBy::Broker | LimitedBy::Range => Outcome::Pass,
        LimitedBy::Unfinished if r.answer.is_some() => Outcome::Pass,
        _ => Outcome::ExpectationsFailed,
    })
}
