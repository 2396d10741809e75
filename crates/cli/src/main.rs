use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let opts = fleetbench::Opts::parse();
    fleetbench::main_with(opts)
}
