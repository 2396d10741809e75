//! The report's JSON Schema in the repository is the one the types generate.

use fleetbench_report::Report;

fn committed_path() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/report.schema.json")
}

#[test]
fn committed_report_schema_matches_the_types() {
    let generated = serde_json::to_string_pretty(&Report::json_schema()).expect("schema") + "\n";
    let path = committed_path();
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("writing the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the schema the report types generate; run \
         `UPDATE_SCHEMAS=1 cargo test -p fleetbench-report --test report_schema` and commit it",
        path.display()
    );
}

#[test]
fn committed_search_schema_matches_the_types() {
    let generated =
        serde_json::to_string_pretty(&fleetbench_report::search::SearchReport::json_schema())
            .expect("schema")
            + "\n";
    let path =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/search.schema.json");
    if std::env::var_os("UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).expect("writing the schema");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "{} is not the schema the search types generate; run \
         `UPDATE_SCHEMAS=1 cargo test -p fleetbench-report --test report_schema` and commit it",
        path.display()
    );
}
