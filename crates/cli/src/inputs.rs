//! Reading what a command is given: a regular file (or stdin, `-`) of bounded size, never a
//! device or a pipe read without end; reports as JSON or as the report lines of pod logs.

use std::io::Read;
use std::path::Path;

use fleetbench_report::Report;

use crate::UsageError;

/// The largest report input: a log of a thousand pods' report lines fits many times over.
pub(crate) const MAX_REPORT_BYTES: u64 = 256 << 20;

/// The bytes of `path` (stdin for `-`): a regular file of at most `cap` bytes. `what` names the
/// input in errors ("report", "scenario").
pub(crate) fn read_capped(path: &Path, what: &str, cap: u64) -> Result<Vec<u8>, UsageError> {
    let shown = path.display();
    let too_big = || {
        let size = if cap > 1 << 20 {
            format!("{} MiB", cap >> 20)
        } else {
            format!("{} KiB", cap >> 10)
        };
        UsageError(format!(
            "{what} {shown}: larger than {size}; that is no {what}"
        ))
    };
    let mut bytes = Vec::new();
    if path == Path::new(crate::outputs::STDOUT) {
        std::io::stdin()
            .lock()
            .take(cap + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| UsageError(format!("reading {what} from stdin: {e}")))?;
        if bytes.len() as u64 > cap {
            return Err(too_big());
        }
        return Ok(bytes);
    }
    let meta =
        std::fs::metadata(path).map_err(|e| UsageError(format!("reading {what} {shown}: {e}")))?;
    if !meta.is_file() {
        let kind = if meta.is_dir() {
            "a directory"
        } else {
            "not a regular file (a pipe, socket or device)"
        };
        return Err(UsageError(format!(
            "{what} {shown}: is {kind}; expected a file"
        )));
    }
    if meta.len() > cap {
        return Err(too_big());
    }
    std::fs::File::open(path)
        .and_then(|f| f.take(cap + 1).read_to_end(&mut bytes))
        .map_err(|e| UsageError(format!("reading {what} {shown}: {e}")))?;
    if bytes.len() as u64 > cap {
        return Err(too_big());
    }
    Ok(bytes)
}

/// The reports in a file (or stdin, `-`): a JSON report, or a log holding report lines
/// (`run --report -` in each pod; `kubectl logs` output, several pods' in one file included).
pub(crate) fn reports_in(path: &Path) -> Result<Vec<Report>, UsageError> {
    let bytes = read_capped(path, "report", MAX_REPORT_BYTES)?;
    fleetbench_report::read::reports_in(&String::from_utf8_lossy(&bytes)).map_err(|e| {
        let shown = path.display();
        UsageError(match e {
            // file:line: as editors and terminals link it.
            fleetbench_report::read::ReadError::Line { line, error } => format!(
                "{shown}:{line}: a report line that does not read as a report ({error}); was \
                 the log cut short?"
            ),
            other => format!("{shown}: {other}"),
        })
    })
}

/// The one report in a file: a JSON report, or a log with exactly one report line.
pub(crate) fn one_report(path: &Path) -> Result<Report, UsageError> {
    let mut reports = reports_in(path)?;
    match reports.len() {
        1 => Ok(reports.remove(0)),
        n => Err(UsageError(format!(
            "{}: holds {n} reports; this command takes one (merge them first with `fleetbench \
             merge`)",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_and_oversized_files_are_refused_without_reading_them() {
        let e = read_capped(Path::new("/dev/zero"), "report", MAX_REPORT_BYTES).expect_err("dev");
        assert!(e.0.contains("not a regular file"), "{e}");
        let dir = tempfile::tempdir().expect("tempdir");
        let big = dir.path().join("big.json");
        std::fs::File::create(&big)
            .and_then(|f| f.set_len(2048))
            .expect("a sparse file");
        let e = read_capped(&big, "report", 1024).expect_err("too big");
        assert!(e.0.contains("larger than"), "{e}");
        let e = read_capped(dir.path(), "report", 1024).expect_err("a directory");
        assert!(e.0.contains("a directory"), "{e}");
    }
}
