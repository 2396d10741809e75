//! `fleetbench search`: it finds a limit fleetbench does not decide (a throttling proxy of this
//! test between the devices and the broker) within 10%, for rate and for devices; it names the
//! generator when the generator is the limit; bad input is refused before anything connects;
//! Ctrl-C ends it with what it found.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::BrokerProcess;
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_fleetbench");

/// One search at a time: each measures what the machine can carry, and the generator test
/// fills a core on purpose.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn alone() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

/// Bytes the devices' side sends the broker per message: the QoS 1 PUBLISH (fixed header 2,
/// topic length 2, the topic, packet id 2, the payload) and the observer's PUBACK (4).
fn upstream_bytes(topic_len: usize, payload: usize) -> f64 {
    (2 + 2 + topic_len + 2 + payload + 4) as f64
}

/// A token bucket over everything the clients send the broker, shared by every connection.
struct Throttle {
    bytes_per_s: f64,
    burst: f64,
    state: Mutex<(f64, Instant)>,
}

impl Throttle {
    fn take(&self, n: usize) {
        loop {
            let wait = {
                let mut s = self.state.lock().expect("throttle");
                let now = Instant::now();
                s.0 = (s.0 + now.duration_since(s.1).as_secs_f64() * self.bytes_per_s)
                    .min(self.burst);
                s.1 = now;
                if s.0 >= n as f64 {
                    s.0 -= n as f64;
                    return;
                }
                (n as f64 - s.0) / self.bytes_per_s
            };
            std::thread::sleep(Duration::from_secs_f64(wait.max(0.0002)));
        }
    }
}

/// A loopback proxy to `port` that lets the clients send at most `bytes_per_s` in all; its
/// threads end with the test process.
fn throttling_proxy(port: u16, bytes_per_s: f64) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind proxy");
    let at = listener.local_addr().expect("addr").port();
    let throttle = Arc::new(Throttle {
        bytes_per_s,
        burst: bytes_per_s / 10.0,
        state: Mutex::new((0.0, Instant::now())),
    });
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(broker) = TcpStream::connect(("127.0.0.1", port)) else {
                continue;
            };
            let _ = (client.set_nodelay(true), broker.set_nodelay(true));
            let (Ok(mut c_read), Ok(mut b_read)) = (client.try_clone(), broker.try_clone()) else {
                continue;
            };
            let (mut c_write, mut b_write) = (client, broker);
            let t = throttle.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok(n @ 1..) = c_read.read(&mut buf) {
                    t.take(n);
                    if b_write.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = b_write.shutdown(std::net::Shutdown::Both);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut b_read, &mut c_write);
                let _ = c_write.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    at
}

/// A fan-in of `count` devices at `rate` msg/s with a payload of 100 bytes and one observer,
/// p99 within 50 ms and nothing lost, against `port`.
fn scenario(dir: &Path, count: u32, rate: f64, port: u16) -> PathBuf {
    let text = format!(
        r#"name = "limit"
duration = "10s"
drain_timeout = "3s"
[broker]
url = "mqtt://127.0.0.1:{port}"
[[group]]
name = "d"
count = {count}
topic = "lim/{{index}}"
rate = {rate}
qos = 1
payload_size = 100
[[observer]]
name = "all"
filters = ["lim/#"]
qos = 1
[expect]
max_lost = 0
p99 = "50ms"
"#
    );
    let path = dir.join("limit.toml");
    std::fs::write(&path, text).expect("write scenario");
    path
}

fn search(file: &Path, report: &Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("search")
        .arg(file)
        .arg("--report")
        .arg(report)
        .args([
            "--settle", "2s", "--window", "4s", "--rest", "1s", "--budget", "5m",
        ])
        .args(args)
        .output()
        .expect("run fleetbench search")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn result(path: &Path, out: &Output) -> Value {
    let t = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{e}: {}", text(out)));
    serde_json::from_str(&t).expect("search result JSON")
}

/// A search against the throttle never names a wrong broker limit: it finds the throttle
/// within 10% of `limit`, or it says that the generator was the limit (a machine too busy to
/// keep the schedule: the failing steps are the generator's, and the search says so). Returns
/// whether it found the throttle.
fn assert_found(r: &Value, limit: f64, out: &Output) -> bool {
    let answer = r["answer"].as_f64();
    let within = answer.is_some_and(|a| (a - limit).abs() <= 0.1 * limit);
    let steps = r["steps"].as_array().expect("steps");
    assert!(
        steps.iter().all(|s| s["report"]["schema_version"].is_u64()),
        "every step's report is in it"
    );
    match r["limited_by"].as_str() {
        Some("broker") => assert!(within, "a wrong broker limit: {}", text(out)),
        Some("generator") if !within => {
            let lowest = r["bracket"][1].as_f64().expect("a failure");
            let failed = steps
                .iter()
                .rev()
                .find(|s| s["value"].as_f64() == Some(lowest));
            assert_eq!(
                failed.map(|s| s["generator_limited"].clone()),
                Some(Value::Bool(true)),
                "{}",
                text(out)
            );
            assert!(
                text(out).contains("the generator, not the broker"),
                "{}",
                text(out)
            );
            eprintln!("note: this machine could not keep the schedule; the search said so");
        }
        Some("generator") => {}
        other => panic!("limited by {other:?}: {}", text(out)),
    }
    within
}

#[test]
fn a_rate_search_finds_a_bandwidth_limit_within_ten_percent() {
    let _alone = alone();
    let broker = BrokerProcess::start();
    // 1,500 messages a second in all: 150 per device of 10 (topics lim/0 .. lim/9).
    let per_msg = upstream_bytes(5, 100);
    let proxy = throttling_proxy(broker.port, 1500.0 * per_msg);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), 10, 25.0, proxy);
    let report = dir.path().join("search.json");
    let html = dir.path().join("search.html");
    let h = html.to_str().expect("utf-8");
    let out = search(
        &file,
        &report,
        &["--vary", "rate", "--from", "25", "--to", "800", "--html", h],
    );
    let r = result(&report, &out);
    assert_found(&r, 150.0, &out);
    let code = if r["limited_by"] == "broker" { 0 } else { 3 };
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    assert_matches_schema(&r);
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        table.contains("answer: ") || table.contains("the generator, not the broker"),
        "the table ends with the answer: {table}"
    );
    let page = std::fs::read_to_string(&html).expect("the page");
    assert!(
        page.contains("<svg") && (r["answer"].is_null() || page.contains("answer ")),
        "knee curves with the answer marked"
    );
    // The saved result makes the same page, and two results overlay.
    let again = dir.path().join("again.html");
    let out = Command::new(BIN)
        .args(["report", "html"])
        .arg(&report)
        .arg("--baseline")
        .arg(&report)
        .arg("-o")
        .arg(&again)
        .output()
        .expect("report html");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let page = std::fs::read_to_string(&again).expect("the page");
    assert_eq!(
        page.matches("<table>").count(),
        2,
        "a table of steps per search"
    );
}

/// The result matches the JSON Schema committed in docs/.
fn assert_matches_schema(r: &Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/search.schema.json");
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("json");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = (validator.iter_errors(r))
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "the result does not match the schema: {errors:#?}"
    );
}

#[test]
fn a_devices_search_finds_a_bandwidth_limit_within_ten_percent() {
    let _alone = alone();
    let broker = BrokerProcess::start();
    // 50 msg/s per device: 30 devices make 1,500 msg/s (topics of 5 and 6 characters).
    let per_msg = upstream_bytes(6, 100);
    let proxy = throttling_proxy(broker.port, 1500.0 * per_msg);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), 4, 50.0, proxy);
    let report = dir.path().join("search.json");
    let out = search(
        &file,
        &report,
        &["--vary", "devices", "--from", "4", "--to", "128"],
    );
    let r = result(&report, &out);
    assert_found(&r, 30.0, &out);
    let code = if r["limited_by"] == "broker" { 0 } else { 3 };
    assert_eq!(out.status.code(), Some(code), "{}", text(&out));
    assert!(r["steps"].as_array().is_some_and(|s| s
        .iter()
        .all(|s| s["value"].as_f64().is_some_and(|v| v.fract() == 0.0))));
}

/// Run `cmd` pinned to `core` with `taskset` (util-linux).
fn pinned(core: &str, program: &str) -> Command {
    let mut c = Command::new("taskset");
    c.args(["-c", core, program]);
    c
}

#[test]
fn a_generator_out_of_cores_is_named_as_the_limit() {
    let _alone = alone();
    // The broker on one core, fleetbench on the other with far more load than one core sends.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut broker = pinned("1", BIN)
        .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("taskset and fleetbench broker");
    let mut banner = [0u8; 64];
    let _ = broker.stdout.as_mut().map(|o| o.read(&mut banner));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), 200, 200.0, port);
    let report = dir.path().join("search.json");
    let out = pinned("0", BIN)
        .arg("search")
        .arg(&file)
        .arg("--report")
        .arg(&report)
        .args([
            "--vary", "rate", "--from", "200", "--to", "400", "--settle", "2s", "--window", "4s",
        ])
        .output()
        .expect("run the search");
    let _ = broker.kill();
    let _ = broker.wait();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let r = result(&report, &out);
    assert_eq!(r["limited_by"], "generator", "{}", text(&out));
    assert_eq!(r["steps"][0]["generator_limited"], true, "{}", text(&out));
    assert!(
        text(&out).contains("the generator, not the broker, was the limit"),
        "{}",
        text(&out)
    );
}

#[test]
fn bad_input_is_refused_before_anything_connects() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing listens on port 9: a search that connected would fail on that instead.
    let file = scenario(dir.path(), 4, 10.0, 9);
    let f = file.to_str().expect("utf-8");
    let cases: [(&[&str], &str); 6] = [
        (
            &["--vary", "rate", "--window", "1s"],
            "a step is judged on at least 2s",
        ),
        (&["--vary", "devices", "--to", "1e7"], "open files"),
        (&["--vary", "speed"], "invalid value 'speed'"),
        (
            &["--vary", "rate", "--from", "50", "--to", "10"],
            "--from 50 is above --to 10",
        ),
        (
            &["--vary", "devices", "--to", "40"],
            "cannot vary devices: it has load phases",
        ),
        (
            &["--vary", "rate", "--target", "p99"],
            "expected NAME=VALUE",
        ),
    ];
    let phased = dir.path().join("phased.toml");
    let t = std::fs::read_to_string(&file).expect("read");
    let phases = "[[phase]]\nname = \"up\"\nduration = \"5s\"\nrate = 1.0\n\
                  [[phase]]\nname = \"peak\"\nduration = \"5s\"\nrate = 2.0\n";
    std::fs::write(&phased, format!("{t}{phases}")).expect("write");
    for (args, says) in cases {
        let target = if says.contains("phases") {
            phased.to_str().expect("utf-8")
        } else {
            f
        };
        let out = Command::new(BIN)
            .arg("search")
            .arg(target)
            .args(args)
            .output()
            .expect("run");
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out));
        assert!(text(&out).contains(says), "{args:?}: {}", text(&out));
    }
    let bare = dir.path().join("bare.toml");
    let t = std::fs::read_to_string(&file).expect("read");
    std::fs::write(&bare, &t[..t.find("[expect]").expect("expect")]).expect("write");
    let out = Command::new(BIN)
        .args(["search", "--vary", "rate"])
        .arg(&bare)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("no expectations to search against"),
        "{}",
        text(&out)
    );
    // The same scenario with a target given on the command line gets past the checks and
    // fails only on the broker that is not there.
    let out = Command::new(BIN)
        .args([
            "search",
            "--vary",
            "rate",
            "--target",
            "p99=10ms",
            "--connect-timeout",
            "2s",
        ])
        .arg(&bare)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains("the broker cannot be used"),
        "{}",
        text(&out)
    );
}

/// The body of `GET /metrics` at `port`.
fn scrape(port: u16) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let mut body = String::new();
    let _ = s.read_to_string(&mut body);
    body
}

#[test]
fn ctrl_c_ends_the_search_with_what_it_found() {
    let _alone = alone();
    let broker = BrokerProcess::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), 4, 10.0, broker.port);
    let report = dir.path().join("search.json");
    let metrics = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(BIN)
        .arg("search")
        .arg(&file)
        .arg("--report")
        .arg(&report)
        .args(["--vary", "rate", "--settle", "1s", "--window", "2s"])
        .args(["--metrics-listen", &metrics.to_string()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start the search");
    // Into the second step (the first takes about 4 s), as the endpoint says.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut page = scrape(metrics);
    while !page.contains("step=\"2: rate=20\"") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(250));
        page = scrape(metrics);
    }
    let _ = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let out = child.wait_with_output().expect("wait");
    assert!(
        page.contains("fleetbench_messages_sent") && page.contains("step=\"2: rate=20\""),
        "the endpoint labels the step under way: {page}"
    );
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let r = result(&report, &out);
    assert_eq!(r["interrupted"], true);
    assert_eq!(r["limited_by"], "unfinished");
    assert!(
        !r["steps"].as_array().expect("steps").is_empty(),
        "the first step is kept: {}",
        text(&out)
    );
}
