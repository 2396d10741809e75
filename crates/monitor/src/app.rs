//! The monitor's input loop: owns the terminal while a run lasts.

use std::io;
use std::time::{Duration, Instant};

use fleetbench_metrics::Snapshot;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::DefaultTerminal;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::view::{render, History, Meta, ViewState};

/// At most this many frames per second.
pub const MAX_FPS: u32 = 10;

/// Take over the terminal and show the run until its snapshot channel closes (the run ended).
/// `q`, Esc or Ctrl-C ask the run to stop through `stop`. The terminal is restored on every
/// way out, panics included (ratatui's panic hook).
pub fn run(
    meta: Meta,
    snapshots: watch::Receiver<Snapshot>,
    stop: CancellationToken,
) -> io::Result<()> {
    let mut terminal = ratatui::try_init()?;
    let result = event_loop(&mut terminal, &meta, snapshots, &stop);
    ratatui::restore();
    result
}

fn event_loop(
    terminal: &mut DefaultTerminal,
    meta: &Meta,
    mut snapshots: watch::Receiver<Snapshot>,
    stop: &CancellationToken,
) -> io::Result<()> {
    let frame = Duration::from_secs(1) / MAX_FPS;
    let mut history = History::new(1_200);
    let mut state = ViewState::default();
    let mut last_draw: Option<Instant> = None;
    loop {
        match snapshots.has_changed() {
            Err(_) => return Ok(()),
            Ok(true) => history.push(snapshots.borrow_and_update().clone()),
            Ok(false) => {}
        }
        if last_draw.is_none_or(|t| t.elapsed() >= frame) {
            terminal.draw(|f| render(f, meta, &history, &state))?;
            last_draw = Some(Instant::now());
        }
        if event::poll(frame)? {
            if let Event::Key(key) = event::read()? {
                if key.kind != KeyEventKind::Press {
                    continue;
                }
                let ctrl_c =
                    key.code == KeyCode::Char('c') && key.modifiers.contains(KeyModifiers::CONTROL);
                match key.code {
                    KeyCode::Char('q') | KeyCode::Esc => request_stop(stop, &mut state),
                    _ if ctrl_c => request_stop(stop, &mut state),
                    KeyCode::Char('?') => state.help = !state.help,
                    _ => {}
                }
                last_draw = None;
            }
        }
    }
}

/// Give the terminal back (raw mode off, main screen) when leaving without the monitor's own
/// loop ending, for example on a forced exit.
pub fn restore_terminal() {
    ratatui::restore();
}

fn request_stop(stop: &CancellationToken, state: &mut ViewState) {
    state.stopping = true;
    state.help = false;
    stop.cancel();
}
