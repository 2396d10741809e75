//! A corpus of scenario mistakes (tests/mistakes/*.toml): each is rejected with exit code 2 and
//! a message naming file, line and field, and no connection is attempted.
//!
//! Each file names the field in its first line (`# expect-field: ...`) and marks the line the
//! error must point at with `# <-`.

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
    let line = text
        .lines()
        .position(|l| l.contains("# <-"))
        .unwrap_or_else(|| panic!("{}: no line is marked '# <-'", path.display()))
        + 1;
    Mistake { text, field, line }
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
