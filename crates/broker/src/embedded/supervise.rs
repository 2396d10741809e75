//! The embedded broker's watch: rumqttd listeners can stop serving while their sockets stay
//! open. A burst of CONNECTs under one client id, each reset before its CONNACK, leaves a
//! sender in the listener's will-handler map whose receiver is gone; the next CONNECT with that
//! id panics on it while holding the map's lock (`server/broker.rs:544`), the lock is poisoned,
//! and from then on every new connection's task panics before its CONNACK. Old connections keep
//! working; the listener accepts and serves no one.
//!
//! The map belongs to one `Server`, so a new `Server` on the same port recovers. A thread
//! probes every listener with a real CONNECT every few seconds, at once after any rumqttd
//! panic. A listener is restarted, and the restart recorded so that the run's verdict can say
//! so, when it closes a probe's connection after rumqttd panicked (a full broker closes new
//! connections too, without panicking: that is not a wedge), or lets three probes in a row
//! time out. rumqttd's panics are counted here instead of printing thousands of lines.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tracing::{info, warn};

use super::{probe_listener, start_listener, EmbeddedConfig};

/// Starts listener `i` on an address.
pub(crate) type Spawn =
    Arc<dyn Fn(usize, SocketAddr) -> tokio::task::JoinHandle<Result<(), String>> + Send + Sync>;

/// Probes every this often.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// A probe waits this long for its CONNACK.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Probes in a row that time out before a listener counts as wedged (a busy broker answers
/// late; a wedged one closes the connection at once).
const TIMEOUTS_TO_RESTART: u32 = 3;
/// A client that keeps poisoning a listener gets it restarted at most this often.
const MIN_RESTART_GAP: Duration = Duration::from_secs(1);
/// Restarts kept in the record (a long attack would otherwise grow it without bound); the
/// count of later ones is still kept.
const MAX_RECORDED: usize = 100;

/// rumqttd panics in this process, since it started.
static RUMQTTD_PANICS: AtomicU64 = AtomicU64::new(0);
static HOOK: Once = Once::new();

/// Count rumqttd's panics (and log a few) instead of printing each; other panics go to the
/// hook that was there before.
fn install_panic_hook() {
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let in_rumqttd = info
                .location()
                .is_some_and(|l| l.file().contains("rumqttd"));
            if !in_rumqttd {
                return previous(info);
            }
            let n = RUMQTTD_PANICS.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                warn!(panics = n, "the embedded broker (rumqttd) panicked: {info}");
            }
        }));
    });
}

/// What the watch saw.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerHealth {
    /// rumqttd panics since the broker started.
    pub panics: u64,
    /// Listeners found wedged, in order (the first [`MAX_RECORDED`]).
    pub restarts: Vec<ListenerRestart>,
    /// Restarts beyond those recorded.
    pub unrecorded_restarts: u64,
}

/// One wedged listener.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerRestart {
    pub port: u16,
    /// When it was found wedged, from the broker's start.
    pub at: Duration,
    /// What the probe saw.
    pub reason: String,
    /// A new listener took the port.
    pub relistened: bool,
    /// The new listener answered a probe at once (a client still poisoning it makes the watch
    /// restart it again).
    pub recovered: bool,
}

/// The listeners the watch looks after.
pub(crate) struct Listeners {
    pub spawn: Spawn,
    pub config: EmbeddedConfig,
    pub ports: Vec<u16>,
    pub tasks: Vec<tokio::task::JoinHandle<Result<(), String>>>,
}

/// The watch's thread; stopped with the broker.
pub(crate) struct Supervisor {
    stop: Arc<AtomicBool>,
    health: Arc<Mutex<BrokerHealth>>,
    panics_at_start: u64,
    thread: Option<JoinHandle<()>>,
}

impl Supervisor {
    pub(crate) fn start(listeners: Listeners) -> Supervisor {
        install_panic_hook();
        let stop = Arc::new(AtomicBool::new(false));
        let health = Arc::new(Mutex::new(BrokerHealth::default()));
        let panics_at_start = RUMQTTD_PANICS.load(Ordering::Relaxed);
        let (s, h) = (stop.clone(), health.clone());
        let thread = std::thread::Builder::new()
            .name("broker-watch".into())
            .spawn(move || watch(listeners, &s, &h, panics_at_start))
            .map_err(|e| warn!("the broker's watch did not start: {e}"))
            .ok();
        Supervisor {
            stop,
            health,
            panics_at_start,
            thread,
        }
    }

    pub(crate) fn health(&self) -> BrokerHealth {
        let mut h = self.health.lock().map(|h| h.clone()).unwrap_or_default();
        h.panics = RUMQTTD_PANICS
            .load(Ordering::Relaxed)
            .saturating_sub(self.panics_at_start);
        h
    }

    pub(crate) fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn watch(mut l: Listeners, stop: &AtomicBool, health: &Mutex<BrokerHealth>, panics_at_start: u64) {
    let started = Instant::now();
    let mut last_panics = panics_at_start;
    let mut last_probe = Instant::now();
    // Per listener: probes in a row that timed out, and the panic count at its last good probe.
    let mut timeouts = vec![0u32; l.ports.len()];
    let mut panics_when_good = vec![panics_at_start; l.ports.len()];
    let mut restarted_at: Vec<Option<Instant>> = vec![None; l.ports.len()];
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        let panics = RUMQTTD_PANICS.load(Ordering::Relaxed);
        if panics == last_panics && last_probe.elapsed() < PROBE_EVERY {
            continue;
        }
        last_panics = panics;
        last_probe = Instant::now();
        for i in 0..l.ports.len() {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            let port = l.ports[i];
            let reason = match probe_listener(&l.config, port, PROBE_TIMEOUT) {
                Ok(_) => {
                    timeouts[i] = 0;
                    panics_when_good[i] = panics;
                    continue;
                }
                Err(reason) => reason,
            };
            let timed_out = reason.contains("timed out") || reason.contains("WouldBlock");
            timeouts[i] = if timed_out { timeouts[i] + 1 } else { 0 };
            let wedged = if timed_out {
                timeouts[i] >= TIMEOUTS_TO_RESTART
            } else {
                panics > panics_when_good[i]
            };
            if !wedged {
                info!(port, %reason, "the embedded broker did not answer a probe");
                continue;
            }
            if restarted_at[i].is_some_and(|t| t.elapsed() < MIN_RESTART_GAP) {
                continue;
            }
            restarted_at[i] = Some(Instant::now());
            timeouts[i] = 0;
            let (relistened, recovered) = restart(&mut l, i);
            if recovered {
                panics_when_good[i] = RUMQTTD_PANICS.load(Ordering::Relaxed);
            }
            let event = ListenerRestart {
                port,
                at: started.elapsed(),
                reason,
                relistened,
                recovered,
            };
            warn!(
                port,
                reason = %event.reason,
                recovered,
                "a listener of the embedded broker stopped completing CONNECTs; restarted it"
            );
            if let Ok(mut h) = health.lock() {
                if h.restarts.len() < MAX_RECORDED {
                    h.restarts.push(event);
                } else {
                    h.unrecorded_restarts += 1;
                }
            }
        }
    }
}

/// Replace listener `i` by a new rumqttd server on the same port: whether it took the port, and
/// whether it answers.
fn restart(l: &mut Listeners, i: usize) -> (bool, bool) {
    l.tasks[i].abort();
    let port = l.ports[i];
    // The old socket closes when the runtime drops the aborted task: wait for it to go, then
    // retry until the port can be bound again.
    let addr = SocketAddr::new(l.config.bind, port);
    for _ in 0..100 {
        if !crate::nodelay::find_listener(addr, false).unwrap_or(false) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    for _ in 0..50 {
        match start_listener(&l.spawn, i, port, &l.config) {
            Ok(task) => {
                l.tasks[i] = task;
                return (true, probe_listener(&l.config, port, PROBE_TIMEOUT).is_ok());
            }
            Err(_) => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    (false, false)
}
