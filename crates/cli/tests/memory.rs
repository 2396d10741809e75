//! Runs that last: the end of a run (tally, report, series, interval log) costs memory that does
//! not grow with the number of messages.

mod common;

use std::time::Duration;

use common::cli::{finish, report, scenario, start_run, text};

/// The peak resident memory of a run of the same fleet for `duration`, the broker in a child
/// process (so the figure is the generator's alone), in MiB.
fn peak_mib(dir: &std::path::Path, duration: &str) -> f64 {
    let file = scenario(
        dir,
        duration,
        100,
        20.0,
        "[broker]\nprocess = \"child\"\n[expect]\ndelivered_ratio = 1.0\n",
    );
    let out = dir.join(format!("{duration}.json"));
    let (o, _) = finish(start_run(&file, &out, &[]), Duration::from_secs(180));
    // The verdict is not this test's subject: a busy machine may make the generator late.
    assert!(matches!(o.status.code(), Some(0 | 3)), "{}", text(&o));
    let r = report(&out);
    assert_eq!(
        r["totals"]["delivered"], r["totals"]["sent"],
        "{}",
        r["totals"]
    );
    r["resources"]["peak_rss_bytes"].as_f64().unwrap_or(0.0) / f64::from(1u32 << 20)
}

#[test]
fn the_end_of_a_run_costs_no_more_memory_for_more_messages() {
    let dir = tempfile::tempdir().expect("tempdir");
    // 2,000 messages a second: 20,000 in the short run, 120,000 in the long one.
    let short = peak_mib(dir.path(), "10s");
    let long = peak_mib(dir.path(), "60s");
    // Before the interval log was kept encoded, the long run's end decoded 480 more histograms
    // of 184 KiB each: 86 MiB more at its peak.
    assert!(
        long <= short + 16.0,
        "peak {long:.1} MiB after 60 s against {short:.1} MiB after 10 s"
    );
}
