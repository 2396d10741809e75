//! The suite every broker gets, the same for each: what runs, and the figures read from
//! fleetbench's own reports, so that every broker is judged by the same ledger and clock.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::{json, Value};

use super::servers::{Placement, Running};
use crate::root;

/// How the suite runs: quick or full searches, and expectations that replace the searches'
/// own.
pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) targets: Vec<String>,
}

/// One item of the suite.
pub(crate) struct Item {
    pub(crate) name: &'static str,
    /// The scenario file, from the repository's root.
    scenario: &'static str,
    how: How,
}

impl Item {
    /// Is it a capacity search (whose curves the comparison's page overlays)?
    pub(crate) fn is_search(&self) -> bool {
        matches!(self.how, How::Search { .. })
    }
}

enum How {
    /// `fleetbench run`: the scenario's own expectations judge it.
    Run,
    /// `fleetbench search --vary KNOB`, with the range for a full and a quick suite (a quick
    /// one also takes [`QUICK_STEPS`]).
    Search {
        vary: &'static str,
        full: &'static [&'static str],
        quick: &'static [&'static str],
    },
}

/// A quick suite's searches: a coarse tolerance, short steps, two minutes at most.
const QUICK_STEPS: &[&str] = &[
    "--tolerance",
    "25%",
    "--settle",
    "1s",
    "--window",
    "2s",
    "--rest",
    "1s",
    "--budget",
    "2m",
];

/// The suite, in the order it runs.
pub(crate) const SUITE: &[Item] = &[
    Item {
        name: "connect",
        scenario: "scenarios/brokers/connect-storm.toml",
        how: How::Run,
    },
    Item {
        name: "fan-in",
        scenario: "scenarios/search/fan-in-qos1.toml",
        how: How::Search {
            vary: "rate",
            full: &["--from", "1", "--to", "320"],
            quick: &["--from", "1", "--to", "16"],
        },
    },
    Item {
        name: "fan-out",
        scenario: "scenarios/search/fan-out-qos1.toml",
        how: How::Search {
            vary: "subscribers",
            full: &["--from", "1", "--to", "500"],
            quick: &["--from", "1", "--to", "16"],
        },
    },
    Item {
        name: "qos2",
        scenario: "scenarios/qos2.toml",
        how: How::Run,
    },
    Item {
        name: "retained",
        scenario: "scenarios/retained-status.toml",
        how: How::Run,
    },
    Item {
        name: "will",
        scenario: "scenarios/last-will.toml",
        how: How::Run,
    },
    Item {
        name: "persistent-session",
        scenario: "scenarios/persistent-session.toml",
        how: How::Run,
    },
    Item {
        name: "slow-consumer",
        scenario: "scenarios/slow-consumer.toml",
        how: How::Run,
    },
    Item {
        name: "reconnect-storm",
        scenario: "scenarios/reconnect-storm.toml",
        how: How::Run,
    },
];

/// Run `item` against `broker`; the figures of its row (with `error` when it could not run).
pub(crate) fn run_item(
    item: &Item,
    fleetbench: &Path,
    broker: &Running,
    place: &Placement,
    out: &Path,
    opts: &Options,
    stop: &AtomicBool,
) -> Value {
    let quick = opts.quick;
    let report = out.join(format!("{}.json", item.name));
    let mut cmd = Placement::command(place.generator.as_deref(), fleetbench);
    match &item.how {
        How::Run => {
            cmd.arg("run");
        }
        How::Search {
            vary,
            full,
            quick: q,
        } => {
            cmd.args(["search", "--vary", vary])
                .args(if quick { *q } else { *full })
                .args(if quick { QUICK_STEPS } else { &[] })
                .args(opts.targets.iter().flat_map(|t| ["--target", t.as_str()]))
                .arg("--broker-pid")
                .arg(broker.pid().to_string())
                .arg("--html")
                .arg(out.join(format!("{}.html", item.name)));
        }
    }
    cmd.arg(root().join(item.scenario))
        .args([
            "--broker-url",
            &broker.url(),
            "--no-tui",
            "--quiet",
            "--report",
        ])
        .arg(&report)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(
            std::fs::File::create(out.join(format!("{}.log", item.name)))
                .map_or(Stdio::null(), Stdio::from),
        );
    let started = Instant::now();
    let machine = fleetbench_metrics::cpu::MachineLoad::start();
    let code = match wait(cmd, stop) {
        Ok(code) => code,
        Err(e) => return json!({ "error": format!("{e:#}") }),
    };
    let took = started.elapsed().as_secs_f64();
    match read(&report) {
        Ok(r) => {
            let mut figures = match item.how {
                How::Run => run_figures(&r),
                How::Search { .. } => search_figures(&r),
            };
            figures["exit"] = json!(code);
            figures["took_s"] = json!((took * 10.0).round() / 10.0);
            // The machine's neighbours' share during the item: their load is in its latency.
            if let Some(share) = machine.steal_share() {
                figures["steal_pct"] = json!((share * 1000.0).round() / 10.0);
            }
            figures
        }
        Err(e) => json!({
            "exit": code,
            "error": format!("no report ({e:#}); see {}", out.join(format!("{}.log", item.name)).display()),
        }),
    }
}

/// Wait for `cmd`, passing a stop (Ctrl-C) on to it as SIGINT so that it ends with what it
/// found; its exit code.
fn wait(mut cmd: Command, stop: &AtomicBool) -> anyhow::Result<i32> {
    let mut child = cmd.spawn().context("starting fleetbench")?;
    let mut told: Option<Instant> = None;
    loop {
        if let Some(status) = child.try_wait().context("waiting for fleetbench")? {
            return Ok(status.code().unwrap_or(1));
        }
        if stop.load(Ordering::SeqCst) {
            match told {
                None => {
                    if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
                    }
                    told = Some(Instant::now());
                }
                Some(at) if at.elapsed() > Duration::from_secs(30) => {
                    let _ = child.kill();
                }
                Some(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn read(path: &Path) -> anyhow::Result<Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A run's figures: its verdict and why, the ledger, connect and delivery latency.
fn run_figures(r: &Value) -> Value {
    let failed: Vec<&str> = (r["expectations"].as_array().into_iter().flatten())
        .filter(|e| e["ok"] == false)
        .filter_map(|e| e["name"].as_str())
        .collect();
    let errors: u64 = (r["errors"].as_object().into_iter().flatten())
        .filter_map(|(_, g)| g["count"].as_u64())
        .sum();
    json!({
        "verdict": r["verdict"],
        "failed": failed,
        "sent": r["totals"]["sent"],
        "delivered": r["totals"]["delivered"],
        "lost": r["totals"]["lost"],
        "duplicates": r["totals"]["duplicates"],
        "p50_us": r["latency"]["from_intended"]["p50_us"],
        "p99_us": r["latency"]["from_intended"]["p99_us"],
        "connect_p50_us": r["latency"]["connect"]["p50_us"],
        "connect_p99_us": r["latency"]["connect"]["p99_us"],
        "connect_all_s": r["timing"]["connect_all_s"],
        "connects": r["latency"]["connect"]["count"],
        "never_connected": r["timing"]["never_connected"],
        "errors": errors,
        "findings": r["findings"],
    })
}

/// A search's figures: the answer, its bracket, the knee, what limited it, and the deliveries
/// per second of the last step that held at the answer (the fan-out's capacity is counted so).
fn search_figures(r: &Value) -> Value {
    let at_answer = (r["steps"].as_array().into_iter().flatten())
        .rev()
        .find(|s| s["passed"] == true && !r["answer"].is_null() && s["value"] == r["answer"])
        .map(|s| s["delivered_per_s"].clone());
    json!({
        "delivered_per_s_at_answer": at_answer,
        "answer": r["answer"],
        "unit": r["unit"],
        "bracket": r["bracket"],
        "knee": r["knee"],
        "limited_by": r["limited_by"],
        "steps": r["steps"].as_array().map_or(0, Vec::len),
        "duration_s": r["duration_s"],
        "interrupted": r["interrupted"],
    })
}
