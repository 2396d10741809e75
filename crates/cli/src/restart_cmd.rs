//! The command that restarts an external broker for a `broker_restart` fault: run with a
//! timeout, ended by its PID when it takes too long, its output logged (with secrets blanked).
//!
//! The output goes to an unnamed temporary file, not a pipe: a command that starts the broker
//! in the background (`mosquitto -d`, `... &`) leaves the broker holding its output, and a
//! pipe would then never close. A file is read once the command has ended, whatever still
//! writes to it.

use std::io::{Read, Seek};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use tracing::info;

/// The most of a command's output that is logged.
const MAX_OUTPUT: u64 = 64 * 1024;

/// Run `command` (program and arguments); Ok with what it did, or why it failed.
pub(crate) fn run(command: &[String], timeout: Duration) -> Result<String, String> {
    let Some((program, args)) = command.split_first() else {
        return Err("no command".into());
    };
    let shown = command.join(" ");
    let output =
        tempfile::tempfile().map_err(|e| format!("`{shown}`: no file for its output: {e}"))?;
    let clone = |f: &std::fs::File| {
        f.try_clone()
            .map(Stdio::from)
            .map_err(|e| format!("`{shown}`: {e}"))
    };
    let began = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(clone(&output)?)
        .stderr(clone(&output)?)
        .spawn()
        .map_err(|e| format!("`{shown}` could not start: {e}"))?;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if began.elapsed() >= timeout => {
                let _ = child.kill();
                let _ = child.wait();
                log_output(&shown, output);
                return Err(format!(
                    "`{shown}` did not finish within {timeout:?}; it was ended"
                ));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(format!("`{shown}`: {e}")),
        }
    };
    let took = began.elapsed();
    log_output(&shown, output);
    if status.success() {
        Ok(format!("`{shown}` finished in {took:.1?}"))
    } else {
        Err(format!("`{shown}` failed ({status}) after {took:.1?}"))
    }
}

/// Log what the command wrote so far (its first [`MAX_OUTPUT`] bytes), a line at a time.
fn log_output(shown: &str, mut file: std::fs::File) {
    let mut kept = Vec::new();
    let _ = file
        .rewind()
        .and_then(|()| file.take(MAX_OUTPUT).read_to_end(&mut kept));
    for line in String::from_utf8_lossy(&kept)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        info!(command = %shown, "{line}");
    }
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

    #[test]
    fn a_command_that_leaves_a_process_holding_its_output_is_not_waited_for() {
        // The broker started in the background keeps the command's output open for 5 s.
        let began = Instant::now();
        let ok = run(
            &cmd(&["sh", "-c", "sleep 5 & echo started"]),
            Duration::from_secs(5),
        );
        assert!(ok.is_ok_and(|s| s.contains("finished")));
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "the command's end, not its output's: {:?}",
            began.elapsed()
        );
    }
}
