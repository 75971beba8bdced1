//! Exit codes (documented in README.md and each tool's page) and the one
//! place errors are printed.

use std::io;

/// Success.
pub const OK: u8 = 0;
/// The command ran and found differences (`ddless --verify`).
pub const DIFFERENCES: u8 = 1;
/// Any error: bad arguments, bad input, I/O failure, lock held.
pub const ERROR: u8 = 2;
/// `ddless -b`: a new checksum file is required (the seed's exit code 3).
pub const NEW_CHECKSUM_REQUIRED: u8 = 3;

/// True when the error chain ends in a closed stdout (`ddmap -b | head`).
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|c| c.downcast_ref::<io::Error>().is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe))
}

/// `context: cause: cause...`, leaving out a cause whose text the message
/// already ends with (an error that prints its source and also returns it
/// from `source()` would otherwise say it twice).
pub fn error_chain(err: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in err.chain() {
        let c = cause.to_string();
        if c.is_empty() || text.ends_with(&c) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&c);
    }
    text
}

/// Prints `tool: error: context: cause` on stderr and returns the exit
/// code. A broken pipe is not an error for a command whose reader left.
pub fn report_error(tool: &str, err: &anyhow::Error) -> u8 {
    if is_broken_pipe(err) {
        return OK;
    }
    eprintln!("{tool}: error: {}", error_chain(err));
    ERROR
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn causes_are_printed_once() {
        #[derive(Debug, thiserror::Error)]
        #[error("locking /x: {source}")]
        struct Wraps {
            source: io::Error,
        }
        let e = anyhow::Error::new(Wraps { source: io::Error::from_raw_os_error(libc::EROFS) }).context("opening");
        let text = error_chain(&e);
        assert_eq!(text.matches("Read-only file system").count(), 1, "{text}");
        assert!(text.starts_with("opening: locking /x: "), "{text}");
    }
}
