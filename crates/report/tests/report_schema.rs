//! The JSON Schemas in the repository (the report's and the search result's) are the ones the
//! types generate.

use fleetbench_report::search::SearchReport;
use fleetbench_report::Report;

/// `docs/NAME` holds `schema`; with UPDATE_SCHEMAS set, it is written first.
fn assert_committed(name: &str, schema: &serde_json::Value) {
    let generated = serde_json::to_string_pretty(schema).expect("schema") + "\n";
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs")
        .join(name);
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("writing the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the schema the types generate; run \
         `UPDATE_SCHEMAS=1 cargo test -p fleetbench-report --test report_schema` and commit it",
        path.display()
    );
}

#[test]
fn committed_report_schema_matches_the_types() {
    assert_committed("report.schema.json", &Report::json_schema());
}

#[test]
fn committed_search_schema_matches_the_types() {
    assert_committed("search.schema.json", &SearchReport::json_schema());
}
