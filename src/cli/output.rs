//! Results on stdout: JSON reports, written through one locked handle so a
//! closed pipe surfaces as an error the caller maps to exit 0.

use std::io::Write;

/// Prints `value` as pretty JSON and a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer_pretty(&mut out, value)?;
    writeln!(out)?;
    Ok(())
}
