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
        let mut offset = offset.min(text.len());
        while !text.is_char_boundary(offset) {
            offset -= 1;
        }
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

    /// Locate byte `offset` of a file that may not be valid UTF-8 (columns count bytes then).
    pub fn in_bytes(file: &str, bytes: &[u8], offset: usize) -> Self {
        let before = &bytes[..offset.min(bytes.len())];
        let line_start = before
            .iter()
            .rposition(|b| *b == b'\n')
            .map_or(0, |i| i + 1);
        Location {
            file: file.to_string(),
            line: before.iter().filter(|b| **b == b'\n').count() + 1,
            column: offset.min(bytes.len()) - line_start + 1,
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

/// Every mistake found in one scenario file, in file order (at least one). Parts of a file that
/// do not depend on each other are all checked; a part that depends on a broken one is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioErrors(Vec<ScenarioError>);

impl ScenarioErrors {
    /// `errors` must not be empty; they are sorted into file order.
    pub(crate) fn new(mut errors: Vec<ScenarioError>) -> Self {
        errors.sort_by_key(|e| (e.location.line, e.location.column));
        ScenarioErrors(errors)
    }

    /// The first mistake in the file.
    pub fn first(&self) -> &ScenarioError {
        &self.0[0]
    }

    pub fn all(&self) -> &[ScenarioError] {
        &self.0
    }
}

impl From<ScenarioError> for ScenarioErrors {
    fn from(e: ScenarioError) -> Self {
        ScenarioErrors(vec![e])
    }
}

impl fmt::Display for ScenarioErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ScenarioErrors {}

/// A value the scenario names that can only be checked outside this crate (a file that must
/// exist, an environment variable that must be set), with where the file names it. It
/// serialises as the bare value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Located<T> {
    pub value: T,
    pub at: Location,
    /// The field path, such as `broker.ca_file`.
    pub field: String,
}

impl<T> Located<T> {
    /// An error about this value, pointing where the file names it.
    pub fn error(&self, message: impl Into<String>) -> ScenarioError {
        ScenarioError::new(self.at.clone(), self.field.clone(), message)
    }
}

impl<T: serde::Serialize> serde::Serialize for Located<T> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.value.serialize(s)
    }
}
