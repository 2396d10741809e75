//! `cargo xtask brokers [NAME...] [--quick]`: the same suite against every broker the machine
//! can run, each on a free loopback port and its own core, stopped by its PID when its part is
//! over (on success, on failure and on Ctrl-C). Every figure comes from fleetbench's own report.
//! Results (in target/brokers/ unless `--out` says otherwise): NAME/ITEM.json (every run's and
//! search's report, with its log), results.json (the figures of every row, the broker's PID
//! among them), table.md (the table) and index.html (the table and every search's knee
//! curves overlaid).
//!
//! A broker that cannot be installed or started is a row that says why; one that crashes
//! during the suite is a finding of its row, and the suite goes on to the next broker.

mod servers;
mod suite;
mod table;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context;
use serde_json::{json, Value};

use crate::{cargo, root};
use servers::{Kind, Placement};
pub(crate) use suite::Options;

/// Run the comparison; its exit code (130 when stopped; 1 when a broker could not be compared
/// or an item left no report).
pub(crate) fn brokers(
    names: &[String],
    opts: Options,
    fleetbench: Option<PathBuf>,
    out: Option<PathBuf>,
) -> anyhow::Result<i32> {
    let kinds: Vec<Kind> = if names.is_empty() {
        Kind::ALL.to_vec()
    } else {
        names
            .iter()
            .map(|n| Kind::parse(n))
            .collect::<anyhow::Result<_>>()?
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone()).context("catching Ctrl-C")?;
    }
    let fleetbench = match fleetbench {
        Some(bin) => std::path::absolute(&bin)
            .with_context(|| format!("the fleetbench binary {}", bin.display()))?,
        None => {
            cargo(&["build", "--quiet", "--release", "-p", "fleetbench"])?;
            root().join("target/release/fleetbench")
        }
    };
    let out = out.unwrap_or_else(|| root().join("target/brokers"));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let place = Placement::of_machine();
    let mut rows = Vec::new();
    for kind in kinds {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        eprintln!("xtask brokers: {}", kind.name());
        let row = compare(
            kind,
            &fleetbench,
            &place,
            &out.join(kind.name()),
            &opts,
            &stop,
        );
        eprintln!("  {}", table::summary(&row));
        rows.push(row);
    }
    let results = json!({
        "quick": opts.quick,
        "targets": opts.targets,
        "machine": machine(),
        "placement": { "broker_cores": place.broker, "generator_cores": place.generator },
        "brokers": rows,
    });
    let text = serde_json::to_string_pretty(&results).context("the results as JSON")?;
    std::fs::write(out.join("results.json"), text).context("writing results.json")?;
    let cells = table::Table::of(&results);
    let md = cells.markdown();
    std::fs::write(out.join("table.md"), &md).context("writing table.md")?;
    let page = table::page(&cells, &results, &out)?;
    println!("{md}");
    println!(
        "the table and every search's curves on one page: {}",
        page.display()
    );
    println!("every report: {}", out.display());
    if stop.load(Ordering::SeqCst) {
        return Ok(130);
    }
    // A table with a hole is not a result: a broker not compared, or an item without a report.
    let holes: Vec<String> = rows.iter().flat_map(holes).collect();
    if holes.is_empty() {
        return Ok(0);
    }
    eprintln!("xtask brokers: no figures for {}", holes.join(", "));
    Ok(1)
}

/// What a row lacks: the broker itself, or the items that left no report.
fn holes(row: &Value) -> Vec<String> {
    let name = row["broker"].as_str().unwrap_or("?");
    if row.get("unavailable").is_some() {
        return vec![name.to_string()];
    }
    (suite::SUITE.iter())
        .filter(|i| row[i.name].get("error").is_some())
        .map(|i| format!("{name} {}", i.name))
        .collect()
}

/// One broker's row: prepared, started, the suite, stopped.
fn compare(
    kind: Kind,
    fleetbench: &Path,
    place: &Placement,
    dir: &Path,
    opts: &Options,
    stop: &AtomicBool,
) -> Value {
    let mut row = json!({ "broker": kind.name() });
    let version = match servers::prepare(kind, fleetbench) {
        Ok(v) => v,
        Err(e) => {
            row["unavailable"] = json!(format!("{e:#}"));
            return row;
        }
    };
    row["version"] = json!(version);
    if let Err(e) = std::fs::create_dir_all(dir) {
        row["unavailable"] = json!(format!("creating {}: {e}", dir.display()));
        return row;
    }
    let mut broker = match servers::start(kind, fleetbench, place, &dir.join("broker.log")) {
        Ok(b) => b,
        Err(e) => {
            row["unavailable"] = json!(format!("{e:#}"));
            return row;
        }
    };
    row["pid"] = json!(broker.pid());
    let mut findings = Vec::new();
    for item in suite::SUITE {
        if stop.load(Ordering::SeqCst) {
            row["interrupted"] = json!(true);
            break;
        }
        if let Some(status) = broker.exited() {
            findings.push(format!(
                "the broker exited ({status}) before {}: the rest of the suite was not run",
                item.name
            ));
            break;
        }
        eprintln!("  {} ...", item.name);
        let figures = suite::run_item(item, fleetbench, &broker, place, dir, opts, stop);
        row[item.name] = figures;
    }
    if let Some(status) = broker.exited() {
        findings.push(format!("the broker exited during the suite ({status})"));
    }
    broker.stop();
    row["findings"] = json!(findings);
    row
}

/// The machine the comparison ran on.
fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_default();
    json!({
        "cores": std::thread::available_parallelism().map_or(1, |n| n.get()),
        "cpu": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}
