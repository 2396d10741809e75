//! Before a run: can the broker be reached, and does it answer? One TCP connection, then one
//! MQTT client connected exactly as the fleet's will be (transport, credentials, MQTT
//! version), each bounded by the connect timeout, so that a broker that refuses, does not
//! answer or does not exist is named with its real cause in seconds instead of surfacing as a
//! readiness timeout half a minute later.

use std::time::{Duration, Instant};

use crate::client::{ConnError, Connection, Ev, Settings};
use crate::Target;

/// Why the broker could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// The TCP connection failed: nothing listens, the host is unknown or unreachable.
    #[error("cannot connect to {address}: {reason}")]
    Unreachable { address: String, reason: String },
    /// TCP was accepted but no CONNACK came back in time.
    #[error(
        "{address} accepted the TCP connection but sent no CONNACK within {}s (is it an MQTT \
         broker, and on this transport?)", timeout.as_secs_f64()
    )]
    NoAnswer { address: String, timeout: Duration },
    /// The broker answered and refused (credentials, authorisation, certificates, protocol).
    #[error("{address}: {reason}")]
    Refused { address: String, reason: String },
    /// The MQTT connection failed otherwise.
    #[error("{address}: connecting failed: {reason}")]
    Failed { address: String, reason: String },
}

/// Connect once as the fleet will and return how long CONNECT to CONNACK took. The client
/// closes without DISCONNECT (see the embedded broker's readiness probe for why).
pub async fn probe(target: &Target, timeout: Duration) -> Result<Duration, ProbeError> {
    let port = target.port_for(0);
    let address = format!("{}:{port}", fleetbench_scenario::url_host(&target.host));
    let tcp = tokio::net::TcpStream::connect((target.host.as_str(), port));
    match tokio::time::timeout(timeout, tcp).await {
        Err(_) => {
            return Err(ProbeError::Unreachable {
                address,
                reason: format!(
                    "no answer to the TCP connection within {}s",
                    timeout.as_secs_f64()
                ),
            })
        }
        Ok(Err(e)) => {
            return Err(ProbeError::Unreachable {
                address,
                reason: e.to_string(),
            })
        }
        Ok(Ok(stream)) => drop(stream),
    }
    let client_id = format!(
        "fleetbench-probe-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos())
    );
    let mut connection = Connection::new(Settings {
        inflight: 10,
        ..Settings::of(target, 0, &client_id, timeout)
    });
    let start = Instant::now();
    let answer = async {
        loop {
            match connection.poll().await {
                Ok(Ev::ConnAck { .. }) => return Ok(start.elapsed()),
                Ok(_) => {}
                Err(e) => return Err(e),
            }
        }
    };
    match tokio::time::timeout(timeout, answer).await {
        Ok(Ok(took)) => Ok(took),
        Ok(Err(e)) => Err(match e.refusal() {
            Some(reason) => ProbeError::Refused { address, reason },
            None if matches!(e, ConnError::Timeout(_)) => ProbeError::NoAnswer { address, timeout },
            None => ProbeError::Failed {
                address,
                reason: e.to_string(),
            },
        }),
        Err(_) => Err(ProbeError::NoAnswer { address, timeout }),
    }
}
