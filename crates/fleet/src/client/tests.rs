//! The connection driver against a scripted broker on loopback: what it writes, when, and
//! what it makes of what it reads.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use fleetbench_scenario::Qos;
use rumqttc::mqttbytes::v4::{self, Packet};
use rumqttc::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5 as p5;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::timeout;

use super::{Connection, Ev, Settings, Version};

fn settings(port: u16, version: Version) -> Settings {
    Settings::tcp("127.0.0.1", port, version, "driver-test")
}

/// One accepted client, read and written packet by packet (MQTT 3.1.1).
struct Peer {
    stream: TcpStream,
    buf: BytesMut,
}

impl Peer {
    async fn accept(listener: &TcpListener) -> Peer {
        let (stream, _) = timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the client connects")
            .expect("accept");
        Peer {
            stream,
            buf: BytesMut::new(),
        }
    }

    /// The next packet, or None when none comes within `wait`.
    async fn read(&mut self, wait: Duration) -> Option<Packet> {
        loop {
            match Packet::read(&mut self.buf, 1 << 20) {
                Ok(p) => return Some(p),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {}
                Err(e) => panic!("the client wrote a bad packet: {e}"),
            }
            match timeout(wait, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(0)) | Err(_) => return None,
                Ok(Ok(_)) => {}
                Ok(Err(e)) => panic!("read: {e}"),
            }
        }
    }

    async fn expect(&mut self) -> Packet {
        self.read(Duration::from_secs(5))
            .await
            .expect("a packet from the client")
    }

    async fn write(&mut self, p: Packet) {
        let mut out = BytesMut::new();
        p.write(&mut out, 1 << 20).expect("encode");
        self.stream.write_all(&out).await.expect("write");
    }

    /// Read CONNECT, answer CONNACK.
    async fn handshake(&mut self) {
        assert!(matches!(self.expect().await, Packet::Connect(_)));
        let ack = v4::ConnAck::new(v4::ConnectReturnCode::Success, false);
        self.write(Packet::ConnAck(ack)).await;
    }
}

async fn listener() -> (TcpListener, u16) {
    let l = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("address").port();
    (l, port)
}

/// Poll until `want` says yes to an event; panics after 5 s.
async fn until(conn: &mut Connection, mut want: impl FnMut(&Ev) -> bool) -> Ev {
    timeout(Duration::from_secs(5), async {
        loop {
            match conn.poll().await {
                Ok(ev) if want(&ev) => return ev,
                Ok(_) => {}
                Err(e) => panic!("connection failed: {e}"),
            }
        }
    })
    .await
    .expect("the event within 5 s")
}

fn payload(n: u8) -> Bytes {
    Bytes::from(vec![n; 16])
}

#[tokio::test]
async fn a_publish_in_flight_goes_again_with_dup_after_a_reconnect() {
    let (l, port) = listener().await;
    let mut conn = Connection::new(settings(port, Version::V4));
    let broker = tokio::spawn(async move {
        let mut first = Peer::accept(&l).await;
        first.handshake().await;
        let Packet::Publish(p) = first.expect().await else {
            panic!("expected PUBLISH");
        };
        assert!(!p.dup, "a first send is not a duplicate");
        // The connection breaks before PUBACK.
        drop(first);
        let mut second = Peer::accept(&l).await;
        second.handshake().await;
        let Packet::Publish(again) = second.expect().await else {
            panic!("expected the PUBLISH again");
        };
        assert!(again.dup, "a publish sent again carries DUP");
        assert_eq!((again.pkid, &again.payload[..]), (p.pkid, &p.payload[..]));
        second
            .write(Packet::PubAck(v4::PubAck::new(again.pkid)))
            .await;
        // Nothing else is owed.
        assert!(second.read(Duration::from_millis(300)).await.is_none());
    });
    until(&mut conn, |e| matches!(e, Ev::ConnAck { .. })).await;
    conn.publish("t/1", Qos::AtLeastOnce, false, payload(1), None)
        .expect("queued");
    let err = timeout(Duration::from_secs(5), async {
        loop {
            if let Err(e) = conn.poll().await {
                return e;
            }
        }
    })
    .await
    .expect("the broken connection is reported");
    assert_eq!(err.kind(), fleetbench_metrics::ErrorKind::Io, "{err}");
    assert_eq!(conn.completed(), 0, "nothing acknowledged yet");
    until(&mut conn, |e| matches!(e, Ev::Acked(_))).await;
    assert_eq!(conn.completed(), 1);
    broker
        .await
        .expect("the scripted broker saw what it expected");
}

#[tokio::test]
async fn what_was_handed_over_is_unwritten_until_a_poll_writes_it() {
    // A device that drops its connection looks at `unwritten` first: a publish handed over in
    // the same turn is still in the buffer, and a cut now would discard it unsent.
    let (l, port) = listener().await;
    let mut conn = Connection::new(settings(port, Version::V4));
    let broker = tokio::spawn(async move {
        let mut peer = Peer::accept(&l).await;
        peer.handshake().await;
        let Packet::Publish(p) = peer.expect().await else {
            panic!("expected PUBLISH");
        };
        peer.write(Packet::PubAck(v4::PubAck::new(p.pkid))).await;
        // Kept open until the client has read the PUBACK.
        tokio::time::sleep(Duration::from_secs(2)).await;
        p.payload
    });
    until(&mut conn, |e| matches!(e, Ev::ConnAck { .. })).await;
    assert!(!conn.unwritten(), "nothing handed over yet");
    conn.publish("t/1", Qos::AtLeastOnce, false, payload(7), None)
        .expect("queued");
    assert!(conn.unwritten(), "handed over, not yet written");
    until(&mut conn, |e| matches!(e, Ev::Acked(_))).await;
    assert!(!conn.unwritten(), "written (and acknowledged)");
    let got = broker.await.expect("the scripted broker got the publish");
    assert_eq!(&got[..], &payload(7)[..]);
}

#[tokio::test]
async fn every_delivery_read_at_once_is_acknowledged_in_order() {
    let (l, port) = listener().await;
    let mut conn = Connection::new(settings(port, Version::V4));
    let broker = tokio::spawn(async move {
        let mut peer = Peer::accept(&l).await;
        peer.handshake().await;
        // Fifty QoS 1 deliveries in one write.
        let mut out = BytesMut::new();
        for pkid in 1..=50u16 {
            let mut p = v4::Publish::new("obs/x", QoS::AtLeastOnce, vec![7u8; 8]);
            p.pkid = pkid;
            Packet::Publish(p).write(&mut out, 1 << 20).expect("encode");
        }
        peer.stream.write_all(&out).await.expect("write");
        let mut acked = Vec::new();
        while acked.len() < 50 {
            match peer.expect().await {
                Packet::PubAck(a) => acked.push(a.pkid),
                other => panic!("expected PUBACK, got {other:?}"),
            }
        }
        assert_eq!(
            acked,
            (1..=50).collect::<Vec<_>>(),
            "each delivery acknowledged, in order"
        );
    });
    until(&mut conn, |e| matches!(e, Ev::ConnAck { .. })).await;
    let mut received = 0;
    while received < 50 {
        if let Ev::Publish(m) = until(&mut conn, |e| matches!(e, Ev::Publish(_))).await {
            assert_eq!((m.topic(), m.qos), ("obs/x", 1));
            received += 1;
        }
    }
    // Keep polling while the acknowledgements leave.
    let _ = timeout(Duration::from_millis(300), conn.poll()).await;
    broker.await.expect("every delivery acknowledged");
}

#[tokio::test]
async fn a_broker_that_stops_answering_is_named_by_the_keep_alive() {
    let (l, port) = listener().await;
    let mut s = settings(port, Version::V4);
    s.keep_alive = Duration::from_secs(1);
    let mut conn = Connection::new(s);
    let broker = tokio::spawn(async move {
        let mut peer = Peer::accept(&l).await;
        peer.handshake().await;
        // PINGREQ comes and is never answered; the socket stays open.
        assert!(matches!(peer.expect().await, Packet::PingReq));
        tokio::time::sleep(Duration::from_secs(5)).await;
    });
    until(&mut conn, |e| matches!(e, Ev::ConnAck { .. })).await;
    let started = std::time::Instant::now();
    let err = timeout(Duration::from_secs(5), conn.poll())
        .await
        .expect("the silence is noticed")
        .expect_err("the connection fails");
    assert_eq!(err.kind(), fleetbench_metrics::ErrorKind::Timeout, "{err}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "after two keep-alive intervals, not {took:?}"
    );
    broker.abort();
}

/// The next MQTT 5 packet, or None when none comes within `wait`.
async fn read5(stream: &mut TcpStream, buf: &mut BytesMut, wait: Duration) -> Option<p5::Packet> {
    loop {
        match p5::Packet::read(buf, Some(1 << 20)) {
            Ok(p) => return Some(p),
            Err(rumqttc::v5::mqttbytes::Error::InsufficientBytes(_)) => {}
            Err(e) => panic!("bad packet: {e}"),
        }
        match timeout(wait, stream.read_buf(buf)).await {
            Ok(Ok(0)) | Err(_) => return None,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => panic!("read: {e}"),
        }
    }
}

#[tokio::test]
async fn the_brokers_receive_maximum_bounds_what_is_in_flight() {
    let (l, port) = listener().await;
    let mut conn = Connection::new(settings(port, Version::V5));
    let broker = tokio::spawn(async move {
        let (mut stream, _) = l.accept().await.expect("accept");
        let mut buf = BytesMut::new();
        assert!(matches!(
            read5(&mut stream, &mut buf, Duration::from_secs(5)).await,
            Some(p5::Packet::Connect(..))
        ));
        let props = p5::ConnAckProperties {
            session_expiry_interval: None,
            receive_max: Some(2),
            max_qos: None,
            retain_available: None,
            max_packet_size: None,
            assigned_client_identifier: None,
            topic_alias_max: None,
            reason_string: None,
            user_properties: Vec::new(),
            wildcard_subscription_available: None,
            subscription_identifiers_available: None,
            shared_subscription_available: None,
            server_keep_alive: None,
            response_information: None,
            server_reference: None,
            authentication_method: None,
            authentication_data: None,
        };
        let ack = p5::ConnAck {
            session_present: false,
            code: p5::ConnectReturnCode::Success,
            properties: Some(props),
        };
        let mut out = BytesMut::new();
        ack.write(&mut out).expect("encode");
        stream.write_all(&out).await.expect("write");
        let mut pkids = Vec::new();
        while let Some(p) = read5(&mut stream, &mut buf, Duration::from_millis(400)).await {
            if let p5::Packet::Publish(p) = p {
                pkids.push(p.pkid);
            }
        }
        assert_eq!(pkids.len(), 2, "no more in flight than the broker allows");
        // One PUBACK makes room for exactly one more.
        let mut out = BytesMut::new();
        p5::PubAck::new(pkids[0], None)
            .write(&mut out)
            .expect("encode");
        stream.write_all(&out).await.expect("write");
        let mut more = 0;
        while let Some(p) = read5(&mut stream, &mut buf, Duration::from_millis(400)).await {
            more += u32::from(matches!(p, p5::Packet::Publish(_)));
        }
        assert_eq!(more, 1);
    });
    until(&mut conn, |e| matches!(e, Ev::ConnAck { .. })).await;
    for i in 0..5 {
        conn.publish("t/5", Qos::AtLeastOnce, false, payload(i), None)
            .expect("queued");
    }
    // Drive the connection while the broker looks.
    let _ = timeout(Duration::from_secs(2), async {
        loop {
            if conn.poll().await.is_err() {
                break;
            }
        }
    })
    .await;
    broker.await.expect("the in-flight limit held");
    assert_eq!(conn.completed(), 1);
}
