//! `fleetbench run`: scenario -> broker -> fleet -> report -> verdict.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use fleetbench_broker::{EmbeddedBroker, EmbeddedConfig};
use fleetbench_fleet::calibrate::{calibrate, CalibrationWork, CALIBRATION_TIMEOUT};
use fleetbench_fleet::transport::{tls_config, Transport};
use fleetbench_fleet::{FleetOptions, Target, Timing};
use fleetbench_metrics::report::Verdict;
use fleetbench_metrics::{summary, Snapshot};
use fleetbench_monitor::Meta;
use fleetbench_scenario::{BrokerTarget, ExternalBroker, Plan, Protocol, Scheme, Shard};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::child_broker::ChildBroker;
use crate::report::{build_report, RunContext};
use crate::{check, limits, progress, Outcome, RunArgs, UsageError};

/// The monitor opens when asked for (not `--no-tui`) and both stdout and stdin are terminals.
pub fn wants_monitor(args: &RunArgs) -> bool {
    use std::io::IsTerminal;
    !args.no_tui && std::io::stdout().is_terminal() && std::io::stdin().is_terminal()
}

pub fn run(args: RunArgs, log_file: Option<std::path::PathBuf>) -> anyhow::Result<Outcome> {
    let monitor = wants_monitor(&args);
    let scenario = check::load(&args.scenario)?;
    let shard = args.shard.unwrap_or(Shard::WHOLE);
    let plan = Plan::build(&scenario, shard);
    let clients = (plan.devices.len() + plan.observers.len()) as u64;
    let embedded = matches!(scenario.broker, BrokerTarget::Embedded(_));
    // Both ends of every connection live in this process only when the broker does.
    let in_process = matches!(&scenario.broker, BrokerTarget::Embedded(e) if !e.child_process);
    let listeners = match &scenario.broker {
        BrokerTarget::Embedded(e) => u64::from(e.listeners),
        BrokerTarget::External(_) => 0,
    };
    limits::ensure_open_files(clients, if in_process { 2 } else { 1 }, listeners)?;

    let max_payload = plan
        .devices
        .iter()
        .map(|d| d.largest_payload())
        .max()
        .unwrap_or(0);
    let mqtt5 = plan.protocol == Protocol::V5;
    let (target, broker, ctx_broker, tcp_nodelay) = match &scenario.broker {
        BrokerTarget::Embedded(e) => {
            let (broker, endpoints, label) = if e.child_process {
                let child =
                    ChildBroker::start(e.listeners, e.tcp_nodelay, clients as usize + 64, mqtt5)
                        .context("starting the broker process")?;
                let endpoints = child.endpoints.clone();
                (
                    RunningBroker::Child(child),
                    endpoints,
                    "embedded (child process)",
                )
            } else {
                let broker = EmbeddedBroker::start(&EmbeddedConfig {
                    listeners: e.listeners,
                    tcp_nodelay: e.tcp_nodelay,
                    max_connections: clients as usize + 64,
                    max_payload_size: max_payload + 1024,
                    mqtt5,
                    ..EmbeddedConfig::default()
                })
                .context("starting the embedded broker")?;
                let endpoints = broker.endpoints().clone();
                (RunningBroker::InProcess(broker), endpoints, "embedded")
            };
            let target = Target {
                host: endpoints.host.clone(),
                ports: endpoints.ports.clone(),
                credentials: None,
                transport: Transport::Tcp,
                protocol: plan.protocol,
            };
            let desc = format!("{label} {}", endpoints.describe());
            (target, broker, desc, Some(e.tcp_nodelay))
        }
        BrokerTarget::External(x) => {
            let password = match &x.password_env {
                Some(var) => Some(std::env::var(var).map_err(|_| {
                    UsageError(format!(
                        "broker.password_env names {var}, which is not set in the environment"
                    ))
                })?),
                None => None,
            };
            let credentials = x
                .username
                .clone()
                .map(|u| (u, password.unwrap_or_default()));
            let target = Target {
                host: x.host.clone(),
                ports: vec![x.port],
                credentials,
                transport: transport(x, &args.scenario)?,
                protocol: plan.protocol,
            };
            (
                target,
                RunningBroker::External,
                x.url_without_credentials(),
                None,
            )
        }
    };
    info!(broker = %ctx_broker, devices = plan.devices.len(), observers = plan.observers.len(), "starting run");

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name("fleet-worker")
        .enable_all()
        .build()
        .context("starting the fleet's runtime")?;
    // The unit the regression gate states timing in: measured on this machine, now, while the
    // broker is still idle.
    let calibration = match runtime.block_on(async {
        tokio::time::timeout(CALIBRATION_TIMEOUT, calibrate(CalibrationWork::default())).await
    }) {
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
    };
    let started_unix_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let timing = Timing {
        duration: scenario.duration,
        drain_timeout: scenario.drain_timeout,
        warmup: scenario.warmup,
    };
    let progress_every = Duration::from_secs_f64(args.progress_every.max(0.1));
    let mut fleet_options = FleetOptions::default();
    fleet_options.faults.receive_delay = args.fault_receive_delay_us.map(Duration::from_micros);
    let quiet = args.quiet;
    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_tx = Arc::new(stop_tx);
    let (snap_tx, snap_rx) = watch::channel(Snapshot::default());
    let meta = Meta {
        scenario: scenario.name.clone(),
        description: scenario.description.clone(),
        broker: ctx_broker.clone(),
        duration: scenario.duration,
        drain_timeout: scenario.drain_timeout,
        groups: scenario.groups.iter().map(|g| g.name.clone()).collect(),
        phases: scenario.phases.iter().map(|p| p.name.clone()).collect(),
        log_path: log_file.as_ref().map(|p| p.display().to_string()),
    };
    // The monitor runs on a thread of its own and only reads snapshots: it never holds up
    // the fleet.
    let monitor_thread = if monitor {
        let (rx, stop) = (snap_rx.clone(), stop_tx.clone());
        Some(
            std::thread::Builder::new()
                .name("monitor".into())
                .spawn(move || fleetbench_monitor::run(meta, rx, stop))
                .context("starting the monitor")?,
        )
    } else {
        None
    };
    let result = runtime.block_on(async {
        tokio::spawn(watch_signals(stop_tx.clone(), monitor));
        let progress =
            (!quiet && !monitor).then(|| tokio::spawn(progress::run(snap_rx, progress_every)));
        let r = fleetbench_fleet::run(&plan, target, timing, fleet_options, stop_rx, snap_tx).await;
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
    }
    runtime.shutdown_timeout(Duration::from_secs(2));
    let broker_process = match broker {
        RunningBroker::InProcess(b) => {
            b.stop();
            None
        }
        RunningBroker::Child(b) => Some(b.stop()),
        RunningBroker::External => None,
    };
    let fleet = result.context("running the fleet")?;

    let report = build_report(
        &scenario,
        &plan,
        &fleet,
        &RunContext {
            started_unix_s,
            shard,
            broker: ctx_broker,
            tcp_nodelay,
            embedded,
            broker_process,
            calibration,
        },
    );
    if let Some(path) = &args.report {
        let json = report.to_json().context("encoding the report")?;
        crate::write_file(path, json.as_bytes(), "report")?;
    }
    if let Some(path) = args
        .hlog
        .clone()
        .or_else(|| args.report.as_ref().map(|r| r.with_extension("hlog")))
    {
        let mut log = Vec::new();
        fleet
            .interval_log
            .write_to(
                &mut log,
                UNIX_EPOCH + Duration::from_secs(started_unix_s),
                &scenario.name,
            )
            .context("encoding the interval log")?;
        crate::write_file(&path, &log, "interval log")?;
    }
    print!("{}", summary::render(&report));
    if let Some(path) = &log_file {
        println!("  logs: {}", path.display());
    }
    Ok(if fleet.interrupted {
        Outcome::Interrupted
    } else if report.verdict == Verdict::Pass {
        Outcome::Pass
    } else {
        Outcome::ExpectationsFailed
    })
}

/// The broker a run talks to, and how it ends.
enum RunningBroker {
    InProcess(EmbeddedBroker),
    Child(ChildBroker),
    External,
}

/// First Ctrl-C (or SIGTERM): stop publishing, drain briefly, write the report. Third: leave at
/// once.
async fn watch_signals(stop: Arc<watch::Sender<bool>>, monitor: bool) {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let mut count = 0;
    loop {
        let term_recv = async {
            match term.as_mut() {
                Some(t) => t.recv().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            _ = term_recv => {}
        }
        count += 1;
        if count == 1 {
            eprintln!("interrupted: stopping the fleet, draining and writing the report (twice more to abort)");
            let _ = stop.send(true);
        } else if count >= 3 {
            if monitor {
                fleetbench_monitor::app::restore_terminal();
            }
            eprintln!("aborted");
            std::process::exit(130);
        }
    }
}

/// The transport an external broker's URL asks for; certificate paths are relative to the
/// scenario file. Certificates are read and checked here, before any connection.
fn transport(x: &ExternalBroker, scenario: &Path) -> anyhow::Result<Transport> {
    let dir = scenario.parent().unwrap_or(Path::new("."));
    let file = |f: &Option<String>| f.as_ref().map(|f| dir.join(f));
    let tls = || -> anyhow::Result<_> {
        let ca = file(&x.tls.ca_file);
        let cert = file(&x.tls.client_cert);
        let key = file(&x.tls.client_key);
        let client = cert.as_deref().zip(key.as_deref());
        tls_config(ca.as_deref(), client).map_err(|e| {
            UsageError(format!(
                "{}: broker: {e} (certificate paths are relative to the scenario file)",
                scenario.display()
            ))
            .into()
        })
    };
    Ok(match x.scheme {
        Scheme::Mqtt => Transport::Tcp,
        Scheme::Mqtts => Transport::Tls(tls()?),
        Scheme::Ws => Transport::Ws {
            path: x.path.clone(),
        },
        Scheme::Wss => Transport::Wss {
            path: x.path.clone(),
            tls: tls()?,
        },
    })
}
