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

use crate::client::{Client, ClientError, Connection, Ev};
use crate::device::{DeviceCtx, DeviceResult};
use crate::mqtt;

/// What the publisher and the poller of one device share.
#[derive(Default)]
pub struct Link {
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
    pub fn all_completed(&self, sent: u64) -> bool {
        self.completed.load(Ordering::Relaxed) >= sent + self.extras.load(Ordering::Relaxed)
    }

    /// How many of the `sent` data messages completed, counting the extras as completed first:
    /// when the device leaves with flows unfinished this errs towards "in flight", never
    /// towards "lost".
    pub fn data_completed(&self, sent: u64) -> u64 {
        self.completed
            .load(Ordering::Relaxed)
            .saturating_sub(self.extras.load(Ordering::Relaxed))
            .min(sent)
    }

    /// What the device did, as it leaves having sent `sent` data messages.
    pub fn result(
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

pub async fn poll_device(
    pos: u32,
    spec: DeviceSpec,
    client: Client,
    mut eventloop: Connection,
    ctx: Arc<DeviceCtx>,
    connected_tx: oneshot::Sender<Instant>,
    link: Arc<Link>,
) {
    let mut connected_tx = Some(connected_tx);
    let mut pending: HashMap<u16, Instant> = HashMap::new();
    let mut flush = DeviceFlush::new(pos);
    let mut attempt_start = Instant::now();
    let mut attempts = 0u32;
    let mut last_flush = Instant::now();
    let listening = &ctx.listening[pos as usize];
    loop {
        match eventloop.poll().await {
            Ok(Ev::ConnAck { alias_max, .. }) => {
                let now = Instant::now();
                // Aliases last one connection.
                link.alias_max.store(alias_max, Ordering::Relaxed);
                link.alias_set.store(false, Ordering::Relaxed);
                flush.connect_us = Some(now.duration_since(attempt_start).as_micros() as u64);
                flush.connected = Some(true);
                link.connected.store(true, Ordering::Relaxed);
                attempts = 0;
                if let Some(tx) = connected_tx.take() {
                    let _ = tx.send(now);
                }
                if let Some(s) = &spec.status {
                    let payload = s.payload.clone().into_bytes();
                    if let Err(e) = link.publish_extra(&client, &s.topic, s.qos, s.retain, payload)
                    {
                        report(&ctx, "status", &s.topic, e);
                    }
                }
                if let Some(c) = &spec.commands {
                    // A clean session: the subscription is renewed on every connect.
                    if let Err(e) = client.try_subscribe_many([(c.topic.clone(), c.qos)]) {
                        let who = &spec.client_id;
                        mqtt::report_error(&ctx.flush, "subscribe", format_args!("{who}: {e}"));
                    }
                }
                // Report the connection at once: the monitor counts connected devices.
                let _ = ctx.flush.send(Flush::Device(flush.take()));
            }
            Ok(Ev::SubAck(_)) => listening.store(true, Ordering::Relaxed),
            Ok(Ev::Publish(p)) => {
                let command = |c: &&CommandTopics| p.topic == c.topic.as_bytes();
                if let Some(c) = spec.commands.as_ref().filter(command) {
                    // The answer carries the command's own bytes back: its header times the
                    // round trip.
                    if let Err(e) =
                        link.publish_extra(&client, &c.reply, c.qos, false, p.payload.to_vec())
                    {
                        report(&ctx, "reply", &c.reply, e);
                    }
                }
            }
            // QoS 0 publishes carry packet id 0 and complete when they leave.
            Ok(Ev::Sent(0)) => {
                link.completed.fetch_add(1, Ordering::Relaxed);
            }
            Ok(Ev::Sent(pkid)) => {
                pending.insert(pkid, Instant::now());
            }
            Ok(Ev::Acked(pkid)) => {
                if let Some(t) = pending.remove(&pkid) {
                    link.completed.fetch_add(1, Ordering::Relaxed);
                    let us = t.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                    flush.ack_us.push(us);
                }
            }
            Ok(Ev::SentDisconnect) => break,
            Ok(_) => {}
            Err(e) if e.is_requests_done() => break,
            Err(e) => {
                listening.store(false, Ordering::Relaxed);
                if ctx.stop.is_cancelled() || Instant::now() >= ctx.finish_deadline {
                    break;
                }
                if link.connected.swap(false, Ordering::Relaxed) {
                    // At once: the live view and the broker watch count connected devices.
                    flush.connected = Some(false);
                    let _ = ctx.flush.send(Flush::Device(flush.take()));
                }
                pending.clear();
                attempts += 1;
                tokio::select! {
                    () = mqtt::back_off(&ctx.flush, &spec.client_id, &e, &spec.reconnect, attempts) => {}
                    () = ctx.stop.cancelled() => break,
                }
                attempt_start = Instant::now();
            }
        }
        if !flush.ack_us.is_empty() && last_flush.elapsed() >= ctx.opts.tick {
            last_flush = Instant::now();
            let _ = ctx.flush.send(Flush::Device(flush.take()));
        }
    }
    if link.connected.swap(false, Ordering::Relaxed) {
        flush.connected = Some(false);
    }
    let _ = ctx.flush.send(Flush::Device(flush));
}

fn report(ctx: &DeviceCtx, kind: &'static str, topic: &str, e: ClientError) {
    mqtt::report_error(&ctx.flush, kind, format_args!("on {topic}: {e}"));
}
