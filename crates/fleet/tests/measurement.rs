//! The measurements catch what they must: an injected loss is counted exactly, and a stalled
//! generator shows in latency from intended but not in latency from send.

use std::time::Duration;

use fleetbench_broker::{EmbeddedBroker, EmbeddedConfig};
use fleetbench_fleet::{run, Faults, FleetOptions, RunOutcome, Stall, Target, Timing};
use fleetbench_metrics::Snapshot;
use fleetbench_scenario::{parse, Plan, Shard};
use tokio::sync::watch;

fn scenario(devices: u32, rate: f64, qos: u8, duration: &str) -> String {
    format!(
        r#"
name = "t"
duration = "{duration}"
drain_timeout = "1s"
[[group]]
name = "d"
count = {devices}
topic = "t/{{index}}"
rate = {rate}
qos = {qos}
[[observer]]
name = "o"
filters = ["t/#"]
qos = {qos}
"#
    )
}

async fn run_with(text: &str, faults: Faults) -> RunOutcome {
    let s = parse("test.toml", text).expect("valid scenario");
    let plan = Plan::build(&s, Shard::WHOLE);
    let broker = tokio::task::spawn_blocking(|| {
        EmbeddedBroker::start(&EmbeddedConfig {
            listeners: 1,
            ..EmbeddedConfig::default()
        })
    })
    .await
    .expect("join")
    .expect("broker");
    let target = Target {
        host: "127.0.0.1".into(),
        ports: broker.endpoints().ports.clone(),
        credentials: None,
        transport: Default::default(),
        protocol: Default::default(),
    };
    let (snap_tx, _snap_rx) = watch::channel(Snapshot::default());
    let opts = FleetOptions {
        faults,
        ..FleetOptions::default()
    };
    let timing = Timing {
        duration: s.duration,
        drain_timeout: s.drain_timeout,
        warmup: s.warmup,
    };
    let outcome = run(
        &plan,
        target,
        timing,
        opts,
        tokio_util::sync::CancellationToken::new(),
        snap_tx,
    )
    .await
    .expect("run");
    broker.stop();
    outcome
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_injected_loss_is_counted_exactly() {
    // Every delivery whose sequence number is a multiple of 4 is discarded by the observer.
    let faults = Faults {
        drop_every_nth_seq: Some(4),
        ..Faults::default()
    };
    let o = run_with(&scenario(5, 20.0, 1, "2s"), faults).await;
    let t = &o.accounting.total;
    assert!(o.sent >= 150, "sent only {}", o.sent);
    // Device d sent sequence numbers 0..sent_d, of which 0, 4, 8, ... were dropped.
    let dropped: u64 = o.sent_per_device.iter().map(|s| s.div_ceil(4)).sum();
    assert_eq!(t.lost, dropped);
    assert_eq!(t.expected, o.sent);
    assert_eq!(t.delivered, o.sent - dropped);
    assert_eq!(
        t.in_flight, 0,
        "the drain ran its full timeout: nothing is in flight"
    );
    assert_eq!(t.duplicates, 0);
    assert_eq!(
        o.accounting.by_qos[1].1.lost, t.lost,
        "all losses are on QoS 1 streams"
    );
    // A lost message never enters a latency histogram.
    assert_eq!(o.totals.from_intended.count(), t.delivered);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_generator_shows_in_latency_from_intended_only() {
    let stall = Duration::from_millis(400);
    let faults = Faults {
        stall: Some(Stall {
            after: Duration::from_millis(1_200),
            length: stall,
        }),
        ..Faults::default()
    };
    let o = run_with(&scenario(4, 25.0, 0, "3s"), faults).await;
    let t = &o.accounting.total;
    assert_eq!(t.lost, 0);
    let intended = o.totals.from_intended.summary();
    let send = o.totals.from_send.summary();
    let stall_us = stall.as_micros() as u64;
    // The message due first in the stall waited all of it.
    assert!(
        intended.max_us >= stall_us * 9 / 10 && intended.max_us <= stall_us + 150_000,
        "max from intended {}us, stall {}us",
        intended.max_us,
        stall_us
    );
    // The broker was never slow: from send stays far below the stall.
    assert!(
        send.max_us < stall_us / 4,
        "max from send {}us",
        send.max_us
    );
    // About 4 devices x 25/s x 0.4 s = 40 messages fell due during the stall and left late.
    assert!(
        o.totals.late_sends >= 30,
        "late sends {}",
        o.totals.late_sends
    );
    assert!(
        o.totals.max_lag_us >= stall_us * 9 / 10,
        "max lag {}",
        o.totals.max_lag_us
    );
}
