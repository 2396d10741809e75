//! Any bytes as a scenario file: parsing never panics, an error names a line of the file, and a
//! scenario that parses expands into a plan.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match fleetbench_scenario::parse("fuzz.toml", text) {
        Ok(s) => {
            if s.device_count() <= 10_000 {
                let _ = fleetbench_scenario::Plan::build(&s, fleetbench_scenario::Shard::WHOLE);
            }
        }
        Err(e) => {
            let lines = text.lines().count().max(1) + 1;
            for one in e.all() {
                assert!(one.location.line >= 1 && one.location.line <= lines, "{one}");
            }
        }
    }
});
