//! What a run hands over for its report: the fleet's outcome, every count, histogram and
//! ledger it kept (the report crate builds the report from it and the run's context).

use std::time::Duration;

use fleetbench_scenario::Plan;

use crate::aggregate::RunTotals;
use crate::behaviour::Behaviour;
use crate::ledger::{account, Accounting, Ledger};

/// Everything a report needs from a run.
#[derive(Debug)]
pub struct RunOutcome {
    pub accounting: Accounting,
    pub totals: RunTotals,
    pub sent: u64,
    /// Messages each device of the plan sent (by position in the plan).
    pub sent_per_device: Vec<u64>,
    /// Messages that fell due before their device connected, and were not sent.
    pub skipped: u64,
    pub publish_window: Duration,
    pub drain: Duration,
    pub elapsed: Duration,
    /// Stopped by the user (Ctrl-C, SIGTERM, the monitor's `q`), at any point of the run.
    pub interrupted: bool,
    /// Every client lost its connection and none came back: the run was cut short.
    pub broker_gone: Option<BrokerGone>,
    /// Per observer, the QoS granted to each of its filters (None: refused).
    pub granted: Vec<Vec<Option<u8>>>,
    /// From the start of the ramp until the last device connected (None: some never did).
    pub connect_all: Option<Duration>,
    /// Devices that never connected.
    pub never_connected: u32,
    /// Devices that had connected and were disconnected, not by design, when their publish
    /// window ended.
    pub disconnected: u32,
    /// Every tick's latency distributions, for the HdrHistogram interval log.
    pub interval_log: crate::hlog::IntervalLog,
    /// Deliveries by the QoS MQTT calls for and the QoS the broker used:
    /// `delivered_qos[due][used]`.
    pub delivered_qos: [[u64; 3]; 3],
    /// Statuses, wills, sessions and commands, as far as the scenario uses them.
    pub behaviour: Behaviour,
    /// Every tick, from the start of the connect ramp (the faults' costs are read from it).
    pub timeline: Vec<crate::timeline::Point>,
    /// What each broker restart did, in order.
    pub restarts: Vec<RestartEvent>,
    /// Every connection a fault cut: its group, when and how long until it was back.
    pub cut_downs: Vec<crate::timeline::CutDown>,
    /// Per network fault, by its index in the scenario's faults: QoS 0 publishes the proxy
    /// dropped, connections it cut.
    pub network: std::collections::BTreeMap<usize, (u64, u64)>,
    /// Lost messages and duplicates by the slot of the fault grid they were due in (empty
    /// without faults): each fault's are added up from them.
    pub lost_by_slot: Vec<u64>,
    pub duplicates_by_slot: Vec<u64>,
    /// The accounting per device group, in the scenario's order.
    pub by_group: Vec<crate::ledger::StreamOutcome>,
    /// When the connect ramp started on the run clock (the interval log counts from the
    /// clock's start, faults from the ramp's).
    pub ramp_offset: Duration,
}

/// A broker restart (a `broker_restart` fault), as it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct RestartEvent {
    /// The restart's fault: its index in the scenario's faults.
    pub fault: usize,
    /// When it began, from the start of the connect ramp.
    pub at: Duration,
    /// How long the restart took (the broker down, started again, or the command run).
    pub took: Duration,
    /// What happened, in words, or why it failed.
    pub result: Result<String, String>,
}

impl RunOutcome {
    /// The outcome of a run that ended before any client connected (stopped while the broker
    /// started or the machine was calibrated): nothing sent, every device never connected.
    pub fn not_started(plan: &Plan, interrupted: bool) -> RunOutcome {
        let sent = vec![0; plan.devices.len()];
        let ledgers: Vec<Ledger> = plan
            .observers
            .iter()
            .map(|o| Ledger::new(&o.expects))
            .collect();
        RunOutcome {
            accounting: account(ledgers.iter().map(|l| (l, &[][..])), &sent, &sent),
            totals: RunTotals::default(),
            sent: 0,
            sent_per_device: sent,
            skipped: 0,
            publish_window: Duration::ZERO,
            drain: Duration::ZERO,
            elapsed: Duration::ZERO,
            interrupted,
            broker_gone: None,
            // Nothing was asked for, so nothing was refused.
            granted: vec![Vec::new(); plan.observers.len()],
            connect_all: None,
            never_connected: plan.devices.len() as u32,
            disconnected: 0,
            interval_log: Default::default(),
            delivered_qos: [[0; 3]; 3],
            behaviour: Behaviour::default(),
            timeline: Vec::new(),
            restarts: Vec::new(),
            cut_downs: Vec::new(),
            network: Default::default(),
            lost_by_slot: Vec::new(),
            duplicates_by_slot: Vec::new(),
            by_group: Vec::new(),
            ramp_offset: Duration::ZERO,
        }
    }
}

/// The broker went away during the run: every device and observer had lost its connection,
/// none came back within the fleet's `broker_gone_after`, and the run ended early.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrokerGone {
    /// When the last client lost its connection, on the run clock.
    pub since: Duration,
    /// How long the run waited for any of them to come back.
    pub waited: Duration,
}
