//! Front-end plumbing shared by every tool: exit codes and error reports,
//! the log format, the terminal progress bar, and the common flags.

pub mod broken_pipe;
pub mod common_args;
pub mod exit;
pub mod logging;
pub mod output;
pub mod progress;
