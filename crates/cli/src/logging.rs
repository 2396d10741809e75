//! Logs go to stderr (stdout is for results). rumqttd logs every connection at info and every
//! ordinary disconnect at error, so it is silent unless asked (-vv, or RUST_LOG=rumqttd=warn).
//!
//! While the monitor owns the terminal, logs go to a file of their own instead: created with an
//! unpredictable name, owner-only, never through a link (tempfile's `O_EXCL`), and removed at
//! the end when nothing was logged. Colour codes go only to a terminal.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// Where logs went, when not to stderr.
pub(crate) struct LogFile {
    path: PathBuf,
}

impl LogFile {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Remove the file if nothing was logged; returns whether it is still there.
    pub(crate) fn finish(&self) -> bool {
        match std::fs::metadata(&self.path) {
            Ok(m) if m.len() == 0 => {
                let _ = std::fs::remove_file(&self.path);
                false
            }
            Ok(_) => true,
            Err(_) => false,
        }
    }
}

/// Log to stderr, or, when `to_file`, to a new private file in the temporary directory.
pub(crate) fn init(verbose: u8, to_file: bool) -> Option<LogFile> {
    let default = match verbose {
        0 => "warn,rumqttd=off,rumqttc=warn",
        1 => "info,rumqttd=off,rumqttc=warn",
        _ => "debug,rumqttd=warn,rumqttc=info",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true);
    let file = to_file.then(create).flatten();
    match file {
        Some((f, path)) => {
            let _ = builder
                .with_ansi(false)
                .with_writer(Mutex::new(f))
                .try_init();
            Some(LogFile { path })
        }
        None => {
            let _ = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(std::io::stderr)
                .try_init();
            None
        }
    }
}

fn create() -> Option<(std::fs::File, PathBuf)> {
    match tempfile::Builder::new()
        .prefix("fleetbench-")
        .suffix(".log")
        .tempfile()
        .and_then(|f| f.keep().map_err(|e| e.error))
    {
        Ok(kept) => Some(kept),
        Err(e) => {
            eprintln!("warning: cannot create a log file ({e}); logging to stderr");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn log_files_are_private_and_unpredictable() {
        let (_a, first) = super::create().expect("a log file");
        let (_b, second) = super::create().expect("another");
        assert_ne!(first, second);
        let mode = std::fs::metadata(&first)
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{mode:o}");
        let name = first
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        assert!(!name.contains(&std::process::id().to_string()), "{name}");
        for p in [first, second] {
            let _ = std::fs::remove_file(p);
        }
    }
}
