//! rumqttc client set-up shared by devices and observers.

use std::time::Duration;

use rand::Rng;
use rumqttc::{AsyncClient, EventLoop, MqttOptions, NetworkOptions, QoS};

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
}

/// One client with TCP_NODELAY on (rumqttc leaves it off) and a generous connect timeout.
pub fn client(target: &Target, s: &ClientSettings) -> (AsyncClient, EventLoop) {
    let mut opts = MqttOptions::new(
        s.client_id,
        target.host.clone(),
        target.port_for(s.port_index),
    );
    opts.set_keep_alive(s.keep_alive);
    opts.set_clean_session(true);
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

/// Exponential backoff with full jitter: attempt 1 waits up to 100 ms, doubling to 5 s.
pub fn backoff(attempt: u32) -> Duration {
    let cap_ms = (100u64 << attempt.min(6)).min(5_000);
    Duration::from_millis(rand::rng().random_range(cap_ms / 2..=cap_ms))
}

/// A short, stable name for a rumqttc connection error, to group errors by kind.
pub fn error_kind(e: &rumqttc::ConnectionError) -> &'static str {
    use rumqttc::ConnectionError as E;
    match e {
        E::NetworkTimeout | E::FlushTimeout => "timeout",
        E::ConnectionRefused(_) => "connect refused",
        E::Io(_) => "io",
        E::MqttState(_) => "protocol",
        _ => "connection",
    }
}
