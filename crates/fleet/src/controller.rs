//! A controller: sends commands to every device of one group on an open-loop schedule and
//! times each answer. A command carries the delivery header (device, sequence number, intended
//! and actual send time); the device sends the same bytes back on its reply topic, so the round
//! trip runs from the command's intended send time to the answer's arrival, on the run clock.
//!
//! A command falls due whether or not earlier ones were answered (no coordinated omission).
//! Commands due while their device is not listening (not yet connected and subscribed, or gone)
//! are not sent and not counted, as data due before a device connects is not.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fleetbench_metrics::{Delivery, LatencyHistogram, Ledger};
use fleetbench_scenario::load::{Arrivals, LoadShape, Schedule};
use fleetbench_scenario::{Backoff, ControllerSpec, Qos};
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::client::{Client, Connection, Ev, Received, Settings};
use crate::ctx::{RunCtx, Window};
use crate::errors;
use crate::header::Header;

/// Largest SUBSCRIBE the controller sends: every broker accepts 1 KB packets (the embedded one
/// is set up for the scenario's payloads plus 1 KB).
const SUBSCRIBE_BYTES: usize = 900;

#[derive(Debug, Default)]
pub(crate) struct ControllerResult {
    pub sent: u64,
    pub answered: u64,
    pub duplicates: u64,
    pub round_trip: LatencyHistogram,
}

pub(crate) async fn run_controller(
    index: usize,
    spec: ControllerSpec,
    ctx: Arc<RunCtx>,
) -> ControllerResult {
    let w = ctx.window();
    let mut eventloop = Connection::new(Settings {
        max_packet: ctx.max_packet,
        inflight: 1_000,
        ..Settings::of(
            &ctx.target,
            index,
            &spec.client_id,
            ctx.opts.connect_timeout,
        )
    });
    let client = eventloop.handle();
    let answered = Arc::new(AtomicU64::new(0));
    let (ready_tx, ready_rx) = oneshot::channel();
    let listener = tokio::spawn(listen(
        spec.clone(),
        client.clone(),
        eventloop,
        ctx.clone(),
        answered.clone(),
        ready_tx,
    ));
    let ready = tokio::select! {
        r = ready_rx => r.is_ok(),
        _ = tokio::time::sleep_until(w.publish_end) => false,
        _ = ctx.end.cancelled() => false,
    };
    let sent = if ready {
        command(&spec, &client, &ctx, w).await
    } else {
        0
    };
    let deadline = if ctx.end.is_cancelled() {
        Instant::now() + ctx.opts.interrupt_grace
    } else {
        w.finish_deadline
    };
    while answered.load(Ordering::Relaxed) < sent && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let _ = client.try_disconnect();
    drop(client);
    let mut result = match tokio::time::timeout(Duration::from_secs(5), listener).await {
        Ok(Ok(r)) => r,
        _ => ControllerResult::default(),
    };
    result.sent = sent;
    result
}

/// One open-loop schedule per target device, spread evenly over the first period.
fn schedules(spec: &ControllerSpec) -> Vec<Schedule> {
    let n = spec.targets.len() as f64;
    (0..spec.targets.len())
        .map(|i| {
            let seed = spec.seed ^ (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
            let offset = fleetbench_scenario::load::seconds((i as f64 / n) / spec.rate);
            Schedule::new(spec.rate, Arrivals::Fixed, seed, offset)
        })
        .collect()
}

/// Send the commands as they fall due; returns how many were sent.
async fn command(spec: &ControllerSpec, client: &Client, ctx: &RunCtx, w: Window) -> u64 {
    let shape = LoadShape::constant(w.publish_end.duration_since(w.start));
    let mut schedules = schedules(spec);
    let mut due: BinaryHeap<Reverse<(Duration, usize)>> = schedules
        .iter_mut()
        .enumerate()
        .filter_map(|(i, s)| s.next_due(&shape).map(|d| Reverse((d, i))))
        .collect();
    let mut seqs = vec![0u64; spec.targets.len()];
    let mut sent = 0u64;
    while let Some(Reverse((offset, i))) = due.pop() {
        let at = w.start + offset;
        if at >= w.publish_end {
            break;
        }
        tokio::select! {
            _ = ctx.timer.sleep_until(at.into_std()) => {}
            _ = ctx.end.cancelled() => break,
        }
        if let Some(next) = schedules[i].next_due(&shape) {
            due.push(Reverse((next, i)));
        }
        let pos = spec.targets[i];
        if !ctx.listening[pos].load(Ordering::Relaxed) {
            continue;
        }
        let Some(topics) = &ctx.devices[pos].commands else {
            continue;
        };
        let header = Header {
            device: ctx.devices[pos].id,
            seq: seqs[i],
            intended_ns: ctx.clock.ns_at(at.into_std()),
            sent_ns: ctx.clock.ns_at(std::time::Instant::now()),
        };
        let result = client.publish(
            topics.topic.as_str(),
            topics.qos,
            false,
            header.encode_command(),
            None,
        );
        if let Err(e) = result {
            let who = &spec.client_id;
            errors::report_error(
                &ctx.flush,
                fleetbench_metrics::ErrorKind::Command,
                format_args!("{who}: {e}"),
            );
            break;
        }
        seqs[i] += 1;
        sent += 1;
    }
    sent
}

/// Drive the controller's connection: subscribe to the reply topics, time every answer.
async fn listen(
    spec: ControllerSpec,
    client: Client,
    mut eventloop: Connection,
    ctx: Arc<RunCtx>,
    answered: Arc<AtomicU64>,
    ready_tx: oneshot::Sender<()>,
) -> ControllerResult {
    let finish_deadline = ctx.window().finish_deadline;
    let mut expects = vec![false; ctx.devices.len()];
    for &p in &spec.targets {
        expects[p] = true;
    }
    let mut answers = Answers {
        ledger: Ledger::new(&expects),
        result: ControllerResult::default(),
        answered,
    };
    let mut ready_tx = Some(ready_tx);
    let mut pending_acks = 0usize;
    let mut attempts = 0u32;
    loop {
        match eventloop.poll().await {
            Ok(Ev::ConnAck { .. }) => {
                attempts = 0;
                pending_acks = subscribe_replies(&spec, &client, &ctx);
            }
            Ok(Ev::SubAck(_)) => {
                pending_acks = pending_acks.saturating_sub(1);
                if pending_acks == 0 {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(());
                    }
                }
            }
            Ok(Ev::Publish(p)) => answers.record(&p, &ctx),
            Ok(Ev::SentDisconnect) => break,
            Ok(_) => {}
            Err(e) if e.is_requests_done() => break,
            Err(e) => {
                if ctx.end.is_cancelled() || Instant::now() >= finish_deadline {
                    break;
                }
                attempts += 1;
                let who = format!("controller {}", spec.client_id);
                let policy = Backoff::default();
                tokio::select! {
                    () = tokio::time::sleep(errors::back_off(&ctx.flush, &who, &e, &policy, attempts)) => {}
                    () = ctx.end.cancelled() => break,
                }
            }
        }
    }
    answers.result
}

/// Subscribe to every target's reply topic, in SUBSCRIBEs of at most [`SUBSCRIBE_BYTES`];
/// returns how many SUBACKs to wait for.
fn subscribe_replies(spec: &ControllerSpec, client: &Client, ctx: &RunCtx) -> usize {
    let filters: Vec<(String, Qos)> = spec
        .targets
        .iter()
        .filter_map(|&p| ctx.devices[p].commands.as_ref())
        .map(|c| (c.reply.clone(), c.qos))
        .collect();
    let mut pending = 0;
    for chunk in subscribe_chunks(filters) {
        match client.try_subscribe_many(chunk) {
            Ok(()) => pending += 1,
            Err(e) => errors::report_error(
                &ctx.flush,
                fleetbench_metrics::ErrorKind::Subscribe,
                format_args!("controller {}: {e}", spec.client_id),
            ),
        }
    }
    pending
}

/// The answers heard: a ledger of which commands were answered, and their round trips.
struct Answers {
    ledger: Ledger,
    result: ControllerResult,
    /// Shared with the controller, which waits for every answer before it leaves.
    answered: Arc<AtomicU64>,
}

impl Answers {
    fn record(&mut self, p: &Received, ctx: &RunCtx) {
        let now_ns = ctx.clock.ns_at(std::time::Instant::now());
        let Ok(h) = Header::decode_command(&p.payload) else {
            let topic = p.topic();
            errors::report_error(
                &ctx.flush,
                fleetbench_metrics::ErrorKind::Decode,
                format_args!("answer on {topic}"),
            );
            return;
        };
        let pos = crate::position(&ctx.positions, h.device);
        match self.ledger.record(pos, h.seq) {
            Delivery::InOrder | Delivery::Reordered => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                self.result.answered += 1;
                self.result
                    .round_trip
                    .record_ns(now_ns.saturating_sub(h.intended_ns));
            }
            Delivery::Duplicate => self.result.duplicates += 1,
            Delivery::Unexpected => {}
        }
    }
}

/// Split filters into SUBSCRIBE packets of at most [`SUBSCRIBE_BYTES`] (one filter each at
/// least).
fn subscribe_chunks(filters: Vec<(String, Qos)>) -> Vec<Vec<(String, Qos)>> {
    let mut out: Vec<Vec<(String, Qos)>> = Vec::new();
    let mut bytes = 0;
    for f in filters {
        // Length prefix, topic, options byte.
        let size = 2 + f.0.len() + 1;
        match out.last_mut() {
            Some(chunk) if bytes + size <= SUBSCRIBE_BYTES => {
                bytes += size;
                chunk.push(f);
            }
            _ => {
                bytes = size;
                out.push(vec![f]);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subscribes_fit_the_smallest_packet_limit() {
        let filters: Vec<(String, Qos)> = (0..500)
            .map(|i| (format!("factory/valve/{i}/ack"), Qos::AtLeastOnce))
            .collect();
        let chunks = subscribe_chunks(filters);
        assert_eq!(
            chunks.iter().map(Vec::len).sum::<usize>(),
            500,
            "every filter once"
        );
        for c in &chunks {
            let bytes: usize = c.iter().map(|f| 3 + f.0.len()).sum();
            assert!(bytes <= SUBSCRIBE_BYTES, "{bytes} bytes in one SUBSCRIBE");
        }
        assert!(
            chunks.len() < 30,
            "{} packets: too many for 500 filters",
            chunks.len()
        );
    }
}
