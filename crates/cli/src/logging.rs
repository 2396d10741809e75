//! Logs go to stderr (stdout is for results). rumqttd logs every connection at info and every
//! ordinary disconnect at error, so it is silent unless asked (-vv, or RUST_LOG=rumqttd=warn).

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

pub struct LogGuard;

/// Where logs go while the monitor owns the terminal.
pub fn file_path() -> PathBuf {
    std::env::temp_dir().join(format!("fleetbench-{}.log", std::process::id()))
}

/// Log to stderr, or to `file` (while the monitor owns the terminal).
pub fn init(verbose: u8, file: Option<&Path>) -> LogGuard {
    let default = match verbose {
        0 => "warn,rumqttd=off,rumqttc=warn",
        1 => "info,rumqttd=off,rumqttc=warn",
        _ => "debug,rumqttd=warn,rumqttc=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let file = file.and_then(|path| match std::fs::File::create(path) {
        Ok(f) => Some(f),
        Err(e) => {
            eprintln!(
                "warning: cannot write logs to {}: {e}; logging to stderr",
                path.display()
            );
            None
        }
    });
    let _ = match file {
        Some(f) => builder
            .with_ansi(false)
            .with_writer(Mutex::new(f))
            .try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
    LogGuard
}
