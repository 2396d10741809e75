//! Latency histograms: HDR, microseconds, 3 significant digits.

use base64::Engine;
use hdrhistogram::serialization::{Deserializer, Serializer, V2DeflateSerializer};
use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// The longest latency a histogram tracks exactly: one hour, beyond any run's drain timeout.
/// Larger values are clamped to it (and still counted).
pub const HIGHEST_US: u64 = 3_600_000_000;

/// An HDR histogram of latencies in microseconds.
#[derive(Clone, Debug)]
pub struct LatencyHistogram(Histogram<u64>);

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHistogram {
    pub fn new() -> Self {
        // 1 us .. 1 h at 3 significant digits; the bounds are valid, so this cannot fail.
        match Histogram::new_with_bounds(1, HIGHEST_US, 3) {
            Ok(h) => LatencyHistogram(h),
            Err(e) => unreachable!("constant histogram bounds rejected: {e}"),
        }
    }

    #[inline]
    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.min(HIGHEST_US));
    }

    /// Record a latency given in nanoseconds.
    #[inline]
    pub fn record_ns(&mut self, ns: u64) {
        self.record_us(ns / 1_000);
    }

    pub fn add(&mut self, other: &LatencyHistogram) {
        // Same bounds on both sides: `add` cannot fail.
        let _ = self.0.add(&other.0);
    }

    pub fn count(&self) -> u64 {
        self.0.len()
    }

    pub fn quantile_us(&self, q: f64) -> u64 {
        self.0.value_at_quantile(q)
    }

    pub fn max_us(&self) -> u64 {
        self.0.max()
    }

    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// The histogram in HdrHistogram's "V2 compressed" encoding, base64: the text of an
    /// interval-log line, which every HdrHistogram library reads. Lossless.
    pub fn to_base64(&self) -> Result<String, HistogramCodecError> {
        let mut out = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut out)
            .map_err(|e| HistogramCodecError(format!("{e:?}")))?;
        Ok(base64::engine::general_purpose::STANDARD.encode(out))
    }

    /// Read a histogram written by [`LatencyHistogram::to_base64`] (or any base64 HdrHistogram
    /// V2 encoding). Values beyond [`HIGHEST_US`] are clamped to it, as when recording.
    pub fn from_base64(text: &str) -> Result<LatencyHistogram, HistogramCodecError> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| HistogramCodecError(format!("not base64: {e}")))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut raw.as_slice())
            .map_err(|e| HistogramCodecError(format!("{e:?}")))?;
        let ours = h.low() == 1 && h.high() == HIGHEST_US && h.sigfig() == 3;
        Ok(if ours {
            LatencyHistogram(h)
        } else {
            Self::from_hdr(&h)
        })
    }

    /// A copy of any HDR histogram on this one's bounds.
    pub fn from_hdr(h: &Histogram<u64>) -> LatencyHistogram {
        let mut out = LatencyHistogram::new();
        for v in h.iter_recorded() {
            let _ = out
                .0
                .record_n(v.value_iterated_to().min(HIGHEST_US), v.count_at_value());
        }
        out
    }

    /// The underlying HDR histogram, for writers of HdrHistogram formats.
    pub fn hdr(&self) -> &Histogram<u64> {
        &self.0
    }

    pub fn summary(&self) -> LatencySummary {
        let h = &self.0;
        if h.is_empty() {
            return LatencySummary::default();
        }
        LatencySummary {
            count: h.len(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
            mean_us: h.mean(),
        }
    }
}

/// A histogram could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("HdrHistogram encoding: {0}")]
pub struct HistogramCodecError(pub String);

/// What a report says of one latency distribution.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct LatencySummary {
    pub count: u64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
    pub mean_us: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_within_three_significant_digits() {
        let mut h = LatencyHistogram::new();
        for us in 1..=10_000 {
            h.record_us(us);
        }
        let s = h.summary();
        assert_eq!(s.count, 10_000);
        assert!((s.p50_us as i64 - 5_000).abs() <= 5, "{s:?}");
        assert!((s.p99_us as i64 - 9_900).abs() <= 10, "{s:?}");
        assert!((s.max_us as i64 - 10_000).abs() <= 10, "{s:?}");
    }

    #[test]
    fn encoding_round_trips_every_count() {
        let mut h = LatencyHistogram::new();
        for us in [1, 7, 250, 250, 9_999, 1_234_567, HIGHEST_US] {
            h.record_us(us);
        }
        let back = LatencyHistogram::from_base64(&h.to_base64().expect("encode")).expect("decode");
        assert_eq!(back.hdr(), h.hdr());
        assert!(LatencyHistogram::from_base64("bm90IGEgaGlzdG9ncmFt").is_err());
        assert!(LatencyHistogram::from_base64("not base64!").is_err());
    }

    #[test]
    fn merge_is_exact_and_huge_values_are_clamped_not_lost() {
        let mut a = LatencyHistogram::new();
        let mut b = LatencyHistogram::new();
        a.record_us(100);
        b.record_us(200);
        b.record_us(HIGHEST_US * 10);
        a.add(&b);
        assert_eq!(a.count(), 3);
        assert!(a.max_us() >= HIGHEST_US - HIGHEST_US / 1000);
    }
}
