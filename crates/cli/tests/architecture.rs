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
    let named = crate_modules_named("use crate::{a::B, c};\n// crate::z\nlet x = crate::d::f();");
    assert_eq!(named.into_iter().collect::<Vec<_>>(), ["a", "c", "d", "z"]);
}

/// The code of `file` without its comment lines.
fn code_of(file: &Path) -> String {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let lines = text.lines().filter(|l| !l.trim_start().starts_with("//"));
    lines.collect::<Vec<_>>().join("\n")
}

/// The top-level modules of the crate whose sources are in `src` that `code` names through
/// `crate::` (alone or in a `crate::{...}` group).
fn crate_modules_named(code: &str) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            Some(group) => {
                let group = group.split("};").next().unwrap_or("");
                group.split(',').map(str::trim).collect()
            }
            None => vec![rest],
        };
        for n in names {
            let ident: String = n
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if !ident.is_empty() {
                out.insert(ident);
            }
        }
    }
    out
}

#[test]
fn no_two_modules_of_a_crate_use_each_other() {
    let mut crates: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates")
        .flatten()
        .map(|e| e.path().join("src"))
        .filter(|p| p.is_dir())
        .collect();
    crates.push(root().join("xtask/src"));
    let mut circles = Vec::new();
    let mut modules_seen = 0;
    for src in crates {
        let mut files = Vec::new();
        sources(&src, &mut files);
        let mut uses: std::collections::BTreeMap<String, std::collections::BTreeSet<String>> =
            Default::default();
        for f in &files {
            let rel = f.strip_prefix(&src).expect("under src");
            let first = rel.components().next().expect("a file");
            let top = first
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" || top == "main" {
                continue;
            }
            let named = crate_modules_named(&code_of(f));
            let entry = uses.entry(top.clone()).or_default();
            entry.extend(named.into_iter().filter(|n| *n != top));
        }
        modules_seen += uses.len();
        for (a, named) in &uses {
            for b in named.iter().filter(|b| *b > a) {
                if uses.get(b).is_some_and(|back| back.contains(a)) {
                    circles.push(format!("{}: {a} <-> {b}", src.display()));
                }
            }
        }
    }
    assert!(modules_seen > 60, "only {modules_seen} modules were read");
    assert!(
        circles.is_empty(),
        "modules that use each other (ARCHITECTURE.md, code map): {circles:#?}"
    );
}

#[test]
fn crate_dependencies_are_the_ones_architecture_md_states() {
    let doc = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    // The stated rule: lines "name -> dependency ..." in the code map's block.
    let stated: std::collections::BTreeMap<String, Vec<String>> = doc
        .lines()
        .filter_map(|l| {
            l.split_once(" -> ")
                .or_else(|| l.strip_suffix(" ->").map(|n| (n, "")))
        })
        .filter(|(name, _)| !name.trim().is_empty() && !name.trim().contains(' '))
        .map(|(name, deps)| {
            let mut deps: Vec<String> = deps.split_whitespace().map(String::from).collect();
            deps.sort();
            (name.trim().to_string(), deps)
        })
        .collect();
    let dirs: Vec<PathBuf> = std::fs::read_dir(root().join("crates"))
        .expect("crates")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.join("Cargo.toml").is_file())
        .collect();
    assert!(dirs.len() >= 7, "{dirs:?}");
    for dir in dirs {
        let name = dir.file_name().expect("name").to_string_lossy().to_string();
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        let deps_section = manifest
            .split("[dependencies]")
            .nth(1)
            .map(|s| s.split("\n[").next().unwrap_or(""))
            .unwrap_or("");
        let mut actual: Vec<String> = deps_section
            .lines()
            .filter_map(|l| l.trim().strip_prefix("fleetbench-"))
            .map(|l| l.split(['.', ' ', '=']).next().unwrap_or("").to_string())
            .collect();
        actual.sort();
        let said = stated
            .get(&name)
            .unwrap_or_else(|| panic!("ARCHITECTURE.md states no dependencies for crates/{name}"));
        assert_eq!(
            &actual, said,
            "crates/{name}: its Cargo.toml against ARCHITECTURE.md"
        );
    }
}

#[test]
fn validation_modules_meet_only_through_ctx() {
    // The rule ARCHITECTURE.md states for crates/scenario/src/validate/: each part imports
    // the others only through ctx.rs, except a group, which takes its load and behaviours
    // from load.rs and behaviours.rs.
    let dir = root().join("crates/scenario/src/validate");
    let allowed = [("groups", "load"), ("groups", "behaviours")];
    let mut seen = 0;
    let mut wrong = Vec::new();
    for e in std::fs::read_dir(&dir).expect("validate").flatten() {
        let name = e
            .file_name()
            .to_string_lossy()
            .trim_end_matches(".rs")
            .to_string();
        if name == "mod" || name == "ctx" {
            continue;
        }
        seen += 1;
        let code = code_of(&e.path());
        for (i, _) in code.match_indices("super::") {
            let other: String = code[i + "super::".len()..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let sibling = dir.join(format!("{other}.rs")).is_file();
            if sibling && other != "ctx" && other != name && !allowed.contains(&(&name, &other)) {
                wrong.push(format!("{name}.rs uses {other}.rs"));
            }
        }
    }
    assert!(seen >= 8, "only {seen} validation modules were read");
    assert!(wrong.is_empty(), "{wrong:?}");
}
