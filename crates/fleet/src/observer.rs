//! One observer's connection: it subscribes to its filters on every CONNACK without a session,
//! hands every delivery to its receive path (see [`crate::receive`]) and interval figures to the
//! aggregator once a tick.
//!
//! An observer with a persistent session (clean_session = false) takes a client id of its own
//! for this run (nothing an earlier run left can reach it); when it goes offline it drops its
//! socket and later resumes the session, and at the end it ends the session with a clean
//! connect, leaving nothing queued on the broker. A late observer (join_at) connects only at its
//! time and is not waited for before publishing starts.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fleetbench_metrics::behaviour::Mqtt5Check;
use fleetbench_metrics::{Flush, Ledger};
use fleetbench_scenario::{Backoff, ObserverSpec};
use tokio::sync::{oneshot, watch};
use tracing::debug;

use crate::client::{Client, ConnError, Connection, Ev, Settings};
use crate::ctx::RunCtx;
use crate::errors;
use crate::events::Heard;
use crate::loops::Loops;
use crate::receive::{Arrival, Receiver};

/// What an observer leaves behind at the end.
pub(crate) struct ObserverResult {
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
    /// Duplicates by the slot of the fault grid their message was due in.
    pub duplicates_by_slot: Vec<u64>,
}

/// The QoS granted to each filter once subscribed, or why the observer cannot subscribe: the
/// broker refused it for good (credentials, certificates).
pub(crate) type Readiness = Result<Vec<Option<u8>>, String>;

pub(crate) struct ObserverHandle {
    pub client: Client,
    /// Why its latest connection attempt failed, if one did: what a readiness timeout reports.
    pub last_error: Arc<Mutex<Option<String>>>,
    /// First arrivals so far, for the drain to know when everything expected has arrived.
    pub delivered: Arc<AtomicU64>,
    pub ready: oneshot::Receiver<Readiness>,
    pub task: tokio::task::JoinHandle<ObserverResult>,
}

/// Start an observer on its event loop: it connects (at once, or at its join time) and subscribes on CONNACK.
pub(crate) fn spawn_observer(
    index: usize,
    mut spec: ObserverSpec,
    ctx: Arc<RunCtx>,
    loops: &Loops,
) -> ObserverHandle {
    if !spec.clean_session {
        spec.client_id = format!("{}-{:08x}", spec.client_id, run_nonce());
    }
    let mut conn = Connection::new(settings(index, &spec, &ctx, spec.clean_session));
    let client = conn.handle();
    let delivered = Arc::new(AtomicU64::new(0));
    let last_error = Arc::new(Mutex::new(None));
    let (ready_tx, ready_rx) = oneshot::channel();
    let observer = Observer {
        index,
        receiver: Receiver::new(&spec, &ctx, delivered.clone()),
        granted: vec![None; spec.filters.len()],
        spec,
        client: client.clone(),
        ctx,
        last_error: last_error.clone(),
        ready_tx: Some(ready_tx),
        up: false,
        returning: false,
        returns: 0,
        resumed: 0,
        attempts: 0,
    };
    ObserverHandle {
        client,
        last_error,
        delivered,
        ready: ready_rx,
        task: loops.spawn(index, observer.run(conn)),
    }
}

fn settings(index: usize, spec: &ObserverSpec, ctx: &RunCtx, clean_session: bool) -> Settings {
    Settings {
        max_packet: ctx.max_packet,
        inflight: 1_000,
        clean_session,
        ..Settings::of(
            &ctx.target,
            index,
            &spec.client_id,
            ctx.opts.connect_timeout,
        )
    }
}

/// An observer's task: its connection's state and what it received.
struct Observer {
    index: usize,
    spec: ObserverSpec,
    client: Client,
    ctx: Arc<RunCtx>,
    receiver: Receiver,
    granted: Vec<Option<u8>>,
    last_error: Arc<Mutex<Option<String>>>,
    ready_tx: Option<oneshot::Sender<Readiness>>,
    /// The connection is up (CONNACK seen, no error since): each change is reported at once.
    up: bool,
    /// Coming back from an offline period: the next CONNACK says whether the session stayed.
    returning: bool,
    returns: u64,
    resumed: u64,
    attempts: u32,
}

/// What the observer does after an event.
enum Next {
    Go,
    /// Skip the flush check (a delivery a fault discarded).
    Skip,
    Stop,
}

impl Observer {
    async fn run(mut self, mut eventloop: Connection) -> ObserverResult {
        if let Some(at) = self.spec.join_at {
            if !wait_from_ramp(&self.ctx, at).await {
                return self.result();
            }
        }
        let offline = self.spec.offline;
        let ctx = self.ctx.clone();
        let away = async {
            match offline {
                Some(o) if wait_from_ramp(&ctx, o.at).await => o.length,
                _ => std::future::pending().await,
            }
        };
        tokio::pin!(away);
        let mut went_offline = false;
        // Slow consumer faults: told when each window starts, the observer stops reading its
        // socket for it (the connection stays open; the broker must queue or drop).
        let (stall_tx, mut stalls) = tokio::sync::mpsc::unbounded_channel::<Duration>();
        if !self.spec.stalls.is_empty() {
            let (ctx, windows) = (self.ctx.clone(), self.spec.stalls.clone());
            tokio::spawn(async move {
                for (at, length) in windows {
                    if !wait_from_ramp(&ctx, at).await || stall_tx.send(length).is_err() {
                        return;
                    }
                }
            });
        }
        // Flushes follow the run clock's tick grid (the ticker's), one per tick, so that rates
        // read from consecutive snapshots do not jump by a flush.
        let tick_ns = self.ctx.opts.tick.as_nanos().max(1) as u64;
        let clock = self.ctx.clock;
        let period = move |now: Instant| clock.ns_at(now) / tick_ns;
        let mut last_period = period(Instant::now());
        let mut cutoff = self.ctx.cutoff.clone();
        loop {
            let event = tokio::select! {
                // At the cutoff an observer that is not connected (still trying) gives up at once.
                () = cut(&mut cutoff), if !self.up => break,
                length = &mut away, if !went_offline => {
                    went_offline = true;
                    if !self.go_offline(&mut eventloop, length).await {
                        break;
                    }
                    continue;
                }
                Some(length) = stalls.recv() => {
                    tracing::debug!(observer = %self.spec.client_id, ?length, "not reading (slow consumer)");
                    tokio::time::sleep(length).await;
                    continue;
                }
                e = eventloop.poll() => e,
            };
            if let (Some(delay), Ok(Ev::Publish(_))) = (self.ctx.opts.faults.receive_delay, &event)
            {
                spin(delay);
            }
            // One clock reading per event serves the latency and the flush interval.
            let now = Instant::now();
            match self.event(event, now).await {
                Next::Go => {}
                Next::Skip => continue,
                Next::Stop => break,
            }
            let this_period = period(now);
            if this_period != last_period {
                last_period = this_period;
                let _ = self
                    .ctx
                    .flush
                    .send(Flush::Observer(self.receiver.flush.take()));
            }
        }
        self.finish().await
    }

    async fn event(&mut self, event: Result<Ev, ConnError>, now: Instant) -> Next {
        match event {
            Ok(Ev::Publish(p)) => match self.receiver.publish(&p, now, &self.ctx) {
                Arrival::Counted => Next::Go,
                Arrival::Discarded => Next::Skip,
            },
            Ok(Ev::ConnAck {
                session_present, ..
            }) => {
                self.connected(session_present);
                Next::Go
            }
            Ok(Ev::SubAck(codes)) => {
                for (slot, code) in self.granted.iter_mut().zip(codes) {
                    *slot = code;
                }
                self.receiver.granted(&self.spec, &self.granted, &self.ctx);
                if let Some(tx) = self.ready_tx.take() {
                    let _ = tx.send(Ok(self.granted.clone()));
                }
                Next::Go
            }
            Ok(Ev::SentDisconnect) => Next::Stop,
            Ok(_) => Next::Go,
            Err(e) if e.is_requests_done() => Next::Stop,
            Err(e) => self.lost(&e).await,
        }
    }

    /// CONNACK: count a return from an absence, and (re)subscribe when the session is new.
    fn connected(&mut self, session_present: bool) {
        self.attempts = 0;
        self.set_up(true);
        if std::mem::take(&mut self.returning) {
            self.returns += 1;
            self.resumed += u64::from(session_present);
        }
        // A new session has no subscriptions.
        if !session_present {
            let filters = self.spec.filters.iter().map(|f| (f.clone(), self.spec.qos));
            if let Err(e) = self.client.try_subscribe_many(filters) {
                let who = &self.spec.client_id;
                let detail = format_args!("observer {who}: {e}");
                errors::report_error(
                    &self.ctx.flush,
                    fleetbench_metrics::ErrorKind::Subscribe,
                    detail,
                );
            }
        }
    }

    /// The connection failed: remember why, give up at once when the broker refused for good
    /// (or the cutoff came), back off otherwise.
    async fn lost(&mut self, e: &ConnError) -> Next {
        if *self.ctx.cutoff.borrow() {
            return Next::Stop;
        }
        self.set_up(false);
        if let Ok(mut last) = self.last_error.lock() {
            *last = Some(e.to_string());
        }
        if let Some(reason) = e.refusal() {
            // Waiting out the readiness timeout would change nothing.
            if let Some(tx) = self.ready_tx.take() {
                let _ = tx.send(Err(reason));
            }
        }
        self.attempts += 1;
        let who = format!("observer {}", self.spec.client_id);
        let policy = Backoff::default();
        let mut cutoff = self.ctx.cutoff.clone();
        tokio::select! {
            _ = tokio::time::sleep(errors::back_off(&self.ctx.flush, &who, e, &policy, self.attempts)) => Next::Go,
            () = cut(&mut cutoff) => Next::Stop,
        }
    }

    /// Away without a word, as a device losing its network would be; the broker keeps the
    /// session and queues what arrives for it. False when the cutoff came meanwhile.
    async fn go_offline(&mut self, eventloop: &mut Connection, length: Duration) -> bool {
        eventloop.clean();
        self.set_up(false);
        let mut cutoff = self.ctx.cutoff.clone();
        tokio::select! {
            _ = tokio::time::sleep(length) => {}
            () = cut(&mut cutoff) => return false,
        }
        self.returning = true;
        true
    }

    /// Report a change of the connection's state at once (the live view and the broker watch
    /// count connected observers).
    fn set_up(&mut self, now: bool) {
        if self.up != now {
            self.up = now;
            let flush = &mut self.receiver.flush;
            flush.connected = Some(now);
            let _ = self.ctx.flush.send(Flush::Observer(flush.take()));
        }
    }

    /// The last flush, the persistent session ended, and what the observer leaves behind.
    async fn finish(mut self) -> ObserverResult {
        if self.up {
            self.receiver.flush.connected = Some(false);
        }
        let last = std::mem::take(&mut self.receiver.flush);
        let _ = self.ctx.flush.send(Flush::Observer(last));
        if !self.spec.clean_session {
            end_session(self.index, &self.spec, &self.ctx).await;
        }
        self.result()
    }

    fn result(self) -> ObserverResult {
        let r = self.receiver;
        ObserverResult {
            ledger: r.ledger,
            granted: self.granted,
            due_qos: r.due_qos,
            delivered_qos: r.delivered_qos,
            heard: r.heard,
            returns: self.returns,
            resumed: self.resumed,
            mqtt5: r.mqtt5,
            duplicates_by_slot: r.duplicates_by_slot,
        }
    }
}

/// Busy, not asleep: CPU spent on a delivery, like slower receive code (tokio's timer would
/// round every pause up to a millisecond).
fn spin(delay: Duration) {
    let until = Instant::now() + delay;
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

/// Until the cutoff.
async fn cut(cutoff: &mut watch::Receiver<bool>) {
    let _ = cutoff.wait_for(|c| *c).await;
}

/// Wait until `at` after the ramp start; false when the cutoff came first.
async fn wait_from_ramp(ctx: &RunCtx, at: Duration) -> bool {
    let mut cutoff = ctx.cutoff.clone();
    let mut ramp = ctx.ramp.clone();
    let wait = async {
        let start = match ramp.wait_for(|r| r.is_some()).await {
            Ok(start) => *start,
            Err(_) => None,
        };
        match start {
            Some(start) => {
                tokio::time::sleep_until(start + at).await;
                true
            }
            None => false,
        }
    };
    tokio::select! {
        reached = wait => reached,
        () = cut(&mut cutoff) => false,
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
async fn end_session(index: usize, spec: &ObserverSpec, ctx: &RunCtx) {
    let mut conn = Connection::new(settings(index, spec, ctx, true));
    let ended = async {
        loop {
            match conn.poll().await {
                Ok(Ev::ConnAck { .. }) => conn.disconnect(),
                Ok(Ev::SentDisconnect) | Err(_) => break,
                Ok(_) => {}
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(2), ended)
        .await
        .is_err()
    {
        debug!(observer = %spec.client_id, "could not end the persistent session");
    }
}
