//! The run tick by tick: devices connected, connects, connection errors and deliveries. Each
//! fault's cost is read from it (`crate::fault_cost`).

use std::collections::BTreeMap;
use std::time::Duration;

use crate::error_kind::ErrorGroup;
use crate::ErrorKind;

/// One tick.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Point {
    /// When the tick ended: from the run clock's start while running, from the start of the
    /// connect ramp in an outcome.
    pub elapsed: Duration,
    pub devices_connected: u32,
    /// Devices that left on purpose so far (their publish window over, or `drop_at`): a
    /// device that left is not one a fault still keeps away.
    pub devices_left: u32,
    /// Connections completed (CONNACKs) during the tick.
    pub connects: u64,
    /// Connection errors so far.
    pub connection_errors: u64,
    /// The same by kind, in the order of [`ErrorKind::CONNECTION`].
    pub connection_errors_by: [u64; ErrorKind::CONNECTION.len()],
    /// Messages sent and deliveries (first arrivals) so far.
    pub sent: u64,
    pub delivered: u64,
}

/// A device connection that went down: cut by a fault's plan, or lost (to a broker restart,
/// the network, the broker closing it).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CutDown {
    /// The device's group (its position in the scenario).
    pub group: usize,
    /// When it went down, from the start of the connect ramp (for a planned cut: when the
    /// plan cut it).
    pub at: Duration,
    /// How long until the device was connected again; None when it never was.
    pub down: Option<Duration>,
    /// A fault's plan cut it (`disconnect`, `churn`), rather than it being lost.
    pub planned: bool,
}

/// Connection errors among `errors`, by kind in the order of [`ErrorKind::CONNECTION`].
pub fn connection_errors(
    errors: &BTreeMap<ErrorKind, ErrorGroup>,
) -> [u64; ErrorKind::CONNECTION.len()] {
    ErrorKind::CONNECTION.map(|k| errors.get(&k).map_or(0, |g| g.count))
}

/// `points` with their times counted from `start` (points before it are dropped).
pub fn from(points: Vec<Point>, start: Duration) -> Vec<Point> {
    points
        .into_iter()
        .filter(|p| p.elapsed >= start)
        .map(|p| Point {
            elapsed: p.elapsed - start,
            ..p
        })
        .collect()
}
