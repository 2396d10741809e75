//! Client set-up shared by devices, observers and controllers, and how they report connection
//! errors and back off.

use std::time::Duration;

use std::sync::mpsc::Sender;

use fleetbench_metrics::Flush;
use fleetbench_scenario::{Backoff, MessageSpec, Protocol};
use rand::Rng;
use tracing::debug;

use crate::client::{ConnError, Connection, Settings, Version};
use crate::Target;

pub(crate) struct ClientSettings<'a> {
    pub client_id: &'a str,
    pub port_index: usize,
    pub keep_alive: Duration,
    pub max_packet: usize,
    pub inflight: u16,
    /// Publishes that may wait for the connection before the publisher waits too.
    pub channel_capacity: usize,
    pub connect_timeout: Duration,
    pub clean_session: bool,
    /// Left with the broker at connect.
    pub will: Option<&'a MessageSpec>,
}

/// One connection of the run's MQTT version and transport to the listener for `port_index`.
pub(crate) fn connection(target: &Target, s: &ClientSettings) -> Connection {
    Connection::new(Settings {
        version: match target.protocol {
            Protocol::V311 => Version::V4,
            Protocol::V5 => Version::V5,
        },
        transport: target.transport.clone(),
        host: target.host.clone(),
        port: target.port_for(s.port_index),
        client_id: s.client_id.to_string(),
        keep_alive: s.keep_alive,
        clean_session: s.clean_session,
        will: s.will.cloned(),
        credentials: target.credentials.clone(),
        max_packet: s.max_packet,
        inflight: s.inflight,
        backlog: s.channel_capacity,
        connect_timeout: s.connect_timeout,
    })
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

/// After `who` lost its connection: log and count the error, and draw how long to wait before
/// attempt `attempt` (1 for the first) as `policy` says.
pub(crate) fn back_off(
    flush: &Sender<Flush>,
    who: &str,
    e: &ConnError,
    policy: &Backoff,
    attempt: u32,
) -> Duration {
    debug!(client = who, error = %e, "connection error");
    report_error(flush, e.kind(), format_args!("{who}: {e}"));
    policy.wait(attempt, rand::rng().random::<f64>())
}
