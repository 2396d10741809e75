//! Every shipped scenario file is valid.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn every_file_in_scenarios_is_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios");
    let files = common::toml_files(&dir);
    assert!(
        files.len() >= 3,
        "expected the shipped scenarios, found {files:?}"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .arg("check")
        .args(&files)
        .output()
        .expect("run fleetbench check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok ")).count(),
        files.len(),
        "{stdout}"
    );
}
