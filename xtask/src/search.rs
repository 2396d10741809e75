//! `cargo xtask search NAME`: a capacity search over `scenarios/search/NAME.toml` with the
//! release binary, its result in target/search/NAME.json and its page in NAME.html.

use std::process::Command;

use anyhow::{bail, Context};

use crate::{cargo, root};

/// Run the search; returns its exit code.
pub(crate) fn search(name: &str, extra: &[String]) -> anyhow::Result<i32> {
    let file = root().join("scenarios/search").join(format!("{name}.toml"));
    if !file.is_file() {
        let dir = root().join("scenarios/search");
        let mut names: Vec<String> = std::fs::read_dir(&dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| {
                e.ok()?
                    .path()
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string())
            })
            .collect();
        names.sort();
        bail!(
            "no search scenario {name:?} in scenarios/search/; there are: {}",
            names.join(", ")
        );
    }
    cargo(&["build", "--quiet", "--release", "-p", "fleetbench"])?;
    let out = root().join("target/search");
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut command = Command::new(root().join("target/release/fleetbench"));
    command
        .arg("search")
        .arg(&file)
        .arg("--report")
        .arg(out.join(format!("{name}.json")))
        .arg("--html")
        .arg(out.join(format!("{name}.html")));
    // The knob is the rate unless the command line names another.
    if !extra
        .iter()
        .any(|a| a == "--vary" || a.starts_with("--vary="))
    {
        command.args(["--vary", "rate"]);
    }
    let status = command
        .args(extra)
        .status()
        .context("running fleetbench search")?;
    Ok(status.code().unwrap_or(1))
}
