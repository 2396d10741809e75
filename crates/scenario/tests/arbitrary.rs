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

/// A second valid file with what the first lacks: phases, commands, a controller, MQTT 5, JSON
/// payloads, an external broker.
const VALID_MORE: &str = r#"name = "q"
protocol = "5"
[broker]
url = "ws://127.0.0.1:8080/mqtt"
[[phase]]
name = "up"
duration = "2s"
rate = 0.0
rate_end = 1.0
connect_rate = 5
[[phase]]
name = "on"
duration = "2s"
[[group]]
name = "v"
count = 4
topic = "f/{group}/{index}"
rate = 1.0
arrivals = "poisson"
commands = { topic = "f/{index}/cmd", reply = "f/{index}/ack" }
reconnect = { min = "100ms", max = "1s", jitter = 0.5 }
[group.json]
t = { kind = "sine", period = "60s", amplitude = 3.0 }
[group.mqtt5]
message_expiry = "60s"
[[controller]]
name = "c"
group = "v"
rate = 1.0
[[observer]]
name = "o"
filters = ["f/#"]
clean_session = false
offline = { at = "1s", for = "1s" }
[regression]
skip = ["p99_puback"]
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
    #![proptest_config(ProptestConfig {
        cases: 2_000,
        // A failure is reported with its minimal input; nothing is written into the source tree.
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn documents_of_scenario_keys_never_panic(lines in prop::collection::vec(line(), 0..30)) {
        must_not_panic(&lines.join("\n"));
    }

    #[test]
    fn a_valid_file_with_lines_replaced_never_panics(
        more in any::<bool>(),
        changes in prop::collection::vec((0usize..40, line()), 1..3),
    ) {
        let base = if more { VALID_MORE } else { VALID };
        let mut lines: Vec<String> = base.lines().map(str::to_string).collect();
        for (at, with) in changes {
            let at = at % lines.len();
            lines[at] = with;
        }
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

/// Inputs the properties once found panicking, kept as plain tests.
#[test]
fn inputs_that_once_panicked() {
    // A connect rate so small that the plan's connect times left Duration's range.
    let tiny = VALID.replace(
        "qos = 1\n",
        "qos = 1\nconnect_rate = 3.7257771729756475e-175\n",
    );
    must_not_panic(&tiny);
    let err = parse("tiny.toml", &tiny).expect_err("refused");
    assert_eq!(err.first().field, "group[0].connect_rate");
    // A rate so small that one message period left Duration's range.
    let slow = VALID.replace("rate = 2.0", "rate = 1.7723754662829888e-162");
    must_not_panic(&slow);
    let err = parse("slow.toml", &slow).expect_err("refused");
    assert_eq!(err.first().field, "group[0].rate");
}

#[test]
fn the_base_documents_are_valid() {
    parse("valid.toml", VALID).expect("valid");
    parse("more.toml", VALID_MORE).expect("valid");
}
