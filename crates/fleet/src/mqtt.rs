//! Client set-up shared by devices, observers and controllers, and how they report connection
//! errors and back off.

use std::time::Duration;

use std::sync::mpsc::Sender;

use fleetbench_metrics::Flush;
use fleetbench_scenario::{Backoff, MessageSpec, Protocol};
use rand::Rng;
use rumqttc::{v5, AsyncClient, LastWill, MqttOptions, NetworkOptions};
use tracing::debug;

use crate::client::{qos4, qos5, Client, ConnError, Connection};
use crate::Target;

pub(crate) struct ClientSettings<'a> {
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

/// How long the broker keeps an MQTT 5 session that does not start clean after its connection
/// ends (MQTT 5 ends it at once by default). A run ends its persistent sessions itself.
const SESSION_EXPIRY_S: u32 = 300;

/// One client of the run's MQTT version, with TCP_NODELAY on (rumqttc leaves it off) and a
/// generous connect timeout.
pub(crate) fn client(target: &Target, s: &ClientSettings) -> (Client, Connection) {
    let port = target.port_for(s.port_index);
    let (transport, address) = target.transport.rumqttc(&target.host, port);
    let mut net = NetworkOptions::new();
    net.set_tcp_nodelay(true);
    net.set_connection_timeout(s.connect_timeout.as_secs().max(1));
    match target.protocol {
        Protocol::V311 => {
            let mut opts = MqttOptions::new(s.client_id, address, port);
            opts.set_transport(transport);
            opts.set_keep_alive(s.keep_alive);
            opts.set_clean_session(s.clean_session);
            if let Some(w) = s.will {
                opts.set_last_will(LastWill::new(
                    w.topic.clone(),
                    w.payload.clone(),
                    qos4(w.qos),
                    w.retain,
                ));
            }
            opts.set_max_packet_size(s.max_packet, s.max_packet);
            opts.set_inflight(s.inflight);
            if let Some((user, pass)) = &target.credentials {
                opts.set_credentials(user.clone(), pass.clone());
            }
            let (client, mut eventloop) = AsyncClient::new(opts, s.channel_capacity);
            eventloop.set_network_options(net);
            (Client::V4(client), Connection::V4(Box::new(eventloop)))
        }
        Protocol::V5 => {
            let mut opts = v5::MqttOptions::new(s.client_id, address, port);
            opts.set_transport(transport);
            opts.set_keep_alive(s.keep_alive);
            opts.set_clean_start(s.clean_session);
            if !s.clean_session {
                opts.set_session_expiry_interval(Some(SESSION_EXPIRY_S));
            }
            if let Some(w) = s.will {
                opts.set_last_will(v5::mqttbytes::v5::LastWill::new(
                    w.topic.clone(),
                    w.payload.clone(),
                    qos5(w.qos),
                    w.retain,
                    None,
                ));
            }
            opts.set_max_packet_size(Some(s.max_packet as u32));
            // Without it the client preallocates for 65,535 messages in flight (14 MB).
            opts.set_outgoing_inflight_upper_limit(s.inflight);
            if let Some((user, pass)) = &target.credentials {
                opts.set_credentials(user.clone(), pass.clone());
            }
            opts.set_network_options(net);
            let (client, eventloop) = v5::AsyncClient::new(opts, s.channel_capacity);
            (Client::V5(client), Connection::V5(Box::new(eventloop)))
        }
    }
}

/// Count an error of `kind` (the report groups errors by kind and keeps the latest detail).
pub(crate) fn report_error(
    flush: &Sender<Flush>,
    kind: &'static str,
    detail: impl std::fmt::Display,
) {
    let _ = flush.send(Flush::Error {
        kind,
        detail: detail.to_string(),
    });
}

/// After `who` lost its connection: log and count the error, then wait as `policy` says before
/// attempt `attempt` (1 for the first), with a fresh random draw.
pub(crate) async fn back_off(
    flush: &Sender<Flush>,
    who: &str,
    e: &ConnError,
    policy: &Backoff,
    attempt: u32,
) {
    debug!(client = who, error = %e, "connection error");
    report_error(flush, e.kind(), format_args!("{who}: {e}"));
    // Drawn before the await: the thread's generator must not be held across it.
    let wait = policy.wait(attempt, rand::rng().random::<f64>());
    tokio::time::sleep(wait).await;
}
