//! What watches the run's snapshots: the ticker that makes them (merging the tasks' flushes
//! once a tick), and the broker watch that ends the run when every client has been
//! disconnected for long enough.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::aggregate::Stage;
use fleetbench_metrics::{Aggregator, BrokerGone, Snapshot};
use fleetbench_scenario::load::LoadShape;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::clock::RunClock;

pub(crate) async fn tick_loop(
    mut aggregator: Aggregator,
    clock: RunClock,
    tick: Duration,
    stage: watch::Receiver<Stage>,
    mut done: watch::Receiver<bool>,
    snapshots: watch::Sender<Snapshot>,
    (load, ramp): (Option<LoadShape>, watch::Receiver<Option<Instant>>),
) -> Aggregator {
    // When the ramp started on the run clock, and the load phase a snapshot is in.
    let ramp_at =
        || (*ramp.borrow()).map(|start| Duration::from_nanos(clock.ns_at(start.into_std())));
    let load_phase = || {
        let start = (*ramp.borrow())?;
        Some(load.as_ref()?.phase_at(start.elapsed()))
    };
    // Ticks fall halfway between the points of the run clock's tick grid, where observers
    // flush: a tick a little late still takes exactly one flush of each observer, so the
    // delivery rate read from consecutive ticks does not jump by a flush. A tick missed
    // altogether is skipped, keeping the grid.
    let mut interval = tokio::time::interval_at(halfway_after(&clock, tick).into(), tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = done.wait_for(|d| *d) => break,
        }
        let mut snap = aggregator.tick(clock.elapsed(), *stage.borrow()).clone();
        snap.load_phase = load_phase();
        snap.ramp_at = ramp_at();
        snapshots.send_replace(snap);
    }
    let mut snap = aggregator.tick(clock.elapsed(), Stage::Done).clone();
    snap.load_phase = load_phase();
    snap.ramp_at = ramp_at();
    snapshots.send_replace(snap);
    aggregator
}

/// The first instant halfway between two points of the run clock's `tick` grid from now on.
fn halfway_after(clock: &RunClock, tick: Duration) -> std::time::Instant {
    let tick_ns = tick.as_nanos().max(1);
    let now = clock.elapsed().as_nanos();
    let mut at = now / tick_ns * tick_ns + tick_ns / 2;
    if at <= now {
        at += tick_ns;
    }
    clock.instant_at(Duration::from_nanos(u64::try_from(at).unwrap_or(u64::MAX)))
}

/// End the run early (`end`) when every device and observer has been disconnected for
/// `after`, once some client had connected: the broker went away. Records when. While
/// `restarting` is up (a `broker_restart` fault), nobody connected is expected.
pub(crate) async fn watch_broker(
    mut live: watch::Receiver<Snapshot>,
    after: Duration,
    end: CancellationToken,
    restarting: Arc<AtomicBool>,
) -> Option<BrokerGone> {
    let mut seen_up = false;
    let mut down_since: Option<Duration> = None;
    while live.changed().await.is_ok() {
        let (elapsed, up, running) = {
            let s = live.borrow_and_update();
            (
                s.elapsed,
                s.devices_connected + s.observers_connected,
                s.stage == Stage::Running,
            )
        };
        seen_up |= up > 0;
        // A broker restarted on purpose is not gone: the wait starts when it is back.
        if !running || !seen_up || up > 0 || restarting.load(Ordering::Relaxed) {
            down_since = None;
            continue;
        }
        let since = *down_since.get_or_insert(elapsed);
        if elapsed.saturating_sub(since) >= after {
            warn!(since = ?since, "every client lost its connection and none came back: ending the run");
            end.cancel();
            return Some(BrokerGone {
                since,
                waited: elapsed.saturating_sub(since),
            });
        }
    }
    None
}
