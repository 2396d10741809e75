//! External brokers over TLS (`mqtts://`, with a CA of the test's own and a client
//! certificate), WebSocket (`ws://`) and both (`wss://`), with a user name and a password from
//! the environment: the run delivers everything and the password appears nowhere in what it
//! writes. mosquitto is the broker; the certificates are made here for each test.
//!
//! mosquitto 2.0's WebSocket listeners (libwebsockets) ignore the address they are given and
//! listen on every interface; the tests connect only to 127.0.0.1, and the listeners take only
//! clients with the test's password.

mod common;

use std::path::Path;
use std::process::Command;

use common::mosquitto::{free_port, mosquitto_program, Mosquitto};
use common::{run_with_env, Run};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};

const USER: &str = "fleet";
const PASSWORD: &str = "s3cret-Never-Reported";
const PASSWORD_VAR: &str = "FLEETBENCH_TEST_BROKER_PASSWORD";

/// A certificate authority and what it signed, as PEM files in `dir`: `ca.pem`, `server.pem`
/// and `server.key` (for 127.0.0.1 and localhost), `client.pem` and `client.key`.
fn make_certificates(dir: &Path, ca_name: &str) {
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).expect("write");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, ca_name);
    let ca_key = KeyPair::generate().expect("CA key");
    let ca = ca.self_signed(&ca_key).expect("CA certificate");
    write(&format!("{ca_name}.pem"), ca.pem());
    for (name, sans) in [
        (
            "server",
            vec!["127.0.0.1".to_string(), "localhost".to_string()],
        ),
        ("client", vec!["fleetbench-client".to_string()]),
    ] {
        let mut params = CertificateParams::new(sans).expect("params");
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().expect("key");
        let cert = params.signed_by(&key, &ca, &ca_key).expect("sign");
        write(&format!("{name}.pem"), cert.pem());
        write(&format!("{name}.key"), key.serialize_pem());
    }
}

/// Ports of the TLS, WebSocket and secure WebSocket listeners.
struct Listeners {
    tls: u16,
    ws: u16,
    wss: u16,
}

/// mosquitto that takes only `USER` with `PASSWORD`; TLS listeners want a client certificate
/// signed by the test's CA.
fn secured_mosquitto() -> (Mosquitto, Listeners) {
    let ports = Listeners {
        tls: free_port(),
        ws: free_port(),
        wss: free_port(),
    };
    let broker = Mosquitto::start_with(|dir| {
        make_certificates(dir, "ca");
        let passwords = dir.join("passwords");
        let made = Command::new(mosquitto_program("mosquitto_passwd"))
            .arg("-b")
            .arg("-c")
            .arg(&passwords)
            .args([USER, PASSWORD])
            .status()
            .expect("run mosquitto_passwd");
        assert!(made.success(), "mosquitto_passwd failed");
        let d = dir.display();
        let tls = format!(
            "cafile {d}/ca.pem\ncertfile {d}/server.pem\nkeyfile {d}/server.key\n\
             require_certificate true\n"
        );
        let config = format!(
            "allow_anonymous false\npassword_file {}\n\
             listener {} 127.0.0.1\n{tls}\
             listener {} 127.0.0.1\nprotocol websockets\n\
             listener {} 127.0.0.1\nprotocol websockets\n{tls}",
            passwords.display(),
            ports.tls,
            ports.ws,
            ports.wss,
        );
        (config, vec![ports.tls, ports.ws, ports.wss])
    });
    (broker, ports)
}

/// A short scenario against `broker` (TOML lines for its `[broker]` table), written beside
/// the certificates of `dir`.
fn scenario(dir: &Path, name: &str, broker: &str) -> std::path::PathBuf {
    let file = dir.join(format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            r#"name = "{name}"
seed = 3
duration = "3s"
drain_timeout = "3s"
warmup = "500ms"

[[group]]
name = "meter"
count = 20
topic = "site/{{group}}/{{index}}"
rate = 5.0
qos = 1

[[observer]]
name = "all"
filters = ["site/#"]

[expect]
delivered_ratio = 1.0
max_lost = 0

[broker]
username = "{USER}"
password_env = "{PASSWORD_VAR}"
{broker}
"#
        ),
    )
    .expect("write scenario");
    file
}

fn run(file: &Path) -> Run {
    run_with_env(file, &[(PASSWORD_VAR, PASSWORD)])
}

/// The `[broker]` lines of a TLS URL with the test's CA and client certificate.
fn with_certificates(url: &str) -> String {
    format!(
        "url = \"{url}\"\nca_file = \"ca.pem\"\n\
         client_cert = \"client.pem\"\nclient_key = \"client.key\""
    )
}

/// The run passed, delivered every message, names the broker by its URL and never wrote the
/// password.
fn assert_delivered(r: &Run, url: &str) {
    assert_eq!(r.code, Some(0), "{}", r.output);
    let report = r.report().expect("report");
    let totals = &report["totals"];
    assert!(
        totals["sent"].as_u64().is_some_and(|s| s >= 200),
        "{totals}"
    );
    assert_eq!(totals["delivered"], totals["expected"], "{totals}");
    assert_eq!(report["run"]["broker"], url);
    assert!(
        !r.report_text.contains(PASSWORD),
        "the report holds the password"
    );
    assert!(
        !r.output.contains(PASSWORD),
        "the output holds the password"
    );
}

#[test]
fn mqtts_with_a_client_certificate_and_a_password() {
    let (broker, ports) = secured_mosquitto();
    let dir = broker.dir.path();
    let url = format!("mqtts://127.0.0.1:{}", ports.tls);
    let file = scenario(dir, "tls", &with_certificates(&url));
    assert_delivered(&run(&file), &url);
}

#[test]
fn websocket_and_secure_websocket() {
    let (broker, ports) = secured_mosquitto();
    let dir = broker.dir.path();
    let url = format!("ws://127.0.0.1:{}/mqtt", ports.ws);
    let file = scenario(dir, "ws", &format!("url = \"{url}\""));
    assert_delivered(&run(&file), &url);

    let url = format!("wss://127.0.0.1:{}/mqtt", ports.wss);
    let file = scenario(dir, "wss", &with_certificates(&url));
    assert_delivered(&run(&file), &url);
}

#[test]
fn a_broker_signed_by_another_ca_is_refused_at_once_and_named() {
    let (broker, ports) = secured_mosquitto();
    let dir = broker.dir.path();
    // A second authority that signed nothing the broker has.
    let other = dir.join("other");
    std::fs::create_dir(&other).expect("mkdir");
    make_certificates(&other, "stranger");
    let file = scenario(
        dir,
        "wrong-ca",
        &format!(
            "url = \"mqtts://127.0.0.1:{}\"\nca_file = \"other/stranger.pem\"\n\
             client_cert = \"client.pem\"\nclient_key = \"client.key\"",
            ports.tls
        ),
    );
    let started = std::time::Instant::now();
    let r = run(&file);
    assert_ne!(r.code, Some(0), "a run that could not connect passed");
    assert!(
        r.output.contains("TLS") && r.output.contains("UnknownIssuer"),
        "the error does not name the TLS failure: {}",
        r.output
    );
    // A refusal ends the run at once instead of waiting out the observers' 30 s.
    assert!(
        started.elapsed() < std::time::Duration::from_secs(20),
        "took {:?} to give up",
        started.elapsed()
    );
}

#[test]
fn a_missing_certificate_file_is_named_before_any_connection() {
    let (broker, ports) = secured_mosquitto();
    let dir = broker.dir.path();
    let file = scenario(
        dir,
        "no-ca",
        &format!(
            "url = \"mqtts://127.0.0.1:{}\"\nca_file = \"nowhere.pem\"",
            ports.tls
        ),
    );
    let r = run(&file);
    assert_eq!(r.code, Some(2), "{}", r.output);
    assert!(
        r.output.contains("nowhere.pem"),
        "the error does not name the file: {}",
        r.output
    );
    assert!(
        r.report_text.is_empty(),
        "a report was written for a run that never started"
    );
}

#[test]
fn a_wrong_password_is_refused_at_once_and_never_shown() {
    let (broker, ports) = secured_mosquitto();
    let wrong = "not-the-Password-42";
    let file = scenario(
        broker.dir.path(),
        "wrong-password",
        &format!("url = \"ws://127.0.0.1:{}\"", ports.ws),
    );
    let r = run_with_env(&file, &[(PASSWORD_VAR, wrong)]);
    assert_ne!(r.code, Some(0), "a run that was refused passed");
    assert!(
        r.output.contains("refused the connection"),
        "the error does not say the broker refused: {}",
        r.output
    );
    assert!(!r.output.contains(wrong), "the output holds the password");
}
