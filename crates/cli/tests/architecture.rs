//! ARCHITECTURE.md stays true to the code: every path it names (in backticks) exists, and every
//! item it names (a type, a function, `Type::item`) is defined somewhere in the workspace, and
//! every thread it names is a name the code gives a thread.

use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The text between each pair of backticks.
fn quoted(text: &str) -> Vec<String> {
    text.split('`')
        .enumerate()
        .filter(|(i, _)| i % 2 == 1)
        .map(|(_, s)| s.to_string())
        .collect()
}

/// Every Rust file of the workspace's code.
fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let path = e.path();
        let name = e.file_name();
        if path.is_dir() && name != "target" && name != ".git" {
            sources(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            out.push(path);
        }
    }
}

/// Whether `name` is defined as an item (or an enum variant) in `code`.
fn defines(code: &str, name: &str) -> bool {
    let kinds = [
        "fn", "struct", "enum", "trait", "const", "static", "type", "mod",
    ];
    code.lines().any(|line| {
        let l = line.trim_start();
        let l = l
            .strip_prefix("pub(crate) ")
            .or_else(|| l.strip_prefix("pub "))
            .unwrap_or(l);
        let l = l.strip_prefix("async ").unwrap_or(l);
        let item = kinds.iter().any(|k| {
            l.strip_prefix(k)
                .and_then(|rest| rest.strip_prefix(' '))
                .is_some_and(|rest| {
                    rest.strip_prefix(name).is_some_and(|after| {
                        !after.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                    })
                })
        });
        // An enum variant: the name alone at the start of its line, then `,`, `(` or `{`.
        let variant = l.strip_prefix(name).is_some_and(|after| {
            after.starts_with([',', '(', ' ', '{']) && name.starts_with(char::is_uppercase)
        });
        item || variant
    })
}

#[test]
fn every_path_and_item_architecture_md_names_exists() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let mut files = Vec::new();
    sources(&root().join("crates"), &mut files);
    sources(&root().join("xtask"), &mut files);
    let code: String = files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("\n");
    let file_names: Vec<String> = files
        .iter()
        .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().to_string()))
        .collect();
    let identifier = |s: &str| {
        !s.is_empty()
            && s.split("::").all(|seg| {
                seg.starts_with(|c: char| c.is_alphabetic() || c == '_')
                    && seg.chars().all(|c| c.is_alphanumeric() || c == '_')
            })
    };
    let (mut paths, mut items, mut missing) = (0, 0, Vec::new());
    for q in quoted(&doc) {
        if q.contains(char::is_whitespace) {
            continue;
        }
        if q.contains('/') {
            paths += 1;
            if !root().join(&q).exists() {
                missing.push(format!("path {q}"));
            }
        } else if q.ends_with(".rs") {
            paths += 1;
            if !file_names.contains(&q) {
                missing.push(format!("file {q}"));
            }
        } else if identifier(&q) {
            items += 1;
            for segment in q.split("::") {
                // A thread's name is a string the code gives it.
                let named = code.contains(&format!("\"{segment}\""));
                if !defines(&code, segment) && !named {
                    missing.push(format!("item {segment} (of `{q}`)"));
                }
            }
        }
    }
    assert!(
        missing.is_empty(),
        "ARCHITECTURE.md names what does not exist: {missing:#?}"
    );
    assert!(
        paths >= 50 && items >= 40,
        "only {paths} paths and {items} items were checked"
    );
}

#[test]
fn the_check_finds_what_is_missing() {
    let code = "pub struct Run;\nimpl Run {\n    pub async fn start() {}\n}\nenum V {\n    Interrupted,\n}";
    assert!(defines(code, "Run") && defines(code, "start") && defines(code, "Interrupted"));
    assert!(!defines(code, "Stop") && !defines(code, "star"));
    assert_eq!(quoted("a `b` c `d::e`"), ["b", "d::e"]);
}
