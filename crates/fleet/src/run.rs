//! One run of a plan, in steps: observers connect and subscribe; devices ramp up and publish
//! for the scenario's duration (ending early when the user stops the run or the broker goes
//! away); the drain waits for what is still on its way; at the cutoff observers leave; every
//! message is accounted for.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::aggregate::Stage;
use fleetbench_metrics::ledger::{account, lost_by_slot, Ledger};
use fleetbench_metrics::{Aggregator, BrokerGone, RunOutcome, Snapshot};
use fleetbench_scenario::Plan;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::controller::run_controller;
use crate::ctx::{Controls, RunCtx, Timing};
use crate::device::run_device;
use crate::loops::Loops;
use crate::observer::{spawn_observer, ObserverHandle, ObserverResult};
use crate::restart::run_restarts;
use crate::tally::{behaviour, DeviceTally};
use crate::ticker::{tick_loop, watch_broker};
use crate::timer::PreciseTimer;
use crate::{FleetError, FleetOptions, Target};

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
    let mut run = Run::start(plan, target, timing, opts, stop, snapshots)?;
    if let Err(e) = run.observers_ready().await {
        // The observers leave; what they heard does not matter any more.
        let _ = run.cut_off().await;
        return Err(e);
    }
    info!(observers = run.observers.len(), "observers subscribed");
    let tally = run.publish().await?;
    let drained = run.drain(&tally).await;
    let results = run.cut_off().await;
    run.account(tally, drained, results?).await
}

/// A run under way: its context, its observers, and what drives them.
struct Run<'a> {
    plan: &'a Plan,
    ctx: Arc<RunCtx>,
    controls: Controls,
    /// The user's stop.
    stop: CancellationToken,
    observers: Vec<ObserverHandle>,
    stage: watch::Sender<Stage>,
    ticker_done: watch::Sender<bool>,
    ticker: Option<JoinHandle<Aggregator>>,
    /// Snapshots as the ticker makes them, for the broker watch.
    live: watch::Receiver<Snapshot>,
    /// When the ramp started, once it has.
    ramp_start: Option<Instant>,
    /// The device tasks, which leave once the drain is over.
    devices: Vec<JoinHandle<()>>,
    /// The event loops the devices and observers run on; they stop when the run is dropped.
    loops: Loops,
}

/// How the drain ended.
struct Drained {
    took: Duration,
    /// It waited out the whole drain timeout.
    full: bool,
    interrupted: bool,
    broker_gone: Option<BrokerGone>,
    publish_window: Duration,
}

impl<'a> Run<'a> {
    /// The clock starts, the aggregator and its ticker, and every observer (they connect at
    /// once, or at their join time).
    fn start(
        plan: &'a Plan,
        target: Target,
        timing: Timing,
        opts: FleetOptions,
        stop: CancellationToken,
        snapshots: watch::Sender<Snapshot>,
    ) -> Result<Run<'a>, FleetError> {
        let (flush, aggregator) = Aggregator::new(
            plan.devices.len() as u32,
            plan.observers.len() as u32,
            timing.drain_timeout + opts.tick * 2,
        );
        let groups = plan.devices.iter().map(|d| d.group as u32).collect();
        let aggregator = aggregator.with_layout(groups, plan.watchers());
        let timer =
            PreciseTimer::start().map_err(|e| FleetError::Task(format!("timer thread: {e}")))?;
        let end = stop.child_token();
        let (mut ctx, controls) = RunCtx::new(plan, target, timing, opts, flush, end, timer);
        if !plan.network.is_empty() {
            // Network faults: the devices connect through the proxy.
            let t = &ctx.target;
            let (ports, stats) = crate::proxy::start(
                &t.host,
                &t.ports,
                &plan.network,
                ctx.ramp.clone(),
                ctx.end.clone(),
            )
            .map_err(|e| FleetError::Task(format!("starting the network proxy: {e}")))?;
            ctx.device_target.host = "127.0.0.1".into();
            ctx.device_target.ports = ports;
            ctx.proxy = Some(stats);
        }
        let ctx = Arc::new(ctx);
        let (stage, stage_rx) = watch::channel(Stage::Connecting);
        let (ticker_done, done_rx) = watch::channel(false);
        let live = snapshots.subscribe();
        let load = plan.shape.is_declared().then(|| plan.shape.clone());
        let ticker = tokio::spawn(tick_loop(
            aggregator,
            ctx.clock,
            ctx.opts.tick,
            stage_rx,
            done_rx,
            snapshots,
            (load, ctx.ramp.clone()),
        ));
        let loops = match ctx.opts.loops {
            Some(n) => Loops::start(n)
                .map_err(|e| FleetError::Task(format!("starting the event loops: {e}")))?,
            None => Loops::shared(),
        };
        let observers = plan
            .observers
            .iter()
            .enumerate()
            .map(|(i, spec)| spawn_observer(i, spec.clone(), ctx.clone(), &loops))
            .collect();
        Ok(Run {
            plan,
            ctx,
            controls,
            stop,
            observers,
            stage,
            ticker_done,
            ticker: Some(ticker),
            live,
            ramp_start: None,
            devices: Vec::new(),
            loops,
        })
    }

    /// Wait until every observer that starts with the run has its subscriptions granted: nothing
    /// is published before. `Ok` also when the user stopped the run meanwhile.
    async fn observers_ready(&mut self) -> Result<(), FleetError> {
        let timeout = self.ctx.opts.observer_ready_timeout;
        let deadline = Instant::now() + timeout;
        for (handle, spec) in self.observers.iter_mut().zip(&self.plan.observers) {
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
                () = self.stop.cancelled() => return Ok(()),
            };
            return Err(FleetError::ObserverNotReady {
                client_id: spec.client_id.clone(),
                timeout,
                reason,
            });
        }
        Ok(())
    }

    /// Devices connect on the ramp and publish until the window closes, or until `end`: the
    /// user's stop, or the broker watch finding every client gone.
    async fn publish(&mut self) -> Result<DeviceTally, FleetError> {
        if self.stop.is_cancelled() {
            return Ok(DeviceTally::none(self.plan));
        }
        let ctx = &self.ctx;
        self.ramp_start = Some(ctx.start_ramp(&self.controls));
        let _ = self.stage.send(Stage::Running);
        let (devices, results): (Vec<_>, Vec<_>) = (0..self.plan.devices.len())
            .map(|pos| {
                let (done, result) = tokio::sync::oneshot::channel();
                // After the observers, so that the loops share the clients evenly.
                let key = self.plan.observers.len() + pos;
                let device = run_device(pos as u32, ctx.clone(), done);
                (self.loops.spawn(key, device), result)
            })
            .unzip();
        self.devices = devices;
        let ended = tokio::spawn({
            let end = ctx.end.clone();
            async move {
                end.cancelled().await;
                Instant::now()
            }
        });
        let restarting = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let watch = tokio::spawn(watch_broker(
            self.live.clone(),
            ctx.opts.broker_gone_after,
            ctx.end.clone(),
            restarting.clone(),
        ));
        let restarts = (ctx.opts.restart_broker.clone())
            .filter(|_| !self.plan.broker_restarts.is_empty())
            .zip(self.ramp_start)
            .map(|(hook, ramp)| {
                let list = self.plan.broker_restarts.clone();
                tokio::spawn(run_restarts(hook, list, ramp, restarting, ctx.end.clone()))
            });
        let controllers: Vec<_> = (self.plan.controllers.iter().enumerate())
            .map(|(i, spec)| {
                let index = self.plan.observers.len() + i;
                tokio::spawn(run_controller(index, spec.clone(), ctx.clone()))
            })
            .collect();
        let mut tally = DeviceTally::with_capacity(results.len());
        for c in controllers {
            tally.add_commands(c.await.map_err(|e| FleetError::Task(e.to_string()))?);
        }
        let _ = self.controls.commands_done.send(true);
        for r in results {
            tally.add(
                r.await
                    .map_err(|_| FleetError::Task("a device task ended early".into()))?,
            );
        }
        if let Some(r) = restarts {
            if r.is_finished() {
                tally.restarts = r.await.unwrap_or_default();
            } else {
                // Publishing ended first: a restart still to come does not happen.
                r.abort();
            }
        }
        // The watch ends only when it found the broker gone.
        if watch.is_finished() {
            tally.broker_gone = watch.await.ok().flatten();
        } else {
            watch.abort();
        }
        if ended.is_finished() {
            tally.ended = ended.await.ok();
        } else {
            ended.abort();
        }
        Ok(tally)
    }

    /// Wait until every expected delivery arrived, or the drain timeout (a second's grace when
    /// the run was stopped or cut short) passed.
    async fn drain(&mut self, tally: &DeviceTally) -> Drained {
        let broker_gone = tally.broker_gone;
        let timing = self.ctx.timing;
        let start = self.ramp_start.unwrap_or_else(Instant::now);
        // Publishing ended with the duration, or earlier when the run was stopped or cut short.
        let publish_window = tally
            .ended
            .unwrap_or_else(Instant::now)
            .saturating_duration_since(start)
            .min(timing.duration);
        let interrupted = self.stop.is_cancelled();
        let _ = self.stage.send(Stage::Draining);
        let expected: u64 = (tally.sent.iter().zip(self.plan.watchers()))
            .map(|(s, w)| s * u64::from(w))
            .sum();
        let drain_start = Instant::now();
        let limit = if interrupted || broker_gone.is_some() {
            self.ctx.opts.interrupt_grace.min(timing.drain_timeout)
        } else {
            timing.drain_timeout
        };
        let mut full = false;
        loop {
            let delivered: u64 = (self.observers.iter())
                .map(|o| o.delivered.load(Ordering::Relaxed))
                .sum();
            if delivered >= expected {
                break;
            }
            if drain_start.elapsed() >= limit {
                full = !interrupted;
                break;
            }
            if !interrupted && self.stop.is_cancelled() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        Drained {
            took: drain_start.elapsed(),
            full,
            interrupted: interrupted || self.stop.is_cancelled(),
            broker_gone,
            publish_window,
        }
    }

    /// The cutoff: devices leave (they stayed through the drain), then observers, which hand
    /// over their ledgers; the ticker makes its last snapshot.
    async fn cut_off(&mut self) -> Result<Vec<ObserverResult>, FleetError> {
        self.ctx.drained.cancel();
        for d in self.devices.drain(..) {
            // A goodbye takes at most its own timeout; a device task that failed is reported
            // by the run's outcome already.
            let _ = d.await;
        }
        let _ = self.controls.cutoff.send(true);
        for o in &self.observers {
            let _ = o.client.try_disconnect();
        }
        let mut results = Vec::with_capacity(self.observers.len());
        for o in self.observers.drain(..) {
            results.push(o.task.await.map_err(|e| FleetError::Task(e.to_string()))?);
        }
        let _ = self.stage.send(Stage::Done);
        let _ = self.ticker_done.send(true);
        Ok(results)
    }

    /// Every expected delivery as delivered, lost or in flight, and everything else the report
    /// needs.
    async fn account(
        mut self,
        tally: DeviceTally,
        drained: Drained,
        results: Vec<ObserverResult>,
    ) -> Result<RunOutcome, FleetError> {
        let cutoff = self.ctx.clock.elapsed();
        let ticker = self
            .ticker
            .take()
            .ok_or_else(|| FleetError::Task("ticker".into()))?;
        let aggregator = ticker.await.map_err(|e| FleetError::Task(e.to_string()))?;
        let settled = if drained.full || !drained.interrupted {
            tally.sent.clone()
        } else {
            aggregator.sent_at(cutoff.saturating_sub(self.ctx.timing.drain_timeout))
        };
        // A message the broker never acknowledged (or that never left the client) when its
        // device disconnected did not have its chance: unless a later one arrived, it is in
        // flight.
        let settled: Vec<u64> = (settled.iter().zip(&tally.completed))
            .map(|(s, c)| (*s).min(*c))
            .collect();
        let parts = Parts {
            tally,
            drained,
            results,
            aggregator,
        };
        outcome(self.plan, &self.ctx, parts, &settled)
    }
}

/// What a run's outcome is made of.
struct Parts {
    tally: DeviceTally,
    drained: Drained,
    results: Vec<ObserverResult>,
    aggregator: Aggregator,
}

/// The ledger of each receiver with the QoS its messages were due at. The members of a shared
/// subscription account as one receiver: between them, each message is expected once, and one
/// arriving at two members is a duplicate.
fn receivers<'r>(plan: &Plan, results: &'r [ObserverResult]) -> Vec<(Ledger, &'r [u8])> {
    (plan.receivers().iter())
        .map(|members| {
            let mut ledger = results[members[0]].ledger.clone();
            for m in &members[1..] {
                ledger.absorb(&results[*m].ledger);
            }
            (ledger, results[members[0]].due_qos.as_slice())
        })
        .collect()
}

/// Duplicates by the slot of the fault grid, over every observer.
fn duplicates_by_slot(plan: &Plan, results: &[ObserverResult]) -> Vec<u64> {
    let mut out = vec![0; plan.fault_grid.points.len()];
    for r in results {
        for (sum, n) in out.iter_mut().zip(&r.duplicates_by_slot) {
            *sum += n;
        }
    }
    out
}

/// Deliveries by the QoS due and the QoS used, over every observer.
fn delivered_qos(results: &[ObserverResult]) -> [[u64; 3]; 3] {
    results.iter().fold([[0; 3]; 3], |mut sum, r| {
        for (due, row) in r.delivered_qos.iter().enumerate() {
            for (used, n) in row.iter().enumerate() {
                sum[due][used] += n;
            }
        }
        sum
    })
}

/// The run's outcome from its parts, with the ledgers accounted.
fn outcome(
    plan: &Plan,
    ctx: &RunCtx,
    parts: Parts,
    settled: &[u64],
) -> Result<RunOutcome, FleetError> {
    let Parts {
        tally,
        drained,
        results,
        mut aggregator,
    } = parts;
    let ledgers = receivers(plan, &results);
    let accounting = account(ledgers.iter().map(|(l, q)| (l, *q)), &tally.sent, settled);
    if accounting.total.beyond_sent > 0 {
        warn!(
            beyond = accounting.total.beyond_sent,
            "arrivals beyond what devices reported as sent"
        );
    }
    let lost_by_slot = lost_by_slot(
        ledgers.iter().map(|(l, _)| l),
        &tally.marks,
        &tally.sent,
        settled,
        plan.fault_grid.points.len(),
    );
    let group_of: Vec<usize> = plan.devices.iter().map(|d| d.group).collect();
    let by_group = fleetbench_metrics::ledger::account_by_group(
        ledgers.iter().map(|(l, _)| l),
        (&tally.sent, settled),
        &group_of,
        group_of.iter().max().map_or(0, |g| g + 1),
    );
    let duplicates_by_slot = duplicates_by_slot(plan, &results);
    let behaviour = behaviour(plan, &results, &tally)?;
    let ramp_offset = match ctx.ramp_start_ns.load(Ordering::Relaxed) {
        u64::MAX => Duration::ZERO,
        ns => Duration::from_nanos(ns),
    };
    let connect_all = tally.connect_all(ctx.window().start);
    Ok(RunOutcome {
        accounting,
        totals: aggregator.totals().clone(),
        sent: tally.sent.iter().sum(),
        skipped: tally.skipped,
        publish_window: drained.publish_window,
        drain: drained.took,
        elapsed: ctx.clock.elapsed(),
        interrupted: drained.interrupted,
        broker_gone: drained.broker_gone,
        delivered_qos: delivered_qos(&results),
        granted: results.into_iter().map(|r| r.granted).collect(),
        behaviour,
        connect_all,
        never_connected: tally.never_connected,
        disconnected: tally.disconnected,
        sent_per_device: tally.sent,
        interval_log: aggregator.take_interval_log(),
        timeline: fleetbench_metrics::timeline::from(aggregator.take_timeline(), ramp_offset),
        ramp_offset,
        lost_by_slot,
        duplicates_by_slot,
        by_group,
        restarts: tally.restarts,
        cut_downs: aggregator.take_cut_downs(),
        network: ctx.proxy.as_ref().map_or_else(Default::default, |p| {
            (p.fault.iter().zip(p.dropped.iter().zip(&p.cut)))
                .map(|(i, (d, c))| (*i, (d.load(Ordering::Relaxed), c.load(Ordering::Relaxed))))
                .collect()
        }),
    })
}
