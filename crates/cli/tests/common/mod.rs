//! Helpers shared by the CLI's integration tests (each test binary uses a part of them).
#![allow(dead_code)]

pub(crate) mod cli;
pub(crate) mod mosquitto;
pub(crate) mod pods;

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// `fleetbench broker` on a free loopback port, ended (by its PID) when dropped.
pub(crate) struct BrokerProcess {
    child: Child,
    pub port: u16,
}

impl BrokerProcess {
    /// Start it and wait for its banner, which it prints once it has answered a CONNECT itself.
    pub(crate) fn start() -> BrokerProcess {
        Self::start_with(&[])
    }

    /// End it at once (SIGKILL), as a crash would.
    pub(crate) fn kill(&self) {
        let _ = Command::new("kill")
            .args(["-KILL", &self.child.id().to_string()])
            .status();
    }

    /// [`BrokerProcess::start`] with more arguments for `fleetbench broker`.
    pub(crate) fn start_with(extra: &[&str]) -> BrokerProcess {
        Self::start_with_env(extra, &[])
    }

    /// [`BrokerProcess::start_with`], with variables set in its environment (a password).
    pub(crate) fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> BrokerProcess {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
            .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
            .args(extra)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start fleetbench broker");
        let stdout = child.stdout.take().expect("stdout");
        let broker = BrokerProcess { child, port };
        let mut banner = String::new();
        BufReader::new(stdout)
            .read_line(&mut banner)
            .expect("banner");
        assert!(
            banner.contains(&format!("listening on 127.0.0.1:{port}")),
            "banner: {banner:?}"
        );
        broker
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped scenarios: the `.toml` files in `scenarios/`, `scenarios/long/`,
/// `scenarios/search/` and `scenarios/brokers/`, sorted.
pub(crate) fn shipped_scenarios() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let mut files = toml_files(&dir);
    files.extend(toml_files(&dir.join("long")));
    files.extend(toml_files(&dir.join("search")));
    files.extend(toml_files(&dir.join("brokers")));
    files
}

/// The `.toml` files in `dir`, sorted.
pub(crate) fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    files
}

/// What `fleetbench run FILE --report ... --quiet` did.
pub(crate) struct Run {
    pub code: Option<i32>,
    /// Standard output then standard error.
    pub output: String,
    /// The report as written (empty when none was).
    pub report_text: String,
}

impl Run {
    pub(crate) fn report(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.report_text).ok()
    }
}

/// `fleetbench run FILE --report ... --quiet` with `env` added to its environment.
pub(crate) fn run_with_env(file: &Path, env: &[(&str, &str)]) -> Run {
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("report.json");
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("run")
        .arg(file)
        .arg("--report")
        .arg(&report)
        .arg("--quiet")
        .envs(env.iter().copied())
        .output()
        .expect("run fleetbench");
    Run {
        code: out.status.code(),
        output: format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        report_text: std::fs::read_to_string(&report).unwrap_or_default(),
    }
}

/// `fleetbench run FILE --report ... --quiet`, which must pass (exit 0) on everything but the
/// machine's punctuality; returns the report. A busy machine can make the generator late
/// (`generator_behind`), and late sends can decide a latency verdict from the intended time
/// (`generator_limited` says so): the run then fails (exit 3) on the machine, not on what these
/// tests check, and every other expectation must still hold.
pub(crate) fn run_passing(file: &Path) -> serde_json::Value {
    run_passing_but(file, &[])
}

/// As [`run_passing`], with the expectations named in `also` allowed to fail too: those a
/// test does not have as its subject and a busy machine can decide (a latency target).
pub(crate) fn run_passing_but(file: &Path, also: &[&str]) -> serde_json::Value {
    let r = run_with_env(file, &[]);
    let report = r
        .report()
        .unwrap_or_else(|| panic!("no report: {}", r.output));
    assert!(
        passed_but_for(r.code, &report, &file.display().to_string(), also),
        "{}",
        r.output
    );
    report
}

/// Whether a run (its exit code and report) passed, or failed (exit 3) on the machine's
/// punctuality alone: `generator_behind`, `generator_limited`, and the latency from the
/// intended time when late sends decided it; with `also` (expectation names) taken as the
/// machine's too (a merge fails `shards_failed` when a shard failed, on the machine or not).
/// Says so on stderr when it was the machine.
pub(crate) fn passed_but_for(
    code: Option<i32>,
    report: &serde_json::Value,
    what: &str,
    also: &[&str],
) -> bool {
    let failed: Vec<&str> = (report["expectations"].as_array().into_iter().flatten())
        .filter(|e| e["ok"] == false)
        .filter_map(|e| e["name"].as_str())
        .collect();
    let late_decided = failed.contains(&"generator_limited");
    let the_machines = |n: &&str| {
        ["generator_behind", "generator_limited"].contains(n)
            || also.contains(n)
            || (late_decided && n.ends_with("_from_intended"))
    };
    let on_the_machine = code == Some(3) && !failed.is_empty() && failed.iter().all(the_machines);
    if on_the_machine {
        eprintln!("note: {what} failed only on the machine's punctuality ({failed:?})");
    }
    code == Some(0) || on_the_machine
}

/// A file of `scenarios/`.
pub(crate) fn shipped(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(format!("{name}.toml"))
}
