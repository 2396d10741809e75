//! `fleetbench run`: scenario -> outputs reserved -> broker -> calibration -> the broker
//! answers -> fleet -> report -> verdict. A stop (Ctrl-C, SIGTERM, the monitor's `q`) at any of
//! these steps still ends with the partial report and exit code 130.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use fleetbench_fleet::calibrate::{calibrate, CalibrationWork, CALIBRATION_TIMEOUT};
use fleetbench_fleet::{FleetOptions, Target, Timing};
use fleetbench_metrics::{RunOutcome, Snapshot};
use fleetbench_monitor::Meta;
use fleetbench_report::report::{Calibration, StartReport, Verdict};
use fleetbench_report::{summary, Report, RunContext};
use fleetbench_scenario::Plan;
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::check::Prepared;
use crate::logging::LogFile;
use crate::outputs::Outputs;
use crate::run_env::StartAt;
use crate::running_broker::{BrokerPlan, RunningBroker};
use crate::stop::Stop;
use crate::{check, limits, progress, Outcome, RunArgs, UsageError};

/// The monitor opens when asked for (not `--no-tui`) and both stdout and stdin are terminals.
pub(crate) fn wants_monitor(args: &RunArgs) -> bool {
    use std::io::IsTerminal;
    !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

pub(crate) fn run(args: RunArgs, stop: Stop, log_file: Option<LogFile>) -> anyhow::Result<Outcome> {
    let from_env = crate::run_env::resolve(&args, |k| std::env::var(k).ok()).map_err(UsageError)?;
    let prepared = check::load_with(&args.scenario, from_env.broker.as_ref())?;
    let shard = from_env.shard;
    fleetbench_scenario::check_sharding(&prepared.scenario, shard.count)
        .map_err(|e| UsageError(e.to_string()))?;
    // Where the results go is settled before anything connects.
    let outputs = Outputs::reserve(
        from_env.report.as_deref(),
        args.hlog.as_deref(),
        args.html.as_deref(),
        &[args.scenario.as_path()],
    )?;
    let plan = Plan::build(&prepared.scenario, shard);
    // The live metrics' port too: the endpoint serves the run's snapshots from the start.
    let snapshots = watch::channel(Snapshot::default());
    let live = serve_live_metrics(&args, &prepared.scenario, shard, &snapshots.1)?;
    let clients = (plan.devices.len() + plan.observers.len()) as u64;
    let broker = BrokerPlan::of(&prepared);
    limits::ensure_open_files(clients, broker.descriptors_per_client(), broker.listeners())?;
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());

    let broker = broker.start(&prepared, &plan, clients)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("fleet-worker")
        .enable_all()
        .build()
        .context("starting the fleet's runtime")?;
    let calibration = calibrate_now(&runtime, &stop);
    let target = broker.target().clone();
    let machine = fleetbench_metrics::cpu::MachineLoad::start();
    if !stop.is_stopped() {
        preflight(&runtime, &target, &stop, args.connect_timeout)?;
    }
    let start =
        (from_env.start_at.as_ref()).map(|s| wait_for_start(&runtime, s, &stop, args.quiet));
    let fleet = if stop.is_stopped() {
        RunOutcome::not_started(&plan, true)
    } else {
        drive(
            &runtime,
            &args,
            (&prepared, &plan),
            &broker,
            &stop,
            Watchers {
                log_file: log_file.as_ref(),
                snapshots,
            },
        )?
    };
    runtime.shutdown_timeout(Duration::from_secs(2));
    let ended = broker.stop();
    let context = RunContext {
        environment: crate::environment::detect(),
        started_unix_s,
        shard,
        broker: ended.label,
        tcp_nodelay: ended.tcp_nodelay,
        broker_process: ended.process,
        broker_watch: ended.health,
        calibration,
        machine_busy_cores: machine.busy_cores(),
        start,
    };
    let report = Report::from_run(&prepared.scenario, &plan, &fleet, &context);
    if let Some(live) = &live {
        live.settle(&report.totals);
    }
    let outcome = finish(&report, &fleet, outputs, log_file.as_ref(), started_unix_s);
    if let (Some(_), Some(linger)) = (&live, args.metrics_linger) {
        // The run's own exit code stands: a signal only ends the wait.
        stop.linger(linger);
    }
    outcome
}

/// The endpoint of `--metrics-listen`, serving the run's snapshots, when asked for.
fn serve_live_metrics(
    args: &RunArgs,
    scenario: &fleetbench_scenario::Scenario,
    shard: fleetbench_scenario::Shard,
    snapshots: &watch::Receiver<Snapshot>,
) -> anyhow::Result<Option<std::sync::Arc<crate::live_metrics::LiveMetrics>>> {
    let Some(addr) = args.metrics_listen else {
        return Ok(None);
    };
    let groups = scenario.groups.iter().map(|g| g.name.clone());
    let live = crate::live_metrics::LiveMetrics::new(
        snapshots.clone(),
        &scenario.name,
        format!("{}/{}", shard.index, shard.count),
        groups.collect(),
    );
    let bound = crate::live_metrics::serve(addr, live.clone())?;
    if !args.quiet {
        eprintln!("live metrics at http://{bound}/metrics");
    }
    Ok(Some(live))
}

/// What watches a run besides the report: its log file and the channel of its snapshots.
struct Watchers<'a> {
    log_file: Option<&'a LogFile>,
    snapshots: (watch::Sender<Snapshot>, watch::Receiver<Snapshot>),
}

/// The unit the regression gate states timing in: measured on this machine, now, while the
/// broker is still idle. None when it fails, times out or the run is stopped meanwhile.
pub(crate) fn calibrate_now(runtime: &Runtime, stop: &Stop) -> Option<Calibration> {
    if stop.is_stopped() {
        return None;
    }
    let measured = runtime.block_on(async {
        tokio::select! {
            r = tokio::time::timeout(CALIBRATION_TIMEOUT, calibrate(CalibrationWork::default())) => Some(r),
            () = stop.token.cancelled() => None,
        }
    })?;
    match measured {
        Ok(Ok(c)) => {
            info!(
                core_round_trip_us = c.core_round_trip_us,
                round_trips_per_s = c.round_trips_per_s,
                "calibrated"
            );
            Some(c)
        }
        Ok(Err(e)) => {
            warn!("{e}; the report carries no calibration");
            None
        }
        Err(_) => {
            warn!("calibration did not finish within {CALIBRATION_TIMEOUT:?}; the report carries no calibration");
            None
        }
    }
}

/// Wait for the common start of all shards (unless stopped meanwhile), and say how late this
/// run starts against it. Shards compare wall clocks only here.
fn wait_for_start(runtime: &Runtime, start: &StartAt, stop: &Stop, quiet: bool) -> StartReport {
    if let Ok(ahead) = start.at.duration_since(SystemTime::now()) {
        if !quiet {
            eprintln!(
                "waiting {:.1}s for the common start {}",
                ahead.as_secs_f64(),
                start.text
            );
        }
        runtime.block_on(async {
            tokio::select! {
                () = tokio::time::sleep(ahead) => {}
                () = stop.token.cancelled() => {}
            }
        });
    }
    let lateness = SystemTime::now()
        .duration_since(start.at)
        .unwrap_or_default();
    info!(lateness_s = lateness.as_secs_f64(), "starting the fleet");
    StartReport {
        at: start.text.clone(),
        lateness_s: lateness.as_secs_f64(),
    }
}

/// One client connects as the fleet will: a broker that refuses, does not answer or does not
/// exist ends the run here (exit 1), with the cause, within the connect timeout.
pub(crate) fn preflight(
    runtime: &Runtime,
    target: &Target,
    stop: &Stop,
    timeout: Duration,
) -> anyhow::Result<()> {
    let probed = runtime.block_on(async {
        tokio::select! {
            r = fleetbench_fleet::probe::probe(target, timeout) => Some(r),
            () = stop.token.cancelled() => None,
        }
    });
    match probed {
        Some(Ok(took)) => {
            info!(connack_us = took.as_micros() as u64, "the broker answers");
            Ok(())
        }
        Some(Err(e)) => Err(anyhow::Error::new(e).context("the broker cannot be used")),
        // Stopped: the fleet run sees the stop at once and ends with an interrupted report.
        None => Ok(()),
    }
}

/// Run the fleet, with the live monitor or the progress line beside it.
fn drive(
    runtime: &Runtime,
    args: &RunArgs,
    (prepared, plan): (&Prepared, &Plan),
    broker: &RunningBroker,
    stop: &Stop,
    watchers: Watchers,
) -> anyhow::Result<RunOutcome> {
    let Watchers {
        log_file,
        snapshots: (snap_tx, snap_rx),
    } = watchers;
    let target = broker.target().clone();
    let scenario = &prepared.scenario;
    let timing = Timing {
        duration: scenario.duration,
        drain_timeout: scenario.drain_timeout,
        warmup: scenario.warmup,
    };
    let mut fleet_options = FleetOptions::default();
    fleet_options.faults.receive_delay = args.fault_receive_delay_us.map(Duration::from_micros);
    fleet_options.restart_broker = broker.restarter(scenario);
    fleet_options.loops = args.loops.map(usize::from);
    let meta = Meta {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        broker: broker.label().to_string(),
        duration: scenario.duration,
        drain_timeout: scenario.drain_timeout,
        groups: scenario.groups.iter().map(|g| g.name.clone()).collect(),
        phases: scenario.phases.iter().map(|p| p.name.clone()).collect(),
        log_path: log_file.map(|l| l.path().display().to_string()),
        faults: (scenario.faults.iter())
            .map(|f| fleetbench_monitor::FaultMark {
                label: f.label(),
                at: f.at,
                length: f.length,
            })
            .collect(),
    };
    // The monitor runs on a thread of its own and only reads snapshots: it never holds up
    // the fleet.
    let monitor_thread = if wants_monitor(args) {
        let (rx, token) = (snap_rx.clone(), stop.token.clone());
        stop.monitor_up
            .store(true, std::sync::atomic::Ordering::Relaxed);
        Some(
            std::thread::Builder::new()
                .name("monitor".into())
                .spawn(move || fleetbench_monitor::run(meta, rx, token))
                .context("starting the monitor")?,
        )
    } else {
        None
    };
    let every = Duration::from_secs_f64(args.progress_every.max(0.1));
    let show_progress = !args.quiet && monitor_thread.is_none();
    let result = runtime.block_on(async {
        let progress = show_progress.then(|| tokio::spawn(progress::run(snap_rx, every)));
        let token = stop.token.clone();
        let r = fleetbench_fleet::run(plan, target, timing, fleet_options, token, snap_tx).await;
        if let Some(p) = progress {
            p.abort();
        }
        r
    });
    if let Some(t) = monitor_thread {
        // The snapshot channel closed with the run: the monitor restores the terminal and ends.
        match t.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("warning: the monitor failed: {e}"),
            Err(_) => eprintln!("warning: the monitor panicked (the terminal was restored)"),
        }
        stop.monitor_up
            .store(false, std::sync::atomic::Ordering::Relaxed);
    }
    result.context("running the fleet")
}

/// Write the report and the interval log, print the summary, and turn the verdict into the
/// exit code. The summary is printed even when writing fails.
fn finish(
    report: &Report,
    fleet: &RunOutcome,
    outputs: Outputs,
    log_file: Option<&LogFile>,
    started_unix_s: u64,
) -> anyhow::Result<Outcome> {
    let name = report.scenario_name().to_string();
    let mut failed: Vec<anyhow::Error> = Vec::new();
    let outputs_to_stdout = outputs.report_to_stdout;
    if let Some(out) = outputs.report {
        match report.to_json() {
            Ok(json) => {
                if let Err(e) = out.write(json.as_bytes()) {
                    failed.push(e);
                }
            }
            Err(e) => failed.push(anyhow::Error::new(e).context("encoding the report")),
        }
    }
    if let Some(out) = outputs.hlog {
        let mut log = Vec::new();
        let start = UNIX_EPOCH + Duration::from_secs(started_unix_s);
        match fleet.interval_log.write_to(&mut log, start, &name) {
            Ok(()) => {
                if let Err(e) = out.write(&log) {
                    failed.push(e);
                }
            }
            Err(e) => failed.push(anyhow::Error::new(e).context("encoding the interval log")),
        }
    }
    if let Some(out) = outputs.html {
        match fleetbench_report::html::render(report, None) {
            Ok(page) => {
                if let Err(e) = out.write(page.as_bytes()) {
                    failed.push(e);
                }
            }
            Err(e) => failed.push(anyhow::Error::new(e).context("making the HTML report")),
        }
    }
    crate::say(summary::render(report));
    if outputs_to_stdout {
        if let Err(e) = print_report_line(report) {
            failed.push(e);
        }
    }
    if let Some(l) = log_file {
        if l.finish() {
            crate::say(format_args!("  logs: {}\n", l.path().display()));
        }
    }
    if let Some(e) = failed.pop() {
        for other in failed {
            eprintln!("error: {other:#}");
        }
        return Err(e);
    }
    Ok(match report.verdict {
        Verdict::Interrupted => Outcome::Interrupted,
        Verdict::Pass => Outcome::Pass,
        Verdict::Fail => Outcome::ExpectationsFailed,
    })
}

/// The report as one line on stdout (`--report -`), for a pod's log.
fn print_report_line(report: &Report) -> anyhow::Result<()> {
    use std::io::Write;
    let line = serde_json::to_string(report).context("encoding the report")?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}{line}", crate::outputs::REPORT_LINE)
        .and_then(|()| out.flush())
        .context("printing the report on stdout")
}
