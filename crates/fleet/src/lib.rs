//! The fleet: virtual devices that publish on an open-loop schedule and observers that receive,
//! each one task that owns its connection ([`client`]), turning a [`Plan`] into traffic.
//!
//! Devices never share a lock: each records into its own buffers and hands them to the metrics
//! aggregator once a tick. Observers own their histograms and delivery ledgers.

pub mod calibrate;
pub mod client;
pub mod clock;
mod controller;
mod ctx;
mod deadline;
mod device;
mod errors;
pub mod events;
pub mod header;
pub mod loops;
mod observer;
pub mod payload;
pub mod probe;
mod proxy;
mod receive;
pub mod restart;
mod run;
mod tally;
mod ticker;
pub mod timer;
pub mod transport;

use std::time::Duration;

pub use ctx::Timing;
pub use fleetbench_metrics::{BrokerGone, RunOutcome};
pub use fleetbench_scenario::Plan;
pub use run::run;

/// The position in the plan of the device a message names (usize::MAX for a device this run
/// does not have: the ledger counts it as unexpected).
fn position(positions: &[Option<u32>], device: u32) -> usize {
    positions
        .get(device as usize)
        .copied()
        .flatten()
        .map_or(usize::MAX, |p| p as usize)
}

/// Where the fleet connects, and as whom. Its `Debug` leaves the password out.
#[derive(Clone)]
pub struct Target {
    pub host: String,
    pub ports: Vec<u16>,
    pub credentials: Option<(String, String)>,
    pub transport: transport::Transport,
    /// The MQTT version every client speaks.
    pub protocol: fleetbench_scenario::Protocol,
}

impl std::fmt::Debug for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Target")
            .field("host", &self.host)
            .field("ports", &self.ports)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("transport", &self.transport)
            .field("protocol", &self.protocol)
            .finish()
    }
}

impl Target {
    pub(crate) fn port_for(&self, i: usize) -> u16 {
        self.ports[i % self.ports.len()]
    }
}

/// How the fleet behaves beyond what the scenario says.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// How often tasks hand their recordings to the aggregator and snapshots are made.
    pub tick: Duration,
    /// A send that leaves later than this after it was due counts as late.
    pub late_threshold: Duration,
    /// How long one connection attempt may take (5 s, a common default, is tight when
    /// thousands connect at once).
    pub connect_timeout: Duration,
    /// How long observers may take to connect and have their subscriptions granted.
    pub observer_ready_timeout: Duration,
    /// After an interrupt, how long in-flight messages still get to arrive.
    pub interrupt_grace: Duration,
    /// When every device and observer has been disconnected this long (and some had been
    /// connected), the broker is taken to be gone and the run ends early.
    pub broker_gone_after: Duration,
    pub faults: Faults,
    /// How the run restarts its broker for the scenario's `broker_restart` faults (None: it
    /// cannot, and validation refused such faults).
    pub restart_broker: Option<restart::BrokerRestarter>,
    /// How many event loops carry the devices and observers (None: none of their own, the
    /// fleet's multi-threaded runtime, [`loops::Loops::shared`]).
    pub loops: Option<usize>,
}

impl Default for FleetOptions {
    fn default() -> Self {
        FleetOptions {
            tick: Duration::from_millis(250),
            late_threshold: Duration::from_millis(1),
            connect_timeout: Duration::from_secs(30),
            observer_ready_timeout: Duration::from_secs(30),
            interrupt_grace: Duration::from_secs(1),
            broker_gone_after: Duration::from_secs(10),
            faults: Faults::default(),
            restart_broker: None,
            loops: None,
        }
    }
}

/// Faults injected on purpose, to show that the measurements catch them.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Observers discard (never record) every delivery whose sequence number is a multiple of
    /// this: to the ledger those messages are lost, exactly as if the broker had dropped them.
    pub drop_every_nth_seq: Option<u64>,
    /// Every publisher stops sending at `after` (counted from the start of the publish window)
    /// for `length`, then catches up on the messages that fell due meanwhile.
    pub stall: Option<Stall>,
    /// Observers spend this long (busy, on their worker thread) on each delivery: a slower
    /// receive path, to show that a regression gate catches it.
    pub receive_delay: Option<Duration>,
}

#[derive(Debug, Clone, Copy)]
pub struct Stall {
    pub after: Duration,
    pub length: Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    #[error("observer {client_id} was not ready within {timeout:?}: {reason}")]
    ObserverNotReady {
        client_id: String,
        timeout: Duration,
        reason: String,
    },
    #[error("a fleet task failed: {0}")]
    Task(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_printed_for_debugging_names_the_user_but_not_the_password() {
        let target = Target {
            host: "broker.example".into(),
            ports: vec![1883],
            credentials: Some(("fleet".into(), "s3cret".into())),
            transport: Default::default(),
            protocol: Default::default(),
        };
        let shown = format!("{target:?}");
        assert!(shown.contains("fleet"), "{shown}");
        assert!(
            !shown.contains("s3cret"),
            "the password is printed: {shown}"
        );
    }
}
