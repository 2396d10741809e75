//! `fleetbench run` end to end through the binary: the report's fields, exit codes, and an
//! interrupted run that still accounts for everything.

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

fn scenario(dir: &Path, duration: &str, expect: &str) -> std::path::PathBuf {
    let text = format!(
        r#"
name = "e2e"
duration = "{duration}"
drain_timeout = "2s"
[[group]]
name = "s"
count = 8
topic = "e2e/{{index}}"
rate = 10.0
qos = 1
[[observer]]
name = "all"
filters = ["e2e/#"]
[expect]
{expect}
"#
    );
    let path = dir.join("e2e.toml");
    std::fs::write(&path, text).expect("write scenario");
    path
}

fn spawn(args: &[&std::ffi::OsStr]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetbench")
}

fn wait(mut child: Child, limit: Duration) -> Output {
    let start = Instant::now();
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("fleetbench did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().expect("output")
}

/// `fleetbench run FILE --report REPORT --quiet`, waited for at most `limit`.
fn run_file(file: &Path, report: &Path, limit: Duration) -> Output {
    wait(
        spawn(&[
            "run".as_ref(),
            file.as_os_str(),
            "--report".as_ref(),
            report.as_os_str(),
            "--quiet".as_ref(),
        ]),
        limit,
    )
}

/// Assert the exit code, showing the run's output if it differs; returns stdout.
fn assert_exit(out: &Output, code: i32) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "{stdout}{stderr}");
    stdout
}

fn report(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written")).expect("json")
}

fn u(v: &serde_json::Value) -> u64 {
    v.as_u64().unwrap_or_else(|| panic!("not a count: {v}"))
}

#[test]
fn a_passing_run_writes_the_documented_report_and_a_narrow_summary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "2s", "delivered_ratio = 1.0\nmax_lost = 0");
    let out_path = dir.path().join("out/report.json");
    // A report's directory must exist: the run does not make folders it was not asked for.
    let refused = run_file(&file, &out_path, Duration::from_secs(60));
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("does not exist; create it first"), "{why}");
    assert_eq!(refused.status.code(), Some(2), "{why}");
    std::fs::create_dir(dir.path().join("out")).expect("out");
    let out = run_file(&file, &out_path, Duration::from_secs(60));
    let stdout = assert_exit(&out, 0);
    assert!(stdout.lines().all(|l| l.chars().count() <= 100), "{stdout}");
    let r = report(&out_path);
    assert_eq!(r["schema_version"], 2);
    assert_eq!(r["scenario"]["name"], "e2e");
    assert_eq!(
        r["scenario"]["groups"][0]["payload"],
        serde_json::json!({"format": "binary", "size": 64}),
        "defaults are resolved"
    );
    for field in [
        "cores",
        "memory_bytes",
        "os",
        "git_revision",
        "build_profile",
    ] {
        assert!(!r["environment"][field].is_null(), "environment.{field}");
    }
    let t = &r["totals"];
    for field in [
        "sent",
        "delivered",
        "lost",
        "duplicates",
        "reordered",
        "in_flight",
    ] {
        assert!(t[field].is_u64(), "totals.{field}");
    }
    assert!(u(&t["sent"]) >= 100, "8 devices x 10/s x 2 s");
    assert_eq!(u(&t["delivered"]), u(&t["sent"]));
    assert_eq!(u(&t["lost"]) + u(&t["in_flight"]), 0);
    for which in ["from_intended", "from_send", "puback", "connect"] {
        for q in ["count", "p50_us", "p90_us", "p99_us", "p999_us", "max_us"] {
            assert!(r["latency"][which][q].is_u64(), "latency.{which}.{q}");
        }
    }
    assert_eq!(
        u(&r["latency"]["from_intended"]["count"]),
        u(&t["delivered"])
    );
    assert_eq!(u(&r["latency"]["connect"]["count"]), 8);
    assert!(r["throughput"]["publish_per_s"].as_f64().expect("rate") > 30.0);
    assert!(r["throughput"]["deliver_per_s"].is_f64());
    let names: Vec<&str> = r["expectations"]
        .as_array()
        .expect("expectations")
        .iter()
        .map(|e| e["name"].as_str().expect("name"))
        .collect();
    assert!(
        names.contains(&"delivered_ratio") && names.contains(&"lost"),
        "{names:?}"
    );
    assert_eq!(r["verdict"], "pass");
}

#[test]
fn an_unmet_expectation_exits_3_with_a_failing_verdict() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "1s", "p99 = \"1us\"");
    let out_path = dir.path().join("report.json");
    let out = run_file(&file, &out_path, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(3));
    let r = report(&out_path);
    assert_eq!(r["verdict"], "fail");
    let p99 = r["expectations"]
        .as_array()
        .expect("expectations")
        .iter()
        .find(|e| e["name"] == "p99_from_intended")
        .expect("p99 expectation");
    assert_eq!(p99["ok"], false);
    assert!(String::from_utf8_lossy(&out.stdout).contains("FAIL p99_from_intended"));
}

#[test]
fn sigint_stops_the_run_writes_the_partial_report_and_exits_130() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "60s", "delivered_ratio = 1.0");
    let out_path = dir.path().join("report.json");
    let child = spawn(&[
        "run".as_ref(),
        file.as_os_str(),
        "--report".as_ref(),
        out_path.as_os_str(),
        "--progress-every".as_ref(),
        "0.5".as_ref(),
    ]);
    std::thread::sleep(Duration::from_millis(2_500));
    let pid = child.id().to_string();
    let kill = Command::new("kill")
        .args(["-INT", &pid])
        .status()
        .expect("kill");
    assert!(kill.success());
    let started = Instant::now();
    let out = wait(child, Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("running"),
        "progress lines on stderr: {stderr}"
    );
    let r = report(&out_path);
    assert_eq!(r["run"]["interrupted"], true);
    let t = &r["totals"];
    assert!(u(&t["sent"]) > 50, "sent {}", t["sent"]);
    assert!(u(&t["sent"]) < 8 * 10 * 20, "publishing stopped early");
    assert_eq!(
        u(&t["delivered"]) + u(&t["lost"]) + u(&t["in_flight"]),
        u(&t["expected"]),
        "every message is accounted for"
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("INTERRUPTED"));
}

#[test]
fn a_run_against_an_external_broker_url_accounts_for_everything() {
    let broker = common::BrokerProcess::start();
    let port = broker.port;

    let dir = tempfile::tempdir().expect("tempdir");
    let text = format!(
        r#"
name = "external"
duration = "2s"
drain_timeout = "2s"
[broker]
url = "mqtt://127.0.0.1:{port}"
[[group]]
name = "s"
count = 5
topic = "ext/{{index}}"
rate = 10.0
qos = 2
[[observer]]
name = "all"
count = 2
filters = ["ext/#"]
qos = 2
[expect]
delivered_ratio = 1.0
"#
    );
    let file = dir.path().join("external.toml");
    std::fs::write(&file, text).expect("write");
    let out_path = dir.path().join("report.json");
    let out = run_file(&file, &out_path, Duration::from_secs(60));
    assert_exit(&out, 0);
    let r = report(&out_path);
    assert_eq!(r["run"]["broker"], format!("mqtt://127.0.0.1:{port}"));
    assert!(r["run"]["tcp_nodelay"].is_null());
    let t = &r["totals"];
    // Two observers each expect every message: deliveries are twice the messages sent.
    assert_eq!(u(&t["expected"]), 2 * u(&t["sent"]));
    assert_eq!(u(&t["delivered"]), u(&t["expected"]));
    assert_eq!(
        r["by_qos"][0]["qos"], 2,
        "streams judged at the granted QoS 2"
    );
    assert!(
        u(&r["latency"]["puback"]["count"]) > 0,
        "PUBCOMP latency measured at QoS 2"
    );
}

#[test]
fn a_fleet_too_big_for_the_open_file_limit_is_refused_before_connecting() {
    let dir = tempfile::tempdir().expect("tempdir");
    // In-process devices need two descriptors each: half the hard limit plus some is too many
    // on any machine (20,000 here: 10,100 devices).
    let (_, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("open-file limit");
    let count = hard / 2 + 100;
    let text = format!(
        r#"
name = "too-big"
duration = "5s"
[[group]]
name = "s"
count = {count}
topic = "big/{{index}}"
rate = 1.0
[[observer]]
name = "all"
filters = ["big/#"]
"#
    );
    let file = dir.path().join("big.toml");
    std::fs::write(&file, text).expect("write");
    let out_path = dir.path().join("report.json");
    let started = Instant::now();
    let out = run_file(&file, &out_path, Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let connections = format!("{} connections", count + 1);
    for needle in [
        "open files",
        connections.as_str(),
        "fewer devices",
        "shards",
    ] {
        assert!(stderr.contains(needle), "{needle:?} missing: {stderr}");
    }
    assert!(!out_path.exists());
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "refused early, not after connecting"
    );
}

#[test]
fn compare_catches_a_slower_receive_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "2s", "delivered_ratio = 1.0");
    let base = dir.path().join("base.json");
    assert_exit(&run_file(&file, &base, Duration::from_secs(60)), 0);
    // The same scenario with every delivery held up 3 ms on the receive path.
    let slow = dir.path().join("slow.json");
    let out = wait(
        spawn(&[
            "run".as_ref(),
            file.as_os_str(),
            "--report".as_ref(),
            slow.as_os_str(),
            "--quiet".as_ref(),
            "--fault-receive-delay-us".as_ref(),
            "3000".as_ref(),
        ]),
        Duration::from_secs(60),
    );
    assert!(slow.is_file(), "{}", String::from_utf8_lossy(&out.stderr));
    let compare = |a: &Path, b: &Path| {
        let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
            .arg("compare")
            .arg(a)
            .arg(b)
            .output()
            .expect("run compare");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).to_string(),
        )
    };
    let (code, text) = compare(&base, &slow);
    assert_eq!(code, Some(3), "{text}");
    assert!(text.contains("REGRESSION"), "{text}");
    let row = |metric: &str| {
        text.lines()
            .find(|l| l.contains(metric))
            .unwrap_or_else(|| panic!("no {metric} row in {text}"))
    };
    assert!(row("p50 from intended").ends_with("REGRESSED"), "{text}");
    // 160 deliveries a run: too few for a p99 to be judged, so it is shown and not gated.
    assert!(row("p99 from intended").ends_with("too few"), "{text}");
    let (code, text) = compare(&base, &base);
    assert_eq!(code, Some(0), "{text}");
}

#[test]
fn a_broker_in_a_child_process_carries_the_run_and_reports_its_own_usage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = r#"
name = "child"
duration = "2s"
[broker]
process = "child"
listeners = 2
[[group]]
name = "s"
count = 20
topic = "c/{index}"
rate = 5.0
[[observer]]
name = "all"
filters = ["c/#"]
"#;
    let file = dir.path().join("child.toml");
    std::fs::write(&file, text).expect("write");
    let out_path = dir.path().join("report.json");
    assert_exit(&run_file(&file, &out_path, Duration::from_secs(60)), 0);
    let r = report(&out_path);
    assert!(r["run"]["broker"]
        .as_str()
        .expect("broker")
        .starts_with("embedded (child process)"));
    assert_eq!(u(&r["totals"]["delivered"]), u(&r["totals"]["sent"]));
    assert!(u(&r["resources"]["broker_process"]["peak_rss_bytes"]) > 0);
}

/// What HdrHistogram's Python implementation reads from an interval log (`read_hlog.py`; `cargo
/// xtask test` installs the `hdrhistogram` package).
fn python_reads_hlog(path: &Path) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/read_hlog.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(path)
        .output()
        .expect("python3 is needed by this test");
    assert!(
        out.status.success(),
        "reading the interval log with Python's hdrhistogram failed (is it installed? `cargo \
         xtask test` installs it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json from read_hlog.py")
}

/// Check a report against the JSON Schema committed in docs/.
fn assert_matches_schema(report: &serde_json::Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report.schema.json");
    let schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("schema")).expect("json");
    let validator = jsonschema::validator_for(&schema).expect("a valid schema");
    let errors: Vec<String> = validator
        .iter_errors(report)
        .map(|e| format!("{} at {}", e, e.instance_path))
        .collect();
    assert!(
        errors.is_empty(),
        "report does not match the schema: {errors:#?}"
    );
}

#[test]
fn reports_match_the_schema_log_every_interval_and_merge_exactly() {
    use fleetbench_metrics::hlog::{self, Distribution};
    use fleetbench_report::Report;

    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "2s", "delivered_ratio = 1.0\np99 = \"10s\"");
    let runs: Vec<std::path::PathBuf> = (1..=2)
        .map(|k| dir.path().join(format!("run{k}.json")))
        .collect();
    for path in &runs {
        assert_exit(&run_file(&file, path, Duration::from_secs(60)), 0);
        let json = report(path);
        assert_matches_schema(&json);
        let r: Report = serde_json::from_value(json).expect("a report");
        let cal = r.calibration.expect("every run is calibrated");
        assert!(
            cal.core_round_trip_us > 0.0 && cal.round_trips_per_s > 0.0,
            "{cal:?}"
        );
        // The interval log beside the report: one interval per tick and distribution, which
        // together hold exactly the whole run's distributions.
        let log = std::fs::read(path.with_extension("hlog")).expect("interval log written");
        let intervals = hlog::read(&log).expect("a readable interval log");
        let ticks = intervals
            .iter()
            .filter(|i| i.metric == Some(Distribution::FromIntended))
            .count();
        assert!(
            ticks >= 8,
            "{ticks} intervals over a 2 s run with 250 ms ticks"
        );
        let totals = hlog::totals(&intervals);
        let whole = r
            .histograms
            .as_ref()
            .expect("histograms")
            .decode()
            .expect("decode");
        for (metric, h) in &whole {
            assert_eq!(
                totals[metric].hdr(),
                h.hdr(),
                "{metric:?}: log and report differ"
            );
        }
        assert_eq!(
            totals[&Distribution::FromIntended].summary().p99_us,
            r.latency.from_intended.p99_us
        );
        assert_eq!(
            totals[&Distribution::Connect].count(),
            8,
            "one connect per device"
        );
        // Another HdrHistogram implementation reads the same log to the same figures.
        let py = python_reads_hlog(&path.with_extension("hlog"));
        assert_eq!(py["intervals"], intervals.len(), "{py}");
        let tag = &py["tags"]["from_intended"];
        assert_eq!(tag["count"], r.latency.from_intended.count, "{py}");
        // (The libraries round a percentile's rank differently, Python to nearest and Rust up;
        // at the median, count / 2 is whole or ends in .5, and both pick the same rank.)
        assert_eq!(tag["p50_us"], r.latency.from_intended.p50_us, "{py}");
        assert_eq!(tag["max_us"], r.latency.from_intended.max_us, "{py}");
    }
    let merged_path = dir.path().join("merged.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("merge")
        .args(&runs)
        .arg("--output")
        .arg(&merged_path)
        .output()
        .expect("run merge");
    assert_exit(&out, 0);
    let json = report(&merged_path);
    assert_matches_schema(&json);
    let merged: Report = serde_json::from_value(json).expect("a report");
    let parts: Vec<Report> = runs
        .iter()
        .map(|p| serde_json::from_value(report(p)).expect("report"))
        .collect();
    assert_eq!(
        merged.totals.sent,
        parts[0].totals.sent + parts[1].totals.sent
    );
    assert_eq!(
        merged.latency.from_intended.count,
        parts[0].latency.from_intended.count + parts[1].latency.from_intended.count
    );
    assert_eq!(merged.samples.len(), 2);
    // Shards of different runs are refused with a usage error, nothing written.
    let refused = dir.path().join("refused.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("merge")
        .arg("--shards")
        .args(&runs)
        .arg("--output")
        .arg(&refused)
        .output()
        .expect("run merge");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("appears twice"), "{stderr}");
    assert!(!refused.exists());
}

#[test]
fn a_fleet_on_event_loops_of_its_own_accounts_for_every_message() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "3s", "delivered_ratio = 1.0\nmax_lost = 0");
    for loops in ["1", "3"] {
        let out_path = dir.path().join(format!("loops-{loops}.json"));
        let out = wait(
            spawn(&[
                "run".as_ref(),
                file.as_os_str(),
                "--loops".as_ref(),
                loops.as_ref(),
                "--report".as_ref(),
                out_path.as_os_str(),
                "--quiet".as_ref(),
            ]),
            Duration::from_secs(60),
        );
        let r = report(&out_path);
        assert!(
            common::passed_but_for(out.status.code(), &r, &format!("--loops {loops}"), &[]),
            "{}",
            String::from_utf8_lossy(&out.stdout)
        );
        let t = &r["totals"];
        assert!(u(&t["sent"]) > 100, "{t}");
        assert_eq!(u(&t["delivered"]), u(&t["sent"]), "--loops {loops}: {t}");
        assert_eq!((u(&t["lost"]), u(&t["duplicates"])), (0, 0), "{t}");
    }
    let out = wait(
        spawn(&[
            "run".as_ref(),
            file.as_os_str(),
            "--loops".as_ref(),
            "0".as_ref(),
        ]),
        Duration::from_secs(30),
    );
    assert_exit(&out, 2);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--loops"), "{stderr}");
}
