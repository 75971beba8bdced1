//! Flags every tool shares, with the same spelling everywhere.

use std::path::PathBuf;

use clap::Args;

use crate::cli::logging::Verbosity;

#[derive(Args, Debug, Clone, Default)]
pub struct CommonArgs {
    /// More log output on stderr (-v: progress lines as in the seed, -vv: debug)
    #[arg(short = 'v', long = "verbose", action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Only errors on stderr; no progress bar
    #[arg(short = 'q', long = "quiet", global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Configuration file [default: /etc/santools/santools.toml if it exists]
    #[arg(long = "config", value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,
}

impl CommonArgs {
    pub fn verbosity(&self) -> Verbosity {
        Verbosity::from_flags(self.verbose, self.quiet)
    }
}
