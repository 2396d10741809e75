//! The comparison as a table: a row per broker, a column per figure.

use serde_json::Value;

use super::suite::SUITE;

/// One line for the progress of a row.
pub(crate) fn summary(row: &Value) -> String {
    if let Some(why) = row["unavailable"].as_str() {
        return format!("not compared: {why}");
    }
    SUITE
        .iter()
        .map(|item| format!("{} {}", item.name, cell(item.name, &row[item.name])))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The table in Markdown, with the rows' findings under it.
pub(crate) fn markdown(results: &Value) -> String {
    let mut md = String::new();
    let header: Vec<&str> = ["broker", "version"]
        .into_iter()
        .chain(SUITE.iter().map(|i| i.name))
        .collect();
    md.push_str(&format!("| {} |\n", header.join(" | ")));
    md.push_str(&format!("|{}\n", "---|".repeat(header.len())));
    let rows = results["brokers"].as_array().cloned().unwrap_or_default();
    for row in &rows {
        let name = row["broker"].as_str().unwrap_or("?");
        if let Some(why) = row["unavailable"].as_str() {
            md.push_str(&format!(
                "| {name} | not compared: {} |{}\n",
                why.replace('|', "/"),
                " |".repeat(SUITE.len())
            ));
            continue;
        }
        let cells: Vec<String> = SUITE.iter().map(|i| cell(i.name, &row[i.name])).collect();
        md.push_str(&format!(
            "| {name} | {} | {} |\n",
            row["version"].as_str().unwrap_or(""),
            cells.join(" | ")
        ));
    }
    let notes: Vec<String> = rows
        .iter()
        .flat_map(|row| {
            let name = row["broker"].as_str().unwrap_or("?").to_string();
            let own = (row["findings"].as_array().into_iter().flatten())
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect::<Vec<_>>();
            let of_runs = SUITE.iter().flat_map(|i| {
                (row[i.name]["findings"].as_array().into_iter().flatten())
                    .filter_map(Value::as_str)
                    .map(move |f| format!("{}: {f}", i.name))
            });
            own.into_iter()
                .chain(of_runs)
                .map(move |f| format!("- {name}, {f}"))
        })
        .collect();
    if !notes.is_empty() {
        md.push_str("\nFindings:\n\n");
        md.push_str(&notes.join("\n"));
        md.push('\n');
    }
    md
}

/// One item's figures in a cell.
fn cell(item: &str, f: &Value) -> String {
    if f.is_null() {
        return "not run".to_string();
    }
    if let Some(e) = f["error"].as_str() {
        return format!("error: {}", e.replace('|', "/"));
    }
    if f.get("answer").is_some() {
        return search_cell(f);
    }
    let verdict = f["verdict"].as_str().unwrap_or("?");
    let ledger = format!(
        "lost {}, dup {}",
        f["lost"].as_u64().unwrap_or(0),
        f["duplicates"].as_u64().unwrap_or(0)
    );
    let detail = if item == "connect" {
        format!(
            "{} connected, {}, connect p50/p99 {}/{} ms, {} errors",
            f["connects"].as_u64().unwrap_or(0),
            f["connect_all_s"]
                .as_f64()
                .map_or("not all".to_string(), |s| format!("all in {s:.2} s")),
            ms(&f["connect_p50_us"]),
            ms(&f["connect_p99_us"]),
            f["errors"].as_u64().unwrap_or(0)
        )
    } else {
        format!("p99 {} ms, {ledger}", ms(&f["p99_us"]))
    };
    let failed = (f["failed"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect::<Vec<_>>();
    if failed.is_empty() {
        format!("{verdict}: {detail}")
    } else {
        format!("{verdict} ({}): {detail}", failed.join(", "))
    }
}

fn search_cell(f: &Value) -> String {
    let number = |v: &Value| v.as_f64().map_or("-".to_string(), |x| format!("{x}"));
    let bracket = (f["bracket"].as_array())
        .map(|b| b.iter().map(number).collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    let limited = f["limited_by"].as_str().unwrap_or("?");
    format!(
        "{} {} [{bracket}], knee {}, limited by {limited}, {} steps in {:.0} s",
        number(&f["answer"]),
        f["unit"].as_str().unwrap_or(""),
        number(&f["knee"]),
        f["steps"].as_u64().unwrap_or(0),
        f["duration_s"].as_f64().unwrap_or(0.0)
    )
}

fn ms(us: &Value) -> String {
    us.as_f64()
        .map_or("-".to_string(), |u| format!("{:.1}", u / 1000.0))
}
