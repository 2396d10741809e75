//! The broker side of fleetbench: an embedded rumqttd broker fleetbench starts and stops
//! itself, and the endpoints of an external broker.
//!
//! rumqttd's `Broker::start` blocks forever, binds every listener on one single-threaded
//! runtime, sleeps after every accept, never sets TCP_NODELAY and cannot be stopped. This crate
//! builds the router and the servers itself instead (see [`embedded`]).

pub mod embedded;
pub mod nodelay;
mod ready;

pub use embedded::supervise::{BrokerHealth, ListenerRestart};
pub use embedded::{EmbeddedBroker, EmbeddedConfig};
pub use ready::{probe_connack, probe_connack_as};

use std::net::IpAddr;

/// Where clients connect: a host and one or more ports (clients are spread over the ports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoints {
    pub host: String,
    pub ports: Vec<u16>,
}

impl Endpoints {
    /// The port the `i`-th client uses.
    pub fn port_for(&self, i: usize) -> u16 {
        self.ports[i % self.ports.len()]
    }

    /// "127.0.0.1:1883" or "127.0.0.1:{40001,40002,40003}".
    pub fn describe(&self) -> String {
        let host = match self.host.parse::<IpAddr>() {
            Ok(IpAddr::V6(_)) => format!("[{}]", self.host),
            _ => self.host.clone(),
        };
        match self.ports.as_slice() {
            [p] => format!("{host}:{p}"),
            ports => {
                let list: Vec<String> = ports.iter().map(u16::to_string).collect();
                format!("{host}:{{{}}}", list.join(","))
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("could not find a free port on {addr}: {source}")]
    NoFreePort {
        addr: IpAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("could not start the broker's runtime: {0}")]
    Runtime(#[source] std::io::Error),
    #[error("listener {port} did not start after {attempts} attempts: {reason}")]
    ListenerFailed {
        port: u16,
        attempts: u32,
        reason: String,
    },
    #[error("listener {port} is not ready: {reason}")]
    NotReady { port: u16, reason: String },
    #[error(
        "refusing to listen on {addr} without credentials: anyone who can reach it could \
         publish and subscribe; give credentials or opt out explicitly"
    )]
    OpenListener { addr: IpAddr },
}
