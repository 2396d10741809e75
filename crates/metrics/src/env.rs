//! What a run ran on, so that any number in a report can be traced and rerun.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    pub cores: u32,
    pub memory_bytes: u64,
    /// `std::env::consts::OS` and architecture, e.g. "linux x86_64".
    pub os: String,
    /// The distribution's PRETTY_NAME and the kernel release, where they can be read.
    pub os_release: String,
    pub kernel: String,
    pub git_revision: String,
    pub build_profile: String,
    pub fleetbench_version: String,
}

impl Environment {
    /// Read the machine's facts; what cannot be read is left empty (or 0), never guessed.
    pub fn detect(git_revision: &str, build_profile: &str, version: &str) -> Environment {
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get() as u32);
        let memory_bytes = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                m.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map_or(0, |kb| kb * 1024);
        let os_release = std::fs::read_to_string("/etc/os-release")
            .ok()
            .and_then(|t| {
                t.lines()
                    .find_map(|l| l.strip_prefix("PRETTY_NAME="))
                    .map(|v| v.trim_matches('"').to_string())
            })
            .unwrap_or_default();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|k| k.trim().to_string())
            .unwrap_or_default();
        Environment {
            cores,
            memory_bytes,
            os: format!("{} {}", std::env::consts::OS, std::env::consts::ARCH),
            os_release,
            kernel,
            git_revision: git_revision.to_string(),
            build_profile: build_profile.to_string(),
            fleetbench_version: version.to_string(),
        }
    }
}
