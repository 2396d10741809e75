//! The monitor's charts: rates and latency over time, and the latency distribution.

use fleetbench_metrics::aggregate::Snapshot;
use fleetbench_metrics::hist::LatencySummary;
use ratatui::layout::{Direction, Rect};
use ratatui::style::{Color, Style};
use ratatui::symbols;
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Axis, Bar, BarChart, BarGroup, Block, Borders, Chart, Dataset, GraphType, Paragraph,
};
use ratatui::Frame;

use crate::faults::FaultMark;
use crate::history::History;
use crate::theme::{block, Series, ACCENT, BAD, DIM, GOOD, WARN};

/// A line chart over elapsed time, with its series named (and coloured) in the title: the
/// legend ratatui would draw does not fit small terminals. The y axis runs to `y_max`,
/// labelled by `y_label`; `faults` are vertical lines at the edges of the faults' windows.
fn time_chart<'a>(
    title: &'a str,
    series: [Series<'a>; 2],
    x: [f64; 2],
    (y_max, y_label): (f64, fn(f64) -> String),
    faults: &'a [[(f64, f64); 2]],
) -> Chart<'a> {
    let mut spans = vec![Span::styled(
        format!(" {title}: "),
        Style::default().fg(ACCENT).bold(),
    )];
    let mut datasets = Vec::new();
    for (name, color, data) in series {
        spans.push(Span::styled(format!("{name} "), Style::default().fg(color)));
        datasets.push(line(color, data));
    }
    if !faults.is_empty() {
        spans.push(Span::styled("│ fault ", Style::default().fg(BAD)));
        datasets.extend(faults.iter().map(|edge| line(BAD, edge)));
    }
    Chart::new(datasets)
        .block(
            Block::default()
                .borders(Borders::ALL)
                .border_style(Style::default().fg(DIM))
                .title(Line::from(spans)),
        )
        .x_axis(
            Axis::default()
                .style(Style::default().fg(DIM))
                .bounds(x)
                .labels([format!("{:.0}s", x[0]), format!("{:.0}s", x[1])]),
        )
        .y_axis(
            Axis::default()
                .style(Style::default().fg(DIM))
                .bounds([0.0, y_max])
                .labels(["0".to_string(), y_label(y_max)]),
        )
}

fn line<'a>(color: Color, data: &'a [(f64, f64)]) -> Dataset<'a> {
    Dataset::default()
        .marker(symbols::Marker::Braille)
        .graph_type(GraphType::Line)
        .style(Style::default().fg(color))
        .data(data)
}

/// The top of a chart's y axis: 15% above the highest point of `series`, at least `floor`.
fn y_top(series: &[Series<'_>], floor: f64) -> f64 {
    series
        .iter()
        .flat_map(|(_, _, data)| data.iter())
        .map(|p| p.1)
        .fold(floor, f64::max)
        * 1.15
}

/// Vertical lines from 0 to `y_max` at the edges of the faults' windows within `span`.
fn fault_lines(
    faults: &[FaultMark],
    history: &History,
    span: [f64; 2],
    y_max: f64,
) -> Vec<[(f64, f64); 2]> {
    let ramp_at = history.latest().and_then(|s| s.ramp_at);
    crate::faults::edges(faults, ramp_at, span)
        .into_iter()
        .map(|x| [(x, 0.0), (x, y_max)])
        .collect()
}

/// The elapsed-time span of the history, at least one second wide.
fn time_span(history: &History) -> [f64; 2] {
    let x_min = history
        .iter()
        .next()
        .map_or(0.0, |s| s.elapsed.as_secs_f64());
    let x_max = history
        .latest()
        .map_or(1.0, |s| s.elapsed.as_secs_f64())
        .max(x_min + 1.0);
    [x_min, x_max]
}

pub(crate) fn rates_chart(frame: &mut Frame, area: Rect, history: &History, faults: &[FaultMark]) {
    let points = |f: fn(&Snapshot) -> f64| -> Vec<(f64, f64)> {
        history
            .iter()
            .map(|s| (s.elapsed.as_secs_f64(), f(s)))
            .collect()
    };
    let publish = points(|s| s.publish_rate);
    let deliver = points(|s| s.deliver_rate);
    let series = [
        ("publish/s", ACCENT, publish.as_slice()),
        ("deliver/s", GOOD, deliver.as_slice()),
    ];
    let (span, y_max) = (time_span(history), y_top(&series, 1.0));
    let edges = fault_lines(faults, history, span, y_max);
    let chart = time_chart(
        "Rates",
        series,
        span,
        (y_max, |y| format!("{y:.0}")),
        &edges,
    );
    frame.render_widget(chart, area);
}

/// p99 latency per tick over time, from intended and from send (shown on tall terminals).
pub(crate) fn latency_chart(
    frame: &mut Frame,
    area: Rect,
    history: &History,
    faults: &[FaultMark],
) {
    let points = |f: fn(&Snapshot) -> &LatencySummary| -> Vec<(f64, f64)> {
        history
            .iter()
            .filter(|s| f(s).count > 0)
            .map(|s| (s.elapsed.as_secs_f64(), f(s).p99_us as f64 / 1e3))
            .collect()
    };
    let intended = points(|s| &s.interval_from_intended);
    let send = points(|s| &s.interval_from_send);
    let series = [
        ("from intended", WARN, intended.as_slice()),
        ("from send", GOOD, send.as_slice()),
    ];
    let (span, y_max) = (time_span(history), y_top(&series, 0.1));
    let edges = fault_lines(faults, history, span, y_max);
    let chart = time_chart(
        "p99 per tick",
        series,
        span,
        (y_max, |y| format!("{y:.1}ms")),
        &edges,
    );
    frame.render_widget(chart, area);
}

pub(crate) fn distribution(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let outer = block("Latency from intended, run");
    if s.distribution.is_empty() {
        frame.render_widget(
            Paragraph::new("no deliveries yet")
                .style(Style::default().fg(DIM))
                .block(outer),
            area,
        );
        return;
    }
    let bars: Vec<Bar> = s
        .distribution
        .iter()
        .map(|(q, us)| {
            let label = match *q {
                x if x >= 1.0 => "max".to_string(),
                x => format!("p{}", trim_quantile(x * 100.0)),
            };
            Bar::default()
                .value(*us)
                .label(Line::from(label))
                .text_value(short_us(*us))
                .style(Style::default().fg(if *q >= 0.99 { WARN } else { GOOD }))
                .value_style(Style::default().fg(Color::Black).bg(if *q >= 0.99 {
                    WARN
                } else {
                    GOOD
                }))
        })
        .collect();
    let chart = BarChart::default()
        .block(outer)
        .direction(Direction::Horizontal)
        .bar_width(1)
        .bar_gap(0)
        .data(BarGroup::default().bars(&bars));
    frame.render_widget(chart, area);
}

/// A latency in at most 6 characters: "850us", "1.20ms", "10.2ms", "102ms", "1.50s".
pub(crate) fn short_us(us: u64) -> String {
    match us {
        0..=999 => format!("{us}us"),
        1_000..=9_999 => format!("{:.2}ms", us as f64 / 1e3),
        10_000..=99_999 => format!("{:.1}ms", us as f64 / 1e3),
        100_000..=999_999 => format!("{:.0}ms", us as f64 / 1e3),
        _ => format!("{:.2}s", us as f64 / 1e6),
    }
}

fn trim_quantile(pct: f64) -> String {
    let text = format!("{pct:.2}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}
