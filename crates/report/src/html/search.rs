//! The HTML page of one or more capacity searches: the knee curves (offered against delivered,
//! offered against p50/p99/p99.9 from intended) of every search overlaid, with each answer and
//! knee marked, and each search's table of steps. Drawn as inline SVG: the page runs no script
//! and loads nothing.

use std::fmt::Write;

use super::{escape, HtmlError};
use crate::search::{num, SearchReport};

const COLOURS: [&str; 6] = [
    "#1f6feb", "#d1242f", "#1a7f37", "#9a6700", "#8250df", "#57606a",
];
const W: f64 = 640.0;
const H: f64 = 320.0;
const PAD: f64 = 56.0;

/// One line of a chart.
struct Line<'a> {
    name: String,
    colour: &'a str,
    dash: &'a str,
    points: Vec<(f64, f64)>,
}

/// The page of `searches` (two or more are overlaid: two brokers, before and after).
pub fn render(searches: &[&SearchReport]) -> Result<String, HtmlError> {
    let title = match searches {
        [one] => format!("fleetbench search {} on {}", one.scenario, one.broker),
        _ => format!("fleetbench: {} searches", searches.len()),
    };
    Ok(page(&title, "", searches))
}

/// A comparison of brokers as one page: `title`, the table (`header` and `rows`, one per
/// broker) with `notes` under it, then every search's knee curves overlaid and each search's
/// steps. Every text is escaped here.
pub fn render_comparison(
    title: &str,
    header: &[String],
    rows: &[Vec<String>],
    notes: &[String],
    searches: &[&SearchReport],
) -> Result<String, HtmlError> {
    let mut intro = String::from("<table><tr>");
    for h in header {
        let _ = write!(intro, "<th>{}</th>", escape(h));
    }
    intro.push_str("</tr>");
    for row in rows {
        intro.push_str("<tr>");
        for cell in row {
            let _ = write!(intro, "<td class=\"l\">{}</td>", escape(cell));
        }
        intro.push_str("</tr>");
    }
    intro.push_str("</table>");
    if !notes.is_empty() {
        intro.push_str("<ul>");
        for n in notes {
            let _ = write!(intro, "<li>{}</li>", escape(n));
        }
        intro.push_str("</ul>");
    }
    Ok(page(title, &intro, searches))
}

/// The page: its title, `intro` (HTML made here), the overlaid curves and each search's steps.
fn page(title: &str, intro: &str, searches: &[&SearchReport]) -> String {
    let mut body = String::new();
    let _ = write!(body, "<h1>{}</h1>{intro}", escape(title));
    for (i, s) in searches.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let _ = write!(
            body,
            "<p><b style=\"color:{colour}\">{}</b> on {}: {}</p>",
            escape(&s.scenario),
            escape(&s.broker),
            escape(&s.conclusion)
        );
    }
    if !searches.is_empty() {
        body.push_str(&delivered_chart(searches));
        body.push_str(&latency_chart(searches));
    }
    for s in searches {
        body.push_str(&table(s));
    }
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\
         <title>{}</title><style>{STYLE}</style></head><body>{body}\
         <footer>Made by fleetbench. This page is self-contained: it loads nothing.</footer></body></html>",
        escape(title)
    )
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:2em;color:#1f2328}\
    table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #d0d7de;padding:2px 6px;\
    text-align:right}th{background:#f6f8fa}td.l{text-align:left}tr.fail td{color:#d1242f}\
    svg{display:block;margin:1em 0}text{font:11px system-ui,sans-serif}";

fn delivered_chart(searches: &[&SearchReport]) -> String {
    let mut lines = Vec::new();
    for (i, s) in searches.iter().enumerate() {
        let curve = s.curve();
        let pts = |f: fn(&crate::search::SearchStep) -> f64| {
            curve
                .iter()
                .map(|p| (p.offered_per_s, f(p)))
                .collect::<Vec<_>>()
        };
        lines.push(Line {
            name: format!("{} delivered/s", s.broker),
            colour: COLOURS[i % COLOURS.len()],
            dash: "",
            points: pts(|p| p.delivered_per_s),
        });
        lines.push(Line {
            name: format!("{} deliveries due/s", s.broker),
            colour: COLOURS[i % COLOURS.len()],
            dash: "4 3",
            points: pts(|p| p.due_per_s),
        });
    }
    chart(
        "Offered against delivered (msg/s)",
        "offered msg/s",
        false,
        &lines,
        &marks(searches),
    )
}

fn latency_chart(searches: &[&SearchReport]) -> String {
    let mut lines = Vec::new();
    for (i, s) in searches.iter().enumerate() {
        let curve = s.curve();
        for (k, (label, dash)) in [("p50", "2 3"), ("p99", ""), ("p99.9", "6 3")]
            .iter()
            .enumerate()
        {
            lines.push(Line {
                name: format!("{} {label} from intended", s.broker),
                colour: COLOURS[i % COLOURS.len()],
                dash,
                points: (curve.iter())
                    .map(|p| {
                        (
                            p.offered_per_s,
                            p.from_intended_us[k].max(1) as f64 / 1000.0,
                        )
                    })
                    .collect(),
            });
        }
    }
    chart(
        "Offered against latency from intended (ms, log scale)",
        "offered msg/s",
        true,
        &lines,
        &marks(searches),
    )
}

/// The answers and knees, at the offered rate of their steps.
fn marks(searches: &[&SearchReport]) -> Vec<(f64, String, &'static str)> {
    let mut out = Vec::new();
    for (i, s) in searches.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let at = |v: f64| {
            s.steps
                .iter()
                .find(|p| p.value == v)
                .map(|p| p.offered_per_s)
        };
        if let Some(x) = s.answer.and_then(at) {
            out.push((
                x,
                format!("answer {}", num(s.answer.unwrap_or_default())),
                colour,
            ));
        }
        if let Some(x) = s.knee.and_then(at) {
            out.push((
                x,
                format!("knee {}", num(s.knee.unwrap_or_default())),
                colour,
            ));
        }
    }
    out
}

fn chart(
    title: &str,
    x_label: &str,
    log_y: bool,
    lines: &[Line],
    marks: &[(f64, String, &str)],
) -> String {
    let all = lines.iter().flat_map(|l| l.points.iter());
    let (mut x0, mut x1, mut y0, mut y1) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
    for (x, y) in all {
        (x0, x1, y0, y1) = (x0.min(*x), x1.max(*x), y0.min(*y), y1.max(*y));
    }
    if x0 > x1 {
        return format!("<h2>{}</h2><p>No steps to draw.</p>", escape(title));
    }
    let ty = |y: f64| if log_y { y.max(1e-3).log10() } else { y };
    let (y0, y1) = if log_y { (ty(y0), ty(y1)) } else { (0.0, y1) };
    let (x0, y1) = (x0.min(0.0), if y1 > y0 { y1 } else { y0 + 1.0 });
    let x1 = if x1 > x0 { x1 } else { x0 + 1.0 };
    let px = |x: f64| PAD + (x - x0) / (x1 - x0) * (W - 2.0 * PAD);
    let py = |y: f64| H - PAD - (ty(y) - y0) / (y1 - y0) * (H - 2.0 * PAD);
    let mut svg = format!(
        "<h2>{}</h2><svg width=\"{W}\" height=\"{}\" role=\"img\" aria-label=\"{}\">",
        escape(title),
        H + 18.0 * lines.len() as f64,
        escape(title)
    );
    let _ = write!(
        svg,
        "<line x1=\"{PAD}\" y1=\"{0}\" x2=\"{1}\" y2=\"{0}\" stroke=\"#888\"/>\
         <line x1=\"{PAD}\" y1=\"{PAD}\" x2=\"{PAD}\" y2=\"{0}\" stroke=\"#888\"/>\
         <text x=\"{1}\" y=\"{2}\" text-anchor=\"end\">{3} (0 to {4})</text>\
         <text x=\"4\" y=\"{5}\">{6}</text><text x=\"4\" y=\"{7}\">{8}</text>",
        H - PAD,
        W - PAD,
        H - PAD + 16.0,
        escape(x_label),
        num(x1),
        PAD,
        num(if log_y { 10f64.powf(y1) } else { y1 }),
        H - PAD,
        num(if log_y { 10f64.powf(y0) } else { y0 }),
    );
    for (x, label, colour) in marks {
        let _ = write!(
            svg,
            "<line x1=\"{0}\" y1=\"{PAD}\" x2=\"{0}\" y2=\"{1}\" stroke=\"{colour}\" stroke-dasharray=\"1 3\"/>\
             <text x=\"{0}\" y=\"{2}\" fill=\"{colour}\">{3}</text>",
            px(*x),
            H - PAD,
            PAD - 6.0,
            escape(label)
        );
    }
    for (i, l) in lines.iter().enumerate() {
        let pts: Vec<String> = (l.points.iter())
            .map(|(x, y)| format!("{:.1},{:.1}", px(*x), py(*y)))
            .collect();
        let _ = write!(
            svg,
            "<polyline fill=\"none\" stroke=\"{}\" stroke-width=\"1.5\" stroke-dasharray=\"{}\" points=\"{}\"/>\
             <text x=\"{PAD}\" y=\"{}\" fill=\"{}\">{}</text>",
            l.colour,
            l.dash,
            pts.join(" "),
            H + 14.0 + 18.0 * i as f64,
            l.colour,
            escape(&format!("{} {}", if l.dash.is_empty() { "----" } else { "- - -" }, l.name))
        );
    }
    svg.push_str("</svg>");
    svg
}

fn table(s: &SearchReport) -> String {
    let mut t = format!(
        "<h2>{} on {}: every step</h2><table><tr><th>#</th><th>{}</th><th>step</th><th>devices</th>\
         <th>subscribers</th><th>offered/s</th><th>delivered/s</th><th>lost</th><th>backlog growth</th>\
         <th>p50/p99/p99.9 from intended</th><th>from send</th><th>generator cores</th><th>late</th>\
         <th>broker cores</th><th class=\"l\">verdict</th></tr>",
        escape(&s.scenario),
        escape(&s.broker),
        escape(&s.unit)
    );
    let ms = |v: [u64; 3]| v.map(fleetbench_metrics::fmt::fmt_us).join(" / ");
    for (i, p) in s.steps.iter().enumerate() {
        let verdict = if p.passed {
            "pass".to_string()
        } else {
            format!(
                "FAIL{} {}",
                if p.generator_limited {
                    " (generator)"
                } else {
                    ""
                },
                p.reasons.join("; ")
            )
        };
        let _ = write!(
            t,
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.0}</td>\
             <td>{:.0}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{:.2}</td><td>{:.1}%</td>\
             <td>{}</td><td class=\"l\">{}</td></tr>",
            if p.passed { "pass" } else { "fail" },
            i + 1,
            num(p.value),
            p.purpose,
            p.devices,
            p.subscribers,
            p.offered_per_s,
            p.delivered_per_s,
            p.lost,
            p.in_flight_growth,
            ms(p.from_intended_us),
            ms(p.from_send_us),
            p.generator_cores,
            p.late_share * 100.0,
            p.broker_cores.map_or("-".into(), |c| format!("{c:.2}")),
            escape(&verdict)
        );
    }
    t.push_str("</table>");
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comparison_shows_its_table_escaped_even_without_searches() {
        let header = vec!["broker".to_string(), "connect".to_string()];
        let rows = vec![vec![
            "evil<script>".to_string(),
            "not compared: a & b".to_string(),
        ]];
        let notes = vec!["evil, qos2: granted QoS 1 <b>".to_string()];
        let page = render_comparison("brokers", &header, &rows, &notes, &[]).expect("page");
        assert!(page.contains("<th>connect</th>"));
        assert!(page.contains("evil&lt;script&gt;") && !page.contains("evil<script>"));
        assert!(page.contains("not compared: a &amp; b"));
        assert!(page.contains("<li>evil, qos2: granted QoS 1 &lt;b&gt;</li>"));
        assert!(!page.contains("<svg"), "no curves without a search");
    }
}
