//! How the regression gate judges the scenario: the `[regression]` table.

use crate::metric::Metric;
use crate::model::Regression;
use crate::raw::{RawRegression, S};

use super::ctx::{Ctx, R};

pub(crate) fn regression(cx: &Ctx, r: &RawRegression) -> R<Regression> {
    let d = Regression::default();
    let share = |v: &Option<S<f64>>, field: &str, default: f64| -> R<f64> {
        match v {
            None => Ok(default),
            Some(v) => Regression::tolerance(*v.get_ref())
                .map_err(|e| cx.err(v.span(), format!("regression.{field}"), e)),
        }
    };
    let repeat = match &r.repeat {
        Some(n) => cx.count(n, "regression.repeat", 1, 100)?,
        None => d.repeat,
    };
    let mut skip = Vec::new();
    for s in &r.skip {
        let compared = Metric::from_name(s.get_ref()).filter(|m| Metric::COMPARED.contains(m));
        let Some(metric) = compared else {
            let names: Vec<&str> = Metric::COMPARED.iter().map(|m| m.name()).collect();
            return Err(cx.err(
                s.span(),
                "regression.skip",
                format!(
                    "{:?} is not a compared metric; expected one of {}",
                    s.get_ref(),
                    names.join(", ")
                ),
            ));
        };
        skip.push(metric.name().to_string());
    }
    Ok(Regression {
        latency: share(&r.latency, "latency", d.latency)?,
        latency_floor: match &r.latency_floor {
            Some(v) => cx.duration(v, "regression.latency_floor")?,
            None => d.latency_floor,
        },
        throughput: share(&r.throughput, "throughput", d.throughput)?,
        calibrate_latency: r.calibrate_latency.unwrap_or(d.calibrate_latency),
        calibrate_throughput: r.calibrate_throughput.unwrap_or(d.calibrate_throughput),
        repeat,
        gate: r.gate.unwrap_or(d.gate),
        skip,
    })
}
