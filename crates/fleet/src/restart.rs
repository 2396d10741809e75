//! `broker_restart` faults: at each one's time the broker is restarted by the hook the caller
//! gave (the child broker killed and started again, or an external broker's command run), on a
//! blocking thread, while the broker watch holds off: every client losing its connection then
//! is the fault, not a broker gone for good.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::RestartEvent;
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// Restarts the broker for the `n`th restart of the run (0 for the first), given how long it is
/// to stay down; says what happened, or why not.
pub type RestartFn = dyn Fn(usize, Duration) -> Result<String, String> + Send + Sync;

/// The hook a run restarts its broker with.
#[derive(Clone)]
pub struct BrokerRestarter(pub Arc<RestartFn>);

impl std::fmt::Debug for BrokerRestarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BrokerRestarter")
    }
}

/// Run every restart of `restarts` ((fault index, at, down) from `ramp`) in order with `hook`, holding
/// `restarting` up meanwhile; ends early with the run.
pub(crate) async fn run_restarts(
    hook: BrokerRestarter,
    restarts: Vec<(usize, Duration, Duration)>,
    ramp: Instant,
    restarting: Arc<AtomicBool>,
    end: CancellationToken,
) -> Vec<RestartEvent> {
    let mut events = Vec::new();
    for (n, (fault, at, down)) in restarts.into_iter().enumerate() {
        tokio::select! {
            _ = sleep_until(ramp + at) => {}
            _ = end.cancelled() => break,
        }
        restarting.store(true, Ordering::Relaxed);
        let began = Instant::now();
        let f = hook.0.clone();
        let result = tokio::task::spawn_blocking(move || f(n, down))
            .await
            .unwrap_or_else(|e| Err(format!("the restart task failed: {e}")));
        let took = began.elapsed();
        match &result {
            Ok(what) => info!(took = ?took, "broker restarted: {what}"),
            Err(why) => warn!(took = ?took, "broker restart failed: {why}"),
        }
        restarting.store(false, Ordering::Relaxed);
        events.push(RestartEvent {
            fault,
            at: began.saturating_duration_since(ramp),
            took,
            result,
        });
    }
    events
}
