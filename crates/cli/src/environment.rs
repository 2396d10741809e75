//! The machine and build a report records; the report itself is built by
//! `fleetbench_report::Report::from_run`.

use fleetbench_metrics::env::Environment;

/// This machine, and this binary's revision, profile and version.
pub(crate) fn detect() -> Environment {
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    Environment::detect(
        env!("FLEETBENCH_GIT_REV"),
        profile,
        env!("CARGO_PKG_VERSION"),
    )
}
