//! One run of a plan: observers connect and subscribe, devices ramp up and publish for the
//! scenario's duration, the drain waits for what is still on its way, and at the cutoff every
//! message is accounted for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::aggregate::{Phase, Totals};
use fleetbench_metrics::behaviour::{Behaviour, CommandReport, Mqtt5Check, SessionCheck};
use fleetbench_metrics::ledger::{account, Accounting, Ledger};
use fleetbench_metrics::{Aggregator, Snapshot};
use fleetbench_scenario::load::LoadShape;
use fleetbench_scenario::Plan;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{info, warn};

use crate::clock::RunClock;
use crate::controller::{run_controller, ControllerCtx, ControllerResult};
use crate::device::{run_device, DeviceCtx};
use crate::events::{self, DeviceFate, Events, Heard};
use crate::observer::{spawn_observer, ObserverCtx, ObserverResult};
use crate::timer::PreciseTimer;
use crate::{FleetError, FleetOptions, Target};

#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// How long devices publish, from the start of the connect ramp.
    pub duration: Duration,
    /// How long after publishing the run waits for messages still on their way.
    pub drain_timeout: Duration,
    /// The start of the publish window that is not measured (see the scenario's `warmup`).
    pub warmup: Duration,
}

/// Everything a report needs from a run.
#[derive(Debug)]
pub struct FleetOutcome {
    pub accounting: Accounting,
    pub totals: Totals,
    pub sent: u64,
    /// Messages each device of the plan sent (by position in the plan).
    pub sent_per_device: Vec<u64>,
    pub publish_window: Duration,
    pub drain: Duration,
    pub elapsed: Duration,
    pub interrupted: bool,
    /// Per observer, the QoS granted to each of its filters (None: refused).
    pub granted: Vec<Vec<Option<u8>>>,
    /// From the start of the ramp until the last device connected (None: some never did).
    pub connect_all: Option<Duration>,
    /// Devices that never connected.
    pub never_connected: u32,
    /// Every tick's latency distributions, for the HdrHistogram interval log.
    pub interval_log: fleetbench_metrics::hlog::IntervalLog,
    /// Deliveries by the QoS MQTT calls for and the QoS the broker used:
    /// `delivered_qos[due][used]`.
    pub delivered_qos: [[u64; 3]; 3],
    /// Statuses, wills, sessions and commands, as far as the scenario uses them.
    pub behaviour: Behaviour,
}

/// Run `plan` against `target` until its duration is over (or `stop` turns true), publishing a
/// snapshot on `snapshots` every tick.
pub async fn run(
    plan: &Plan,
    target: Target,
    timing: Timing,
    opts: FleetOptions,
    stop: watch::Receiver<bool>,
    snapshots: watch::Sender<Snapshot>,
) -> Result<FleetOutcome, FleetError> {
    let clock = RunClock::start();
    let (flush_tx, aggregator) = Aggregator::new(
        plan.devices.len() as u32,
        plan.observers.len() as u32,
        timing.drain_timeout + opts.tick * 2,
    );
    // How many observers expect each device's messages: the snapshots' and the drain's
    // expected deliveries both follow from it.
    let watchers = plan.watchers();
    let groups = plan.devices.iter().map(|d| d.group as u32).collect();
    let aggregator = aggregator.with_layout(groups, watchers.clone());
    let (phase_tx, phase_rx) = watch::channel(Phase::Connecting);
    let (ticker_done_tx, ticker_done_rx) = watch::channel(false);
    let (ramp_tx, ramp_rx) = watch::channel(None);
    let ticker = tokio::spawn(tick_loop(
        aggregator,
        clock,
        opts.tick,
        phase_rx,
        ticker_done_rx,
        snapshots,
        plan.shape
            .is_declared()
            .then(|| (plan.shape.clone(), ramp_rx.clone())),
    ));

    let mut positions = vec![None; plan.total_devices as usize];
    for (pos, d) in plan.devices.iter().enumerate() {
        positions[d.id as usize] = Some(pos as u32);
    }
    let max_packet = plan
        .devices
        .iter()
        .map(|d| d.largest_payload())
        .max()
        .unwrap_or(0)
        + 1024;
    let (cutoff_tx, cutoff_rx) = watch::channel(false);
    // Nothing is measured until the ramp starts.
    let ramp_start_ns = Arc::new(std::sync::atomic::AtomicU64::new(u64::MAX));
    // Observers and controllers read the plan's devices from one copy.
    let device_specs = Arc::new(plan.devices.clone());
    let octx = Arc::new(ObserverCtx {
        clock,
        target: target.clone(),
        opts: opts.clone(),
        flush: flush_tx.clone(),
        positions: Arc::new(positions),
        devices: device_specs.clone(),
        max_packet,
        warmup_ns: timing.warmup.as_nanos() as u64,
        cutoff: cutoff_rx,
        shape: plan.shape.clone(),
        ramp_start_ns: ramp_start_ns.clone(),
        ramp: ramp_rx.clone(),
        events: Arc::new(Events::of(plan)),
    });

    // Observers first: nothing is published before every subscription is granted (late
    // observers excepted: they join when their time comes).
    let mut observers: Vec<_> = plan
        .observers
        .iter()
        .enumerate()
        .map(|(i, spec)| spawn_observer(i, spec.clone(), octx.clone()))
        .collect();
    for (handle, spec) in observers.iter_mut().zip(&plan.observers) {
        if spec.join_at.is_some() {
            continue;
        }
        let mut stop_rx = stop.clone();
        let ready: Result<Vec<Option<u8>>, String> = tokio::select! {
            r = tokio::time::timeout(opts.observer_ready_timeout, &mut handle.ready) => match r {
                Ok(Ok(readiness)) => readiness,
                Ok(Err(_)) => Err("its task ended before a SUBACK".into()),
                Err(_) => Err("no SUBACK in time".into()),
            },
            _ = stop_rx.wait_for(|s| *s) => Err("stopped before it was ready".into()),
        };
        match ready {
            Ok(_) => {}
            Err(reason) => {
                let _ = cutoff_tx.send(true);
                for h in &observers {
                    let _ = h.client.try_disconnect();
                }
                return Err(FleetError::ObserverNotReady {
                    client_id: spec.client_id.clone(),
                    timeout: opts.observer_ready_timeout,
                    reason,
                });
            }
        }
    }
    info!(observers = observers.len(), "observers subscribed");

    // Devices: connect on the ramp, publish until the window closes.
    let ramp_start = Instant::now();
    let publish_end = ramp_start + timing.duration;
    ramp_start_ns.store(clock.ns_at(ramp_start.into_std()), Ordering::Relaxed);
    let _ = ramp_tx.send(Some(ramp_start));
    let timer =
        PreciseTimer::start().map_err(|e| FleetError::Task(format!("timer thread: {e}")))?;
    let listening: Arc<Vec<AtomicBool>> = Arc::new(
        plan.devices
            .iter()
            .map(|_| AtomicBool::new(false))
            .collect(),
    );
    let (commands_done_tx, commands_done) = watch::channel(plan.controllers.is_empty());
    let dctx = Arc::new(DeviceCtx {
        clock,
        target,
        opts: opts.clone(),
        flush: flush_tx.clone(),
        ramp_start,
        publish_end,
        finish_deadline: publish_end + timing.drain_timeout,
        stop: stop.clone(),
        timer: timer.clone(),
        warmup: timing.warmup,
        shape: plan.shape.clone(),
        listening: listening.clone(),
        commands_done,
    });
    let _ = phase_tx.send(Phase::Running);
    let devices: Vec<_> = plan
        .devices
        .iter()
        .enumerate()
        .map(|(pos, spec)| tokio::spawn(run_device(pos as u32, spec.clone(), dctx.clone())))
        .collect();
    let cctx = Arc::new(ControllerCtx {
        clock,
        target: dctx.target.clone(),
        opts: opts.clone(),
        flush: flush_tx.clone(),
        ramp_start,
        publish_end,
        finish_deadline: dctx.finish_deadline,
        stop: stop.clone(),
        timer,
        listening,
        positions: octx.positions.clone(),
    });
    let controllers: Vec<_> = plan
        .controllers
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let index = plan.observers.len() + i;
            tokio::spawn(run_controller(
                index,
                spec.clone(),
                device_specs.clone(),
                cctx.clone(),
            ))
        })
        .collect();
    let mut commands: Option<ControllerResult> = None;
    for c in controllers {
        let r = c.await.map_err(|e| FleetError::Task(e.to_string()))?;
        let total = commands.get_or_insert_with(ControllerResult::default);
        total.sent += r.sent;
        total.answered += r.answered;
        total.duplicates += r.duplicates;
        total.round_trip.add(&r.round_trip);
    }
    let _ = commands_done_tx.send(true);
    let mut sent = Vec::with_capacity(devices.len());
    let mut fates = Vec::with_capacity(devices.len());
    let mut completed = Vec::with_capacity(devices.len());
    let mut last_connect: Option<Instant> = None;
    let mut never_connected = 0u32;
    let mut mqtt5_sent = Mqtt5Check::default();
    for d in devices {
        let r = d.await.map_err(|e| FleetError::Task(e.to_string()))?;
        mqtt5_sent.sent_alias_only += r.aliased;
        mqtt5_sent.aliases_refused += u64::from(r.alias_refused);
        sent.push(r.sent);
        completed.push(r.completed);
        fates.push(DeviceFate {
            connected: r.connected_at.is_some(),
            dropped: r.dropped,
        });
        match r.connected_at {
            Some(t) => last_connect = Some(last_connect.map_or(t, |l| l.max(t))),
            None => never_connected += 1,
        }
    }
    // How long the whole fleet took to connect; None when some device never did.
    let connect_all = match (never_connected, last_connect) {
        (0, Some(t)) => Some(t.saturating_duration_since(ramp_start)),
        (0, None) => Some(Duration::ZERO),
        _ => None,
    };
    let publish_window = ramp_start.elapsed().min(timing.duration);
    let interrupted = *stop.borrow();

    // Drain: wait until every expected delivery arrived, or the drain timeout passed.
    let _ = phase_tx.send(Phase::Draining);
    let expected: u64 = sent
        .iter()
        .zip(&watchers)
        .map(|(s, w)| s * u64::from(*w))
        .sum();
    let drain_start = Instant::now();
    let drain_limit = if interrupted {
        opts.interrupt_grace.min(timing.drain_timeout)
    } else {
        timing.drain_timeout
    };
    let mut drain_full = false;
    loop {
        let delivered: u64 = observers
            .iter()
            .map(|o| o.delivered.load(Ordering::Relaxed))
            .sum();
        if delivered >= expected {
            break;
        }
        if drain_start.elapsed() >= drain_limit {
            drain_full = !interrupted;
            break;
        }
        if !interrupted && *stop.borrow() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = drain_start.elapsed();
    let interrupted = interrupted || *stop.borrow();

    // Cutoff: observers leave, hand over their ledgers.
    let cutoff = clock.elapsed();
    let _ = cutoff_tx.send(true);
    for o in &observers {
        let _ = o.client.try_disconnect();
    }
    let mut results: Vec<ObserverResult> = Vec::with_capacity(observers.len());
    for o in observers {
        results.push(o.task.await.map_err(|e| FleetError::Task(e.to_string()))?);
    }
    drop(flush_tx);
    let _ = phase_tx.send(Phase::Done);
    let _ = ticker_done_tx.send(true);
    let mut aggregator = ticker.await.map_err(|e| FleetError::Task(e.to_string()))?;

    let settled = if drain_full || !interrupted {
        sent.clone()
    } else {
        aggregator.sent_at(cutoff.saturating_sub(timing.drain_timeout))
    };
    // A message the broker never acknowledged (or that never left the client) when its device
    // disconnected did not have its chance: unless a later one arrived, it is in flight.
    let settled: Vec<u64> = settled
        .iter()
        .zip(&completed)
        .map(|(s, c)| (*s).min(*c))
        .collect();
    // The members of a shared subscription account as one receiver: between them, each
    // message is expected once, and one arriving at two members is a duplicate.
    let receivers = plan.receivers();
    let ledgers: Vec<(Ledger, &[u8])> = receivers
        .iter()
        .map(|members| {
            let mut ledger = results[members[0]].ledger.clone();
            for m in &members[1..] {
                ledger.absorb(&results[*m].ledger);
            }
            (ledger, results[members[0]].due_qos.as_slice())
        })
        .collect();
    let accounting = account(ledgers.iter().map(|(l, q)| (l, *q)), &sent, &settled);
    let behaviour = behaviour(plan, &results, &fates, commands, mqtt5_sent)?;
    if accounting.total.beyond_sent > 0 {
        warn!(
            beyond = accounting.total.beyond_sent,
            "arrivals beyond what devices reported as sent"
        );
    }
    Ok(FleetOutcome {
        accounting,
        totals: aggregator.totals().clone(),
        sent: sent.iter().sum(),
        sent_per_device: sent,
        publish_window,
        drain,
        elapsed: clock.elapsed(),
        interrupted,
        delivered_qos: results.iter().fold([[0; 3]; 3], |mut sum, r| {
            for (due, row) in r.delivered_qos.iter().enumerate() {
                for (used, n) in row.iter().enumerate() {
                    sum[due][used] += n;
                }
            }
            sum
        }),
        granted: results.into_iter().map(|r| r.granted).collect(),
        behaviour,
        connect_all,
        never_connected,
        interval_log: aggregator.take_interval_log(),
    })
}

/// What the behaviours showed: statuses and wills judged from what observers heard, sessions
/// from the observers' returns, commands from the controllers.
fn behaviour(
    plan: &Plan,
    results: &[ObserverResult],
    fates: &[DeviceFate],
    commands: Option<ControllerResult>,
    mqtt5_sent: Mqtt5Check,
) -> Result<Behaviour, FleetError> {
    let heard: Vec<&[Heard]> = results.iter().map(|r| r.heard.as_slice()).collect();
    let (status, wills) = events::judge(plan, &heard, fates);
    let sessions = plan
        .observers
        .iter()
        .any(|o| o.offline.is_some())
        .then(|| SessionCheck {
            returns: results.iter().map(|r| r.returns).sum(),
            resumed: results.iter().map(|r| r.resumed).sum(),
            lost: results.iter().map(|r| r.returns - r.resumed).sum(),
        });
    let commands = match commands {
        Some(c) => Some(
            CommandReport::new(c.sent, c.answered, c.duplicates, &c.round_trip)
                .map_err(|e| FleetError::Task(format!("round-trip histogram: {e}")))?,
        ),
        None => None,
    };
    // MQTT 5: what the devices sent, with what the observers received.
    let mqtt5 = plan.devices.iter().any(|d| d.mqtt5.is_some()).then(|| {
        let mut check = mqtt5_sent;
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

async fn tick_loop(
    mut aggregator: Aggregator,
    clock: RunClock,
    tick: Duration,
    phase: watch::Receiver<Phase>,
    mut done: watch::Receiver<bool>,
    snapshots: watch::Sender<Snapshot>,
    load: Option<(LoadShape, watch::Receiver<Option<Instant>>)>,
) -> Aggregator {
    // The load phase a snapshot is in, from the ramp start.
    let load_phase = || {
        let (shape, ramp) = load.as_ref()?;
        let start = (*ramp.borrow())?;
        Some(shape.phase_at(start.elapsed()))
    };
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = done.wait_for(|d| *d) => break,
        }
        let mut snap = aggregator.tick(clock.elapsed(), *phase.borrow()).clone();
        snap.load_phase = load_phase();
        snapshots.send_replace(snap);
    }
    let mut snap = aggregator.tick(clock.elapsed(), Phase::Done).clone();
    snap.load_phase = load_phase();
    snapshots.send_replace(snap);
    aggregator
}
