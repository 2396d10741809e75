//! Embeds the git revision the binary was built from, so that reports can name it.

use std::process::Command;

fn main() {
    // A build without the repository (a container image's) is told its revision.
    println!("cargo:rerun-if-env-changed=FLEETBENCH_GIT_REV");
    if let Some(rev) = std::env::var("FLEETBENCH_GIT_REV")
        .ok()
        .filter(|r| !r.trim().is_empty())
    {
        println!("cargo:rustc-env=FLEETBENCH_GIT_REV={}", rev.trim());
        return;
    }
    let rev = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let dirty = Command::new("git")
        .args(["status", "--porcelain", "--untracked-files=no"])
        .output()
        .ok()
        .is_some_and(|o| o.status.success() && !o.stdout.is_empty());
    let rev = if dirty { format!("{rev}-dirty") } else { rev };
    println!("cargo:rustc-env=FLEETBENCH_GIT_REV={rev}");
    for path in [
        "../../.git/HEAD",
        "../../.git/index",
        "../../.git/logs/HEAD",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
}
