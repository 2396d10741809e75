//! What a message costs fleetbench's own side of a connection, in CPU time of the thread that
//! drives it: a device publishing at QoS 1 and an observer receiving at QoS 1, one message at a
//! time as at IoT rates (each message its own wake-up), against a scripted peer on another
//! thread that answers at once. The peer's CPU is not counted; the kernel's work for the
//! client's own system calls is.

use std::hint::black_box;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, Criterion};
use fleetbench_fleet::client::{Connection, Ev, Settings, Version};
use fleetbench_scenario::Qos;
use rumqttc::mqttbytes::v4::{self, Packet};
use rumqttc::mqttbytes::QoS;

/// CPU time of the calling thread, in nanoseconds, from the scheduler's own account
/// (`/proc/thread-self/schedstat`: time on the CPU, time waiting, time slices).
fn thread_cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    let ns = stat
        .split_whitespace()
        .next()
        .and_then(|v| v.parse::<u64>().ok())
        .expect("time on the CPU in schedstat");
    Duration::from_nanos(ns)
}

fn settings(port: u16) -> Settings {
    Settings {
        keep_alive: Duration::from_secs(60),
        ..Settings::tcp("127.0.0.1", port, Version::V4, "bench")
    }
}

/// The peer's side: packets in, packets out, blocking.
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
}

impl Peer {
    fn read(&mut self) -> Option<Packet> {
        loop {
            if let Ok(p) = Packet::read(&mut self.buf, 1 << 20) {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    fn write(&mut self, p: Packet) -> bool {
        let mut out = BytesMut::new();
        p.write(&mut out, 1 << 20).is_ok() && self.stream.write_all(&out).is_ok()
    }
}

/// A peer that accepts one client, answers CONNECT, then runs `serve` until the client goes.
fn peer(serve: fn(&mut Peer) -> Option<()>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    std::thread::spawn(move || {
        let (stream, _) = listener.accept().expect("accept");
        let _ = stream.set_nodelay(true);
        let mut p = Peer {
            stream,
            buf: BytesMut::new(),
        };
        if let Some(Packet::Connect(_)) = p.read() {
            let ack = v4::ConnAck::new(v4::ConnectReturnCode::Success, false);
            if p.write(Packet::ConnAck(ack)) {
                let _ = serve(&mut p);
            }
        }
    });
    port
}

/// A broker that acknowledges every publish at once.
fn acknowledge(p: &mut Peer) -> Option<()> {
    loop {
        if let Packet::Publish(m) = p.read()? {
            if !p.write(Packet::PubAck(v4::PubAck::new(m.pkid))) {
                return None;
            }
        }
    }
}

/// One thread runs everything of the client's side, so that its CPU time is the client's.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn connected(port: u16) -> Connection {
    let mut conn = Connection::new(settings(port));
    loop {
        if let Ev::ConnAck { .. } = conn.poll().await.expect("connects") {
            return conn;
        }
    }
}

/// A device: publish one QoS 1 message, drive the connection until its PUBACK.
fn device(c: &mut Criterion) {
    let port = peer(acknowledge);
    let rt = runtime();
    let mut conn = rt.block_on(connected(port));
    let payload = Bytes::from(vec![0u8; 64]);
    c.bench_function("client/device_qos1_cpu_per_message", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu();
                for _ in 0..iters {
                    conn.publish(
                        "site/s/1/reading",
                        Qos::AtLeastOnce,
                        false,
                        payload.clone(),
                        None,
                    )
                    .expect("queued");
                    while !matches!(conn.poll().await.expect("up"), Ev::Acked(_)) {}
                }
                thread_cpu() - start
            })
        })
    });
}

/// The same device on rumqttc 0.25's client, as fleetbench drove it before its own driver: a
/// publisher handing each message to the event loop's task through its request channel.
fn rumqttc_device(c: &mut Criterion) {
    let port = peer(acknowledge);
    let rt = runtime();
    let mut opts = rumqttc::MqttOptions::new("bench-rumqttc", "127.0.0.1", port);
    opts.set_keep_alive(Duration::from_secs(60));
    let (client, mut eventloop) = rumqttc::AsyncClient::new(opts, 64);
    let (acked, mut acks) = tokio::sync::mpsc::unbounded_channel();
    rt.spawn(async move {
        while let Ok(ev) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(rumqttc::Packet::PubAck(_)) = ev {
                if acked.send(()).is_err() {
                    break;
                }
            }
        }
    });
    let payload = vec![0u8; 64];
    c.bench_function("client/rumqttc_device_qos1_cpu_per_message", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu();
                for _ in 0..iters {
                    client
                        .publish("site/s/1/reading", QoS::AtLeastOnce, false, payload.clone())
                        .await
                        .expect("queued");
                    acks.recv().await.expect("acknowledged");
                }
                thread_cpu() - start
            })
        })
    });
}

/// An observer: one QoS 1 delivery read and acknowledged; the peer sends the next one when
/// the PUBACK of the last arrives.
fn observer(c: &mut Criterion) {
    let port = peer(|p| {
        let mut pkid = 1u16;
        loop {
            let mut m = v4::Publish::new("site/s/1/reading", QoS::AtLeastOnce, vec![0u8; 64]);
            m.pkid = pkid;
            if !p.write(Packet::Publish(m)) {
                return None;
            }
            while !matches!(p.read()?, Packet::PubAck(_)) {}
            pkid = pkid % 1000 + 1;
        }
    });
    let rt = runtime();
    let mut conn = rt.block_on(connected(port));
    c.bench_function("client/observer_qos1_cpu_per_message", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = thread_cpu();
                for _ in 0..iters {
                    while !matches!(conn.poll().await.expect("up"), Ev::Publish(_)) {}
                }
                black_box(&conn);
                thread_cpu() - start
            })
        })
    });
}

criterion_group! {
    name = client;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = device, rumqttc_device, observer
}
criterion_main!(client);
