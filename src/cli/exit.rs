//! Exit codes (documented in README.md and each tool's page) and the one
//! place errors are printed.

use std::io;

/// Success.
pub const OK: u8 = 0;
/// The command ran and found differences (`ddless --verify`).
pub const DIFFERENCES: u8 = 1;
/// Any error: bad arguments, bad input, I/O failure, lock held.
pub const ERROR: u8 = 2;

/// True when the error chain ends in a closed stdout (`ddmap -b | head`).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// Prints `tool: error: context: cause` on stderr and returns the exit
/// code. A broken pipe is not an error for a command whose reader left.
pub fn report_error(tool: &str, err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        return OK;
    }
    eprintln!("{tool}: error: {err:#}");
    ERROR
}
