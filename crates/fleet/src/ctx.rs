//! What every task of a run shares, read-only: the plan's devices, the broker, the run's clock,
//! the channel to the aggregator, the load shape, when the ramp started, and what ends each
//! part (the cutoff for observers, `end` for publishers). Devices, their pollers, observers and
//! controllers all hold one `Arc` of it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::time::Duration;

use fleetbench_metrics::Flush;
use fleetbench_scenario::load::LoadShape;
use fleetbench_scenario::{DeviceSpec, Plan};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use std::sync::Arc;

use crate::clock::RunClock;
use crate::events::Events;
use crate::timer::PreciseTimer;
use crate::{FleetOptions, Target};

/// The run's times, from the scenario.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long devices publish, from the start of the connect ramp.
    pub duration: Duration,
    /// How long after publishing the run waits for messages still on their way.
    pub drain_timeout: Duration,
    /// The start of the publish window that is not measured (see the scenario's `warmup`).
    pub warmup: Duration,
}

pub(crate) struct RunCtx {
    pub clock: RunClock,
    pub target: Target,
    /// Where devices connect: the broker, or the network faults' proxy in front of it.
    pub device_target: Target,
    /// What the network faults' proxy did, when there is one.
    pub proxy: Option<Arc<crate::proxy::ProxyStats>>,
    pub opts: FleetOptions,
    pub timing: Timing,
    /// Recordings go to the aggregator through it, once a tick per task.
    pub flush: Sender<Flush>,
    /// Device id (as messages carry it) to position in the plan.
    pub positions: Vec<Option<u32>>,
    /// The plan's devices, by position: topics, QoS, MQTT 5 properties, schedules.
    pub devices: Vec<DeviceSpec>,
    /// The load phases every schedule follows.
    pub shape: LoadShape,
    /// The largest packet an observer or controller takes or sends: the largest any device's
    /// messages make.
    pub max_packet: usize,
    /// Status, will and command topics, told apart from data.
    pub events: Events,
    /// Observers: turns true at the cutoff (a failing connection is then given up).
    pub cutoff: watch::Receiver<bool>,
    /// The ramp start, once decided: late observers, absences and every publisher count
    /// from it.
    pub ramp: watch::Receiver<Option<Instant>>,
    /// The ramp start on the run clock (u64::MAX until it starts): the warm-up and the load
    /// phases count from it on the receive path.
    pub ramp_start_ns: AtomicU64,
    /// Publishers (devices, controllers) stop on it: the user's stop, or the broker gone.
    pub end: CancellationToken,
    /// Wakes publishers at their due times (tokio's timer would add about a millisecond).
    pub timer: PreciseTimer,
    /// Per device position: connected and subscribed to its command topic, so that a
    /// controller's command can reach it.
    pub listening: Vec<AtomicBool>,
    /// Turns true when the controllers have sent their last command and heard every answer
    /// (or gave up): devices that take commands stay connected until then.
    pub commands_done: watch::Receiver<bool>,
    /// The grid around the faults that devices mark their sequence numbers on.
    pub fault_grid: fleetbench_scenario::FaultGrid,
    /// Cancelled when the drain is over: devices stay connected until then, so that the end of
    /// the run measures the broker, not the fleet leaving all at once.
    pub drained: CancellationToken,
}

/// The publish window of a run, from the ramp start.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    /// When connecting starts; devices connect at `start + connect_at`.
    pub start: Instant,
    /// No message due at or after this is sent.
    pub publish_end: Instant,
    /// After its last message, a publisher waits at most until then for its flows to complete.
    pub finish_deadline: Instant,
}

/// The parts of a run's context that are made before it and kept by the run to drive it.
pub(crate) struct Controls {
    pub cutoff: watch::Sender<bool>,
    pub ramp: watch::Sender<Option<Instant>>,
    pub commands_done: watch::Sender<bool>,
}

impl RunCtx {
    /// The context of a run of `plan`, and the senders that drive it.
    pub(crate) fn new(
        plan: &Plan,
        target: Target,
        timing: Timing,
        opts: FleetOptions,
        flush: Sender<Flush>,
        end: CancellationToken,
        timer: PreciseTimer,
    ) -> (RunCtx, Controls) {
        let mut positions = vec![None; plan.total_devices as usize];
        for (pos, d) in plan.devices.iter().enumerate() {
            positions[d.id as usize] = Some(pos as u32);
        }
        let largest = plan.devices.iter().map(|d| d.largest_packet()).max();
        let (cutoff_tx, cutoff) = watch::channel(false);
        let (ramp_tx, ramp) = watch::channel(None);
        let (commands_tx, commands_done) = watch::channel(plan.controllers.is_empty());
        let ctx = RunCtx {
            clock: RunClock::start(),
            device_target: target.clone(),
            proxy: None,
            target,
            opts,
            timing,
            flush,
            positions,
            devices: plan.devices.clone(),
            shape: plan.shape.clone(),
            max_packet: largest.unwrap_or(fleetbench_scenario::PACKET_OVERHEAD),
            events: Events::of(plan),
            cutoff,
            ramp,
            ramp_start_ns: AtomicU64::new(u64::MAX),
            end,
            timer,
            listening: plan
                .devices
                .iter()
                .map(|_| AtomicBool::new(false))
                .collect(),
            commands_done,
            fault_grid: plan.fault_grid.clone(),
            drained: CancellationToken::new(),
        };
        let controls = Controls {
            cutoff: cutoff_tx,
            ramp: ramp_tx,
            commands_done: commands_tx,
        };
        (ctx, controls)
    }

    /// The publish window (from now, before the ramp has started; publishers only start after).
    pub(crate) fn window(&self) -> Window {
        let start = (*self.ramp.borrow()).unwrap_or_else(Instant::now);
        let publish_end = start + self.timing.duration;
        Window {
            start,
            publish_end,
            finish_deadline: publish_end + self.timing.drain_timeout,
        }
    }

    /// Start the ramp now: publishers and late observers count from it.
    pub(crate) fn start_ramp(&self, controls: &Controls) -> Instant {
        let start = Instant::now();
        self.ramp_start_ns
            .store(self.clock.ns_at(start.into_std()), Ordering::Relaxed);
        let _ = controls.ramp.send(Some(start));
        start
    }
}
