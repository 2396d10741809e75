//! `run --metrics-listen`: scraped during a run and after it, read with Prometheus's own
//! OpenMetrics parser (Python's prometheus_client, installed by `cargo xtask test`); the final
//! figures equal the report's.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::cli::{finish, scenario, start_run};
use common::mosquitto::free_port;
use serde_json::Value;

/// GET /metrics: the body, or None while nothing listens.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let (head, body) = text.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    Some(body.to_string())
}

/// The samples of an exposition, as Prometheus's parser reads them.
fn parse(body: &str) -> Vec<Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/parse_openmetrics.py");
    let mut child = Command::new("python3")
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(body.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("parser");
    assert!(
        out.status.success(),
        "Prometheus's parser refused the exposition: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

/// The sum of the samples named `name` whose labels include `with`.
fn sum(samples: &[Value], name: &str, with: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s["name"] == name)
        .filter(|s| with.iter().all(|(k, v)| s["labels"][k] == *v))
        .map(|s| s["value"].as_f64().expect("a number"))
        .sum()
}

/// The value of the first sample line of `body` that starts with `prefix`, read without the
/// parser: the polling loops look for a moment this way, and only the scrapes they keep go
/// through Prometheus's parser (a Python process per parse would load the small machine the
/// run measures itself on).
fn peek(body: &str, prefix: &str) -> Option<f64> {
    body.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// The scenarios here judge the endpoint, not the generator's punctuality beside a scraper.
const EXPECT: &str = "[expect]\ndelivered_ratio = 1.0\n";

#[test]
fn the_endpoint_is_scraped_during_the_run_and_ends_on_the_reports_figures() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "6s", 20, 5.0, EXPECT);
    let report_path = dir.path().join("r.json");
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let run = start_run(
        &file,
        &report_path,
        &["--metrics-listen", &addr, "--metrics-linger", "20s"],
    );
    // Scrape as Prometheus would until the run is over and its figures final.
    let start = Instant::now();
    let (mut during, mut last) = (None, None);
    while start.elapsed() < Duration::from_secs(60) {
        if let Some(body) = scrape(port) {
            let done = peek(&body, "fleetbench_run_done{") == Some(1.0);
            let sent = peek(&body, "fleetbench_messages_sent_total{").unwrap_or(0.0);
            if !done && sent > 0.0 && during.is_none() {
                during = Some(parse(&body));
            }
            if done {
                last = Some(parse(&body));
                break;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    let during = during.expect("a scrape while the run was publishing");
    let last = last.expect("a scrape after the run");
    let (out, _) = finish(run, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let r: Value = serde_json::from_str(&std::fs::read_to_string(&report_path).expect("report"))
        .expect("json");
    let t = &r["totals"];
    let labels = [("scenario", "trust"), ("shard", "0/1")];
    assert!(sum(&during, "fleetbench_devices_connected", &labels) > 0.0);
    assert_eq!(sum(&during, "fleetbench_run_done", &labels), 0.0);
    // The final counters are the report's.
    for (metric, field) in [
        ("fleetbench_messages_sent_total", "sent"),
        ("fleetbench_messages_delivered_total", "delivered"),
        ("fleetbench_messages_lost_total", "lost"),
        ("fleetbench_messages_duplicated_total", "duplicates"),
        ("fleetbench_messages_in_flight", "in_flight"),
    ] {
        let want = t[field].as_f64().expect("a count");
        assert_eq!(
            sum(&last, metric, &labels),
            want,
            "{metric} against totals.{field}"
        );
    }
    assert_eq!(
        sum(&last, "fleetbench_messages_sent_total", &[("group", "s")]),
        t["sent"].as_f64().expect("sent")
    );
    // Latency: as many in the histogram as the report measured, and the buckets cumulative.
    for kind in ["from_intended", "from_send"] {
        let count = sum(&last, "fleetbench_latency_seconds_count", &[("kind", kind)]);
        let want = r["latency"][kind]["count"].as_f64().expect("count");
        assert_eq!(count, want, "{kind}");
        let inf = sum(
            &last,
            "fleetbench_latency_seconds_bucket",
            &[("kind", kind), ("le", "+Inf")],
        );
        assert_eq!(inf, count, "{kind}: the +Inf bucket holds every delivery");
    }
    assert_eq!(
        sum(&last, "fleetbench_late_sends_total", &labels),
        r["generator"]["late_sends"].as_f64().expect("late sends")
    );
    dashboard_reads_what_the_endpoint_serves(&last);
}

/// Every metric the Grafana dashboard queries is one the endpoint serves.
fn dashboard_reads_what_the_endpoint_serves(samples: &[Value]) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/grafana/fleetbench.json");
    let dash: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("dashboard")).expect("json");
    let served: Vec<&str> = samples.iter().filter_map(|s| s["name"].as_str()).collect();
    let mut queried = 0;
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().expect("targets") {
            let expr = target["expr"].as_str().expect("expr");
            for (at, _) in expr.match_indices("fleetbench_") {
                let name: String = expr[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    served.contains(&name.as_str()),
                    "{expr} queries {name}, not served"
                );
                queried += 1;
            }
        }
    }
    assert!(queried >= 10, "{queried} metric references");
}

#[test]
fn a_taken_metrics_port_is_refused_before_anything_connects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "2s", 2, 1.0, "");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let out = Command::new(common::cli::BIN)
        .arg("run")
        .arg(&file)
        .args(["--quiet", "--no-tui", "--metrics-listen", &addr])
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("--metrics-listen {addr}")), "{err}");
}

#[test]
fn the_standalone_broker_serves_its_connections_and_process_figures() {
    let (mqtt, metrics) = (free_port(), free_port());
    let broker = Command::new(common::cli::BIN)
        .args(["broker", "--allow-anonymous", "--listen"])
        .arg(format!("127.0.0.1:{mqtt}"))
        .arg("--metrics-listen")
        .arg(format!("127.0.0.1:{metrics}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    // Ended by its PID however the test ends.
    let _broker = Ended(broker);
    let dir = tempfile::tempdir().expect("tempdir");
    let extra = format!("{}{EXPECT}", common::cli::external(mqtt));
    let file = scenario(dir.path(), "4s", 20, 2.0, &extra);
    let run = start_run(&file, &dir.path().join("r.json"), &[]);
    // While the run is connected: its 20 devices and its observer on the broker's port.
    let start = Instant::now();
    let (mut most, mut last) = (0.0f64, Vec::new());
    let gauge = format!("fleetbench_broker_connections{{port=\"{mqtt}\"}}");
    while start.elapsed() < Duration::from_secs(30) && most < 21.0 {
        if let Some(body) = scrape(metrics) {
            let now = peek(&body, &gauge).unwrap_or(0.0);
            if now > most {
                most = now;
                last = parse(&body);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let port = mqtt.to_string();
    let parsed = sum(&last, "fleetbench_broker_connections", &[("port", &port)]);
    assert_eq!(parsed, most, "the parser reads what the line says");
    assert!(sum(&last, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(
        sum(&last, "process_cpu_seconds_total", &[]) > 0.0,
        "it served 21 connections"
    );
    assert_eq!(sum(&last, "fleetbench_broker_panics_total", &[]), 0.0);
    let (out, _) = finish(run, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    assert_eq!(most, 21.0, "devices and the observer on the broker's port");
}

/// A child process this test started, ended when dropped.
struct Ended(std::process::Child);

impl Drop for Ended {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
