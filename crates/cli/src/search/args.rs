//! `fleetbench search`'s command line, and what it makes of the scenario: the targets, the
//! range, and every problem with either named before anything connects.

use std::path::{Path, PathBuf};
use std::time::Duration;

use fleetbench_scenario::Scenario;

use super::knob::Knob;
use crate::UsageError;

/// `fleetbench search`'s flags (the command's help is on [`crate::Command::Search`]).
#[derive(Debug, clap::Args)]
pub struct SearchArgs {
    /// The scenario file (TOML): its load at one constant level, its [expect] the target.
    pub scenario: PathBuf,
    /// What to vary: rate (msg/s per device of the first group; the others keep their ratio),
    /// devices (over all groups) or subscribers (observers over all observer groups).
    #[arg(long, value_enum)]
    pub vary: Knob,
    /// The first value tried [default: the scenario's own].
    #[arg(long, value_name = "VALUE")]
    pub from: Option<f64>,
    /// The highest value tried [default: 64 times --from].
    #[arg(long, value_name = "VALUE")]
    pub to: Option<f64>,
    /// Stop bisecting when the highest pass and the lowest failure are this close, as a share
    /// of the pass (5%, 0.05).
    #[arg(long, default_value = "5%", value_parser = parse_share)]
    pub tolerance: f64,
    /// Wall-clock limit of the whole search; when it is spent the result says the bracket
    /// reached so far.
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub budget: Duration,
    /// An expectation to judge each step by, on top of (or instead of) the scenario's, as in
    /// its [expect] table: --target p99=10ms --target max_lost=0.
    #[arg(long = "target", value_name = "NAME=VALUE")]
    pub targets: Vec<String>,
    /// Each step's warm-up, after its devices connected, not judged.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub settle: Duration,
    /// Each step's judged window.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub window: Duration,
    /// The pause after a failed step, for the broker to drain.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub rest: Duration,
    /// The broker's process id (an external broker on this machine): its CPU goes into each
    /// step's row.
    #[arg(long, value_name = "PID")]
    pub broker_pid: Option<u32>,
    /// Write the search result (JSON, `fleetbench schema search`) here, every step's report in it.
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write the knee curves and the table of steps as one HTML page here.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Target this broker instead of the scenario's [broker] (as `run --broker-url`)
    /// [env: FLEETBENCH_BROKER_URL].
    #[arg(long, value_name = "URL")]
    pub broker_url: Option<String>,
    /// User name for --broker-url [env: FLEETBENCH_BROKER_USERNAME].
    #[arg(long, value_name = "NAME")]
    pub broker_username: Option<String>,
    /// Serve the step under way for Prometheus at http://ADDR/metrics, as `run` does, each
    /// figure labelled with `step` ("3: rate=40"). ADDR is host:port, or a port on 127.0.0.1.
    #[arg(long, value_name = "ADDR", value_parser = crate::live_metrics::parse_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Do not open the live monitor for each step even when stdout is a terminal.
    #[arg(long)]
    pub no_tui: bool,
    /// Do not print progress lines on stderr (shown when the monitor is off).
    #[arg(long)]
    pub quiet: bool,
    /// How long the first connection to the broker may take before the search ends with the
    /// cause (exit 1).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub connect_timeout: Duration,
}

/// The shortest judged window: enough ticks for a trend.
const MIN_WINDOW: Duration = Duration::from_secs(2);

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); expected such as \"10s\""))
}

/// A share as `5%` or `0.05`, above 0 and below 1.
fn parse_share(s: &str) -> Result<f64, String> {
    let t = s.trim();
    let v = match t.strip_suffix('%') {
        Some(p) => p.trim().parse::<f64>().map(|v| v / 100.0),
        None => t.parse::<f64>(),
    }
    .map_err(|_| format!("{s:?} is not a share; expected such as 5% or 0.05"))?;
    if !(v > 0.0 && v < 1.0) {
        return Err(format!("{s:?}: expected above 0% and below 100%"));
    }
    Ok(v)
}

/// The scenario's text with `--target NAME=VALUE`s written into its [expect] table.
pub(crate) fn with_targets(path: &Path, text: &str, targets: &[String]) -> anyhow::Result<String> {
    if targets.is_empty() {
        return Ok(text.to_string());
    }
    let usage = |m: String| anyhow::Error::from(UsageError(m));
    let mut doc: toml::Table =
        toml::from_str(text).map_err(|e| usage(format!("{}: {e}", path.display())))?;
    let expect = doc
        .entry("expect")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(expect) = expect else {
        return Err(usage(format!(
            "{}: `expect` is not a table",
            path.display()
        )));
    };
    for t in targets {
        let Some((name, value)) = t.split_once('=') else {
            return Err(usage(format!(
                "--target {t:?}: expected NAME=VALUE, such as p99=10ms or max_lost=0"
            )));
        };
        let value = value.trim();
        // Numbers as numbers, anything else (durations) as text, as the file would say them.
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .filter(|v| !v.is_str())
            .unwrap_or_else(|| toml::Value::String(value.to_string()));
        expect.insert(name.trim().to_string(), parsed);
    }
    toml::to_string(&doc).map_err(|e| usage(format!("--target: {e}")))
}

/// Every expectation the steps are judged by, as `name <= limit` (empty: there are none).
pub(crate) fn targets_of(s: &Scenario) -> Vec<String> {
    let Ok(serde_json::Value::Object(e)) = serde_json::to_value(&s.expect) else {
        return Vec::new();
    };
    e.into_iter()
        .filter(|(_, v)| !v.is_null())
        .map(|(k, v)| match v {
            serde_json::Value::String(s) => format!("{k} {s}"),
            other => format!("{k} {other}"),
        })
        .collect()
}

/// The range to search, checked: positive, `from` not above `to`.
pub(crate) fn range(args: &SearchArgs, s: &Scenario) -> Result<(f64, f64), UsageError> {
    let from = args.from.unwrap_or_else(|| args.vary.base(s));
    let to = args.to.unwrap_or(from * 64.0);
    let knob = args.vary.name();
    if !from.is_finite() || from <= 0.0 {
        return Err(UsageError(format!(
            "--from {from}: the {knob} to start from must be above 0"
        )));
    }
    if !to.is_finite() || from > to {
        return Err(UsageError(format!(
            "--from {from} is above --to {to}; give a range that rises"
        )));
    }
    if args.vary.whole() && from < 1.0 {
        return Err(UsageError(format!("--from {from}: at least 1 {knob}")));
    }
    if args.vary.whole() && to > f64::from(u32::MAX) {
        return Err(UsageError(format!(
            "--to {to}: more {knob} than one run can have"
        )));
    }
    if args.window < MIN_WINDOW {
        return Err(UsageError(format!(
            "--window {}: a step is judged on at least {} (its trend needs ticks)",
            humantime::format_duration(args.window),
            humantime::format_duration(MIN_WINDOW)
        )));
    }
    Ok((from, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_written_into_the_expect_table() {
        let text = "name = \"t\"\n[expect]\nmax_lost = 0\np99 = \"50ms\"\n";
        let t = with_targets(
            Path::new("t.toml"),
            text,
            &["p99=10ms".into(), "max_duplicates = 0".into()],
        )
        .expect("targets apply");
        let doc: toml::Table = toml::from_str(&t).expect("toml");
        let e = doc["expect"].as_table().expect("table");
        assert_eq!(
            e["p99"].as_str(),
            Some("10ms"),
            "the command line overrides"
        );
        assert_eq!(e["max_duplicates"].as_integer(), Some(0));
        assert_eq!(e["max_lost"].as_integer(), Some(0), "the file's own stay");
        let e = with_targets(Path::new("t.toml"), text, &["p99".into()]).expect_err("no value");
        assert!(e.to_string().contains("NAME=VALUE"), "{e}");
    }

    #[test]
    fn shares_read_as_percent_or_fraction() {
        assert_eq!(parse_share("5%"), Ok(0.05));
        assert_eq!(parse_share("0.1"), Ok(0.1));
        assert!(parse_share("0").is_err());
        assert!(parse_share("abc").is_err());
    }
}
