//! An observer's receive path: every delivery's header decoded, its arrival recorded in the
//! observer's own ledger, its latency from intended and from send in the observer's own
//! histograms (after the warm-up; per load phase when the scenario has phases), the QoS it came
//! at against the QoS due, MQTT 5 properties against what the device sent, and statuses and
//! wills told apart from data by topic. Nothing here takes a lock shared with another task.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use fleetbench_metrics::behaviour::Mqtt5Check;
use fleetbench_metrics::{Delivery, Ledger, ObserverFlush};
use fleetbench_scenario::{Mqtt5Publish, ObserverSpec, Protocol};

use crate::client::Received;
use crate::ctx::RunCtx;
use crate::errors;
use crate::events::Heard;
use crate::header::{DecodeError, Header};

/// What one observer keeps of what it received.
pub(crate) struct Receiver {
    pub ledger: Ledger,
    /// Recorded since the last flush to the aggregator.
    pub flush: ObserverFlush,
    /// First arrivals so far, for the drain to know when everything expected has arrived.
    pub delivered: Arc<AtomicU64>,
    /// Per device position, the QoS its messages are due at for this observer (after SUBACK).
    pub due_qos: Vec<u8>,
    /// Deliveries by the QoS due and the QoS the broker used: `delivered_qos[due][used]`.
    pub delivered_qos: [[u64; 3]; 3],
    /// Statuses and wills heard, per device position (empty when the scenario has none).
    pub heard: Vec<Heard>,
    /// What MQTT 5 properties arrived with the data (first arrivals).
    pub mqtt5: Mqtt5Check,
    /// Duplicates by the slot of the fault grid their message was due in (empty without
    /// faults).
    pub duplicates_by_slot: Vec<u64>,
    /// Messages intended within this of the ramp start are accounted for, not measured.
    warmup_ns: u64,
    /// A message that left later than this after it was due was sent late.
    late_ns: u64,
}

/// Whether a delivery counts (a fault may discard it on purpose).
pub(crate) enum Arrival {
    Counted,
    Discarded,
}

impl Receiver {
    pub(crate) fn new(spec: &ObserverSpec, ctx: &RunCtx, delivered: Arc<AtomicU64>) -> Receiver {
        let heard = if ctx.events.is_empty() {
            0
        } else {
            spec.expects.len()
        };
        Receiver {
            ledger: Ledger::new(&spec.expects),
            flush: ObserverFlush::new(spec.id),
            delivered,
            due_qos: Vec::new(),
            delivered_qos: [[0; 3]; 3],
            heard: vec![Heard::default(); heard],
            mqtt5: Mqtt5Check::default(),
            duplicates_by_slot: vec![0; ctx.fault_grid.points.len()],
            warmup_ns: ctx.timing.warmup.as_nanos() as u64,
            late_ns: ctx.opts.late_threshold.as_nanos() as u64,
        }
    }

    /// One delivery, arrived at `now` (one clock reading serves the latency and the caller's
    /// flush interval).
    pub(crate) fn publish(
        &mut self,
        p: &Received,
        now: std::time::Instant,
        ctx: &RunCtx,
    ) -> Arrival {
        let h = match Header::from_payload(&p.payload) {
            Ok(h) => h,
            // Commands and replies are for devices and controllers.
            Err(DecodeError::Command) => return Arrival::Counted,
            // Not data: a status or a will, found by topic off the data path.
            Err(e) => {
                match ctx.events.classify(p.topic(), &p.payload) {
                    Some((pos, kind)) => self.heard[pos].record(kind, p.retain),
                    None => errors::report_error(
                        &ctx.flush,
                        fleetbench_metrics::ErrorKind::Decode,
                        format_args!("on {}: {e}", p.topic()),
                    ),
                }
                return Arrival::Counted;
            }
        };
        let now_ns = ctx.clock.ns_at(now);
        let drop_every = ctx.opts.faults.drop_every_nth_seq;
        if drop_every.is_some_and(|n| n > 0 && h.seq.is_multiple_of(n)) {
            return Arrival::Discarded;
        }
        let pos = crate::position(&ctx.positions, h.device);
        if let Some(due) = self.due_qos.get(pos) {
            self.delivered_qos[usize::from(*due)][(p.qos as usize).min(2)] += 1;
        }
        match self.ledger.record(pos, h.seq) {
            delivery @ (Delivery::InOrder | Delivery::Reordered) => {
                if delivery == Delivery::Reordered {
                    self.flush.reordered += 1;
                }
                self.delivered.fetch_add(1, Ordering::Relaxed);
                self.flush.delivered += 1;
                measure(
                    &mut self.flush,
                    ctx,
                    (self.warmup_ns, self.late_ns),
                    &h,
                    now_ns,
                );
                // MQTT 3.1.1 runs skip the lookup.
                if ctx.target.protocol == Protocol::V5 {
                    if let Some(sent) = ctx.devices.get(pos).and_then(|d| d.mqtt5.as_deref()) {
                        check_mqtt5(&mut self.mqtt5, sent, p, h.sent_ns, now_ns);
                    }
                }
            }
            Delivery::Duplicate => {
                self.flush.duplicates += 1;
                self.duplicate_in_slot(ctx, h.intended_ns);
            }
            Delivery::Unexpected => self.flush.unexpected += 1,
        }
        Arrival::Counted
    }

    /// Count a duplicate in the slot of the fault grid its message was due in.
    fn duplicate_in_slot(&mut self, ctx: &RunCtx, intended_ns: u64) {
        let Some(since_ramp) = intended_ns.checked_sub(ctx.ramp_start_ns.load(Ordering::Relaxed))
        else {
            return;
        };
        let due = std::time::Duration::from_nanos(since_ramp);
        if let Some(n) =
            (ctx.fault_grid.slot_of(due)).and_then(|k| self.duplicates_by_slot.get_mut(k))
        {
            *n += 1;
        }
    }

    /// The QoS each device's messages are due at, once the broker granted `granted` to the
    /// observer's filters: the lower of the publish QoS and the highest grant of a matching
    /// filter.
    pub(crate) fn granted(&mut self, spec: &ObserverSpec, granted: &[Option<u8>], ctx: &RunCtx) {
        self.due_qos = ctx
            .devices
            .iter()
            .map(|d| {
                spec.filters
                    .iter()
                    .zip(granted)
                    .filter(|(f, _)| fleetbench_scenario::topic::matches(f, &d.topic))
                    .filter_map(|(_, g)| *g)
                    .max()
                    .map_or(0, |g| g.min(d.qos.level()))
            })
            .collect();
    }
}

/// Record a first arrival's latency (unless it was due in the warm-up; also among the on-time
/// sends when it left within `late_ns` of its due time) and, when the scenario declared load
/// phases, the figures of the phase it was due in.
#[inline]
fn measure(
    flush: &mut ObserverFlush,
    ctx: &RunCtx,
    (warmup_ns, late_ns): (u64, u64),
    h: &Header,
    now_ns: u64,
) {
    // None before the ramp started (the start is u64::MAX until then).
    let since_ramp = h
        .intended_ns
        .checked_sub(ctx.ramp_start_ns.load(Ordering::Relaxed));
    let measured = since_ramp.is_some_and(|d| d >= warmup_ns);
    let from_intended = now_ns.saturating_sub(h.intended_ns);
    if measured {
        flush.from_intended.record_ns(from_intended);
        flush.from_send.record_ns(now_ns.saturating_sub(h.sent_ns));
        if h.sent_ns.saturating_sub(h.intended_ns) <= late_ns {
            flush.on_time.record_ns(from_intended);
        }
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
