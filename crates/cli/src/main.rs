use std::process::ExitCode;

use clap::Parser;

/// jemalloc, not glibc's malloc: the embedded broker allocates and frees per-connection
/// buffers from many threads, and glibc's per-thread arenas kept the freed memory, so a soak's
/// resident memory crept up for as long as it ran (docs/PERFORMANCE.md, "Runs that last").
/// Without the `jemalloc` feature the binary uses malloc, which heap profilers can follow.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let opts = fleetbench::Opts::parse();
    fleetbench::main_with(opts)
}
