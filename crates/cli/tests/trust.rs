//! A verdict you can trust when things go wrong: brokers that die, refuse, stay silent or wedge;
//! signals at any instant; outputs that cannot be written. Each case asserts the exit code, the
//! message and what was written.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use common::cli::{
    expectation, external, finish, report, scenario, signal, spawn, start_run, text, BIN,
};

#[test]
fn a_broker_killed_mid_run_fails_the_verdict_and_ends_the_run_early() {
    let broker = common::BrokerProcess::start();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "40s", 10, 10.0, &external(broker.port));
    let out = dir.path().join("report.json");
    let child = start_run(&file, &out, &[]);
    std::thread::sleep(Duration::from_secs(3));
    broker.kill();
    let (o, took) = finish(child, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        took < Duration::from_secs(25),
        "ran {took:?} of a 40 s scenario"
    );
    let r = report(&out);
    assert_eq!(r["verdict"], "fail");
    // The broker went while the run was under way (when, from the ramp's start, depends on how
    // long the process took to start on a loaded machine): after deliveries had begun, and the
    // run ended the broker watch's wait after it.
    let since = r["run"]["broker_gone"]["since_s"].as_f64().expect("since");
    let waited = r["run"]["broker_gone"]["waited_s"]
        .as_f64()
        .expect("waited");
    let window = r["run"]["publish_window_s"].as_f64().expect("window");
    assert!(
        since > 0.0 && (since + waited - window).abs() < 1.0,
        "{}",
        r["run"]
    );
    assert!(
        r["totals"]["delivered"].as_u64().expect("delivered") > 0,
        "{}",
        r["totals"]
    );
    for failed in [
        "broker_gone",
        "in_flight_share",
        "disconnected",
        "delivered_ratio",
    ] {
        assert_eq!(
            expectation(&r, failed)["ok"],
            false,
            "{failed}: {}",
            r["expectations"]
        );
    }
    assert!(text(&o).contains("the broker went away at"), "{}", text(&o));
    let t = &r["totals"];
    let sum = t["delivered"].as_u64().expect("delivered")
        + t["lost"].as_u64().expect("lost")
        + t["in_flight"].as_u64().expect("in flight");
    assert_eq!(
        sum,
        t["expected"].as_u64().expect("expected"),
        "every message accounted for"
    );
}

#[test]
fn devices_that_never_connect_fail_the_run() {
    // The broker takes three connections: the observer's and two devices'.
    let broker = common::BrokerProcess::start_with(&["--max-connections", "3"]);
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(
        dir.path(),
        "3s",
        6,
        5.0,
        &format!("{}[expect]\nmax_errors = 100000\n", external(broker.port)),
    );
    let out = dir.path().join("report.json");
    let (o, _) = finish(start_run(&file, &out, &[]), Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let r = report(&out);
    let never = r["timing"]["never_connected"]
        .as_u64()
        .expect("never connected");
    assert!(never >= 3, "{never} devices never connected: {}", text(&o));
    assert_eq!(expectation(&r, "never_connected")["ok"], false);
    assert!(text(&o).contains("devices never connected"), "{}", text(&o));
    assert!(
        r["totals"]["skipped"].as_u64().expect("skipped") > 0,
        "their messages were skipped"
    );
}

#[test]
fn a_signal_at_any_instant_writes_an_interrupted_report_and_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "30s", 5, 5.0, "");
    for (i, after) in [0.05, 0.3, 0.6, 2.0].into_iter().enumerate() {
        let out = dir.path().join(format!("report{i}.json"));
        let child = start_run(&file, &out, &[]);
        std::thread::sleep(Duration::from_secs_f64(after));
        signal(&child, if i % 2 == 0 { "-INT" } else { "-TERM" });
        let (o, took) = finish(child, Duration::from_secs(20));
        assert_eq!(
            o.status.code(),
            Some(130),
            "signal after {after}s: {}",
            text(&o)
        );
        assert!(took < Duration::from_secs(10), "stopping took {took:?}");
        let r = report(&out);
        assert_eq!(r["verdict"], "interrupted", "after {after}s");
        assert_eq!(r["run"]["interrupted"], true);
        assert!(String::from_utf8_lossy(&o.stdout).contains("INTERRUPTED"));
    }
}

/// A server that accepts TCP connections and never answers, for `life`.
fn silent_server(life: Duration) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let mut held = Vec::new();
        let end = Instant::now() + life;
        while Instant::now() < end {
            if let Ok((s, _)) = listener.accept() {
                held.push(s);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    });
    port
}

#[test]
fn a_signal_while_connecting_to_a_silent_broker_still_writes_the_report() {
    let port = silent_server(Duration::from_secs(30));
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "10s", 3, 1.0, &external(port));
    let out = dir.path().join("report.json");
    let child = start_run(&file, &out, &[]);
    std::thread::sleep(Duration::from_millis(1_500));
    signal(&child, "-INT");
    let (o, took) = finish(child, Duration::from_secs(20));
    assert_eq!(o.status.code(), Some(130), "{}", text(&o));
    assert!(took < Duration::from_secs(3), "stopping took {took:?}");
    assert_eq!(report(&out)["verdict"], "interrupted");
}

#[test]
fn a_broker_that_refuses_or_stays_silent_is_named_within_the_connect_timeout() {
    let refused = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let silent = silent_server(Duration::from_secs(30));
    let v6 = TcpListener::bind("[::1]:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port());
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cases = vec![
        (format!("mqtt://127.0.0.1:{refused}"), "Connection refused"),
        (format!("mqtt://localhost:{refused}"), "Connection refused"),
        (
            format!("mqtt://127.0.0.1:{silent}"),
            "sent no CONNACK within 2s",
        ),
        (
            format!("ws://127.0.0.1:{silent}"),
            "sent no CONNACK within 2s",
        ),
    ];
    if let Ok(p) = v6 {
        cases.push((format!("mqtt://[::1]:{p}"), "Connection refused"));
    }
    for (url, cause) in cases {
        let file = scenario(
            dir.path(),
            "5s",
            2,
            1.0,
            &format!("[broker]\nurl = \"{url}\"\n"),
        );
        let out = dir.path().join("report.json");
        let (o, took) = finish(
            start_run(&file, &out, &["--connect-timeout", "2s"]),
            Duration::from_secs(30),
        );
        assert_eq!(o.status.code(), Some(1), "{url}: {}", text(&o));
        assert!(took < Duration::from_secs(6), "{url}: took {took:?}");
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains(cause),
            "{url}: expected {cause:?} in {stderr}"
        );
        assert!(
            !out.exists(),
            "{url}: a run that never started writes no report"
        );
    }
}

#[test]
fn unwritable_output_paths_are_refused_before_anything_connects() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "2s", 2, 1.0, &external(port));
    let a_file = dir.path().join("plain-file");
    std::fs::write(&a_file, "x").expect("write");
    let under_file = a_file.join("report.json");
    let ok_report = dir.path().join("ok.json");
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["--report", "/sys/fleetbench-report.json"],
            "report /sys/fleetbench-report.json",
        ),
        (
            vec!["--report", dir.path().to_str().expect("utf-8")],
            "is a directory",
        ),
        (
            vec!["--report", under_file.to_str().expect("utf-8")],
            "plain-file is not a directory",
        ),
        (
            vec![
                "--report",
                ok_report.to_str().expect("utf-8"),
                "--hlog",
                "/proc/fleetbench.hlog",
            ],
            "interval log /proc/fleetbench.hlog",
        ),
    ];
    for (args, message) in cases {
        let mut all = vec!["run", file.to_str().expect("utf-8"), "--quiet"];
        all.extend(args.iter().copied());
        let (o, took) = finish(spawn(&all), Duration::from_secs(20));
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(took < Duration::from_secs(3), "{args:?}: took {took:?}");
        assert!(
            text(&o).contains(message),
            "{args:?}: expected {message:?} in {}",
            text(&o)
        );
        assert!(!ok_report.exists(), "{args:?}: nothing is written");
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            other => panic!("{args:?}: a connection was made: {other:?}"),
        }
    }
}

#[test]
fn a_report_that_cannot_be_written_at_the_end_goes_to_a_named_fallback() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "3s", 3, 5.0, "");
    let out_dir = dir.path().join("reports");
    let out = out_dir.join("report.json");
    std::fs::create_dir(&out_dir).expect("report directory");
    let child = start_run(&file, &out, &[]);
    std::thread::sleep(Duration::from_millis(1_500));
    // The directory goes away while the run lasts.
    std::fs::remove_dir_all(&out_dir).expect("remove the report directory");
    let (o, _) = finish(child, Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        stdout.contains("fleetbench trust: PASS"),
        "the summary is printed: {stdout}"
    );
    let stderr = String::from_utf8_lossy(&o.stderr);
    let saved = stderr
        .split("saved to ")
        .nth(1)
        .and_then(|rest| rest.split(" instead").next())
        .unwrap_or_else(|| panic!("no fallback named in {stderr}"));
    let r = report(Path::new(saved));
    assert_eq!(r["verdict"], "pass");
    let _ = std::fs::remove_file(saved);
    if let Some(hlog) = stderr
        .split("saved to ")
        .nth(2)
        .and_then(|r| r.split(" instead").next())
    {
        let _ = std::fs::remove_file(hlog);
    }
}

/// CONNECTs under one client id, each reset (SO_LINGER 0) before its CONNACK: what poisons a
/// rumqttd listener's will-handler lock.
fn wedge(port: u16, times: usize) {
    let packet = {
        let id = b"same-client-id";
        let mut variable = vec![
            0,
            4,
            b'M',
            b'Q',
            b'T',
            b'T',
            4,
            0x02,
            0,
            30,
            0,
            id.len() as u8,
        ];
        variable.extend_from_slice(id);
        let mut p = vec![0x10, variable.len() as u8];
        p.extend(variable);
        p
    };
    for _ in 0..times {
        let Ok(s) = TcpStream::connect(("127.0.0.1", port)) else {
            continue;
        };
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        let _ = std::io::Write::write_all(&mut &s, &packet);
        drop(s);
    }
}

/// A fresh client gets its CONNACK from `port` within a few seconds.
fn serves(port: u16) -> bool {
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline {
        let id = format!("fresh-{}", Instant::now().elapsed().as_nanos());
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        if fleetbench_broker::probe_connack(addr, &id, None, Duration::from_secs(2)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

#[test]
fn a_wedged_standalone_broker_restarts_its_listener_and_says_so() {
    let port = common::mosquitto::free_port();
    let mut child = Command::new(BIN)
        .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start fleetbench broker");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let banner = lines.next().expect("banner").expect("read");
    assert!(banner.contains("listening"), "{banner}");
    wedge(port, 200);
    assert!(serves(port), "the broker came back for fresh clients");
    let event = lines
        .map_while(Result::ok)
        .find(|l| l.starts_with("event: ") && l.contains("\"restart\":{"))
        .expect("a restart event");
    let v: Value = serde_json::from_str(event.trim_start_matches("event: ")).expect("json");
    assert_eq!(v["restart"]["port"], port);
    assert_eq!(v["restart"]["recovered"], true);
    assert!(v["panics"].as_u64().expect("panics") > 0, "{v}");
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn a_run_whose_embedded_broker_wedged_is_never_pass() {
    // In this process, and in a child process whose watch reports through its output.
    for process in ["in-process", "child"] {
        wedged_run(process);
    }
}

fn wedged_run(process: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = format!("[broker]\nlisteners = 2\nprocess = \"{process}\"\n");
    let file = scenario(dir.path(), "12s", 4, 2.0, &broker);
    let out = dir.path().join("report.json");
    let mut child = Command::new(BIN)
        .args([
            "-v",
            "run",
            file.to_str().expect("utf-8"),
            "--report",
            out.to_str().expect("utf-8"),
            "--quiet",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start");
    // The embedded broker's ports, from the log line that starts the run.
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let line = rx
        .iter()
        .find(|l| l.contains("starting run"))
        .expect("the run's first log line");
    let ports: Vec<u16> = line
        .split('{')
        .nth(1)
        .and_then(|r| r.split('}').next())
        .expect("ports in the log line")
        .split(',')
        .map(|p| p.parse().expect("port"))
        .collect();
    std::thread::sleep(Duration::from_secs(2));
    wedge(ports[0], 200);
    let (o, _) = finish(child, Duration::from_secs(60));
    assert_eq!(
        o.status.code(),
        Some(3),
        "{process}: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    let r = report(&out);
    assert_eq!(r["verdict"], "fail");
    let restarts = r["broker_watch"]["restarts"].as_array().expect("restarts");
    assert!(!restarts.is_empty(), "{process}: {}", r["broker_watch"]);
    assert_eq!(restarts[0]["port"], ports[0]);
    assert!(
        r["broker_watch"]["panics"].as_u64().expect("panics") > 0,
        "{process}"
    );
    assert_eq!(expectation(&r, "broker_restarts")["ok"], false);
    assert!(String::from_utf8_lossy(&o.stdout).contains("stopped completing CONNECTs"));
}

#[test]
fn sends_due_before_a_device_connects_are_counted_not_lost_in_silence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "4s", 40, 2.0, "");
    // 40 devices joining at 20 per second: the later ones miss their first messages.
    let text_with_rate = std::fs::read_to_string(&file).expect("read").replace(
        "qos = 1\n[[observer]]",
        "qos = 1\nconnect_rate = 20\n[[observer]]",
    );
    std::fs::write(&file, &text_with_rate).expect("write");
    let out = dir.path().join("report.json");
    let (o, _) = finish(start_run(&file, &out, &[]), Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&out);
    let scenario = fleetbench_scenario::parse("t.toml", &text_with_rate).expect("valid");
    let plan = fleetbench_scenario::Plan::build(&scenario, fleetbench_scenario::Shard::WHOLE);
    let due: u64 = plan
        .devices
        .iter()
        .map(|d| {
            let mut s = d.schedule();
            std::iter::from_fn(|| s.next_due(&plan.shape))
                .take_while(|t| *t < scenario.duration)
                .count() as u64
        })
        .sum();
    let (sent, skipped) = (
        r["totals"]["sent"].as_u64().expect("sent"),
        r["totals"]["skipped"].as_u64().expect("skipped"),
    );
    assert!(skipped > 0, "{}", text(&o));
    assert_eq!(
        sent + skipped,
        due,
        "every message the schedule called for is sent or skipped"
    );
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("skipped {skipped}")));
}
