//! One observer: subscribes to its filters and accounts for every delivery in its own ledger and
//! histograms; hands interval figures to the aggregator once a tick. Statuses and wills are
//! tallied per device apart from the data.
//!
//! An observer with a persistent session (clean_session = false) takes a client id of its own
//! for this run (nothing an earlier run left can reach it); when it goes offline it drops its
//! socket and later resumes the session, and at the end it ends the session with a clean
//! connect, leaving nothing queued on the broker. A late observer (join_at) connects only at its
//! time and is not waited for before publishing starts.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;

use fleetbench_metrics::behaviour::Mqtt5Check;
use fleetbench_metrics::{Delivery, Flush, Ledger, ObserverFlush};
use fleetbench_scenario::load::LoadShape;
use fleetbench_scenario::{Backoff, DeviceSpec, Mqtt5Publish, ObserverSpec, Protocol};
use std::time::Instant;
use tokio::sync::oneshot;
use tracing::debug;

use crate::client::{Client, Connection, Ev, Received};
use crate::clock::RunClock;
use crate::codec::{DecodeError, Header};
use crate::events::{Events, Heard};
use crate::mqtt::{self, ClientSettings};
use crate::{FleetOptions, Target};

/// What an observer leaves behind at the end.
pub struct ObserverResult {
    pub ledger: Ledger,
    /// The QoS the broker granted each filter (None: refused).
    pub granted: Vec<Option<u8>>,
    /// Per device of the plan (by position), the QoS MQTT calls for its messages at this
    /// observer: the lower of the publish QoS and the highest QoS granted to a matching filter.
    pub due_qos: Vec<u8>,
    /// Deliveries by the QoS MQTT calls for and the QoS the broker actually used:
    /// `delivered_qos[due][used]`.
    pub delivered_qos: [[u64; 3]; 3],
    /// Statuses and wills heard, per device of the plan (by position; empty when the scenario
    /// has none).
    pub heard: Vec<Heard>,
    /// Reconnects after an offline period, and of those the ones whose session the broker kept.
    pub returns: u64,
    pub resumed: u64,
    /// What MQTT 5 properties arrived with the data (first arrivals).
    pub mqtt5: Mqtt5Check,
}

pub struct ObserverCtx {
    pub clock: RunClock,
    pub target: Target,
    pub opts: FleetOptions,
    pub flush: Sender<Flush>,
    /// Device id (as carried in messages) to position in the plan.
    pub positions: Arc<Vec<Option<u32>>>,
    /// The plan's devices (by position): topics, publish QoS, MQTT 5 properties.
    pub devices: Arc<Vec<DeviceSpec>>,
    pub max_packet: usize,
    /// Messages intended within this of the ramp start are accounted for but their latency is
    /// not recorded: the warm-up.
    pub warmup_ns: u64,
    /// Turns true at the cutoff: a failing connection is then given up, not retried.
    pub cutoff: tokio::sync::watch::Receiver<bool>,
    /// The load phases (figures are kept per phase when the scenario declared them).
    pub shape: LoadShape,
    /// The run-clock reading of the ramp start (u64::MAX until it starts): the warm-up and the
    /// load phases count from it.
    pub ramp_start_ns: Arc<AtomicU64>,
    /// The ramp start, once known: late observers and offline periods count from it.
    pub ramp: tokio::sync::watch::Receiver<Option<tokio::time::Instant>>,
    /// Status, will and command topics, told apart from data.
    pub events: Arc<Events>,
}

/// The QoS granted to each filter once subscribed, or why the observer cannot subscribe: the
/// broker refused it for good (credentials, certificates).
pub type Readiness = Result<Vec<Option<u8>>, String>;

pub struct ObserverHandle {
    pub client: Client,
    /// Why its latest connection attempt failed, if one did: what a readiness timeout reports.
    pub last_error: Arc<std::sync::Mutex<Option<String>>>,
    /// First arrivals so far, for the drain to know when everything expected has arrived.
    pub delivered: Arc<AtomicU64>,
    pub ready: oneshot::Receiver<Readiness>,
    pub task: tokio::task::JoinHandle<ObserverResult>,
}

/// What an observer's task shares with the run while it lasts.
struct Shared {
    delivered: Arc<AtomicU64>,
    last_error: Arc<std::sync::Mutex<Option<String>>>,
}

/// Start an observer: it connects (at once, or at its join time) and subscribes on CONNACK.
pub fn spawn_observer(
    index: usize,
    mut spec: ObserverSpec,
    ctx: Arc<ObserverCtx>,
) -> ObserverHandle {
    if !spec.clean_session {
        spec.client_id = format!("{}-{:08x}", spec.client_id, run_nonce());
    }
    let (client, eventloop) = mqtt::client(
        &ctx.target,
        &settings(index, &spec, &ctx, spec.clean_session),
    );
    let delivered = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(std::sync::Mutex::new(None));
    let (ready_tx, ready_rx) = oneshot::channel();
    let task = tokio::spawn(observe(
        index,
        spec,
        client.clone(),
        eventloop,
        ctx,
        Shared {
            delivered: delivered.clone(),
            last_error: last_error.clone(),
        },
        ready_tx,
    ));
    ObserverHandle {
        client,
        last_error,
        delivered,
        ready: ready_rx,
        task,
    }
}

fn settings<'a>(
    index: usize,
    spec: &'a ObserverSpec,
    ctx: &ObserverCtx,
    clean_session: bool,
) -> ClientSettings<'a> {
    ClientSettings {
        client_id: &spec.client_id,
        port_index: index,
        keep_alive: std::time::Duration::from_secs(30),
        max_packet: ctx.max_packet,
        inflight: 1_000,
        channel_capacity: 16,
        connect_timeout: ctx.opts.connect_timeout,
        clean_session,
        will: None,
    }
}

/// The ramp start, when it comes.
async fn ramp_start(ctx: &ObserverCtx) -> Option<tokio::time::Instant> {
    let mut ramp = ctx.ramp.clone();
    let start = *ramp.wait_for(|r| r.is_some()).await.ok()?;
    start
}

/// Wait until `at` after the ramp start; false when the cutoff came first.
async fn wait_from_ramp(ctx: &ObserverCtx, at: std::time::Duration) -> bool {
    let mut cutoff = ctx.cutoff.clone();
    let wait = async {
        match ramp_start(ctx).await {
            Some(start) => {
                tokio::time::sleep_until(start + at).await;
                true
            }
            None => false,
        }
    };
    tokio::select! {
        reached = wait => reached,
        _ = cutoff.wait_for(|c| *c) => false,
    }
}

/// Record a first arrival's latency (unless it was due in the warm-up) and, when the scenario
/// declared load phases, the figures of the phase it was due in.
#[inline]
fn measure(flush: &mut ObserverFlush, ctx: &ObserverCtx, h: &Header, now_ns: u64) {
    // None before the ramp started (the start is u64::MAX until then).
    let since_ramp = h
        .intended_ns
        .checked_sub(ctx.ramp_start_ns.load(Ordering::Relaxed));
    let measured = since_ramp.is_some_and(|d| d >= ctx.warmup_ns);
    let from_intended = now_ns.saturating_sub(h.intended_ns);
    if measured {
        flush.from_intended.record_ns(from_intended);
        flush.from_send.record_ns(now_ns.saturating_sub(h.sent_ns));
    }
    if ctx.shape.is_declared() {
        let due = std::time::Duration::from_nanos(since_ramp.unwrap_or(0));
        let phase = flush.phase(ctx.shape.phase_at(due));
        phase.delivered += 1;
        if measured {
            phase.from_intended.record_ns(from_intended);
        }
    }
}

/// Check what MQTT 5 properties a first arrival carried against what its device sent
/// (`sent_ns`: when it left the device, on the run clock).
fn check_mqtt5(
    tally: &mut Mqtt5Check,
    sent: &Mqtt5Publish,
    p: &Received,
    sent_ns: u64,
    now_ns: u64,
) {
    let props = p.properties.as_ref();
    if !sent.user_properties.is_empty() {
        tally.user_properties_expected += 1;
        let carried = props.is_some_and(|props| {
            sent.user_properties
                .iter()
                .all(|pair| props.user_properties.contains(pair))
        });
        tally.user_properties_missing += u64::from(!carried);
    }
    if let Some(expiry) = sent.message_expiry_s {
        tally.expiry_expected += 1;
        // The broker forwards the time left: present and no more than was set.
        let forwarded = props
            .and_then(|props| props.message_expiry_interval)
            .is_some_and(|left| left <= expiry);
        tally.expiry_missing += u64::from(!forwarded);
        let age_ns = now_ns.saturating_sub(sent_ns);
        tally.delivered_after_expiry += u64::from(age_ns > u64::from(expiry) * 1_000_000_000);
    }
}

async fn observe(
    index: usize,
    spec: ObserverSpec,
    client: Client,
    mut eventloop: Connection,
    ctx: Arc<ObserverCtx>,
    shared: Shared,
    ready_tx: oneshot::Sender<Readiness>,
) -> ObserverResult {
    let Shared {
        delivered,
        last_error,
    } = shared;
    let mut ready_tx = Some(ready_tx);
    let mut heard = vec![
        Heard::default();
        if ctx.events.is_empty() {
            0
        } else {
            spec.expects.len()
        }
    ];
    let (mut returns, mut resumed) = (0u64, 0u64);
    if let Some(at) = spec.join_at {
        if !wait_from_ramp(&ctx, at).await {
            return ObserverResult {
                ledger: Ledger::new(&spec.expects),
                granted: vec![None; spec.filters.len()],
                due_qos: Vec::new(),
                delivered_qos: [[0; 3]; 3],
                heard,
                returns,
                resumed,
                mqtt5: Mqtt5Check::default(),
            };
        }
    }
    let mut returning = false;
    let offline = async {
        match spec.offline {
            Some(o) if wait_from_ramp(&ctx, o.at).await => o.length,
            _ => std::future::pending().await,
        }
    };
    tokio::pin!(offline);
    let mut went_offline = false;
    // The connection is up (CONNACK seen, no error since): each change is reported at once.
    let mut up = false;
    let mut ledger = Ledger::new(&spec.expects);
    let mut granted = vec![None; spec.filters.len()];
    let mut flush = ObserverFlush::new(spec.id);
    let mut last_flush = Instant::now();
    let mut attempts = 0u32;
    let drop_every = ctx.opts.faults.drop_every_nth_seq;
    let mut stopping = false;
    let mut delivered_qos = [[0u64; 3]; 3];
    // Per device position, the QoS its messages are due at for this observer (after SUBACK).
    let mut due_qos: Vec<u8> = Vec::new();
    let mut mqtt5 = Mqtt5Check::default();
    let mut cutoff = ctx.cutoff.clone();
    loop {
        let event = tokio::select! {
            // At the cutoff an observer that is not connected (still trying) gives up at once.
            () = cut(&mut cutoff), if !up => break,
            length = &mut offline, if !went_offline => {
                went_offline = true;
                // Away without a word, as a device losing its network would be; the broker
                // keeps the session and queues what arrives for it.
                eventloop.clean();
                set_up(&mut up, false, &mut flush, &ctx);
                let mut cutoff = ctx.cutoff.clone();
                tokio::select! {
                    _ = tokio::time::sleep(length) => {}
                    () = cut(&mut cutoff) => break,
                }
                returning = true;
                continue;
            }
            e = eventloop.poll() => e,
        };
        if let (Some(delay), Ok(Ev::Publish(_))) = (ctx.opts.faults.receive_delay, &event) {
            // Busy, not asleep: CPU spent on every delivery, like slower receive code (tokio's
            // timer would round every pause up to a millisecond).
            let until = std::time::Instant::now() + delay;
            while std::time::Instant::now() < until {
                std::hint::spin_loop();
            }
        }
        // One clock reading per event serves the latency and the flush interval.
        let now = Instant::now();
        match event {
            Ok(Ev::Publish(p)) => {
                match Header::from_payload(&p.payload) {
                    Ok(h) => {
                        let now_ns = ctx.clock.ns_at(now);
                        if drop_every.is_some_and(|n| n > 0 && h.seq.is_multiple_of(n)) {
                            continue;
                        }
                        let pos = crate::position(&ctx.positions, h.device);
                        if let Some(due) = due_qos.get(pos) {
                            delivered_qos[usize::from(*due)][(p.qos as usize).min(2)] += 1;
                        }
                        let delivery = ledger.record(pos, h.seq);
                        if delivery == Delivery::Reordered {
                            flush.reordered += 1;
                        }
                        match delivery {
                            Delivery::InOrder | Delivery::Reordered => {
                                delivered.fetch_add(1, Ordering::Relaxed);
                                flush.delivered += 1;
                                measure(&mut flush, &ctx, &h, now_ns);
                                // MQTT 3.1.1 runs skip the lookup.
                                if ctx.target.protocol == Protocol::V5 {
                                    if let Some(sent) =
                                        ctx.devices.get(pos).and_then(|d| d.mqtt5.as_deref())
                                    {
                                        check_mqtt5(&mut mqtt5, sent, &p, h.sent_ns, now_ns);
                                    }
                                }
                            }
                            Delivery::Duplicate => flush.duplicates += 1,
                            Delivery::Unexpected => flush.unexpected += 1,
                        }
                    }
                    // Commands and replies are for devices and controllers.
                    Err(DecodeError::Command) => {}
                    // Not data: a status or a will, found by topic off the data path.
                    Err(e) => match ctx.events.classify(p.topic(), &p.payload) {
                        Some((pos, kind)) => heard[pos].record(kind, p.retain),
                        None => mqtt::report_error(
                            &ctx.flush,
                            "decode",
                            format_args!("on {}: {e}", p.topic()),
                        ),
                    },
                }
            }
            Ok(Ev::ConnAck {
                session_present, ..
            }) => {
                attempts = 0;
                set_up(&mut up, true, &mut flush, &ctx);
                if std::mem::take(&mut returning) {
                    returns += 1;
                    resumed += u64::from(session_present);
                }
                // A new session has no subscriptions: (re)subscribe.
                if !session_present {
                    let filters = spec.filters.iter().map(|f| (f.clone(), spec.qos));
                    if let Err(e) = client.try_subscribe_many(filters) {
                        let who = &spec.client_id;
                        mqtt::report_error(
                            &ctx.flush,
                            "subscribe",
                            format_args!("observer {who}: {e}"),
                        );
                    }
                }
            }
            Ok(Ev::SubAck(codes)) => {
                for (slot, code) in granted.iter_mut().zip(codes) {
                    *slot = code;
                }
                due_qos = ctx
                    .devices
                    .iter()
                    .map(|d| {
                        spec.filters
                            .iter()
                            .zip(&granted)
                            .filter(|(f, _)| fleetbench_scenario::topic::matches(f, &d.topic))
                            .filter_map(|(_, g)| *g)
                            .max()
                            .map_or(0, |g| g.min(d.qos.level()))
                    })
                    .collect();
                if let Some(tx) = ready_tx.take() {
                    let _ = tx.send(Ok(granted.clone()));
                }
            }
            Ok(Ev::SentDisconnect) => {
                stopping = true;
            }
            Ok(_) => {}
            Err(e) if e.is_requests_done() => break,
            Err(e) => {
                if stopping || *ctx.cutoff.borrow() {
                    break;
                }
                set_up(&mut up, false, &mut flush, &ctx);
                if let Ok(mut last) = last_error.lock() {
                    *last = Some(e.to_string());
                }
                if let Some(reason) = e.refusal() {
                    // Waiting out the readiness timeout would change nothing.
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(Err(reason));
                    }
                }
                attempts += 1;
                let who = format!("observer {}", spec.client_id);
                let policy = Backoff::default();
                tokio::select! {
                    _ = mqtt::back_off(&ctx.flush, &who, &e, &policy, attempts) => {}
                    () = cut(&mut cutoff) => break,
                }
            }
        }
        if stopping {
            break;
        }
        if now.duration_since(last_flush) >= ctx.opts.tick {
            last_flush = now;
            let _ = ctx.flush.send(Flush::Observer(flush.take()));
        }
    }
    if up {
        flush.connected = Some(false);
    }
    let _ = ctx.flush.send(Flush::Observer(flush));
    if !spec.clean_session {
        end_session(index, &spec, &ctx).await;
    }
    ObserverResult {
        ledger,
        granted,
        due_qos,
        delivered_qos,
        heard,
        returns,
        resumed,
        mqtt5,
    }
}

/// Until the cutoff.
async fn cut(cutoff: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = cutoff.wait_for(|c| *c).await;
}

/// Report a change of the connection's state at once (the live view and the broker watch count
/// connected observers).
fn set_up(up: &mut bool, now: bool, flush: &mut ObserverFlush, ctx: &ObserverCtx) {
    if *up != now {
        *up = now;
        flush.connected = Some(now);
        let _ = ctx.flush.send(Flush::Observer(flush.take()));
    }
}

/// A number that differs between runs, for client ids of sessions that outlive a connection.
fn run_nonce() -> u32 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() ^ d.as_secs() as u32);
    nanos ^ std::process::id().rotate_left(16)
}

/// End a persistent session: a clean connect discards it (MQTT 3.1.1, 3.1.2.4), then goodbye.
async fn end_session(index: usize, spec: &ObserverSpec, ctx: &ObserverCtx) {
    let (client, mut eventloop) = mqtt::client(&ctx.target, &settings(index, spec, ctx, true));
    let ended = async {
        loop {
            match eventloop.poll().await {
                Ok(Ev::ConnAck { .. }) => {
                    let _ = client.try_disconnect();
                }
                Ok(Ev::SentDisconnect) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(2), ended)
        .await
        .is_err()
    {
        debug!(observer = %spec.client_id, "could not end the persistent session");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::PublishProperties;
    use bytes::Bytes;

    fn received(properties: Option<PublishProperties>) -> Received {
        Received {
            topic: Bytes::from_static(b"grid/meter/0/power"),
            payload: Bytes::new(),
            qos: 1,
            retain: false,
            properties,
        }
    }

    #[test]
    fn mqtt5_properties_are_checked_against_what_the_device_sent() {
        let sent = Mqtt5Publish {
            user_properties: vec![
                ("site".into(), "s7".into()),
                ("device".into(), "m-0".into()),
            ],
            topic_alias: true,
            message_expiry_s: Some(10),
        };
        let props = |users: Vec<(String, String)>, expiry| PublishProperties {
            user_properties: users,
            message_expiry_interval: expiry,
            ..PublishProperties::default()
        };
        let s = 1_000_000_000u64;
        let mut t = Mqtt5Check::default();
        // Whole and in time (the broker may add properties of its own).
        let mut all = sent.user_properties.clone();
        all.push(("extra".into(), "x".into()));
        check_mqtt5(&mut t, &sent, &received(Some(props(all, Some(9)))), 0, s);
        // One user property dropped; expiry longer than was set.
        let one = vec![("site".to_string(), "s7".to_string())];
        check_mqtt5(&mut t, &sent, &received(Some(props(one, Some(11)))), 0, s);
        // No properties at all, and delivered 11 s after it left.
        check_mqtt5(&mut t, &sent, &received(None), 0, 11 * s);
        assert_eq!(
            (t.user_properties_expected, t.user_properties_missing),
            (3, 2)
        );
        assert_eq!((t.expiry_expected, t.expiry_missing), (3, 2));
        assert_eq!(t.delivered_after_expiry, 1);
    }
}
