//! MQTT 3.1.1 and 5 packets, read and written with rumqttc's packet types
//! (`rumqttc::mqttbytes`) and reduced to what the connection driver acts on.

use bytes::{Bytes, BytesMut};
use fleetbench_scenario::Qos;
use rumqttc::mqttbytes::{self as mb4, v4};
use rumqttc::v5::mqttbytes::{self as mb5, v5 as p5};

use super::{Received, Settings};

/// The protocol version of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Version {
    V4,
    V5,
}

/// A packet from the broker, as the driver sees it.
pub(crate) enum Incoming {
    ConnAck {
        /// What the broker said when it refused the connection.
        refused: Option<Refused>,
        session_present: bool,
        alias_max: u16,
        /// MQTT 5: how many QoS 1 and 2 publishes the broker takes at once.
        receive_max: Option<u16>,
    },
    Publish {
        pkid: u16,
        msg: Received,
    },
    PubAck(u16),
    PubRec(u16),
    PubRel(u16),
    PubComp(u16),
    SubAck(Vec<Option<u8>>),
    PingResp,
    /// MQTT 5: the broker ended the connection, for this reason.
    Disconnect(String),
    Other,
}

/// A CONNACK that refused the connection.
#[derive(Debug, Clone)]
pub struct Refused {
    pub code: String,
    /// Retrying will not change the answer (credentials, authorisation, protocol).
    pub permanent: bool,
}

/// A packet the broker sent that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    #[error("{0}")]
    V4(mb4::Error),
    #[error("{0}")]
    V5(mb5::Error),
    #[error("expected CONNACK, received another packet")]
    NotConnAck,
}

/// A PUBLISH ready to be written again (with DUP set) after a reconnect.
pub(crate) enum OutPublish {
    V4(v4::Publish),
    V5(p5::Publish),
}

pub(crate) fn qos4(q: Qos) -> mb4::QoS {
    match q {
        Qos::AtMostOnce => mb4::QoS::AtMostOnce,
        Qos::AtLeastOnce => mb4::QoS::AtLeastOnce,
        Qos::ExactlyOnce => mb4::QoS::ExactlyOnce,
    }
}

pub(crate) fn qos5(q: Qos) -> mb5::QoS {
    match q {
        Qos::AtMostOnce => mb5::QoS::AtMostOnce,
        Qos::AtLeastOnce => mb5::QoS::AtLeastOnce,
        Qos::ExactlyOnce => mb5::QoS::ExactlyOnce,
    }
}

/// How long the broker keeps an MQTT 5 session that does not start clean after its connection
/// ends (MQTT 5 ends it at once by default). A run ends its persistent sessions itself.
const SESSION_EXPIRY_S: u32 = 300;

impl OutPublish {
    pub(crate) fn new(
        version: Version,
        topic: &str,
        qos: Qos,
        retain: bool,
        payload: Bytes,
        properties: Option<p5::PublishProperties>,
    ) -> OutPublish {
        match version {
            Version::V4 => OutPublish::V4(v4::Publish {
                dup: false,
                qos: qos4(qos),
                retain,
                topic: topic.to_string(),
                pkid: 0,
                payload,
            }),
            Version::V5 => OutPublish::V5(p5::Publish {
                dup: false,
                qos: qos5(qos),
                retain,
                topic: Bytes::copy_from_slice(topic.as_bytes()),
                pkid: 0,
                payload,
                properties,
            }),
        }
    }

    pub(crate) fn qos(&self) -> u8 {
        match self {
            OutPublish::V4(p) => p.qos as u8,
            OutPublish::V5(p) => p.qos as u8,
        }
    }

    pub(crate) fn set(&mut self, pkid: u16, dup: bool) {
        match self {
            OutPublish::V4(p) => (p.pkid, p.dup) = (pkid, dup),
            OutPublish::V5(p) => (p.pkid, p.dup) = (pkid, dup),
        }
    }

    pub(crate) fn write(&self, out: &mut BytesMut, max: usize) -> Result<(), ProtocolError> {
        // rumqttc's `Publish::write` does not check the size itself.
        match self {
            OutPublish::V4(p) => {
                if p.size() > max {
                    return Err(ProtocolError::V4(mb4::Error::OutgoingPacketTooLarge {
                        pkt_size: p.size(),
                        max,
                    }));
                }
                p.write(out).map(drop).map_err(ProtocolError::V4)
            }
            OutPublish::V5(p) => {
                if p.size() > max {
                    return Err(ProtocolError::V5(mb5::Error::OutgoingPacketTooLarge {
                        pkt_size: p.size() as u32,
                        max: max as u32,
                    }));
                }
                p.write(out).map(drop).map_err(ProtocolError::V5)
            }
        }
    }
}

/// A step of a publish flow the client writes: PUBACK, PUBREC, PUBREL or PUBCOMP.
#[derive(Clone, Copy)]
pub(crate) enum Flow {
    Ack,
    Rec,
    Rel,
    Comp,
}

impl Version {
    /// The next whole packet of `buf`, or None when it holds only part of one.
    pub(crate) fn read(
        self,
        buf: &mut BytesMut,
        max: usize,
    ) -> Result<Option<Incoming>, ProtocolError> {
        match self {
            Version::V4 => match v4::Packet::read(buf, max) {
                Ok(p) => Ok(Some(incoming4(p))),
                Err(mb4::Error::InsufficientBytes(_)) => Ok(None),
                Err(e) => Err(ProtocolError::V4(e)),
            },
            Version::V5 => match p5::Packet::read(buf, Some(max as u32)) {
                Ok(p) => Ok(Some(incoming5(p))),
                Err(mb5::Error::InsufficientBytes(_)) => Ok(None),
                Err(e) => Err(ProtocolError::V5(e)),
            },
        }
    }

    pub(crate) fn connect(self, s: &Settings, out: &mut BytesMut) -> Result<(), ProtocolError> {
        let keep_alive = s.keep_alive.as_secs().min(u64::from(u16::MAX)) as u16;
        match self {
            Version::V4 => {
                let mut c = v4::Connect::new(s.client_id.as_str());
                c.keep_alive = keep_alive;
                c.clean_session = s.clean_session;
                c.last_will = s.will.as_ref().map(|w| {
                    v4::LastWill::new(w.topic.clone(), w.payload.clone(), qos4(w.qos), w.retain)
                });
                c.login = s
                    .credentials
                    .as_ref()
                    .map(|(u, p)| v4::Login::new(u.clone(), p.clone()));
                v4::Packet::Connect(c)
                    .write(out, usize::MAX)
                    .map(drop)
                    .map_err(ProtocolError::V4)
            }
            Version::V5 => {
                let mut properties = p5::ConnectProperties::new();
                properties.max_packet_size = Some(s.max_packet as u32);
                if !s.clean_session {
                    properties.session_expiry_interval = Some(SESSION_EXPIRY_S);
                }
                let c = p5::Connect {
                    keep_alive,
                    client_id: s.client_id.clone(),
                    clean_start: s.clean_session,
                    properties: Some(properties),
                };
                let will = s.will.as_ref().map(|w| {
                    p5::LastWill::new(
                        w.topic.clone(),
                        w.payload.clone(),
                        qos5(w.qos),
                        w.retain,
                        None,
                    )
                });
                let login = s
                    .credentials
                    .as_ref()
                    .map(|(u, p)| p5::Login::new(u.clone(), p.clone()));
                p5::Packet::Connect(c, will, login)
                    .write(out, None)
                    .map(drop)
                    .map_err(ProtocolError::V5)
            }
        }
    }

    pub(crate) fn ack(self, ack: Flow, pkid: u16, out: &mut BytesMut) {
        // Acknowledgements are a few bytes: writing them cannot fail.
        let _ = match self {
            Version::V4 => match ack {
                Flow::Ack => v4::PubAck::new(pkid).write(out),
                Flow::Rec => v4::PubRec::new(pkid).write(out),
                Flow::Rel => v4::PubRel::new(pkid).write(out),
                Flow::Comp => v4::PubComp::new(pkid).write(out),
            }
            .map_err(ProtocolError::V4),
            Version::V5 => match ack {
                Flow::Ack => p5::PubAck::new(pkid, None).write(out),
                Flow::Rec => p5::PubRec::new(pkid, None).write(out),
                Flow::Rel => p5::PubRel::new(pkid, None).write(out),
                Flow::Comp => p5::PubComp::new(pkid, None).write(out),
            }
            .map_err(ProtocolError::V5),
        };
    }

    pub(crate) fn subscribe(
        self,
        pkid: u16,
        filters: &[(String, Qos)],
        out: &mut BytesMut,
    ) -> Result<(), ProtocolError> {
        match self {
            Version::V4 => {
                let mut s = v4::Subscribe::new_many(
                    filters
                        .iter()
                        .map(|(f, q)| v4::SubscribeFilter::new(f.clone(), qos4(*q))),
                );
                s.pkid = pkid;
                s.write(out).map(drop).map_err(ProtocolError::V4)
            }
            Version::V5 => {
                let mut s = p5::Subscribe::new_many(
                    filters
                        .iter()
                        .map(|(f, q)| p5::Filter::new(f.clone(), qos5(*q))),
                    None,
                );
                s.pkid = pkid;
                s.write(out).map(drop).map_err(ProtocolError::V5)
            }
        }
    }

    pub(crate) fn ping(self, out: &mut BytesMut) {
        let _ = match self {
            Version::V4 => v4::PingReq.write(out).map_err(ProtocolError::V4),
            Version::V5 => p5::PingReq::write(out).map_err(ProtocolError::V5),
        };
    }

    pub(crate) fn disconnect(self, out: &mut BytesMut) {
        let _ = match self {
            Version::V4 => v4::Disconnect.write(out).map_err(ProtocolError::V4),
            Version::V5 => p5::Disconnect::new(p5::DisconnectReasonCode::NormalDisconnection)
                .write(out)
                .map_err(ProtocolError::V5),
        };
    }
}

fn incoming4(p: v4::Packet) -> Incoming {
    use v4::{ConnectReturnCode as C, Packet};
    match p {
        Packet::ConnAck(a) => Incoming::ConnAck {
            refused: (a.code != C::Success).then(|| Refused {
                code: format!("{:?}", a.code),
                permanent: matches!(
                    a.code,
                    C::BadUserNamePassword
                        | C::NotAuthorized
                        | C::BadClientId
                        | C::RefusedProtocolVersion
                ),
            }),
            session_present: a.session_present,
            alias_max: 0,
            receive_max: None,
        },
        Packet::Publish(p) => Incoming::Publish {
            pkid: p.pkid,
            msg: Received {
                topic: Bytes::from(p.topic.into_bytes()),
                payload: p.payload,
                qos: p.qos as u8,
                retain: p.retain,
                properties: None,
            },
        },
        Packet::PubAck(a) => Incoming::PubAck(a.pkid),
        Packet::PubRec(a) => Incoming::PubRec(a.pkid),
        Packet::PubRel(a) => Incoming::PubRel(a.pkid),
        Packet::PubComp(a) => Incoming::PubComp(a.pkid),
        Packet::SubAck(a) => Incoming::SubAck(
            a.return_codes
                .iter()
                .map(|c| match c {
                    v4::SubscribeReasonCode::Success(q) => Some(*q as u8),
                    v4::SubscribeReasonCode::Failure => None,
                })
                .collect(),
        ),
        Packet::PingResp => Incoming::PingResp,
        _ => Incoming::Other,
    }
}

fn incoming5(p: p5::Packet) -> Incoming {
    use p5::{ConnectReturnCode as C, Packet};
    match p {
        Packet::ConnAck(a) => {
            let props = a.properties.as_ref();
            Incoming::ConnAck {
                refused: (a.code != C::Success).then(|| Refused {
                    code: format!("{:?}", a.code),
                    permanent: matches!(
                        a.code,
                        C::BadUserNamePassword
                            | C::NotAuthorized
                            | C::Banned
                            | C::BadAuthenticationMethod
                            | C::ClientIdentifierNotValid
                            | C::UnsupportedProtocolVersion
                            | C::RefusedProtocolVersion
                    ),
                }),
                session_present: a.session_present,
                alias_max: props.and_then(|p| p.topic_alias_max).unwrap_or(0),
                receive_max: props.and_then(|p| p.receive_max),
            }
        }
        Packet::Publish(p) => Incoming::Publish {
            pkid: p.pkid,
            msg: Received {
                topic: p.topic,
                payload: p.payload,
                qos: p.qos as u8,
                retain: p.retain,
                properties: p.properties,
            },
        },
        Packet::PubAck(a) => Incoming::PubAck(a.pkid),
        Packet::PubRec(a) => Incoming::PubRec(a.pkid),
        Packet::PubRel(a) => Incoming::PubRel(a.pkid),
        Packet::PubComp(a) => Incoming::PubComp(a.pkid),
        Packet::SubAck(a) => Incoming::SubAck(
            a.return_codes
                .iter()
                .map(|c| match c {
                    p5::SubscribeReasonCode::Success(q) => Some(*q as u8),
                    _ => None,
                })
                .collect(),
        ),
        Packet::PingResp(_) => Incoming::PingResp,
        Packet::Disconnect(d) => Incoming::Disconnect(format!("{:?}", d.reason_code)),
        _ => Incoming::Other,
    }
}
