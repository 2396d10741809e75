//! The delivery ledger: per (device, observer) stream, which sequence numbers arrived, how often
//! and in what order, so that at the end every sent message is exactly one of delivered, lost or
//! still in flight, and duplicates and reorderings are counted.
//!
//! Each observer owns one [`Ledger`] (no sharing on the receive path). Recording is a bit test
//! and set in a per-stream bitmap: memory is one bit per expected message.

use serde::{Deserialize, Serialize};

/// What one arrival was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// First arrival of this sequence number, after every earlier one that arrived.
    InOrder,
    /// First arrival, but a later sequence number of the same stream arrived before it.
    Reordered,
    /// This sequence number had arrived before.
    Duplicate,
    /// From a device this observer's plan does not expect (not in this shard or not matched).
    Unexpected,
}

/// One stream: the messages of one device as seen by one observer.
#[derive(Debug, Clone, Default)]
pub struct Stream {
    seen: Vec<u64>,
    highest: Option<u64>,
    delivered: u64,
    duplicates: u64,
    reordered: u64,
}

impl Stream {
    #[inline]
    pub fn record(&mut self, seq: u64) -> Delivery {
        let word = (seq / 64) as usize;
        let bit = 1u64 << (seq % 64);
        if word >= self.seen.len() {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & bit != 0 {
            self.duplicates += 1;
            return Delivery::Duplicate;
        }
        self.seen[word] |= bit;
        self.delivered += 1;
        match self.highest {
            Some(h) if h > seq => {
                self.reordered += 1;
                Delivery::Reordered
            }
            _ => {
                self.highest = Some(seq);
                Delivery::InOrder
            }
        }
    }

    /// Take in another receiver's arrivals of the same stream (members of a shared
    /// subscription): a message that arrived at both is a duplicate.
    pub fn absorb(&mut self, other: &Stream) {
        if self.seen.len() < other.seen.len() {
            self.seen.resize(other.seen.len(), 0);
        }
        for (mine, theirs) in self.seen.iter_mut().zip(&other.seen) {
            let both = (*mine & *theirs).count_ones() as u64;
            self.duplicates += both;
            self.delivered += u64::from((*theirs & !*mine).count_ones());
            *mine |= *theirs;
        }
        self.duplicates += other.duplicates;
        self.reordered += other.reordered;
        self.highest = self.highest.max(other.highest);
    }

    fn arrived(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }

    /// Number of sequence numbers in `from..to` that never arrived.
    fn missing_in(&self, from: u64, to: u64) -> u64 {
        (from..to).filter(|s| !self.arrived(*s)).count() as u64
    }

    /// Of the sequence numbers `from..to`, how many are lost at the cutoff (as
    /// [`Stream::outcome`] counts them: in flight ones are not).
    pub fn lost_in(&self, from: u64, to: u64, sent: u64, settled: u64) -> u64 {
        let horizon = settled.max(self.highest.map_or(0, |h| h + 1)).min(sent);
        self.missing_in(from.min(horizon), to.min(horizon))
    }

    /// Account for the `sent` messages (sequence numbers `0..sent`) of this stream at the cutoff.
    ///
    /// `settled` is how many of them were sent at least a drain timeout before the cutoff: a
    /// missing one among those had its full chance to arrive and is lost. A missing message sent
    /// later is lost too when a later one of the same stream arrived (it was overtaken), and
    /// otherwise still in flight.
    pub fn outcome(&self, sent: u64, settled: u64) -> StreamOutcome {
        let horizon = settled.max(self.highest.map_or(0, |h| h + 1)).min(sent);
        let lost = self.missing_in(0, horizon);
        let in_flight = self.missing_in(horizon, sent);
        // Arrivals with a sequence number the device never reported as sent cannot happen in a
        // healthy run; count them as delivered only up to `sent` to keep the books balanced.
        let delivered = sent - lost - in_flight;
        StreamOutcome {
            expected: sent,
            delivered,
            lost,
            in_flight,
            duplicates: self.duplicates,
            reordered: self.reordered,
            beyond_sent: self.delivered.saturating_sub(delivered),
        }
    }
}

/// The accounting of one stream (or a sum of streams).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
pub struct StreamOutcome {
    /// Messages the device sent that this observer's subscriptions should receive.
    pub expected: u64,
    /// Of those, how many arrived (at least once).
    pub delivered: u64,
    pub lost: u64,
    pub in_flight: u64,
    /// Extra arrivals of a message that had already arrived.
    pub duplicates: u64,
    /// Arrivals after a later message of the same stream.
    pub reordered: u64,
    /// Arrivals of sequence numbers the device had not counted as sent (should be 0).
    pub beyond_sent: u64,
}

impl StreamOutcome {
    /// The sum of two outcomes, or None when a count overflows.
    pub fn checked_add(&self, o: &StreamOutcome) -> Option<StreamOutcome> {
        Some(StreamOutcome {
            expected: self.expected.checked_add(o.expected)?,
            delivered: self.delivered.checked_add(o.delivered)?,
            lost: self.lost.checked_add(o.lost)?,
            in_flight: self.in_flight.checked_add(o.in_flight)?,
            duplicates: self.duplicates.checked_add(o.duplicates)?,
            reordered: self.reordered.checked_add(o.reordered)?,
            beyond_sent: self.beyond_sent.checked_add(o.beyond_sent)?,
        })
    }

    pub fn add(&mut self, o: &StreamOutcome) {
        self.expected += o.expected;
        self.delivered += o.delivered;
        self.lost += o.lost;
        self.in_flight += o.in_flight;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.beyond_sent += o.beyond_sent;
    }
}

/// One observer's ledger: a stream per device of the plan that it expects.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    streams: Vec<Option<Stream>>,
    unexpected: u64,
}

impl Ledger {
    /// `expects[d]` says whether device `d` (its position in the plan) is expected.
    pub fn new(expects: &[bool]) -> Self {
        Ledger {
            streams: expects.iter().map(|e| e.then(Stream::default)).collect(),
            unexpected: 0,
        }
    }

    #[inline]
    pub fn record(&mut self, device: usize, seq: u64) -> Delivery {
        match self.streams.get_mut(device) {
            Some(Some(stream)) => stream.record(seq),
            _ => {
                self.unexpected += 1;
                Delivery::Unexpected
            }
        }
    }

    /// Take in the arrivals of another member of the same shared subscription (same plan).
    pub fn absorb(&mut self, other: &Ledger) {
        self.unexpected += other.unexpected;
        for (mine, theirs) in self.streams.iter_mut().zip(&other.streams) {
            if let (Some(m), Some(t)) = (mine, theirs) {
                m.absorb(t);
            }
        }
    }

    pub fn unexpected(&self) -> u64 {
        self.unexpected
    }

    /// Streams this ledger keeps, with their device positions.
    pub fn streams(&self) -> impl Iterator<Item = (usize, &Stream)> {
        self.streams
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_each_arrival() {
        let mut s = Stream::default();
        assert_eq!(s.record(0), Delivery::InOrder);
        assert_eq!(s.record(2), Delivery::InOrder);
        assert_eq!(s.record(1), Delivery::Reordered);
        assert_eq!(s.record(2), Delivery::Duplicate);
        assert_eq!(s.record(200), Delivery::InOrder);
    }

    #[test]
    fn every_sent_message_is_delivered_lost_or_in_flight() {
        let mut s = Stream::default();
        // 10 sent; 3 and 5 never arrive; 8 and 9 were sent within the drain timeout.
        for seq in [0, 1, 2, 4, 6, 7] {
            s.record(seq);
        }
        let o = s.outcome(10, 8);
        assert_eq!((o.delivered, o.lost, o.in_flight), (6, 2, 2));
        assert_eq!(o.delivered + o.lost + o.in_flight, o.expected);
        // Once 9 arrives, 8 was overtaken: lost, not in flight.
        s.record(9);
        let o = s.outcome(10, 8);
        assert_eq!(
            (o.delivered, o.lost, o.in_flight, o.reordered),
            (7, 3, 0, 0)
        );
    }

    #[test]
    fn shared_members_together_expect_each_message_once() {
        // Two members split 0..10; 4 reached both, 7 reached neither.
        let mut a = Ledger::new(&[true]);
        let mut b = Ledger::new(&[true]);
        for seq in [0, 2, 4, 6, 8] {
            a.record(0, seq);
        }
        for seq in [1, 3, 4, 5, 9] {
            b.record(0, seq);
        }
        a.absorb(&b);
        let (_, stream) = a.streams().next().expect("one stream");
        let o = stream.outcome(10, 10);
        assert_eq!((o.delivered, o.lost, o.duplicates), (9, 1, 1));
    }

    #[test]
    fn ledger_counts_foreign_devices_apart() {
        let mut l = Ledger::new(&[true, false]);
        assert_eq!(l.record(0, 0), Delivery::InOrder);
        assert_eq!(l.record(1, 0), Delivery::Unexpected);
        assert_eq!(l.record(7, 0), Delivery::Unexpected);
        assert_eq!(l.unexpected(), 2);
        assert_eq!(l.streams().count(), 1);
    }
}

/// The final accounting over every observer's ledger.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    pub total: StreamOutcome,
    /// Per delivered QoS level (index 0, 1, 2): number of streams and their outcome.
    pub by_qos: [(u64, StreamOutcome); 3],
    pub unexpected: u64,
}

/// Account for every stream: `ledgers[o]` is observer `o`'s ledger with the QoS each of its
/// streams was delivered at (`qos[device]`), `sent[d]` what device `d` sent in all, and
/// `settled[d]` how many of those were sent at least a drain timeout before the cutoff.
pub fn account<'a>(
    ledgers: impl IntoIterator<Item = (&'a Ledger, &'a [u8])>,
    sent: &[u64],
    settled: &[u64],
) -> Accounting {
    let mut acc = Accounting::default();
    for (ledger, qos) in ledgers {
        acc.unexpected += ledger.unexpected();
        for (device, stream) in ledger.streams() {
            let s = sent.get(device).copied().unwrap_or(0);
            let settled = settled.get(device).copied().unwrap_or(0).min(s);
            let o = stream.outcome(s, settled);
            acc.total.add(&o);
            let level = usize::from(qos.get(device).copied().unwrap_or(0).min(2));
            acc.by_qos[level].0 += 1;
            acc.by_qos[level].1.add(&o);
        }
    }
    acc
}

/// Lost messages by the slot of the fault grid they were due in: `marks[d][k]` is how many
/// messages device `d` had sent before point `k` (past the end of its marks: all it sent),
/// and slot `k` runs from point `k` to point `k + 1`.
pub fn lost_by_slot<'a>(
    ledgers: impl IntoIterator<Item = &'a Ledger>,
    marks: &[Vec<u32>],
    sent: &[u64],
    settled: &[u64],
    points: usize,
) -> Vec<u64> {
    let mut lost = vec![0; points];
    if points < 2 {
        return lost;
    }
    for ledger in ledgers {
        for (device, stream) in ledger.streams() {
            let s = sent.get(device).copied().unwrap_or(0);
            let settled = settled.get(device).copied().unwrap_or(0).min(s);
            let mine = marks.get(device).map_or(&[][..], Vec::as_slice);
            let mark = |k: usize| mine.get(k).map_or(s, |m| u64::from(*m).min(s));
            for (k, n) in lost.iter_mut().enumerate().take(points - 1) {
                *n += stream.lost_in(mark(k), mark(k + 1), s, settled);
            }
        }
    }
    lost
}

/// The streams of `ledgers` accounted per group: `group_of[d]` is device `d`'s group, `sent`
/// and `settled` as in [`account`].
pub fn account_by_group<'a>(
    ledgers: impl IntoIterator<Item = &'a Ledger>,
    (sent, settled): (&[u64], &[u64]),
    group_of: &[usize],
    groups: usize,
) -> Vec<StreamOutcome> {
    let mut out = vec![StreamOutcome::default(); groups];
    for ledger in ledgers {
        for (device, stream) in ledger.streams() {
            let Some(g) = group_of.get(device).and_then(|g| out.get_mut(*g)) else {
                continue;
            };
            let s = sent.get(device).copied().unwrap_or(0);
            let settled = settled.get(device).copied().unwrap_or(0).min(s);
            g.add(&stream.outcome(s, settled));
        }
    }
    out
}

#[cfg(test)]
mod accounting_tests {
    use super::*;

    #[test]
    fn each_groups_streams_are_its_own() {
        // Devices 0 and 2 in group 0, device 1 in group 1; one observer expects all three.
        let mut l = Ledger::new(&[true, true, true]);
        for seq in 0..5 {
            l.record(0, seq);
            l.record(2, seq);
        }
        l.record(1, 0);
        let by = account_by_group([&l], (&[5, 3, 6], &[5, 3, 6]), &[0, 1, 0], 2);
        assert_eq!((by[0].expected, by[0].delivered, by[0].lost), (11, 10, 1));
        assert_eq!((by[1].expected, by[1].delivered, by[1].lost), (3, 1, 2));
    }

    #[test]
    fn sums_streams_by_delivered_qos() {
        let mut a = Ledger::new(&[true, true]);
        let mut b = Ledger::new(&[true, false]);
        for seq in 0..5 {
            a.record(0, seq);
            b.record(0, seq);
        }
        a.record(1, 0);
        a.record(1, 0);
        let qa = [1u8, 1];
        let qb = [0u8, 0];
        let acc = account([(&a, &qa[..]), (&b, &qb[..])], &[5, 3], &[5, 3]);
        assert_eq!(acc.total.expected, 13);
        assert_eq!(acc.total.delivered, 11);
        assert_eq!(acc.total.lost, 2);
        assert_eq!(acc.total.duplicates, 1);
        assert_eq!(acc.by_qos[1].0, 2);
        assert_eq!(acc.by_qos[1].1.lost, 2);
        assert_eq!(acc.by_qos[0].1.delivered, 5);
    }

    #[test]
    fn lost_messages_fall_in_the_slot_they_were_due_in() {
        // 10 sent; marks at 3 points: 2 sent before the first, 5 before the second, 8 before
        // the third. 3 and 6 never arrived (slots 0 and 1); 9 arrived, so nothing is in
        // flight; 1 (before the grid) is lost and in no slot.
        let mut l = Ledger::new(&[true]);
        for seq in [0, 2, 4, 5, 7, 8, 9] {
            l.record(0, seq);
        }
        let lost = lost_by_slot([&l], &[vec![2, 5, 8]], &[10], &[10], 3);
        assert_eq!(lost, vec![1, 1, 0]);
        // A device that did not reach the last point had sent everything before it.
        let lost = lost_by_slot([&l], &[vec![2]], &[10], &[10], 3);
        assert_eq!(lost, vec![2, 0, 0]);
    }
}
