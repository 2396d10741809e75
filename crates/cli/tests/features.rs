//! The feature scenarios in `scenarios/` run end to end on the embedded broker, and their
//! reports show what each feature promises.

mod common;

use common::{run_passing as run, shipped};

fn n(r: &serde_json::Value, path: &[&str]) -> f64 {
    path.iter()
        .fold(r, |v, k| &v[*k])
        .as_f64()
        .unwrap_or_else(|| panic!("{path:?} missing"))
}

fn all_delivered(r: &serde_json::Value) {
    assert_eq!(
        n(r, &["totals", "delivered"]),
        n(r, &["totals", "expected"])
    );
    assert_eq!(n(r, &["totals", "lost"]), 0.0);
    assert_eq!(n(r, &["totals", "duplicates"]), 0.0);
    assert!(r["errors"].get("decode").is_none(), "{}", r["errors"]);
}

#[test]
fn phases_break_the_run_down_and_the_spike_triples_the_rate() {
    let r = run(&shipped("phases"));
    all_delivered(&r);
    let phases = r["phases"].as_array().expect("phases in the report");
    let names: Vec<&str> = phases.iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(names, ["ramp-up", "steady", "spike", "ramp-down"]);
    let rate = |i: usize| n(&phases[i], &["publish_per_s"]);
    // 50 devices at 4 msg/s (Poisson): steady about 200/s, the spike three times that.
    let ratio = rate(2) / rate(1);
    assert!((2.4..3.6).contains(&ratio), "spike/steady {ratio}");
    assert!(rate(0) < rate(1) && rate(3) < rate(1));
    let sent: f64 = phases.iter().map(|p| n(p, &["sent"])).sum();
    assert_eq!(
        sent,
        n(&r, &["totals", "sent"]),
        "every message is in a phase"
    );
    let delivered: f64 = phases.iter().map(|p| n(p, &["delivered"])).sum();
    assert_eq!(delivered, n(&r, &["totals", "delivered"]));
    assert!(phases
        .iter()
        .all(|p| n(p, &["from_intended", "count"]) > 0.0));
}

#[test]
fn json_telemetry_arrives_whole() {
    let r = run(&shipped("telemetry-json"));
    all_delivered(&r);
    assert_eq!(r["scenario"]["groups"][0]["payload"]["format"], "json");
}

#[test]
fn qos2_is_exactly_once_and_rumqttd_upgrades_qos1_deliveries() {
    let r = run(&shipped("qos2"));
    all_delivered(&r);
    let qos2 = r["by_qos"]
        .as_array()
        .and_then(|q| q.iter().find(|q| q["qos"] == 2))
        .expect("streams delivered at QoS 2");
    assert_eq!(n(qos2, &["duplicates"]), 0.0);
    assert!(n(&r, &["latency", "puback", "count"]) > 0.0);
    let findings = r["findings"].to_string();
    assert!(
        findings.contains("at QoS 2 that MQTT says are due at QoS 1"),
        "{findings}"
    );
}

#[test]
fn fan_out_expects_every_message_at_every_observer() {
    let r = run(&shipped("fan-out"));
    all_delivered(&r);
    assert_eq!(
        n(&r, &["totals", "expected"]),
        25.0 * n(&r, &["totals", "sent"])
    );
}

#[test]
fn fan_in_expects_what_each_filter_matches() {
    let r = run(&shipped("fan-in"));
    all_delivered(&r);
    // The collector expects everything; the narrow observer 10 of 200 devices.
    let extra = n(&r, &["totals", "expected"]) / n(&r, &["totals", "sent"]) - 1.0;
    assert!((0.03..0.07).contains(&extra), "{extra}");
}

#[test]
fn a_shared_subscription_receives_each_message_once_over_its_members() {
    let r = run(&shipped("shared-subscriptions"));
    all_delivered(&r);
    // One copy for the pool of four workers, one for the plain observer.
    assert_eq!(
        n(&r, &["totals", "expected"]),
        2.0 * n(&r, &["totals", "sent"])
    );
}
