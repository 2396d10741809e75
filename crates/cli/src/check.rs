//! `fleetbench check`: validate scenario files, connect to nothing.

use std::path::Path;

use anyhow::Context;

use crate::{Outcome, UsageError};

/// Read and validate one scenario file.
pub fn load(path: &Path) -> anyhow::Result<fleetbench_scenario::Scenario> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading scenario {}", path.display()))
        .map_err(|e| UsageError(format!("{e:#}")))?;
    fleetbench_scenario::parse(&path.display().to_string(), &text)
        .map_err(|e| UsageError(e.to_string()).into())
}

pub fn check(files: &[std::path::PathBuf]) -> anyhow::Result<Outcome> {
    let mut failed = 0;
    for f in files {
        match load(f) {
            Ok(s) => println!(
                "ok   {}: {} ({} devices in {} groups, {} observers, {})",
                f.display(),
                s.name,
                s.device_count(),
                s.groups.len(),
                s.observer_count(),
                humantime_like(s.duration)
            ),
            Err(e) => {
                failed += 1;
                eprintln!("{e:#}");
            }
        }
    }
    if failed > 0 {
        return Err(UsageError(format!(
            "{failed} of {} scenario files are invalid",
            files.len()
        ))
        .into());
    }
    Ok(Outcome::Pass)
}

fn humantime_like(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}
