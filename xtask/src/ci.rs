//! `cargo xtask ci`: what `.ci/run` runs: rustfmt, clippy with warnings denied, the tests.

use crate::cargo;

pub(crate) fn ci() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--check"])?;
    cargo(&[
        "clippy",
        "--workspace",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    crate::test::test()
}
