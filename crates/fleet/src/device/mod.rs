//! One virtual device, one task: it owns its connection (see [`crate::client`]) and publishes
//! on an open-loop schedule, each message leaving when it is due whatever happened before.
//! Between sends it drives its connection (acknowledgements, commands, reconnects: see
//! [`poller`]). A device with `drop_at` cuts its connection without a DISCONNECT at
//! that time, so that the broker publishes its last will.

mod poller;

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fleetbench_metrics::flush::Down;
use fleetbench_metrics::{DeviceFlush, Flush};
use fleetbench_scenario::{DeviceSpec, Mqtt5Publish, WhileDown};
use tokio::time::{sleep_until, Instant};

use crate::client::{Connection, PublishProperties, Settings};
use crate::ctx::{RunCtx, Window};
use crate::errors;
use crate::header::Header;
use crate::payload::PayloadMaker;
use poller::{How, Wait};

/// What a device did: how many messages it sent (sequence numbers `0..sent`) and when it first
/// connected.
#[derive(Debug, Clone, Default)]
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
    /// Messages sent before each point of the fault grid it reached (the points after: all).
    pub marks: Vec<u32>,
    /// Connections of it that faults cut while they were up (each owes its last will).
    pub cuts_made: u32,
}

/// The device at `pos` of the plan, from its connect time until it leaves: what it did goes
/// to `done` when its publishing is over, and it leaves when the run's drain is (or at once,
/// when the run was stopped).
pub(crate) async fn run_device(
    pos: u32,
    ctx: Arc<RunCtx>,
    done: tokio::sync::oneshot::Sender<DeviceResult>,
) {
    let w = ctx.window();
    let spec = &ctx.devices[pos as usize];
    tokio::select! {
        _ = sleep_until(w.start + spec.connect_at) => {}
        _ = ctx.end.cancelled() => {
            let _ = done.send(DeviceResult::default());
            return;
        }
    }
    let conn = Connection::new(Settings {
        keep_alive: spec.keep_alive,
        max_packet: spec.largest_packet(),
        will: spec.will.clone(),
        ..Settings::of(
            &ctx.device_target,
            spec.id as usize,
            &spec.client_id,
            ctx.opts.connect_timeout,
        )
    });
    let mut d = Device::new(pos, &ctx, w, conn);
    let skipped = d.publish().await;
    d.leave(skipped, done).await;
}

/// A device under way: its spec, its connection, and what it has done.
pub(crate) struct Device<'a> {
    pub pos: u32,
    pub spec: &'a DeviceSpec,
    pub ctx: &'a RunCtx,
    pub w: Window,
    pub conn: Connection,
    pub flush: DeviceFlush,
    pub last_flush: Instant,
    /// Sequence numbers `0..seq` were published.
    pub seq: u64,
    /// The connection is up (CONNACK seen, no error since).
    pub connected: bool,
    pub connected_at: Option<Instant>,
    /// Statuses and replies published (they complete like data and are not data).
    pub extras: u64,
    /// When the next connection attempt may start (backing off after a failure).
    pub retry_at: Option<Instant>,
    pub attempt_start: Instant,
    pub attempts: u32,
    /// The connection failed for good (refused) or the run is over for it.
    pub gave_up: bool,
    /// MQTT 5: the broker's topic alias maximum on this connection (0: no aliases), whether
    /// the data topic has been sent with its alias on it, and how many messages went with the
    /// alias alone.
    pub alias_max: u16,
    pub alias_set: bool,
    pub aliased: u64,
    /// How many of the spec's fault cuts have come, and how many found the connection up.
    pub cuts_done: usize,
    pub cuts_made: u32,
    /// The cut the device is down from: when it was due (from the ramp start) and when it
    /// happened.
    pub cut_pending: Option<(Duration, Instant)>,
    /// The connection was lost (not cut by the plan) and is not back yet: when (from the ramp
    /// start) and the instant.
    pub lost_since: Option<(Duration, Instant)>,
    /// Messages sent before each point of the fault grid (`marks[k]`: those due before
    /// point `k`), as far as the schedule has come.
    pub marks: Vec<u32>,
}

impl<'a> Device<'a> {
    fn new(pos: u32, ctx: &'a RunCtx, w: Window, conn: Connection) -> Self {
        let now = Instant::now();
        Device {
            pos,
            spec: &ctx.devices[pos as usize],
            ctx,
            w,
            conn,
            flush: DeviceFlush::new(pos),
            last_flush: now,
            seq: 0,
            connected: false,
            connected_at: None,
            extras: 0,
            retry_at: None,
            attempt_start: now,
            attempts: 0,
            gave_up: false,
            alias_max: 0,
            alias_set: false,
            aliased: 0,
            cuts_done: 0,
            cuts_made: 0,
            cut_pending: None,
            lost_since: None,
            marks: Vec::new(),
        }
    }

    /// No message due at or after this is sent (the window's end, or `drop_at`).
    fn publish_end(&self) -> Instant {
        self.spec.drop_at.map_or(self.w.publish_end, |at| {
            self.w.publish_end.min(self.w.start + at)
        })
    }

    /// Publish on the schedule from the first connection on, until the window ends or the run
    /// does. Returns how many messages fell due before the device connected (not sent).
    async fn publish(&mut self) -> u64 {
        let (ctx, w) = (self.ctx, self.w);
        let publish_end = self.publish_end();
        // Wait for the first connection; everything due until then is skipped.
        while self.connected_at.is_none() {
            let now = Instant::now();
            if now >= publish_end
                || self.gave_up
                || self.wait(publish_end, How::Connect).await == Wait::Ended
            {
                return due_before(self, Instant::now().min(publish_end));
            }
        }
        let connected = self.connected_at.unwrap_or_else(Instant::now);
        let mut pace = Pace::new(self);
        let mut schedule = self.spec.schedule();
        let mut maker = PayloadMaker::new(self.spec);
        let mut skipped: u64 = 0;
        while let Some(offset) = schedule.next_due(&ctx.shape) {
            let due = w.start + offset;
            if due >= publish_end {
                break;
            }
            self.mark(offset);
            if due < connected {
                skipped += 1;
                continue;
            }
            let Some(now) = pace.wake_for(self, due).await else {
                break;
            };
            if !self.connected && self.spec.while_down == WhileDown::Skip {
                // Due while the connection is down: not sent, counted.
                skipped += 1;
                continue;
            }
            if !self.send(due, now, &mut maker) {
                break;
            }
            if ctx.shape.is_declared() {
                self.flush.count_phase(ctx.shape.phase_at(offset));
            }
            self.seq += 1;
            self.flush_if_due(now);
        }
        self.flush.sent = self.seq;
        skipped
    }

    /// Note the messages sent so far at every point of the fault grid that a message due at
    /// `offset` (from the ramp start) has passed.
    #[inline]
    fn mark(&mut self, offset: Duration) {
        let grid = &self.ctx.fault_grid.points;
        while grid.get(self.marks.len()).is_some_and(|p| offset >= *p) {
            self.marks.push(u32::try_from(self.seq).unwrap_or(u32::MAX));
        }
    }

    /// Hand the aggregator what was recorded, once a tick.
    pub(crate) fn flush_if_due(&mut self, now: Instant) {
        if now.duration_since(self.last_flush) >= self.ctx.opts.tick {
            self.send_flush(now);
        }
    }

    pub(crate) fn send_flush(&mut self, now: Instant) {
        self.flush.sent = self.seq;
        let _ = self.ctx.flush.send(Flush::Device(self.flush.take()));
        self.last_flush = now;
    }

    /// Put message `seq`, due at `due`, on the connection; false when the connection refused
    /// it.
    fn send(&mut self, due: Instant, now: Instant, maker: &mut PayloadMaker) -> bool {
        let (spec, ctx) = (self.spec, self.ctx);
        let intended_ns = ctx.clock.ns_at(due.into_std());
        let header = Header {
            device: spec.id,
            seq: self.seq,
            intended_ns,
            sent_ns: ctx.clock.ns_at(now.into_std()),
        };
        let payload = Bytes::from(maker.make(&header, ctx.clock.unix_ns_at(intended_ns)));
        let result = match spec.mqtt5.as_deref() {
            None => self
                .conn
                .publish(&spec.topic, spec.qos, false, payload, None),
            Some(m) => {
                let (topic, properties) = self.with_properties(&spec.topic, m);
                self.conn
                    .publish(topic, spec.qos, false, payload, Some(properties))
            }
        };
        if let Err(e) = result {
            let who = &spec.client_id;
            errors::report_error(
                &ctx.flush,
                fleetbench_metrics::ErrorKind::Publish,
                format_args!("{who}: {e}"),
            );
            return false;
        }
        true
    }

    /// The topic and MQTT 5 properties of a data message. With topic aliases (when the broker
    /// allows them), the first message of each connection carries the topic and alias 1,
    /// later ones the alias alone (an empty topic).
    fn with_properties<'t>(
        &mut self,
        topic: &'t str,
        m: &Mqtt5Publish,
    ) -> (&'t str, PublishProperties) {
        let aliased = m.topic_alias && self.alias_max >= 1;
        let alias_only = aliased && std::mem::replace(&mut self.alias_set, true);
        let properties = PublishProperties {
            user_properties: m.user_properties.clone(),
            message_expiry_interval: m.message_expiry_s,
            topic_alias: aliased.then_some(1),
            ..PublishProperties::default()
        };
        if alias_only {
            self.aliased += 1;
            ("", properties)
        } else {
            (topic, properties)
        }
    }

    /// What the device published before its drop leaves before the drop: a device that fell
    /// behind its schedule (a stalled machine) hands its last message over in the same turn as
    /// the drop, and cutting the socket then would discard it unwritten, a loss the broker never
    /// saw. The connection is driven until nothing waits to be written, for at most
    /// [`FLUSH_BEFORE_DROP`]; a device on time has nothing waiting and drops at once.
    async fn flush_before_drop(&mut self) {
        let by = Instant::now() + FLUSH_BEFORE_DROP;
        while self.connected && self.conn.unwritten() && Instant::now() < by {
            if self.wait(by, How::Event).await == Wait::Ended {
                return;
            }
        }
    }

    /// The publish window is over: drop the connection (`drop_at`), or wait for the flows still
    /// open, hand over what the device did, stay until the run's drain is over and say goodbye.
    async fn leave(mut self, skipped: u64, done: tokio::sync::oneshot::Sender<DeviceResult>) {
        let ctx = self.ctx;
        // Down because a fault cut it and not back yet: the fault's cost, not a lost device.
        let down_at_end =
            self.connected_at.is_some() && !self.connected && self.cut_pending.is_none();
        if let Some((at, _)) = self.cut_pending.take() {
            // Cut by a fault and not connected again before publishing ended.
            self.flush.downs.push(Down {
                at,
                back_after: None,
                planned: true,
            });
        }
        if let Some((at, _)) = self.lost_since.take() {
            self.flush.downs.push(Down {
                at,
                back_after: None,
                planned: false,
            });
        }
        if let Some(at) = self.spec.drop_at.map(|d| self.w.start + d) {
            // Keep answering until the drop.
            self.wait(at, How::Plain).await;
            self.flush_before_drop().await;
            if !ctx.end.is_cancelled() {
                // A power cut: the socket goes away without a DISCONNECT.
                let dropped = self.connected;
                self.conn.clean();
                ctx.listening[self.pos as usize].store(false, Ordering::Relaxed);
                if dropped {
                    self.connected = false;
                    self.flush.connected = Some(false);
                    self.flush.left = true;
                }
                self.send_flush(Instant::now());
                let _ = done.send(self.result(skipped, down_at_end, dropped));
                return;
            }
        }
        // Disconnecting with a flow unfinished would discard its message (at QoS 2 the broker
        // forwards only after PUBREL): wait until every message has left (QoS 0) or been
        // acknowledged (QoS 1: PUBACK, QoS 2: PUBCOMP).
        let (mut how, mut deadline) = if ctx.end.is_cancelled() {
            (How::Finish, Instant::now() + INTERRUPTED_FLOWS)
        } else {
            (How::Event, self.w.finish_deadline)
        };
        while !self.all_completed() && Instant::now() < deadline && !self.gave_up {
            if self.wait(deadline, how).await == Wait::Ended {
                // Stopped meanwhile: the flows get what an interrupted run gives them.
                how = How::Finish;
                deadline = deadline.min(Instant::now() + INTERRUPTED_FLOWS);
            }
        }
        if self.spec.commands.is_some() {
            // Stay to answer until the controllers are done.
            let mut done = ctx.commands_done.clone();
            while !*done.borrow() && Instant::now() < deadline && !self.gave_up {
                tokio::select! {
                    changed = done.changed() => if changed.is_err() { break },
                    _ = self.wait(deadline, how) => {}
                }
            }
        }
        ctx.listening[self.pos as usize].store(false, Ordering::Relaxed);
        let _ = done.send(self.result(skipped, down_at_end, false));
        self.stay_until_drained().await;
        self.goodbye().await;
    }

    /// Keep the connection (answering the broker) until the run's drain is over: a fleet does
    /// not leave all at once, and the last messages of the window are measured against a
    /// broker that is only delivering them. A device without its connection, or in a run that
    /// was stopped, leaves at once.
    async fn stay_until_drained(&mut self) {
        let ctx = self.ctx;
        let drained = ctx.drained.cancelled();
        tokio::pin!(drained);
        while self.connected && !self.gave_up && !ctx.end.is_cancelled() {
            let far = Instant::now() + Duration::from_secs(3_600);
            tokio::select! {
                () = &mut drained => return,
                _ = self.wait(far, How::Event) => {}
            }
        }
    }

    /// Every publish of the data messages and of the extras has completed.
    fn all_completed(&self) -> bool {
        self.conn.completed() >= self.seq + self.extras
    }

    /// What the device did, as it leaves.
    fn result(&mut self, skipped: u64, down_at_end: bool, dropped: bool) -> DeviceResult {
        let wants_alias = self.spec.mqtt5.as_ref().is_some_and(|m| m.topic_alias);
        DeviceResult {
            sent: self.seq,
            // Extras count as completed first: a device that leaves with flows unfinished errs
            // towards "in flight", never towards "lost".
            completed: self
                .conn
                .completed()
                .saturating_sub(self.extras)
                .min(self.seq),
            connected_at: self.connected_at,
            dropped,
            aliased: self.aliased,
            alias_refused: wants_alias && self.connected_at.is_some() && self.alias_max == 0,
            skipped,
            down_at_end,
            marks: std::mem::take(&mut self.marks),
            cuts_made: self.cuts_made,
        }
    }
}

/// How the publisher paces itself: when it last woke, what counts as late.
struct Pace {
    /// Lateness counts for messages due from then on (after the warm-up).
    measure_from: Instant,
    /// A stall injected on purpose (faults): from, until.
    stall: Option<(Instant, Instant)>,
    /// When the publisher last woke (and read the clock).
    last_wake: Instant,
}

impl Pace {
    fn new(d: &Device) -> Pace {
        Pace {
            measure_from: d.w.start + d.ctx.timing.warmup,
            stall: d.ctx.opts.faults.stall.map(|s| {
                let from = d.w.start + s.after;
                (from, from + s.length)
            }),
            last_wake: Instant::now(),
        }
    }

    /// Drive the connection until message `due` may go and count how late it left: the time
    /// then, or None when the run ended meanwhile.
    async fn wake_for(&mut self, d: &mut Device<'_>, due: Instant) -> Option<Instant> {
        // A publisher wakes at most once per BATCH: a message that fell due after the last wake
        // waits for the next batch; one due before it (catching up) goes at once.
        let wake_at = if due > self.last_wake {
            due.max(self.last_wake + BATCH)
        } else {
            due
        };
        if d.wait(wake_at, How::Schedule).await == Wait::Ended {
            return None;
        }
        // Back-pressure: a connection with too much waiting is driven until it drains (or the
        // device's flows run out of time).
        while d.conn.backlogged() {
            let give_up = d.w.finish_deadline;
            if Instant::now() >= give_up || d.wait(give_up, How::Event).await == Wait::Ended {
                return None;
            }
        }
        let mut now = Instant::now();
        if let Some((from, until)) = self.stall {
            if due >= from && now < until {
                if d.wait(until, How::Plain).await == Wait::Ended {
                    return None;
                }
                now = Instant::now();
            }
        }
        self.last_wake = now;
        // The generator's health is judged after the warm-up, like latency.
        if due >= self.measure_from {
            let lag = now.saturating_duration_since(due);
            let lag_us = lag.as_micros() as u64;
            if lag > d.ctx.opts.late_threshold {
                d.flush.late_sends += 1;
                fleetbench_metrics::flush::count_late(&mut d.flush.late_by, lag_us);
            }
            d.flush.max_lag_us = d.flush.max_lag_us.max(lag_us);
        }
        Some(now)
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

/// How long the flows still open get when the run was stopped before the device left.
const INTERRUPTED_FLOWS: Duration = Duration::from_millis(500);

/// The longest a dropping device drives its connection to write what it published before the
/// drop (a message due before it, handed over late on a stalled machine).
const FLUSH_BEFORE_DROP: Duration = Duration::from_millis(200);

/// The shortest time between two wakes of one publisher. Messages due in between are sent
/// together, each still carrying its own intended time (and counted late if it left more than
/// the lateness threshold after it).
const BATCH: Duration = Duration::from_micros(250);
