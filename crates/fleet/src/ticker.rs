//! What watches the run's snapshots: the ticker that makes them (merging the tasks' flushes
//! once a tick), and the broker watch that ends the run when every client has been
//! disconnected for long enough.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::aggregate::Phase;
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
                s.phase == Phase::Running,
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
