//! One frame of the monitor, drawn from the history of snapshots. Pure: no clock, no IO.

use std::time::Duration;

use fleetbench_metrics::aggregate::{Snapshot, Stage};
use fleetbench_metrics::fmt::{fmt_count, fmt_us};
use fleetbench_metrics::hist::LatencySummary;
use ratatui::layout::{Alignment, Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Cell, Clear, Gauge, Paragraph, Row, Table, Wrap};
use ratatui::Frame;

use crate::charts::{distribution, latency_chart, rates_chart, short_us};
use crate::faults::FaultMark;
pub use crate::history::History;
use crate::theme::{block, ACCENT, BAD, DIM, GOOD, WARN};

/// What the monitor knows about the run besides its snapshots.
#[derive(Debug, Clone, Default)]
pub struct Meta {
    pub scenario: String,
    pub description: String,
    pub broker: String,
    pub duration: Duration,
    pub drain_timeout: Duration,
    /// Group names in scenario order (the snapshot's groups follow the same order).
    pub groups: Vec<String>,
    /// Load phase names in order (empty: the scenario has none); snapshots' phases follow it.
    pub phases: Vec<String>,
    pub log_path: Option<String>,
    /// The scenario's faults, marked on the charts and named while under way.
    pub faults: Vec<FaultMark>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct ViewState {
    pub help: bool,
    /// A stop was requested from the keyboard.
    pub stopping: bool,
}

pub fn render(frame: &mut Frame, meta: &Meta, history: &History, state: &ViewState) {
    let empty = Snapshot::default();
    let s = history.latest().unwrap_or(&empty);
    let area = frame.area();
    let groups_height = (meta.groups.len() as u16 + 3).clamp(4, (area.height / 4).max(4));
    let top_height = if area.height >= 40 { 9 } else { 7 };
    let rows = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Length(top_height),
        Constraint::Min(5),
        Constraint::Length(groups_height),
    ])
    .split(area);
    header(frame, rows[0], meta, s, state);
    progress(frame, rows[1], meta, s);
    let fleet_width = (area.width * 2 / 5).max(34);
    let top =
        Layout::horizontal([Constraint::Length(fleet_width), Constraint::Fill(1)]).split(rows[2]);
    fleet_box(frame, top[0], s);
    latency_box(frame, top[1], s);
    let middle =
        Layout::horizontal([Constraint::Percentage(60), Constraint::Percentage(40)]).split(rows[3]);
    if middle[0].height >= 20 {
        let charts =
            Layout::vertical([Constraint::Percentage(55), Constraint::Fill(1)]).split(middle[0]);
        rates_chart(frame, charts[0], history, &meta.faults);
        latency_chart(frame, charts[1], history, &meta.faults);
    } else {
        rates_chart(frame, middle[0], history, &meta.faults);
    }
    distribution(frame, middle[1], s);
    let bottom =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).split(rows[4]);
    groups_table(frame, bottom[0], meta, s);
    errors(frame, bottom[1], s);
    if state.help {
        help(frame, area, meta);
    }
}

fn stage_style(stage: Stage) -> Style {
    let color = match stage {
        Stage::Starting | Stage::Connecting => WARN,
        Stage::Running => GOOD,
        Stage::Draining => ACCENT,
        Stage::Done => Color::White,
    };
    Style::default()
        .fg(Color::Black)
        .bg(color)
        .add_modifier(Modifier::BOLD)
}

fn header(frame: &mut Frame, area: Rect, meta: &Meta, s: &Snapshot, state: &ViewState) {
    let mut spans = vec![
        Span::styled(
            " fleetbench ",
            Style::default().fg(Color::Black).bg(ACCENT).bold(),
        ),
        Span::raw(" "),
        Span::styled(meta.scenario.clone(), Style::default().bold()),
        Span::raw(" "),
        // A fault under way takes the stage's badge (the progress line names it).
        match crate::faults::under_way(&meta.faults, s) {
            Some(_) => Span::styled(" FAULT ", Style::default().fg(Color::Black).bg(BAD).bold()),
            None => Span::styled(
                format!(" {} ", s.stage.label().to_uppercase()),
                stage_style(s.stage),
            ),
        },
    ];
    if state.stopping && s.stage != Stage::Done {
        spans.push(Span::styled(
            " stopping… ",
            Style::default().fg(WARN).bold(),
        ));
    }
    spans.push(Span::styled(
        format!("  {}", meta.broker),
        Style::default().fg(DIM),
    ));
    let parts = Layout::horizontal([Constraint::Fill(1), Constraint::Length(16)]).split(area);
    frame.render_widget(Paragraph::new(Line::from(spans)), parts[0]);
    let keys = Paragraph::new(Line::from(vec![
        Span::styled("q", Style::default().fg(ACCENT).bold()),
        Span::raw(" stop  "),
        Span::styled("?", Style::default().fg(ACCENT).bold()),
        Span::raw(" help "),
    ]))
    .alignment(Alignment::Right);
    frame.render_widget(keys, parts[1]);
}

fn progress(frame: &mut Frame, area: Rect, meta: &Meta, s: &Snapshot) {
    let total = meta.duration.as_secs_f64().max(0.001);
    let elapsed = s.elapsed.as_secs_f64();
    let ratio = (elapsed / total).clamp(0.0, 1.0);
    let remaining = (total - elapsed).max(0.0);
    let mut label = match crate::faults::under_way(&meta.faults, s) {
        // The fault under way, in place of the drain (it has to fit 80 columns).
        Some((f, left)) => format!(
            "{}: {:.1}s left · elapsed {elapsed:.1}s of {total:.0}s · remaining {remaining:.1}s",
            f.label,
            left.as_secs_f64()
        ),
        None => format!(
            "elapsed {elapsed:.1}s of {total:.0}s · remaining {remaining:.1}s · drain up to {:.0}s",
            meta.drain_timeout.as_secs_f64()
        ),
    };
    // The load phase the run is in, with its own figures so far.
    if let Some(i) = s.load_phase {
        let name = meta.phases.get(i).map_or("?", String::as_str);
        let figures = s.phases.get(i).cloned().unwrap_or_default();
        label = format!(
            "phase {}/{} {name}: {} sent, p99 {} · {label}",
            i + 1,
            meta.phases.len(),
            fmt_count(figures.sent),
            fmt_us(figures.from_intended.p99_us),
        );
    }
    let gauge = Gauge::default()
        .gauge_style(Style::default().fg(ACCENT).bg(Color::Black))
        .ratio(ratio)
        .label(label);
    frame.render_widget(gauge, area);
}

fn kv(key: &str, value: String, style: Style) -> Vec<Span<'static>> {
    vec![
        Span::styled(format!("{key} "), Style::default().fg(DIM)),
        Span::styled(value, style),
        Span::raw("  "),
    ]
}

fn fleet_box(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let plain = Style::default();
    let connected_style = if s.devices_connected >= s.devices_target && s.devices_target > 0 {
        Style::default().fg(GOOD)
    } else {
        Style::default().fg(WARN)
    };
    let count_style = |n: u64| {
        if n == 0 {
            plain
        } else {
            Style::default().fg(BAD).bold()
        }
    };
    let lines = vec![
        Line::from(
            [
                kv(
                    "devices",
                    format!(
                        "{}/{}",
                        fmt_count(s.devices_connected.into()),
                        fmt_count(s.devices_target.into())
                    ),
                    connected_style,
                ),
                kv(
                    "obs",
                    format!("{}/{}", s.observers_connected, s.observers_target),
                    plain,
                ),
            ]
            .concat(),
        ),
        Line::from(
            [
                kv("sent", fmt_count(s.sent), plain),
                kv("deliv", fmt_count(s.delivered), Style::default().fg(GOOD)),
            ]
            .concat(),
        ),
        Line::from(
            [
                kv("outstanding", fmt_count(s.outstanding()), plain),
                kv("dup", fmt_count(s.duplicates), count_style(s.duplicates)),
                kv("reord", fmt_count(s.reordered), count_style(s.reordered)),
            ]
            .concat(),
        ),
        Line::from(
            [
                kv(
                    "late",
                    fmt_count(s.late_sends),
                    if s.late_sends > 0 {
                        Style::default().fg(WARN)
                    } else {
                        plain
                    },
                ),
                kv("max lag", short_us(s.max_lag_us), plain),
            ]
            .concat(),
        ),
        Line::from(
            [
                kv("cpu gen", format!("{:.2}", s.cpu.generator), plain),
                kv("brk", format!("{:.2}", s.cpu.broker), plain),
                kv("oth", format!("{:.2}", s.cpu.other), plain),
            ]
            .concat(),
        ),
    ];
    frame.render_widget(
        Paragraph::new(lines).block(block("Fleet · ledger · generator")),
        area,
    );
}

fn latency_cells(name: &str, l: &LatencySummary) -> Row<'static> {
    let cell = |v: u64| {
        if l.count == 0 {
            Cell::from("-")
        } else {
            Cell::from(Line::from(short_us(v)).alignment(Alignment::Right))
        }
    };
    Row::new(vec![
        Cell::from(name.to_string()).style(Style::default().fg(DIM)),
        cell(l.p50_us),
        cell(l.p90_us),
        cell(l.p99_us),
        cell(l.p999_us),
        cell(l.max_us),
    ])
}

fn latency_box(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let header = Row::new(["", "p50", "p90", "p99", "p99.9", "max"].map(|h| {
        Cell::from(Line::from(h).alignment(Alignment::Right)).style(Style::default().fg(ACCENT))
    }));
    let rows = vec![
        latency_cells("intended", &s.interval_from_intended),
        latency_cells("send", &s.interval_from_send),
        latency_cells("run", &s.total_from_intended),
    ];
    let widths = [
        Constraint::Length(8),
        Constraint::Min(7),
        Constraint::Min(7),
        Constraint::Min(7),
        Constraint::Min(7),
        Constraint::Min(7),
    ];
    let inner = block("Latency now").inner(area);
    frame.render_widget(block("Latency now"), area);
    let parts = Layout::vertical([Constraint::Min(4), Constraint::Length(1)]).split(inner);
    frame.render_widget(
        Table::new(rows, widths).header(header).column_spacing(0),
        parts[0],
    );
    let rates = Line::from(
        [
            kv(
                "publish",
                format!("{:.0}/s", s.publish_rate),
                Style::default().fg(ACCENT),
            ),
            kv(
                "deliver",
                format!("{:.0}/s", s.deliver_rate),
                Style::default().fg(GOOD),
            ),
        ]
        .concat(),
    );
    frame.render_widget(Paragraph::new(rates), parts[1]);
}

fn groups_table(frame: &mut Frame, area: Rect, meta: &Meta, s: &Snapshot) {
    let header = Row::new(
        ["group", "connected", "sent", "rate", "late"]
            .map(|h| Cell::from(h).style(Style::default().fg(ACCENT))),
    );
    let rows = s.groups.iter().enumerate().map(|(i, g)| {
        let name = meta
            .groups
            .get(i)
            .cloned()
            .unwrap_or_else(|| format!("#{i}"));
        Row::new(vec![
            Cell::from(name),
            Cell::from(format!(
                "{}/{}",
                fmt_count(g.devices_connected.into()),
                fmt_count(g.devices_target.into())
            )),
            Cell::from(fmt_count(g.sent)),
            Cell::from(format!("{:.0}/s", g.publish_rate)),
            Cell::from(fmt_count(g.late_sends)),
        ])
    });
    let widths = [
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Fill(2),
        Constraint::Fill(1),
        Constraint::Fill(1),
    ];
    frame.render_widget(
        Table::new(rows, widths)
            .header(header)
            .block(block("Groups")),
        area,
    );
}

fn errors(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let lines: Vec<Line> = if s.errors.is_empty() {
        vec![Line::styled("none", Style::default().fg(DIM))]
    } else {
        s.errors
            .iter()
            .map(|(kind, g)| {
                Line::from(vec![
                    Span::styled(format!("{kind} "), Style::default().fg(BAD).bold()),
                    Span::styled(
                        format!("×{} ", fmt_count(g.count)),
                        Style::default().fg(WARN),
                    ),
                    Span::styled(g.latest.clone(), Style::default().fg(DIM)),
                ])
            })
            .collect()
    };
    frame.render_widget(
        Paragraph::new(lines)
            .block(block("Errors"))
            .wrap(Wrap { trim: true }),
        area,
    );
}

fn help(frame: &mut Frame, area: Rect, meta: &Meta) {
    let width = area.width.saturating_sub(4).min(72);
    let height = area.height.saturating_sub(2).min(16);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + (area.height - height) / 2,
        width,
        height,
    };
    let mut lines = vec![
        Line::from(vec![
            Span::styled("q / Ctrl-C ", Style::default().fg(ACCENT).bold()),
            Span::raw("stop: drain, write the report, exit 130"),
        ]),
        Line::from(vec![
            Span::styled("?          ", Style::default().fg(ACCENT).bold()),
            Span::raw("show or hide this help"),
        ]),
        Line::raw(""),
        Line::raw("intended: latency from when a message was due (includes generator delay)"),
        Line::raw("send: latency from when the device actually sent it (broker + network)"),
        Line::raw("outstanding: expected deliveries not arrived yet (in flight or lost)"),
        Line::raw("late sends: messages sent more than 1 ms after they were due"),
        Line::raw("cpu: cores used by the generator, the embedded broker and the rest"),
    ];
    if !meta.description.is_empty() {
        lines.push(Line::raw(""));
        lines.push(Line::styled(
            meta.description.clone(),
            Style::default().fg(DIM),
        ));
    }
    if let Some(log) = &meta.log_path {
        lines.push(Line::styled(
            format!("logs: {log}"),
            Style::default().fg(DIM),
        ));
    }
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(block("Help")),
        popup,
    );
}
