//! What the devices and controllers did, gathered as they finish, and what the behaviours
//! showed once the observers have handed over what they heard.

use std::time::Duration;

use fleetbench_metrics::behaviour::{Behaviour, CommandReport, Mqtt5Check, SessionCheck};
use fleetbench_metrics::BrokerGone;
use fleetbench_scenario::Plan;
use tokio::time::Instant;

use crate::controller::ControllerResult;
use crate::device::DeviceResult;
use crate::events::{self, DeviceFate, Heard};
use crate::observer::ObserverResult;
use crate::FleetError;

/// The devices' and controllers' results, by device position.
pub(crate) struct DeviceTally {
    pub sent: Vec<u64>,
    /// Per device, messages sent before each point of the fault grid it reached.
    pub marks: Vec<Vec<u32>>,
    /// Of the messages sent, how many had left or been acknowledged when the device left.
    pub completed: Vec<u64>,
    pub fates: Vec<DeviceFate>,
    pub last_connect: Option<Instant>,
    pub never_connected: u32,
    pub disconnected: u32,
    pub skipped: u64,
    pub mqtt5_sent: Mqtt5Check,
    pub commands: Option<ControllerResult>,
    /// When publishing was stopped early (a stop, or the broker gone), if it was.
    pub ended: Option<Instant>,
    /// Set when the broker watch ended the run.
    pub broker_gone: Option<BrokerGone>,
    /// The broker restarts the faults made.
    pub restarts: Vec<fleetbench_metrics::RestartEvent>,
}

impl DeviceTally {
    /// Nothing started (the run was stopped before the devices were): every device never
    /// connected.
    pub(crate) fn none(plan: &Plan) -> DeviceTally {
        let n = plan.devices.len();
        DeviceTally {
            sent: vec![0; n],
            marks: vec![Vec::new(); n],
            completed: vec![0; n],
            fates: vec![DeviceFate::default(); n],
            never_connected: n as u32,
            ..DeviceTally::with_capacity(0)
        }
    }

    /// Empty, to gather `n` devices' results.
    pub(crate) fn with_capacity(n: usize) -> DeviceTally {
        DeviceTally {
            sent: Vec::with_capacity(n),
            marks: Vec::with_capacity(n),
            completed: Vec::with_capacity(n),
            fates: Vec::with_capacity(n),
            last_connect: None,
            never_connected: 0,
            disconnected: 0,
            skipped: 0,
            mqtt5_sent: Mqtt5Check::default(),
            commands: None,
            ended: None,
            broker_gone: None,
            restarts: Vec::new(),
        }
    }

    /// The next device's result (devices are added in plan order).
    pub(crate) fn add(&mut self, r: DeviceResult) {
        self.mqtt5_sent.sent_alias_only += r.aliased;
        self.mqtt5_sent.aliases_refused += u64::from(r.alias_refused);
        self.sent.push(r.sent);
        self.marks.push(r.marks);
        self.completed.push(r.completed);
        self.skipped += r.skipped;
        self.disconnected += u32::from(r.down_at_end);
        self.fates.push(DeviceFate {
            connected: r.connected_at.is_some(),
            dropped: r.dropped,
            cut: r.cuts_made,
        });
        match r.connected_at {
            Some(t) => self.last_connect = Some(self.last_connect.map_or(t, |l| l.max(t))),
            None => self.never_connected += 1,
        }
    }

    /// A controller's commands and answers.
    pub(crate) fn add_commands(&mut self, r: ControllerResult) {
        let total = self.commands.get_or_insert_with(ControllerResult::default);
        total.sent += r.sent;
        total.answered += r.answered;
        total.duplicates += r.duplicates;
        total.round_trip.add(&r.round_trip);
    }

    /// How long the whole fleet took to connect from `ramp_start`; None when some device never
    /// did.
    pub(crate) fn connect_all(&self, ramp_start: Instant) -> Option<Duration> {
        match (self.never_connected, self.last_connect) {
            (0, Some(t)) => Some(t.saturating_duration_since(ramp_start)),
            (0, None) => Some(Duration::ZERO),
            _ => None,
        }
    }
}

/// What the behaviours showed: statuses and wills judged from what observers heard, sessions
/// from the observers' returns, commands from the controllers, MQTT 5 properties from both
/// ends.
pub(crate) fn behaviour(
    plan: &Plan,
    results: &[ObserverResult],
    tally: &DeviceTally,
) -> Result<Behaviour, FleetError> {
    let heard: Vec<&[Heard]> = results.iter().map(|r| r.heard.as_slice()).collect();
    let (status, wills) = events::judge(plan, &heard, &tally.fates);
    let sessions = plan
        .observers
        .iter()
        .any(|o| o.offline.is_some())
        .then(|| SessionCheck {
            returns: results.iter().map(|r| r.returns).sum(),
            resumed: results.iter().map(|r| r.resumed).sum(),
            lost: results.iter().map(|r| r.returns - r.resumed).sum(),
        });
    let commands = match &tally.commands {
        Some(c) => Some(
            CommandReport::new(c.sent, c.answered, c.duplicates, &c.round_trip)
                .map_err(|e| FleetError::Task(format!("round-trip histogram: {e}")))?,
        ),
        None => None,
    };
    // MQTT 5: what the devices sent, with what the observers received.
    let mqtt5 = plan.devices.iter().any(|d| d.mqtt5.is_some()).then(|| {
        let mut check = tally.mqtt5_sent.clone();
        for r in results {
            check.add(&r.mqtt5);
        }
        check
    });
    Ok(Behaviour {
        status,
        wills,
        sessions,
        commands,
        mqtt5,
    })
}
