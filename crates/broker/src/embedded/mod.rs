//! The embedded rumqttd broker.
//!
//! Built from rumqttd's public parts rather than `Broker::start`:
//! - the router runs on its own thread (`router-<id>`; rumqttd gives no way to stop it, so it
//!   stays until the process exits),
//! - each listener is a `Server` whose accept loop runs on a multi-threaded runtime owned here,
//!   so connections are spread over its workers and dropping the runtime stops listening,
//! - several listeners on ports picked here (rumqttd cannot listen on port 0), because one
//!   accept loop manages only about 600-1,000 accepts per second,
//! - TCP_NODELAY set on each listening socket before the first client, so accepted sockets
//!   inherit it (see `nodelay`),
//! - ready only once every listener has answered a real CONNECT with a CONNACK.

pub(crate) mod supervise;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rumqttd::protocol::v4::V4;
use rumqttd::protocol::v5::V5;
use rumqttd::protocol::Protocol;
use rumqttd::{ConnectionSettings, LinkType, Router, RouterConfig, Server, ServerSettings};
use tokio::runtime::Runtime;
use tracing::{debug, info, warn};

use crate::{nodelay, ready, BrokerError, Endpoints};
use supervise::{BrokerHealth, Listeners, Spawn, Supervisor};

/// How to run the embedded broker. Every rumqttd setting is chosen here deliberately:
/// `rumqttd::Config::default()` is unusable (zero connections, zero segment size). Its `Debug`
/// leaves the password out.
#[derive(Clone)]
pub struct EmbeddedConfig {
    pub bind: IpAddr,
    /// Fixed ports to listen on; when empty, `listeners` free ports are picked.
    pub ports: Vec<u16>,
    pub listeners: u16,
    pub tcp_nodelay: bool,
    /// Connections the router accepts in all (it preallocates for this many).
    pub max_connections: usize,
    pub max_payload_size: usize,
    /// In-memory log per subscription filter: `segment_size x segment_count` bytes at most, as
    /// rumqttd counts them (topic, payload and 4 bytes per message; a message costs about 2.7
    /// times that in memory). A subscriber that falls further behind than that loses messages
    /// (rumqttd's design). Everything a run publishes passes through it, so its size is the
    /// broker's memory bound: see [`EmbeddedConfig::with_filter_log`].
    pub segment_size: usize,
    pub segment_count: usize,
    /// Threads of the runtime that runs the listeners and their connections.
    pub worker_threads: usize,
    /// Username and password every client must present; `None` lets anyone connect, which is
    /// refused on a non-loopback address unless `allow_anonymous` is set.
    pub credentials: Option<(String, String)>,
    pub allow_anonymous: bool,
    /// Listen for MQTT 5 clients instead of MQTT 3.1.1 ones (rumqttd serves one version per
    /// listener).
    pub mqtt5: bool,
}

impl EmbeddedConfig {
    /// Segments of each filter's log: the oldest goes as a whole when the log is full.
    pub const SEGMENTS: usize = 8;

    /// The log of each subscription filter sized to `bytes` in all (rumqttd's count), in
    /// [`EmbeddedConfig::SEGMENTS`] segments of at least 64 KiB.
    pub fn with_filter_log(mut self, bytes: usize) -> Self {
        self.segment_count = Self::SEGMENTS;
        self.segment_size = (bytes / Self::SEGMENTS).max(64 << 10);
        self
    }
}

impl std::fmt::Debug for EmbeddedConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedConfig")
            .field("bind", &self.bind)
            .field("ports", &self.ports)
            .field("listeners", &self.listeners)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .field("max_connections", &self.max_connections)
            .field("max_payload_size", &self.max_payload_size)
            .field("segment_size", &self.segment_size)
            .field("segment_count", &self.segment_count)
            .field("worker_threads", &self.worker_threads)
            .field("user", &self.credentials.as_ref().map(|(u, _)| u))
            .field("allow_anonymous", &self.allow_anonymous)
            .field("mqtt5", &self.mqtt5)
            .finish()
    }
}

impl Default for EmbeddedConfig {
    fn default() -> Self {
        EmbeddedConfig {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            ports: Vec::new(),
            listeners: 4,
            tcp_nodelay: true,
            max_connections: 1_000,
            max_payload_size: 1 << 20,
            segment_size: 32 << 20,
            segment_count: 8,
            worker_threads: 2,
            credentials: None,
            allow_anonymous: false,
            mqtt5: false,
        }
    }
}

/// A running embedded broker. Stop it with [`EmbeddedBroker::stop`] (or by dropping it).
pub struct EmbeddedBroker {
    runtime: Option<Runtime>,
    endpoints: Endpoints,
    supervisor: Supervisor,
}

const ATTEMPTS: u32 = 5;

impl EmbeddedBroker {
    /// Start the router and the listeners and wait until each answers a CONNECT.
    ///
    /// Blocks for as long as that takes (milliseconds normally, a few seconds at most): call it
    /// from a blocking context, not from inside an async task.
    pub fn start(config: &EmbeddedConfig) -> Result<EmbeddedBroker, BrokerError> {
        if !config.bind.is_loopback() && config.credentials.is_none() && !config.allow_anonymous {
            return Err(BrokerError::OpenListener { addr: config.bind });
        }
        let router = Router::new(
            0,
            RouterConfig {
                max_connections: config.max_connections,
                max_outgoing_packet_count: 200,
                max_segment_size: config.segment_size,
                max_segment_count: config.segment_count,
                custom_segment: None,
                initialized_filters: None,
                shared_subscriptions_strategy: Default::default(),
            },
        );
        let router_tx = router.spawn();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.worker_threads.max(1))
            .thread_name("broker-worker")
            .enable_all()
            .build()
            .map_err(BrokerError::Runtime)?;
        let connections = connection_settings(config);

        // What starts listener `i` on an address: a rumqttd `Server` on the broker's runtime,
        // sharing its router. The watch uses it again to restart a wedged listener.
        let spawn: Spawn = {
            let handle = runtime.handle().clone();
            let mqtt5 = config.mqtt5;
            Arc::new(move |i: usize, addr: SocketAddr| {
                let settings = ServerSettings {
                    name: format!("fleetbench-{i}"),
                    listen: addr,
                    tls: None,
                    next_connection_delay_ms: 0,
                    connections: connections.clone(),
                };
                if mqtt5 {
                    handle.spawn(serve(Server::new(settings, router_tx.clone(), V5), addr))
                } else {
                    handle.spawn(serve(Server::new(settings, router_tx.clone(), V4), addr))
                }
            })
        };
        let (ports, tasks) = start_listeners(&spawn, config)?;
        for port in &ports {
            probe_listener(config, *port, Duration::from_secs(5)).map_err(|reason| {
                BrokerError::NotReady {
                    port: *port,
                    reason,
                }
            })?;
        }
        let endpoints = Endpoints {
            host: config.bind.to_string(),
            ports,
        };
        info!(endpoints = %endpoints.describe(), nodelay = config.tcp_nodelay, "embedded broker ready");
        let supervisor = Supervisor::start(Listeners {
            spawn,
            config: config.clone(),
            ports: endpoints.ports.clone(),
            tasks,
        });
        Ok(EmbeddedBroker {
            runtime: Some(runtime),
            endpoints,
            supervisor,
        })
    }

    /// What the broker's watch has seen so far: rumqttd's panics and the listeners it found
    /// wedged and restarted.
    pub fn health(&self) -> BrokerHealth {
        self.supervisor.health()
    }

    pub fn endpoints(&self) -> &Endpoints {
        &self.endpoints
    }

    /// Stop listening and drop every connection the broker holds. The router thread stays
    /// (rumqttd cannot stop it) but holds no sockets.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        self.supervisor.stop();
        if let Some(rt) = self.runtime.take() {
            // Does not wait, so it is safe inside an async context too.
            rt.shutdown_background();
        }
    }
}

impl Drop for EmbeddedBroker {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What every connection of the broker gets: rumqttd's settings, chosen deliberately.
fn connection_settings(config: &EmbeddedConfig) -> ConnectionSettings {
    ConnectionSettings {
        connection_timeout_ms: 60_000,
        max_payload_size: config.max_payload_size,
        max_inflight_count: 500,
        auth: config
            .credentials
            .as_ref()
            .map(|(u, p)| HashMap::from([(u.clone(), p.clone())])),
        external_auth: None,
        dynamic_filters: true,
    }
}

/// Start every listener: on the configured ports, or on free ports picked here (retried on a
/// clash, since rumqttd binds them itself).
#[allow(clippy::type_complexity)]
fn start_listeners(
    spawn: &Spawn,
    config: &EmbeddedConfig,
) -> Result<(Vec<u16>, Vec<tokio::task::JoinHandle<Result<(), String>>>), BrokerError> {
    let wanted = if config.ports.is_empty() {
        usize::from(config.listeners.max(1))
    } else {
        config.ports.len()
    };
    let mut ports = Vec::with_capacity(wanted);
    let mut tasks = Vec::with_capacity(wanted);
    for i in 0..wanted {
        // Port 0: any free port, as a listener given none.
        let fixed = config.ports.get(i).copied().filter(|p| *p != 0);
        let mut attempt = 0;
        let (port, task) = loop {
            attempt += 1;
            let port = match fixed {
                Some(p) => p,
                None => free_port(config.bind)?,
            };
            match start_listener(spawn, i, port, config) {
                Ok(task) => break (port, task),
                Err(reason) if fixed.is_none() && attempt < ATTEMPTS => {
                    debug!(port, %reason, "listener did not start; trying another port");
                }
                Err(reason) => {
                    return Err(BrokerError::ListenerFailed {
                        port,
                        attempts: attempt,
                        reason,
                    });
                }
            }
        };
        ports.push(port);
        tasks.push(task);
    }
    Ok((ports, tasks))
}

/// A real CONNECT to the listener on `port`, answered by a CONNACK within `timeout`, with a
/// client id never used before and the broker's credentials.
pub(crate) fn probe_listener(
    config: &EmbeddedConfig,
    port: u16,
    timeout: Duration,
) -> Result<Duration, String> {
    let host = if config.bind.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        config.bind
    };
    // One client id per listener: rumqttd keeps what it knows of every clean-session client id
    // that ever disconnected (its "graveyard", never emptied), so a new id per probe made the
    // broker grow by about 3 KB a probe for as long as it ran.
    let id = format!("fleetbench-ready-{}-{port}", std::process::id());
    let credentials = config
        .credentials
        .as_ref()
        .map(|(u, p)| (u.as_str(), p.as_str()));
    ready::probe_connack_as(
        SocketAddr::new(host, port),
        &id,
        credentials,
        timeout,
        config.mqtt5,
    )
}

/// Start listener `i` on `port` and wait until its socket exists (TCP_NODELAY set on it when
/// asked); the task, or why it did not start.
pub(crate) fn start_listener(
    spawn: &Spawn,
    i: usize,
    port: u16,
    config: &EmbeddedConfig,
) -> Result<tokio::task::JoinHandle<Result<(), String>>, String> {
    let addr = SocketAddr::new(config.bind, port);
    let task = spawn(i, addr);
    match wait_listening(addr, config.tcp_nodelay, &task) {
        Ok(()) => Ok(task),
        Err(reason) => {
            task.abort();
            Err(reason)
        }
    }
}

/// Run one listener's accept loop until the runtime goes.
async fn serve<P: Protocol + Clone + Send + 'static>(
    mut server: Server<P>,
    addr: SocketAddr,
) -> Result<(), String> {
    let result = server
        .start(LinkType::Remote)
        .await
        .map_err(|e| e.to_string());
    if let Err(e) = &result {
        warn!(%addr, error = %e, "embedded broker listener stopped");
    }
    result
}

/// A port that was free a moment ago: bind port 0, read it, release it. Another process may
/// take it before rumqttd binds it; the caller retries on a clash.
fn free_port(bind: IpAddr) -> Result<u16, BrokerError> {
    let l = TcpListener::bind(SocketAddr::new(bind, 0))
        .map_err(|source| BrokerError::NoFreePort { addr: bind, source })?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|source| BrokerError::NoFreePort { addr: bind, source })
}

/// Wait until the server task's listener exists (then set TCP_NODELAY on it when asked), or
/// the task ends (for example because the port was taken).
fn wait_listening(
    addr: SocketAddr,
    nodelay: bool,
    task: &tokio::task::JoinHandle<Result<(), String>>,
) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if task.is_finished() {
            return Err("the listener stopped at once (is the port taken?)".to_string());
        }
        match nodelay::find_listener(addr, nodelay) {
            Ok(true) => return Ok(()),
            Ok(false) => {}
            Err(e) => warn!(%addr, error = %e, "could not inspect this process's sockets"),
        }
        if Instant::now() > deadline {
            return Err("no listening socket appeared within 5 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}
