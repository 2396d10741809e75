//! One run of a plan: observers connect and subscribe, devices ramp up and publish for the
//! scenario's duration, the drain waits for what is still on its way, and at the cutoff every
//! message is accounted for.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::aggregate::Phase;
use fleetbench_metrics::behaviour::{Behaviour, CommandReport, Mqtt5Check, SessionCheck};
use fleetbench_metrics::ledger::{account, Ledger};
use fleetbench_metrics::{Aggregator, Snapshot};
use fleetbench_metrics::{BrokerGone, RunOutcome};
use fleetbench_scenario::load::LoadShape;
use fleetbench_scenario::Plan;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
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

/// Run `plan` against `target` until its duration is over (or `stop` is cancelled), publishing
/// a snapshot on `snapshots` every tick. A stop at any point, even before every observer is
/// ready, still ends in an outcome (marked interrupted).
pub async fn run(
    plan: &Plan,
    target: Target,
    timing: Timing,
    opts: FleetOptions,
    stop: CancellationToken,
    snapshots: watch::Sender<Snapshot>,
) -> Result<RunOutcome, FleetError> {
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
    let live = snapshots.subscribe();
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
    let ready = observers_ready(plan, &mut observers, &opts, &stop).await;
    if let Err(e) = ready {
        let _ = cutoff_tx.send(true);
        for h in &observers {
            let _ = h.client.try_disconnect();
        }
        return Err(e);
    }
    info!(observers = observers.len(), "observers subscribed");

    // Devices: connect on the ramp, publish until the window closes, or until the broker is
    // found gone (`end`, which a user's stop ends too).
    let ramp_start = Instant::now();
    let end = stop.child_token();
    let gone = Arc::new(std::sync::Mutex::new(None));
    let watch_task = tokio::spawn(watch_broker(
        live,
        opts.broker_gone_after,
        end.clone(),
        gone.clone(),
    ));
    let tally = if stop.is_cancelled() {
        DeviceTally::none(plan)
    } else {
        ramp_start_ns.store(clock.ns_at(ramp_start.into_std()), Ordering::Relaxed);
        let _ = ramp_tx.send(Some(ramp_start));
        let _ = phase_tx.send(Phase::Running);
        let fleet = Fleet {
            plan,
            target,
            timing,
            opts: &opts,
            clock,
            flush: &flush_tx,
            ramp_start,
            end: &end,
            octx: &octx,
            devices: &device_specs,
        };
        fleet.publish().await?
    };
    watch_task.abort();
    let broker_gone = gone.lock().ok().and_then(|g| *g);
    // Publishing ended with the duration, or earlier when the run was stopped or cut short.
    let publish_window = tally
        .ended
        .unwrap_or_else(Instant::now)
        .saturating_duration_since(ramp_start)
        .min(timing.duration);
    let interrupted = stop.is_cancelled();

    // Drain: wait until every expected delivery arrived, or the drain timeout passed.
    let _ = phase_tx.send(Phase::Draining);
    let expected: u64 = tally
        .sent
        .iter()
        .zip(&watchers)
        .map(|(s, w)| s * u64::from(*w))
        .sum();
    let drain_start = Instant::now();
    let drain_limit = if interrupted || broker_gone.is_some() {
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
        if !interrupted && stop.is_cancelled() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let drain = drain_start.elapsed();
    let interrupted = interrupted || stop.is_cancelled();

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
        tally.sent.clone()
    } else {
        aggregator.sent_at(cutoff.saturating_sub(timing.drain_timeout))
    };
    // A message the broker never acknowledged (or that never left the client) when its device
    // disconnected did not have its chance: unless a later one arrived, it is in flight.
    let settled: Vec<u64> = settled
        .iter()
        .zip(&tally.completed)
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
    let accounting = account(ledgers.iter().map(|(l, q)| (l, *q)), &tally.sent, &settled);
    let behaviour = behaviour(
        plan,
        &results,
        &tally.fates,
        tally.commands,
        tally.mqtt5_sent,
    )?;
    if accounting.total.beyond_sent > 0 {
        warn!(
            beyond = accounting.total.beyond_sent,
            "arrivals beyond what devices reported as sent"
        );
    }
    // How long the whole fleet took to connect; None when some device never did.
    let connect_all = match (tally.never_connected, tally.last_connect) {
        (0, Some(t)) => Some(t.saturating_duration_since(ramp_start)),
        (0, None) => Some(Duration::ZERO),
        _ => None,
    };
    Ok(RunOutcome {
        accounting,
        totals: aggregator.totals().clone(),
        sent: tally.sent.iter().sum(),
        skipped: tally.skipped,
        sent_per_device: tally.sent,
        publish_window,
        drain,
        elapsed: clock.elapsed(),
        interrupted,
        broker_gone,
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
        never_connected: tally.never_connected,
        disconnected: tally.disconnected,
        interval_log: aggregator.take_interval_log(),
    })
}

/// Wait until every observer that starts with the run has its subscriptions granted. `Ok`
/// also when the user stopped the run meanwhile (the caller sees `stop`).
async fn observers_ready(
    plan: &Plan,
    observers: &mut [crate::observer::ObserverHandle],
    opts: &FleetOptions,
    stop: &CancellationToken,
) -> Result<(), FleetError> {
    let deadline = Instant::now() + opts.observer_ready_timeout;
    for (handle, spec) in observers.iter_mut().zip(&plan.observers) {
        if spec.join_at.is_some() {
            continue;
        }
        let reason = tokio::select! {
            r = tokio::time::timeout_at(deadline, &mut handle.ready) => match r {
                Ok(Ok(Ok(_))) => continue,
                Ok(Ok(Err(refused))) => refused,
                Ok(Err(_)) => "its task ended before a SUBACK".to_string(),
                Err(_) => match handle.last_error.lock().ok().and_then(|e| e.clone()) {
                    Some(e) => format!("no SUBACK in time; its latest connection attempt failed: {e}"),
                    None => "connected, but the broker granted no subscription in time".to_string(),
                },
            },
            _ = stop.cancelled() => return Ok(()),
        };
        return Err(FleetError::ObserverNotReady {
            client_id: spec.client_id.clone(),
            timeout: opts.observer_ready_timeout,
            reason,
        });
    }
    Ok(())
}

/// End the run early (`end`) when every device and observer has been disconnected for
/// `after`, once some client had connected: the broker went away. Records when.
async fn watch_broker(
    mut live: watch::Receiver<Snapshot>,
    after: Duration,
    end: CancellationToken,
    gone: Arc<std::sync::Mutex<Option<BrokerGone>>>,
) {
    let mut seen_up = false;
    let mut down_since: Option<Duration> = None;
    while live.changed().await.is_ok() {
        let (elapsed, up, running) = {
            let s = live.borrow_and_update();
            (
                s.elapsed,
                s.devices_connected + s.observers_connected,
                s.phase == Phase::Running,
            )
        };
        seen_up |= up > 0;
        if !running || !seen_up || up > 0 {
            down_since = None;
            continue;
        }
        let since = *down_since.get_or_insert(elapsed);
        if elapsed.saturating_sub(since) >= after {
            warn!(since = ?since, "every client lost its connection and none came back: ending the run");
            if let Ok(mut g) = gone.lock() {
                *g = Some(BrokerGone {
                    since,
                    waited: elapsed.saturating_sub(since),
                });
            }
            end.cancel();
            return;
        }
    }
}

/// What the devices (and controllers) did, gathered as they finish.
struct DeviceTally {
    sent: Vec<u64>,
    completed: Vec<u64>,
    fates: Vec<DeviceFate>,
    last_connect: Option<Instant>,
    never_connected: u32,
    disconnected: u32,
    skipped: u64,
    mqtt5_sent: Mqtt5Check,
    commands: Option<ControllerResult>,
    /// When publishing was stopped early (a stop, or the broker gone), if it was.
    ended: Option<Instant>,
}

impl DeviceTally {
    /// Nothing started (the run was stopped before the devices were).
    fn none(plan: &Plan) -> DeviceTally {
        let n = plan.devices.len();
        DeviceTally {
            sent: vec![0; n],
            completed: vec![0; n],
            fates: vec![DeviceFate::default(); n],
            last_connect: None,
            never_connected: n as u32,
            disconnected: 0,
            skipped: 0,
            mqtt5_sent: Mqtt5Check::default(),
            commands: None,
            ended: None,
        }
    }

    fn add(&mut self, r: crate::device::DeviceResult) {
        self.mqtt5_sent.sent_alias_only += r.aliased;
        self.mqtt5_sent.aliases_refused += u64::from(r.alias_refused);
        self.sent.push(r.sent);
        self.completed.push(r.completed);
        self.skipped += r.skipped;
        self.disconnected += u32::from(r.down_at_end);
        self.fates.push(DeviceFate {
            connected: r.connected_at.is_some(),
            dropped: r.dropped,
        });
        match r.connected_at {
            Some(t) => self.last_connect = Some(self.last_connect.map_or(t, |l| l.max(t))),
            None => self.never_connected += 1,
        }
    }
}

/// The publishing part of a run: devices and controllers, from the ramp start until each ends.
struct Fleet<'a> {
    plan: &'a Plan,
    target: Target,
    timing: Timing,
    opts: &'a FleetOptions,
    clock: RunClock,
    flush: &'a std::sync::mpsc::Sender<fleetbench_metrics::Flush>,
    ramp_start: Instant,
    end: &'a CancellationToken,
    octx: &'a Arc<ObserverCtx>,
    devices: &'a Arc<Vec<fleetbench_scenario::DeviceSpec>>,
}

impl Fleet<'_> {
    async fn publish(self) -> Result<DeviceTally, FleetError> {
        let plan = self.plan;
        let publish_end = self.ramp_start + self.timing.duration;
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
            clock: self.clock,
            target: self.target,
            opts: self.opts.clone(),
            flush: self.flush.clone(),
            ramp_start: self.ramp_start,
            publish_end,
            finish_deadline: publish_end + self.timing.drain_timeout,
            stop: self.end.clone(),
            timer: timer.clone(),
            warmup: self.timing.warmup,
            shape: plan.shape.clone(),
            listening: listening.clone(),
            commands_done,
        });
        let devices: Vec<_> = plan
            .devices
            .iter()
            .enumerate()
            .map(|(pos, spec)| tokio::spawn(run_device(pos as u32, spec.clone(), dctx.clone())))
            .collect();
        let ended = tokio::spawn({
            let end = self.end.clone();
            async move {
                end.cancelled().await;
                Instant::now()
            }
        });
        let cctx = Arc::new(ControllerCtx {
            clock: self.clock,
            target: dctx.target.clone(),
            opts: self.opts.clone(),
            flush: self.flush.clone(),
            ramp_start: self.ramp_start,
            publish_end,
            finish_deadline: dctx.finish_deadline,
            stop: self.end.clone(),
            timer,
            listening,
            positions: self.octx.positions.clone(),
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
                    self.devices.clone(),
                    cctx.clone(),
                ))
            })
            .collect();
        let mut tally = DeviceTally {
            sent: Vec::with_capacity(devices.len()),
            completed: Vec::with_capacity(devices.len()),
            fates: Vec::with_capacity(devices.len()),
            never_connected: 0,
            ..DeviceTally::none(plan)
        };
        for c in controllers {
            let r = c.await.map_err(|e| FleetError::Task(e.to_string()))?;
            let total = tally.commands.get_or_insert_with(ControllerResult::default);
            total.sent += r.sent;
            total.answered += r.answered;
            total.duplicates += r.duplicates;
            total.round_trip.add(&r.round_trip);
        }
        let _ = commands_done_tx.send(true);
        for d in devices {
            tally.add(d.await.map_err(|e| FleetError::Task(e.to_string()))?);
        }
        if ended.is_finished() {
            tally.ended = ended.await.ok();
        } else {
            ended.abort();
        }
        Ok(tally)
    }
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
