//! `fleetbench broker --metrics-listen ADDR`: the standalone broker's figures for Prometheus:
//! connections established on each listener (read from the kernel's socket table on each
//! scrape), rumqttd's panics and the listeners its watch restarted, and the process's CPU time
//! and resident memory under the standard `process_` names.

use std::sync::Mutex;

use fleetbench_report::report::BrokerWatch;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// What the endpoint shows of the broker.
#[derive(Debug)]
pub(crate) struct BrokerMetrics {
    ports: Vec<u16>,
    watch: Mutex<BrokerWatch>,
}

impl BrokerMetrics {
    pub(crate) fn new(ports: Vec<u16>) -> BrokerMetrics {
        BrokerMetrics {
            ports,
            watch: Mutex::new(BrokerWatch::default()),
        }
    }

    /// The watch's latest figures.
    pub(crate) fn update(&self, watch: BrokerWatch) {
        if let Ok(mut w) = self.watch.lock() {
            *w = watch;
        }
    }
}

impl Collector for BrokerMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let tables = ["/proc/net/tcp", "/proc/net/tcp6"]
            .map(|p| std::fs::read_to_string(p).unwrap_or_default());
        let mut metric = encoder.encode_descriptor(
            "fleetbench_broker_connections",
            "TCP connections established on the listener's port now.",
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for port in &self.ports {
            let n = tables.iter().map(|t| established_on(t, *port)).sum::<u64>();
            let labels = [("port", port.to_string())];
            ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                .encode(metric.encode_family(&labels)?)?;
        }
        let watch = self.watch.lock().map(|w| w.clone()).unwrap_or_default();
        let restarts = watch.restarts.len() as u64 + watch.unrecorded_restarts;
        for (name, help, v) in [
            (
                "fleetbench_broker_panics",
                "Times rumqttd panicked in a connection's task.",
                watch.panics,
            ),
            (
                "fleetbench_broker_listener_restarts",
                "Listeners the watch found wedged and restarted.",
                restarts,
            ),
        ] {
            let c = ConstCounter::new(v);
            c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)?;
        }
        if let Some((cpu, rss)) = process_usage() {
            let c = ConstCounter::new(cpu);
            let m = encoder.encode_descriptor(
                "process_cpu",
                "CPU time the process used.",
                Some(&Unit::Seconds),
                c.metric_type(),
            )?;
            c.encode(m)?;
            let g = ConstGauge::new(i64::try_from(rss).unwrap_or(i64::MAX));
            let m = encoder.encode_descriptor(
                "process_resident_memory",
                "Resident memory of the process.",
                Some(&Unit::Bytes),
                g.metric_type(),
            )?;
            g.encode(m)?;
        }
        Ok(())
    }
}

/// Connections in `table` (the kernel's /proc/net/tcp format) established with local port
/// `port`.
fn established_on(table: &str, port: u16) -> u64 {
    let port = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1).unwrap_or_default();
            // State is the fourth field; 01 is ESTABLISHED.
            local.ends_with(&port) && fields.nth(1) == Some("01")
        })
        .count() as u64
}

/// The process's CPU seconds and resident bytes, from /proc.
fn process_usage() -> Option<(f64, u64)> {
    // The whole process, threads that ended included.
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, cpu) = fleetbench_metrics::env::stat_cpu_seconds(&stat)?;
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some((cpu, kib * 1024))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn established_connections_are_counted_by_local_port() {
        // Two established on 1883 (0x075B), one listening, one established elsewhere.
        let table = "  sl  local_address rem_address   st\n\
            0: 0100007F:075B 0100007F:9C40 01 0\n\
            1: 0100007F:075B 0100007F:9C41 01 0\n\
            2: 0100007F:075B 00000000:0000 0A 0\n\
            3: 0100007F:1F90 0100007F:9C42 01 0\n";
        assert_eq!(established_on(table, 1883), 2);
        assert_eq!(established_on(table, 8080), 1);
        assert_eq!(established_on(table, 9999), 0);
    }
}
