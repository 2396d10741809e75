//! The `fleetbench` command: a thin layer over the scenario, broker, fleet and metrics crates.
//!
//! Exit codes: 0 pass, 1 runtime error, 2 usage or scenario error, 3 expectations failed,
//! 130 interrupted (the partial report is still written).

mod broker_cmd;
mod broker_metrics;
mod check;
mod child_broker;
mod compare_cmd;
pub mod deploy;
mod deploy_check;
mod environment;
mod inputs;
mod limits;
mod live_metrics;
mod logging;
mod merge_cmd;
mod outputs;
mod progress;
mod report_cmd;
mod restart_cmd;
mod run;
pub mod run_env;
mod running_broker;
mod search;
mod stop;

use std::path::PathBuf;

pub use search::{Knob, SearchArgs};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "fleetbench",
    version,
    about = "Simulate fleets of MQTT devices and load-test the broker they talk to",
    long_about = "Simulate fleets of MQTT devices and load-test the broker they talk to.\n\n\
        A scenario file (TOML) describes device groups, observers and expectations. \
        `fleetbench run` starts an embedded broker (or targets yours), drives the fleet, \
        accounts for every message and judges the run.\n\n\
        Exit codes: 0 pass, 1 runtime error, 2 usage or scenario error, 3 expectations failed, \
        130 interrupted."
)]
pub struct Opts {
    /// More log output on stderr (-v info, -vv debug); RUST_LOG overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a scenario and report on it.
    Run(RunArgs),
    /// Find the highest load the broker sustains within the scenario's expectations.
    ///
    /// Steps up geometrically (x2) from --from until a step fails, bisects between the highest pass
    /// and the lowest failure to --tolerance, then repeats the answer once to confirm it (a failed
    /// repeat moves it down). Each step warms up (--settle, not judged) and is judged over
    /// --window: the scenario's [expect] (with --target on top), and a backlog that grows,
    /// deliveries below what was offered or a p99 that climbs through the window fail it; a step
    /// clearly past the limit ends early. A step that failed because the generator fell behind is
    /// marked generator-limited, and an answer resting on one says so (docs/SEARCH.md).
    ///
    /// Exit codes: 0 an answer held, 3 none held or the generator was the limit, 130 interrupted
    /// (the result so far is still printed and written), 2 bad input, 1 runtime error.
    Search(SearchArgs),
    /// Validate scenario files without connecting to anything.
    Check {
        /// Scenario files to validate.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Also check that each scenario splits into N shards whose observers hear only their
        /// own devices (`{shard}` in topics and filters; README, "Running on Kubernetes").
        #[arg(long, value_name = "N", default_value_t = 1, value_parser = run_env::parse_count)]
        shards: u32,
    },
    /// Run the embedded broker in the foreground until Ctrl-C.
    Broker(BrokerArgs),
    /// Compare two reports of the same scenario; exit 3 when the second regressed.
    ///
    /// Counts (lost, duplicates, errors) compare exactly. Timing figures compare as the median
    /// of each report's runs, in units of the calibration workload each run measured on its
    /// machine, within the scenario's [regression] tolerances.
    Compare(CompareArgs),
    /// Merge reports of one scenario exactly (counts summed, histograms added, expectations
    /// judged again): shards of one run, or repeats that `compare` treats as samples.
    Merge(MergeArgs),
    /// Turn a saved report into something to look at.
    #[command(subcommand)]
    Report(ReportCommand),
    /// Print the JSON Schema of a file format (for editors and validators).
    Schema {
        #[arg(value_enum)]
        of: SchemaOf,
    },
    /// Scenario authoring help.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Print what runs a scenario past one machine.
    #[command(subcommand)]
    Deploy(DeployCommand),
    /// Print a shell completion script: `fleetbench completions bash > ~/.local/share/bash-completion/completions/fleetbench`
    /// (zsh: into a directory of your $fpath as `_fleetbench`; fish:
    /// `~/.config/fish/completions/fleetbench.fish`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScenarioCommand {
    /// Print the JSON Schema of scenario files (also in docs/scenario.schema.json). Editors
    /// with a TOML language server complete and check scenarios with it; `fleetbench check`
    /// still has the last word (it also checks what a schema cannot, such as filters that
    /// match no device).
    Schema,
}

#[derive(Debug, Subcommand)]
pub enum ReportCommand {
    /// Write REPORT (a JSON report of `run` or `merge`) as one self-contained HTML page:
    /// the verdict, the ledger, rates, devices and latency percentiles over time, the latency
    /// spectrum, the tables and the findings. With --baseline, both runs are overlaid and
    /// compared as `fleetbench compare` does.
    Html(HtmlArgs),
}

#[derive(Debug, Args)]
pub struct HtmlArgs {
    /// The report to show: of `run` or `merge`, or the result of `search` (its knee curves and
    /// steps).
    pub report: PathBuf,
    /// An earlier report of the same scenario to overlay and compare against (for a search:
    /// another search to overlay, such as another broker or before an upgrade).
    #[arg(long, value_name = "OLD.json")]
    pub baseline: Option<PathBuf>,
    /// Where to write the page.
    #[arg(short = 'o', long = "output", value_name = "PATH")]
    pub output: PathBuf,
}

#[derive(Debug, Subcommand)]
pub enum DeployCommand {
    /// Print Kubernetes manifests (for `kubectl apply -f -`) that run SCENARIO as N shards
    /// against one broker: the scenario as a ConfigMap and an Indexed Job whose pod i runs
    /// shard i, each printing its report in its log for `fleetbench merge --shards`.
    Kubernetes(KubernetesArgs),
}

#[derive(Debug, Args)]
pub struct KubernetesArgs {
    /// The scenario file (TOML); its observers must split by `{shard}` (see `check --shards`).
    pub scenario: PathBuf,
    /// Pods, one shard each.
    #[arg(long, value_name = "N", value_parser = run_env::parse_count)]
    pub shards: u32,
    /// The fleetbench container image (see the Dockerfile), e.g. registry.example/fleetbench:0.1.
    #[arg(long)]
    pub image: String,
    /// The broker every shard tests (default: the scenario's external broker); no credentials
    /// in it.
    #[arg(long, value_name = "URL")]
    pub broker_url: Option<String>,
    /// The broker user name.
    #[arg(long, value_name = "NAME")]
    pub broker_username: Option<String>,
    /// A Secret in the Job's namespace whose key `password` holds the broker password; it
    /// reaches the pods as FLEETBENCH_BROKER_PASSWORD and is never in the manifests.
    #[arg(long, value_name = "SECRET")]
    pub password_secret: Option<String>,
    /// Name of the Job and prefix of the ConfigMap [default: fleetbench-<scenario name>].
    #[arg(long)]
    pub name: Option<String>,
    /// Namespace of the Job and ConfigMap (default: kubectl's current one).
    #[arg(long)]
    pub namespace: Option<String>,
    /// The shards start this long after the manifests are printed: time to apply them and
    /// for the pods to come up.
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = parse_timeout, conflicts_with = "start_at")]
    pub start_in: std::time::Duration,
    /// The shards start at this instant instead (RFC 3339).
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// The baseline report (JSON).
    pub baseline: PathBuf,
    /// The report to judge against it.
    pub now: PathBuf,
    /// Output format: a table, Markdown (CI job summaries, PR comments) or JSON.
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Relative latency increase tolerated (0.25 = +25%; 0.0 to 10.0), overriding the
    /// scenario's `[regression] latency`.
    #[arg(long, value_name = "SHARE", value_parser = parse_tolerance)]
    pub latency_tolerance: Option<f64>,
    /// Relative throughput decrease tolerated (0.10 = -10%; 0.0 to 10.0), overriding the
    /// scenario's `[regression] throughput`.
    #[arg(long, value_name = "SHARE", value_parser = parse_tolerance)]
    pub throughput_tolerance: Option<f64>,
}

#[derive(Debug, Args)]
pub struct MergeArgs {
    /// Reports of one scenario: the shards of one run (--shards) or repeated runs (default).
    /// Each is a JSON report, or a log holding the report lines of `run --report -` (such as
    /// `kubectl logs` of a Job's pods); `-` reads stdin.
    #[arg(required = true)]
    pub reports: Vec<PathBuf>,
    /// Where to write the merged report.
    #[arg(short, long, value_name = "PATH")]
    pub output: PathBuf,
    /// The reports are shards that ran at the same time (rates add up); otherwise repeats run
    /// one after the other (counts add up, each run stays a sample for comparisons).
    #[arg(long)]
    pub shards: bool,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum SchemaOf {
    /// The JSON report of `run --report` and `merge` (also in docs/report.schema.json).
    Report,
    /// Scenario files (also in docs/scenario.schema.json).
    Scenario,
    /// The result of `search --report` (also in docs/search.schema.json).
    Search,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    Json,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (TOML).
    pub scenario: PathBuf,
    /// Write the JSON report here (also when the run is interrupted) [env: FLEETBENCH_REPORT].
    #[arg(long, value_name = "PATH")]
    pub report: Option<PathBuf>,
    /// Write the HdrHistogram interval log here (default: the report's path with .hlog): every
    /// latency distribution, one interval per snapshot, for HdrHistogram's own tools.
    #[arg(long, value_name = "PATH")]
    pub hlog: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page here (charts over time, the
    /// latency spectrum, every table; it loads nothing from the network). `fleetbench report
    /// html` makes one from any saved report.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Serve live metrics for Prometheus at http://ADDR/metrics (OpenMetrics text): devices
    /// connected, messages sent, delivered, lost, duplicated and in flight, connect failures,
    /// late sends, latency histograms. ADDR is host:port, or a port alone on 127.0.0.1.
    #[arg(long, value_name = "ADDR", value_parser = live_metrics::parse_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// Keep serving the metrics this long after the run, so that a scrape takes its final
    /// figures (give at least your scrape interval).
    #[arg(long, value_name = "DURATION", value_parser = live_metrics::parse_linger, requires = "metrics_listen")]
    pub metrics_linger: Option<std::time::Duration>,
    /// Run only shard I of N of every device group (e.g. 0/4) [env: FLEETBENCH_SHARD].
    #[arg(long, value_name = "I/N", value_parser = parse_shard)]
    pub shard: Option<fleetbench_scenario::Shard>,
    /// Run shard JOB_COMPLETION_INDEX of N (the pod's index in a Kubernetes Indexed Job), so
    /// that one pod template serves every shard [env: FLEETBENCH_SHARDS].
    #[arg(long, value_name = "N", value_parser = run_env::parse_count, conflicts_with = "shard")]
    pub shards: Option<u32>,
    /// Start the fleet at this instant (RFC 3339, e.g. 2026-11-27T23:30:00Z), after the
    /// broker answers: the shards of one run start together, and each report says how late its
    /// shard started. A time already past starts at once [env: FLEETBENCH_START_AT].
    #[arg(long, value_name = "TIME")]
    pub start_at: Option<String>,
    /// Target this broker instead of the scenario's [broker] (mqtt://, mqtts://, ws://, wss://;
    /// no credentials in it). The password comes from FLEETBENCH_BROKER_PASSWORD only
    /// [env: FLEETBENCH_BROKER_URL].
    #[arg(long, value_name = "URL")]
    pub broker_url: Option<String>,
    /// User name for --broker-url [env: FLEETBENCH_BROKER_USERNAME].
    #[arg(long, value_name = "NAME")]
    pub broker_username: Option<String>,
    /// Do not open the live monitor even when stdout is a terminal (it never opens without one).
    #[arg(long)]
    pub no_tui: bool,
    /// Do not print the progress line on stderr (shown when the monitor is off).
    #[arg(long)]
    pub quiet: bool,
    /// Seconds between progress lines on stderr.
    #[arg(long, default_value_t = 5.0, value_name = "SECONDS", value_parser = parse_seconds)]
    pub progress_every: f64,
    /// How long the first connection to the broker may take (TCP, TLS and CONNACK) before the
    /// run ends with the cause, exit code 1: a broker that refuses, does not answer or does not
    /// exist is named within this time.
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_timeout)]
    pub connect_timeout: std::time::Duration,
    /// Run the devices and observers on N event loops of their own (a thread each, with its own
    /// timer), instead of the fleet's multi-threaded runtime: 17-33% less generator CPU per
    /// message, but a loop's clients wait whenever its thread does, so a busy machine shows
    /// in their delivery latency (work stealing hides it). Try 1 at IoT rates. At most 256 (a
    /// loop holds three descriptors of its own beside its clients' sockets).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=256))]
    pub loops: Option<u16>,
    /// Test only: observers spend this many microseconds (busy) on each delivery (a slower
    /// receive path, to show that the regression gate catches it).
    #[arg(long, hide = true, value_name = "US")]
    pub fault_receive_delay_us: Option<u64>,
}

#[derive(Debug, Args)]
pub struct BrokerArgs {
    /// Address to listen on; give it several times for several listeners (port 0: a free
    /// port, which the banner names).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:1883")]
    pub listen: Vec<std::net::SocketAddr>,
    /// Require this username (with --password-env) from every client.
    #[arg(long, requires = "password_env")]
    pub username: Option<String>,
    /// Environment variable holding the password for --username.
    #[arg(long, value_name = "VAR", requires = "username")]
    pub password_env: Option<String>,
    /// Listen on a non-loopback address without credentials (anyone who can reach it may
    /// publish and subscribe).
    #[arg(long)]
    pub allow_anonymous: bool,
    /// Leave TCP_NODELAY off on accepted sockets (to measure what Nagle's algorithm costs).
    #[arg(long)]
    pub no_tcp_nodelay: bool,
    /// Connections the broker accepts in all.
    #[arg(long, default_value_t = 20_000)]
    pub max_connections: usize,
    /// Serve MQTT 5 clients instead of MQTT 3.1.1 ones (rumqttd serves one version per
    /// listener).
    #[arg(long)]
    pub mqtt5: bool,
    /// Messages kept per subscription filter, in MiB as rumqttd counts them (topic, payload
    /// and 4 bytes each; about 2.7 times that in memory): the broker's memory bound beyond its
    /// connections. A subscriber further behind than that loses messages.
    #[arg(long, value_name = "MIB", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=65_536))]
    pub filter_log_mib: u32,
    /// Serve the broker's figures for Prometheus at http://ADDR/metrics (OpenMetrics text):
    /// connections per listener, rumqttd's panics and restarted listeners, the process's CPU
    /// and memory. ADDR is host:port, or a port alone on 127.0.0.1.
    #[arg(long, value_name = "ADDR", value_parser = live_metrics::parse_listen)]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(0.1..=86_400.0).contains(&v) {
        return Err(format!("{v}: expected between 0.1 and 86400 seconds"));
    }
    Ok(v)
}

fn parse_timeout(s: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(s.trim())
        .map_err(|e| format!("{s:?} is not a duration ({e}); expected such as \"10s\""))?;
    if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(600) {
        return Err(format!("{s:?}: expected between 100ms and 10m"));
    }
    Ok(d)
}

/// A regression tolerance from the command line, held to what a scenario's `[regression]`
/// table takes.
fn parse_tolerance(s: &str) -> Result<f64, String> {
    let v: f64 = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is not a number; expected such as 0.25 (25%)"))?;
    fleetbench_scenario::Regression::tolerance(v)
}

pub(crate) fn parse_shard(s: &str) -> Result<fleetbench_scenario::Shard, String> {
    let (i, n) = s
        .split_once('/')
        .ok_or_else(|| format!("{s:?}: expected I/N, such as 0/4"))?;
    let index: u32 = i
        .trim()
        .parse()
        .map_err(|_| format!("{i:?} is not a shard index"))?;
    let count: u32 = n
        .trim()
        .parse()
        .map_err(|_| format!("{n:?} is not a shard count"))?;
    if count == 0 || index >= count {
        return Err(format!("shard {index}/{count}: expected 0 <= I < N"));
    }
    Ok(fleetbench_scenario::Shard { index, count })
}

/// How a command ended, as an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Pass = 0,
    RuntimeError = 1,
    Usage = 2,
    ExpectationsFailed = 3,
    Interrupted = 130,
}

/// An error in what the user gave us (exit code 2), as opposed to one at run time.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Run a parsed command line and turn its result into an exit code.
pub fn main_with(opts: Opts) -> ExitCode {
    let to_file = match &opts.command {
        Command::Run(args) => run::wants_monitor(args),
        Command::Search(args) => search::wants_monitor(args),
        _ => false,
    };
    let log_file = logging::init(opts.verbose, to_file);
    let outcome = match execute(opts, log_file) {
        Ok(o) => o,
        Err(e) => {
            let usage = e.downcast_ref::<UsageError>().is_some();
            eprintln!("error: {e:#}");
            if usage {
                Outcome::Usage
            } else {
                Outcome::RuntimeError
            }
        }
    };
    ExitCode::from(outcome as u8)
}

fn execute(opts: Opts, log_file: Option<logging::LogFile>) -> anyhow::Result<Outcome> {
    match opts.command {
        Command::Run(args) => {
            // First of all, so that a signal at any instant ends the run with its report.
            let stop = stop::Stop::install("stopping the fleet and writing the report")?;
            run::run(args, stop, log_file)
        }
        Command::Search(args) => {
            let stop = stop::Stop::install("ending the search with what it found")?;
            search::search(args, stop)
        }
        Command::Check { files, shards } => check::check(&files, shards),
        Command::Broker(args) => {
            let stop = stop::Stop::install("stopping the broker")?;
            broker_cmd::broker(args, stop)
        }
        Command::Completions { shell } => {
            let mut cmd = <Opts as clap::CommandFactory>::command();
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd, "fleetbench", &mut script);
            say(String::from_utf8_lossy(&script));
            Ok(Outcome::Pass)
        }
        Command::Compare(args) => compare_cmd::run(args),
        Command::Merge(args) => {
            stop::end_on_signal()?;
            merge_cmd::run(args)
        }
        Command::Report(ReportCommand::Html(args)) => {
            stop::end_on_signal()?;
            report_cmd::html(args)
        }
        Command::Schema { of } => print_schema(of),
        Command::Scenario(ScenarioCommand::Schema) => print_schema(SchemaOf::Scenario),
        Command::Deploy(DeployCommand::Kubernetes(args)) => deploy::kubernetes(args),
    }
}

fn print_schema(of: SchemaOf) -> anyhow::Result<Outcome> {
    let schema = match of {
        SchemaOf::Report => fleetbench_report::Report::json_schema(),
        SchemaOf::Scenario => serde_json::to_value(fleetbench_scenario::json_schema())?,
        SchemaOf::Search => fleetbench_report::search::SearchReport::json_schema(),
    };
    say(format_args!("{}\n", serde_json::to_string_pretty(&schema)?));
    Ok(Outcome::Pass)
}

/// Print results on stdout. A reader that went away (`fleetbench run ... | head`) is no reason
/// to fail or panic: what cannot be written is dropped.
pub(crate) fn say(text: impl std::fmt::Display) {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    let _ = write!(out, "{text}").and_then(|()| out.flush());
}
