//! What the device behaviours showed: statuses and retained statuses, last wills, persistent
//! sessions and command round trips. Each part is present only when the scenario asks for it.

use serde::{Deserialize, Serialize};

use crate::hist::{LatencyHistogram, LatencySummary};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Behaviour {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<StatusCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wills: Option<WillCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sessions: Option<SessionCheck>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commands: Option<CommandReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mqtt5: Option<Mqtt5Check>,
}

impl Behaviour {
    pub fn is_empty(&self) -> bool {
        self == &Behaviour::default()
    }

    /// Add another run's (or shard's) figures to these.
    pub fn absorb(&mut self, other: &Behaviour) -> Result<(), crate::hist::HistogramCodecError> {
        fn add<T: Default + Clone>(
            mine: &mut Option<T>,
            theirs: &Option<T>,
            f: impl Fn(&mut T, &T),
        ) {
            if let Some(t) = theirs {
                f(mine.get_or_insert_with(T::default), t);
            }
        }
        add(&mut self.status, &other.status, |a, b| {
            a.devices += b.devices;
            a.expected += b.expected;
            a.received += b.received;
            a.missing += b.missing;
            a.retained_expected += b.retained_expected;
            a.not_retained += b.not_retained;
        });
        add(&mut self.wills, &other.wills, |a, b| {
            a.dropped += b.dropped;
            a.expected += b.expected;
            a.received += b.received;
            a.missing += b.missing;
            a.unexpected += b.unexpected;
        });
        add(&mut self.sessions, &other.sessions, |a, b| {
            a.returns += b.returns;
            a.resumed += b.resumed;
            a.lost += b.lost;
        });
        add(&mut self.mqtt5, &other.mqtt5, Mqtt5Check::add);
        if let Some(theirs) = &other.commands {
            match &mut self.commands {
                None => self.commands = Some(theirs.clone()),
                Some(mine) => mine.absorb(theirs)?,
            }
        }
        Ok(())
    }
}

/// Statuses devices published on connecting, as their observers heard them (each pair of a
/// device that connected and an observer whose filters match its status topic).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct StatusCheck {
    /// Devices with a status that connected.
    pub devices: u64,
    /// Device-observer pairs that should have heard a status.
    pub expected: u64,
    /// Of those, the pairs that did.
    pub received: u64,
    pub missing: u64,
    /// Pairs whose observer joined late: the status can only have come as a retained message.
    pub retained_expected: u64,
    /// Of those, statuses that arrived without the retain flag.
    pub not_retained: u64,
}

/// Last wills: owed for every device that dropped while connected, to every observer whose
/// filters match its will topic; owed by no device that said goodbye.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WillCheck {
    /// Devices that dropped their connection while connected.
    pub dropped: u64,
    pub expected: u64,
    pub received: u64,
    pub missing: u64,
    /// Wills of devices that disconnected properly (or never dropped).
    pub unexpected: u64,
}

/// Persistent sessions of observers that went away and came back.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct SessionCheck {
    /// Reconnects after an offline period.
    pub returns: u64,
    /// Of those, the broker still had the session (CONNACK's session-present flag).
    pub resumed: u64,
    /// The broker had forgotten the session: subscriptions and queued messages gone.
    pub lost: u64,
}

/// MQTT 5 publish properties: what devices sent and what observers received with the data
/// (first arrivals, each device-observer pair).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Mqtt5Check {
    /// Arrivals whose device sent user properties.
    pub user_properties_expected: u64,
    /// Of those, arrivals without all of them.
    pub user_properties_missing: u64,
    /// Arrivals whose device set a message expiry interval.
    pub expiry_expected: u64,
    /// Of those, arrivals without the time left (or with more than was set).
    pub expiry_missing: u64,
    /// Arrivals later than their expiry after they left the device: the broker should have
    /// discarded them.
    pub delivered_after_expiry: u64,
    /// Data messages sent with a topic alias alone (no topic).
    pub sent_alias_only: u64,
    /// Devices that asked for topic aliases on a connection whose broker allowed none.
    pub aliases_refused: u64,
}

impl Mqtt5Check {
    pub fn add(&mut self, o: &Mqtt5Check) {
        self.user_properties_expected += o.user_properties_expected;
        self.user_properties_missing += o.user_properties_missing;
        self.expiry_expected += o.expiry_expected;
        self.expiry_missing += o.expiry_missing;
        self.delivered_after_expiry += o.delivered_after_expiry;
        self.sent_alias_only += o.sent_alias_only;
        self.aliases_refused += o.aliases_refused;
    }
}

/// Commands sent by controllers and the devices' answers. The round trip runs from the
/// command's intended send time (an open-loop schedule) to its answer's arrival.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct CommandReport {
    pub sent: u64,
    pub answered: u64,
    pub unanswered: u64,
    pub duplicates: u64,
    pub round_trip: LatencySummary,
    /// The round-trip distribution, lossless (V2 compressed, base64).
    pub histogram: String,
}

impl CommandReport {
    pub fn new(
        sent: u64,
        answered: u64,
        duplicates: u64,
        round_trip: &LatencyHistogram,
    ) -> Result<CommandReport, crate::hist::HistogramCodecError> {
        Ok(CommandReport {
            sent,
            answered,
            unanswered: sent.saturating_sub(answered),
            duplicates,
            round_trip: round_trip.summary(),
            histogram: round_trip.to_base64()?,
        })
    }

    fn absorb(&mut self, other: &CommandReport) -> Result<(), crate::hist::HistogramCodecError> {
        let mut h = LatencyHistogram::from_base64(&self.histogram)?;
        h.add(&LatencyHistogram::from_base64(&other.histogram)?);
        *self = CommandReport::new(
            self.sent + other.sent,
            self.answered + other.answered,
            self.duplicates + other.duplicates,
            &h,
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_add_their_checks_and_round_trips_exactly() {
        let rtt = |values: &[u64]| {
            let mut h = LatencyHistogram::new();
            for v in values {
                h.record_us(*v);
            }
            h
        };
        let a = Behaviour {
            wills: Some(WillCheck {
                dropped: 2,
                expected: 2,
                received: 1,
                missing: 1,
                unexpected: 0,
            }),
            commands: Some(CommandReport::new(3, 3, 0, &rtt(&[100, 200, 300])).expect("encode")),
            ..Behaviour::default()
        };
        let b = Behaviour {
            wills: Some(WillCheck {
                dropped: 1,
                expected: 1,
                received: 1,
                missing: 0,
                unexpected: 2,
            }),
            commands: Some(CommandReport::new(2, 1, 1, &rtt(&[5_000])).expect("encode")),
            ..Behaviour::default()
        };
        let mut merged = Behaviour::default();
        merged.absorb(&a).expect("merge");
        merged.absorb(&b).expect("merge");
        let w = merged.wills.expect("wills");
        assert_eq!(
            (w.dropped, w.received, w.missing, w.unexpected),
            (3, 2, 1, 2)
        );
        let c = merged.commands.expect("commands");
        assert_eq!(
            (c.sent, c.answered, c.unanswered, c.duplicates),
            (5, 4, 1, 1)
        );
        assert_eq!(c.round_trip.count, 4);
        assert!(c.round_trip.max_us >= 4_990, "{:?}", c.round_trip);
        assert!(merged.status.is_none() && merged.sessions.is_none());
    }
}
