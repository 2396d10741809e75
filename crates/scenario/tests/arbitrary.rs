//! No input panics the scenario parser: documents built from the scenario's own keys with
//! values of every kind (and mangled copies of a valid file) either parse into a scenario whose
//! plan can be built, or are refused with an error that names a position in the file.
//!
//! This is the property-test half of the parser's fuzzing; `crates/scenario/fuzz` holds the
//! coverage-guided target (`cargo fuzz run parse`).

use fleetbench_scenario::{parse, Plan, Shard};
use proptest::prelude::*;

const VALID: &str = r#"name = "p"
duration = "3s"
drain_timeout = "1s"
[[group]]
name = "g"
count = 3
topic = "a/{group}/{index}"
rate = 2.0
qos = 1
status = { topic = "a/{index}/s" }
[[observer]]
name = "o"
filters = ["a/#"]
[expect]
p99 = "10ms"
"#;

/// Keys of every table a scenario has, so that random documents reach validation.
const KEYS: &[&str] = &[
    "name",
    "duration",
    "drain_timeout",
    "warmup",
    "seed",
    "count",
    "topic",
    "rate",
    "qos",
    "client_id",
    "payload_size",
    "connect_rate",
    "keep_alive",
    "arrivals",
    "filters",
    "url",
    "listeners",
    "process",
    "username",
    "password_env",
    "ca_file",
    "drop_at",
    "join_at",
    "clean_session",
    "offline",
    "status",
    "will",
    "commands",
    "reconnect",
    "protocol",
    "p99",
    "max_lost",
    "delivered_ratio",
    "max_late_share",
    "max_errors",
    "repeat",
    "skip",
    "group",
    "rate_end",
    "json",
    "kind",
    "at",
    "for",
    "min",
    "max",
    "jitter",
    "mqtt5",
    "message_expiry",
];

const TABLES: &[&str] = &[
    "[[group]]",
    "[[observer]]",
    "[[phase]]",
    "[[controller]]",
    "[broker]",
    "[expect]",
    "[regression]",
    "[group.json]",
    "[group.mqtt5]",
];

fn value() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<i64>().prop_map(|n| n.to_string()),
        (0u32..5).prop_map(|n| n.to_string()),
        any::<f64>().prop_map(|f| format!("{f:?}")),
        prop::sample::select(vec![
            "\"1s\"",
            "\"0s\"",
            "\"100years\"",
            "\"500000000000years\"",
            "\"-1s\"",
            "\"{index}\"",
            "\"$SYS/{index}\"",
            "\"a/#\"",
            "\"#\"",
            "\"+\"",
            "\"$share/x/a/#\"",
            "\"\"",
            "\"mqtt://u:p@h:1\"",
            "\"ws://[::1]:80/x\"",
            "\"mqtts://h\"",
            "\"{group}/{index}\"",
            "true",
            "false",
            "[]",
            "[\"a/#\", 3]",
            "{ topic = \"a/{index}/w\" }",
            "{ at = \"1s\", for = \"1s\" }",
            "nan",
            "inf",
            "-inf",
            "\"poisson\"",
            "\"5\"",
        ])
        .prop_map(str::to_string),
        "[a-z{}/#+$ ]{0,12}".prop_map(|s| format!("{s:?}")),
    ]
}

fn line() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => (prop::sample::select(KEYS.to_vec()), value()).prop_map(|(k, v)| format!("{k} = {v}")),
        1 => prop::sample::select(TABLES.to_vec()).prop_map(str::to_string),
        1 => "[ -~]{0,20}",
    ]
}

/// Parse; on success the plan is built too. Errors must name a line of the file.
fn must_not_panic(text: &str) {
    match parse("arbitrary.toml", text) {
        Ok(s) => {
            // Keep the plan small enough to build in a test.
            if s.device_count() <= 10_000 {
                let _ = Plan::build(&s, Shard::WHOLE);
            }
            assert!(s.duration <= std::time::Duration::from_secs(7 * 24 * 3600));
        }
        Err(e) => {
            let lines = text.lines().count().max(1);
            for one in e.all() {
                assert!(
                    one.location.line >= 1 && one.location.line <= lines + 1,
                    "{one}"
                );
            }
            assert!(!e.to_string().is_empty());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn documents_of_scenario_keys_never_panic(lines in prop::collection::vec(line(), 0..30)) {
        must_not_panic(&lines.join("\n"));
    }

    #[test]
    fn a_valid_file_with_one_line_replaced_never_panics(at in 0usize..16, with in line()) {
        let mut lines: Vec<String> = VALID.lines().map(str::to_string).collect();
        let at = at % lines.len();
        lines[at] = with;
        must_not_panic(&lines.join("\n"));
    }

    #[test]
    fn a_valid_file_cut_anywhere_never_panics(cut in 0usize..400) {
        let mut cut = cut.min(VALID.len());
        while !VALID.is_char_boundary(cut) {
            cut -= 1;
        }
        must_not_panic(&VALID[..cut]);
    }
}

#[test]
fn the_base_document_is_valid() {
    parse("valid.toml", VALID).expect("valid");
}
