//! The same scenarios against Debian's mosquitto as an external broker: what rumqttd gets wrong
//! does not happen there, and the run says nothing about it.

mod common;

use common::mosquitto::Mosquitto;

/// Run a shipped scenario against `broker`; returns the report.
fn run_against(name: &str, broker: &Mosquitto) -> serde_json::Value {
    let dir = tempfile::tempdir().expect("tempdir");
    let text = std::fs::read_to_string(common::shipped(name)).expect("scenario");
    let file = dir.path().join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "{text}\n[broker]\nurl = \"mqtt://127.0.0.1:{}\"\n",
            broker.port
        ),
    )
    .expect("write scenario");
    common::run_passing(&file)
}

#[test]
fn mosquitto_delivers_at_the_qos_mqtt_calls_for() {
    let broker = Mosquitto::start();
    let r = run_against("qos2", &broker);
    assert_eq!(r["totals"]["lost"], 0);
    assert_eq!(r["totals"]["duplicates"], 0);
    assert_eq!(r["totals"]["delivered"], r["totals"]["expected"]);
    assert!(r["run"]["broker"]
        .as_str()
        .is_some_and(|b| b.contains(&broker.port.to_string())));
    let findings = r["findings"].to_string();
    assert!(
        !findings.contains("MQTT says are due"),
        "mosquitto kept to the QoS rules, yet: {findings}"
    );
}

#[test]
fn mosquitto_shares_a_subscription_once_over_its_members() {
    let broker = Mosquitto::start();
    let r = run_against("shared-subscriptions", &broker);
    assert_eq!(r["totals"]["duplicates"], 0);
    assert_eq!(r["totals"]["delivered"], r["totals"]["expected"]);
    let sent = r["totals"]["sent"].as_u64().expect("sent");
    assert_eq!(r["totals"]["expected"].as_u64(), Some(2 * sent));
}

fn behaviour<'a>(r: &'a serde_json::Value, part: &str) -> &'a serde_json::Value {
    let b = &r["behaviour"][part];
    assert!(b.is_object(), "no {part} in the report: {}", r["behaviour"]);
    b
}

#[test]
fn mosquitto_keeps_statuses_for_a_late_observer() {
    let broker = Mosquitto::start();
    let r = run_against("retained-status", &broker);
    let s = behaviour(&r, "status");
    assert_eq!(s["received"], s["expected"]);
    assert_eq!(s["retained_expected"], 40);
    assert_eq!(s["not_retained"], 0);
}

#[test]
fn mosquitto_publishes_the_wills_of_dropped_devices_only() {
    let broker = Mosquitto::start();
    let r = run_against("last-will", &broker);
    let w = behaviour(&r, "wills");
    assert_eq!(w["dropped"], 20);
    assert_eq!(w["received"], 20);
    assert_eq!(w["unexpected"], 0);
}

#[test]
fn mosquitto_queues_for_a_persistent_session() {
    let broker = Mosquitto::start();
    let r = run_against("persistent-session", &broker);
    let s = behaviour(&r, "sessions");
    assert_eq!(s["resumed"], 1);
    assert_eq!(r["totals"]["lost"], 0);
    assert_eq!(r["totals"]["delivered"], r["totals"]["expected"]);
}

#[test]
fn mosquitto_carries_commands_and_answers() {
    let broker = Mosquitto::start();
    let r = run_against("commands", &broker);
    let c = behaviour(&r, "commands");
    assert!(c["sent"].as_u64().is_some_and(|s| s >= 500), "{c}");
    assert_eq!(c["answered"], c["sent"]);
}

#[test]
fn mosquitto_carries_mqtt5_properties_aliases_and_sessions() {
    let broker = Mosquitto::start();
    let r = run_against("mqtt5", &broker);
    assert_eq!(r["totals"]["lost"], 0);
    assert_eq!(r["totals"]["delivered"], r["totals"]["expected"]);
    let m = behaviour(&r, "mqtt5");
    assert_eq!(m["user_properties_missing"], 0, "{m}");
    assert_eq!(m["expiry_missing"], 0, "{m}");
    assert_eq!(m["delivered_after_expiry"], 0, "{m}");
    assert_eq!(
        m["user_properties_expected"], r["totals"]["delivered"],
        "{m}"
    );
    // mosquitto allows 10 aliases by default.
    assert_eq!(m["aliases_refused"], 0, "{m}");
    assert!(
        m["sent_alias_only"].as_u64().is_some_and(|a| a > 400),
        "{m}"
    );
    assert_eq!(behaviour(&r, "sessions")["resumed"], 1);
}
