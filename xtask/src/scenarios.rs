//! `cargo xtask scenarios`: run scenario files (all, the gate set, or those named), repeat and
//! merge them, store them as a baseline or compare them with one, and print a line per
//! scenario. Reports are read through fleetbench's own report type.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context};
use fleetbench_report::Report;

use crate::{cargo, root, worse};

/// A scenario file, validated.
fn load_scenario(path: &Path) -> anyhow::Result<fleetbench_scenario::Scenario> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    fleetbench_scenario::parse(&path.display().to_string(), &text).map_err(anyhow::Error::from)
}

/// The scenario files to run, in name order: those named, the gate set, or all.
fn scenario_files(names: &[String], gate: bool) -> anyhow::Result<Vec<PathBuf>> {
    let dir = root().join("scenarios");
    if gate {
        let mut set = Vec::new();
        for file in scenario_files(&[], false)? {
            if load_scenario(&file)?.regression.gate {
                set.push(file);
            }
        }
        if set.is_empty() {
            bail!(
                "no scenario in {} says `gate = true` in its [regression] table",
                dir.display()
            );
        }
        return Ok(set);
    }
    if names.is_empty() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        return Ok(files);
    }
    names
        .iter()
        .map(|n| {
            let path = dir.join(format!("{}.toml", n.trim_end_matches(".toml")));
            if path.is_file() {
                Ok(path)
            } else {
                bail!("no scenario {n:?}: {} does not exist", path.display())
            }
        })
        .collect()
}

/// Where `cargo xtask scenarios` writes its reports.
fn reports_dir() -> PathBuf {
    root().join("target").join("scenarios")
}

/// Store the reports of the scenarios that ran as the baseline in `dir`.
pub(crate) fn save(dir: &Path, ran: &[String]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for name in ran {
        // The report, and every run's interval log for looking into it later.
        let files = std::fs::read_dir(reports_dir())
            .with_context(|| format!("listing {}", reports_dir().display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name().and_then(|f| f.to_str()).is_some_and(|f| {
                    f == format!("{name}.json")
                        || (f.starts_with(&format!("{name}.")) && f.ends_with(".hlog"))
                })
            });
        for from in files {
            let to = dir.join(from.file_name().unwrap_or_default());
            std::fs::copy(&from, &to)
                .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
        }
    }
    eprintln!(
        "xtask: saved {} reports as the baseline in {}",
        ran.len(),
        dir.display()
    );
    Ok(())
}

/// Compare every scenario that ran with its baseline in `dir`: 3 when any regressed.
pub(crate) fn compare_with_baseline(dir: &Path, bin: &Path, ran: &[String]) -> anyhow::Result<i32> {
    let mut markdown = String::new();
    let mut code = 0;
    for name in ran {
        let base = dir.join(format!("{name}.json"));
        let now = reports_dir().join(format!("{name}.json"));
        if !base.is_file() {
            println!("{name}: no baseline in {} (not compared)", dir.display());
            markdown.push_str(&format!("### {name}\n\nno baseline\n\n"));
            continue;
        }
        for (format, into_markdown) in [("text", false), ("markdown", true)] {
            let out = Command::new(bin)
                .arg("compare")
                .arg(&base)
                .arg(&now)
                .args(["--format", format])
                .output()
                .with_context(|| format!("comparing {name}"))?;
            let text = String::from_utf8_lossy(&out.stdout);
            if into_markdown {
                markdown.push_str(&text);
                markdown.push('\n');
                continue;
            }
            print!("{text}");
            match out.status.code() {
                Some(0) => {}
                Some(3) => code = 3,
                _ => bail!(
                    "comparing {name} failed: {}",
                    String::from_utf8_lossy(&out.stderr)
                ),
            }
        }
    }
    let summary = reports_dir().join("comparison.md");
    std::fs::write(&summary, &markdown)
        .with_context(|| format!("writing {}", summary.display()))?;
    if let Some(step) = std::env::var_os("GITHUB_STEP_SUMMARY") {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&step)
            .context("opening $GITHUB_STEP_SUMMARY")?;
        f.write_all(markdown.as_bytes())
            .context("writing $GITHUB_STEP_SUMMARY")?;
    }
    println!(
        "baseline {}: {}",
        dir.display(),
        if code == 0 {
            "no regression"
        } else {
            "REGRESSION"
        }
    );
    Ok(code)
}

/// Run the scenarios; returns the worst exit code, the binary that ran them and the names
/// that produced a report.
pub(crate) fn scenarios(
    names: &[String],
    gate: bool,
    debug: bool,
    progress_every: f64,
    repeat: Option<u32>,
) -> anyhow::Result<(i32, PathBuf, Vec<String>)> {
    let files = scenario_files(names, gate)?;
    let profile = if debug { "debug" } else { "release" };
    let mut build = vec!["build", "--quiet", "-p", "fleetbench"];
    if !debug {
        build.push("--release");
    }
    cargo(&build)?;
    let bin = root().join("target").join(profile).join("fleetbench");
    let out_dir = reports_dir();
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;

    let interactive = files.len() == 1 && std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut worst = 0;
    let mut lines = Vec::new();
    for file in &files {
        let name = file
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let runs = match repeat {
            Some(n) => n,
            None => load_scenario(file)?.regression.repeat,
        };
        let report = out_dir.join(format!("{name}.json"));
        remove_reports(&out_dir, &name)?;
        let mut code = 0;
        let mut run_reports = Vec::new();
        for k in 1..=runs {
            let path = if runs == 1 {
                report.clone()
            } else {
                out_dir.join(format!("{name}.run{k}.json"))
            };
            eprintln!("xtask: running scenario {name} (run {k} of {runs})");
            let c = run_one(&bin, file, &path, progress_every, interactive && runs == 1)?;
            if runs > 1 {
                println!("  {}", summary_line(&format!("{name} #{k}"), c, &path));
            }
            // An error or an interruption ends the repeats; failed expectations do not: with
            // repeats, the merged report's verdict is the scenario's.
            code = worse(code, if runs > 1 && c == 3 { 0 } else { c });
            run_reports.push(path);
            if c != 0 && c != 3 {
                break;
            }
        }
        if runs > 1 && run_reports.iter().all(|p| p.is_file()) {
            code = worse(code, merge_runs(&bin, &name, &run_reports, &report)?);
        }
        let line = summary_line(&name, code, &report);
        println!("{line}");
        lines.push(line);
        worst = worse(worst, code);
    }
    let failed = lines
        .iter()
        .filter(|l| !l.starts_with(fleetbench_report::report::Verdict::Pass.label()))
        .count();
    println!(
        "{} scenarios, {} passed, {failed} failed",
        lines.len(),
        lines.len() - failed
    );
    let ran = files
        .iter()
        .filter_map(|f| f.file_stem().map(|s| s.to_string_lossy().to_string()))
        .filter(|n| reports_dir().join(format!("{n}.json")).is_file())
        .collect();
    Ok((worst, bin, ran))
}

/// Merge the repeats of `name` into `report`; returns merge's exit code.
fn merge_runs(bin: &Path, name: &str, runs: &[PathBuf], report: &Path) -> anyhow::Result<i32> {
    let merged = Command::new(bin)
        .arg("merge")
        .args(runs)
        .arg("--output")
        .arg(report)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("merging the runs of {name}"))?;
    if !report.is_file() {
        bail!(
            "merging the runs of {name} failed: {}",
            String::from_utf8_lossy(&merged.stderr)
        );
    }
    Ok(merged.status.code().unwrap_or(1))
}

/// Remove the reports and interval logs an earlier run of `name` left.
fn remove_reports(dir: &Path, name: &str) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let path = entry
            .with_context(|| format!("listing {}", dir.display()))?
            .path();
        let Some(f) = path.file_name().and_then(|f| f.to_str()) else {
            continue;
        };
        let ours = f == format!("{name}.json")
            || f == format!("{name}.hlog")
            || (f.starts_with(&format!("{name}.run"))
                && (f.ends_with(".json") || f.ends_with(".hlog")));
        if ours {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Run one scenario once, writing its report (and interval log) at `report`.
fn run_one(
    bin: &Path,
    file: &Path,
    report: &Path,
    progress_every: f64,
    interactive: bool,
) -> anyhow::Result<i32> {
    let mut command = Command::new(bin);
    command
        .arg("run")
        .arg(file)
        .arg("--report")
        .arg(report)
        .arg("--progress-every")
        .arg(progress_every.to_string());
    let status = if interactive {
        // One scenario on a terminal: hand it over, so that the live monitor opens.
        command.status()
    } else {
        command
            .arg("--no-tui")
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()
            .map(|output| {
                // The summary goes to stderr so that stdout keeps one line per scenario.
                eprint!("{}", String::from_utf8_lossy(&output.stdout));
                output.status
            })
    }
    .with_context(|| format!("running {}", bin.display()))?;
    Ok(status.code().unwrap_or(1))
}

fn summary_line(name: &str, code: i32, report: &Path) -> String {
    use fleetbench_report::report::Verdict;
    let verdict = match code {
        0 => Verdict::Pass.label(),
        3 => Verdict::Fail.label(),
        130 => "INTR",
        2 => "BAD ",
        _ => "ERR ",
    };
    let Ok(text) = std::fs::read_to_string(report) else {
        return format!("{verdict}  {name:<24} no report (exit code {code})");
    };
    let Ok(r) = Report::from_json(&text) else {
        return format!(
            "{verdict}  {name:<24} unreadable report {}",
            report.display()
        );
    };
    let t = &r.totals;
    let pct = if t.expected > 0 {
        100.0 * t.delivered as f64 / t.expected as f64
    } else {
        0.0
    };
    let failed: Vec<&str> = r
        .expectations
        .iter()
        .filter(|e| !e.ok)
        .map(|e| e.name.as_str())
        .collect();
    format!(
        "{verdict}  {name:<24} delivered {pct:>6.2}%  lost {:>5}  p99 {:>8.2}ms  {:>8.0} msg/s  {:>5.1}s{}",
        t.lost,
        r.latency.from_intended.p99_us as f64 / 1000.0,
        r.throughput.deliver_per_s,
        r.run.elapsed_s,
        if failed.is_empty() {
            String::new()
        } else {
            format!("  failed: {}", failed.join(", "))
        }
    )
}
