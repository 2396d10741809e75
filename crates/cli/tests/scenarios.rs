//! Every shipped scenario file is valid.

mod common;

use std::path::Path;
use std::process::Command;

#[test]
fn every_file_in_scenarios_is_valid() {
    let files = common::shipped_scenarios();
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

fn scenario_schema() -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_fleetbench"))
        .args(["scenario", "schema"])
        .output()
        .expect("run fleetbench scenario schema");
    assert!(out.status.success(), "{out:?}");
    serde_json::from_slice(&out.stdout).expect("the schema is JSON")
}

#[test]
fn committed_scenario_schema_is_the_one_the_types_generate() {
    let generated = serde_json::to_string_pretty(&scenario_schema()).expect("schema") + "\n";
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/scenario.schema.json");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("writing the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the schema `fleetbench scenario schema` prints; run \
         `UPDATE_SCHEMAS=1 cargo test -p fleetbench --test scenarios` and commit it",
        path.display()
    );
}

#[test]
fn every_shipped_scenario_satisfies_the_schema_and_mistakes_do_not() {
    let schema = scenario_schema();
    let validator = jsonschema::validator_for(&schema).expect("a valid JSON Schema");
    let as_json = |path: &Path| -> serde_json::Value {
        let text = std::fs::read_to_string(path).expect("read scenario");
        let value: toml::Value = toml::from_str(&text).expect("TOML");
        serde_json::to_value(value).expect("TOML as JSON")
    };
    for file in common::shipped_scenarios() {
        let errors: Vec<String> = validator
            .iter_errors(&as_json(&file))
            .map(|e| format!("{} at {}", e, e.instance_path))
            .collect();
        assert!(errors.is_empty(), "{}: {errors:?}", file.display());
    }
    // The schema catches what an editor can: unknown fields, wrong types, unknown generators.
    let mistakes = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mistakes");
    for name in ["01-unknown-field.toml", "02-wrong-type.toml"] {
        let file = mistakes.join(name);
        assert!(
            !validator.is_valid(&as_json(&file)),
            "{name} passed the schema"
        );
    }
    let bad_generator: serde_json::Value = serde_json::json!({
        "name": "x", "duration": "1s",
        "group": [{"name": "g", "count": 1, "topic": "t", "rate": 1.0,
                   "json": {"temp": {"kind": "gaussian", "mean": 1.0}}}],
        "observer": [{"name": "o", "filters": ["t"]}]
    });
    assert!(!validator.is_valid(&bad_generator));
}
