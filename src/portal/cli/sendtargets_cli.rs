//! `iscsi-portal-sendtargets`: SendTargets=All against every node portal as
//! a given initiator, to see what each node shows it (debugging ACLs).

use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};
use serde::Serialize;

use super::load_portal_config;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::iscsi::name::is_valid_name;
use crate::multicall::Tool;
use crate::portal::node_budget::Priority;
use crate::portal::nodes::{NodeQuery, Nodes};
use crate::portal::upstream::DiscoveredTarget;

pub const TOOL: Tool = Tool {
    name: "iscsi-portal-sendtargets",
    aliases: &["iscsi_portal_sendtargets"],
    about: "list what each target node portal shows an initiator (SendTargets=All)",
    command: SendTargetsArgs::command,
    run,
};

/// Ask every target node portal what it shows an initiator (SendTargets=All)
#[derive(Parser, Debug)]
#[command(
    name = "iscsi-portal-sendtargets",
    version,
    after_help = "Exit codes: 0 success, 1 a node portal did not answer, 2 error."
)]
pub struct SendTargetsArgs {
    /// Initiator name to discover as
    #[arg(short = 'i', long = "initiator", value_name = "IQN", required_unless_present = "list")]
    initiator: Option<String>,
    /// List portal groups and their discovery addresses
    #[arg(short = 'l', long = "list")]
    list: bool,
    /// Log every PDU
    #[arg(short = 'd', long = "debug-pdus")]
    debug_pdus: bool,
    /// Print JSON
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Serialize)]
struct PortalReport {
    portal_group_name: String,
    discovery_address: String,
    node: String,
    node_portal: String,
    targets: Vec<DiscoveredTarget>,
    error: Option<String>,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = SendTargetsArgs::from_arg_matches(matches)?;
    logging::init(
        "iscsi-portal-sendtargets",
        if a.debug_pdus { logging::Verbosity::Debug } else { a.common.verbosity() },
    );
    let config = load_portal_config(a.common.config.as_deref())?;
    if a.list {
        for d in &config.discovery_portals {
            println!("{} {}", d.portal_group_name, d.address);
        }
        return Ok(exit::OK);
    }
    let Some(initiator) = a.initiator.as_deref() else {
        anyhow::bail!("-i INITIATOR is required");
    };
    if !is_valid_name(initiator) {
        anyhow::bail!(
            "initiator name \"{}\" is not an iSCSI name (iqn., eui. or naa.; letters, digits and . - : _)",
            crate::portal::access_log::Esc(initiator)
        );
    }
    let nodes = Nodes::default();
    let mut reports = Vec::new();
    for d in &config.discovery_portals {
        let q = NodeQuery {
            config: &config,
            portal: d,
            initiator,
            query: "All",
            max_age: std::time::Duration::ZERO,
            priority: Priority::Interactive,
            hops: 0,
            log_pdus: a.debug_pdus,
        };
        for ans in nodes.query(&q) {
            let (targets, error) = match ans.targets {
                Ok(t) => (t.as_ref().clone(), None),
                Err(e) => (Vec::new(), Some(e)),
            };
            reports.push(PortalReport {
                portal_group_name: d.portal_group_name.clone(),
                discovery_address: d.address.to_string(),
                node: ans.node,
                node_portal: ans.addr.to_string(),
                targets,
                error,
            });
        }
    }
    if a.json {
        print_json(&reports)?;
    } else {
        for r in &reports {
            println!(
                "portal group {} (discovery {}) node {} portal {}",
                r.portal_group_name, r.discovery_address, r.node, r.node_portal
            );
            if let Some(e) = &r.error {
                println!("  error: {e}");
            }
            for t in &r.targets {
                let addrs: Vec<String> = t.addresses.iter().map(|x| x.to_string()).collect();
                println!("  target {} {}", t.name, addrs.join(" "));
            }
        }
    }
    Ok(if reports.iter().any(|r| r.error.is_some()) { exit::DIFFERENCES } else { exit::OK })
}
