//! `fleetbench broker`: the embedded broker, standalone, in the foreground until Ctrl-C.

use anyhow::Context;
use fleetbench_broker::{BrokerError, EmbeddedBroker, EmbeddedConfig};

use crate::{BrokerArgs, Outcome, UsageError};

pub fn broker(args: BrokerArgs) -> anyhow::Result<Outcome> {
    let ips: Vec<_> = args.listen.iter().map(|a| a.ip()).collect();
    let bind = ips[0];
    if ips.iter().any(|ip| *ip != bind) {
        return Err(UsageError("all --listen addresses must share one IP address".into()).into());
    }
    let credentials = match (&args.username, &args.password_env) {
        (Some(u), Some(var)) => Some((
            u.clone(),
            std::env::var(var)
                .map_err(|_| UsageError(format!("--password-env names {var}, which is not set")))?,
        )),
        _ => None,
    };
    let config = EmbeddedConfig {
        bind,
        ports: args.listen.iter().map(|a| a.port()).collect(),
        tcp_nodelay: !args.no_tcp_nodelay,
        max_connections: args.max_connections,
        credentials,
        allow_anonymous: args.allow_anonymous,
        mqtt5: args.mqtt5,
        ..EmbeddedConfig::default()
    };
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
    println!(
        "fleetbench broker listening on {} (Ctrl-C to stop)",
        broker.endpoints().describe()
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    runtime
        .block_on(tokio::signal::ctrl_c())
        .context("waiting for Ctrl-C")?;
    broker.stop();
    println!("fleetbench broker stopped");
    Ok(Outcome::Pass)
}
