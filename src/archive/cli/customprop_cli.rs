//! `zfs-customprop-set` / `zfs-customprop-del` (seed:
//! zfs_customprop_set.sh / zfs_customprop_del.sh): set or remove a santools
//! property (`<ns>:key`) on an archive volume or snapshot, on any backend.

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::{load_settings, open_log};
use crate::archive::names::{check_property_value, ObjectRef, PropertyName};
use crate::archive::settings::ArchiveSettings;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::multicall::Tool;

pub const SET_TOOL: Tool = Tool {
    name: "zfs-customprop-set",
    aliases: &["zfs_customprop_set", "zfs_customprop_set.sh"],
    about: "set a santools property on an archive volume or snapshot",
    command: SetArgs::command,
    run: run_set,
};

pub const DEL_TOOL: Tool = Tool {
    name: "zfs-customprop-del",
    aliases: &["zfs_customprop_del", "zfs_customprop_del.sh"],
    about: "remove a santools property from an archive volume or snapshot",
    command: DelArgs::command,
    run: run_del,
};

const SET_HELP: &str = "\
Examples:
  zfs-customprop-set tank/iscsi_lv_mail_bk snaprotate_schedule SNAP_ROTATE_A
  zfs-customprop-set tank/iscsi_lv_mail_bk@2011-03-29_23:00:01 edu.amherst:note 'keep for audit'

KEY is `key` (the configured namespace is added: <ns>:key) or `<ns>:key`; only the
archive's own namespace may be written. Values are printable ASCII, at most 1024
bytes. Exit codes: 0 success, 2 error.";

const DEL_HELP: &str = "\
Examples:
  zfs-customprop-del tank/iscsi_lv_mail_bk snaprotate_schedule
  zfs-customprop-del tank/iscsi_lv_mail_bk@2011-03-29_23:00:01 note

Exit codes: 0 success, 2 error.";

/// Set a santools property on an archive volume or snapshot
#[derive(Parser, Debug)]
#[command(name = "zfs-customprop-set", version, after_help = SET_HELP)]
pub struct SetArgs {
    /// POOL/VOLUME or POOL/VOLUME@SNAPSHOT
    #[arg(value_name = "OBJECT")]
    object: String,
    /// The property: key or <ns>:key
    #[arg(value_name = "KEY")]
    key: String,
    #[arg(value_name = "VALUE")]
    value: String,
    #[command(flatten)]
    common: CommonArgs,
}

/// Remove a santools property from an archive volume or snapshot
#[derive(Parser, Debug)]
#[command(name = "zfs-customprop-del", version, after_help = DEL_HELP)]
pub struct DelArgs {
    /// POOL/VOLUME or POOL/VOLUME@SNAPSHOT
    #[arg(value_name = "OBJECT")]
    object: String,
    /// The property: key or <ns>:key
    #[arg(value_name = "KEY")]
    key: String,
    #[command(flatten)]
    common: CommonArgs,
}

/// `key` or `<ns>:key`, in the configured namespace only.
pub fn property(settings: &ArchiveSettings, key: &str) -> anyhow::Result<PropertyName> {
    let full = if key.contains(':') { key.to_string() } else { format!("{}:{key}", settings.ns.as_str()) };
    let p = PropertyName::new(&full)?;
    if !full.starts_with(&format!("{}:", settings.ns.as_str())) {
        anyhow::bail!(
            "{full}: only properties of the archive's namespace ({}:...) can be changed",
            settings.ns.as_str()
        );
    }
    Ok(p)
}

fn change(common: &CommonArgs, object: &str, key: &str, value: Option<&str>) -> anyhow::Result<u8> {
    let settings = load_settings(common.config.as_deref())?;
    let o = ObjectRef::parse(object)?;
    let prop = property(&settings, key)?;
    if let Some(v) = value {
        check_property_value(v)?;
    }
    let store = settings
        .store(&o.volume.pool)
        .ok_or_else(|| anyhow::anyhow!("pool {} is not configured under [archive.pools]", o.volume.pool))?;
    let log = open_log(&settings, "customprop");
    match value {
        Some(v) => {
            store.set_property(&o.volume.volume, o.snapshot.as_ref(), &prop, v)?;
            log.line("customprop", &format!("{o}: set {prop}={v}"));
        }
        None => {
            store.remove_property(&o.volume.volume, o.snapshot.as_ref(), &prop)?;
            log.line("customprop", &format!("{o}: removed {prop}"));
        }
    }
    Ok(exit::OK)
}

fn run_set(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = SetArgs::from_arg_matches(matches)?;
    logging::init("zfs-customprop-set", args.common.verbosity());
    change(&args.common, &args.object, &args.key, Some(&args.value))
}

fn run_del(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = DelArgs::from_arg_matches(matches)?;
    logging::init("zfs-customprop-del", args.common.verbosity());
    change(&args.common, &args.object, &args.key, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_trees_are_consistent() {
        SetArgs::command().debug_assert();
        DelArgs::command().debug_assert();
    }
}
