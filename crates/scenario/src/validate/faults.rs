//! Faults: `[[fault]]` tables, each checked against the groups it names, the run's duration and
//! the broker it would restart, before anything connects.

use std::time::Duration;

use crate::model::{BrokerTarget, DeviceGroup, Fault, FaultKind, ObserverGroup};
use crate::raw::{RawFault, S};
use crate::FaultType;

use super::ctx::{Ctx, Found, R};

/// How long a restart command may take unless the fault says otherwise.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// Every fault, sorted by start (None when any is wrong; each mistake is in `found`).
pub(crate) fn faults(
    cx: &Ctx,
    raw: &[S<RawFault>],
    (groups, observers): (&[DeviceGroup], &[ObserverGroup]),
    broker: &BrokerTarget,
    duration: Duration,
    found: &mut Found,
) -> Option<Vec<Fault>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut all = true;
    for (i, f) in raw.iter().enumerate() {
        match found.keep(fault(cx, i, f, (groups, observers), broker, duration)) {
            Some(f) => out.push((i, f)),
            None => all = false,
        }
    }
    out.sort_by_key(|(_, f)| f.at);
    if all {
        found.keep(apart(cx, raw, &out))?;
    }
    all.then(|| out.into_iter().map(|(_, f)| f).collect())
}

/// Faults (with their place in the file), sorted by start, must not overlap: a fault that
/// starts while another lasts (or at the same instant) would have its cost, and the other's,
/// measured on a run that two faults shaped at once.
fn apart(cx: &Ctx, raw: &[S<RawFault>], sorted: &[(usize, Fault)]) -> R<()> {
    for pair in sorted.windows(2) {
        let ((i, a), (j, b)) = (&pair[0], &pair[1]);
        let end = a.at + a.length;
        if b.at <= end {
            let lasts = if a.length.is_zero() {
                format!("at {}", humantime::format_duration(a.at))
            } else {
                format!(
                    "from {} to {}",
                    humantime::format_duration(a.at),
                    humantime::format_duration(end)
                )
            };
            return Err(cx.err(
                raw[*j].get_ref().at.span(),
                format!("fault[{j}].at"),
                format!(
                    "starts at {}, while fault[{i}] ({}) lasts {lasts}; faults may not overlap \
                     (their costs could not be told apart): start it after {}",
                    humantime::format_duration(b.at),
                    a.kind.kind(),
                    humantime::format_duration(end)
                ),
            ));
        }
    }
    Ok(())
}

fn fault(
    cx: &Ctx,
    i: usize,
    raw: &S<RawFault>,
    (groups, observers): (&[DeviceGroup], &[ObserverGroup]),
    broker: &BrokerTarget,
    duration: Duration,
) -> R<Fault> {
    let f = raw.get_ref();
    let field = |name: &str| format!("fault[{i}].{name}");
    let at = cx.positive_duration(&f.at, &field("at"))?;
    let length = match &f.length {
        Some(l) => cx.duration(l, &field("for"))?,
        None => Duration::ZERO,
    };
    if at + length >= duration {
        let (span, name) = match &f.length {
            Some(l) if at < duration => (l.span(), "for"),
            _ => (f.at.span(), "at"),
        };
        return Err(cx.err(
            span,
            field(name),
            format!(
                "the fault's window ends at {}, past the end of publishing at {}; a fault must \
                 end while devices publish, so that its cost can be seen",
                humantime::format_duration(at + length),
                humantime::format_duration(duration)
            ),
        ));
    }
    let t = FaultType::try_from(f.kind.get_ref().clone())
        .map_err(|e| cx.err(f.kind.span(), field("kind"), e.to_string()))?;
    if length.is_zero() && t.windowed() {
        return Err(cx.err(
            f.kind.span(),
            field("for"),
            format!("a {t} fault lasts a window: give for = \"10s\""),
        ));
    }
    let kind = match t {
        FaultType::Disconnect => disconnect(cx, i, f, groups)?,
        FaultType::Churn => churn(cx, i, f, groups)?,
        FaultType::BrokerRestart => broker_restart(cx, i, f, broker)?,
        FaultType::Network => network(cx, i, f, broker)?,
        FaultType::SlowConsumer => slow_consumer(cx, i, f, observers)?,
    };
    fields_fit(cx, i, f, t)?;
    Ok(Fault { kind, at, length })
}

/// A field of a fault: its name, its span when given, the kinds that take it.
type Given<'a> = (&'a str, Option<std::ops::Range<usize>>, &'a [FaultType]);

/// Every field the fault gives belongs to its kind (the spans of those given, by name, with
/// the kinds that take them).
fn fields_fit(cx: &Ctx, i: usize, f: &RawFault, kind: FaultType) -> R<()> {
    use FaultType::{BrokerRestart, Churn, Disconnect, Network, SlowConsumer};
    let given: [Given; 14] = [
        ("group", f.group.as_ref().map(S::span), &[Disconnect, Churn]),
        ("share", f.share.as_ref().map(S::span), &[Disconnect]),
        ("count", f.count.as_ref().map(S::span), &[Disconnect]),
        ("rate", f.rate.as_ref().map(S::span), &[Churn]),
        ("command", f.command.as_ref().map(S::span), &[BrokerRestart]),
        ("timeout", f.timeout.as_ref().map(S::span), &[BrokerRestart]),
        (
            "observer",
            f.observer.as_ref().map(S::span),
            &[SlowConsumer],
        ),
        ("delay", f.delay.as_ref().map(S::span), &[Network]),
        ("jitter", f.jitter.as_ref().map(S::span), &[Network]),
        ("drop", f.drop.as_ref().map(S::span), &[Network]),
        ("cut", f.cut.as_ref().map(S::span), &[Network]),
        ("blackhole", f.blackhole.as_ref().map(S::span), &[Network]),
        ("bandwidth", f.bandwidth.as_ref().map(S::span), &[Network]),
        // A disconnect happens at once; its devices come back by their backoff.
        (
            "for",
            f.length.as_ref().map(S::span),
            &[Churn, BrokerRestart, Network, SlowConsumer],
        ),
    ];
    for (name, span, kinds) in given {
        if let Some(span) = span.filter(|_| !kinds.contains(&kind)) {
            return Err(cx.err(
                span,
                format!("fault[{i}].{name}"),
                format!("applies to {} faults only", names(kinds)),
            ));
        }
    }
    Ok(())
}

/// "disconnect, churn".
fn names(kinds: &[FaultType]) -> String {
    let names: Vec<&str> = kinds.iter().map(|k| k.name()).collect();
    names.join(", ")
}

/// The group a fault names.
fn group<'g>(cx: &Ctx, i: usize, f: &RawFault, groups: &'g [DeviceGroup]) -> R<&'g DeviceGroup> {
    let (field, name) = (format!("fault[{i}].group"), &f.group);
    named(cx, (f, field, name), groups, |g| &g.name, "device group")
}

fn disconnect(cx: &Ctx, i: usize, f: &RawFault, groups: &[DeviceGroup]) -> R<FaultKind> {
    let g = group(cx, i, f, groups)?;
    let devices = match (&f.share, &f.count) {
        (Some(_), Some(c)) => {
            return Err(cx.err(
                c.span(),
                format!("fault[{i}].count"),
                "give share or count, not both",
            ))
        }
        (Some(s), None) => {
            let share = *s.get_ref();
            if !(share > 0.0 && share <= 1.0) {
                return Err(cx.err(
                    s.span(),
                    format!("fault[{i}].share"),
                    format!("{share} is not a share; expected more than 0 and at most 1"),
                ));
            }
            ((f64::from(g.count) * share).round() as u32).max(1)
        }
        (None, Some(c)) => cx.count(c, &format!("fault[{i}].count"), 1, i64::from(g.count))?,
        (None, None) => g.count,
    };
    Ok(FaultKind::Disconnect {
        group: g.name.clone(),
        devices,
    })
}

fn churn(cx: &Ctx, i: usize, f: &RawFault, groups: &[DeviceGroup]) -> R<FaultKind> {
    let g = group(cx, i, f, groups)?;
    let Some(r) = &f.rate else {
        return Err(cx.err(
            f.kind.span(),
            format!("fault[{i}].rate"),
            "churn needs rate, the drops per second over the group",
        ));
    };
    let rate = *r.get_ref();
    let most = f64::from(g.count) * 10.0;
    if !(rate > 0.0 && rate <= most) {
        return Err(cx.err(
            r.span(),
            format!("fault[{i}].rate"),
            format!(
                "{rate} drops per second: expected more than 0 and at most {most} (ten per \
                 device of the group per second)"
            ),
        ));
    }
    Ok(FaultKind::Churn {
        group: g.name.clone(),
        rate,
    })
}

fn broker_restart(cx: &Ctx, i: usize, f: &RawFault, broker: &BrokerTarget) -> R<FaultKind> {
    let field = |name: &str| format!("fault[{i}].{name}");
    let timeout = match &f.timeout {
        Some(t) => cx.positive_duration(t, &field("timeout"))?,
        None => DEFAULT_TIMEOUT,
    };
    match (broker, &f.command) {
        (BrokerTarget::Embedded(e), None) if e.child_process => Ok(FaultKind::BrokerRestart {
            command: None,
            timeout,
        }),
        (BrokerTarget::Embedded(_), None) => Err(cx.err(
            f.kind.span(),
            field("kind"),
            "the in-process broker cannot be restarted (rumqttd 0.20 cannot close its listeners \
             and start them again in one process); set [broker] process = \"child\" so that \
             fleetbench can kill it and start it again",
        )),
        (BrokerTarget::Embedded(_), Some(c)) => Err(cx.err(
            c.span(),
            field("command"),
            "restarts an external broker; the embedded broker is restarted by fleetbench (with \
             [broker] process = \"child\")",
        )),
        (BrokerTarget::External(_), None) => Err(cx.err(
            f.kind.span(),
            field("command"),
            "an external broker is restarted by a command fleetbench runs: add command = \
             [\"systemctl\", \"restart\", \"mosquitto\"] (or your own)",
        )),
        (BrokerTarget::External(_), Some(c)) => {
            if c.get_ref().first().is_none_or(|p| p.trim().is_empty()) {
                return Err(cx.err(
                    c.span(),
                    field("command"),
                    "is empty; expected the program and its arguments",
                ));
            }
            if let Some(l) = &f.length {
                return Err(cx.err(
                    l.span(),
                    field("for"),
                    "an external broker is down as long as its command takes; leave \"for\" out",
                ));
            }
            Ok(FaultKind::BrokerRestart {
                command: Some(c.get_ref().clone()),
                timeout,
            })
        }
    }
}

fn network(cx: &Ctx, i: usize, f: &RawFault, broker: &BrokerTarget) -> R<FaultKind> {
    let field = |name: &str| format!("fault[{i}].{name}");
    if let BrokerTarget::External(x) = broker {
        if x.scheme != crate::model::Scheme::Mqtt {
            return Err(cx.err(
                f.kind.span(),
                field("kind"),
                format!(
                    "the network proxy carries MQTT over plain TCP, and the broker is reached by \
                     {}://: it cannot see into that transport (TLS or WebSocket)",
                    x.scheme.as_str()
                ),
            ));
        }
    }
    let duration = |v: &Option<S<String>>, name: &str| {
        v.as_ref()
            .map(|d| cx.duration(d, &field(name)))
            .transpose()
            .map(Option::unwrap_or_default)
    };
    let (delay, jitter) = (duration(&f.delay, "delay")?, duration(&f.jitter, "jitter")?);
    if let Some(j) = f.jitter.as_ref().filter(|_| jitter > delay) {
        return Err(cx.err(
            j.span(),
            field("jitter"),
            "is larger than delay: a packet cannot arrive before it was sent",
        ));
    }
    let drop = match &f.drop {
        Some(d) if !(0.0..=1.0).contains(d.get_ref()) => {
            return Err(cx.err(
                d.span(),
                field("drop"),
                format!("{} is not a share; expected 0 to 1", d.get_ref()),
            ))
        }
        Some(d) => *d.get_ref(),
        None => 0.0,
    };
    let cut = f.cut.as_ref().is_some_and(|c| *c.get_ref());
    let blackhole = f.blackhole.as_ref().is_some_and(|b| *b.get_ref());
    let bandwidth = match &f.bandwidth {
        Some(b) => Some(
            bytes_per_s(b.get_ref()).map_err(|why| cx.err(b.span(), field("bandwidth"), why))?,
        ),
        None => None,
    };
    if delay.is_zero() && drop == 0.0 && !cut && !blackhole && bandwidth.is_none() {
        return Err(cx.err(
            f.kind.span(),
            field("kind"),
            "does nothing: give delay, drop, bandwidth, cut = true or blackhole = true",
        ));
    }
    if cut && blackhole {
        return Err(cx.err(
            f.kind.span(),
            field("cut"),
            "cut and blackhole exclude each other (a cut closes connections, a blackhole keeps \
             them open): use two faults",
        ));
    }
    Ok(FaultKind::Network(crate::model::NetworkFault {
        delay,
        jitter,
        drop,
        cut,
        blackhole,
        bandwidth_bytes_per_s: bandwidth,
    }))
}

/// A rate of a link ("64 kbit/s", "1.5 Mbit/s", "10 kB/s") in bytes per second. Prefixes are
/// decimal, as links are sold; bits are spelt out ("kbit/s", or "kbps"), bytes are "B".
fn bytes_per_s(text: &str) -> Result<f64, String> {
    const BITS: [(&str, &str, f64); 4] = [
        ("bit/s", "bps", 1.0),
        ("kbit/s", "kbps", 1e3),
        ("mbit/s", "mbps", 1e6),
        ("gbit/s", "gbps", 1e9),
    ];
    const BYTES: [(&str, f64); 4] = [("B/s", 1.0), ("kB/s", 1e3), ("MB/s", 1e6), ("GB/s", 1e9)];
    let expected = "expected a rate such as \"64 kbit/s\", \"1 Mbit/s\" or \"10 kB/s\"";
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = (t[..split].trim(), t[split..].trim());
    let value: f64 = number
        .parse()
        .map_err(|_| format!("\"{text}\" has no number; {expected}"))?;
    let bits = BITS
        .iter()
        .find(|(long, short, _)| {
            unit.eq_ignore_ascii_case(long) || unit.eq_ignore_ascii_case(short)
        })
        .map(|(_, _, f)| f / 8.0);
    let bytes = BYTES.iter().find(|(u, _)| unit == *u).map(|(_, f)| *f);
    let per = bits.or(bytes).ok_or_else(|| {
        format!(
            "\"{unit}\" is not a unit of rate (bits are \"kbit/s\", bytes \"kB/s\"); {expected}"
        )
    })?;
    let rate = value * per;
    // Below 100 bytes a second a CONNECT alone takes seconds: almost surely a typo.
    if !(100.0..=1e11).contains(&rate) {
        return Err(format!(
            "\"{text}\" is {rate} bytes per second; expected 100 B/s to 100 GB/s"
        ));
    }
    Ok(rate)
}

fn slow_consumer(cx: &Ctx, i: usize, f: &RawFault, observers: &[ObserverGroup]) -> R<FaultKind> {
    let field = format!("fault[{i}].observer");
    let o = named(
        cx,
        (f, field, &f.observer),
        observers,
        |o| &o.name,
        "observer",
    )?;
    Ok(FaultKind::SlowConsumer {
        observer: o.name.clone(),
    })
}

/// The item of `items` a fault names in `field` (`what`: "device group", "observer"), or an
/// error that says what there is.
fn named<'a, T>(
    cx: &Ctx,
    (f, field, name): (&RawFault, String, &Option<S<String>>),
    items: &'a [T],
    name_of: impl Fn(&T) -> &str,
    what: &str,
) -> R<&'a T> {
    let Some(name) = name else {
        let key = field.rsplit('.').next().unwrap_or("name");
        return Err(cx.err(
            f.kind.span(),
            field.clone(),
            format!("names no {what}; add {key} = \"...\""),
        ));
    };
    items
        .iter()
        .find(|t| name_of(t) == name.get_ref())
        .ok_or_else(|| {
            let known: Vec<&str> = items.iter().map(&name_of).collect();
            cx.err(
                name.span(),
                field,
                format!(
                    "no {what} is called {:?}; expected one of {known:?}",
                    name.get_ref()
                ),
            )
        })
}

#[cfg(test)]
mod bandwidth_tests {
    use super::bytes_per_s;

    #[test]
    fn rates_read_in_bits_or_bytes_and_nonsense_is_named() {
        assert_eq!(bytes_per_s("64 kbit/s"), Ok(8_000.0));
        assert_eq!(bytes_per_s("1Mbps"), Ok(125_000.0));
        assert_eq!(bytes_per_s("10 kB/s"), Ok(10_000.0));
        let e = bytes_per_s("10 kb/s").expect_err("kb/s is ambiguous");
        assert!(e.contains("\"kb/s\" is not a unit"), "{e}");
        let e = bytes_per_s("fast").expect_err("no number");
        assert!(e.contains("has no number"), "{e}");
        let e = bytes_per_s("1 bit/s").expect_err("too slow");
        assert!(e.contains("expected 100 B/s"), "{e}");
    }
}
