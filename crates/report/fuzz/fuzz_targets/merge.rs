//! Any bytes as what `merge` reads (a JSON report, or a log of report lines): reading,
//! checking, merging as repeats and as shards, and summarising never panic, and a merge either
//! refuses or keeps its ledger whole.
#![no_main]

use fleetbench_report::merge::merge;
use fleetbench_report::report::MergeKind;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(reports) = fleetbench_report::read::reports_in(&text) else {
        return;
    };
    for (i, r) in reports.iter().enumerate() {
        let _ = fleetbench_report::consistency::check_report(i, r);
    }
    for kind in [MergeKind::Repeats, MergeKind::Shards] {
        if let Ok(m) = merge(&reports, kind) {
            let t = &m.totals;
            assert_eq!(t.delivered + t.lost + t.in_flight, t.expected, "{t:?}");
            let _ = fleetbench_report::summary::render(&m);
        }
    }
});
