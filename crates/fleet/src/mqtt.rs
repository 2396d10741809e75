//! rumqttc client set-up shared by devices and observers.

use std::time::Duration;

use std::sync::mpsc::Sender;

use fleetbench_metrics::Flush;
use fleetbench_scenario::{Backoff, MessageSpec};
use rand::Rng;
use rumqttc::{AsyncClient, EventLoop, LastWill, MqttOptions, NetworkOptions, QoS};
use tracing::debug;

use crate::Target;

pub fn qos(level: fleetbench_scenario::Qos) -> QoS {
    match level {
        fleetbench_scenario::Qos::AtMostOnce => QoS::AtMostOnce,
        fleetbench_scenario::Qos::AtLeastOnce => QoS::AtLeastOnce,
        fleetbench_scenario::Qos::ExactlyOnce => QoS::ExactlyOnce,
    }
}

pub struct ClientSettings<'a> {
    pub client_id: &'a str,
    pub port_index: usize,
    pub keep_alive: Duration,
    pub max_packet: usize,
    pub inflight: u16,
    pub channel_capacity: usize,
    pub connect_timeout: Duration,
    pub clean_session: bool,
    /// Left with the broker at connect.
    pub will: Option<&'a MessageSpec>,
}

/// One client with TCP_NODELAY on (rumqttc leaves it off) and a generous connect timeout.
pub fn client(target: &Target, s: &ClientSettings) -> (AsyncClient, EventLoop) {
    let port = target.port_for(s.port_index);
    let (transport, address) = target.transport.rumqttc(&target.host, port);
    let mut opts = MqttOptions::new(s.client_id, address, port);
    opts.set_transport(transport);
    opts.set_keep_alive(s.keep_alive);
    opts.set_clean_session(s.clean_session);
    if let Some(w) = s.will {
        opts.set_last_will(LastWill::new(
            w.topic.clone(),
            w.payload.clone(),
            qos(w.qos),
            w.retain,
        ));
    }
    opts.set_max_packet_size(s.max_packet, s.max_packet);
    opts.set_inflight(s.inflight);
    if let Some((user, pass)) = &target.credentials {
        opts.set_credentials(user.clone(), pass.clone());
    }
    let (client, mut eventloop) = AsyncClient::new(opts, s.channel_capacity);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(s.connect_timeout.as_secs().max(1));
    eventloop.set_network_options(net);
    (client, eventloop)
}

/// Count an error of `kind` (the report groups errors by kind and keeps the latest detail).
pub fn report_error(flush: &Sender<Flush>, kind: &'static str, detail: impl std::fmt::Display) {
    let _ = flush.send(Flush::Error {
        kind,
        detail: detail.to_string(),
    });
}

/// After `who` lost its connection: log and count the error, then wait as `policy` says before
/// attempt `attempt` (1 for the first), with a fresh random draw.
pub async fn back_off(
    flush: &Sender<Flush>,
    who: &str,
    e: &rumqttc::ConnectionError,
    policy: &Backoff,
    attempt: u32,
) {
    debug!(client = who, error = %e, "connection error");
    report_error(flush, error_kind(e), format_args!("{who}: {e}"));
    // Drawn before the await: the thread's generator must not be held across it.
    let wait = policy.wait(attempt, rand::rng().random::<f64>());
    tokio::time::sleep(wait).await;
}

/// When `e` says that the broker (or its TLS handshake) refused this client for a reason that
/// retrying will not change (credentials, authorisation, certificates), what it said.
pub fn refusal(e: &rumqttc::ConnectionError) -> Option<String> {
    use rumqttc::ConnectReturnCode as C;
    use rumqttc::ConnectionError as E;
    match e {
        E::ConnectionRefused(
            code @ (C::BadUserNamePassword
            | C::NotAuthorized
            | C::BadClientId
            | C::RefusedProtocolVersion),
        ) => Some(format!("the broker refused the connection: {code:?}")),
        E::Tls(rumqttc::TlsError::TLS(t)) => Some(format!("TLS: {t}")),
        // tokio-rustls hands handshake failures over as I/O errors that carry rustls' error.
        E::Tls(rumqttc::TlsError::Io(io)) => io
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .map(|t| format!("TLS: {t}")),
        _ => None,
    }
}

/// A short, stable name for a rumqttc connection error, to group errors by kind.
pub fn error_kind(e: &rumqttc::ConnectionError) -> &'static str {
    use rumqttc::ConnectionError as E;
    match e {
        E::NetworkTimeout | E::FlushTimeout => "timeout",
        E::ConnectionRefused(_) => "connect refused",
        E::Io(_) => "io",
        E::MqttState(_) => "protocol",
        E::Tls(_) => "tls",
        E::Websocket(_) | E::WsConnect(_) | E::ResponseValidation(_) => "websocket",
        _ => "connection",
    }
}
