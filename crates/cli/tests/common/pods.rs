//! What the kubelet would do with the Job `fleetbench deploy kubernetes` writes, done by hand
//! for `kubernetes.rs`: the pod template read as written, a pod started as a process, and the
//! report it prints in its log.

use std::collections::HashMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use yaml_rust2::{Yaml, YamlLoader};

/// The document of `kind`.
pub(crate) fn doc<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind} in the manifests"))
}

pub(crate) fn strings(y: &Yaml) -> Vec<String> {
    y.as_vec()
        .expect("a list")
        .iter()
        .map(|v| v.as_str().expect("a string").to_string())
        .collect()
}

/// One pod of the Job, as the kubelet would start it.
pub(crate) struct Pod {
    pub(crate) args: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
}

/// The Job's pod template, read as written: its ConfigMap's file put where the pod mounts it
/// (under `root`), `secrets` standing in for secretKeyRef.
pub(crate) fn pod_template(
    yaml: &str,
    root: &Path,
    secrets: &HashMap<(&str, &str), &str>,
) -> (Pod, u64) {
    let docs = YamlLoader::load_from_str(yaml).expect("YAML");
    let job = doc(&docs, "Job");
    let spec = &job["spec"];
    assert_eq!(spec["completionMode"].as_str(), Some("Indexed"));
    let completions = spec["completions"].as_i64().expect("completions") as u64;
    assert_eq!(spec["parallelism"].as_i64(), Some(completions as i64));
    let pod = &spec["template"]["spec"];
    let container = &pod["containers"][0];
    let mount = container["volumeMounts"][0]["mountPath"]
        .as_str()
        .expect("mount");
    let map = doc(&docs, "ConfigMap");
    assert_eq!(
        map["metadata"]["name"].as_str(),
        pod["volumes"][0]["configMap"]["name"].as_str()
    );
    let local = root.join(mount.trim_start_matches('/'));
    std::fs::create_dir_all(&local).expect("mount dir");
    let Yaml::Hash(data) = &map["data"] else {
        panic!("ConfigMap data")
    };
    for (k, v) in data {
        let (k, v) = (k.as_str().expect("key"), v.as_str().expect("text"));
        std::fs::write(local.join(k), v).expect("write the mounted file");
    }
    let args = strings(&container["args"])
        .into_iter()
        .map(|a| match a.strip_prefix(mount) {
            Some(rest) => format!("{}{rest}", local.display()),
            None => a,
        })
        .collect();
    let env = container["env"]
        .as_vec()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("name").to_string();
            let value = match e["value"].as_str() {
                Some(v) => v.to_string(),
                None => {
                    let r = &e["valueFrom"]["secretKeyRef"];
                    let key = (
                        r["name"].as_str().expect("secret"),
                        r["key"].as_str().expect("key"),
                    );
                    secrets
                        .get(&key)
                        .expect("a Secret the test made")
                        .to_string()
                }
            };
            (name, value)
        })
        .collect();
    (Pod { args, env }, completions)
}

/// Start pod `index`: stdout is its log.
pub(crate) fn start_pod(pod: &Pod, index: u64, log: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(&pod.args)
        .envs(pod.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("JOB_COMPLETION_INDEX", index.to_string())
        .stdout(std::fs::File::create(log).expect("log file"))
        .stderr(Stdio::piped())
        .spawn()
        .expect("start a pod's fleetbench")
}

/// The report a pod printed in its log (the line `kubectl logs` would show).
pub(crate) fn pod_report(log: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(log).expect("log");
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("fleetbench-report "))
        .unwrap_or_else(|| panic!("no report line in {}: {text}", log.display()));
    serde_json::from_str(line).expect("report")
}
