//! The generator judged by what it does to the figures: a generator starved of CPU fails the run
//! and the finding says so; the fleet's own leaving is not measured as load.

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use common::cli::{finish, start_run};
use fleetbench_report::Report;

/// Run `file` with `fleetbench` started by `launcher` (a program and its arguments before
/// fleetbench's own, or none); its exit code, report and output.
fn run(file: &Path, launcher: &[&str]) -> (Option<i32>, Report, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report.json");
    let child = match launcher.split_first() {
        None => start_run(file, &report, &["--no-tui"]),
        Some((program, args)) => Command::new(program)
            .args(args)
            .arg(common::cli::BIN)
            .args(["run", file.to_str().expect("utf-8"), "--no-tui", "--quiet"])
            .arg("--report")
            .arg(&report)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start fleetbench"),
    };
    let (out, _) = finish(child, Duration::from_secs(120));
    let printed = common::cli::text(&out);
    let text = std::fs::read_to_string(&report).unwrap_or_else(|e| panic!("{e}: {printed}"));
    (
        out.status.code(),
        serde_json::from_str(&text).expect("a report"),
        printed,
    )
}

/// A busy loop on CPU 0, ended (by its PID) when dropped.
struct BusyCore(Child);

impl BusyCore {
    fn start() -> BusyCore {
        let child = Command::new("taskset")
            .args(["-c", "0", "sh", "-c", "while :; do :; done"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("taskset (util-linux) starts a busy loop");
        BusyCore(child)
    }
}

impl Drop for BusyCore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_generator_starved_of_cpu_fails_and_the_finding_says_so() {
    // 20,000 msg/s and the embedded broker on one core that a busy loop shares: the generator
    // is short of CPU and most sends leave tens of milliseconds late.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("starved.toml");
    std::fs::write(
        &file,
        "name = \"starved\"\nduration = \"6s\"\ndrain_timeout = \"3s\"\nwarmup = \"1s\"\n\
         [[group]]\nname = \"s\"\ncount = 500\ntopic = \"starved/{index}\"\nrate = 40.0\nqos = 0\n\
         [[observer]]\nname = \"all\"\nfilters = [\"starved/#\"]\nqos = 0\n\
         [expect]\ndelivered_ratio = 0.0\nmax_in_flight_share = 1.0\n",
    )
    .expect("write");
    let _busy = BusyCore::start();
    let (code, r, out) = run(&file, &["taskset", "-c", "0"]);
    assert_eq!(code, Some(3), "{out}");
    let behind = r
        .expectations
        .iter()
        .find(|e| e.name == "generator_behind")
        .expect("always judged");
    assert!(!behind.ok, "{behind:?}\n{out}");
    assert!(r.behind_sends() > 0, "{:?}", r.generator);
    assert!(
        r.findings
            .iter()
            .any(|f| f.contains("could not keep its schedule")),
        "{:?}",
        r.findings
    );
    // The raw figures stay in the report: every step of lateness up to the worst.
    let steps: Vec<u64> = r.generator.late_by.iter().map(|s| s.over_ms).collect();
    assert!(steps.starts_with(&[1, 2, 5, 10, 20]), "{steps:?}");
    assert!(r
        .generator
        .late_by
        .windows(2)
        .all(|w| w[0].sends >= w[1].sends));
}

#[test]
fn the_fleet_stays_connected_until_the_last_message_of_the_window_arrived() {
    // At 1 msg/s each device's last message falls due in the window's last second: a fleet
    // that left after its own last message would thin out while others still deliver.
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("stay.toml");
    std::fs::write(
        &file,
        "name = \"stay\"\nduration = \"4s\"\ndrain_timeout = \"3s\"\nwarmup = \"1s\"\n\
         [[group]]\nname = \"s\"\ncount = 200\ntopic = \"stay/{index}\"\nrate = 1.0\nqos = 1\n\
         [[observer]]\nname = \"all\"\nfilters = [\"stay/#\"]\nqos = 1\n\
         [expect]\ndelivered_ratio = 1.0\n",
    )
    .expect("write");
    let (code, r, out) = run(&file, &[]);
    assert_eq!(code, Some(0), "{out}");
    let s = &r.series;
    let connected_by = r.timing.connect_all_s.expect("all connected");
    let last = *s.delivered.last().expect("points");
    assert_eq!(last, r.totals.sent);
    let mut checked = 0;
    for (i, t) in s.t_s.iter().enumerate() {
        if *t > connected_by + 0.3 && s.delivered[i] < last {
            assert_eq!(
                s.devices_connected[i], 200,
                "at {t:.2}s, with {} of {last} delivered",
                s.delivered[i]
            );
            checked += 1;
        }
    }
    assert!(checked >= 10, "points of the window: {checked}");
    // And they did leave, after the last arrival.
    assert_eq!(
        s.devices_connected.last(),
        Some(&0),
        "{:?}",
        s.devices_connected
    );
}
