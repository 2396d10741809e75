//! Project tasks: `cargo xtask scenarios | search | brokers | test | bench | ci`, one module
//! each (bench is a single cargo call).

mod brokers;
mod ci;
mod scenarios;
mod search;
mod test;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "xtask", about = "fleetbench project tasks")]
struct Opts {
    #[command(subcommand)]
    task: Task,
}

#[derive(Debug, Subcommand)]
enum Task {
    /// Run scenario files from scenarios/ (all, or those named), write target/scenarios/<name>.json,
    /// print one line per scenario, and fail if any scenario fails.
    Scenarios {
        /// Scenario names (file stems in scenarios/); all when none are given.
        names: Vec<String>,
        /// Build and run the debug binary instead of the release one.
        #[arg(long)]
        debug: bool,
        /// Seconds between progress lines on stderr.
        #[arg(long, default_value_t = 5.0)]
        progress_every: f64,
        /// Store each scenario's report in DIR as the baseline to compare later runs with.
        #[arg(long, value_name = "DIR")]
        save_baseline: Option<PathBuf>,
        /// Compare each scenario with its report in DIR; fail (exit 3) on a regression. Writes
        /// target/scenarios/comparison.md (and appends it to $GITHUB_STEP_SUMMARY when set).
        #[arg(long, value_name = "DIR")]
        baseline: Option<PathBuf>,
        /// Run each scenario N times and merge the runs (median and spread for comparisons);
        /// default: the scenario's `[regression] repeat` (1 unless it says otherwise).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100))]
        repeat: Option<u32>,
        /// Run the CI gate set: the scenarios whose `[regression]` table says `gate = true`
        /// (instead of all, when no names are given).
        #[arg(long, conflicts_with = "names")]
        gate: bool,
    },
    /// Run a capacity search over scenarios/search/NAME.toml (by default varying the rate):
    /// the result in target/search/NAME.json, its knee curves in target/search/NAME.html.
    Search {
        /// The scenario's name (a file stem in scenarios/search/).
        name: String,
        /// More flags for `fleetbench search` (after `--`): --vary devices, --from 10, ...
        #[arg(last = true)]
        extra: Vec<String>,
    },
    /// Compare MQTT brokers: the same suite (a connect storm, QoS 1 fan-in and fan-out capacity
    /// searches, QoS 2, retained messages, wills, persistent sessions, a slow consumer, a
    /// reconnect storm)
    /// against each, installed when missing (as root), on a free loopback port and its own
    /// core, stopped by its PID afterwards. The table in target/brokers/table.md, every report
    /// under target/brokers/NAME/.
    Brokers {
        /// Brokers to compare (embedded, rumqttd, mosquitto, rabbitmq, amqtt, aedes); all when
        /// none are given.
        names: Vec<String>,
        /// Short searches with a coarse tolerance: the whole suite in a few minutes a broker,
        /// to test the harness (the published table is from a full run).
        #[arg(long)]
        quick: bool,
        /// An expectation for the capacity searches instead of their scenarios' own (p99 10 ms
        /// and nothing lost), as `fleetbench search --target` takes it: `p99=50ms` on a machine
        /// whose timer alone misses 10 ms. Repeatable; the table says which were used.
        #[arg(long = "target", value_name = "NAME=VALUE")]
        targets: Vec<String>,
        /// Use this fleetbench binary instead of building the release one.
        #[arg(long, value_name = "PATH")]
        fleetbench: Option<PathBuf>,
        /// Write the results here instead of target/brokers.
        #[arg(long, value_name = "DIR")]
        out: Option<PathBuf>,
    },
    /// Install what the tests need (paho-mqtt and hdrhistogram for Python), then run the whole
    /// test suite.
    Test,
    /// Run the criterion benchmarks of the hot paths.
    Bench,
    /// What CI runs: the tests, rustfmt and clippy with warnings denied.
    Ci,
}

fn main() -> ExitCode {
    let opts = Opts::parse();
    let result = match opts.task {
        Task::Scenarios {
            names,
            debug,
            progress_every,
            save_baseline,
            baseline,
            repeat,
            gate,
        } => scenarios::scenarios(&names, gate, debug, progress_every, repeat).and_then(
            |(code, bin, ran)| {
                if let Some(dir) = &save_baseline {
                    scenarios::save(dir, &ran)?;
                }
                match &baseline {
                    Some(dir) => Ok(worse(
                        code,
                        scenarios::compare_with_baseline(dir, &bin, &ran)?,
                    )),
                    None => Ok(code),
                }
            },
        ),
        Task::Search { name, extra } => search::search(&name, &extra),
        Task::Brokers {
            names,
            quick,
            targets,
            fleetbench,
            out,
        } => brokers::brokers(&names, brokers::Options { quick, targets }, fleetbench, out),
        Task::Test => test::test().map(|_| 0),
        Task::Bench => cargo(&["bench", "-p", "fleetbench-benches"]).map(|_| 0),
        Task::Ci => ci::ci().map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(1)
        }
    }
}

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub(crate) fn cargo(args: &[&str]) -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .with_context(|| format!("running cargo {}", args.join(" ")))?;
    if !status.success() {
        bail!("cargo {} failed ({status})", args.join(" "));
    }
    Ok(())
}

/// The worse of two exit codes: any error beats failed expectations (3), which beat a pass.
pub(crate) fn worse(a: i32, b: i32) -> i32 {
    match (a, b) {
        (a, 0) => a,
        (0, b) => b,
        (a, 3) => a,
        (_, b) => b,
    }
}
