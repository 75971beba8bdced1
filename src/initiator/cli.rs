//! `iscsi-ls`: the targets a portal shows this initiator, each with its
//! LUNs, their type and size. libiscsi's `iscsi-ls -s`, as santools sees it.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::ls::{list, LsReport, DEFAULT_MAX_TARGETS};
use super::settings::{config_exposure_warning, resolve, SessionArgs, UrlSource};
use super::url::{redact_unparsed, IscsiUrl};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging::{self, Verbosity};
use crate::cli::output::print_json;
use crate::config::{Config, DEFAULT_CONFIG_PATH};
use crate::multicall::Tool;

pub const TOOL: Tool = Tool {
    name: "iscsi-ls",
    aliases: &["iscsi_ls"],
    about: "list the targets and LUNs (with sizes) an iSCSI portal shows this initiator",
    command: LsArgs::command,
    run,
};

/// List the targets an iSCSI portal shows this initiator, and their LUNs with type and size
#[derive(Parser, Debug)]
#[command(
    name = "iscsi-ls",
    version,
    after_help = "URL: iscsi://[USER@]HOST[:PORT][/TARGET-IQN[/LUN]] (IPv6 hosts in brackets). CHAP secrets come \
                  from LIBISCSI_CHAP_PASSWORD or the [initiator] section of the configuration, never from the URL.\n\
                  Exit codes: 0 success, 1 a target or LUN could not be examined, 2 error."
)]
pub struct LsArgs {
    /// Portal (or target) to list
    #[arg(value_name = "URL")]
    url: String,
    /// Initiator name [default: [initiator] name, else /etc/iscsi/initiatorname.iscsi]
    #[arg(short = 'i', long = "initiator-name", value_name = "IQN")]
    initiator_name: Option<String>,
    /// Targets only: do not log in to list LUNs
    #[arg(short = 't', long = "targets-only")]
    targets_only: bool,
    /// Log in to at most N targets to list their LUNs (the rest are named, not examined)
    #[arg(long = "max-targets", value_name = "N", default_value_t = DEFAULT_MAX_TARGETS,
          value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    max_targets: u32,
    /// Print JSON
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    common: CommonArgs,
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// The text report.
pub fn render(r: &LsReport) -> String {
    let mut s = String::new();
    for t in &r.targets {
        s.push_str(&format!("Target: {}\n", t.name));
        for a in &t.addresses {
            s.push_str(&format!("  Portal: {a}\n"));
        }
        for l in &t.luns {
            s.push_str(&format!("  LUN {}: {}", l.lun, if l.device_type.is_empty() { "?" } else { &l.device_type }));
            if let (Some(b), Some(bs)) = (l.size_bytes, l.block_size) {
                s.push_str(&format!(", {b} bytes ({}), {bs}-byte blocks", human(b)));
            }
            let id = format!("{} {}", l.vendor, l.product);
            if !id.trim().is_empty() {
                s.push_str(&format!(", {}", id.trim()));
            }
            if let Some(e) = &l.error {
                s.push_str(&format!(", error: {e}"));
            }
            s.push('\n');
        }
        if let Some(e) = &t.error {
            s.push_str(&format!("  error: {e}\n"));
        }
    }
    s
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = LsArgs::from_arg_matches(matches)?;
    let verbosity = if a.session.debug_pdus && a.common.verbosity() != Verbosity::Quiet {
        Verbosity::Debug
    } else {
        a.common.verbosity()
    };
    logging::init("iscsi-ls", verbosity);
    let url = IscsiUrl::parse(&a.url).with_context(|| format!("URL {:?}", redact_unparsed(&a.url)))?;
    let config = Config::load(a.common.config.as_deref())?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let path: PathBuf = a.common.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    if let Some(w) = config_exposure_warning(Path::new(&path), &config.initiator) {
        tracing::warn!("{w}");
    }
    let env = |k: &str| std::env::var(k).ok();
    let options = |u: &IscsiUrl| {
        resolve(u, UrlSource::CommandLine, a.initiator_name.as_deref(), &a.session, &config.initiator, &env)
    };
    let opts = options(&url).with_context(|| format!("URL {}", redact_unparsed(&a.url)))?;
    // Each target listed logs in with its own settings: a portal's
    // targets may have credentials of their own in the configuration (the
    // only part of the settings that depends on the target's name).
    let options_for = |target: &str| {
        let same = url.target.as_deref().map_or(!config.initiator.targets.contains_key(target), |t| t == target);
        if same {
            Ok(opts.clone())
        } else {
            options(&IscsiUrl { target: Some(target.to_string()), ..url.clone() })
        }
    };
    let report = list(&url, &opts, &options_for, !a.targets_only, a.max_targets as usize)?;
    if a.json {
        print_json(&report)?;
    } else {
        use std::io::Write;
        std::io::stdout().lock().write_all(render(&report).as_bytes())?;
    }
    Ok(if report.has_errors() { exit::DIFFERENCES } else { exit::OK })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_redaction() {
        assert_eq!(human(512), "512 B");
        assert_eq!(human(16 << 20), "16.0 MiB");
        assert_eq!(redact_unparsed("iscsi://u%pw@h/x"), "iscsi://u%***@h/x");
        assert_eq!(redact_unparsed("iscsi://h/x"), "iscsi://h/x");
    }
}
