//! `cargo xtask test`: install what the tests need when it is missing (Python packages with
//! pip; mosquitto and chromium with apt-get, only as root: never sudo on someone's machine), then run every
//! test and close with one total line.

use std::process::{Command, Stdio};

use anyhow::{bail, Context};

use crate::root;

/// Python packages the tests drive: an MQTT client for the interoperability test,
/// HdrHistogram's Python implementation, which reads the runs' interval logs, the
/// Kubernetes API schemas the generated manifests are validated against, and Prometheus's
/// own client, whose parser reads the live metrics endpoint.
const PYTHON_PACKAGES: [(&str, &str); 4] = [
    ("paho.mqtt.client", "paho-mqtt>=2,<3"),
    ("hdrh.log", "hdrhistogram>=0.10,<1"),
    ("kubernetes_validate", "kubernetes-validate>=1.35,<2"),
    (
        "prometheus_client.openmetrics.parser",
        "prometheus-client>=0.20,<1",
    ),
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

/// Debian packages the tests run, by the program each provides and the variable that may name
/// that program instead: mosquitto (the external broker the tests start on loopback ports of
/// their own) and chromium (which opens the HTML report headless).
const PACKAGES: [(&str, &str, &str); 2] = [
    ("mosquitto", "mosquitto", "FLEETBENCH_MOSQUITTO"),
    ("chromium", "chromium", "FLEETBENCH_CHROMIUM"),
];

/// Install the [`PACKAGES`] that are missing, with apt-get, as root only.
fn ensure_debian_packages() -> anyhow::Result<()> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(program, _, var)| {
            let found = std::env::split_paths(&path)
                .chain(["/usr/sbin".into(), "/usr/local/sbin".into()])
                .any(|d| d.join(program).is_file());
            !found && std::env::var_os(var).is_none()
        })
        .map(|(_, package, _)| *package)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let list = missing.join(" ");
    if !is_root() {
        // Never sudo on someone's machine: say what is missing and how to get it.
        bail!(
            "the tests need Debian's {list}, not installed; install it (`sudo apt-get install \
             {list}`, or set FLEETBENCH_MOSQUITTO / FLEETBENCH_CHROMIUM to the programs) and run \
             the tests again"
        );
    }
    eprintln!("xtask: installing {list} for the tests (apt-get)");
    apt_get_install(&missing)
        .with_context(|| format!("installing {list}; install it and run the tests again"))
}

/// Whether this runs as root (and may use apt-get).
pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// `apt-get install` of Debian `packages` (as root), after an `apt-get update` when the
/// first attempt fails (a fresh machine's package lists may be missing or stale).
pub(crate) fn apt_get_install(packages: &[&str]) -> anyhow::Result<()> {
    let apt = |args: &[&str]| -> anyhow::Result<bool> {
        Ok(Command::new("apt-get")
            .args(args)
            .args(packages)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .context("running apt-get")?
            .success())
    };
    let install = ["install", "-y", "-qq", "--no-install-recommends"];
    if apt(&install)? {
        return Ok(());
    }
    let updated = Command::new("apt-get")
        .args(["update", "-qq"])
        .status()
        .context("running apt-get")?
        .success();
    if !(updated && apt(&install)?) {
        bail!("apt-get could not install {}", packages.join(" "));
    }
    Ok(())
}

/// Run the whole suite, every test binary even when one fails (`--no-fail-fast`), echo cargo's
/// output, and close with one total line over every test binary (cargo's own last line speaks
/// only of the last binary).
pub(crate) fn test() -> anyhow::Result<()> {
    ensure_python_packages()?;
    ensure_debian_packages()?;
    let cargo_bin = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let mut child = Command::new(&cargo_bin)
        .args(["test", "--workspace", "--all-targets", "--no-fail-fast"])
        .current_dir(root())
        .stdout(Stdio::piped())
        .spawn()
        .context("running cargo test")?;
    let stdout = child.stdout.take().context("cargo test's output")?;
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut failures = Vec::new();
    for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
        let line = line.context("reading cargo test's output")?;
        println!("{line}");
        if let Some(rest) = line.strip_prefix("test result: ") {
            passed += count_before(rest, "passed");
            failed += count_before(rest, "failed");
        } else if let Some(name) =
            (line.strip_prefix("test ")).and_then(|l| l.strip_suffix(" ... FAILED"))
        {
            failures.push(name.to_string());
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    for name in &failures {
        println!("failed: {name}");
    }
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
