//! The comparison as a table: a row per broker, a column per figure.

use std::path::{Path, PathBuf};

use anyhow::Context;
use fleetbench_report::search::SearchReport;
use serde_json::Value;

use super::suite::SUITE;

/// One line for the progress of a row.
pub(crate) fn summary(row: &Value) -> String {
    if let Some(why) = row["unavailable"].as_str() {
        return format!("not compared: {why}");
    }
    SUITE
        .iter()
        .map(|item| format!("{} {}", item.name, cell(item.name, &row[item.name])))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The comparison's cells: a header, a row per broker, and the findings of every row.
pub(crate) struct Table {
    /// What the table is of: a quick check or a comparison, and the searches' targets.
    pub(crate) caption: String,
    pub(crate) header: Vec<String>,
    pub(crate) rows: Vec<Vec<String>>,
    pub(crate) notes: Vec<String>,
}

impl Table {
    pub(crate) fn of(results: &Value) -> Table {
        let header = ["broker", "version"]
            .into_iter()
            .chain(SUITE.iter().map(|i| i.name))
            .map(str::to_string)
            .collect();
        let brokers = results["brokers"].as_array().cloned().unwrap_or_default();
        let rows = brokers.iter().map(row_cells).collect();
        let notes = brokers.iter().flat_map(findings).collect();
        Table {
            caption: caption(results),
            header,
            rows,
            notes,
        }
    }

    /// The table in Markdown, with the rows' findings under it.
    pub(crate) fn markdown(&self) -> String {
        let line = |cells: &[String]| {
            let cells: Vec<String> = cells.iter().map(|c| c.replace('|', "/")).collect();
            format!("| {} |\n", cells.join(" | "))
        };
        let mut md = format!("{}\n\n", self.caption);
        md.push_str(&line(&self.header));
        md.push_str(&format!("|{}\n", "---|".repeat(self.header.len())));
        for row in &self.rows {
            md.push_str(&line(row));
        }
        if !self.notes.is_empty() {
            md.push_str("\nFindings:\n\n");
            for n in &self.notes {
                md.push_str(&format!("- {n}\n"));
            }
        }
        md
    }
}

/// The comparison as one HTML page (`out`/index.html): the table and its findings, then every
/// search of every broker overlaid (each named by its broker), and each search's steps.
pub(crate) fn page(table: &Table, results: &Value, out: &Path) -> anyhow::Result<PathBuf> {
    let mut searches = Vec::new();
    for row in results["brokers"].as_array().into_iter().flatten() {
        let name = row["broker"].as_str().unwrap_or("?");
        for item in SUITE.iter().filter(|i| i.is_search()) {
            let path = out.join(name).join(format!("{}.json", item.name));
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // not compared, or the search left no result: the table says so
            };
            let mut search: SearchReport = serde_json::from_str(&text)
                .with_context(|| format!("reading the search result {}", path.display()))?;
            search.broker = format!("{name} ({})", item.name);
            searches.push(search);
        }
    }
    let refs: Vec<&SearchReport> = searches.iter().collect();
    let html = fleetbench_report::html::search::render_comparison(
        &table.caption,
        &table.header,
        &table.rows,
        &table.notes,
        &refs,
    )
    .context("making the comparison's page")?;
    let path = out.join("index.html");
    std::fs::write(&path, html).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// What the table is of, in one line.
fn caption(results: &Value) -> String {
    let kind = if results["quick"] == true {
        " (--quick: a check of the harness, not a comparison)"
    } else {
        ""
    };
    let targets: Vec<&str> = (results["targets"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    let targets = if targets.is_empty() {
        "the scenarios' own targets (p99 from intended <= 10 ms, nothing lost)".to_string()
    } else {
        format!(
            "the targets {} (over the scenarios' own)",
            targets.join(", ")
        )
    };
    format!("fleetbench: MQTT brokers compared{kind}; searches judged by {targets}")
}

/// A broker's cells: its name, version and a cell per item (or why it was not compared).
fn row_cells(row: &Value) -> Vec<String> {
    let name = row["broker"].as_str().unwrap_or("?").to_string();
    if let Some(why) = row["unavailable"].as_str() {
        let mut cells = vec![name, format!("not compared: {why}")];
        cells.extend(SUITE.iter().map(|_| String::new()));
        return cells;
    }
    let version = row["version"].as_str().unwrap_or("").to_string();
    [name, version]
        .into_iter()
        .chain(SUITE.iter().map(|i| cell(i.name, &row[i.name])))
        .collect()
}

/// A row's findings: the broker's own (it exited), then those of its items' reports.
fn findings(row: &Value) -> Vec<String> {
    let name = row["broker"].as_str().unwrap_or("?");
    let own = (row["findings"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .map(str::to_string);
    let of_runs = SUITE.iter().flat_map(|i| {
        (row[i.name]["findings"].as_array().into_iter().flatten())
            .filter_map(Value::as_str)
            .map(move |f| format!("{}: {f}", i.name))
    });
    own.chain(of_runs).map(|f| format!("{name}, {f}")).collect()
}

/// One item's figures in a cell, with the machine's steal during it where it was read.
fn cell(item: &str, f: &Value) -> String {
    let figures = figures(item, f);
    match f["steal_pct"].as_f64() {
        Some(steal) => format!("{figures}; steal {steal}%"),
        None => figures,
    }
}

fn figures(item: &str, f: &Value) -> String {
    if f.is_null() {
        return "not run".to_string();
    }
    if let Some(e) = f["error"].as_str() {
        return format!("error: {}", e.replace('|', "/"));
    }
    if f.get("answer").is_some() {
        return search_cell(f);
    }
    let verdict = f["verdict"].as_str().unwrap_or("?");
    let ledger = format!(
        "lost {}, dup {}",
        f["lost"].as_u64().unwrap_or(0),
        f["duplicates"].as_u64().unwrap_or(0)
    );
    let detail = if item == "connect" {
        format!(
            "{} connected, {}, connect p50/p99 {}/{} ms, {} errors",
            f["connects"].as_u64().unwrap_or(0),
            f["connect_all_s"]
                .as_f64()
                .map_or("not all".to_string(), |s| format!("all in {s:.2} s")),
            ms(&f["connect_p50_us"]),
            ms(&f["connect_p99_us"]),
            f["errors"].as_u64().unwrap_or(0)
        )
    } else {
        format!("p99 {} ms, {ledger}", ms(&f["p99_us"]))
    };
    let failed = (f["failed"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect::<Vec<_>>();
    if failed.is_empty() {
        format!("{verdict}: {detail}")
    } else {
        format!("{verdict} ({}): {detail}", failed.join(", "))
    }
}

fn search_cell(f: &Value) -> String {
    let number = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x}"));
    let bracket = (f["bracket"].as_array())
        .map(|b| b.iter().map(number).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let limited = f["limited_by"].as_str().unwrap_or("?");
    let delivered = f["delivered_per_s_at_answer"]
        .as_f64()
        .map_or(String::new(), |d| format!(" ({d:.0} delivered/s)"));
    format!(
        "{} {}{delivered} [{bracket}], knee {}, limited by {limited}, {} steps in {:.0} s",
        number(&f["answer"]),
        f["unit"].as_str().unwrap_or(""),
        number(&f["knee"]),
        f["steps"].as_u64().unwrap_or(0),
        f["duration_s"].as_f64().unwrap_or(0.0)
    )
}

fn ms(us: &Value) -> String {
    us.as_f64()
        .map_or("-".to_string(), |u| format!("{:.1}", u / 1000.0))
}
