//! How devices, observers and controllers report connection errors and back off.

use std::time::Duration;

use std::sync::mpsc::Sender;

use fleetbench_metrics::{ErrorKind, Flush};
use fleetbench_scenario::Backoff;
use rand::Rng;
use tracing::debug;

use crate::client::ConnError;

/// Count an error of `kind` (the report groups errors by kind and keeps the latest detail).
pub(crate) fn report_error(flush: &Sender<Flush>, kind: ErrorKind, detail: impl std::fmt::Display) {
    let _ = flush.send(Flush::Error {
        kind,
        detail: detail.to_string(),
    });
}

/// After `who` lost its connection: log and count the error, and draw how long to wait before
/// attempt `attempt` (1 for the first) as `policy` says.
pub(crate) fn back_off(
    flush: &Sender<Flush>,
    who: &str,
    e: &ConnError,
    policy: &Backoff,
    attempt: u32,
) -> Duration {
    debug!(client = who, error = %e, "connection error");
    report_error(flush, e.kind(), format_args!("{who}: {e}"));
    policy.wait(attempt, rand::rng().random::<f64>())
}
