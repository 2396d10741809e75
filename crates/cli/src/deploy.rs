//! `fleetbench deploy kubernetes`: the manifests that run one scenario as N shards on a cluster,
//! printed for `kubectl apply -f -`.
//!
//! A ConfigMap holds the scenario file; an Indexed Job runs pod i as shard i of N (Kubernetes
//! sets `JOB_COMPLETION_INDEX` in each pod; `run --shards N` reads it), all against one broker
//! and from one common start. Each pod prints its report as one line of its log (`--report -`),
//! so that collecting the shards needs nothing but `kubectl logs`, and `fleetbench merge
//! --shards` reads that log as it comes. Requests are sized from the scenario: devices and
//! messages per second per shard, times what a device and a message measurably cost
//! (docs/PERFORMANCE.md, "Past one machine").

use std::time::{Duration, SystemTime};

use anyhow::Context;
use fleetbench_scenario::{BrokerTarget, Plan, Scenario, Shard};
use yaml_rust2::yaml::Hash;
use yaml_rust2::{Yaml, YamlEmitter};

use crate::run_env::{self, BROKER_PASSWORD, BROKER_URL, BROKER_USERNAME, START_AT};
use crate::{KubernetesArgs, Outcome, UsageError};

/// Where the scenario's ConfigMap is mounted in each pod.
pub const SCENARIO_DIR: &str = "/etc/fleetbench";
/// The scenario's key in the ConfigMap (and its file name in [`SCENARIO_DIR`]).
pub const SCENARIO_FILE: &str = "scenario.toml";

/// Resident memory of a shard before its first client: runtime, histograms, calibration (a
/// 10-device shard peaks at 21 MiB), with room.
const BASE_MEMORY_MIB: f64 = 64.0;
/// Resident memory per client of a shard (device or observer). Measured on 4 shards of 4,950
/// devices against one broker process (docs/PERFORMANCE.md, "Past one machine"): 60-87 MiB
/// peak per shard, 12.5-17.6 KiB per client with the base included.
const MEMORY_PER_CLIENT_KIB: f64 = 16.0;
/// Generator CPU per delivered message at IoT rates, the observer's share of the work included:
/// 52-58 us measured on the same runs (CPU over the whole run, connecting included).
const CPU_PER_MESSAGE_US: f64 = 60.0;
/// Generator CPU per client of keep-alives and timers alone, in millicores.
const CPU_PER_CLIENT_MILLICORES: f64 = 0.01;
/// The smallest CPU request (calibration and start-up need a core's share).
const MIN_CPU_MILLICORES: f64 = 250.0;
/// Resident memory a shard adds per hour of its run, whatever its rate: the run's timeline and,
/// at its end, every tick's latency intervals read back (encoded) for the report's series and
/// fault rows; 4 ticks a second. Measured at 9-13 MiB an hour (docs/PERFORMANCE.md, "Runs that
/// last"), with room.
const MEMORY_PER_HOUR_MIB: f64 = 16.0;
/// The interval log is spooled to a file in /tmp (an emptyDir: the root file system is
/// read-only): about 17 MiB an hour; its volume's limit, with room.
const SPOOL_BASE_MIB: u64 = 64;
const SPOOL_PER_HOUR_MIB: f64 = 32.0;

/// Connections a pod can open to one broker address with the default source-port range
/// (`net.ipv4.ip_local_port_range`, 32768-60999).
const MAX_CLIENTS_PER_POD: usize = 28_232;

/// What one shard needs, for the pod's requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ShardSize {
    pub devices: usize,
    pub clients: usize,
    /// Deliveries per second at the load's peak.
    pub peak_messages_per_s: f64,
    pub cpu_millicores: u64,
    /// Base, per client and per hour of the run (see the constants).
    pub memory_mib: u64,
    /// The size limit of the pod's /tmp, where the run spools its interval log.
    pub spool_mib: u64,
}

/// The largest shard of `scenario` split into `count`.
pub fn shard_size(scenario: &Scenario, count: u32) -> ShardSize {
    let shape = scenario.load_shape();
    let peak = shape
        .phases()
        .iter()
        .map(|p| p.rate.max(p.rate_end))
        .fold(0.0, f64::max);
    // Shards differ by at most one device per group: the first and the last tell the largest.
    let count = count.max(1);
    let first = Plan::build(scenario, Shard { index: 0, count });
    let biggest = match count {
        1 => first,
        _ => {
            let last = Plan::build(
                scenario,
                Shard {
                    index: count - 1,
                    count,
                },
            );
            if last.devices.len() > first.devices.len() {
                last
            } else {
                first
            }
        }
    };
    let clients = biggest.devices.len() + biggest.observers.len() + biggest.controllers.len();
    let peak_messages_per_s = biggest.expected_deliveries_per_s() * peak;
    let cpu =
        peak_messages_per_s * CPU_PER_MESSAGE_US / 1e3 + clients as f64 * CPU_PER_CLIENT_MILLICORES;
    let hours = (scenario.duration + scenario.drain_timeout).as_secs_f64() / 3600.0;
    let memory = BASE_MEMORY_MIB
        + clients as f64 * MEMORY_PER_CLIENT_KIB / 1024.0
        + hours * MEMORY_PER_HOUR_MIB;
    ShardSize {
        devices: biggest.devices.len(),
        clients,
        peak_messages_per_s,
        cpu_millicores: cpu.max(MIN_CPU_MILLICORES).ceil() as u64,
        memory_mib: memory.ceil() as u64,
        spool_mib: SPOOL_BASE_MIB + (hours * SPOOL_PER_HOUR_MIB).ceil() as u64,
    }
}

/// Print the manifests.
pub(crate) fn kubernetes(args: KubernetesArgs) -> anyhow::Result<Outcome> {
    let (scenario, text) = crate::check::parse_file(&args.scenario)?;
    fleetbench_scenario::check_sharding(&scenario, args.shards)
        .map_err(|e| UsageError(format!("{}: {e}", args.scenario.display())))?;
    crate::deploy_check::arguments(&args, &scenario).map_err(UsageError)?;
    let broker_url = broker_url(&args, &scenario).map_err(UsageError)?;
    let start_at = match &args.start_at {
        Some(t) => {
            let at =
                run_env::parse_rfc3339(t).map_err(|e| UsageError(format!("--start-at: {e}")))?;
            crate::deploy_check::start_ahead(at, SystemTime::now()).map_err(UsageError)?;
            at
        }
        None => round_up(SystemTime::now() + args.start_in),
    };
    let name = match &args.name {
        Some(n) => n.clone(),
        None => format!("fleetbench-{}", scenario.name),
    };
    let name = dns_label(&name).map_err(UsageError)?;
    let size = shard_size(&scenario, args.shards);
    if size.clients > MAX_CLIENTS_PER_POD {
        eprintln!(
            "warning: a pod would hold {} connections to one broker address, and Linux gives a \
             pod about {MAX_CLIENTS_PER_POD} source ports per destination (32768-60999): give \
             more --shards",
            size.clients
        );
    }
    let job = Job {
        args: &args,
        name: &name,
        broker_url: &broker_url,
        start_at: run_env::format_rfc3339(start_at),
        size,
    };
    let mut out = job.comments();
    for doc in [job.config_map(&text), job.job()] {
        out.push_str(&emit(&doc)?);
        out.push('\n');
    }
    crate::say(out);
    Ok(Outcome::Pass)
}

/// One YAML document (starting with "---", ending without a newline) that reads back as `doc`:
/// block literals where they read back whole (the scenario's text stays readable), quoted
/// strings where they would not (a text whose first line is indented needs more than the
/// emitter writes).
fn emit(doc: &Yaml) -> anyhow::Result<String> {
    for multiline in [true, false] {
        let mut text = String::new();
        let mut emitter = YamlEmitter::new(&mut text);
        emitter.multiline_strings(multiline);
        emitter.dump(doc).context("writing YAML")?;
        let back = yaml_rust2::YamlLoader::load_from_str(&text).ok();
        if back
            .as_deref()
            .is_some_and(|b| b.len() == 1 && b[0] == *doc)
        {
            return Ok(text);
        }
    }
    anyhow::bail!("the manifests do not read back as written YAML; this is a fleetbench bug")
}

/// The broker every shard tests, and a check that the pods can reach it with what the
/// manifests give them: only the scenario file travels (certificate files do not), and a
/// password only through `--password-secret`.
fn broker_url(args: &KubernetesArgs, scenario: &Scenario) -> Result<String, String> {
    let external = match &scenario.broker {
        BrokerTarget::External(x) => Some(x.as_ref()),
        BrokerTarget::Embedded(_) => None,
    };
    if let Some(x) = external {
        let t = &x.tls;
        if let Some(f) = [&t.ca_file, &t.client_cert, &t.client_key]
            .into_iter()
            .flatten()
            .next()
        {
            return Err(format!(
                "{}: {} names a file, and only the scenario file reaches the pods: use a broker \
                 certificate the system's CAs trust, or run the shards another way",
                f.at, f.field
            ));
        }
        if x.password_env.is_some() && args.password_secret.is_none() {
            return Err(format!(
                "the scenario reads the broker password from a variable the pods do not have: \
                 give --password-secret with a Secret that holds it (it reaches the pods as \
                 {BROKER_PASSWORD})"
            ));
        }
    }
    let username = args
        .broker_username
        .as_ref()
        .or(external.and_then(|x| x.username.as_ref()));
    if args.password_secret.is_some() && username.is_none() {
        return Err("--password-secret needs a user name: give --broker-username".into());
    }
    match (&args.broker_url, external) {
        (Some(url), _) => {
            fleetbench_scenario::external_url(url).map_err(|e| format!("--broker-url: {e}"))?;
            Ok(url.clone())
        }
        (None, Some(x)) => Ok(x.url_without_credentials()),
        (None, None) => Err(
            "the scenario uses the embedded broker, and each pod would test its \
                             own: give --broker-url with the broker every shard reaches"
                .into(),
        ),
    }
}

/// `t` rounded up to the next whole second.
fn round_up(t: SystemTime) -> SystemTime {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    SystemTime::UNIX_EPOCH + Duration::from_secs(since.as_secs() + 1)
}

/// A name Kubernetes takes for a Job and a ConfigMap: lower-case letters, digits and '-', at
/// most 52 characters (a Job's pods add a suffix to it), starting and ending alphanumeric.
fn dns_label(name: &str) -> Result<String, String> {
    let label: String = name
        .to_ascii_lowercase()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    let label = label.trim_matches('-').to_string();
    if label.is_empty() || label.len() > 52 {
        return Err(format!(
            "{name:?} does not make a Kubernetes name (1 to 52 letters, digits and '-'); give \
             --name"
        ));
    }
    Ok(label)
}

/// The manifests of one sharded run.
struct Job<'a> {
    args: &'a KubernetesArgs,
    name: &'a str,
    broker_url: &'a str,
    start_at: String,
    size: ShardSize,
}

fn s(v: impl Into<String>) -> Yaml {
    Yaml::String(v.into())
}

fn map<const N: usize>(entries: [(&str, Yaml); N]) -> Yaml {
    let mut h = Hash::new();
    for (k, v) in entries {
        h.insert(s(k), v);
    }
    Yaml::Hash(h)
}

fn int(v: u64) -> Yaml {
    Yaml::Integer(i64::try_from(v).unwrap_or(i64::MAX))
}

impl Job<'_> {
    fn metadata(&self, name: String) -> Yaml {
        let mut m = Hash::new();
        m.insert(s("name"), s(name));
        if let Some(ns) = &self.args.namespace {
            m.insert(s("namespace"), s(ns.clone()));
        }
        m.insert(s("labels"), self.labels());
        Yaml::Hash(m)
    }

    fn labels(&self) -> Yaml {
        map([
            ("app.kubernetes.io/name", s("fleetbench")),
            ("app.kubernetes.io/instance", s(self.name)),
        ])
    }

    fn config_map(&self, scenario_text: &str) -> Yaml {
        map([
            ("apiVersion", s("v1")),
            ("kind", s("ConfigMap")),
            ("metadata", self.metadata(format!("{}-scenario", self.name))),
            ("data", map([(SCENARIO_FILE, s(scenario_text))])),
        ])
    }

    fn job(&self) -> Yaml {
        let n = u64::from(self.args.shards);
        map([
            ("apiVersion", s("batch/v1")),
            ("kind", s("Job")),
            ("metadata", self.metadata(self.name.to_string())),
            (
                "spec",
                map([
                    ("completionMode", s("Indexed")),
                    ("completions", int(n)),
                    ("parallelism", int(n)),
                    // A failed shard is not run again (it would start late and count twice);
                    // the others finish, and the merge names the failed one.
                    ("backoffLimitPerIndex", int(0)),
                    (
                        "template",
                        map([
                            ("metadata", map([("labels", self.labels())])),
                            ("spec", self.pod_spec()),
                        ]),
                    ),
                ]),
            ),
        ])
    }

    fn pod_spec(&self) -> Yaml {
        map([
            ("restartPolicy", s("Never")),
            (
                "securityContext",
                map([
                    ("runAsNonRoot", Yaml::Boolean(true)),
                    ("runAsUser", int(65_532)),
                    ("seccompProfile", map([("type", s("RuntimeDefault"))])),
                ]),
            ),
            // Generators on different nodes, when the cluster has them: they do not share
            // cores, descriptors or source ports.
            (
                "topologySpreadConstraints",
                Yaml::Array(vec![map([
                    ("maxSkew", int(1)),
                    ("topologyKey", s("kubernetes.io/hostname")),
                    ("whenUnsatisfiable", s("ScheduleAnyway")),
                    ("labelSelector", map([("matchLabels", self.labels())])),
                ])]),
            ),
            ("containers", Yaml::Array(vec![self.container()])),
            (
                "volumes",
                Yaml::Array(vec![
                    map([
                        ("name", s("scenario")),
                        (
                            "configMap",
                            map([("name", s(format!("{}-scenario", self.name)))]),
                        ),
                    ]),
                    // The root file system is read-only: the interval log spools here.
                    map([
                        ("name", s("tmp")),
                        (
                            "emptyDir",
                            map([("sizeLimit", s(format!("{}Mi", self.size.spool_mib)))]),
                        ),
                    ]),
                ]),
            ),
        ])
    }

    fn container(&self) -> Yaml {
        let args = [
            "run".to_string(),
            format!("{SCENARIO_DIR}/{SCENARIO_FILE}"),
            "--shards".into(),
            self.args.shards.to_string(),
            "--report".into(),
            crate::outputs::STDOUT.into(),
            "--no-tui".into(),
            "--progress-every".into(),
            "10".into(),
        ];
        let size = &self.size;
        map([
            ("name", s("fleetbench")),
            ("image", s(self.args.image.clone())),
            ("args", Yaml::Array(args.into_iter().map(s).collect())),
            ("env", Yaml::Array(self.env())),
            (
                "resources",
                map([
                    (
                        "requests",
                        map([
                            ("cpu", s(format!("{}m", size.cpu_millicores))),
                            ("memory", s(format!("{}Mi", size.memory_mib))),
                        ]),
                    ),
                    // No CPU limit: a throttled generator sends late in bursts and measures
                    // itself. Memory is capped at twice what the shard should need.
                    (
                        "limits",
                        map([("memory", s(format!("{}Mi", size.memory_mib * 2)))]),
                    ),
                ]),
            ),
            (
                "securityContext",
                map([
                    ("allowPrivilegeEscalation", Yaml::Boolean(false)),
                    ("readOnlyRootFilesystem", Yaml::Boolean(true)),
                    ("capabilities", map([("drop", Yaml::Array(vec![s("ALL")]))])),
                ]),
            ),
            (
                "volumeMounts",
                Yaml::Array(vec![
                    map([
                        ("name", s("scenario")),
                        ("mountPath", s(SCENARIO_DIR)),
                        ("readOnly", Yaml::Boolean(true)),
                    ]),
                    map([("name", s("tmp")), ("mountPath", s("/tmp"))]),
                ]),
            ),
        ])
    }

    fn env(&self) -> Vec<Yaml> {
        let value = |name: &str, v: String| map([("name", s(name)), ("value", s(v))]);
        let mut env = vec![
            value(BROKER_URL, self.broker_url.to_string()),
            value(START_AT, self.start_at.clone()),
        ];
        if let Some(u) = &self.args.broker_username {
            env.push(value(BROKER_USERNAME, u.clone()));
        }
        if let Some(secret) = &self.args.password_secret {
            env.push(map([
                ("name", s(BROKER_PASSWORD)),
                (
                    "valueFrom",
                    map([(
                        "secretKeyRef",
                        map([("name", s(secret.clone())), ("key", s("password"))]),
                    )]),
                ),
            ]));
        }
        env
    }

    /// What the YAML stands for and how to get the merged report, as comments at its top.
    fn comments(&self) -> String {
        let (n, name, size) = (self.args.shards, self.name, &self.size);
        let ns = (self.args.namespace.as_ref()).map_or(String::new(), |ns| format!(" -n {ns}"));
        format!(
            "# fleetbench: {n} shards of {devices} devices (peak {rate:.0} deliveries/s each), \
             starting together at {start}.\n\
             # Apply before the start (pods that come up later start late, and their reports \
             say by how much):\n\
             #   kubectl apply{ns} -f THIS_FILE\n\
             # Wait for the Job to end (Complete, or Failed when a shard failed), then merge \
             the reports the pods printed in their logs:\n\
             #   until kubectl get{ns} job/{name} -o jsonpath='{{.status.conditions[?(@.status==\"True\")].type}}' \
             | grep -Eq 'Complete|Failed'; do sleep 10; done\n\
             #   kubectl logs{ns} -l app.kubernetes.io/instance={name} --tail=-1 \
             --max-log-requests={n} > {name}.log\n\
             #   fleetbench merge --shards {name}.log -o {name}.json\n\
             # Requests per pod: {cpu}m CPU, {mem}Mi memory ({clients} clients).\n",
            devices = size.devices,
            rate = size.peak_messages_per_s,
            start = self.start_at,
            cpu = size.cpu_millicores,
            mem = size.memory_mib,
            clients = size.clients,
        )
    }
}
