//! Project tasks: `cargo xtask scenarios | test | bench | ci`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

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
        } => scenarios(&names, gate, debug, progress_every, repeat).and_then(|(code, bin, ran)| {
            if let Some(dir) = &save_baseline {
                save(dir, &ran)?;
            }
            match &baseline {
                Some(dir) => Ok(worse(code, compare_with_baseline(dir, &bin, &ran)?)),
                None => Ok(code),
            }
        }),
        Task::Test => test().map(|_| 0),
        Task::Bench => cargo(&["bench", "-p", "fleetbench-benches"]).map(|_| 0),
        Task::Ci => ci().map(|_| 0),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            eprintln!("xtask: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn cargo(args: &[&str]) -> anyhow::Result<()> {
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
fn save(dir: &Path, ran: &[String]) -> anyhow::Result<()> {
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
fn compare_with_baseline(dir: &Path, bin: &Path, ran: &[String]) -> anyhow::Result<i32> {
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
fn scenarios(
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
            let merged = Command::new(&bin)
                .arg("merge")
                .args(&run_reports)
                .arg("--output")
                .arg(&report)
                .stdin(Stdio::null())
                .output()
                .with_context(|| format!("merging the runs of {name}"))?;
            if !report.is_file() {
                bail!(
                    "merging the runs of {name} failed: {}",
                    String::from_utf8_lossy(&merged.stderr)
                );
            }
            code = worse(code, merged.status.code().unwrap_or(1));
        }
        let line = summary_line(&name, code, &report);
        println!("{line}");
        lines.push(line);
        worst = worse(worst, code);
    }
    let failed = lines.iter().filter(|l| !l.starts_with("PASS")).count();
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

/// The worse of two exit codes: any error beats failed expectations (3), which beat a pass.
fn worse(a: i32, b: i32) -> i32 {
    match (a, b) {
        (a, 0) => a,
        (0, b) => b,
        (a, 3) => a,
        (_, b) => b,
    }
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
    let verdict = match code {
        0 => "PASS",
        3 => "FAIL",
        130 => "INTR",
        2 => "BAD ",
        _ => "ERR ",
    };
    let Ok(text) = std::fs::read_to_string(report) else {
        return format!("{verdict}  {name:<24} no report (exit code {code})");
    };
    let Ok(r) = serde_json::from_str::<serde_json::Value>(&text) else {
        return format!(
            "{verdict}  {name:<24} unreadable report {}",
            report.display()
        );
    };
    let num = |path: &[&str]| -> f64 {
        let mut v = &r;
        for p in path {
            v = &v[*p];
        }
        v.as_f64().unwrap_or(0.0)
    };
    let expected = num(&["totals", "expected"]);
    let delivered = num(&["totals", "delivered"]);
    let pct = if expected > 0.0 {
        100.0 * delivered / expected
    } else {
        0.0
    };
    let failed: Vec<String> = r["expectations"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter(|e| e["ok"] == serde_json::Value::Bool(false))
                .filter_map(|e| e["name"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    format!(
        "{verdict}  {name:<24} delivered {pct:>6.2}%  lost {:>5}  p99 {:>8.2}ms  {:>8.0} msg/s  {:>5.1}s{}",
        num(&["totals", "lost"]),
        num(&["latency", "from_intended", "p99_us"]) / 1000.0,
        num(&["throughput", "deliver_per_s"]),
        num(&["run", "elapsed_s"]),
        if failed.is_empty() {
            String::new()
        } else {
            format!("  failed: {}", failed.join(", "))
        }
    )
}

/// Python packages the tests drive: an MQTT client for the interoperability test and
/// HdrHistogram's Python implementation, which reads the runs' interval logs.
const PYTHON_PACKAGES: [(&str, &str); 2] = [
    ("paho.mqtt.client", "paho-mqtt>=2,<3"),
    ("hdrh.log", "hdrhistogram>=0.10,<1"),
];

/// Install the Python packages the tests need, when missing.
fn ensure_python_packages() -> anyhow::Result<()> {
    for (module, requirement) in PYTHON_PACKAGES {
        let have = Command::new("python3")
            .args(["-c", &format!("import {module}")])
            .stderr(Stdio::null())
            .status()
            .context("python3 is needed by the tests; install it first")?
            .success();
        if have {
            continue;
        }
        eprintln!("xtask: installing {requirement} for the tests");
        let status = Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", requirement])
            .status()
            .context("running pip")?;
        if !status.success() {
            bail!("pip could not install {requirement} ({status})");
        }
    }
    Ok(())
}

/// Install mosquitto (the external broker of `crates/cli/tests/mosquitto.rs`) when missing,
/// from Debian's packages. The tests start it themselves on a loopback port of their own.
fn ensure_mosquitto() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let found = std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
        .any(|d| d.join("mosquitto").is_file());
    if found || std::env::var_os("FLEETBENCH_MOSQUITTO").is_some() {
        return Ok(());
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0"));
    if !root {
        // Never sudo on someone's machine: say what is missing and how to get it.
        bail!(
            "the tests need mosquitto (Debian's package), which is not installed; install it \
             (`sudo apt-get install mosquitto`, or set FLEETBENCH_MOSQUITTO to a mosquitto \
             binary) and run the tests again"
        );
    }
    eprintln!("xtask: installing mosquitto for the tests (apt-get)");
    let apt = |args: &[&str]| -> anyhow::Result<bool> {
        Ok(Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?
            .success())
    };
    if !apt(&["install", "-y", "-qq", "mosquitto"])? {
        // A fresh machine may not have its package lists yet.
        if !(apt(&["update", "-qq"])? && apt(&["install", "-y", "-qq", "mosquitto"])?) {
            bail!("apt-get could not install mosquitto; install it and run the tests again");
        }
    }
    Ok(())
}

/// Run the whole suite, echo cargo's output, and close with one total line over every test
/// binary (cargo's own last line speaks only of the last binary).
fn test() -> anyhow::Result<()> {
    ensure_python_packages()?;
    ensure_mosquitto()?;
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut child = Command::new(&cargo_bin)
        .args(["test", "--workspace", "--all-targets"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test's output")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_before(rest, "passed");
            failed += count_before(rest, "failed");
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    println!("tests: {passed} passed, {failed} failed");
    if !status.success() {
        bail!("cargo test failed ({status})");
    }
    if passed == 0 {
        bail!("cargo test ran no test");
    }
    Ok(())
}

/// In "ok. 3 passed; 0 failed; ...", the number before `word`.
fn count_before(text: &str, word: &str) -> u64 {
    text.split(';')
        .find_map(|part| {
            let part = part.trim();
            let part = part.rsplit(". ").next().unwrap_or(part);
            part.strip_suffix(word).and_then(|n| n.trim().parse().ok())
        })
        .unwrap_or(0)
}

fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    test()
}
