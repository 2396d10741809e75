//! From TOML text to the wire types, and the position of a mistake in it: a type error's field
//! path comes from the deserializer (`serde_path_to_error`), a syntax error's from the text
//! around it.

use crate::error::{Location, ScenarioError};
use crate::raw::RawScenario;

use super::ctx::R;

/// Deserialise the file into its wire types; a syntax or type error names its line and the
/// field path the deserializer was at (`observer[0].filters[2]`), taken from the deserializer
/// itself rather than guessed from the text.
pub(crate) fn deserialize(file: &str, text: &str) -> R<RawScenario> {
    let de = toml::Deserializer::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |s| s.start).min(text.len());
        toml_error(file, text, &e, &field_at(text, at))
    })?;
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = field_path(e.path());
        toml_error(file, text, e.inner(), &path)
    })
}

/// A path as a scenario error names fields: `group[0].json.temperature`. toml's own spans
/// travel through the path as private keys; they are left out.
pub(crate) fn field_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } if key.starts_with("$__serde_spanned") => {}
            Segment::Map { key } | Segment::Enum { variant: key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            Segment::Unknown => {}
        }
    }
    out
}

pub(crate) fn toml_error(file: &str, text: &str, e: &toml::de::Error, path: &str) -> ScenarioError {
    let offset = e.span().map_or(0, |s| s.start);
    let message = e.message().trim().to_string();
    // A missing field has no position of its own: name it after the table it is missing from.
    let field = match message
        .strip_prefix("missing field `")
        .and_then(|m| m.split('`').next())
    {
        Some(missing) if path.is_empty() => missing.to_string(),
        Some(missing) => format!("{path}.{missing}"),
        None if path.is_empty() => "(file)".to_string(),
        None => path.to_string(),
    };
    ScenarioError::new(Location::at(file, text, offset), field, message)
}

/// For a syntax error (the deserializer has no path yet), the dotted field a byte offset stands
/// in: its table header (with the array index for `[[array]]` tables) and the key of its line,
/// or of the line a multi-line value started on.
pub(crate) fn field_at(text: &str, offset: usize) -> String {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = text[line_start..line_end].trim();
    let mut table = String::new();
    let mut counts: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for l in text[..line_start].lines().chain(std::iter::once(line)) {
        let l = l.trim();
        if let Some(name) = l.strip_prefix("[[").and_then(|r| r.split("]]").next()) {
            let name = name.trim().to_string();
            let n = counts.entry(name.clone()).or_insert(0);
            table = format!("{name}[{n}]");
            *n += 1;
        } else if let Some(name) = l.strip_prefix('[').and_then(|r| r.split(']').next()) {
            let name = name.trim();
            // A sub-table of the latest entry of an array of tables: `[group.json]`.
            table = match name.split_once('.') {
                Some((array, rest)) if counts.get(array).is_some_and(|n| *n > 0) => {
                    format!("{array}[{}].{rest}", counts[array] - 1)
                }
                _ => name.to_string(),
            };
        }
    }
    if line.starts_with('[') && !line.contains('=') {
        return table;
    }
    // The key of this line, or of the nearest line above it in the same table that has one (a
    // value spread over several lines).
    let keyed = std::iter::once(line)
        .chain(text[..line_start].lines().rev().map(str::trim))
        .take_while(|l| !l.starts_with('[') || l.contains('='))
        .find(|l| l.contains('=') && !l.starts_with('#'));
    let key = keyed
        .and_then(|l| l.split('=').next())
        .unwrap_or("")
        .trim()
        .trim_matches('"');
    let key = if key
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
    {
        key
    } else {
        ""
    };
    match (table.is_empty(), key.is_empty()) {
        (true, _) => key.to_string(),
        (false, true) => table,
        (false, false) => format!("{table}.{key}"),
    }
}
