//! Hot paths of a run, each with its budget: the cost per call that keeps the generator far
//! from being the bottleneck at 100k messages per second on one core (10 us per message in all).
//!
//! Run with `cargo xtask bench`; docs/PERFORMANCE.md records measured values.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion};
use fleetbench_fleet::header::Header;
use fleetbench_fleet::payload::PayloadMaker;
use fleetbench_fleet::timer::PreciseTimer;
use fleetbench_metrics::aggregate::Stage;
use fleetbench_metrics::{Aggregator, Flush, LatencyHistogram, Ledger, ObserverFlush};
use fleetbench_scenario::topic;

/// Budget: encode 200 ns, decode 20 ns (a 64-byte payload).
fn payload(c: &mut Criterion) {
    let h = Header {
        device: 42,
        seq: 1_000,
        intended_ns: 123_456_789,
        sent_ns: 123_456_999,
    };
    c.bench_function("payload/encode_64B", |b| b.iter(|| black_box(h).encode(64)));
    let buf = h.encode(64);
    c.bench_function("payload/decode", |b| {
        b.iter(|| Header::decode(black_box(&buf)))
    });
}

/// Budget: 2 us to make a JSON telemetry payload of the `telemetry-json` scenario (10 fields
/// from generators) and 100 ns to find and decode its header.
fn json_payload(c: &mut Criterion) {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../scenarios/telemetry-json.toml"
    );
    let text = std::fs::read_to_string(path).expect("the shipped telemetry-json scenario");
    let scenario = fleetbench_scenario::parse(path, &text).expect("valid scenario");
    let plan = fleetbench_scenario::Plan::build(&scenario, fleetbench_scenario::Shard::WHOLE);
    let mut maker = PayloadMaker::new(&plan.devices[0]);
    let mut h = Header {
        device: 0,
        seq: 0,
        intended_ns: 123_456_789,
        sent_ns: 123_456_999,
    };
    c.bench_function("payload/json_make_10_fields", |b| {
        b.iter(|| {
            h.seq += 1;
            black_box(maker.make(&h, 1_700_000_000_000_000_000 + h.intended_ns))
        })
    });
    let buf = maker.make(&h, 1_700_000_000_000_000_000);
    c.bench_function("payload/json_decode", |b| {
        b.iter(|| Header::from_payload(black_box(&buf)))
    });
}

/// Budget: 50 ns per delivery recorded in the ledger.
fn ledger(c: &mut Criterion) {
    let expects = vec![true; 1_000];
    c.bench_function("ledger/record_in_order_1k_streams", |b| {
        let mut ledger = Ledger::new(&expects);
        let mut seq = 0u64;
        b.iter(|| {
            let device = (seq % 1_000) as usize;
            let r = ledger.record(device, seq / 1_000);
            seq += 1;
            black_box(r)
        })
    });
}

/// Budget: record 20 ns; merging one observer's tick histogram 50 us.
fn histogram(c: &mut Criterion) {
    let mut h = LatencyHistogram::new();
    let mut v = 1_000u64;
    c.bench_function("histogram/record_ns", |b| {
        b.iter(|| {
            v = v
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            h.record_ns(black_box(v % 50_000_000));
        })
    });
    let mut src = LatencyHistogram::new();
    for i in 0..10_000u64 {
        src.record_us(100 + i % 5_000);
    }
    c.bench_function("histogram/merge", |b| {
        let mut dst = LatencyHistogram::new();
        b.iter(|| dst.add(black_box(&src)))
    });
}

/// Budget: 200 ns to render a client id or topic.
fn topics(c: &mut Criterion) {
    c.bench_function("topic/render", |b| {
        b.iter(|| {
            topic::render(
                black_box("plant/{group}/{index}/temperature"),
                "sensor",
                black_box(9_876),
                0,
            )
        })
    });
    c.bench_function("topic/match_wildcard", |b| {
        b.iter(|| {
            topic::matches(
                black_box("plant/+/+/temperature"),
                black_box("plant/sensor/9876/temperature"),
            )
        })
    });
}

/// Budget: a tick merging 4 observers' flushes and 1,000 device flushes within 2 ms.
fn snapshot(c: &mut Criterion) {
    let mut hist = LatencyHistogram::new();
    for i in 0..1_000u64 {
        hist.record_us(100 + i);
    }
    c.bench_function("snapshot/tick_4_observers_1k_devices", |b| {
        let (tx, mut agg) = Aggregator::new(1_000, 4, Duration::from_secs(5));
        let mut t = Duration::ZERO;
        b.iter(|| {
            for o in 0..4 {
                let _ = tx.send(Flush::Observer(ObserverFlush {
                    observer: o,
                    from_intended: hist.clone(),
                    from_send: hist.clone(),
                    delivered: 1_000,
                    ..ObserverFlush::default()
                }));
            }
            for d in 0..1_000u32 {
                let _ = tx.send(Flush::Device(fleetbench_metrics::DeviceFlush {
                    device: d,
                    sent: t.as_secs(),
                    ack_us: vec![150],
                    ..Default::default()
                }));
            }
            t += Duration::from_millis(250);
            black_box(agg.tick(t, Stage::Running).sent)
        })
    });
}

/// How late a scheduled send leaves: the mean time from a deadline 300 us ahead to the task
/// running again. Budget for the precise timer: 200 us; tokio's 1 ms wheel is shown beside it
/// for the ratio. (A timed unit test could not hold this on a shared machine; a bench can.)
fn timer(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .expect("tokio runtime");
    let precise = PreciseTimer::start().expect("timer thread");
    let ahead = Duration::from_micros(300);
    c.bench_function("timer/precise_lateness", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut late = Duration::ZERO;
                for _ in 0..iters {
                    let deadline = Instant::now() + ahead;
                    precise.sleep_until(deadline).await;
                    late += deadline.elapsed();
                }
                late
            })
        })
    });
    c.bench_function("timer/tokio_lateness", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let mut late = Duration::ZERO;
                for _ in 0..iters {
                    let deadline = Instant::now() + ahead;
                    tokio::time::sleep_until(deadline.into()).await;
                    late += deadline.elapsed();
                }
                late
            })
        })
    });
}

criterion_group! {
    name = hot_paths;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = payload, json_payload, ledger, histogram, topics, snapshot, timer
}
criterion_main!(hot_paths);
