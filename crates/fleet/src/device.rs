//! One virtual device: a poller task that drives its rumqttc event loop (see [`crate::poller`])
//! and a publisher that sends on an open-loop schedule: each message leaves when it is due,
//! whatever happened before. A device with `drop_at` cuts its connection without a DISCONNECT
//! at that time, so that the broker publishes its last will.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::{DeviceFlush, Flush};
use fleetbench_scenario::{DeviceSpec, Mqtt5Publish};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::client::{Client, PublishProperties};
use crate::codec::Header;
use crate::ctx::{RunCtx, Window};
use crate::mqtt::{self, ClientSettings};
use crate::payload::PayloadMaker;
use crate::poller::{poll_device, Link};

/// What a device did: how many messages it sent (sequence numbers `0..sent`) and when it first
/// connected.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct DeviceResult {
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

/// The device at `pos` of the plan, from its connect time until it leaves.
pub(crate) async fn run_device(pos: u32, ctx: Arc<RunCtx>) -> DeviceResult {
    let w = ctx.window();
    let spec = &ctx.devices[pos as usize];
    tokio::select! {
        _ = sleep_until(w.start + spec.connect_at) => {}
        _ = ctx.end.cancelled() => return DeviceResult::default(),
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
        client.clone(),
        eventloop,
        ctx.clone(),
        connected_tx,
        link.clone(),
    ));
    let device = Device {
        pos,
        spec,
        ctx: &ctx,
        w,
        link: &link,
        client,
    };
    // The publisher hands the aggregator its final count itself.
    let published = Publisher::new(&device).run(connected_rx).await;
    device.leave(published, poller).await
}

/// A device under way: its spec, its client and what its poller shares with it.
struct Device<'a> {
    pos: u32,
    spec: &'a DeviceSpec,
    ctx: &'a RunCtx,
    w: Window,
    link: &'a Link,
    client: Client,
}

impl Device<'_> {
    /// The publish window is over: drop the connection (`drop_at`), or wait for the flows still
    /// open and say goodbye.
    async fn leave(self, p: Published, poller: JoinHandle<()>) -> DeviceResult {
        let Device {
            pos,
            spec,
            ctx,
            w,
            link,
            client,
        } = self;
        let down_at_end = p.connected_at.is_some() && !link.connected.load(Ordering::Relaxed);
        let finish = |dropped: bool| DeviceResult {
            skipped: p.skipped,
            down_at_end,
            ..link.result(spec, p.sent, p.connected_at, dropped)
        };
        if let Some(at) = spec.drop_at.map(|d| w.start + d) {
            tokio::select! {
                _ = sleep_until(at) => {}
                _ = ctx.end.cancelled() => {}
            }
            if !ctx.end.is_cancelled() {
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
                return finish(dropped);
            }
        }
        // Disconnecting with a flow unfinished would discard its message (at QoS 2 the broker
        // forwards only after PUBREL): wait until every message has left (QoS 0) or been
        // acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP).
        let deadline = if ctx.end.is_cancelled() {
            Instant::now() + Duration::from_millis(500)
        } else {
            w.finish_deadline
        };
        while !link.all_completed(p.sent) && Instant::now() < deadline {
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
        let result = finish(false);
        let _ = tokio::time::timeout(Duration::from_secs(5), poller).await;
        result
    }
}

/// What a publisher did with its schedule.
struct Published {
    /// Sequence numbers `0..sent` were published.
    sent: u64,
    /// Messages due before the device connected.
    skipped: u64,
    connected_at: Option<Instant>,
}

/// The open-loop publisher of one device.
struct Publisher<'a> {
    d: &'a Device<'a>,
    /// No message due at or after this is sent (the window's end, or `drop_at`).
    publish_end: Instant,
    /// Lateness counts for messages due from then on (after the warm-up).
    measure_from: Instant,
    /// A stall injected on purpose (faults): from, until.
    stall: Option<(Instant, Instant)>,
    flush: DeviceFlush,
    last_flush: Instant,
    /// When the publisher last woke (and read the clock).
    last_wake: Instant,
    seq: u64,
}

impl<'a> Publisher<'a> {
    fn new(d: &'a Device<'a>) -> Self {
        // A device that drops stops publishing then.
        let publish_end = d
            .spec
            .drop_at
            .map_or(d.w.publish_end, |at| d.w.publish_end.min(d.w.start + at));
        let now = Instant::now();
        let stall = d.ctx.opts.faults.stall.map(|s| {
            let from = d.w.start + s.after;
            (from, from + s.length)
        });
        Publisher {
            d,
            publish_end,
            measure_from: d.w.start + d.ctx.timing.warmup,
            stall,
            flush: DeviceFlush::new(d.pos),
            last_flush: now,
            last_wake: now,
            seq: 0,
        }
    }

    /// Publish on the schedule from the connection on, until the window ends or the run does.
    async fn run(mut self, connected: oneshot::Receiver<Instant>) -> Published {
        let (ctx, w) = (self.d.ctx, self.d.w);
        // Never connected: everything due until the window closed (or the run stopped) was
        // skipped.
        let none = |until: Instant| Published {
            sent: 0,
            skipped: due_before(self.d, until.min(self.publish_end)),
            connected_at: None,
        };
        let connected = tokio::select! {
            c = connected => match c { Ok(t) => t, Err(_) => return none(Instant::now()) },
            _ = sleep_until(self.publish_end) => return none(self.publish_end),
            _ = ctx.end.cancelled() => return none(Instant::now()),
        };
        let mut schedule = self.d.spec.schedule();
        let mut maker = PayloadMaker::new(self.d.spec);
        let mut skipped: u64 = 0;
        // The schedule runs from the ramp start whatever happens; messages due before this
        // device connected are not sent, and counted as skipped.
        while let Some(offset) = schedule.next_due(&ctx.shape) {
            let due = w.start + offset;
            if due >= self.publish_end {
                break;
            }
            if due < connected {
                skipped += 1;
                continue;
            }
            let Some(now) = self.wake_for(due).await else {
                break;
            };
            if !self.send(due, now, &mut maker).await {
                break;
            }
            if ctx.shape.is_declared() {
                self.flush.count_phase(ctx.shape.phase_at(offset));
            }
            self.seq += 1;
            if now.duration_since(self.last_flush) >= ctx.opts.tick {
                self.flush.sent = self.seq;
                let _ = ctx.flush.send(Flush::Device(self.flush.take()));
                self.last_flush = now;
            }
        }
        self.flush.sent = self.seq;
        let _ = ctx.flush.send(Flush::Device(self.flush));
        Published {
            sent: self.seq,
            skipped,
            connected_at: Some(connected),
        }
    }

    /// Sleep until message `due` may go and count how late it left: the time then, or None
    /// when the run ended meanwhile.
    async fn wake_for(&mut self, due: Instant) -> Option<Instant> {
        let ctx = self.d.ctx;
        // A publisher wakes at most once per BATCH: a message that fell due after the last wake
        // waits for the next batch; one due before it (catching up) goes at once.
        let wake_at = if due > self.last_wake {
            due.max(self.last_wake + BATCH)
        } else {
            due
        };
        tokio::select! {
            _ = ctx.timer.sleep_until(wake_at.into_std()) => {}
            _ = ctx.end.cancelled() => return None,
        }
        let mut now = Instant::now();
        if let Some((from, until)) = self.stall {
            if due >= from && now < until {
                tokio::select! {
                    _ = sleep_until(until) => {}
                    _ = ctx.end.cancelled() => return None,
                }
                now = Instant::now();
            }
        }
        self.last_wake = now;
        // The generator's health is judged after the warm-up, like latency.
        if due >= self.measure_from {
            let lag = now.saturating_duration_since(due);
            if lag > ctx.opts.late_threshold {
                self.flush.late_sends += 1;
            }
            self.flush.max_lag_us = self.flush.max_lag_us.max(lag.as_micros() as u64);
        }
        Some(now)
    }

    /// Hand message `seq`, due at `due`, to the client; false when the run ended or the client
    /// refused it.
    async fn send(&mut self, due: Instant, now: Instant, maker: &mut PayloadMaker) -> bool {
        let Device {
            spec, ctx, link, ..
        } = self.d;
        let intended_ns = ctx.clock.ns_at(due.into_std());
        let header = Header {
            device: spec.id,
            seq: self.seq,
            intended_ns,
            sent_ns: ctx.clock.ns_at(now.into_std()),
        };
        let payload = maker.make(&header, ctx.clock.unix_ns_at(intended_ns));
        let client = &self.d.client;
        let result = tokio::select! {
            r = match spec.mqtt5.as_deref() {
                None => client.publish(&spec.topic, spec.qos, false, payload, None),
                Some(m) => {
                    let (topic, properties) = with_properties(&spec.topic, m, link);
                    client.publish(topic, spec.qos, false, payload, Some(properties))
                }
            } => r,
            _ = ctx.end.cancelled() => return false,
        };
        if let Err(e) = result {
            mqtt::report_error(
                &ctx.flush,
                "publish",
                format_args!("{}: {e}", spec.client_id),
            );
            return false;
        }
        true
    }
}

/// Counting a schedule stops here: a device that never connected at 100,000 msg/s for an hour
/// would otherwise cost seconds of CPU to count. Past it, the count is a lower bound.
const MAX_COUNTED: u64 = 10_000_000;

/// How many of the device's messages fell due before `until`.
fn due_before(d: &Device, until: Instant) -> u64 {
    let mut schedule = d.spec.schedule();
    let mut n = 0;
    while let Some(offset) = schedule.next_due(&d.ctx.shape) {
        if d.w.start + offset >= until || n >= MAX_COUNTED {
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
