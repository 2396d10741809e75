use std::fmt;

/// Where in a scenario file something stands: 1-based line and column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: usize,
    pub column: usize,
}

impl Location {
    /// Locate a byte offset of `text`.
    pub fn at(file: &str, text: &str, offset: usize) -> Self {
        let offset = offset.min(text.len());
        let before = &text[..offset];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let column = before[line_start..].chars().count() + 1;
        Location {
            file: file.to_string(),
            line,
            column,
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file, self.line, self.column)
    }
}

/// A scenario that cannot be run, and why.
///
/// Displayed as `file:line:column: field: problem`, so that editors and CI logs can jump to it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{location}: {field}: {message}")]
pub struct ScenarioError {
    pub location: Location,
    /// The field, as a path such as `group[2].count` or `expect.p99`.
    pub field: String,
    /// What is wrong and what was expected instead.
    pub message: String,
}

impl ScenarioError {
    pub fn new(location: Location, field: impl Into<String>, message: impl Into<String>) -> Self {
        ScenarioError {
            location,
            field: field.into(),
            message: message.into(),
        }
    }
}
