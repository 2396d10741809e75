//! Any bytes as what `compare` and `report html` read: the first and last report of the input
//! compared with the tolerances the last one's scenario gives, and drawn as the summary and
//! the HTML page, never panic.
#![no_main]

use fleetbench_report::compare::{compare, render_markdown, render_text, tolerances_of};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let Ok(reports) = fleetbench_report::read::reports_in(&text) else {
        return;
    };
    let (Some(a), Some(b)) = (reports.first(), reports.last()) else {
        return;
    };
    let c = compare(a, b, &tolerances_of(b));
    let _ = render_text(&c);
    let _ = render_markdown(&c);
    let _ = fleetbench_report::summary::render(b);
    let _ = fleetbench_report::html::render(b, Some(a));
});
