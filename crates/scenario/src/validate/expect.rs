//! What a run must show to pass: the `[expect]` table.

use std::time::Duration;

use crate::model::Expectations;
use crate::raw::{RawExpect, S};

use super::ctx::{Ctx, R};

pub(crate) fn expectations(cx: &Ctx, e: &RawExpect) -> R<Expectations> {
    let limit = |v: &Option<S<i64>>, field: &str| -> R<Option<u64>> {
        match v {
            None => Ok(None),
            Some(v) if *v.get_ref() < 0 => Err(cx.err(
                v.span(),
                format!("expect.{field}"),
                format!("must be 0 or more, got {}", v.get_ref()),
            )),
            Some(v) => Ok(Some(*v.get_ref() as u64)),
        }
    };
    let latency = |v: &Option<S<String>>, field: &str| -> R<Option<Duration>> {
        v.as_ref()
            .map(|v| cx.duration(v, &format!("expect.{field}")))
            .transpose()
    };
    let rate = |v: &Option<S<f64>>, field: &str| -> R<Option<f64>> {
        match v {
            Some(v) if v.get_ref().is_nan() || *v.get_ref() < 0.0 => Err(cx.err(
                v.span(),
                format!("expect.{field}"),
                format!("messages per second must be 0 or more, got {}", v.get_ref()),
            )),
            v => Ok(v.as_ref().map(|v| *v.get_ref())),
        }
    };
    let share = |v: &Option<S<f64>>, field: &str, what: &str| -> R<Option<f64>> {
        match v {
            Some(r) if !(0.0..=1.0).contains(r.get_ref()) => Err(cx.err(
                r.span(),
                format!("expect.{field}"),
                format!("{what} between 0.0 and 1.0, got {}", r.get_ref()),
            )),
            r => Ok(r.as_ref().map(|r| *r.get_ref())),
        }
    };
    Ok(Expectations {
        delivered_ratio: share(
            &e.delivered_ratio,
            "delivered_ratio",
            "a ratio (1.0 = everything delivered)",
        )?,
        max_lost: limit(&e.max_lost, "max_lost")?,
        max_duplicates: limit(&e.max_duplicates, "max_duplicates")?,
        max_reordered: limit(&e.max_reordered, "max_reordered")?,
        p50: latency(&e.p50, "p50")?,
        p90: latency(&e.p90, "p90")?,
        p99: latency(&e.p99, "p99")?,
        p999: latency(&e.p999, "p999")?,
        max_latency: latency(&e.max_latency, "max_latency")?,
        min_deliver_per_s: rate(&e.min_deliver_per_s, "min_deliver_per_s")?,
        min_publish_per_s: rate(&e.min_publish_per_s, "min_publish_per_s")?,
        max_late_share: share(&e.max_late_share, "max_late_share", "a share")?,
        max_never_connected: limit(&e.max_never_connected, "max_never_connected")?,
        max_disconnected: limit(&e.max_disconnected, "max_disconnected")?,
        max_errors: limit(&e.max_errors, "max_errors")?,
        max_in_flight_share: share(&e.max_in_flight_share, "max_in_flight_share", "a share")?,
    })
}
