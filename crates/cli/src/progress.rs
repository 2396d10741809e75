//! The progress line on stderr: a compact line at a steady interval, so that a CI log shows a
//! run's life without flooding.

use std::time::Duration;

use fleetbench_metrics::fmt::{fmt_count, fmt_us};
use fleetbench_metrics::Snapshot;
use tokio::sync::watch;

pub(crate) fn line(s: &Snapshot) -> String {
    let errors: u64 = s.errors.values().map(|g| g.count).sum();
    format!(
        "[{:>7.1}s {:<10}] devices {}/{}  pub {:.0}/s  del {:.0}/s  p99 {} (send {})  sent {}  delivered {}  dup {}  late {}  errors {}",
        s.elapsed.as_secs_f64(),
        s.stage.label(),
        fmt_count(u64::from(s.devices_connected)),
        fmt_count(u64::from(s.devices_target)),
        s.publish_rate,
        s.deliver_rate,
        p99(&s.interval_from_intended),
        p99(&s.interval_from_send),
        fmt_count(s.sent),
        fmt_count(s.delivered),
        fmt_count(s.duplicates),
        fmt_count(s.late_sends),
        fmt_count(errors),
    )
}

fn p99(l: &fleetbench_metrics::hist::LatencySummary) -> String {
    if l.count > 0 {
        fmt_us(l.p99_us)
    } else {
        "-".to_string()
    }
}

/// Print a line every `every` until the task is aborted.
pub(crate) async fn run(mut snapshots: watch::Receiver<Snapshot>, every: Duration) {
    let mut interval = tokio::time::interval(every);
    interval.tick().await;
    loop {
        interval.tick().await;
        let s = snapshots.borrow_and_update().clone();
        eprintln!("{}", line(&s));
    }
}
