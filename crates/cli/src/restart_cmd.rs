//! The command that restarts an external broker for a `broker_restart` fault: run with a
//! timeout, its output logged, ended by its PID when it takes too long.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::info;

/// Run `command` (program and arguments); Ok with what it did, or why it failed.
pub(crate) fn run(command: &[String], timeout: Duration) -> Result<String, String> {
    let Some((program, args)) = command.split_first() else {
        return Err("no command".into());
    };
    let shown = command.join(" ");
    let began = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("`{shown}` could not start: {e}"))?;
    // Read its output as it comes, so that a chatty command never blocks on a full pipe.
    let readers: Vec<_> = [
        child
            .stdout
            .take()
            .map(|o| Box::new(o) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|e| Box::new(e) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    .map(|stream| std::thread::spawn(move || read_some(stream)))
    .collect();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if began.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "`{shown}` did not finish within {timeout:?}; it was ended"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("`{shown}`: {e}")),
        }
    };
    let output: String = readers.into_iter().filter_map(|r| r.join().ok()).collect();
    for line in output.lines().filter(|l| !l.trim().is_empty()) {
        info!(command = %shown, "{line}");
    }
    let took = began.elapsed();
    if status.success() {
        Ok(format!("`{shown}` finished in {took:.1?}"))
    } else {
        Err(format!("`{shown}` failed ({status}) after {took:.1?}"))
    }
}

/// The first 64 KiB of a stream as text; the rest is read and dropped.
fn read_some(mut stream: Box<dyn Read + Send>) -> String {
    let mut kept = Vec::new();
    let mut buf = [0u8; 8192];
    while let Ok(n) = stream.read(&mut buf) {
        if n == 0 {
            break;
        }
        if kept.len() < 64 * 1024 {
            kept.extend_from_slice(&buf[..n]);
        }
    }
    String::from_utf8_lossy(&kept).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd(args: &[&str]) -> Vec<String> {
        args.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn a_command_that_succeeds_fails_or_hangs_is_told_apart() {
        let ok = run(
            &cmd(&["sh", "-c", "echo restarted"]),
            Duration::from_secs(5),
        );
        assert!(ok.is_ok_and(|s| s.contains("finished")));
        let failed = run(&cmd(&["sh", "-c", "exit 3"]), Duration::from_secs(5));
        assert!(failed.is_err_and(|e| e.contains("failed") && e.contains('3')));
        let began = Instant::now();
        let hung = run(&cmd(&["sleep", "30"]), Duration::from_millis(300));
        assert!(hung.is_err_and(|e| e.contains("did not finish within")));
        assert!(
            began.elapsed() < Duration::from_secs(5),
            "it was ended, not waited for"
        );
        let missing = run(
            &cmd(&["/nonexistent/restart-broker"]),
            Duration::from_secs(1),
        );
        assert!(missing.is_err_and(|e| e.contains("could not start")));
    }
}
