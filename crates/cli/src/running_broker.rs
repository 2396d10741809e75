//! The broker a run talks to: the embedded one in this process, the same in a child process,
//! or an external one; how the fleet reaches it, and what is left to report when it ends.

use anyhow::Context;
use fleetbench_broker::{BrokerHealth, EmbeddedBroker, EmbeddedConfig};
use fleetbench_fleet::transport::Transport;
use fleetbench_fleet::Target;
use fleetbench_report::report::{BrokerWatch, ListenerRestartReport, ProcessUsage};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fleetbench_fleet::restart::{BrokerRestarter, RestartFn};
use fleetbench_scenario::{BrokerTarget, FaultKind, Plan, Protocol, Scenario};

use crate::check::Prepared;
use crate::child_broker::ChildBroker;

/// Which broker a scenario asks for, before it starts.
pub(crate) enum BrokerPlan {
    InProcess { listeners: u16, tcp_nodelay: bool },
    Child { listeners: u16, tcp_nodelay: bool },
    External,
}

/// A started broker, and the target the fleet connects to.
pub(crate) struct RunningBroker {
    kind: Running,
    target: Target,
    label: String,
    tcp_nodelay: Option<bool>,
}

enum Running {
    InProcess(EmbeddedBroker),
    /// Shared with the hook that restarts it for `broker_restart` faults.
    Child(Arc<Mutex<ChildBroker>>),
    External,
}

/// What a report says of the broker once it is stopped.
pub(crate) struct Ended {
    /// As it may be printed: no credentials.
    pub label: String,
    pub tcp_nodelay: Option<bool>,
    pub process: Option<ProcessUsage>,
    pub health: Option<BrokerWatch>,
}

impl RunningBroker {
    pub(crate) fn target(&self) -> &Target {
        &self.target
    }

    /// The broker as it may be printed: no credentials.
    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    /// Stop the broker (the external one is left alone) and say what it was and did.
    pub(crate) fn stop(self) -> Ended {
        let (process, health) = match self.kind {
            Running::InProcess(b) => {
                let health = b.health();
                b.stop();
                (None, Some(watch_report(&health)))
            }
            Running::Child(b) => {
                let (usage, events) = match Arc::try_unwrap(b).map(Mutex::into_inner) {
                    Ok(Ok(b)) => b.stop(),
                    // Still shared (a restart thread outlived the run) or poisoned by a
                    // panic in one: it ends when the last handle goes.
                    _ => (ProcessUsage::default(), Vec::new()),
                };
                let health = BrokerWatch {
                    panics: events.iter().map(|e| e.panics).max().unwrap_or(0),
                    restarts: events.into_iter().filter_map(|e| e.restart).collect(),
                    unrecorded_restarts: 0,
                };
                (Some(usage), Some(health))
            }
            Running::External => (None, None),
        };
        Ended {
            label: self.label,
            tcp_nodelay: self.tcp_nodelay,
            process,
            health,
        }
    }
}

impl RunningBroker {
    /// How the run restarts this broker for the scenario's `broker_restart` faults: the child
    /// broker is killed and started again on its ports; an external broker's command is run.
    pub(crate) fn restarter(&self, scenario: &Scenario) -> Option<BrokerRestarter> {
        let commands: Vec<(Vec<String>, Duration)> = (scenario.faults.iter())
            .filter_map(|f| match &f.kind {
                FaultKind::BrokerRestart { command, timeout } => {
                    Some((command.clone().unwrap_or_default(), *timeout))
                }
                _ => None,
            })
            .collect();
        if commands.is_empty() {
            return None;
        }
        let hook: Arc<RestartFn> = match &self.kind {
            Running::Child(child) => {
                let child = child.clone();
                Arc::new(move |_, down| {
                    let mut c = child.lock().map_err(|_| "the broker handle is poisoned")?;
                    c.restart(down).map_err(|e| format!("{e:#}"))
                })
            }
            Running::External => Arc::new(move |n, _| match commands.get(n) {
                Some((command, timeout)) => crate::restart_cmd::run(command, *timeout),
                None => Err(format!("no command for restart {n}")),
            }),
            // Validation refuses restarts of the in-process broker.
            Running::InProcess(_) => return None,
        };
        Some(BrokerRestarter(hook))
    }
}

/// The broker watch's findings as the report carries them.
pub(crate) fn watch_report(h: &BrokerHealth) -> BrokerWatch {
    BrokerWatch {
        panics: h.panics,
        restarts: h
            .restarts
            .iter()
            .map(|r| ListenerRestartReport {
                port: r.port,
                at_s: r.at.as_secs_f64(),
                reason: r.reason.clone(),
                relistened: r.relistened,
                recovered: r.recovered,
            })
            .collect(),
        unrecorded_restarts: h.unrecorded_restarts,
    }
}

impl BrokerPlan {
    /// The broker `prepared`'s scenario asks for.
    pub(crate) fn of(prepared: &Prepared) -> BrokerPlan {
        match &prepared.scenario.broker {
            BrokerTarget::Embedded(e) if e.child_process => BrokerPlan::Child {
                listeners: e.listeners,
                tcp_nodelay: e.tcp_nodelay,
            },
            BrokerTarget::Embedded(e) => BrokerPlan::InProcess {
                listeners: e.listeners,
                tcp_nodelay: e.tcp_nodelay,
            },
            BrokerTarget::External(_) => BrokerPlan::External,
        }
    }

    /// Descriptors each client costs this process: both ends of its connection when the
    /// broker is in this process, one end otherwise.
    pub(crate) fn descriptors_per_client(&self) -> u64 {
        match self {
            BrokerPlan::InProcess { .. } => 2,
            _ => 1,
        }
    }

    /// Listening sockets in this process.
    pub(crate) fn listeners(&self) -> u64 {
        match self {
            BrokerPlan::InProcess { listeners, .. } => u64::from(*listeners),
            _ => 0,
        }
    }

    pub(crate) fn start(
        self,
        prepared: &Prepared,
        plan: &Plan,
        clients: u64,
    ) -> anyhow::Result<RunningBroker> {
        let mqtt5 = plan.protocol == Protocol::V5;
        // rumqttd's limit is on whole packets: the largest any device's messages make.
        let max_packet = plan
            .devices
            .iter()
            .map(|d| d.largest_packet())
            .max()
            .unwrap_or(fleetbench_scenario::PACKET_OVERHEAD);
        let embedded = |host: String, ports: Vec<u16>| Target {
            host,
            ports,
            credentials: None,
            transport: Transport::Tcp,
            protocol: plan.protocol,
        };
        let (kind, target, label, tcp_nodelay) = match self {
            BrokerPlan::InProcess {
                listeners,
                tcp_nodelay,
            } => {
                let broker = EmbeddedBroker::start(
                    &EmbeddedConfig {
                        listeners,
                        tcp_nodelay,
                        max_connections: clients as usize + 64,
                        max_payload_size: max_packet,
                        mqtt5,
                        ..EmbeddedConfig::default()
                    }
                    .with_filter_log(filter_log_bytes(plan)),
                )
                .context("starting the embedded broker")?;
                let e = broker.endpoints().clone();
                let label = format!("embedded {}", e.describe());
                let target = embedded(e.host, e.ports);
                (Running::InProcess(broker), target, label, Some(tcp_nodelay))
            }
            BrokerPlan::Child {
                listeners,
                tcp_nodelay,
            } => {
                let options = crate::child_broker::Options {
                    tcp_nodelay,
                    max_connections: clients as usize + 64,
                    mqtt5,
                    filter_log_mib: (filter_log_bytes(plan) >> 20).max(1) as u32,
                };
                let child = ChildBroker::start(listeners, options)
                    .context("starting the broker process")?;
                let e = child.endpoints.clone();
                let label = format!("embedded (child process) {}", e.describe());
                let target = embedded(e.host, e.ports);
                let child = Arc::new(Mutex::new(child));
                (Running::Child(child), target, label, Some(tcp_nodelay))
            }
            BrokerPlan::External => external(prepared, plan)?,
        };
        tracing::info!(broker = %label, devices = plan.devices.len(), observers = plan.observers.len(), "starting run");
        Ok(RunningBroker {
            kind,
            target,
            label,
            tcp_nodelay,
        })
    }
}

/// The scenario's external broker: nothing to start, only where it is.
fn external(
    prepared: &Prepared,
    plan: &Plan,
) -> anyhow::Result<(Running, Target, String, Option<bool>)> {
    let BrokerTarget::External(x) = &prepared.scenario.broker else {
        anyhow::bail!("the scenario names no external broker");
    };
    let target = Target {
        host: x.host.clone(),
        ports: vec![x.port],
        credentials: prepared.credentials.clone(),
        transport: prepared.transport.clone(),
        protocol: plan.protocol,
    };
    Ok((Running::External, target, x.url_without_credentials(), None))
}

/// Seconds of the scenario's peak traffic the embedded broker keeps per subscription filter:
/// room for a subscriber this far behind (a slow consumer, a persistent session away) before
/// rumqttd's log wraps and it loses messages (which the ledger counts and a finding names).
pub(crate) const FILTER_LOG_SECONDS: f64 = 20.0;

/// The bounds of each filter's log, as rumqttd counts it: a small run still gets room for
/// bursts, a large one no more than rumqttd's own default.
const FILTER_LOG_MIN: usize = 8 << 20;
const FILTER_LOG_MAX: usize = 256 << 20;

/// The log each subscription filter of the embedded broker keeps, in rumqttd's count (4 bytes,
/// the topic and the payload per message): [`FILTER_LOG_SECONDS`] of every device's messages
/// at the load's peak, within [`FILTER_LOG_MIN`] and [`FILTER_LOG_MAX`]. Everything a run
/// publishes passes through this log, so it is the broker's memory bound beyond its
/// connections: a run of any length stays within it once the log is full.
pub(crate) fn filter_log_bytes(plan: &Plan) -> usize {
    let peak = (plan.shape.phases().iter())
        .map(|p| p.rate.max(p.rate_end))
        .fold(1.0, f64::max);
    let bytes_per_s: f64 = (plan.devices.iter())
        .map(|d| d.rate * peak * (4 + d.topic.len() + d.payload.max_size()) as f64)
        .sum();
    ((bytes_per_s * FILTER_LOG_SECONDS) as usize).clamp(FILTER_LOG_MIN, FILTER_LOG_MAX)
}
