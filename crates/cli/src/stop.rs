//! Ctrl-C and SIGTERM, from the first instant of a command to its last. The handlers are
//! installed before anything else happens, on a thread of their own, so that no signal is lost
//! or left to the default action (which would end the process without a report).
//!
//! The first signal cancels the token: whatever the run is doing (starting the broker,
//! calibrating, connecting, publishing, draining) stops, and the partial report is written. The
//! third leaves at once with exit code 130.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use signal_hook::consts::{SIGINT, SIGTERM};
use tokio_util::sync::CancellationToken;

/// The command's stop: cancelled by the first Ctrl-C or SIGTERM, or by the monitor's `q`.
#[derive(Clone)]
pub(crate) struct Stop {
    pub token: CancellationToken,
    /// Set while the monitor owns the terminal: a forced exit gives it back first.
    pub monitor_up: Arc<AtomicBool>,
    /// Set once the command's work is done and only waits (`--metrics-linger`): a signal then
    /// ends the wait, and the command keeps its own exit code.
    pub lingering: Arc<AtomicBool>,
}

impl Stop {
    /// Install the handlers and start the thread that turns signals into the stop.
    pub(crate) fn install(what: &'static str) -> anyhow::Result<Stop> {
        let token = CancellationToken::new();
        let monitor_up = Arc::new(AtomicBool::new(false));
        let lingering = Arc::new(AtomicBool::new(false));
        let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
        let (t, m, l) = (token.clone(), monitor_up.clone(), lingering.clone());
        std::thread::Builder::new()
            .name("signals".into())
            .spawn(move || {
                for (count, _) in signals.forever().enumerate() {
                    if count == 0 && l.load(Ordering::Relaxed) {
                        eprintln!("interrupted: the linger ends (the report is written)");
                        t.cancel();
                    } else if count == 0 {
                        eprintln!("interrupted: {what} (twice more to abort)");
                        t.cancel();
                    } else if count >= 2 {
                        if m.load(Ordering::Relaxed) {
                            fleetbench_monitor::app::restore_terminal();
                        }
                        crate::outputs::remove_partials();
                        eprintln!("aborted");
                        std::process::exit(130);
                    }
                }
            })?;
        Ok(Stop {
            token,
            monitor_up,
            lingering,
        })
    }

    /// Wait `linger` once the work is done, or until the first signal.
    pub(crate) fn linger(&self, linger: std::time::Duration) {
        self.lingering.store(true, Ordering::Relaxed);
        let end = std::time::Instant::now() + linger;
        while !self.is_stopped() && std::time::Instant::now() < end {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    pub(crate) fn is_stopped(&self) -> bool {
        self.token.is_cancelled()
    }
}

/// For a command with nothing to finish (merge, report html): the first Ctrl-C or SIGTERM
/// removes the outputs not yet in place and ends the process (exit 130).
pub(crate) fn end_on_signal() -> anyhow::Result<()> {
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])?;
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            if signals.forever().next().is_some() {
                crate::outputs::remove_partials();
                eprintln!("interrupted: nothing was written");
                std::process::exit(130);
            }
        })?;
    Ok(())
}
