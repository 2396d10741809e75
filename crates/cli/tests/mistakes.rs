//! A corpus of scenario mistakes (tests/mistakes/*.toml): each is rejected with exit code 2 and
//! a message naming file, line and field, and no connection is attempted.
//!
//! Each file names the field in its first line (`# expect-field: ...`), a part of the message
//! in its second (`# expect-message: ...`), and marks the line the error must point at with
//! `# <-`.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> Vec<PathBuf> {
    common::toml_files(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mistakes"))
}

struct Mistake {
    text: String,
    field: String,
    message: String,
    line: usize,
}

fn read(path: &Path) -> Mistake {
    let text = std::fs::read_to_string(path).expect("read mistake");
    let field = text
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("# expect-field: "))
        .unwrap_or_else(|| {
            panic!(
                "{}: first line must be '# expect-field: ...'",
                path.display()
            )
        })
        .trim()
        .to_string();
    let message = text
        .lines()
        .nth(1)
        .and_then(|l| l.strip_prefix("# expect-message: "))
        .map(|m| m.trim().to_string())
        .unwrap_or_else(|| {
            panic!(
                "{}: second line must be '# expect-message: ...'",
                path.display()
            )
        });
    let line = text
        .lines()
        .position(|l| l.contains("# <-"))
        .unwrap_or_else(|| panic!("{}: no line is marked '# <-'", path.display()))
        + 1;
    Mistake {
        text,
        field,
        message,
        line,
    }
}

fn fleetbench(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(args)
        .output()
        .expect("run fleetbench")
}

#[test]
fn the_corpus_has_at_least_ten_distinct_mistakes() {
    let fields: std::collections::HashSet<String> =
        corpus().iter().map(|p| read(p).field).collect();
    assert!(corpus().len() >= 10, "only {} mistakes", corpus().len());
    assert!(fields.len() >= 10, "only {} distinct fields", fields.len());
}

#[test]
fn check_rejects_each_mistake_naming_file_line_and_field() {
    for path in corpus() {
        let m = read(&path);
        let file = path.to_str().expect("utf-8 path");
        let out = fleetbench(&["check", file]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{file}: exit code; stderr: {stderr}"
        );
        let at = format!("{file}:{}:", m.line);
        assert!(
            stderr.contains(&at),
            "{file}: expected {at:?} in {stderr:?}"
        );
        let field = format!(": {}: ", m.field);
        assert!(
            stderr.contains(&field),
            "{file}: expected field {field:?} in {stderr:?}"
        );
        assert!(
            stderr.contains(m.message.as_str()),
            "{file}: expected {:?} in {stderr:?}",
            m.message
        );
    }
}

/// `fleetbench check` on a file of these bytes: exit code and standard error.
fn check_bytes(name: &str, bytes: &[u8]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join(name);
    std::fs::write(&file, bytes).expect("write");
    let out = fleetbench(&["check", file.to_str().expect("utf-8")]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).replace(&dir.path().display().to_string(), ""),
    )
}

#[test]
fn a_password_in_the_url_is_refused_and_never_echoed() {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mistakes/39-credentials-in-url.toml");
    for args in [vec!["check"], vec!["run", "--quiet", "--no-tui"]] {
        let mut all = args.clone();
        all.push(path.to_str().expect("utf-8"));
        let out = fleetbench(&all);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            !text.contains("supersecret123"),
            "{args:?} echoed the password: {text}"
        );
        assert!(
            !text.contains("fleet:"),
            "{args:?} echoed the user info: {text}"
        );
    }
}

#[test]
fn every_independent_mistake_of_a_file_is_reported() {
    let text = r#"name = "two mistakes"
duration = "2s"
[[group]]
name = "s"
count = 0
topic = "fleet/{index}"
rate = 1.0
[[observer]]
name = "all"
filters = ["fleet/#"]
[expect]
max_lost = -3
"#;
    let (code, stderr) = check_bytes("two.toml", text.as_bytes());
    assert_eq!(code, Some(2), "{stderr}");
    for wanted in [
        "two.toml:1:8: name: ",
        "two.toml:5:9: group[0].count: ",
        "two.toml:12:12: expect.max_lost: ",
    ] {
        assert!(stderr.contains(wanted), "expected {wanted:?} in {stderr}");
    }
}

#[test]
fn a_part_that_depends_on_a_wrong_one_reports_nothing_of_its_own() {
    // Phases that are wrong have no total for the duration to come from: only the phase's
    // mistake is reported, not a missing duration.
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mistakes/22-negative-phase-rate.toml");
    let out = fleetbench(&["check", path.to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mistakes: Vec<&str> = stderr.lines().filter(|l| l.contains(".toml:")).collect();
    assert_eq!(mistakes.len(), 1, "{stderr}");
    assert!(mistakes[0].contains("phase[1].rate"), "{stderr}");
}

#[test]
fn odd_files_get_a_position_and_a_cause() {
    let (code, stderr) = check_bytes("empty.toml", b"");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("empty.toml:1:1: name: missing field `name`"),
        "{stderr}"
    );
    let (code, stderr) = check_bytes("latin1.toml", b"name = \"caf\xe9\"\nduration = \"2s\"\n");
    assert_eq!(code, Some(2));
    assert!(
        stderr.contains("latin1.toml:1:12: (file): not UTF-8 text (byte 0xe9)"),
        "{stderr}"
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let out = fleetbench(&["check", dir.path().to_str().expect("utf-8")]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("is a directory"), "{stderr}");
    let (code, stderr) = check_bytes("big.toml", &vec![b'#'; 2 << 20]);
    assert_eq!(code, Some(2));
    assert!(stderr.contains("larger than 1024 KiB"), "{stderr}");
}

#[test]
fn a_fifo_or_a_device_is_refused_at_once_instead_of_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fifo = dir.path().join("scenario.toml");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    for path in [fifo.to_str().expect("utf-8"), "/dev/zero"] {
        let started = std::time::Instant::now();
        let out = fleetbench(&["check", path]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{path}: {stderr}");
        assert!(stderr.contains("not a regular file"), "{path}: {stderr}");
        assert!(
            started.elapsed() < std::time::Duration::from_secs(5),
            "{path}: took {:?}",
            started.elapsed()
        );
    }
}

#[test]
fn run_rejects_each_mistake_before_any_connection() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let port = listener.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    for path in corpus() {
        let m = read(&path);
        // Point the scenario at our listener (when it names no broker of its own): a run that
        // got past validation would connect there.
        let (text, line) = if m.text.contains("[broker]") {
            (m.text.clone(), m.line)
        } else {
            let broker = format!("broker = {{ url = \"mqtt://127.0.0.1:{port}\" }}");
            (format!("{broker}\n{}", m.text), m.line + 1)
        };
        let file = dir.path().join(path.file_name().expect("name"));
        std::fs::write(&file, text).expect("write");
        let report = dir.path().join("report.json");
        let out = fleetbench(&[
            "run",
            file.to_str().expect("utf-8"),
            "--report",
            report.to_str().expect("utf-8"),
            "--quiet",
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{}: {stderr}", path.display());
        assert!(
            stderr.contains(&format!(":{line}:")),
            "{}: {stderr}",
            path.display()
        );
        assert!(!report.exists(), "{}: a report was written", path.display());
        match listener.accept() {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Ok((_, peer)) => panic!("{}: a connection was made from {peer}", path.display()),
            Err(e) => panic!("accept: {e}"),
        }
    }
}
