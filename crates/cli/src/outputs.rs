//! Where every command's results go, made sure of before anything is done: each output path
//! gets a temporary file in its own directory at once (proving the directory exists and takes
//! files), and at the end the result is written there and renamed over the path, so that a
//! reader never sees half a file and a file given as an output is never half replaced. A signal
//! that ends the process removes the temporary files first (`remove_partials`). An output may
//! not be one of the command's inputs. Should writing still fail at the end, the result goes to
//! a fallback file that is named, never nowhere.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context;

use crate::UsageError;

/// The temporary files of outputs not yet in place.
static PARTIALS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remove every temporary file of an output not yet in place: a signal is about to end the
/// process, and nothing partial may stay behind.
pub(crate) fn remove_partials() {
    let mut partials = PARTIALS.lock().unwrap_or_else(|e| e.into_inner());
    for p in partials.drain(..) {
        let _ = std::fs::remove_file(p);
    }
}

/// A temporary file's place in [`PARTIALS`], given up when dropped.
struct Partial(PathBuf);

impl Partial {
    fn new(path: &Path) -> Partial {
        let mut partials = PARTIALS.lock().unwrap_or_else(|e| e.into_inner());
        partials.push(path.to_path_buf());
        Partial(path.to_path_buf())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        let mut partials = PARTIALS.lock().unwrap_or_else(|e| e.into_inner());
        partials.retain(|p| *p != self.0);
    }
}

/// An output path with its temporary file, ready to take the result.
pub(crate) struct Reserved {
    path: PathBuf,
    what: &'static str,
    temp: tempfile::NamedTempFile,
    _partial: Partial,
}

impl Reserved {
    /// Check that `path` can be written (in a directory that exists) and reserve it; a problem
    /// is a usage error naming the path and the cause.
    pub(crate) fn new(path: &Path, what: &'static str) -> anyhow::Result<Reserved> {
        let usage = |why: String| {
            anyhow::Error::from(UsageError(format!("{what} {}: {why}", path.display())))
        };
        if path.is_dir() {
            return Err(usage("is a directory; give a file path".into()));
        }
        if path.file_name().is_none() {
            return Err(usage("names no file".into()));
        }
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        if dir.exists() && !dir.is_dir() {
            return Err(usage(format!("{} is not a directory", dir.display())));
        }
        if !dir.is_dir() {
            return Err(usage(format!(
                "its directory {} does not exist; create it first",
                dir.display()
            )));
        }
        let temp = tempfile::Builder::new()
            .prefix(".fleetbench-")
            .suffix(".partial")
            .tempfile_in(&dir)
            .map_err(|e| usage(format!("cannot write in {}: {e}", dir.display())))?;
        let partial = Partial::new(temp.path());
        Ok(Reserved {
            path: path.to_path_buf(),
            what,
            temp,
            _partial: partial,
        })
    }

    /// [`Reserved::new`], refused when `path` is one of `inputs` (the same file by any name):
    /// writing it would destroy what the command reads.
    pub(crate) fn not_over(
        path: &Path,
        what: &'static str,
        inputs: &[&Path],
    ) -> anyhow::Result<Reserved> {
        if let Some(input) = inputs.iter().find(|i| same_file(path, i)) {
            return Err(UsageError(format!(
                "{what} {}: is {}, an input of this command; give the {what} a path of its own",
                path.display(),
                input.display()
            ))
            .into());
        }
        Reserved::new(path, what)
    }

    /// Write `bytes` and put them at the path. On failure, the bytes go to a fallback file in
    /// the temporary directory; the error names both.
    pub(crate) fn write(self, bytes: &[u8]) -> anyhow::Result<PathBuf> {
        let Reserved {
            path, what, temp, ..
        } = self;
        let written = write_into(temp, bytes, &path);
        match written {
            Ok(()) => Ok(path),
            Err(e) => match fallback(bytes, &path) {
                Ok(saved) => Err(e.context(format!(
                    "writing the {what} {} failed; it was saved to {} instead",
                    path.display(),
                    saved.display()
                ))),
                Err(f) => Err(e.context(format!(
                    "writing the {what} {} failed, and so did saving it elsewhere ({f:#})",
                    path.display()
                ))),
            },
        }
    }
}

fn write_into(mut temp: tempfile::NamedTempFile, bytes: &[u8], path: &Path) -> anyhow::Result<()> {
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .context("writing")?;
    temp.persist(path)
        .map_err(|e| e.error)
        .context("renaming into place")?;
    Ok(())
}

/// Whether `a` and `b` name one existing file (by device and inode, whatever the path).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

/// A new file in the temporary directory (unpredictable name, owner-only, never following a
/// link) holding `bytes`; kept.
fn fallback(bytes: &[u8], wanted: &Path) -> anyhow::Result<PathBuf> {
    let stem = wanted.file_stem().unwrap_or_default().to_string_lossy();
    let suffix = wanted
        .extension()
        .map(|x| format!(".{}", x.to_string_lossy()))
        .unwrap_or_default();
    let mut f = tempfile::Builder::new()
        .prefix(&format!("fleetbench-{stem}-"))
        .suffix(&suffix)
        .tempfile()
        .context("creating a file in the temporary directory")?;
    f.write_all(bytes).context("writing it")?;
    let (_, path) = f.keep().context("keeping it")?;
    Ok(path)
}

/// The report path that means "print the report on stdout, one marked line" (`--report -`).
pub(crate) const STDOUT: &str = "-";

/// What starts the line that carries a report on stdout, so that `fleetbench merge` finds it
/// in a pod's log among the summary and anything else (`kubectl logs` output, with or without
/// `--prefix` or `--timestamps`).
pub(crate) use fleetbench_report::read::REPORT_LINE;

/// Every output of one run: the JSON report and the interval log beside it.
pub(crate) struct Outputs {
    pub report: Option<Reserved>,
    /// The report goes to stdout as one [`REPORT_LINE`] instead (`--report -`).
    pub report_to_stdout: bool,
    pub hlog: Option<Reserved>,
    /// The HTML report (`--html`).
    pub html: Option<Reserved>,
}

impl Outputs {
    /// Reserve the paths `run` was given (the interval log defaults to the report's path with
    /// `.hlog`; a report on stdout has none unless `--hlog` names one), before anything
    /// connects.
    pub(crate) fn reserve(
        report: Option<&Path>,
        hlog: Option<&Path>,
        html: Option<&Path>,
        inputs: &[&Path],
    ) -> anyhow::Result<Outputs> {
        let report_to_stdout = report == Some(Path::new(STDOUT));
        let report = report.filter(|_| !report_to_stdout);
        let hlog_path = hlog
            .map(Path::to_path_buf)
            .or_else(|| report.map(|r| r.with_extension("hlog")));
        if let (Some(r), Some(h)) = (report, &hlog_path) {
            if r == h.as_path() {
                return Err(UsageError(format!(
                    "--report and --hlog both name {}; give them different paths",
                    r.display()
                ))
                .into());
            }
        }
        let taken = [report, hlog_path.as_deref()];
        if let Some(h) = html.filter(|h| taken.contains(&Some(*h))) {
            return Err(UsageError(format!(
                "--html names {}, which another output takes; give it a path of its own",
                h.display()
            ))
            .into());
        }
        let reserve = |p: &Path, what| Reserved::not_over(p, what, inputs);
        Ok(Outputs {
            report: report.map(|p| reserve(p, "report")).transpose()?,
            html: html.map(|p| reserve(p, "HTML report")).transpose()?,
            report_to_stdout,
            hlog: hlog_path
                .as_deref()
                .map(|p| reserve(p, "interval log"))
                .transpose()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One test at a time touches the process's partial files (one of them removes them all).
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

    fn turn() -> std::sync::MutexGuard<'static, ()> {
        ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
    }

    #[test]
    fn a_directory_or_an_unwritable_place_is_refused_at_once() {
        let _turn = turn();
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Reserved::new(dir.path(), "report")
            .err()
            .expect("a directory");
        assert!(e.to_string().contains("is a directory"), "{e}");
        let e = Reserved::new(Path::new("/proc/fleetbench/report.json"), "report")
            .err()
            .expect("/proc takes no files");
        assert!(e.downcast_ref::<UsageError>().is_some(), "{e}");
    }

    #[test]
    fn a_missing_directory_is_refused_not_made() {
        let _turn = turn();
        let dir = tempfile::tempdir().expect("tempdir");
        let e = Reserved::new(&dir.path().join("no/such/x.html"), "HTML report")
            .err()
            .expect("no such directory");
        assert!(e.to_string().contains("does not exist"), "{e}");
        assert!(!dir.path().join("no").exists(), "nothing was created");
    }

    #[test]
    fn an_output_that_is_an_input_by_any_name_is_refused() {
        let _turn = turn();
        let dir = tempfile::tempdir().expect("tempdir");
        let input = dir.path().join("s.toml");
        std::fs::write(&input, "name = \"x\"\n").expect("write");
        let link = dir.path().join("link.toml");
        std::os::unix::fs::symlink(&input, &link).expect("symlink");
        for out in [&input, &link, &dir.path().join("./s.toml")] {
            let e = Reserved::not_over(out, "report", &[&input])
                .err()
                .expect("the input itself");
            assert!(e.to_string().contains("an input of this command"), "{e}");
        }
        assert_eq!(std::fs::read(&input).expect("read"), b"name = \"x\"\n");
        assert!(Reserved::not_over(&dir.path().join("r.json"), "report", &[&input]).is_ok());
    }

    #[test]
    fn a_signal_leaves_no_partial_file() {
        let _turn = turn();
        let dir = tempfile::tempdir().expect("tempdir");
        let r = Reserved::new(&dir.path().join("r.json"), "report").expect("reserve");
        let partial = r.temp.path().to_path_buf();
        assert!(partial.exists());
        remove_partials();
        assert!(!partial.exists(), "removed as a signal would");
        drop(r);
        assert_eq!(std::fs::read_dir(dir.path()).expect("dir").count(), 0);
    }

    #[test]
    fn the_result_lands_whole_at_its_path_and_nothing_else_stays() {
        let _turn = turn();
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        let path = dir.path().join("sub/report.json");
        let r = Reserved::new(&path, "report").expect("reserve");
        assert_eq!(
            std::fs::read_dir(dir.path().join("sub"))
                .expect("dir")
                .count(),
            1
        );
        r.write(b"{}").expect("write");
        assert_eq!(std::fs::read(&path).expect("read"), b"{}");
        let left: Vec<_> = std::fs::read_dir(dir.path().join("sub"))
            .expect("dir")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(left, vec![std::ffi::OsString::from("report.json")]);
    }
}
