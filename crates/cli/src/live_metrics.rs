//! `fleetbench run --metrics-listen ADDR`: the run's live figures for Prometheus, in the
//! OpenMetrics text format (prometheus-client encodes them), served at `/metrics` (axum).
//! Every scrape reads the latest snapshot, so the endpoint keeps no state of its own and never
//! holds the fleet up; once the run is over, the report's accounting (lost, in flight) takes
//! the place of the live estimate. Names and labels (`scenario`, `shard`, `group`, `reason`,
//! `kind`) are the ones `deploy/grafana/fleetbench.json` queries.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use fleetbench_metrics::aggregate::Snapshot;
use fleetbench_metrics::buckets::{Buckets, BOUNDS_US};
use fleetbench_metrics::ErrorKind;
use fleetbench_report::report::Totals;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, NoLabelSet};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};
use tokio::sync::watch;

use crate::UsageError;

/// What the endpoint shows: the latest snapshot of the run, and its accounting once settled.
#[derive(Debug)]
pub(crate) struct LiveMetrics {
    snapshots: watch::Receiver<Snapshot>,
    scenario: String,
    shard: String,
    groups: Vec<String>,
    settled: Mutex<Option<Totals>>,
    /// The search step under way (a `step` label on every figure), for `fleetbench search`.
    step: Mutex<Option<String>>,
}

impl LiveMetrics {
    pub(crate) fn new(
        snapshots: watch::Receiver<Snapshot>,
        scenario: &str,
        shard: String,
        groups: Vec<String>,
    ) -> Arc<LiveMetrics> {
        Arc::new(LiveMetrics {
            snapshots,
            scenario: scenario.to_string(),
            shard,
            groups,
            settled: Mutex::new(None),
            step: Mutex::new(None),
        })
    }

    /// Label the figures from now on with the search step under way.
    pub(crate) fn set_step(&self, step: String) {
        if let Ok(mut s) = self.step.lock() {
            *s = Some(step);
        }
    }

    /// The run is over: from now on the report's accounting stands.
    pub(crate) fn settle(&self, totals: &Totals) {
        if let Ok(mut s) = self.settled.lock() {
            *s = Some(*totals);
        }
    }

    fn labels(&self) -> Vec<(&'static str, String)> {
        let mut labels = vec![
            ("scenario", self.scenario.clone()),
            ("shard", self.shard.clone()),
        ];
        if let Some(step) = self.step.lock().ok().and_then(|s| s.clone()) {
            labels.push(("step", step));
        }
        labels
    }
}

/// Write one metric family: `values` are (extra labels, value).
fn family<M: EncodeMetric>(
    encoder: &mut DescriptorEncoder,
    (name, help, unit): (&str, &str, Option<&Unit>),
    base: &[(&'static str, String)],
    values: impl IntoIterator<Item = (Vec<(&'static str, String)>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut values = values.into_iter().peekable();
    let Some((_, first)) = values.peek() else {
        return Ok(());
    };
    let mut metric = encoder.encode_descriptor(name, help, unit, first.metric_type())?;
    for (extra, m) in values {
        let mut labels = base.to_vec();
        labels.extend(extra);
        m.encode(metric.encode_family(&labels)?)?;
    }
    Ok(())
}

/// A histogram of latency in seconds from the snapshot's buckets.
#[derive(Debug)]
struct PromHistogram(Buckets);

impl EncodeMetric for PromHistogram {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::MetricEncoder,
    ) -> Result<(), std::fmt::Error> {
        let bounds = BOUNDS_US
            .iter()
            .map(|b| *b as f64 / 1e6)
            .chain([f64::INFINITY]);
        let buckets: Vec<(f64, u64)> = bounds.zip(self.0.counts).collect();
        encoder.encode_histogram::<NoLabelSet>(self.0.sum_us / 1e6, self.0.count, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

type Labels = Vec<(&'static str, String)>;

fn gauge(v: u64) -> ConstGauge {
    ConstGauge::new(i64::try_from(v).unwrap_or(i64::MAX))
}

impl LiveMetrics {
    /// `f` of each group, labelled with the group's name.
    fn by_group(&self, f: impl Fn(usize) -> u64) -> Vec<(Labels, u64)> {
        (self.groups.iter().enumerate())
            .map(|(i, g)| (vec![("group", g.clone())], f(i)))
            .collect()
    }

    /// Connected devices and observers, and messages sent, by group.
    fn encode_fleet(
        &self,
        e: &mut DescriptorEncoder,
        s: &Snapshot,
        base: &Labels,
    ) -> Result<(), std::fmt::Error> {
        let connected =
            self.by_group(|i| (s.groups.get(i)).map_or(0, |g| u64::from(g.devices_connected)));
        let name = (
            "fleetbench_devices_connected",
            "Devices connected now.",
            None,
        );
        family(
            e,
            name,
            base,
            connected.into_iter().map(|(l, v)| (l, gauge(v))),
        )?;
        let observers = u64::from(s.observers_connected);
        let name = (
            "fleetbench_observers_connected",
            "Observers connected now.",
            None,
        );
        family(e, name, base, [(Vec::new(), gauge(observers))])?;
        let sent = self.by_group(|i| s.groups.get(i).map_or(0, |g| g.sent));
        let name = (
            "fleetbench_messages_sent",
            "Messages the devices sent.",
            None,
        );
        family(
            e,
            name,
            base,
            sent.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
        )
    }
}

/// What became of the messages: live first arrivals, then once `settled` the report's.
fn encode_messages(
    e: &mut DescriptorEncoder,
    s: &Snapshot,
    settled: Option<&Totals>,
    base: &Labels,
) -> Result<(), std::fmt::Error> {
    let delivered = settled.map_or(s.delivered, |t| t.delivered);
    let duplicates = settled.map_or(s.duplicates, |t| t.duplicates);
    let lost = settled.map_or(0, |t| t.lost);
    let in_flight = settled.map_or(s.outstanding(), |t| t.in_flight);
    let counters = [
        (
            "fleetbench_messages_delivered",
            "Messages delivered (first arrivals).",
            delivered,
        ),
        (
            "fleetbench_messages_duplicated",
            "Arrivals of a message that had arrived before.",
            duplicates,
        ),
        (
            "fleetbench_messages_lost",
            "Messages lost (known when the run is over: 0 until then).",
            lost,
        ),
        (
            "fleetbench_late_sends",
            "Messages the generator sent later than due.",
            s.late_sends,
        ),
    ];
    for (name, help, v) in counters {
        family(
            e,
            (name, help, None),
            base,
            [(Vec::new(), ConstCounter::new(v))],
        )?;
    }
    let name = (
        "fleetbench_messages_in_flight",
        "Deliveries expected and not arrived yet (while running: in flight or lost).",
        None,
    );
    family(e, name, base, [(Vec::new(), gauge(in_flight))])
}

/// Connection failures by reason, whether the run is over, and latency.
fn encode_health(
    e: &mut DescriptorEncoder,
    s: &Snapshot,
    done: bool,
    base: &Labels,
) -> Result<(), std::fmt::Error> {
    let failures = ErrorKind::CONNECTION.iter().map(|kind| {
        let n = s.errors.get(kind).map_or(0, |g| g.count);
        (
            vec![("reason", kind.label().to_string())],
            ConstCounter::new(n),
        )
    });
    let name = (
        "fleetbench_connect_failures",
        "Failed or lost connections, by reason.",
        None,
    );
    family(e, name, base, failures)?;
    let name = (
        "fleetbench_run_done",
        "1 once the run is over and its figures are the report's.",
        None,
    );
    family(e, name, base, [(Vec::new(), gauge(u64::from(done)))])?;
    let latency = ["from_intended", "from_send"]
        .into_iter()
        .zip(s.latency_buckets)
        .map(|(kind, b)| (vec![("kind", kind.to_string())], PromHistogram(b)));
    let name = (
        "fleetbench_latency",
        "Delivery latency after the warm-up, from the time a \
            message was due (from_intended) or sent (from_send).",
        Some(&Unit::Seconds),
    );
    family(e, name, base, latency)
}

impl Collector for LiveMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self.snapshots.borrow().clone();
        let settled = self.settled.lock().ok().and_then(|t| *t);
        let base = self.labels();
        self.encode_fleet(&mut encoder, &s, &base)?;
        encode_messages(&mut encoder, &s, settled.as_ref(), &base)?;
        encode_health(&mut encoder, &s, settled.is_some(), &base)
    }
}

/// `ADDR` of `--metrics-listen`: an address, or a port alone (on loopback).
pub(crate) fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| {
        format!("{text:?} is not an address: give host:port (\"127.0.0.1:9464\") or a port")
    })
}

/// `--metrics-linger`: up to an hour ("30s").
pub(crate) fn parse_linger(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text.trim())
        .map_err(|e| format!("{text:?} is not a duration ({e}); expected e.g. \"30s\""))?;
    if d > std::time::Duration::from_secs(3600) {
        return Err(format!(
            "{text:?} is more than an hour; expected e.g. \"30s\""
        ));
    }
    Ok(d)
}

/// Listen on `addr` now (a taken port is the user's to fix, before anything connects) and
/// serve `metrics` from a thread of its own until the process ends: the endpoint outlives the
/// run's runtime, so that the final figures can be scraped.
pub(crate) fn serve(addr: SocketAddr, metrics: impl Collector) -> anyhow::Result<SocketAddr> {
    let listener = std::net::TcpListener::bind(addr)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| UsageError(format!("--metrics-listen {addr}: {e}")))?;
    let bound = listener
        .local_addr()
        .context("the metrics listener's address")?;
    let mut registry = Registry::default();
    registry.register_collector(Box::new(metrics));
    let registry = Arc::new(registry);
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let registry = registry.clone();
            async move { scrape(&registry) }
        }),
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the metrics endpoint's runtime")?;
    std::thread::Builder::new()
        .name("metrics".into())
        .spawn(move || {
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(l) => {
                        if let Err(e) = axum::serve(l, app).await {
                            tracing::warn!("the metrics endpoint stopped: {e}");
                        }
                    }
                    Err(e) => tracing::warn!("the metrics endpoint could not start: {e}"),
                }
            })
        })
        .context("starting the metrics endpoint")?;
    Ok(bound)
}

fn scrape(registry: &Registry) -> axum::response::Response {
    use axum::response::IntoResponse;
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, registry) {
        Ok(()) => (
            [(
                axum::http::header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_port_alone_listens_on_loopback_and_nonsense_is_named() {
        assert_eq!(
            parse_listen("9464"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9464)))
        );
        assert_eq!(parse_listen("0.0.0.0:9464").map(|a| a.port()), Ok(9464));
        let e = parse_listen("metrics").expect_err("not an address");
        assert!(e.contains("host:port"), "{e}");
    }
}
