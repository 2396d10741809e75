use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use fleetbench_broker::{nodelay, probe_connack, BrokerError, EmbeddedBroker, EmbeddedConfig};

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port)
}

fn config(listeners: u16, tcp_nodelay: bool) -> EmbeddedConfig {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    EmbeddedConfig {
        listeners,
        tcp_nodelay,
        ..EmbeddedConfig::default()
    }
}

/// The broker-side socket of a client connection, once the broker has accepted it.
fn accepted_nodelay(broker_port: u16, client: &TcpStream) -> bool {
    let peer = client.local_addr().expect("client address");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(fd) = nodelay::find_accepted(loopback(broker_port), peer).expect("scan fds") {
            return nodelay::socket_has_nodelay(fd).expect("getsockopt");
        }
        assert!(
            Instant::now() < deadline,
            "broker never accepted the connection"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn every_listener_answers_connect_with_connack() {
    let broker = EmbeddedBroker::start(&config(3, true)).expect("start");
    let ports = broker.endpoints().ports.clone();
    assert_eq!(ports.len(), 3);
    let mut distinct = ports.clone();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "ports {ports:?}");
    for (i, p) in ports.iter().enumerate() {
        probe_connack(
            loopback(*p),
            &format!("t-{i}"),
            None,
            Duration::from_secs(2),
        )
        .expect("CONNACK");
    }
    broker.stop();
}

#[test]
fn accepted_sockets_inherit_tcp_nodelay_only_when_asked() {
    for wanted in [true, false] {
        let broker = EmbeddedBroker::start(&config(1, wanted)).expect("start");
        let port = broker.endpoints().ports[0];
        let client = TcpStream::connect(loopback(port)).expect("connect");
        assert_eq!(
            accepted_nodelay(port, &client),
            wanted,
            "tcp_nodelay = {wanted}"
        );
        broker.stop();
    }
}

#[test]
fn stopping_releases_the_ports() {
    let broker = EmbeddedBroker::start(&config(2, true)).expect("start");
    let ports = broker.endpoints().ports.clone();
    broker.stop();
    let deadline = Instant::now() + Duration::from_secs(5);
    for p in ports {
        while TcpStream::connect(loopback(p)).is_ok() {
            assert!(
                Instant::now() < deadline,
                "port {p} still accepts after stop"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

#[test]
fn an_open_listener_needs_credentials_or_an_explicit_opt_out() {
    let cfg = EmbeddedConfig {
        bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ..config(1, true)
    };
    match EmbeddedBroker::start(&cfg) {
        Err(BrokerError::OpenListener { .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("listened on 0.0.0.0 without credentials"),
    }
}

#[test]
fn a_listener_with_credentials_is_ready_for_them_and_refuses_anonymous_clients() {
    let cfg = EmbeddedConfig {
        credentials: Some(("fleet".into(), "s3cret".into())),
        ..config(1, true)
    };
    // Readiness itself is a CONNECT with the credentials answered by a CONNACK.
    let broker = EmbeddedBroker::start(&cfg).expect("start with credentials");
    let addr = loopback(broker.endpoints().ports[0]);
    let timeout = Duration::from_secs(2);
    probe_connack(addr, "with-credentials", Some(("fleet", "s3cret")), timeout).expect("accepted");
    let refused = probe_connack(addr, "anonymous", None, timeout);
    assert!(refused.is_err(), "an anonymous client was accepted");
    let wrong = probe_connack(addr, "wrong", Some(("fleet", "nope")), timeout);
    assert!(wrong.is_err(), "a wrong password was accepted");
    broker.stop();
}

#[test]
fn a_config_printed_for_debugging_names_the_user_but_not_the_password() {
    let cfg = EmbeddedConfig {
        credentials: Some(("fleet".into(), "s3cret".into())),
        ..config(1, true)
    };
    let shown = format!("{cfg:?}");
    assert!(shown.contains("fleet"), "{shown}");
    assert!(
        !shown.contains("s3cret"),
        "the password is printed: {shown}"
    );
}
