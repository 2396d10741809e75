//! `fleetbench search`: how much load the broker sustains within the scenario's expectations
//! (docs/SEARCH.md). The broker starts once; each step is a fleet run of the scenario with the
//! knob at the step's value, judged by [`judge`]; [`method`] picks the next value; the result
//! is a [`SearchReport`] with every step's report in it.

mod args;
mod cores;
mod judge;
mod knob;
mod method;
mod outcome;
mod step;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use fleetbench_metrics::Snapshot;
use fleetbench_report::search::SearchStep;
use fleetbench_scenario::{Plan, Scenario, Shard};
use tokio::sync::watch;

pub use args::SearchArgs;
pub use knob::Knob;
use method::{Bounds, Method, Purpose};
use step::{Bench, StepTiming};

use crate::check::Prepared;
use crate::live_metrics::LiveMetrics;
use crate::running_broker::{BrokerPlan, RunningBroker};
use crate::stop::Stop;
use crate::{limits, Outcome, UsageError};

/// A search, settled before anything connects.
struct Setup {
    prepared: Prepared,
    from: f64,
    to: f64,
    targets: Vec<String>,
}

/// Read the scenario with its targets and check that it can be searched along the knob.
fn setup(args: &SearchArgs) -> anyhow::Result<Setup> {
    let path = &args.scenario;
    let text = crate::check::read_text(path)?;
    let text = args::with_targets(path, &text, &args.targets)?;
    let shown = path.display().to_string();
    let scenario = fleetbench_scenario::parse(&shown, &text).map_err(|e| {
        let from_cli = if args.targets.is_empty() {
            ""
        } else {
            " (with --target)"
        };
        UsageError(format!("{e}{from_cli}"))
    })?;
    let overrides = crate::run_env::broker_override(
        args.broker_url.as_deref(),
        args.broker_username.as_deref(),
        &|k| std::env::var(k).ok(),
    )
    .map_err(UsageError)?;
    let prepared = crate::check::prepare(path, scenario, overrides.as_ref())?;
    let s = &prepared.scenario;
    if let Some(why) = args.vary.cannot_vary(s) {
        return Err(UsageError(format!("{shown}: cannot vary {}: {why}", args.vary.name())).into());
    }
    let targets = args::targets_of(s);
    if targets.is_empty() {
        return Err(UsageError(format!(
            "{shown}: no expectations to search against; add an [expect] table (for example \
             p99 = \"10ms\" and max_lost = 0) or give --target p99=10ms"
        ))
        .into());
    }
    let (from, to) = args::range(args, s)?;
    Ok(Setup {
        prepared,
        from,
        to,
        targets,
    })
}

/// The monitor opens for each step when asked for (not `--no-tui`) on a terminal.
pub(crate) fn wants_monitor(args: &SearchArgs) -> bool {
    use std::io::IsTerminal;
    !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

/// The `--metrics-listen` endpoint of a search: one channel every step's snapshots go to.
fn serve_live(
    args: &SearchArgs,
    scenario: &Scenario,
) -> anyhow::Result<Option<(watch::Sender<Snapshot>, Arc<LiveMetrics>)>> {
    let Some(addr) = args.metrics_listen else {
        return Ok(None);
    };
    let (tx, rx) = watch::channel(Snapshot::default());
    let groups = scenario.groups.iter().map(|g| g.name.clone()).collect();
    let live = LiveMetrics::new(rx, &scenario.name, "0/1".into(), groups);
    let bound = crate::live_metrics::serve(addr, live.clone())?;
    if !args.quiet {
        eprintln!("live metrics at http://{bound}/metrics");
    }
    Ok(Some((tx, live)))
}

/// The broker of the search, sized (with the descriptors) for the largest step. Counted
/// before the plan is built: a `--to` of a billion devices is refused, not built.
fn start_broker(args: &SearchArgs, setup: &Setup) -> anyhow::Result<RunningBroker> {
    let top = args.vary.apply(&setup.prepared.scenario, setup.to);
    let clients = top.device_count() + subscribers(&top);
    let broker = BrokerPlan::of(&setup.prepared);
    limits::ensure_open_files(clients, broker.descriptors_per_client(), broker.listeners())
        .with_context(|| {
            let to = fleetbench_report::search::num(setup.to);
            format!(
                "the largest step (--to {to} {}; lower it)",
                args.vary.name()
            )
        })?;
    let top_plan = Plan::build(&top, Shard::WHOLE);
    broker.start(&setup.prepared, &top_plan, clients)
}

pub(crate) fn search(args: SearchArgs, stop: Stop) -> anyhow::Result<Outcome> {
    let setup = setup(&args)?;
    let inputs = [args.scenario.as_path()];
    let reserve = |p: &std::path::Path, what| crate::outputs::Reserved::not_over(p, what, &inputs);
    let report_out = args
        .report
        .as_deref()
        .map(|p| reserve(p, "search result"))
        .transpose()?;
    let html_out = args
        .html
        .as_deref()
        .map(|p| reserve(p, "HTML page"))
        .transpose()?;
    let scenario = &setup.prepared.scenario;
    let live = serve_live(&args, scenario)?;
    let broker = start_broker(&args, &setup)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("fleet-worker")
        .enable_all()
        .build()
        .context("starting the fleet's runtime")?;
    let calibration = crate::run::calibrate_now(&runtime, &stop);
    if !stop.is_stopped() {
        crate::run::preflight(&runtime, broker.target(), &stop, args.connect_timeout)?;
    }
    let bench = Bench {
        runtime: &runtime,
        broker: &broker,
        stop: &stop,
        timing: StepTiming {
            settle: args.settle,
            window: args.window,
            rest: args.rest,
        },
        calibration,
        broker_pid: args.broker_pid,
        target_p99: scenario.expect.p99,
        monitor: wants_monitor(&args),
        live: live.as_ref().map(|(tx, _)| tx),
    };
    let started = Instant::now();
    let label_step = |n: usize, v: f64| {
        if let Some((_, l)) = &live {
            l.set_step(format!(
                "{n}: {}={}",
                args.vary.name(),
                fleetbench_report::search::num(v)
            ));
        }
    };
    let (steps, method) = climb(&args, &setup, &bench, (started, &label_step));
    let interrupted = stop.is_stopped();
    runtime.shutdown_timeout(Duration::from_secs(2));
    let label = broker.stop().label;
    let result = outcome::conclude(
        outcome::Found {
            args: &args,
            scenario: scenario.name.clone(),
            broker: label,
            range: (setup.from, setup.to),
            targets: setup.targets,
            duration_s: started.elapsed().as_secs_f64(),
            interrupted,
        },
        &method,
        steps,
    );
    outcome::finish(&result, report_out, html_out)
}

/// Run steps as the method asks until it is done, the budget is spent or the search stopped.
/// `label_step` names each step (number, value) to the metrics endpoint.
fn climb(
    args: &SearchArgs,
    setup: &Setup,
    bench: &Bench,
    (started, label_step): (Instant, &dyn Fn(usize, f64)),
) -> (Vec<SearchStep>, Method) {
    let mut method = Method::new(Bounds {
        from: setup.from,
        to: setup.to,
        tolerance: args.tolerance,
        whole: args.vary.whole(),
    });
    let mut steps = Vec::new();
    while let Some((value, purpose)) = method.next() {
        let scenario = args.vary.apply(&setup.prepared.scenario, value);
        let needs = step_length(&scenario, &bench.timing);
        if bench.stop.is_stopped() || started.elapsed() + needs > args.budget {
            break;
        }
        let label = format!(
            "step {} ({} {} = {})",
            steps.len() + 1,
            purpose.label(),
            args.vary.name(),
            fleetbench_report::search::num(value)
        );
        if !args.quiet {
            eprintln!(
                "{label}: {} devices, {} subscribers",
                scenario.device_count(),
                subscribers(&scenario)
            );
        }
        label_step(steps.len() + 1, value);
        let progress = (!args.quiet).then_some(label.as_str());
        let step = match run_step(bench, scenario, (value, purpose), progress) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("{label}: could not run: {e:#}");
                break;
            }
        };
        if bench.stop.is_stopped() {
            // A step cut short by Ctrl-C is no verdict on the broker.
            break;
        }
        if !args.quiet {
            let verdict = if step.passed {
                "pass".to_string()
            } else {
                format!("FAIL: {}", step.reasons.join("; "))
            };
            eprintln!("{label}: {verdict}");
        }
        method.record(value, purpose, step.passed);
        let failed = !step.passed;
        steps.push(step);
        if failed {
            rest(bench.runtime, bench.stop, bench.timing.rest);
        }
    }
    (steps, method)
}

fn subscribers(s: &Scenario) -> u64 {
    s.observers.iter().map(|o| u64::from(o.count)).sum()
}

/// How long a step of `scenario` takes at least: connecting, the warm-up and the window.
fn step_length(scenario: &Scenario, t: &StepTiming) -> Duration {
    t.settle + t.window + step::connect_time(scenario)
}

fn run_step(
    bench: &Bench,
    scenario: Scenario,
    (value, purpose): (f64, Purpose),
    progress: Option<&str>,
) -> anyhow::Result<SearchStep> {
    let ran = step::run(bench, scenario, progress)?;
    let r = &ran.report;
    let offered: f64 = (ran.scenario.groups.iter())
        .map(|g| g.rate * f64::from(g.count))
        .sum();
    let j = judge::judge(&judge::Seen {
        expectations: &r.expectations,
        samples: &ran.samples,
        offered,
        ended_early: ran.ended_early.as_deref(),
        target_p99: bench.target_p99,
        cores_busy: ran.cores_busy,
    });
    let lat = |l: &fleetbench_metrics::hist::LatencySummary| [l.p50_us, l.p99_us, l.p999_us];
    Ok(SearchStep {
        value,
        purpose: purpose.label().to_string(),
        devices: ran.scenario.device_count(),
        subscribers: subscribers(&ran.scenario),
        offered_per_s: j.offered_per_s,
        due_per_s: j.due_per_s,
        delivered_per_s: j.delivered_per_s,
        lost: r.totals.lost,
        in_flight_growth: j.in_flight_growth,
        from_intended_us: lat(&r.latency.from_intended),
        from_send_us: lat(&r.latency.from_send),
        generator_cores: r.generator.cpu_cores,
        late_share: r.generator.late_sends as f64 / r.totals.sent.max(1) as f64,
        max_lag_us: r.generator.max_lag_us,
        broker_cores: ran.broker_cores,
        passed: j.passed,
        generator_limited: j.generator_limited,
        reasons: j.reasons,
        ended_early: ran.ended_early.is_some(),
        report: Box::new(ran.report),
    })
}

/// Wait for the broker to drain after a failed step (a stop ends the wait).
fn rest(runtime: &tokio::runtime::Runtime, stop: &Stop, pause: Duration) {
    runtime.block_on(async {
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stop.token.cancelled() => {}
        }
    });
}
