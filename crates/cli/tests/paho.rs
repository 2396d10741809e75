//! The IoT system fleetbench started from works against `fleetbench broker`: a Python paho-mqtt
//! client connects, subscribes, publishes "Hello, MQTT!", receives it and disconnects.
//!
//! Needs python3 with paho-mqtt; `cargo xtask test` (the README's test command) installs it.
//! Without it this test fails and says so: it never skips silently.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};

/// Ends the broker process we started (by its PID) however the test ends.
struct Broker(Child);

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

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
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["broker", "--listen", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start fleetbench broker");
    let stdout = child.stdout.take().expect("stdout");
    let broker = Broker(child);
    // The broker prints its banner once it has answered a CONNECT itself.
    let mut banner = String::new();
    BufReader::new(stdout)
        .read_line(&mut banner)
        .expect("banner");
    assert!(
        banner.contains(&format!("127.0.0.1:{port}")),
        "banner: {banner:?}"
    );

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
