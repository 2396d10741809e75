//! The gate under misuse: the commands that combine and write reports (compare, merge, report
//! html) and the run's outputs, given what a careless or hostile user would give them. None
//! may report what did not happen, be switched off by an input, read without end or destroy a
//! file.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::cli::{finish, report, scenario, signal, spawn, start_run, text, BIN};
use serde_json::Value;

fn fleetbench(args: &[&str]) -> Output {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("fleetbench")
}

fn s(p: &Path) -> &str {
    p.to_str().expect("utf-8")
}

/// A real report of a short run, at `dir/name`.
fn real_report(dir: &Path, name: &str) -> PathBuf {
    let file = scenario(dir, "1s", 2, 4.0, "");
    let path = dir.join(name);
    let (o, _) = finish(start_run(&file, &path, &[]), Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    path
}

fn write(path: &Path, v: &Value) {
    std::fs::write(path, v.to_string()).expect("write");
}

#[test]
fn tolerances_that_would_switch_the_gate_off_are_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = real_report(dir.path(), "a.json");
    for bad in ["NaN", "inf", "-0.5", "11"] {
        for flag in ["--latency-tolerance", "--throughput-tolerance"] {
            let o = fleetbench(&["compare", s(&a), s(&a), &format!("{flag}={bad}")]);
            assert_eq!(o.status.code(), Some(2), "{flag}={bad}: {}", text(&o));
            assert!(text(&o).contains("between 0.0 and 10.0"), "{}", text(&o));
        }
    }
    let o = fleetbench(&["compare", s(&a), s(&a), "--latency-tolerance=0.5"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn merges_refuse_what_is_not_one_run_or_does_not_add_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = real_report(dir.path(), "a.json");
    let out = dir.path().join("m.json");
    let refused = |args: &[&str], part: &str| {
        let o = fleetbench(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains(part), "{args:?}: {}", text(&o));
        assert!(!out.exists(), "nothing written");
    };
    // The same report three times is one run, not three.
    refused(
        &["merge", s(&a), s(&a), s(&a), "-o", s(&out)],
        "are the same run",
    );
    // Counts that wrap when added.
    let mut v = report(&a);
    v["run"]["started_unix_s"] = (v["run"]["started_unix_s"].as_u64().unwrap_or(0) + 60).into();
    v["totals"]["sent"] = u64::MAX.into();
    let wraps = dir.path().join("wraps.json");
    write(&wraps, &v);
    refused(
        &["merge", s(&a), s(&wraps), "-o", s(&out)],
        "beyond any run",
    );
    // Another version of the scenario under the same name.
    let mut v = report(&a);
    v["run"]["started_unix_s"] = (v["run"]["started_unix_s"].as_u64().unwrap_or(0) + 60).into();
    v["scenario"]["groups"][0]["rate"] = 8.0.into();
    let changed = dir.path().join("changed.json");
    write(&changed, &v);
    refused(
        &["merge", s(&a), s(&changed), "-o", s(&out)],
        "groups[0].rate: 4.0 -> 8.0",
    );
    // compare names the change and refuses too.
    let o = fleetbench(&["compare", s(&a), s(&changed)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("groups[0].rate: 4.0 -> 8.0"),
        "{}",
        text(&o)
    );
    // Shards merged as repeats.
    let mut v = report(&a);
    v["run"]["shard"] = "1/2".into();
    let shard = dir.path().join("shard.json");
    write(&shard, &v);
    refused(&["merge", s(&shard), "-o", s(&out)], "--shards");
}

#[test]
fn an_output_may_never_be_an_input() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = real_report(dir.path(), "a.json");
    let before = std::fs::read(&a).expect("read");
    for args in [
        vec!["merge", s(&a), "-o", s(&a)],
        vec!["report", "html", s(&a), "-o", s(&a)],
    ] {
        let o = fleetbench(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(
            text(&o).contains("an input of this command"),
            "{}",
            text(&o)
        );
    }
    assert_eq!(
        std::fs::read(&a).expect("read"),
        before,
        "the report is intact"
    );
    let file = scenario(dir.path(), "1s", 2, 4.0, "");
    let text_before = std::fs::read(&file).expect("read");
    for flag in ["--report", "--html", "--hlog"] {
        let o = fleetbench(&["run", s(&file), flag, s(&file), "--quiet"]);
        assert_eq!(o.status.code(), Some(2), "{flag}: {}", text(&o));
        assert!(
            text(&o).contains("an input of this command"),
            "{}",
            text(&o)
        );
    }
    assert_eq!(std::fs::read(&file).expect("read"), text_before);
}

#[test]
fn endless_or_huge_inputs_are_refused_without_reading_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = real_report(dir.path(), "a.json");
    let out = dir.path().join("x.html");
    for args in [
        vec!["merge", "/dev/zero", "-o", s(&out)],
        vec!["compare", "/dev/zero", s(&a)],
        vec!["report", "html", "/dev/zero", "-o", s(&out)],
    ] {
        let began = Instant::now();
        let o = fleetbench(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(text(&o).contains("not a regular file"), "{}", text(&o));
        assert!(began.elapsed() < Duration::from_secs(10));
    }
}

#[test]
fn outputs_go_only_where_a_directory_exists_and_nothing_partial_stays() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = real_report(dir.path(), "a.json");
    let missing = dir.path().join("no/such/dir/x.html");
    let o = fleetbench(&["report", "html", s(&a), "-o", s(&missing)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("does not exist"), "{}", text(&o));
    assert!(!dir.path().join("no").exists(), "no directory was made");
    // A merge waiting for its input is ended by SIGTERM: it leaves nothing behind, not even
    // its temporary file.
    let out_dir = dir.path().join("out");
    std::fs::create_dir(&out_dir).expect("mkdir");
    let out = out_dir.join("m.json");
    let mut child = Command::new(BIN)
        .args(["merge", "-", "-o", s(&out)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("merge");
    // Its output is reserved before it reads: wait for the temporary file, then signal.
    let began = Instant::now();
    while std::fs::read_dir(&out_dir).expect("dir").count() == 0 {
        assert!(
            began.elapsed() < Duration::from_secs(20),
            "no output reserved"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    signal(&child, "-TERM");
    let stdin = child.stdin.take();
    let out = child.wait_with_output().expect("wait");
    drop(stdin);
    assert_eq!(out.status.code(), Some(130), "{}", text(&out));
    let left: Vec<_> = std::fs::read_dir(&out_dir).expect("dir").collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn report_html_and_compare_take_a_pod_log_as_merge_does() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "1s", 2, 4.0, "");
    let o = Command::new(BIN)
        .args(["run", s(&file), "--report", "-", "--quiet"])
        .output()
        .expect("run");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let log = dir.path().join("pod.log");
    std::fs::write(&log, &o.stdout).expect("write");
    let page = dir.path().join("page.html");
    let o = fleetbench(&["report", "html", s(&log), "-o", s(&page)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(page.exists());
    let o = fleetbench(&["compare", s(&log), s(&log)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn one_sigterm_ends_the_metrics_linger_with_the_runs_own_exit_code() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = scenario(dir.path(), "1s", 2, 4.0, "");
    let out = dir.path().join("r.json");
    let child = spawn(&[
        "run",
        s(&file),
        "--report",
        s(&out),
        "--quiet",
        "--no-tui",
        "--metrics-listen",
        "127.0.0.1:0",
        "--metrics-linger",
        "10m",
    ]);
    let began = Instant::now();
    while !out.exists() {
        assert!(began.elapsed() < Duration::from_secs(60), "no report");
        std::thread::sleep(Duration::from_millis(20));
    }
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "-TERM");
    let (o, took) = finish(child, Duration::from_secs(10));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert!(text(&o).contains("the linger ends"), "{}", text(&o));
}

#[test]
fn a_standalone_broker_refuses_a_port_twice_and_takes_port_0() {
    let o = fleetbench(&[
        "broker",
        "--listen",
        "127.0.0.1:18840",
        "--listen",
        "127.0.0.1:18840",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("is given twice"), "{}", text(&o));
    let mut child = Command::new(BIN)
        .args(["broker", "--listen", "127.0.0.1:0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("broker");
    let mut banner = String::new();
    let stdout = child.stdout.take().expect("stdout");
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut banner).expect("banner");
    let _ = child.kill();
    let _ = child.wait();
    let port: u16 = banner
        .split("127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    assert!(port > 0, "{banner}");
}

#[test]
fn a_topic_of_a_kilobyte_that_passes_check_is_sent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let long = "t".repeat(1_000);
    let file = dir.path().join("long.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"long\"\nduration = \"2s\"\n[[group]]\nname = \"s\"\ncount = 3\n\
             topic = \"{long}/{{index}}\"\nrate = 4.0\n[[observer]]\nname = \"all\"\n\
             filters = [\"{long}/#\"]\n[expect]\ndelivered_ratio = 1.0\n"
        ),
    )
    .expect("write");
    let o = fleetbench(&["check", s(&file)]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = dir.path().join("r.json");
    let (o, _) = finish(start_run(&file, &out, &[]), Duration::from_secs(60));
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r = report(&out);
    assert_eq!(r["totals"]["delivered"], r["totals"]["sent"]);
    assert!(
        r["totals"]["sent"].as_u64().unwrap_or(0) >= 20,
        "{}",
        r["totals"]
    );
}

#[test]
fn check_refuses_a_restart_program_this_machine_does_not_have() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("restart.toml");
    std::fs::write(
        &file,
        "name = \"r\"\nduration = \"10s\"\n[broker]\nurl = \"mqtt://127.0.0.1:1\"\n\
         [[group]]\nname = \"s\"\ncount = 2\ntopic = \"r/{index}\"\nrate = 1.0\n\
         [[observer]]\nname = \"all\"\nfilters = [\"r/#\"]\n\
         [[fault]]\nkind = \"broker_restart\"\nat = \"3s\"\n\
         command = [\"/nonexistent/restart-broker\"]\n",
    )
    .expect("write");
    let o = fleetbench(&["check", s(&file)]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("\"/nonexistent/restart-broker\" is not an executable file"),
        "{}",
        text(&o)
    );
}
