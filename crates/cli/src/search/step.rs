//! One step of a capacity search: the scenario with the knob at the step's value, run against
//! the search's broker for a warm-up that is not judged and a window that is, watched as it runs
//! so that a step clearly past the limit ends early.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fleetbench_fleet::{FleetOptions, Timing};
use fleetbench_metrics::snapshot::Stage;
use fleetbench_metrics::{RunOutcome, Snapshot};
use fleetbench_report::report::{Calibration, ProcessUsage};
use fleetbench_report::{Report, RunContext};
use fleetbench_scenario::{Plan, Scenario, Shard};
use tokio::runtime::Runtime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::judge::{Sample, Watch};
use crate::running_broker::RunningBroker;
use crate::stop::Stop;

/// How long each step lasts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepTiming {
    /// From the start of the step's publish window, not judged (the fleet connecting and the
    /// broker settling).
    pub(crate) settle: Duration,
    /// The judged window after it.
    pub(crate) window: Duration,
    /// The pause after a failed step, for the broker to drain before the next.
    pub(crate) rest: Duration,
}

/// What every step shares.
pub(crate) struct Bench<'a> {
    pub(crate) runtime: &'a Runtime,
    pub(crate) broker: &'a RunningBroker,
    pub(crate) stop: &'a Stop,
    pub(crate) timing: StepTiming,
    pub(crate) calibration: Option<Calibration>,
    pub(crate) broker_pid: Option<u32>,
    /// The p99 from intended the steps are judged by, if any: the yardstick of "clearly past".
    pub(crate) target_p99: Option<Duration>,
    /// Open the live monitor for each step.
    pub(crate) monitor: bool,
    /// Where every step's snapshots also go: the `--metrics-listen` endpoint's channel.
    pub(crate) live: Option<&'a watch::Sender<Snapshot>>,
}

/// A step as run: its scenario, the fleet's outcome, its report and what was seen live.
pub(crate) struct Ran {
    pub(crate) scenario: Scenario,
    pub(crate) report: Report,
    pub(crate) samples: Vec<Sample>,
    /// Why it ended early, when it did.
    pub(crate) ended_early: Option<String>,
    pub(crate) broker_cores: Option<f64>,
    /// How busy the cores this process may run on were (busy, allowed), by anything.
    pub(crate) cores_busy: Option<(f64, f64)>,
}

/// How long the slowest group of `scenario` takes to connect at its `connect_rate` (at most
/// ten minutes).
pub(crate) fn connect_time(scenario: &Scenario) -> Duration {
    let s = (scenario.groups.iter())
        .map(|g| f64::from(g.count) / g.connect_rate.unwrap_or(f64::INFINITY))
        .fold(0.0, f64::max);
    Duration::from_secs_f64(s.min(600.0))
}

/// Run `scenario` as one step; `progress` labels its progress lines (None: quiet).
pub(crate) fn run(
    bench: &Bench,
    mut scenario: Scenario,
    progress: Option<&str>,
) -> anyhow::Result<Ran> {
    // The fleet connects within the warm-up, whatever the step's size.
    let settle = bench.timing.settle + connect_time(&scenario);
    scenario.warmup = settle;
    scenario.duration = settle + bench.timing.window;
    let plan = Plan::build(&scenario, Shard::WHOLE);
    let timing = Timing {
        duration: scenario.duration,
        drain_timeout: scenario.drain_timeout,
        warmup: settle,
    };
    let offered: f64 = plan.devices.iter().map(|d| d.rate).sum();
    let token = bench.stop.token.child_token();
    let (snap_tx, snap_rx) = watch::channel(Snapshot::default());
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let machine = fleetbench_metrics::cpu::MachineLoad::start();
    let cores = super::cores::CoreLoad::start();
    let broker_before = bench.broker_pid.and_then(process_cpu_s);
    let wall = std::time::Instant::now();
    let watch = Watch::new(settle, offered, bench.target_p99);
    let monitor = (bench.monitor)
        .then(|| {
            open_monitor(
                bench,
                &scenario,
                progress.unwrap_or("step"),
                snap_rx.clone(),
            )
        })
        .transpose()?;
    let progress = progress.filter(|_| monitor.is_none()).map(str::to_string);
    let live = bench.live.cloned();
    let (fleet, (samples, ended_early)) = bench.runtime.block_on(async {
        let watcher = tokio::spawn(watch_step(watch, snap_rx, token.clone(), progress, live));
        let fleet = fleetbench_fleet::run(
            &plan,
            bench.broker.target().clone(),
            timing,
            FleetOptions::default(),
            token,
            snap_tx,
        )
        .await;
        (fleet, watcher.await.unwrap_or_default())
    });
    close_monitor(bench, monitor);
    let cores_busy = cores.busy();
    let fleet: RunOutcome = fleet?;
    let broker_cores = match (bench.broker_pid, broker_before) {
        (Some(pid), Some(before)) => process_cpu_s(pid)
            .map(|after| (after - before) / wall.elapsed().as_secs_f64().max(1e-3)),
        _ => None,
    };
    let context = context(bench, started_unix_s, broker_cores, machine.busy_cores());
    let report = Report::from_run(&scenario, &plan, &fleet, &context);
    let embedded = report.resources.cpu.broker;
    let broker_cores = broker_cores.or((embedded > 0.0).then_some(embedded));
    Ok(Ran {
        scenario,
        report,
        samples,
        ended_early,
        broker_cores,
        cores_busy,
    })
}

/// What the step's report says of where it ran.
fn context(
    bench: &Bench,
    started_unix_s: u64,
    broker_cores: Option<f64>,
    machine_busy_cores: Option<f64>,
) -> RunContext {
    RunContext {
        environment: crate::environment::detect(),
        started_unix_s,
        shard: Shard::WHOLE,
        broker: bench.broker.label().to_string(),
        tcp_nodelay: None,
        broker_process: broker_cores.map(|c| ProcessUsage {
            cpu_cores: c,
            peak_rss_bytes: 0,
        }),
        broker_watch: None,
        calibration: bench.calibration,
        machine_busy_cores,
        start: None,
    }
}

/// Read the step's snapshots as they come: keep the judged window's, end the step when it is
/// clearly past the limit, and print the progress line.
async fn watch_step(
    mut watch: Watch,
    mut rx: watch::Receiver<Snapshot>,
    token: CancellationToken,
    progress: Option<String>,
    live: Option<watch::Sender<Snapshot>>,
) -> (Vec<Sample>, Option<String>) {
    let mut last_line = std::time::Instant::now();
    while rx.changed().await.is_ok() {
        let s = rx.borrow_and_update().clone();
        if let Some(tx) = &live {
            tx.send_replace(s.clone());
        }
        if s.stage == Stage::Done {
            break;
        }
        if let Some(why) = watch.see(&s) {
            tracing::info!(%why, "ending the step early");
            token.cancel();
            break;
        }
        if let Some(label) = &progress {
            if last_line.elapsed() >= Duration::from_secs(5) {
                last_line = std::time::Instant::now();
                eprintln!(
                    "  {label}: {} {:.0}s, {} of {} connected, {:.0} msg/s sent, {:.0} delivered, {} in flight, p99 {}",
                    s.stage.label(),
                    s.elapsed.as_secs_f64(),
                    s.devices_connected,
                    s.devices_target,
                    s.publish_rate,
                    s.deliver_rate,
                    s.outstanding(),
                    fleetbench_metrics::fmt::fmt_us(s.interval_from_intended.p99_us),
                );
            }
        }
    }
    watch.finish()
}

/// CPU seconds process `pid` has used, from /proc (None when it cannot be read).
fn process_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    fleetbench_metrics::env::stat_cpu_seconds(&stat).map(|(_, s)| s)
}

/// The live monitor of one step, on a thread of its own: it reads the step's snapshots and
/// closes with them; its `q` stops the whole search.
fn open_monitor(
    bench: &Bench,
    scenario: &Scenario,
    label: &str,
    rx: watch::Receiver<Snapshot>,
) -> anyhow::Result<std::thread::JoinHandle<std::io::Result<()>>> {
    let meta = fleetbench_monitor::Meta {
        scenario: format!("{} (search {label})", scenario.name),
        description: scenario.description.clone(),
        broker: bench.broker.label().to_string(),
        duration: scenario.duration,
        drain_timeout: scenario.drain_timeout,
        groups: scenario.groups.iter().map(|g| g.name.clone()).collect(),
        phases: Vec::new(),
        log_path: None,
        faults: Vec::new(),
    };
    let token = bench.stop.token.clone();
    (bench.stop.monitor_up).store(true, std::sync::atomic::Ordering::Relaxed);
    std::thread::Builder::new()
        .name("monitor".into())
        .spawn(move || fleetbench_monitor::run(meta, rx, token))
        .map_err(|e| anyhow::anyhow!("starting the monitor: {e}"))
}

fn close_monitor(bench: &Bench, monitor: Option<std::thread::JoinHandle<std::io::Result<()>>>) {
    let Some(t) = monitor else { return };
    match t.join() {
        Ok(Ok(())) => {}
        Ok(Err(e)) => eprintln!("warning: the monitor failed: {e}"),
        Err(_) => eprintln!("warning: the monitor panicked (the terminal was restored)"),
    }
    (bench.stop.monitor_up).store(false, std::sync::atomic::Ordering::Relaxed);
}
