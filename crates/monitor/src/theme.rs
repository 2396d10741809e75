//! The monitor's colours and framing, shared by its views and charts.

use ratatui::style::{Color, Style};
use ratatui::text::Span;
use ratatui::widgets::{Block, Borders};

pub(crate) const ACCENT: Color = Color::Cyan;
pub(crate) const GOOD: Color = Color::Green;
pub(crate) const BAD: Color = Color::Red;
pub(crate) const WARN: Color = Color::Yellow;
pub(crate) const DIM: Color = Color::DarkGray;

pub(crate) fn block(title: &str) -> Block<'_> {
    Block::default()
        .borders(Borders::ALL)
        .border_style(Style::default().fg(DIM))
        .title(Span::styled(
            format!(" {title} "),
            Style::default().fg(ACCENT).bold(),
        ))
}

/// A named, coloured series of (seconds, value) points.
pub(crate) type Series<'a> = (&'a str, Color, &'a [(f64, f64)]);
