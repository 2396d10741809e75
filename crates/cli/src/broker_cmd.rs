//! `fleetbench broker`: the embedded broker, standalone, in the foreground until Ctrl-C or
//! SIGTERM. Its watch restarts a listener that stops completing CONNECTs; each such event is
//! printed on stdout as a line `event: {json}` (a run with `process = "child"` reads them into
//! its report). A listener that cannot be brought back ends the process (exit 1): it never
//! lives on accepting sockets and serving no one.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use fleetbench_broker::{BrokerError, EmbeddedBroker, EmbeddedConfig};

use crate::broker_metrics::BrokerMetrics;
use crate::child_broker::{WatchEvent, EVENT_PREFIX};
use crate::running_broker::watch_report;
use crate::stop::Stop;
use crate::{BrokerArgs, Outcome, UsageError};

pub(crate) fn broker(args: BrokerArgs, stop: Stop) -> anyhow::Result<Outcome> {
    let ips: Vec<_> = args.listen.iter().map(|a| a.ip()).collect();
    let bind = ips[0];
    if ips.iter().any(|ip| *ip != bind) {
        return Err(UsageError("all --listen addresses must share one IP address".into()).into());
    }
    // Port 0 asks for a free port (the banner says which); any other port once.
    let ports: Vec<u16> = args.listen.iter().map(|a| a.port()).collect();
    let twice = (ports.iter().enumerate()).position(|(i, p)| *p != 0 && ports[..i].contains(p));
    if let Some(i) = twice {
        return Err(UsageError(format!(
            "--listen {} is given twice (listener {i}); give each listener a port of its own",
            args.listen[i]
        ))
        .into());
    }
    let credentials = match (&args.username, &args.password_env) {
        (Some(u), Some(var)) => Some((u.clone(), password(var)?)),
        _ => None,
    };
    let config = EmbeddedConfig {
        bind,
        ports,
        tcp_nodelay: !args.no_tcp_nodelay,
        max_connections: args.max_connections,
        credentials,
        allow_anonymous: args.allow_anonymous,
        mqtt5: args.mqtt5,
        ..EmbeddedConfig::default()
    }
    .with_filter_log((args.filter_log_mib as usize) << 20);
    // Each connection is a descriptor: take the whole allowance (the hard limit).
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let broker = match EmbeddedBroker::start(&config) {
        Ok(b) => b,
        Err(e @ BrokerError::OpenListener { .. }) => {
            return Err(UsageError(format!(
                "{e} (--username with --password-env, or --allow-anonymous)"
            ))
            .into())
        }
        Err(e) => return Err(e).context("starting the broker"),
    };
    let banner = format!(
        "fleetbench broker listening on {} (Ctrl-C to stop)",
        broker.endpoints().describe()
    );
    let metrics = match args.metrics_listen {
        Some(addr) => {
            let ports = (0..args.listen.len()).map(|i| broker.endpoints().port_for(i));
            let m = Arc::new(BrokerMetrics::new(ports.collect()));
            let bound = crate::live_metrics::serve(addr, m.clone())?;
            eprintln!("broker metrics at http://{bound}/metrics");
            Some(m)
        }
        None => None,
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{banner}").and_then(|()| out.flush());
    let result = serve(&broker, &stop, metrics.as_deref());
    broker.stop();
    result?;
    let _ = writeln!(std::io::stdout(), "fleetbench broker stopped");
    Ok(Outcome::Pass)
}

/// The password `--password-env` names: set, and not empty (an empty password would let in
/// anyone who knows the user name).
fn password(var: &str) -> anyhow::Result<String> {
    match std::env::var(var) {
        Ok(p) if !p.is_empty() => {
            crate::logging::keep_secret(&p);
            Ok(p)
        }
        Ok(_) => Err(UsageError(format!(
            "--password-env names {var}, which is empty; an empty password is refused"
        ))
        .into()),
        Err(_) => Err(UsageError(format!(
            "--password-env names {var}, which is not set (or not UTF-8)"
        ))
        .into()),
    }
}

/// Until stopped: report what the broker's watch sees, and end when a listener is lost.
fn serve(
    broker: &EmbeddedBroker,
    stop: &Stop,
    metrics: Option<&BrokerMetrics>,
) -> anyhow::Result<()> {
    let (mut panics, mut restarts) = (0, 0);
    while !stop.is_stopped() {
        std::thread::sleep(Duration::from_millis(200));
        let health = watch_report(&broker.health());
        if let Some(m) = metrics {
            m.update(health.clone());
        }
        let mut news: Vec<WatchEvent> = health.restarts[restarts..]
            .iter()
            .map(|r| WatchEvent {
                restart: Some(r.clone()),
                panics: health.panics,
            })
            .collect();
        if news.is_empty() && health.panics != panics {
            news.push(WatchEvent {
                restart: None,
                panics: health.panics,
            });
        }
        panics = health.panics;
        restarts = health.restarts.len();
        // Whoever reads the events may have gone: the broker serves on regardless.
        let mut out = std::io::stdout().lock();
        for event in &news {
            let json = serde_json::to_string(event).context("encoding a watch event")?;
            let _ = writeln!(out, "{EVENT_PREFIX}{json}");
        }
        let _ = out.flush();
        if let Some(lost) = health.restarts.iter().find(|r| !r.relistened) {
            anyhow::bail!(
                "listener {} stopped completing CONNECTs ({}) and could not listen on its port \
                 again",
                lost.port,
                lost.reason
            );
        }
    }
    Ok(())
}
