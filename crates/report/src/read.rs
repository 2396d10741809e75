//! Reading reports from text: a JSON report, or a log that holds report lines (`run --report -`
//! prints its report as one line starting with [`REPORT_LINE`], so that a pod's log carries
//! it; `kubectl logs` of a Job's pods holds one per pod, with or without prefixes).

use crate::Report;

/// What starts the line that carries a report in a log.
pub const REPORT_LINE: &str = "fleetbench-report ";

/// Why text holds no report.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("not a fleetbench report: {0}")]
    Json(serde_json::Error),
    #[error("line {line}: a report line that does not read as a report ({error}); was the log cut short?")]
    Line {
        line: usize,
        error: serde_json::Error,
    },
    #[error("neither a JSON report nor a log with {REPORT_LINE:?} lines (written by `fleetbench run --report -`)")]
    Nothing,
}

/// The reports in `text`: the JSON report it is, or every report line it holds, in order.
pub fn reports_in(text: &str) -> Result<Vec<Report>, ReadError> {
    if text.trim_start().starts_with('{') {
        return Report::from_json(text)
            .map(|r| vec![r])
            .map_err(ReadError::Json);
    }
    let mut reports = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let Some(at) = line.find(REPORT_LINE) else {
            continue;
        };
        let r = Report::from_json(&line[at + REPORT_LINE.len()..])
            .map_err(|error| ReadError::Line { line: n + 1, error })?;
        reports.push(r);
    }
    if reports.is_empty() {
        return Err(ReadError::Nothing);
    }
    Ok(reports)
}
