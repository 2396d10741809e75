//! `cargo xtask brokers --quick`: the harness compares the embedded broker and mosquitto with
//! the whole suite, puts every figure in its table and results, and leaves no broker running,
//! whether it finishes or is stopped with Ctrl-C. The brokers' own figures are not judged
//! here (a busy machine moves them); the harness is.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The fleetbench binary beside this test's xtask, built when missing.
fn fleetbench() -> PathBuf {
    let bin = Path::new(env!("CARGO_BIN_EXE_xtask")).with_file_name("fleetbench");
    if !bin.is_file() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-p", "fleetbench"])
            .status()
            .expect("cargo build -p fleetbench");
        assert!(status.success());
    }
    bin
}

fn xtask(out: &Path, brokers: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_xtask"));
    cmd.args(["brokers", "--quick", "--fleetbench"])
        .arg(fleetbench())
        .arg("--out")
        .arg(out)
        .args(brokers);
    cmd
}

fn results(out: &Path) -> Value {
    let text = std::fs::read_to_string(out.join("results.json")).expect("results.json");
    serde_json::from_str(&text).expect("JSON")
}

fn gone(pid: u64) -> bool {
    // A zombie would still have its directory; the harness waits for what it stops.
    !Path::new(&format!("/proc/{pid}")).exists()
}

const ITEMS: [&str; 9] = [
    "connect",
    "fan-in",
    "fan-out",
    "qos2",
    "retained",
    "will",
    "persistent-session",
    "slow-consumer",
    "reconnect-storm",
];

#[test]
fn quick_suite_compares_embedded_and_mosquitto_and_stops_both() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = xtask(dir.path(), &["embedded", "mosquitto"])
        .stdin(Stdio::null())
        .output()
        .expect("run xtask brokers");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let r = results(dir.path());
    let rows = r["brokers"].as_array().expect("rows");
    assert_eq!(rows.len(), 2);
    for (row, name) in rows.iter().zip(["embedded", "mosquitto"]) {
        assert_eq!(row["broker"], name);
        assert!(row["version"].as_str().is_some_and(|v| !v.is_empty()));
        for item in ITEMS {
            let f = &row[item];
            assert!(f["error"].is_null(), "{name} {item}: {f}");
            // The machine's steal during the item, read from /proc/stat.
            assert!(
                f["steal_pct"]
                    .as_f64()
                    .is_some_and(|s| (0.0..=100.0).contains(&s)),
                "{name} {item}: {f}"
            );
            assert!(
                dir.path().join(name).join(format!("{item}.json")).is_file(),
                "{name} {item}: the report is kept"
            );
            if item.starts_with("fan-") {
                assert!(f["limited_by"].is_string(), "{name}: {f}");
                assert!(f["steps"].as_u64().is_some_and(|s| s >= 1), "{name}: {f}");
            } else {
                assert!(f["verdict"].is_string(), "{name} {item}: {f}");
                assert!(
                    f["sent"].as_u64().is_some_and(|s| s > 0),
                    "{name} {item}: {f}"
                );
            }
        }
        // 2,000 devices and the observer connected in the storm.
        assert!(row["connect"]["connects"].as_u64() >= Some(2_000), "{row}");
        let pid = row["pid"].as_u64().expect("the broker's PID");
        assert!(gone(pid), "{name}'s process {pid} is still there");
    }
    let table = std::fs::read_to_string(dir.path().join("table.md")).expect("table.md");
    assert!(
        stdout.contains(table.trim_end()),
        "the table is printed: {stdout}"
    );
    assert!(table.lines().any(|l| l.starts_with("| embedded | rumqttd")));
    assert!(table
        .lines()
        .any(|l| l.starts_with("| mosquitto | mosquitto version")));
    // One page with the table and both brokers' fan-in curves overlaid.
    let page = std::fs::read_to_string(dir.path().join("index.html")).expect("index.html");
    for name in [
        "embedded (fan-in)",
        "mosquitto (fan-in)",
        "embedded (fan-out)",
        "mosquitto (fan-out)",
    ] {
        assert!(page.contains(name), "{name} is on the page");
    }
    assert!(
        page.contains("<th>reconnect-storm</th>"),
        "the table is on the page"
    );
    assert!(
        page.matches("<svg").count() >= 2,
        "the knee curves are drawn"
    );
}

#[test]
fn ctrl_c_stops_the_suite_and_the_broker() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut child = xtask(dir.path(), &["embedded"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xtask brokers");
    // Once the first item runs, the broker is up.
    let started = dir.path().join("embedded/connect.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !started.exists() {
        assert!(Instant::now() < deadline, "the suite did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::thread::sleep(Duration::from_secs(2));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .expect("kill -INT");
    assert!(kill.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("xtask brokers did not end within 60 s of Ctrl-C");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(130));
    let r = results(dir.path());
    let row = &r["brokers"][0];
    assert_eq!(row["interrupted"], true, "{row}");
    let pid = row["pid"].as_u64().expect("the broker's PID");
    assert!(gone(pid), "the broker {pid} outlived the harness");
    // What ran before the stop is kept: the interrupted storm's report says so.
    assert_eq!(row["connect"]["exit"], 130, "{row}");
}

#[test]
fn an_unknown_broker_is_refused_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = xtask(dir.path(), &["nanomq-9"]).output().expect("run");
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no broker \"nanomq-9\"")
            && [
                "embedded",
                "rumqttd",
                "mosquitto",
                "rabbitmq",
                "amqtt",
                "aedes"
            ]
            .iter()
            .all(|b| stderr.contains(b)),
        "{stderr}"
    );
}
