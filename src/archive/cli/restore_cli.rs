//! `restore` (seed: iet_restore.plx / eql_restore.plx): a snapshot back onto
//! a new file or, explicitly, a block device.

use std::ffi::OsString;
use std::num::NonZeroUsize;
use std::time::Duration;

use anyhow::Context;

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::{load_settings_iscsi, open_log, wait_secs, workers, Bar, Initiator};
use crate::archive::names::ObjectRef;
use crate::archive::restore::{restore, RestoreOptions};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::initiator::settings::{SessionArgs, UrlSource};
use crate::multicall::Tool;
use crate::volume::VolumeSpec;

pub const TOOL: Tool = Tool {
    name: "restore",
    aliases: &["iet_restore", "eql_restore"],
    about: "restore an archive snapshot onto a new file or a device",
    command: RestoreArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Examples:
  restore -s tank/iscsi_lv_vol00_bk -t /srv/lv_vol00.img
          the newest snapshot onto a new file
  restore -s tank/iscsi_lv_vol00_bk@2011-03-29_23:00:01 -t /dev/vg9/lv_new --overwrite-device
  restore -s tank/iscsi_lv_vol00_bk -t iscsi://10.0.0.5/iqn.2001-04.com.example:vol00/1 --overwrite-device
          onto an iSCSI LUN with santools' initiator (CHAP secrets from [initiator]
          or LIBISCSI_CHAP_PASSWORD, never in the URL on the command line)

Never overwrites: a file target must not exist; a device or LUN needs
--overwrite-device, must be at least the snapshot's size, and a device must
not be mounted. An interrupted
restore resumes when run again with the same arguments. The target is read back
and checked against the snapshot's checksum history.
Exit codes: 0 success, 2 error.";

/// Restore an archive snapshot onto a new file or a device
#[derive(Parser, Debug)]
#[command(name = "restore", version, after_help = AFTER_HELP)]
pub struct RestoreArgs {
    /// POOL/VOLUME or POOL/VOLUME@SNAPSHOT (default: the newest snapshot)
    #[arg(short = 's', long = "source", value_name = "POOL/VOLUME[@SNAPSHOT]")]
    source: String,
    /// The new file, or a block device or iscsi://HOST[:PORT]/TARGET-IQN/LUN (with --overwrite-device)
    #[arg(short = 't', long = "target", value_name = "TARGET")]
    target: OsString,
    /// Allow writing onto an existing block device or iSCSI LUN
    #[arg(long = "overwrite-device")]
    overwrite_device: bool,
    /// ddless reader threads [default: archive.ddless_workers]
    #[arg(short = 'w', long = "workers", value_name = "N", value_parser = workers)]
    workers: Option<usize>,
    /// Wait up to SECONDS for the volume if another run holds it
    #[arg(long = "wait", value_name = "SECONDS", value_parser = wait_secs, default_value = "0")]
    wait: Duration,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    /// iSCSI initiator name for an iscsi:// target [default: [initiator] name, else /etc/iscsi/initiatorname.iscsi]
    #[arg(long = "initiator-name", value_name = "IQN")]
    initiator_name: Option<String>,
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    common: CommonArgs,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = RestoreArgs::from_arg_matches(matches)?;
    logging::init("restore", args.common.verbosity());
    let source = ObjectRef::parse(&args.source)?;
    let iscsi = VolumeSpec::is_iscsi_arg(&args.target);
    let uses = if iscsi { Initiator::Used } else { Initiator::Unused };
    let settings = load_settings_iscsi(args.common.config.as_deref(), uses)?;
    let target = VolumeSpec::resolve(
        &args.target,
        UrlSource::CommandLine,
        args.initiator_name.as_deref(),
        &args.session,
        &settings.initiator,
    )
    .with_context(|| format!("target {}", crate::initiator::url::redact_unparsed(&args.target.to_string_lossy())))?;
    let log = open_log(&settings, "restore");
    let bar = Bar::new(args.common.quiet, "restore");
    let opts = RestoreOptions {
        source,
        target,
        overwrite_device: args.overwrite_device,
        lock_wait: args.wait,
        workers: args.workers.and_then(NonZeroUsize::new).unwrap_or(settings.ddless_workers),
    };
    let report = match restore(&settings, &opts, bar.get(), &log) {
        Ok(r) => r,
        Err(e) => {
            log.record("restore", &format!("error: {e:#}"));
            return Err(e);
        }
    };
    drop(bar);
    if args.json {
        print_json(&report)?;
    } else {
        println!(
            "restored {} onto {}: {} bytes, {} segments written{}, verified against the {}",
            report.snapshot,
            report.target,
            report.size,
            report.segments_changed,
            if report.resumed { " (resumed)" } else { "" },
            report.verified_against
        );
    }
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        RestoreArgs::command().debug_assert();
    }
}
