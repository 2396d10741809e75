//! Latency in the fixed buckets a Prometheus histogram has: the aggregator adds each tick's
//! deliveries, so that a live endpoint can show the whole run's distribution at any moment
//! (the HdrHistograms stay the exact record).

use crate::hist::LatencyHistogram;

/// Upper bounds of the buckets, in microseconds (the last bucket, +Inf, is implied): 0.5 ms
/// to 10 s, about three to a decade.
pub const BOUNDS_US: [u64; 14] = [
    500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000,
    2_500_000, 5_000_000, 10_000_000,
];

/// Deliveries by bucket (not cumulative; the last is above every bound), their count and
/// the sum of their latencies.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Buckets {
    pub counts: [u64; BOUNDS_US.len() + 1],
    pub count: u64,
    pub sum_us: f64,
}

impl Buckets {
    /// Add the deliveries of `h`.
    pub fn add(&mut self, h: &LatencyHistogram) {
        for v in h.hdr().iter_recorded() {
            let (us, n) = (v.value_iterated_to(), v.count_at_value());
            // A value equal to a bound belongs to that bound's bucket ("le").
            self.counts[BOUNDS_US.partition_point(|b| *b < us)] += n;
            self.count += n;
            self.sum_us += us as f64 * n as f64;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_land_in_the_bucket_of_the_first_bound_at_or_above_them() {
        let mut h = LatencyHistogram::new();
        for us in [100, 500, 501, 9_000, 20_000_000] {
            h.record_us(us);
        }
        let mut b = Buckets::default();
        b.add(&h);
        b.add(&h);
        assert_eq!(b.count, 10);
        // 100 and 500 are <= 0.5 ms; 501 in the 1 ms bucket; 9 ms in 10 ms; 20 s above all.
        assert_eq!((b.counts[0], b.counts[1], b.counts[4]), (4, 2, 2));
        assert_eq!(b.counts[BOUNDS_US.len()], 2);
        assert!(
            (b.sum_us / 2.0 - 20_009_601.0).abs() / 20_009_601.0 < 0.002,
            "{}",
            b.sum_us
        );
    }
}
