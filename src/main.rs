//! The santools multi-call binary: dispatch only, all logic is in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    santools::cli::broken_pipe::install();
    ExitCode::from(santools::multicall::main_with_args(std::env::args_os().collect()))
}
