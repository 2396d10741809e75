//! One virtual device: a poller task that drives its rumqttc event loop (see [`crate::poller`])
//! and a publisher task that sends on an open-loop schedule: each message leaves when it is
//! due, whatever happened before. A device with `drop_at` cuts its connection without a
//! DISCONNECT at that time, so that the broker publishes its last will.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::{DeviceFlush, Flush};
use fleetbench_scenario::load::LoadShape;
use fleetbench_scenario::{DeviceSpec, Mqtt5Publish};
use tokio::sync::{oneshot, watch};
use tokio::time::{sleep_until, Instant};
use tokio_util::sync::CancellationToken;

use crate::client::{Client, PublishProperties};
use crate::clock::RunClock;
use crate::codec::Header;
use crate::mqtt::{self, ClientSettings};
use crate::payload::PayloadMaker;
use crate::poller::{poll_device, Link};
use crate::timer::PreciseTimer;
use crate::{FleetOptions, Target};

/// What every device task shares (read-only).
pub struct DeviceCtx {
    pub clock: RunClock,
    pub target: Target,
    pub opts: FleetOptions,
    pub flush: Sender<Flush>,
    /// When connecting starts; devices connect at `ramp_start + connect_at`.
    pub ramp_start: Instant,
    /// No message due at or after this is sent.
    pub publish_end: Instant,
    /// After its last message, a device waits at most until then for its QoS 1/2 flows to
    /// complete before it disconnects.
    pub finish_deadline: Instant,
    pub stop: CancellationToken,
    /// Wakes publishers at their due times (tokio's timer would add about a millisecond).
    pub timer: PreciseTimer,
    /// Lateness is not counted for messages due in the first `warmup` of the ramp.
    pub warmup: Duration,
    /// The load phases every schedule follows.
    pub shape: LoadShape,
    /// Per device position: subscribed to its command topic and connected, so that a
    /// controller's command can reach it.
    pub listening: Arc<Vec<AtomicBool>>,
    /// Turns true when the controllers have sent their last command and heard every answer
    /// (or gave up): devices that take commands stay connected until then.
    pub commands_done: watch::Receiver<bool>,
}

/// What a device did: how many messages it sent (sequence numbers `0..sent`) and when it first
/// connected.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeviceResult {
    pub sent: u64,
    /// Of those, how many had left (QoS 0) or been acknowledged (QoS 1 and 2) when the device
    /// disconnected. The rest may never have reached the broker: at the cutoff they are in
    /// flight, not lost.
    pub completed: u64,
    pub connected_at: Option<Instant>,
    /// It cut its connection at `drop_at` while connected: the broker owes its last will.
    pub dropped: bool,
    /// MQTT 5: data messages sent with a topic alias alone.
    pub aliased: u64,
    /// MQTT 5: it asked for topic aliases and its (last) connection's broker allowed none.
    pub alias_refused: bool,
    /// Messages that fell due before the device had connected (all of them when it never did)
    /// and were therefore not sent.
    pub skipped: u64,
    /// It had connected, and its connection was down when its publish window ended: lost, not
    /// by design.
    pub down_at_end: bool,
}

pub async fn run_device(pos: u32, spec: DeviceSpec, ctx: Arc<DeviceCtx>) -> DeviceResult {
    tokio::select! {
        _ = sleep_until(ctx.ramp_start + spec.connect_at) => {}
        _ = ctx.stop.cancelled() => return DeviceResult::default(),
    }
    let (client, eventloop) = mqtt::client(
        &ctx.target,
        &ClientSettings {
            client_id: &spec.client_id,
            port_index: spec.id as usize,
            keep_alive: spec.keep_alive,
            max_packet: spec.largest_payload() + 1024,
            inflight: 100,
            channel_capacity: 64,
            connect_timeout: ctx.opts.connect_timeout,
            clean_session: true,
            will: spec.will.as_ref(),
        },
    );
    let (connected_tx, connected_rx) = oneshot::channel();
    let link = Arc::new(Link::default());
    let poller = tokio::spawn(poll_device(
        pos,
        spec.clone(),
        client.clone(),
        eventloop,
        ctx.clone(),
        connected_tx,
        link.clone(),
    ));

    let mut connected_at = None;
    let drop_at = spec.drop_at.map(|d| ctx.ramp_start + d);
    // `publish` hands the aggregator its final count itself.
    let Published { sent, skipped } = publish(
        pos,
        &spec,
        &client,
        &ctx,
        &link,
        connected_rx,
        &mut connected_at,
    )
    .await;
    let down_at_end = connected_at.is_some() && !link.connected.load(Ordering::Relaxed);
    let finish = |result: DeviceResult| DeviceResult {
        skipped,
        down_at_end,
        ..result
    };
    if let Some(at) = drop_at {
        tokio::select! {
            _ = sleep_until(at) => {}
            _ = ctx.stop.cancelled() => {}
        }
        if !ctx.stop.is_cancelled() {
            // A power cut: the event loop and its socket go away without a DISCONNECT.
            let dropped = link.connected.load(Ordering::Relaxed);
            poller.abort();
            ctx.listening[pos as usize].store(false, Ordering::Relaxed);
            let _ = poller.await;
            if dropped {
                let mut gone = DeviceFlush::new(pos);
                gone.connected = Some(false);
                let _ = ctx.flush.send(Flush::Device(gone));
            }
            return finish(link.result(&spec, sent, connected_at, dropped));
        }
    }
    // Disconnecting with a flow unfinished would discard its message (at QoS 2 the broker
    // forwards only after PUBREL): wait until every message has left (QoS 0) or been
    // acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP).
    let deadline = if ctx.stop.is_cancelled() {
        Instant::now() + Duration::from_millis(500)
    } else {
        ctx.finish_deadline
    };
    while !link.all_completed(sent) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    if spec.commands.is_some() {
        // Stay to answer until the controllers are done.
        let mut done = ctx.commands_done.clone();
        let _ = tokio::time::timeout_at(deadline, done.wait_for(|d| *d)).await;
    }
    ctx.listening[pos as usize].store(false, Ordering::Relaxed);
    let _ = client.try_disconnect();
    drop(client);
    let result = link.result(&spec, sent, connected_at, false);
    let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
    finish(result)
}

async fn publish(
    pos: u32,
    spec: &DeviceSpec,
    client: &Client,
    ctx: &DeviceCtx,
    link: &Link,
    connected: oneshot::Receiver<Instant>,
    connected_at: &mut Option<Instant>,
) -> Published {
    // A device that drops stops publishing then.
    let publish_end = spec
        .drop_at
        .map_or(ctx.publish_end, |d| ctx.publish_end.min(ctx.ramp_start + d));
    // Never connected: everything due until the window closed (or the run stopped) was skipped.
    let none = |until: Instant| Published {
        sent: 0,
        skipped: due_before(spec, ctx, until.min(publish_end)),
    };
    let connected = tokio::select! {
        c = connected => match c { Ok(t) => t, Err(_) => return none(Instant::now()) },
        _ = sleep_until(publish_end) => return none(publish_end),
        _ = ctx.stop.cancelled() => return none(Instant::now()),
    };
    *connected_at = Some(connected);
    let measure_from = ctx.ramp_start + ctx.warmup;
    let late_threshold = ctx.opts.late_threshold;
    let stall = ctx.opts.faults.stall.map(|s| {
        let from = ctx.ramp_start + s.after;
        (from, from + s.length)
    });
    let mut schedule = spec.schedule();
    let mut maker = PayloadMaker::new(spec);
    let mut flush = DeviceFlush::new(pos);
    let mut last_flush = Instant::now();
    // When the publisher last woke (and read the clock).
    let mut last_wake = last_flush;
    let mut seq: u64 = 0;
    let mut skipped: u64 = 0;
    // The schedule runs from the ramp start whatever happens; messages due before this device
    // connected are not sent, and counted as skipped.
    while let Some(offset) = schedule.next_due(&ctx.shape) {
        let due = ctx.ramp_start + offset;
        if due >= publish_end {
            break;
        }
        if due < connected {
            skipped += 1;
            continue;
        }
        // A publisher wakes at most once per BATCH: a message that fell due after the last wake
        // waits for the next batch; one due before it (catching up) goes at once.
        let wake_at = if due > last_wake {
            due.max(last_wake + BATCH)
        } else {
            due
        };
        tokio::select! {
            _ = ctx.timer.sleep_until(wake_at.into_std()) => {}
            _ = ctx.stop.cancelled() => break,
        }
        let mut now = Instant::now();
        if let Some((from, until)) = stall {
            if due >= from && now < until {
                tokio::select! {
                    _ = sleep_until(until) => {}
                    _ = ctx.stop.cancelled() => break,
                }
                now = Instant::now();
            }
        }
        last_wake = now;
        // The generator's health is judged after the warm-up, like latency.
        if due >= measure_from {
            let lag = now.saturating_duration_since(due);
            if lag > late_threshold {
                flush.late_sends += 1;
            }
            flush.max_lag_us = flush.max_lag_us.max(lag.as_micros() as u64);
        }
        let intended_ns = ctx.clock.ns_at(due.into_std());
        let header = Header {
            device: spec.id,
            seq,
            intended_ns,
            sent_ns: ctx.clock.ns_at(now.into_std()),
        };
        let payload = maker.make(&header, ctx.clock.unix_ns_at(intended_ns));
        let result = tokio::select! {
            r = match spec.mqtt5.as_deref() {
                None => client.publish(&spec.topic, spec.qos, false, payload, None),
                Some(m) => {
                    let (topic, properties) = with_properties(&spec.topic, m, link);
                    client.publish(topic, spec.qos, false, payload, Some(properties))
                }
            } => r,
            _ = ctx.stop.cancelled() => break,
        };
        if let Err(e) = result {
            mqtt::report_error(
                &ctx.flush,
                "publish",
                format_args!("{}: {e}", spec.client_id),
            );
            break;
        }
        if ctx.shape.is_declared() {
            flush.count_phase(ctx.shape.phase_at(offset));
        }
        seq += 1;
        if now.duration_since(last_flush) >= ctx.opts.tick {
            flush.sent = seq;
            let _ = ctx.flush.send(Flush::Device(flush.take()));
            last_flush = now;
        }
    }
    flush.sent = seq;
    let _ = ctx.flush.send(Flush::Device(flush));
    Published { sent: seq, skipped }
}

/// What a publisher did with its schedule.
struct Published {
    /// Sequence numbers `0..sent` were published.
    sent: u64,
    /// Messages due before the device connected.
    skipped: u64,
}

/// Counting a schedule stops here: a device that never connected at 100,000 msg/s for an hour
/// would otherwise cost seconds of CPU to count. Past it, the count is a lower bound.
const MAX_COUNTED: u64 = 10_000_000;

/// How many of the device's messages fell due before `until`.
fn due_before(spec: &DeviceSpec, ctx: &DeviceCtx, until: Instant) -> u64 {
    let mut schedule = spec.schedule();
    let mut n = 0;
    while let Some(offset) = schedule.next_due(&ctx.shape) {
        if ctx.ramp_start + offset >= until || n >= MAX_COUNTED {
            break;
        }
        n += 1;
    }
    n
}

/// The topic and MQTT 5 properties of a data message. With topic aliases (when the broker
/// allows them), the first message of each connection carries the topic and alias 1, later
/// ones the alias alone (an empty topic).
fn with_properties<'a>(
    topic: &'a str,
    m: &Mqtt5Publish,
    link: &Link,
) -> (&'a str, PublishProperties) {
    let aliased = m.topic_alias && link.alias_max.load(Ordering::Relaxed) >= 1;
    let alias_only = aliased && link.alias_set.swap(true, Ordering::Relaxed);
    let properties = PublishProperties {
        user_properties: m.user_properties.clone(),
        message_expiry_interval: m.message_expiry_s,
        topic_alias: aliased.then_some(1),
        ..PublishProperties::default()
    };
    if alias_only {
        link.aliased.fetch_add(1, Ordering::Relaxed);
        ("", properties)
    } else {
        (topic, properties)
    }
}

/// The shortest time between two wakes of one publisher. Messages due in between are sent
/// together, each still carrying its own intended time (and counted late if it left more than
/// the lateness threshold after it).
const BATCH: Duration = Duration::from_micros(250);
