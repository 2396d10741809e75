//! `fleetbench deploy kubernetes`: the manifests validate against the Kubernetes API, and the
//! Job's pod template, run as written by four local processes against one broker process,
//! yields shard reports whose merge equals a one-process run count for count.
//!
//! There is no cluster here: what the kubelet would do is done by hand and nothing more. The
//! ConfigMap's file is put where the pod mounts it (a directory of the test's own), every
//! argument and variable is taken from the template as written, the Secret's value stands in
//! for `secretKeyRef`, `JOB_COMPLETION_INDEX` is set per pod as an Indexed Job does, and each
//! pod's stdout is its log, which `fleetbench merge` reads the way `kubectl logs` gives it.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output};
use std::time::Duration;

use common::cli::finish;
use common::pods::{doc, pod_report, pod_template, start_pod};
use common::{passed_but_for, BrokerProcess};
use fleetbench_report::Report;
use yaml_rust2::YamlLoader;

/// 160 meters at 4 msg/s, QoS 1: 2 s to connect (rate 0: nothing falls due before a device is
/// connected, so every run sends exactly the same messages), then 3 s of load.
const SCENARIO: &str = r#"
name = "k8s-split"
seed = 7
drain_timeout = "2s"

[[phase]]
name = "connect"
duration = "2s"
rate = 0.0

[[phase]]
name = "load"
duration = "3s"

[[group]]
name = "meter"
count = 160
topic = "site/{shard}/{group}/{index}"
rate = 4.0
qos = 1

[[observer]]
name = "all"
filters = ["site/{shard}/#"]

[expect]
delivered_ratio = 1.0
max_lost = 0
"#;

const PASSWORD: &str = "k8s-test-secret";

fn fleetbench() -> Command {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
}

/// What `fleetbench deploy kubernetes FILE ARGS...` did.
fn deploy_output(file: &Path, args: &[&str]) -> Output {
    fleetbench()
        .args(["deploy", "kubernetes"])
        .arg(file)
        .args(args)
        .output()
        .expect("run deploy")
}

/// `fleetbench deploy kubernetes FILE ARGS...`: its YAML.
fn deploy(file: &Path, args: &[&str]) -> String {
    let out = deploy_output(file, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    String::from_utf8(out.stdout).expect("UTF-8 YAML")
}

/// Validate `yaml` with the kubernetes-validate package (installed by `cargo xtask test`) in
/// strict mode (unknown fields refused) against Kubernetes `version`.
fn kubernetes_validate(yaml: &str, version: &str) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, yaml).expect("write");
    Command::new("python3")
        .args(["-m", "kubernetes_validate", "--strict", "-k", version])
        .arg(&file)
        .output()
        .expect("python3 runs (cargo xtask test installs kubernetes-validate)")
}

#[test]
fn generated_manifests_validate_against_the_kubernetes_api() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("s.toml");
    std::fs::write(&file, SCENARIO).expect("write");
    let plain = deploy(
        &file,
        &[
            "--shards",
            "4",
            "--image",
            "fleetbench:test",
            "--broker-url",
            "mqtt://mqtt:1883",
        ],
    );
    let full = deploy(
        &file,
        &[
            "--shards",
            "25",
            "--image",
            "registry.example/fleetbench:0.1",
            "--broker-url",
            "mqtts://mqtt.example:8883",
            "--broker-username",
            "fleet",
            "--password-secret",
            "broker-password",
            "--namespace",
            "load",
            "--name",
            "Big_Run",
        ],
    );
    // A scenario whose first line is indented (a block literal would need an indentation
    // indicator) still makes valid YAML that holds its text.
    let indented = dir.path().join("indented.toml");
    std::fs::write(
        &indented,
        format!("  # indented\n\t# and a tab\n{SCENARIO}"),
    )
    .expect("write");
    let odd = deploy(
        &indented,
        &[
            "--shards",
            "2",
            "--image",
            "x:1",
            "--broker-url",
            "mqtt://m:1883",
        ],
    );
    let docs = YamlLoader::load_from_str(&odd).expect("YAML");
    assert_eq!(
        doc(&docs, "ConfigMap")["data"]["scenario.toml"].as_str(),
        std::fs::read_to_string(&indented).ok().as_deref()
    );
    // The oldest release with backoffLimitPerIndex on by default in GA, and a current one.
    for yaml in [&plain, &full, &odd] {
        for version in ["1.33.0", "1.35.0"] {
            let out = kubernetes_validate(yaml, version);
            let said = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(out.status.success(), "{version}: {said}\n{yaml}");
            assert!(!said.contains("WARN"), "{version}: {said}");
            assert_eq!(said.matches("passed").count(), 2, "{said}");
        }
    }
    // No password in the manifests, only where it comes from.
    assert!(!full.contains(PASSWORD));
    let docs = YamlLoader::load_from_str(&full).expect("YAML");
    let job = doc(&docs, "Job");
    assert_eq!(job["metadata"]["name"].as_str(), Some("big-run"));
    assert_eq!(job["metadata"]["namespace"].as_str(), Some("load"));
    let env = &job["spec"]["template"]["spec"]["containers"][0]["env"];
    let secret = env
        .as_vec()
        .expect("env")
        .iter()
        .find(|e| e["name"].as_str() == Some("FLEETBENCH_BROKER_PASSWORD"))
        .expect("the password comes from the Secret");
    assert_eq!(
        secret["valueFrom"]["secretKeyRef"]["name"].as_str(),
        Some("broker-password")
    );
    // What Kubernetes or the run would not take is refused, naming the rule.
    let refused = |args: &[&str], part: &str| {
        let mut all = vec!["--broker-url", "mqtt://m:1883"];
        all.extend(args);
        let out = deploy_output(&file, &all);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(part), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}: nothing printed");
    };
    refused(&["--shards", "100001", "--image", "x"], "at most 100000");
    refused(
        &["--shards", "161", "--image", "x"],
        "some shards would have none",
    );
    refused(&["--shards", "2", "--image", ""], "is empty");
    refused(
        &["--shards", "2", "--image", "fleet bench"],
        "no image reference",
    );
    refused(
        &["--shards", "2", "--image", "x", "--namespace", "a/b"],
        "DNS-1123 label",
    );
    refused(
        &[
            "--shards",
            "2",
            "--image",
            "x",
            "--password-secret",
            "Bad Secret/x",
            "--broker-username",
            "u",
        ],
        "DNS-1123 subdomain",
    );
    refused(
        &[
            "--shards",
            "2",
            "--image",
            "x",
            "--start-at",
            "2020-01-01T00:00:00Z",
        ],
        "in the past",
    );
    // A manifest for a broker each pod would start itself is refused, as is a scenario whose
    // observers would hear every shard.
    let embedded = deploy_output(&file, &["--shards", "2", "--image", "x"]);
    assert_eq!(embedded.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&embedded.stderr).contains("--broker-url"));
    let unsplit = dir.path().join("unsplit.toml");
    std::fs::write(&unsplit, SCENARIO.replace("{shard}/", "")).expect("write");
    let out = deploy_output(
        &unsplit,
        &[
            "--shards",
            "2",
            "--image",
            "x",
            "--broker-url",
            "mqtt://m:1883",
        ],
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("{shard}"));
    // Certificate files would not reach the pods: refused, naming the field and its line.
    let tls = dir.path().join("tls.toml");
    let with_ca =
        format!("{SCENARIO}\n[broker]\nurl = \"mqtts://mqtt:8883\"\nca_file = \"ca.pem\"\n");
    std::fs::write(&tls, &with_ca).expect("write");
    let out = deploy_output(&tls, &["--shards", "2", "--image", "x"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    let line = with_ca
        .lines()
        .position(|l| l.starts_with("ca_file"))
        .expect("line")
        + 1;
    let at = format!("tls.toml:{line}:");
    assert!(
        stderr.contains(&at) && stderr.contains("broker.ca_file"),
        "{stderr}"
    );
}

/// The example in deploy/kubernetes is what the command prints for its scenario.
#[test]
fn the_committed_example_is_what_deploy_prints() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/kubernetes");
    let example = std::fs::read_to_string(root.join("fleet-100k.yaml")).expect("example");
    let start = example
        .lines()
        .find_map(|l| l.split("value: \"").nth(1).filter(|v| v.starts_with("20")))
        .map(|v| v.trim_end_matches('"').to_string())
        .expect("the example's start time");
    let args = std::fs::read_to_string(root.join("fleet-100k.args")).expect("args");
    let mut argv: Vec<&str> = args.split_whitespace().collect();
    // The example's start has passed, and a start in the past is refused: generate with one
    // ahead and compare with it in the example's place.
    let ahead = "2999-01-01T00:00:00Z";
    argv.extend(["--start-at", ahead]);
    let printed = deploy(&root.join("fleet-100k.toml"), &argv).replace(ahead, &start);
    assert!(
        printed == example,
        "regenerate deploy/kubernetes/fleet-100k.yaml (see its README)"
    );
}

fn merge(logs: &[PathBuf], out: &Path) -> Output {
    fleetbench()
        .args(["merge", "--shards"])
        .args(logs)
        .arg("--output")
        .arg(out)
        .output()
        .expect("merge")
}

fn read(path: &Path) -> Report {
    let text = std::fs::read_to_string(path).expect("report");
    serde_json::from_str(&text).expect("a report")
}

#[test]
fn four_pods_as_written_merge_to_the_one_process_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("scenario.toml");
    std::fs::write(&file, SCENARIO).expect("write");
    let broker = BrokerProcess::start_with_env(
        &[
            "--username",
            "fleet",
            "--password-env",
            "K8S_TEST_BROKER_PW",
        ],
        &[("K8S_TEST_BROKER_PW", PASSWORD)],
    );
    let url = format!("mqtt://127.0.0.1:{}", broker.port);
    let yaml = deploy(
        &file,
        &[
            "--shards",
            "4",
            "--image",
            "fleetbench:test",
            "--broker-url",
            &url,
            "--broker-username",
            "fleet",
            "--password-secret",
            "broker",
            "--start-in",
            "5s",
        ],
    );
    let secrets = HashMap::from([(("broker", "password"), PASSWORD)]);
    let (pod, completions) = pod_template(&yaml, dir.path(), &secrets);
    assert_eq!(completions, 4);
    let logs: Vec<PathBuf> = (0..completions)
        .map(|i| dir.path().join(format!("pod-{i}.log")))
        .collect();
    let pods: Vec<Child> = (0..completions)
        .map(|i| start_pod(&pod, i, &logs[i as usize]))
        .collect();
    // A pod that failed on the machine's punctuality fails the merge's `shards_failed` too.
    let mut late_pods = false;
    for (i, p) in pods.into_iter().enumerate() {
        let (out, _) = finish(p, Duration::from_secs(90));
        late_pods |= out.status.code() == Some(3);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let report = pod_report(&logs[i]);
        let what = format!("pod {i}");
        assert!(
            passed_but_for(out.status.code(), &report, &what, &[]),
            "pod {i} exited {:?}: {stderr}\n{report}",
            out.status.code()
        );
        assert!(
            stderr.contains("waiting"),
            "pod {i} waits for the common start: {stderr}"
        );
    }
    // `kubectl logs -l ...` gives every pod's log in one stream.
    let all = dir.path().join("job.log");
    let joined: String = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).expect("log"))
        .collect();
    std::fs::write(&all, joined).expect("write");
    let merged_path = dir.path().join("merged.json");
    let out = merge(std::slice::from_ref(&all), &merged_path);
    let merged_value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&merged_path).expect("merged report"))
            .expect("JSON");
    assert!(
        passed_but_for(
            out.status.code(),
            &merged_value,
            "the merge",
            if late_pods { &["shards_failed"] } else { &[] }
        ),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let merged = read(&merged_path);
    let t = &merged.totals;
    assert!(t.sent > 0);
    assert_eq!((t.delivered, t.expected), (t.sent, t.sent), "{t:?}");
    assert_eq!((t.lost, t.unexpected, t.duplicates), (0, 0, 0), "{t:?}");
    assert_eq!(merged.shards.len(), 4);
    assert!(merged
        .shards
        .iter()
        .all(|s| s.present && s.sent > 0 && s.start_lateness_s.is_some()));
    assert!(merged.run.start.is_some());
    // The merged histograms hold every shard's values.
    let shard_latency: u64 = (0..4)
        .map(|i| {
            let r: Report = serde_json::from_value(pod_report(&logs[i])).expect("report");
            assert_eq!(r.run.shard, format!("{i}/4"));
            assert_eq!(
                r.totals.unexpected, 0,
                "shard {i} heard only its own devices"
            );
            r.latency.from_intended.count
        })
        .sum();
    assert_eq!(merged.latency.from_intended.count, shard_latency);
    assert_eq!(merged.latency.from_intended.count, t.delivered);

    // The same scenario and seed in one process, against the same broker.
    let one_path = dir.path().join("one.json");
    let one = fleetbench()
        .arg("run")
        .arg(&file)
        .args([
            "--broker-url",
            &url,
            "--broker-username",
            "fleet",
            "--no-tui",
            "--quiet",
        ])
        .arg("--report")
        .arg(&one_path)
        .env("FLEETBENCH_BROKER_PASSWORD", PASSWORD)
        .output()
        .expect("one-process run");
    let one_value: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&one_path).expect("one-process report"))
            .expect("JSON");
    assert!(
        passed_but_for(one.status.code(), &one_value, "the one-process run", &[]),
        "{}",
        String::from_utf8_lossy(&one.stderr)
    );
    let one = read(&one_path);
    assert_eq!(one.totals, merged.totals);
    assert_eq!(
        one.latency.from_intended.count,
        merged.latency.from_intended.count
    );
    let phase_counts = |r: &Report| -> Vec<(u64, u64, u64)> {
        r.phases
            .iter()
            .map(|p| (p.sent, p.expected, p.delivered))
            .collect()
    };
    assert_eq!(phase_counts(&one), phase_counts(&merged));

    // A shard whose report is missing fails the merged verdict, by name; one given twice is
    // refused with nothing written.
    let partial = dir.path().join("partial.json");
    let without_2: Vec<PathBuf> = [0, 1, 3].iter().map(|i| logs[*i].clone()).collect();
    let out = merge(&without_2, &partial);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("shard 2/4 of this run has no report"),
        "{stdout}"
    );
    assert!(stdout.contains("MISSING"), "{stdout}");
    let twice = dir.path().join("twice.json");
    let out = merge(&[all.clone(), logs[1].clone()], &twice);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("1/4 appears twice"));
    assert!(!twice.exists());
}

#[test]
fn what_cannot_be_sharded_or_merged_is_refused_with_its_cause() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Observers that would hear every shard: refused by check and run, before connecting.
    let unsplit = dir.path().join("unsplit.toml");
    std::fs::write(&unsplit, SCENARIO.replace("{shard}/", "")).expect("write");
    let check = fleetbench()
        .args(["check", "--shards", "3"])
        .arg(&unsplit)
        .output()
        .expect("check");
    assert_eq!(check.status.code(), Some(2));
    let run = fleetbench()
        .arg("run")
        .arg(&unsplit)
        .args(["--shard", "1/3", "--no-tui", "--quiet"])
        .output()
        .expect("run");
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("observer \"all\": filter \"site/#\""),
        "{stderr}"
    );
    // Unsharded, the same scenario is fine.
    let whole = fleetbench()
        .args(["check"])
        .arg(&unsplit)
        .output()
        .expect("check");
    assert_eq!(whole.status.code(), Some(0));
    // A log whose report line was cut short names the file and line; a log without any report
    // says what it expected.
    let cut = dir.path().join("cut.log");
    std::fs::write(
        &cut,
        "fleetbench k8s-split: PASS\nfleetbench-report {\"schema_version\": 2,\n",
    )
    .expect("write");
    let out = merge(std::slice::from_ref(&cut), &dir.path().join("m.json"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("cut.log:2: a report line"), "{stderr}");
    let empty = dir.path().join("empty.log");
    std::fs::write(&empty, "waiting 3.0s for the common start\n").expect("write");
    let out = merge(std::slice::from_ref(&empty), &dir.path().join("m.json"));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("fleetbench run --report -"));
}
