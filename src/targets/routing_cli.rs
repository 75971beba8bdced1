//! `ietd-routing` and `ietd-iptables`: print (never run) the source-routing
//! and iptables commands of the seed's ietd_routing.sh / ietd_iptables.sh.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser, ValueEnum};

use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::multicall::Tool;
use crate::shared::command::shell_quote;
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};
use crate::targets::import::{read_ifcfg, Interface};
use crate::targets::routing;

pub const ROUTING: Tool = Tool {
    name: "ietd-routing",
    aliases: &["ietd_routing"],
    about: "print rt_tables entries, ip route/rule commands and arp_filter for iSCSI source routing",
    command: RoutingArgs::command,
    run: run_routing,
};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum RoutingOp {
    /// rt_tables entries, sysctl, routes and rules
    Start,
    /// the commands that remove the rules and routes
    Stop,
    /// only the rt_tables entries
    Tables,
}

/// Print source-routing configuration from ifcfg files with IET_ROUTE_TABLE (generate, never apply)
#[derive(Parser, Debug)]
#[command(name = "ietd-routing", version)]
struct RoutingArgs {
    #[arg(value_enum)]
    op: RoutingOp,
    /// ifcfg files, or directories whose ifcfg-* files are read
    #[arg(required = true)]
    ifcfg: Vec<PathBuf>,
    /// The first route table number
    #[arg(long, default_value_t = 10)]
    table_base: u32,
    #[command(flatten)]
    common: CommonArgs,
}

fn read_ifaces(paths: &[PathBuf]) -> anyhow::Result<Vec<Interface>> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let mut v: Vec<PathBuf> = std::fs::read_dir(p)
                .with_context(|| format!("reading {}", p.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.file_name().is_some_and(|n| n.to_string_lossy().starts_with("ifcfg-")))
                .collect();
            v.sort();
            files.extend(v);
        } else {
            files.push(p.clone());
        }
    }
    let mut out = Vec::new();
    for f in files {
        let text = read_text(&f, MAX_TEXT_BYTES).with_context(|| format!("reading {}", f.display()))?;
        if let Some(i) = read_ifcfg(&f.display().to_string(), &text)? {
            if let Some(t) = &i.route_table {
                if let Err(e) = routing::check_table_name(t) {
                    bail!("{}: IET_ROUTE_TABLE {e}", f.display());
                }
                if !i.device.chars().all(|c| c.is_ascii_alphanumeric() || "._-:@".contains(c)) {
                    bail!("{}: DEVICE {:?} is not an interface name", f.display(), i.device);
                }
            }
            out.push(i);
        }
    }
    Ok(out)
}

fn line(v: &[String]) -> String {
    v.iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ")
}

fn run_routing(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = RoutingArgs::from_arg_matches(m)?;
    logging::init("ietd-routing", a.common.verbosity());
    let ifaces = read_ifaces(&a.ifcfg)?;
    let mut out = std::io::stdout().lock();
    if matches!(a.op, RoutingOp::Start | RoutingOp::Tables) {
        // Refused before anything is printed; `stop` prints no numbers.
        let tables = routing::rt_tables(&ifaces, a.table_base).map_err(anyhow::Error::msg)?;
        writeln!(out, "# /etc/iproute2/rt_tables")?;
        for (n, t) in &tables {
            writeln!(out, "# {n}\t{t}")?;
        }
    }
    if matches!(a.op, RoutingOp::Tables) {
        return Ok(exit::OK);
    }
    for c in routing::routing_commands(&ifaces, matches!(a.op, RoutingOp::Start)) {
        writeln!(out, "{}", line(&c))?;
    }
    Ok(exit::OK)
}

pub const IPTABLES: Tool = Tool {
    name: "ietd-iptables",
    aliases: &["ietd_iptables"],
    about: "print the iptables lines that block (stop) or unblock (start) the iSCSI port",
    command: IptablesArgs::command,
    run: run_iptables,
};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum IptablesOp {
    /// service start: unblock iSCSI traffic
    Start,
    /// service stop: block iSCSI traffic
    Stop,
    Block,
    Unblock,
}

/// Print the iptables commands that block or unblock iSCSI traffic (generate, never apply)
#[derive(Parser, Debug)]
#[command(name = "ietd-iptables", version)]
struct IptablesArgs {
    #[arg(value_enum)]
    op: IptablesOp,
    /// Limit to this source address or network (e.g. for a fencing device)
    source: Option<String>,
    /// The iSCSI port (the seed's IPTABLES_PORT)
    #[arg(long, default_value_t = 3260, value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    #[command(flatten)]
    common: CommonArgs,
}

fn run_iptables(m: &ArgMatches) -> anyhow::Result<u8> {
    let a = IptablesArgs::from_arg_matches(m)?;
    logging::init("ietd-iptables", a.common.verbosity());
    if let Some(s) = &a.source {
        routing::check_spec(s).map_err(anyhow::Error::msg)?;
    }
    let block = matches!(a.op, IptablesOp::Stop | IptablesOp::Block);
    println!("{}", line(&routing::iptables(block, a.port, a.source.as_deref())));
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding T16 (attack-targets): `--port 0` printed `iptables ... --dport 0`
    /// (the inventory refuses port 0 too).
    #[test]
    fn iptables_port_zero_is_refused() {
        let e = IptablesArgs::command().try_get_matches_from(["ietd-iptables", "block", "--port", "0"]).unwrap_err();
        assert_eq!(e.kind(), clap::error::ErrorKind::ValueValidation);
        IptablesArgs::command().try_get_matches_from(["ietd-iptables", "block", "--port", "65535"]).unwrap();
    }
}
