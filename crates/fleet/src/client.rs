//! One client API over rumqttc's MQTT 3.1.1 client and its MQTT 5 client, so that devices,
//! observers and controllers are written once. The events are reduced to what they use; MQTT 5
//! publish properties travel with received messages and can be sent with data.

use bytes::Bytes;
use fleetbench_scenario::Qos;
use rumqttc::v5;
use rumqttc::v5::mqttbytes::v5 as p5;
use rumqttc::Outgoing;

pub use rumqttc::v5::mqttbytes::v5::PublishProperties;

/// The sending half (cheap to clone).
#[derive(Clone)]
pub enum Client {
    V4(rumqttc::AsyncClient),
    V5(v5::AsyncClient),
}

/// The connection half, polled by one task.
pub enum Connection {
    V4(Box<rumqttc::EventLoop>),
    V5(Box<v5::EventLoop>),
}

/// A request the client could not queue (boxed: it carries the request back).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    V4(Box<rumqttc::ClientError>),
    #[error(transparent)]
    V5(Box<v5::ClientError>),
}

impl From<rumqttc::ClientError> for ClientError {
    fn from(e: rumqttc::ClientError) -> Self {
        ClientError::V4(Box::new(e))
    }
}

impl From<v5::ClientError> for ClientError {
    fn from(e: v5::ClientError) -> Self {
        ClientError::V5(Box::new(e))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error(transparent)]
    V4(#[from] rumqttc::ConnectionError),
    #[error(transparent)]
    V5(#[from] v5::ConnectionError),
}

/// What a poll brought that the fleet acts on.
pub enum Ev {
    ConnAck {
        session_present: bool,
        /// The broker's topic alias maximum (0: no aliases; always 0 in MQTT 3.1.1).
        alias_max: u16,
    },
    /// The QoS granted to each filter of a SUBSCRIBE (None: refused).
    SubAck(Vec<Option<u8>>),
    Publish(Received),
    /// PUBACK (QoS 1) or PUBCOMP (QoS 2) for this packet id.
    Acked(u16),
    /// A PUBLISH left with this packet id (0 for QoS 0).
    Sent(u16),
    SentDisconnect,
    Other,
}

pub struct Received {
    pub topic: Bytes,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// MQTT 5 only.
    pub properties: Option<PublishProperties>,
}

impl Received {
    pub fn topic(&self) -> &str {
        std::str::from_utf8(&self.topic).unwrap_or("<not UTF-8>")
    }
}

pub fn qos4(q: Qos) -> rumqttc::QoS {
    match q {
        Qos::AtMostOnce => rumqttc::QoS::AtMostOnce,
        Qos::AtLeastOnce => rumqttc::QoS::AtLeastOnce,
        Qos::ExactlyOnce => rumqttc::QoS::ExactlyOnce,
    }
}

pub fn qos5(q: Qos) -> v5::mqttbytes::QoS {
    match q {
        Qos::AtMostOnce => v5::mqttbytes::QoS::AtMostOnce,
        Qos::AtLeastOnce => v5::mqttbytes::QoS::AtLeastOnce,
        Qos::ExactlyOnce => v5::mqttbytes::QoS::ExactlyOnce,
    }
}

impl Client {
    /// Queue a publish, waiting while the request channel is full. `properties` are sent by
    /// MQTT 5 clients only.
    pub async fn publish(
        &self,
        topic: &str,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
        properties: Option<PublishProperties>,
    ) -> Result<(), ClientError> {
        match (self, properties) {
            (Client::V4(c), _) => Ok(c.publish(topic, qos4(qos), retain, payload).await?),
            (Client::V5(c), None) => Ok(c.publish(topic, qos5(qos), retain, payload).await?),
            (Client::V5(c), Some(p)) => Ok(c
                .publish_with_properties(topic, qos5(qos), retain, payload, p)
                .await?),
        }
    }

    /// Queue a publish without waiting (fails when the request channel is full).
    pub fn try_publish(
        &self,
        topic: &str,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        match self {
            Client::V4(c) => Ok(c.try_publish(topic, qos4(qos), retain, payload)?),
            Client::V5(c) => Ok(c.try_publish(topic, qos5(qos), retain, payload)?),
        }
    }

    /// One SUBSCRIBE for all of `filters`.
    pub fn try_subscribe_many(
        &self,
        filters: impl IntoIterator<Item = (String, Qos)>,
    ) -> Result<(), ClientError> {
        match self {
            Client::V4(c) => Ok(c.try_subscribe_many(
                filters
                    .into_iter()
                    .map(|(f, q)| rumqttc::SubscribeFilter::new(f, qos4(q))),
            )?),
            Client::V5(c) => Ok(c.try_subscribe_many(
                filters
                    .into_iter()
                    .map(|(f, q)| p5::Filter::new(f, qos5(q))),
            )?),
        }
    }

    pub fn try_disconnect(&self) -> Result<(), ClientError> {
        match self {
            Client::V4(c) => Ok(c.try_disconnect()?),
            Client::V5(c) => Ok(c.try_disconnect()?),
        }
    }
}

impl Connection {
    pub async fn poll(&mut self) -> Result<Ev, ConnError> {
        match self {
            Connection::V4(l) => Ok(event4(l.poll().await?)),
            Connection::V5(l) => Ok(event5(l.poll().await?)),
        }
    }

    /// Drop the network connection without a DISCONNECT (pending requests are kept).
    pub fn clean(&mut self) {
        match self {
            Connection::V4(l) => l.clean(),
            Connection::V5(l) => l.clean(),
        }
    }
}

fn sent(o: Outgoing) -> Ev {
    match o {
        Outgoing::Publish(pkid) => Ev::Sent(pkid),
        Outgoing::Disconnect => Ev::SentDisconnect,
        _ => Ev::Other,
    }
}

fn event4(e: rumqttc::Event) -> Ev {
    use rumqttc::{Event, Packet, SubscribeReasonCode};
    match e {
        Event::Incoming(Packet::ConnAck(a)) => Ev::ConnAck {
            session_present: a.session_present,
            alias_max: 0,
        },
        Event::Incoming(Packet::SubAck(a)) => Ev::SubAck(
            a.return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => Some(*q as u8),
                    SubscribeReasonCode::Failure => None,
                })
                .collect(),
        ),
        Event::Incoming(Packet::Publish(p)) => Ev::Publish(Received {
            topic: Bytes::from(p.topic.into_bytes()),
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            properties: None,
        }),
        Event::Incoming(Packet::PubAck(a)) => Ev::Acked(a.pkid),
        Event::Incoming(Packet::PubComp(a)) => Ev::Acked(a.pkid),
        Event::Outgoing(o) => sent(o),
        _ => Ev::Other,
    }
}

fn event5(e: v5::Event) -> Ev {
    use p5::{Packet, SubscribeReasonCode};
    match e {
        v5::Event::Incoming(Packet::ConnAck(a)) => Ev::ConnAck {
            session_present: a.session_present,
            alias_max: a
                .properties
                .as_ref()
                .and_then(|p| p.topic_alias_max)
                .unwrap_or(0),
        },
        v5::Event::Incoming(Packet::SubAck(a)) => Ev::SubAck(
            a.return_codes
                .iter()
                .map(|c| match c {
                    SubscribeReasonCode::Success(q) => Some(*q as u8),
                    _ => None,
                })
                .collect(),
        ),
        v5::Event::Incoming(Packet::Publish(p)) => Ev::Publish(Received {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos as u8,
            retain: p.retain,
            properties: p.properties,
        }),
        v5::Event::Incoming(Packet::PubAck(a)) => Ev::Acked(a.pkid),
        v5::Event::Incoming(Packet::PubComp(a)) => Ev::Acked(a.pkid),
        v5::Event::Outgoing(o) => sent(o),
        _ => Ev::Other,
    }
}

impl ConnError {
    /// The client asked to stop (all its senders gone): not a failure.
    pub fn is_requests_done(&self) -> bool {
        matches!(
            self,
            ConnError::V4(rumqttc::ConnectionError::RequestsDone)
                | ConnError::V5(v5::ConnectionError::RequestsDone)
        )
    }

    /// A short, stable name for the error, to group errors by kind.
    pub fn kind(&self) -> &'static str {
        use rumqttc::ConnectionError as E4;
        use v5::ConnectionError as E5;
        use ConnError::{V4, V5};
        match self {
            V4(E4::NetworkTimeout | E4::FlushTimeout) | V5(E5::Timeout(_)) => "timeout",
            V4(E4::ConnectionRefused(_)) | V5(E5::ConnectionRefused(_)) => "connect refused",
            V4(E4::Io(_)) | V5(E5::Io(_)) => "io",
            V4(E4::MqttState(_)) | V5(E5::MqttState(_)) => "protocol",
            V4(E4::Tls(_)) | V5(E5::Tls(_)) => "tls",
            V4(E4::Websocket(_) | E4::WsConnect(_) | E4::ResponseValidation(_))
            | V5(E5::Websocket(_) | E5::WsConnect(_) | E5::ResponseValidation(_)) => "websocket",
            _ => "connection",
        }
    }

    /// When the broker (or its TLS handshake) refused this client for a reason that retrying
    /// will not change (credentials, authorisation, certificates), what it said.
    pub fn refusal(&self) -> Option<String> {
        use p5::ConnectReturnCode as C5;
        use rumqttc::ConnectReturnCode as C4;
        use rumqttc::ConnectionError as E4;
        use v5::ConnectionError as E5;
        let code = match self {
            ConnError::V4(E4::ConnectionRefused(
                c @ (C4::BadUserNamePassword
                | C4::NotAuthorized
                | C4::BadClientId
                | C4::RefusedProtocolVersion),
            )) => format!("{c:?}"),
            ConnError::V5(E5::ConnectionRefused(
                c @ (C5::BadUserNamePassword
                | C5::NotAuthorized
                | C5::Banned
                | C5::BadAuthenticationMethod
                | C5::ClientIdentifierNotValid
                | C5::UnsupportedProtocolVersion
                | C5::RefusedProtocolVersion),
            )) => format!("{c:?}"),
            ConnError::V4(E4::Tls(t)) | ConnError::V5(E5::Tls(t)) => return tls_refusal(t),
            _ => return None,
        };
        Some(format!("the broker refused the connection: {code}"))
    }
}

/// A TLS failure that retrying will not change: rustls refused (a certificate, a protocol).
fn tls_refusal(e: &rumqttc::TlsError) -> Option<String> {
    let t = match e {
        rumqttc::TlsError::TLS(t) => t,
        // tokio-rustls hands handshake failures over as I/O errors carrying rustls' error.
        rumqttc::TlsError::Io(io) => io.get_ref()?.downcast_ref::<rustls::Error>()?,
        _ => return None,
    };
    Some(format!("TLS: {t}"))
}
