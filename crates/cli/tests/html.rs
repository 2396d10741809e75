//! The HTML report of a real run, opened in headless Chromium (Debian's, installed by `cargo
//! xtask test`): it renders without an error, asks for nothing over the network, and every
//! figure it shows from the report equals the JSON report's.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::cli::{finish, scenario, spawn, start_run};
use serde_json::Value;

/// Chromium (`FLEETBENCH_CHROMIUM` names another binary).
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("FLEETBENCH_CHROMIUM") {
        return p.into();
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n)))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!("chromium is not installed: `cargo xtask test` installs it (apt-get install chromium)")
        })
}

/// The page after its scripts ran, and what Chromium logged.
fn open(page: &Path) -> (String, String) {
    let profile = tempfile::tempdir().expect("profile dir");
    let out = Command::new(chromium())
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--enable-logging=stderr",
            "--v=0",
            "--virtual-time-budget=5000",
            "--window-size=1280,2000",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg("--dump-dom")
        .arg(format!("file://{}", page.display()))
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium: {out:?}");
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Every (data-figure, data-value) pair on the page.
fn figures(dom: &str) -> Vec<(String, String)> {
    let attr = |tag: &str, name: &str| -> Option<String> {
        let from = tag.find(&format!("{name}=\""))? + name.len() + 2;
        let len = tag[from..].find('"')?;
        Some(tag[from..from + len].replace("&amp;", "&"))
    };
    dom.match_indices("data-figure=\"")
        .filter_map(|(at, _)| {
            let tag = &dom[at..at + dom[at..].find('>')?];
            Some((attr(tag, "data-figure")?, attr(tag, "data-value")?))
        })
        .collect()
}

/// The value at `path` in the report: object keys and array indices by dots; an expectation or
/// an error kind by its name.
fn at<'a>(report: &'a Value, path: &str) -> &'a Value {
    let mut v = report;
    let mut parts = path.split('.');
    while let Some(p) = parts.next() {
        v = match (p, v) {
            ("expectations", _) => {
                let name = parts.next().expect("an expectation's name");
                let e = (report["expectations"].as_array().expect("expectations"))
                    .iter()
                    .find(|e| e["name"] == name)
                    .expect("the expectation");
                &e["observed"]
            }
            ("errors", _) => &report["errors"][parts.next().expect("a kind")]["count"],
            (p, Value::Array(a)) => &a[p.parse::<usize>().expect("an index")],
            (p, v) => &v[p],
        };
    }
    v
}

/// Check the page at `page`: rendered, silent, loading nothing, and its figures equal to
/// `report`'s; returns the paths of the figures checked.
fn check_page(page: &Path, report: &Value) -> Vec<String> {
    let html = std::fs::read_to_string(page).expect("page");
    for remote in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(remote), "the page refers to {remote}…");
    }
    let (dom, log) = open(page);
    assert!(
        dom.contains("data-rendered=\"ok\""),
        "the page's script did not finish: {log}"
    );
    let errors = dom
        .split("<div id=\"page-errors\">")
        .nth(1)
        .and_then(|rest| rest.split("</div>").next())
        .expect("the errors element");
    assert!(errors.is_empty(), "the page reported: {errors}");
    for bad in ["Uncaught", "Refused to", "ERR_"] {
        assert!(!log.contains(bad), "chromium logged {bad}: {log}");
    }
    let figures = figures(&dom);
    for (path, shown) in &figures {
        let want = at(report, path);
        let same = match want {
            // Counts exactly; a float as far as its printing (JSON readers may round the
            // last bit differently).
            Value::Number(n) => match (shown.parse::<f64>(), n.as_f64()) {
                (Ok(a), Some(b)) => a == b || (a - b).abs() <= b.abs() * 1e-12,
                _ => false,
            },
            Value::String(s) => shown == s,
            other => shown == &other.to_string(),
        };
        assert!(
            same,
            "{path}: the page shows {shown}, the report has {want}"
        );
    }
    figures.into_iter().map(|(path, _)| path).collect()
}

#[test]
fn the_html_report_of_a_run_shows_the_reports_figures_and_loads_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fault = "[[fault]]\nkind = \"disconnect\"\nat = \"2s\"\ngroup = \"s\"\nshare = 0.5\n\
                 [expect]\ndelivered_ratio = 1.0\n";
    let file = scenario(dir.path(), "5s", 20, 5.0, fault);
    // A description with a right-to-left override: it must not turn the rest of the line.
    let text = std::fs::read_to_string(&file).expect("read").replacen(
        "name = \"trust\"\n",
        "name = \"trust\"\ndescription = \"plant \\u202Eevil\"\n",
        1,
    );
    std::fs::write(&file, text).expect("write");
    let (json, page) = (dir.path().join("r.json"), dir.path().join("r.html"));
    let run = start_run(&file, &json, &["--html", page.to_str().expect("utf-8")]);
    let (out, _) = finish(run, Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: Value =
        serde_json::from_str(&std::fs::read_to_string(&json).expect("report")).expect("json");
    // The report carries the run over time, for the charts.
    let t = report["series"]["t_s"].as_array().expect("series");
    assert!(t.len() >= 10, "{t:?}");
    let checked = check_page(&page, &report);
    assert!(checked.len() >= 20, "only {checked:?} on the page");
    let (dom, _) = open(&page);
    assert!(
        dom.contains("<div class=\"sub\"><bdi>plant \u{202E}evil</bdi> · broker <bdi>"),
        "the user's text is isolated: {}",
        dom.lines()
            .find(|l| l.contains("class=\"sub\""))
            .unwrap_or("no subtitle")
    );
    for part in [
        "totals.",
        "expectations.",
        "latency.",
        "groups.0.",
        "faults.0.",
    ] {
        assert!(
            checked.iter().any(|p| p.starts_with(part)),
            "no {part} figure: {checked:?}"
        );
    }

    // The same report against itself as a baseline, through `report html`.
    let both = dir.path().join("both.html");
    let made = spawn(&[
        "report",
        "html",
        json.to_str().expect("utf-8"),
        "--baseline",
        json.to_str().expect("utf-8"),
        "-o",
        both.to_str().expect("utf-8"),
    ]);
    let (out, _) = finish(made, Duration::from_secs(30));
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    check_page(&both, &report);
    let html = std::fs::read_to_string(&both).expect("page");
    assert!(
        html.contains("\"comparison\":{"),
        "the comparison is on the page"
    );
}

#[test]
fn report_html_refuses_what_it_cannot_show_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "{\"not\": \"a report\"}").expect("write");
    let page = dir.path().join("out.html");
    let out = Command::new(common::cli::BIN)
        .args(["report", "html", bad.to_str().expect("utf-8"), "-o"])
        .arg(&page)
        .output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a fleetbench report"), "{err}");
    assert!(!page.exists(), "nothing written");
}
