//! The human summary printed at the end of a run: fits 100 columns.

use std::fmt::Write;

use crate::report::{Report, Verdict};
use fleetbench_metrics::fmt::{fmt_count, fmt_us};
use fleetbench_metrics::hist::LatencySummary;

fn latency_row(out: &mut String, name: &str, l: &LatencySummary) {
    if l.count == 0 {
        let _ = writeln!(out, "  {name:<15} {:>9}", "-");
        return;
    }
    let _ = writeln!(
        out,
        "  {name:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        fmt_us(l.p50_us),
        fmt_us(l.p90_us),
        fmt_us(l.p99_us),
        fmt_us(l.p999_us),
        fmt_us(l.max_us),
        fmt_count(l.count)
    );
}

pub fn render(r: &Report) -> String {
    let mut out = String::new();
    header(&mut out, r);
    ledger(&mut out, r);
    health(&mut out, r);
    resources(&mut out, r);
    latency(&mut out, r);
    shard_table(&mut out, r);
    fault_table(&mut out, r);
    behaviour_lines(&mut out, &r.behaviour);
    phases(&mut out, r);
    judgement(&mut out, r);
    out
}

/// The verdict, the broker and how long the run took.
fn header(out: &mut String, r: &Report) {
    let name = r.scenario_name();
    let _ = writeln!(out, "fleetbench {name}: {}", r.verdict.label());
    let shard = match r.run.shard.as_str() {
        "0/1" => String::new(),
        s if s.contains('/') => format!("  shard {s}"),
        merged => format!("  {merged}"),
    };
    let _ = writeln!(
        out,
        "  broker {}{shard}  ran {:.1}s (publish {:.1}s, drain {:.1}s)",
        r.run.broker, r.run.elapsed_s, r.run.publish_window_s, r.run.drain_s
    );
    if let Some(s) = &r.run.start {
        let _ = writeln!(
            out,
            "  common start {}, started {:.2}s after it",
            s.at, s.lateness_s
        );
    }
}

/// What each fault cost: connections cut, devices connected before and at the lowest, time
/// until as many were connected again, the peak reconnect rate, connection errors, and time
/// until the delivery rate was back.
fn fault_table(out: &mut String, r: &Report) {
    if r.faults.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:<30} {:>7} {:>8} {:>7} {:>9} {:>9} {:>8} {:>9}",
        "fault", "cuts", "before", "lowest", "recovery", "peak c/s", "errors", "rate back"
    );
    let secs = |s: Option<f64>| s.map_or_else(|| "never".to_string(), |s| format!("{s:.2}s"));
    for f in &r.faults {
        let _ = writeln!(
            out,
            "  {:<30} {:>7} {:>8} {:>7} {:>9} {:>9.0} {:>8} {:>9}",
            f.fault,
            fmt_count(f.cuts),
            fmt_count(f.connected_before),
            fmt_count(f.lowest_connected),
            secs(f.recovery_s),
            f.peak_reconnects_per_s,
            fmt_count(f.connection_errors),
            secs(f.delivery_recovery_s),
        );
        if let (Some(during), Some(after)) = (f.p99_during_us, f.p99_after_us) {
            let _ = writeln!(
                out,
                "    p99 from intended {} during, {} after",
                fmt_us(during),
                fmt_us(after)
            );
        }
        let _ = writeln!(
            out,
            "    lost {} during, {} after; duplicated {} during, {} after",
            fmt_count(f.lost_during),
            fmt_count(f.lost_after),
            fmt_count(f.duplicates_during),
            fmt_count(f.duplicates_after),
        );
        if !f.connection_errors_by.is_empty() {
            let by: Vec<String> = (f.connection_errors_by.iter())
                .map(|(kind, n)| format!("{kind} {}", fmt_count(*n)))
                .collect();
            let _ = writeln!(out, "    connection errors: {}", by.join(", "));
        }
        if let Some(n) = f.dropped.filter(|n| *n > 0) {
            let _ = writeln!(out, "    dropped {} QoS 0 publishes", fmt_count(n));
        }
        if let Some(why) = &f.failed {
            let _ = writeln!(out, "    FAILED: {why}");
        } else if let (Some(what), Some(took)) = (&f.restart, f.restart_s) {
            let _ = writeln!(out, "    restart took {took:.2}s: {what}");
        }
    }
}

/// One row per shard of a merged sharded run: a slow, overloaded, failed or missing pod shows.
fn shard_table(out: &mut String, r: &Report) {
    if r.shards.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:<9} {:>12} {:>12} {:>9} {:>7} {:>6} {:>9} {:>7}  verdict",
        "shard", "sent", "delivered", "lost", "late%", "cpu", "rss MiB", "start"
    );
    for s in &r.shards {
        if !s.present {
            let _ = writeln!(out, "  {:<9} {:>12}  MISSING: no report", s.shard, "-");
            continue;
        }
        let start = s
            .start_lateness_s
            .map_or_else(|| "-".to_string(), |l| format!("{l:.2}s"));
        let verdict = match s.verdict {
            Some(v @ (Verdict::Pass | Verdict::Interrupted)) => v.label().to_string(),
            _ => format!("{} {}", Verdict::Fail.label(), s.failed.join(", ")),
        };
        let _ = writeln!(
            out,
            "  {:<9} {:>12} {:>12} {:>9} {:>7.2} {:>6.2} {:>9.0} {:>7}  {verdict}",
            s.shard,
            fmt_count(s.sent),
            fmt_count(s.delivered),
            fmt_count(s.lost),
            s.late_share * 100.0,
            s.generator_cpu_cores,
            s.peak_rss_bytes as f64 / f64::from(1u32 << 20),
            start,
        );
    }
}

/// Every message accounted for, and the rates.
fn ledger(out: &mut String, r: &Report) {
    let t = &r.totals;
    let pct = if t.expected == 0 {
        0.0
    } else {
        100.0 * t.delivered as f64 / t.expected as f64
    };
    let _ = writeln!(
        out,
        "  sent {}  expected {}  delivered {} ({pct:.2}%)",
        fmt_count(t.sent),
        fmt_count(t.expected),
        fmt_count(t.delivered)
    );
    if t.skipped > 0 {
        let _ = writeln!(
            out,
            "  skipped {}: due while their device was not connected (not sent, not expected)",
            fmt_count(t.skipped)
        );
    }
    let _ = writeln!(
        out,
        "  lost {}  in flight {}  duplicates {}  reordered {}  unexpected {}",
        fmt_count(t.lost),
        fmt_count(t.in_flight),
        fmt_count(t.duplicates),
        fmt_count(t.reordered),
        fmt_count(t.unexpected)
    );
    let _ = writeln!(
        out,
        "  throughput publish {:.1}/s  deliver {:.1}/s",
        r.throughput.publish_per_s, r.throughput.deliver_per_s,
    );
    let _ = writeln!(
        out,
        "  generator late sends {} (over {} ms: {})  max lag {}",
        fmt_count(r.generator.late_sends),
        crate::expect::BEHIND_MS,
        fmt_count(r.behind_sends()),
        fmt_us(r.generator.max_lag_us)
    );
}

/// Connections, and what went wrong with the broker.
fn health(out: &mut String, r: &Report) {
    if let Some(s) = r.timing.connect_all_s {
        let warmup = if r.run.warmup_s > 0.0 {
            format!("  warm-up {:.1}s not measured", r.run.warmup_s)
        } else {
            String::new()
        };
        let _ = writeln!(out, "  all devices connected in {s:.2}s{warmup}");
    } else {
        let _ = writeln!(
            out,
            "  {} devices never connected",
            fmt_count(u64::from(r.timing.never_connected))
        );
    }
    if r.timing.disconnected > 0 {
        let _ = writeln!(
            out,
            "  {} devices had lost their connection when publishing ended",
            fmt_count(u64::from(r.timing.disconnected))
        );
    }
    if let Some(g) = &r.run.broker_gone {
        let _ = writeln!(
            out,
            "  the broker went away at {:.1}s: no client connected for {:.1}s; the run ended early",
            g.since_s, g.waited_s
        );
    }
    if let Some(w) = r
        .broker_watch
        .as_ref()
        .filter(|w| w.panics > 0 || !w.restarts.is_empty())
    {
        let _ = writeln!(
            out,
            "  broker watch: rumqttd panicked {} times, {} wedged listeners restarted",
            fmt_count(w.panics),
            w.restarts.len()
        );
    }
}

/// What the run cost the machine.
fn resources(out: &mut String, r: &Report) {
    let c = &r.resources.cpu;
    let _ = writeln!(
        out,
        "  cpu generator {:.2}  broker {:.2}  other {:.2} cores   peak rss {:.0} MiB",
        c.generator,
        c.broker,
        c.other,
        r.resources.peak_rss_bytes as f64 / (1u64 << 20) as f64
    );
    if let Some(b) = &r.resources.broker_process {
        let _ = writeln!(
            out,
            "  broker process: cpu {:.2} cores  peak rss {:.0} MiB",
            b.cpu_cores,
            b.peak_rss_bytes as f64 / (1u64 << 20) as f64
        );
    }
}

/// The latency table.
fn latency(out: &mut String, r: &Report) {
    let _ = writeln!(
        out,
        "  {:<15} {:>9} {:>9} {:>9} {:>9} {:>9} {:>12}",
        "latency", "p50", "p90", "p99", "p99.9", "max", "count"
    );
    latency_row(out, "from intended", &r.latency.from_intended);
    latency_row(out, "from send", &r.latency.from_send);
    latency_row(out, "puback", &r.latency.puback);
    latency_row(out, "connect", &r.latency.connect);
    if let Some(c) = &r.behaviour.commands {
        latency_row(out, "command rtt", &c.round_trip);
    }
}

/// A row per load phase.
fn phases(out: &mut String, r: &Report) {
    if r.phases.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "  {:<15} {:>9} {:>9} {:>10} {:>10} {:>9} {:>9}",
        "phase", "rate", "sent", "publish/s", "delivered", "p50", "p99"
    );
    for p in &r.phases {
        let rate = if p.rate == p.rate_end {
            format!("x{}", trim_number(p.rate))
        } else {
            format!("x{}-{}", trim_number(p.rate), trim_number(p.rate_end))
        };
        let (p50, p99) = match p.from_intended.count {
            0 => ("-".to_string(), "-".to_string()),
            _ => (
                fmt_us(p.from_intended.p50_us),
                fmt_us(p.from_intended.p99_us),
            ),
        };
        let _ = writeln!(
            out,
            "  {:<15} {rate:>9} {:>9} {:>10.1} {:>10} {p50:>9} {p99:>9}",
            p.name,
            fmt_count(p.sent),
            p.publish_per_s,
            fmt_count(p.delivered),
        );
    }
}

/// The expectations, the errors and the findings.
fn judgement(out: &mut String, r: &Report) {
    let judged = r.verdict != Verdict::Interrupted;
    for e in &r.expectations {
        let _ = writeln!(
            out,
            "  {} {:<22} {:>14} {} {}",
            match (judged, e.ok) {
                (false, _) => "--  ",
                (true, true) => "ok  ",
                (true, false) => Verdict::Fail.label(),
            },
            e.name,
            trim_number(e.observed),
            e.comparison,
            trim_number(e.limit)
        );
    }
    for (kind, g) in &r.errors {
        let head = format!("  error {kind}: {} (latest: ", fmt_count(g.count));
        let room = 99usize.saturating_sub(head.chars().count()).max(20);
        let latest: String = g.latest.chars().take(room).collect();
        let _ = writeln!(out, "{head}{latest})");
    }
    for f in &r.findings {
        for (i, line) in wrap(f, 94).iter().enumerate() {
            let lead = if i == 0 { "  ! " } else { "    " };
            let _ = writeln!(out, "{lead}{line}");
        }
    }
}

/// One line per behaviour the scenario uses.
fn behaviour_lines(out: &mut String, b: &fleetbench_metrics::behaviour::Behaviour) {
    let n = fmt_count;
    if let Some(s) = &b.status {
        let _ = writeln!(
            out,
            "  status    {} devices  heard {} of {}  missing {}  late observers {} (retained {})",
            n(s.devices),
            n(s.received),
            n(s.expected),
            n(s.missing),
            n(s.retained_expected),
            n(s.retained_expected.saturating_sub(s.not_retained)),
        );
    }
    if let Some(w) = &b.wills {
        let _ = writeln!(
            out,
            "  wills     {} devices dropped  heard {} of {}  missing {}  unexpected {}",
            n(w.dropped),
            n(w.received),
            n(w.expected),
            n(w.missing),
            n(w.unexpected),
        );
    }
    if let Some(s) = &b.sessions {
        let _ = writeln!(
            out,
            "  sessions  {} returns  resumed {}  lost {}",
            n(s.returns),
            n(s.resumed),
            n(s.lost),
        );
    }
    if let Some(c) = &b.commands {
        let _ = writeln!(
            out,
            "  commands  sent {}  answered {}  unanswered {}  duplicates {}  (round trip from \
             the intended send time, open loop)",
            n(c.sent),
            n(c.answered),
            n(c.unanswered),
            n(c.duplicates),
        );
    }
    if let Some(m) = &b.mqtt5 {
        let _ = writeln!(
            out,
            "  mqtt5     user properties missing {} of {}  expiry missing {} of {}  delivered \
             after expiry {}  sent by alias alone {}  aliases refused {}",
            n(m.user_properties_missing),
            n(m.user_properties_expected),
            n(m.expiry_missing),
            n(m.expiry_expected),
            n(m.delivered_after_expiry),
            n(m.sent_alias_only),
            n(m.aliases_refused),
        );
    }
}

/// A number with as many decimals as it needs, up to six: 1, 0.5, 0.99995.
fn trim_number(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let text = format!("{v:.6}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines = vec![String::new()];
    for word in text.split_whitespace() {
        let last = lines.last_mut().map_or(0, |l| l.len());
        if last > 0 && last + 1 + word.len() > width {
            lines.push(String::new());
        }
        if let Some(l) = lines.last_mut() {
            if !l.is_empty() {
                l.push(' ');
            }
            l.push_str(word);
        }
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_and_separators() {
        assert_eq!(fmt_us(850), "850us");
        assert_eq!(fmt_us(1_240), "1.24ms");
        assert_eq!(fmt_us(3_500_000), "3.50s");
        assert_eq!(fmt_count(1_234_567), "1,234,567");
        assert_eq!(fmt_count(12), "12");
    }

    #[test]
    fn wraps_long_findings() {
        let w = wrap(&"word ".repeat(50), 20);
        assert!(w.iter().all(|l| l.len() <= 20));
        assert_eq!(w.join(" ").split(' ').count(), 50);
    }
}
