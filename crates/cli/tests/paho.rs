//! The IoT system fleetbench started from works against `fleetbench broker`: a Python paho-mqtt
//! client connects, subscribes, publishes "Hello, MQTT!", receives it and disconnects.
//!
//! Needs python3 with paho-mqtt; `cargo xtask test` (the README's test command) installs it.
//! Without it this test fails and says so: it never skips silently.

mod common;

use std::process::Command;

#[test]
fn paho_client_round_trips_through_fleetbench_broker() {
    let have_paho = Command::new("python3")
        .args(["-c", "import paho.mqtt.client"])
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    assert!(
        have_paho,
        "python3 with paho-mqtt is required; run the tests with `cargo xtask test`, which installs it"
    );
    let broker = common::BrokerProcess::start();
    let port = broker.port;

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/paho_client.py");
    let out = Command::new("python3")
        .args([script, "127.0.0.1", &port.to_string()])
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "paho client failed: {stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("received example/topic: Hello, MQTT!"),
        "{stdout}"
    );
    drop(broker);
}
