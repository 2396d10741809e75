//! A device's poller: drives its rumqttc event loop. It connects, measures CONNACK and
//! PUBACK/PUBCOMP latency, publishes the device's status on every connect, subscribes to its
//! command topic and answers each command, and reconnects with the group's backoff.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::Arc;

use fleetbench_metrics::{DeviceFlush, Flush};
use fleetbench_scenario::{CommandTopics, DeviceSpec};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::client::{Client, ClientError, ConnError, Connection, Ev};
use crate::ctx::RunCtx;
use crate::device::DeviceResult;
use crate::mqtt;

/// What the publisher and the poller of one device share.
#[derive(Default)]
pub(crate) struct Link {
    /// The connection is up (CONNACK seen, no error since).
    pub connected: AtomicBool,
    /// Publishes completed: left (QoS 0) or acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP).
    /// Data, statuses and replies alike.
    completed: AtomicU64,
    /// Publishes queued that are not data: statuses and replies to commands.
    extras: AtomicU64,
    /// MQTT 5: the broker's topic alias maximum on this connection (0: no aliases).
    pub alias_max: AtomicU16,
    /// MQTT 5: the data topic has been sent with its alias on this connection, so later
    /// messages may carry the alias alone. Cleared on every CONNACK.
    pub alias_set: AtomicBool,
    /// Data messages sent with the topic alias alone.
    pub aliased: AtomicU64,
}

impl Link {
    /// Every publish of the `sent` data messages and of the extras has completed.
    pub(crate) fn all_completed(&self, sent: u64) -> bool {
        self.completed.load(Ordering::Relaxed) >= sent + self.extras.load(Ordering::Relaxed)
    }

    /// How many of the `sent` data messages completed, counting the extras as completed first:
    /// when the device leaves with flows unfinished this errs towards "in flight", never
    /// towards "lost".
    pub(crate) fn data_completed(&self, sent: u64) -> u64 {
        self.completed
            .load(Ordering::Relaxed)
            .saturating_sub(self.extras.load(Ordering::Relaxed))
            .min(sent)
    }

    /// What the device did, as it leaves having sent `sent` data messages.
    pub(crate) fn result(
        &self,
        spec: &DeviceSpec,
        sent: u64,
        connected_at: Option<Instant>,
        dropped: bool,
    ) -> DeviceResult {
        let wants_alias = spec.mqtt5.as_ref().is_some_and(|m| m.topic_alias);
        DeviceResult {
            sent,
            completed: self.data_completed(sent),
            connected_at,
            dropped,
            aliased: self.aliased.load(Ordering::Relaxed),
            alias_refused: wants_alias
                && connected_at.is_some()
                && self.alias_max.load(Ordering::Relaxed) == 0,
            skipped: 0,
            down_at_end: false,
        }
    }

    /// Queue a status or a reply (never waits: the poller must keep polling).
    fn publish_extra(
        &self,
        client: &Client,
        topic: &str,
        qos: fleetbench_scenario::Qos,
        retain: bool,
        payload: Vec<u8>,
    ) -> Result<(), ClientError> {
        client.try_publish(topic, qos, retain, payload)?;
        self.extras.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// Drive device `pos`'s event loop until it says goodbye, its client goes, or the run ends.
pub(crate) async fn poll_device(
    pos: u32,
    client: Client,
    mut eventloop: Connection,
    ctx: Arc<RunCtx>,
    connected_tx: oneshot::Sender<Instant>,
    link: Arc<Link>,
) {
    let mut p = Poller {
        spec: &ctx.devices[pos as usize],
        ctx: &ctx,
        client,
        link: &link,
        listening: &ctx.listening[pos as usize],
        finish_deadline: ctx.window().finish_deadline,
        connected_tx: Some(connected_tx),
        pending: HashMap::new(),
        flush: DeviceFlush::new(pos),
        attempt_start: Instant::now(),
        attempts: 0,
    };
    let mut last_flush = Instant::now();
    loop {
        match eventloop.poll().await {
            Ok(Ev::ConnAck { alias_max, .. }) => p.connected(alias_max),
            Ok(Ev::SubAck(_)) => p.listening.store(true, Ordering::Relaxed),
            Ok(Ev::Publish(m)) => p.command(&m.topic, &m.payload),
            // QoS 0 publishes carry packet id 0 and complete when they leave.
            Ok(Ev::Sent(0)) => {
                p.link.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ev::Sent(pkid)) => {
                p.pending.insert(pkid, Instant::now());
            }
            Ok(Ev::Acked(pkid)) => p.acked(pkid),
            Ok(Ev::SentDisconnect) => break,
            Ok(_) => {}
            Err(e) if e.is_requests_done() => break,
            Err(e) => {
                if !p.lost(&e).await {
                    break;
                }
            }
        }
        if !p.flush.ack_us.is_empty() && last_flush.elapsed() >= ctx.opts.tick {
            last_flush = Instant::now();
            let _ = ctx.flush.send(Flush::Device(p.flush.take()));
        }
    }
    if link.connected.swap(false, Ordering::Relaxed) {
        p.flush.connected = Some(false);
    }
    let _ = ctx.flush.send(Flush::Device(p.flush));
}

/// What a device's poller keeps between events.
struct Poller<'a> {
    spec: &'a DeviceSpec,
    ctx: &'a RunCtx,
    client: Client,
    link: &'a Link,
    listening: &'a AtomicBool,
    finish_deadline: Instant,
    connected_tx: Option<oneshot::Sender<Instant>>,
    /// Publishes sent and not yet acknowledged, by packet id.
    pending: HashMap<u16, Instant>,
    flush: DeviceFlush,
    attempt_start: Instant,
    attempts: u32,
}

impl Poller<'_> {
    /// CONNACK: connect latency, the status published, the command topic subscribed.
    fn connected(&mut self, alias_max: u16) {
        let (spec, link) = (self.spec, self.link);
        let now = Instant::now();
        // Aliases last one connection.
        link.alias_max.store(alias_max, Ordering::Relaxed);
        link.alias_set.store(false, Ordering::Relaxed);
        self.flush.connect_us = Some(now.duration_since(self.attempt_start).as_micros() as u64);
        self.flush.connected = Some(true);
        link.connected.store(true, Ordering::Relaxed);
        self.attempts = 0;
        if let Some(tx) = self.connected_tx.take() {
            let _ = tx.send(now);
        }
        if let Some(s) = &spec.status {
            let payload = s.payload.clone().into_bytes();
            if let Err(e) = link.publish_extra(&self.client, &s.topic, s.qos, s.retain, payload) {
                report(self.ctx, "status", &s.topic, e);
            }
        }
        if let Some(c) = &spec.commands {
            // A clean session: the subscription is renewed on every connect.
            if let Err(e) = self.client.try_subscribe_many([(c.topic.clone(), c.qos)]) {
                let who = &spec.client_id;
                mqtt::report_error(&self.ctx.flush, "subscribe", format_args!("{who}: {e}"));
            }
        }
        // Report the connection at once: the monitor counts connected devices.
        let _ = self.ctx.flush.send(Flush::Device(self.flush.take()));
    }

    /// A message on the command topic: the answer carries the command's own bytes back, so
    /// that its header times the round trip.
    fn command(&self, topic: &[u8], payload: &[u8]) {
        let command = |c: &&CommandTopics| topic == c.topic.as_bytes();
        if let Some(c) = self.spec.commands.as_ref().filter(command) {
            let reply = payload.to_vec();
            if let Err(e) = self
                .link
                .publish_extra(&self.client, &c.reply, c.qos, false, reply)
            {
                report(self.ctx, "reply", &c.reply, e);
            }
        }
    }

    /// PUBACK or PUBCOMP: the flow completed, and how long it took.
    fn acked(&mut self, pkid: u16) {
        if let Some(t) = self.pending.remove(&pkid) {
            self.link.completed.fetch_add(1, Ordering::Relaxed);
            let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
            self.flush.ack_us.push(us);
        }
    }

    /// The connection failed: report it and back off before the next attempt. False when the
    /// device should stop instead (the run ended, or its flows' deadline passed).
    async fn lost(&mut self, e: &ConnError) -> bool {
        let ctx = self.ctx;
        self.listening.store(false, Ordering::Relaxed);
        if ctx.end.is_cancelled() || Instant::now() >= self.finish_deadline {
            return false;
        }
        if self.link.connected.swap(false, Ordering::Relaxed) {
            // At once: the live view and the broker watch count connected devices.
            self.flush.connected = Some(false);
            let _ = ctx.flush.send(Flush::Device(self.flush.take()));
        }
        self.pending.clear();
        self.attempts += 1;
        let spec = self.spec;
        tokio::select! {
            () = mqtt::back_off(&ctx.flush, &spec.client_id, e, &spec.reconnect, self.attempts) => {}
            () = ctx.end.cancelled() => return false,
        }
        self.attempt_start = Instant::now();
        true
    }
}

fn report(ctx: &RunCtx, kind: &'static str, topic: &str, e: ClientError) {
    mqtt::report_error(&ctx.flush, kind, format_args!("on {topic}: {e}"));
}
