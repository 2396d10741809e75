//! Starting `fleetbench`, waiting for it within a limit, and reading what it printed and wrote:
//! the helpers of the trust and hygiene tests.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub(crate) const BIN: &str = env!("CARGO_BIN_EXE_fleetbench");

/// A scenario of `count` devices at `rate`/s for `duration`, against `broker` (TOML of a
/// `[broker]` table, or "" for the embedded one).
pub(crate) fn scenario(dir: &Path, duration: &str, count: u32, rate: f64, extra: &str) -> PathBuf {
    let text = format!(
        r#"name = "trust"
duration = "{duration}"
drain_timeout = "2s"
[[group]]
name = "s"
count = {count}
topic = "trust/{{index}}"
rate = {rate}
qos = 1
[[observer]]
name = "all"
filters = ["trust/#"]
{extra}
"#
    );
    let path = dir.join("trust.toml");
    std::fs::write(&path, text).expect("write scenario");
    path
}

/// The `[broker]` table of a scenario that runs against `127.0.0.1:port`.
pub(crate) fn external(port: u16) -> String {
    format!("[broker]\nurl = \"mqtt://127.0.0.1:{port}\"\n")
}

/// `fleetbench ARGS...`, started with its output piped.
pub(crate) fn spawn(args: &[&str]) -> Child {
    Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start fleetbench")
}

/// `fleetbench run FILE --report REPORT --quiet EXTRA...`, started.
pub(crate) fn start_run(file: &Path, report: &Path, extra: &[&str]) -> Child {
    let mut args = vec![
        "run",
        file.to_str().expect("utf-8"),
        "--report",
        report.to_str().expect("utf-8"),
        "--quiet",
    ];
    args.extend(extra);
    spawn(&args)
}

/// Wait for `child` to end, failing the test when it takes longer than `limit`.
pub(crate) fn finish(child: Child, limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = child;
    while child.try_wait().expect("try_wait").is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("fleetbench did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().expect("output"), start.elapsed())
}

/// Standard output then standard error.
pub(crate) fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The JSON report at `path`, which must have been written.
pub(crate) fn report(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("report written")).expect("json")
}

/// The expectation called `name` in report `r`.
pub(crate) fn expectation<'a>(r: &'a Value, name: &str) -> &'a Value {
    r["expectations"]
        .as_array()
        .expect("expectations")
        .iter()
        .find(|e| e["name"] == name)
        .unwrap_or_else(|| panic!("no {name} expectation in {r}"))
}

/// Send `sig` (as `kill` spells it, e.g. `-INT`) to `child`.
pub(crate) fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(ok.success());
}
