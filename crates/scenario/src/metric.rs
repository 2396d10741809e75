//! The figures of a run that are judged: by the scenario's expectations, by the checks every run
//! gets, and by the regression gate's comparisons. One list, one name each: a name in a
//! scenario (`[regression] skip`), in a report's expectations and in a comparison's rows means
//! the same figure. How each is read from a report lives with the report (the metrics crate);
//! what it is, how it is shown and which way is better lives here, where validation can see it.

/// Declares [`Metric`] and [`Metric::ALL`] from one list.
macro_rules! metrics {
    ($($m:ident),* $(,)?) => {
        /// A judged figure of a run.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Metric {
            $($m),*
        }

        impl Metric {
            /// Every metric.
            pub const ALL: &'static [Metric] = &[$(Metric::$m),*];
        }
    };
}

metrics! {
    DeliveredRatio,
    Lost,
    LostAtQos12,
    Duplicates,
    DuplicatesAtQos2,
    Reordered,
    P50FromIntended,
    P90FromIntended,
    P99FromIntended,
    P999FromIntended,
    MaxFromIntended,
    P99FromSend,
    P99Puback,
    DeliverPerS,
    PublishPerS,
    Errors,
    NeverConnected,
    Disconnected,
    BrokerGone,
    BrokerRestarts,
    InFlightShare,
    GeneratorLateShare,
    GeneratorLimited,
    GeneratorBehind,
    StatusMissing,
    StatusNotRetained,
    WillsMissing,
    WillsUnexpected,
    SessionsLost,
    CommandsUnanswered,
    UserPropsMissing,
    ExpiryMissing,
    DeliveredAfterExpiry,
    ShardsMissing,
    ShardsFailed,
    FaultsFailed,
    FaultsUnrecovered,
}

/// Which way a figure gets better.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Better {
    Lower,
    Higher,
}

/// What a figure counts or measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Micros,
    PerSecond,
    Ratio,
}

use Better::{Higher, Lower};
use Metric::*;
use Unit::{Count, Micros, PerSecond, Ratio};

/// Names reports written before the metrics had one name each used in their expectations.
const OLD_NAMES: [(&str, Metric); 5] = [
    ("p50_us", P50FromIntended),
    ("p90_us", P90FromIntended),
    ("p99_us", P99FromIntended),
    ("p999_us", P999FromIntended),
    ("max_latency_us", MaxFromIntended),
];

impl Metric {
    /// The latency figures from the intended send time a scenario's `[expect]` may limit.
    pub const FROM_INTENDED: [Metric; 5] = [
        P50FromIntended,
        P90FromIntended,
        P99FromIntended,
        P999FromIntended,
        MaxFromIntended,
    ];

    /// The metrics a comparison of two reports judges, in the order of its table.
    pub const COMPARED: [Metric; 10] = [
        Lost,
        LostAtQos12,
        Duplicates,
        Errors,
        DeliveredRatio,
        P50FromIntended,
        P99FromIntended,
        P99FromSend,
        P99Puback,
        DeliverPerS,
    ];

    /// Its name, its label in tables, its unit and which way is better.
    fn row(self) -> (&'static str, &'static str, Unit, Better) {
        match self {
            DeliveredRatio => ("delivered_ratio", "delivered ratio", Ratio, Higher),
            Lost => ("lost", "lost", Count, Lower),
            LostAtQos12 => ("lost_at_qos_1_or_2", "lost at QoS 1/2", Count, Lower),
            Duplicates => ("duplicates", "duplicates", Count, Lower),
            DuplicatesAtQos2 => ("duplicates_at_qos_2", "duplicates at QoS 2", Count, Lower),
            Reordered => ("reordered", "reordered", Count, Lower),
            P50FromIntended => ("p50_from_intended", "p50 from intended", Micros, Lower),
            P90FromIntended => ("p90_from_intended", "p90 from intended", Micros, Lower),
            P99FromIntended => ("p99_from_intended", "p99 from intended", Micros, Lower),
            P999FromIntended => ("p999_from_intended", "p99.9 from intended", Micros, Lower),
            MaxFromIntended => ("max_from_intended", "max from intended", Micros, Lower),
            P99FromSend => ("p99_from_send", "p99 from send", Micros, Lower),
            P99Puback => ("p99_puback", "p99 puback", Micros, Lower),
            DeliverPerS => ("deliver_per_s", "deliveries/s", PerSecond, Higher),
            PublishPerS => ("publish_per_s", "publishes/s", PerSecond, Higher),
            Errors => ("errors", "errors", Count, Lower),
            NeverConnected => ("never_connected", "never connected", Count, Lower),
            Disconnected => ("disconnected", "disconnected", Count, Lower),
            BrokerGone => ("broker_gone", "broker gone", Count, Lower),
            BrokerRestarts => ("broker_restarts", "broker restarts", Count, Lower),
            InFlightShare => ("in_flight_share", "in flight share", Ratio, Lower),
            GeneratorLateShare => ("generator_late_share", "late share", Ratio, Lower),
            GeneratorBehind => ("generator_behind", "sends 10 ms late", Ratio, Lower),
            GeneratorLimited => (
                "generator_limited",
                "latency verdicts decided by late sends",
                Count,
                Lower,
            ),
            StatusMissing => ("status_missing", "statuses missing", Count, Lower),
            StatusNotRetained => ("status_not_retained", "statuses not retained", Count, Lower),
            WillsMissing => ("wills_missing", "wills missing", Count, Lower),
            WillsUnexpected => ("wills_unexpected", "wills unexpected", Count, Lower),
            SessionsLost => ("sessions_lost", "sessions lost", Count, Lower),
            CommandsUnanswered => ("commands_unanswered", "commands unanswered", Count, Lower),
            UserPropsMissing => (
                "user_props_missing",
                "user properties missing",
                Count,
                Lower,
            ),
            ExpiryMissing => ("expiry_missing", "expiry missing", Count, Lower),
            DeliveredAfterExpiry => (
                "delivered_after_expiry",
                "delivered after expiry",
                Count,
                Lower,
            ),
            ShardsMissing => ("shards_missing", "shards missing", Count, Lower),
            ShardsFailed => ("shards_failed", "shards failed", Count, Lower),
            FaultsFailed => ("faults_failed", "faults failed", Count, Lower),
            FaultsUnrecovered => ("faults_unrecovered", "faults unrecovered", Count, Lower),
        }
    }

    /// The name in scenarios, reports and comparisons.
    pub fn name(self) -> &'static str {
        self.row().0
    }

    /// The name as a table shows it.
    pub fn label(self) -> &'static str {
        self.row().1
    }

    pub fn unit(self) -> Unit {
        self.row().2
    }

    pub fn better(self) -> Better {
        self.row().3
    }

    /// The metric a name means (the names of older reports included).
    pub fn from_name(name: &str) -> Option<Metric> {
        Metric::ALL
            .iter()
            .copied()
            .find(|m| m.name() == name)
            .or_else(|| OLD_NAMES.iter().find(|(n, _)| *n == name).map(|(_, m)| *m))
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_has_its_own_name_and_reads_back() {
        for &m in Metric::ALL {
            assert_eq!(Metric::ALL.iter().filter(|o| **o == m).count(), 1, "{m:?}");
            assert_eq!(
                Metric::ALL.iter().filter(|o| o.name() == m.name()).count(),
                1,
                "{m}"
            );
            assert_eq!(Metric::from_name(m.name()), Some(m));
        }
        assert_eq!(Metric::from_name("p99_us"), Some(P99FromIntended));
        assert_eq!(Metric::from_name("nonsense"), None);
    }
}
