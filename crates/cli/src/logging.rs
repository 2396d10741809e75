//! Logs go to stderr (stdout is for results). rumqttd logs every connection at info and every
//! ordinary disconnect at error, so it is silent unless asked (-vv, or RUST_LOG=rumqttd=warn).
//!
//! While the monitor owns the terminal, logs go to a file of their own instead: created with an
//! unpredictable name, owner-only, never through a link (tempfile's `O_EXCL`), and removed at
//! the end when nothing was logged. Colour codes go only to a terminal.
//!
//! Secrets the process holds (the broker's password) are blanked in every line logged, whoever
//! wrote them: a restart command that prints the password, a client error that quotes it.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

/// The secrets blanked in logs.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// What a secret is replaced with.
const BLANKED: &str = "[secret]";

/// Blank `secret` in everything logged from now on.
pub(crate) fn keep_secret(secret: &str) {
    if secret.is_empty() {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_string());
        // The longest first, so that a secret inside another is not blanked half.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every kept secret blanked.
pub(crate) fn blank_secrets(text: &str) -> std::borrow::Cow<'_, str> {
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| text.contains(s.as_str())) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = text.to_string();
    for s in all.iter() {
        out = out.replace(s.as_str(), BLANKED);
    }
    std::borrow::Cow::Owned(out)
}

/// A log writer that blanks secrets in each line before it reaches `W` (the formatter writes
/// an event in one piece).
struct Blanking<M>(M);

struct BlankingWriter<W>(W);

impl<W: Write> Write for BlankingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(blank_secrets(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Blanking<M> {
    type Writer = BlankingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        BlankingWriter(self.0.make_writer())
    }
}

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
                .with_writer(Blanking(Mutex::new(f)))
                .try_init();
            Some(LogFile { path })
        }
        None => {
            let _ = builder
                .with_ansi(std::io::stderr().is_terminal())
                .with_writer(Blanking(std::io::stderr))
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
    fn kept_secrets_are_blanked_in_what_is_logged() {
        super::keep_secret("hunter2-k8s");
        super::keep_secret("");
        let mut out = Vec::new();
        let mut w = super::BlankingWriter(&mut out);
        std::io::Write::write_all(&mut w, b"restart: password=hunter2-k8s ok\n").expect("write");
        assert_eq!(out, b"restart: password=[secret] ok\n");
        assert_eq!(super::blank_secrets("nothing here"), "nothing here");
    }

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
