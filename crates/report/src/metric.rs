//! How each judged figure ([`Metric`], defined with the scenario so that validation knows the
//! names) is read from a report: its value for expectations and exact comparisons, its value in
//! one run's [`Sample`] for timing comparisons, and the distribution a percentile stands on.

pub use fleetbench_scenario::metric::{Better, Metric, Unit};

use crate::report::{Latency, Report, Sample};

/// The figure `m` of report `r`; None when the report has none (a behaviour it did not use).
pub fn value(m: Metric, r: &Report) -> Option<f64> {
    use Metric::*;
    let t = &r.totals;
    let l = &r.latency.from_intended;
    let b = &r.behaviour;
    let share = |part: u64, whole: u64| {
        if whole == 0 {
            0.0
        } else {
            part as f64 / whole as f64
        }
    };
    Some(match m {
        DeliveredRatio => share(t.delivered, t.expected),
        Lost => t.lost as f64,
        LostAtQos12 => r.lost_at_guaranteed_qos() as f64,
        Duplicates => t.duplicates as f64,
        DuplicatesAtQos2 => r
            .by_qos
            .iter()
            .filter(|q| q.qos == 2)
            .map(|q| q.outcome.duplicates)
            .sum::<u64>() as f64,
        Reordered => t.reordered as f64,
        P50FromIntended => l.p50_us as f64,
        P90FromIntended => l.p90_us as f64,
        P99FromIntended => l.p99_us as f64,
        P999FromIntended => l.p999_us as f64,
        MaxFromIntended => l.max_us as f64,
        P99FromSend => r.latency.from_send.p99_us as f64,
        P99Puback => r.latency.puback.p99_us as f64,
        DeliverPerS => r.throughput.deliver_per_s,
        PublishPerS => r.throughput.publish_per_s,
        // Connection errors a fault caused are its cost (in `faults`), not a troubled run.
        Errors => (r.errors.values().map(|g| g.count).sum::<u64>())
            .saturating_sub(r.faults.iter().map(|f| f.connection_errors).sum())
            as f64,
        NeverConnected => f64::from(r.timing.never_connected),
        Disconnected => f64::from(r.timing.disconnected),
        BrokerGone => f64::from(u8::from(r.run.broker_gone.is_some())),
        BrokerRestarts => {
            let w = r.broker_watch.as_ref()?;
            (w.restarts.len() as u64 + w.unrecorded_restarts) as f64
        }
        InFlightShare => share(t.in_flight, t.expected),
        GeneratorLateShare => crate::lateness::judged_late_share(r.generator.late_sends, t.sent),
        GeneratorBehind => crate::lateness::judged_late_share(r.behind_sends(), t.sent),
        GeneratorLimited => crate::lateness::decided_by_late_sends(&r.expectations, r) as f64,
        StatusMissing => b.status.as_ref()?.missing as f64,
        StatusNotRetained => b.status.as_ref()?.not_retained as f64,
        WillsMissing => b.wills.as_ref()?.missing as f64,
        WillsUnexpected => b.wills.as_ref()?.unexpected as f64,
        SessionsLost => b.sessions.as_ref()?.lost as f64,
        CommandsUnanswered => b.commands.as_ref()?.unanswered as f64,
        UserPropsMissing => b.mqtt5.as_ref()?.user_properties_missing as f64,
        ExpiryMissing => b.mqtt5.as_ref()?.expiry_missing as f64,
        DeliveredAfterExpiry => b.mqtt5.as_ref()?.delivered_after_expiry as f64,
        ShardsMissing => crate::shards::missing(r)?.len() as f64,
        ShardsFailed => crate::shards::failed(r)?.len() as f64,
        FaultsFailed => {
            (!r.faults.is_empty()).then_some(())?;
            r.faults.iter().filter(|f| f.failed.is_some()).count() as f64
        }
        FaultsUnrecovered => {
            (!r.faults.is_empty()).then_some(())?;
            // A fault that could not be done is judged by `FaultsFailed`: nothing to recover.
            (r.faults.iter())
                .filter(|f| f.failed.is_none() && f.recovery_s.is_none())
                .count() as f64
        }
    })
}

/// The figure `m` of one run's sample: the timing figures a comparison takes the median of.
/// None for figures that compare as whole-report counts.
pub fn sample_value(m: Metric, s: &Sample) -> Option<f64> {
    Some(match m {
        Metric::P50FromIntended => s.p50_from_intended_us as f64,
        Metric::P99FromIntended => s.p99_from_intended_us as f64,
        Metric::P99FromSend => s.p99_from_send_us as f64,
        Metric::P99Puback => s.p99_puback_us as f64,
        Metric::DeliverPerS => s.deliver_per_s,
        _ => return None,
    })
}

/// For a percentile: which one, and how many values the distribution it stands on holds.
pub fn percentile(m: Metric, l: &Latency) -> Option<(f64, u64)> {
    Some(match m {
        Metric::P50FromIntended => (0.5, l.from_intended.count),
        Metric::P90FromIntended => (0.9, l.from_intended.count),
        Metric::P99FromIntended => (0.99, l.from_intended.count),
        Metric::P999FromIntended => (0.999, l.from_intended.count),
        Metric::P99FromSend => (0.99, l.from_send.count),
        Metric::P99Puback => (0.99, l.puback.count),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_metric_reads_from_a_report_that_has_it() {
        let r = crate::fixture::report(400, 900, 7, 1_000.0);
        let behaviours = [
            Metric::StatusMissing,
            Metric::StatusNotRetained,
            Metric::WillsMissing,
            Metric::WillsUnexpected,
            Metric::SessionsLost,
            Metric::CommandsUnanswered,
            Metric::UserPropsMissing,
            Metric::ExpiryMissing,
            Metric::DeliveredAfterExpiry,
            Metric::BrokerRestarts,
            Metric::ShardsMissing,
            Metric::ShardsFailed,
            Metric::FaultsFailed,
            Metric::FaultsUnrecovered,
        ];
        for &m in Metric::ALL {
            assert_eq!(value(m, &r).is_some(), !behaviours.contains(&m), "{m}");
        }
        assert_eq!(value(Metric::Lost, &r), Some(7.0));
        assert_eq!(
            value(Metric::P99FromIntended, &r),
            Some(r.latency.from_intended.p99_us as f64)
        );
        for m in Metric::COMPARED {
            let timing = matches!(m.unit(), Unit::Micros | Unit::PerSecond);
            assert_eq!(sample_value(m, &r.own_sample()).is_some(), timing, "{m}");
        }
    }
}
