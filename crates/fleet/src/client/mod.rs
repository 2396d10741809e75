//! One MQTT client for devices, observers and controllers: a lean connection driver of
//! fleetbench's own over rumqttc's packet types (`rumqttc::mqttbytes`), MQTT 3.1.1 and 5, over
//! TCP, TLS and WebSocket.
//!
//! A [`Connection`] is owned and polled by one task; that task publishes straight into it
//! (`Connection::publish`): a message is encoded into the connection's write buffer and leaves
//! on the same turn of the task, with no channel, no second task and no timer per message.
//! Everything read in one turn is parsed at once, and every acknowledgement it calls for is
//! written in one write. Other tasks talk to a connection through a [`Client`] handle (a
//! channel the connection drains on every poll), which observers and controllers use to
//! subscribe, command and say goodbye.
//!
//! Step by step (see `conn.rs`): a poll first hands out the events already read; a connection
//! that is down connects (TCP, TLS, WebSocket, CONNECT and CONNACK, all within the connect
//! timeout) and sends again what was in flight; a connection that is up takes the handles'
//! requests, reads and parses until the socket has nothing more, answers the keep-alive, and
//! writes what is buffered. A connection that fails goes down and reconnects on the next poll,
//! so its owner decides how long to back off.

mod codec;
mod conn;
mod net;
#[cfg(test)]
mod tests;

use fleetbench_metrics::ErrorKind;
use std::io;
use std::time::Duration;

use bytes::Bytes;
use fleetbench_scenario::{MessageSpec, Protocol, Qos};
use tokio::sync::mpsc;

pub use codec::Version;
pub use codec::{ProtocolError, Refused};
pub use conn::Connection;
pub use rumqttc::v5::mqttbytes::v5::PublishProperties;

use crate::transport::Transport;
use crate::Target;

/// Everything a connection needs to connect and reconnect (no Debug: it holds the password).
#[derive(Clone)]
pub struct Settings {
    pub version: Version,
    pub transport: Transport,
    pub host: String,
    pub port: u16,
    pub client_id: String,
    pub keep_alive: Duration,
    pub clean_session: bool,
    /// Left with the broker at connect.
    pub will: Option<MessageSpec>,
    pub credentials: Option<(String, String)>,
    /// The largest packet sent or accepted.
    pub max_packet: usize,
    /// QoS 1 and 2 publishes unacknowledged at once (MQTT 5: at most the broker's receive
    /// maximum).
    pub inflight: u16,
    /// Publishes waiting (for the connection, or for room in flight) beyond which
    /// `Connection::backlogged` says to wait.
    pub backlog: usize,
    pub connect_timeout: Duration,
}

impl Settings {
    /// Client `client_id` of `target`, on the listener for `port_index`, with the defaults
    /// callers change as they need: clean session, no will, 30 s keep-alive, 4 KiB packets,
    /// 100 in flight, 64 waiting publishes.
    pub fn of(
        target: &Target,
        port_index: usize,
        client_id: &str,
        connect_timeout: Duration,
    ) -> Settings {
        Settings {
            version: match target.protocol {
                Protocol::V311 => Version::V4,
                Protocol::V5 => Version::V5,
            },
            transport: target.transport.clone(),
            host: target.host.clone(),
            port: target.port_for(port_index),
            client_id: client_id.to_string(),
            keep_alive: Duration::from_secs(30),
            clean_session: true,
            will: None,
            credentials: target.credentials.clone(),
            max_packet: 4096,
            inflight: 100,
            backlog: 64,
            connect_timeout,
        }
    }

    /// A plain TCP client of `version` to `host:port`, without credentials (tests, benches).
    pub fn tcp(host: &str, port: u16, version: Version, client_id: &str) -> Settings {
        let target = Target {
            host: host.to_string(),
            ports: vec![port],
            credentials: None,
            transport: Transport::Tcp,
            protocol: match version {
                Version::V4 => Protocol::V311,
                Version::V5 => Protocol::V5,
            },
        };
        Settings::of(&target, 0, client_id, Duration::from_secs(5))
    }
}

/// What a poll brought that the fleet acts on.
#[derive(Debug)]
pub enum Ev {
    ConnAck {
        session_present: bool,
        /// The broker's topic alias maximum (0: no aliases; always 0 in MQTT 3.1.1).
        alias_max: u16,
    },
    /// The QoS granted to each filter of a SUBSCRIBE (None: refused).
    SubAck(Vec<Option<u8>>),
    Publish(Received),
    /// A QoS 1 (PUBACK) or QoS 2 (PUBCOMP) publish completed this long after it was written.
    Acked(Duration),
    /// The DISCONNECT asked for has left; the connection is closed.
    SentDisconnect,
}

#[derive(Debug)]
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

/// A request a [`Client`] hands its connection.
pub(crate) enum Request {
    Publish(codec::OutPublish),
    Subscribe(Vec<(String, Qos)>),
    Disconnect,
}

/// The handle other tasks use to talk to a connection (cheap to clone). Requests never wait:
/// the connection takes them on its next poll.
#[derive(Clone)]
pub struct Client {
    version: Version,
    tx: mpsc::UnboundedSender<Request>,
}

/// A request that could not be handed over: the connection has ended.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the connection has ended")]
    Closed,
    #[error("{0}")]
    Protocol(#[from] ProtocolError),
}

impl Client {
    fn send(&self, r: Request) -> Result<(), ClientError> {
        self.tx.send(r).map_err(|_| ClientError::Closed)
    }

    /// Queue a publish. `properties` are sent by MQTT 5 clients only.
    pub fn publish(
        &self,
        topic: &str,
        qos: Qos,
        retain: bool,
        payload: Vec<u8>,
        properties: Option<PublishProperties>,
    ) -> Result<(), ClientError> {
        let p = codec::OutPublish::new(
            self.version,
            topic,
            qos,
            retain,
            Bytes::from(payload),
            properties,
        );
        self.send(Request::Publish(p))
    }

    /// One SUBSCRIBE for all of `filters`.
    pub fn try_subscribe_many(
        &self,
        filters: impl IntoIterator<Item = (String, Qos)>,
    ) -> Result<(), ClientError> {
        self.send(Request::Subscribe(filters.into_iter().collect()))
    }

    pub fn try_disconnect(&self) -> Result<(), ClientError> {
        self.send(Request::Disconnect)
    }
}

/// Why a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("I/O error: {0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Timeout(&'static str),
    #[error("the broker refused the connection: {}", .0.code)]
    Refused(Refused),
    #[error("TLS: {0}")]
    Tls(io::Error),
    #[error("WebSocket: {0}")]
    WebSocket(String),
    #[error("protocol error: {0}")]
    Protocol(#[from] ProtocolError),
    #[error("the broker closed the connection")]
    Closed,
    #[error("the broker ended the connection: {0}")]
    ServerDisconnect(String),
    /// Every handle is gone, or the client said goodbye: not a failure.
    #[error("the client has finished")]
    RequestsDone,
}

impl ConnError {
    /// The client asked to stop (all its handles gone, or DISCONNECT sent): not a failure.
    pub fn is_requests_done(&self) -> bool {
        matches!(self, ConnError::RequestsDone)
    }

    /// A short, stable name for the error, to group errors by kind.
    pub fn kind(&self) -> ErrorKind {
        match self {
            ConnError::Timeout(_) => ErrorKind::Timeout,
            ConnError::Refused(_) => ErrorKind::ConnectRefused,
            ConnError::Io(_) | ConnError::Closed => ErrorKind::Io,
            ConnError::Protocol(_) | ConnError::ServerDisconnect(_) => ErrorKind::Protocol,
            ConnError::Tls(_) => ErrorKind::Tls,
            ConnError::WebSocket(_) => ErrorKind::Websocket,
            ConnError::RequestsDone => ErrorKind::Connection,
        }
    }

    /// When the broker (or its TLS handshake) refused this client for a reason that retrying
    /// will not change (credentials, authorisation, certificates), what it said.
    pub fn refusal(&self) -> Option<String> {
        match self {
            ConnError::Refused(r) if r.permanent => {
                Some(format!("the broker refused the connection: {}", r.code))
            }
            ConnError::Tls(io) => {
                let t = io.get_ref()?.downcast_ref::<rustls::Error>()?;
                Some(format!("TLS: {t}"))
            }
            _ => None,
        }
    }
}
