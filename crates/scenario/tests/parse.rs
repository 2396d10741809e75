use std::time::Duration;

use fleetbench_scenario::payload::Payload;
use fleetbench_scenario::{parse, BrokerTarget, Plan, Qos, Shard};

const GOOD: &str = r#"
name = "demo"
description = "two groups"
seed = 7
duration = "10s"

[[group]]
name = "temp"
count = 3
topic = "fleet/{group}/{index}"
rate = 2.0
qos = 0

[[group]]
name = "door"
count = 2
client_id = "door-{index}"
topic = "doors/{index}"
rate = 0.5
connect_rate = 10

[[observer]]
name = "all"
filters = ["fleet/#", "doors/+"]

[[observer]]
name = "temps"
count = 2
filters = ["fleet/temp/+"]
qos = 0

[expect]
delivered_ratio = 1.0
p99 = "20ms"
"#;

#[test]
fn defaults_are_resolved() {
    let s = parse("demo.toml", GOOD).expect("valid");
    assert_eq!(s.duration, Duration::from_secs(10));
    assert_eq!(s.drain_timeout, Duration::from_secs(5));
    assert_eq!(s.groups[0].client_id, "{group}-{index}");
    assert_eq!(s.groups[0].qos, Qos::AtMostOnce);
    assert_eq!(s.groups[1].qos, Qos::AtLeastOnce);
    assert_eq!(s.groups[0].payload, Payload::Binary { size: 64 });
    assert!(matches!(s.broker, BrokerTarget::Embedded(ref e) if e.tcp_nodelay && e.listeners >= 2));
    assert_eq!(s.expect.p99, Some(Duration::from_millis(20)));
    assert_eq!(s.device_count(), 5);
    assert_eq!(s.observer_count(), 3);
}

#[test]
fn plan_renders_devices_and_who_observes_whom() {
    let s = parse("demo.toml", GOOD).expect("valid");
    let plan = Plan::build(&s, Shard::WHOLE);
    let ids: Vec<_> = plan.devices.iter().map(|d| d.client_id.as_str()).collect();
    assert_eq!(ids, ["temp-0", "temp-1", "temp-2", "door-0", "door-1"]);
    assert_eq!(plan.devices[4].topic, "doors/1");
    assert_eq!(plan.devices[4].id, 4);
    assert_eq!(plan.devices[4].connect_at, Duration::from_millis(100));
    assert_eq!(plan.observers.len(), 3);
    assert_eq!(plan.observers[0].expects, vec![true; 5]);
    assert_eq!(
        plan.observers[1].expects,
        vec![true, true, true, false, false]
    );
    assert!(plan
        .devices
        .iter()
        .all(|d| d.offset.as_secs_f64() < 1.0 / d.rate));
    // 3 temps at 2/s + 2 doors at 0.5/s for "all", and 3 temps at 2/s for each of two "temps".
    assert!((plan.expected_deliveries_per_s() - (7.0 + 12.0)).abs() < 1e-9);
}

#[test]
fn same_seed_same_plan_and_shards_partition_the_fleet() {
    let s = parse("demo.toml", GOOD).expect("valid");
    let a = Plan::build(&s, Shard::WHOLE);
    let b = Plan::build(&s, Shard::WHOLE);
    let phases = |p: &Plan| {
        p.devices
            .iter()
            .map(|d| (d.offset, d.seed))
            .collect::<Vec<_>>()
    };
    assert_eq!(phases(&a), phases(&b));
    let mut ids = Vec::new();
    for i in 0..3 {
        let shard = Plan::build(&s, Shard { index: i, count: 3 });
        for d in &shard.devices {
            let whole = &a.devices[d.id as usize];
            assert_eq!(
                (whole.offset, whole.seed, &whole.topic),
                (d.offset, d.seed, &d.topic)
            );
        }
        ids.extend(shard.devices.iter().map(|d| d.id));
    }
    ids.sort();
    assert_eq!(ids, (0..5).collect::<Vec<_>>());
}

#[test]
fn broker_urls_name_their_transport_port_and_path() {
    use fleetbench_scenario::Scheme;
    let cases = [
        ("mqtt://127.0.0.1", Scheme::Mqtt, "127.0.0.1", 1883, ""),
        (
            "mqtts://broker.example:9883",
            Scheme::Mqtts,
            "broker.example",
            9883,
            "",
        ),
        (
            "ws://127.0.0.1:8080",
            Scheme::Ws,
            "127.0.0.1",
            8080,
            "/mqtt",
        ),
        ("wss://[::1]/ws/", Scheme::Wss, "::1", 443, "/ws"),
        ("mqtt://[::1]", Scheme::Mqtt, "::1", 1883, ""),
    ];
    for (url, scheme, host, port, path) in cases {
        let text = format!("{GOOD}\n[broker]\nurl = \"{url}\"\n");
        let s = parse("demo.toml", &text).unwrap_or_else(|e| panic!("{url}: {e}"));
        let BrokerTarget::External(x) = s.broker else {
            panic!("{url}: not an external broker");
        };
        assert_eq!(
            (x.scheme, x.host.as_str(), x.port, x.path.as_str()),
            (scheme, host, port, path),
            "{url}"
        );
        assert_eq!(
            parse("demo.toml", &format!("{GOOD}\n[broker]\nurl = \"{}\"\n", x.url_without_credentials()))
                .map(|s| matches!(s.broker, BrokerTarget::External(ref y) if y.url_without_credentials() == x.url_without_credentials()))
                .ok(),
            Some(true),
            "{url}: the URL a report shows reads back the same"
        );
    }
    let err = parse(
        "demo.toml",
        &format!("{GOOD}\n[broker]\nurl = \"http://x\"\n"),
    )
    .expect_err("http is not MQTT");
    assert!(err.to_string().contains("\"mqtts\""), "{err}");
}
