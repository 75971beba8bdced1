//! `iscsi-portal-query`: the portal address the daemon hands out next for a
//! login, computed with the daemon's own code and state.

use std::net::IpAddr;
use std::sync::atomic::AtomicBool;

use anyhow::bail;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::load_portal_config;
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::cli::output::print_json;
use crate::iscsi::name::is_valid_name;
use crate::multicall::Tool;
use crate::portal::nodes::Nodes;
use crate::portal::redirect::{RedirectDecision, RedirectRequest};
use crate::portal::state_store::StateStore;

pub const TOOL: Tool = Tool {
    name: "iscsi-portal-query",
    aliases: &["iscsi_portal_query"],
    about: "print the target portal the iSCSI portal hands out next for a login",
    command: QueryArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Uses (and advances) the daemon's rotation state under state_directory for the
discovery portal PORTAL_IP reaches, exactly as a login there would (only that portal
group's node portals), but answers at once instead of waiting out a failover.
Exit codes: 0 an address was printed, 1 the target is removed or found on no node, 2 error.";

/// Print the target portal address the iSCSI portal hands out next for a login
#[derive(Parser, Debug)]
#[command(name = "iscsi-portal-query", version, after_help = AFTER_HELP)]
pub struct QueryArgs {
    /// Initiator's IP address (for the log)
    source_ip: IpAddr,
    /// Portal address the initiator connects to
    portal_ip: IpAddr,
    /// Initiator name
    initiator: String,
    /// Target name
    target: String,
    /// Log every PDU exchanged with the nodes
    #[arg(short = 'd', long = "debug-pdus")]
    debug_pdus: bool,
    /// Print the answer as JSON
    #[arg(long = "json")]
    json: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(serde::Serialize)]
struct QueryAnswer<'a> {
    source_ip: IpAddr,
    discovery_portal: IpAddr,
    initiator: &'a str,
    target: &'a str,
    decision: &'static str,
    target_address: Option<String>,
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = QueryArgs::from_arg_matches(matches)?;
    logging::init("iscsi-portal-query", if a.debug_pdus { logging::Verbosity::Debug } else { a.common.verbosity() });
    for (what, name) in [("initiator", &a.initiator), ("target", &a.target)] {
        if !is_valid_name(name) {
            bail!("{what} name {name:?} is not an iSCSI name (iqn., eui. or naa.)");
        }
    }
    let config = load_portal_config(a.common.config.as_deref())?;
    let Some(dp) = config.discovery_portal_for(a.portal_ip) else {
        bail!("no [[portal.discovery_portals]] entry has address {}", a.portal_ip);
    };
    let store = StateStore::new(&config.state_directory);
    let nodes = Nodes::default();
    let stop = AtomicBool::new(false);
    let decision = RedirectRequest {
        config: &config,
        portal: dp,
        store: &store,
        nodes: &nodes,
        initiator: &a.initiator,
        target: &a.target,
        log_pdus: a.debug_pdus,
        wait_for_failover: false,
        stop: &stop,
        invalidated_at: 0,
        client: None,
    }
    .decide()?;
    let (label, addr) = match &decision {
        RedirectDecision::Redirect(addr) => ("redirect", Some(addr.to_string())),
        RedirectDecision::Removed => ("removed", None),
        RedirectDecision::NotFound { .. } => ("not-found", None),
    };
    if a.json {
        print_json(&QueryAnswer {
            source_ip: a.source_ip,
            discovery_portal: dp.address,
            initiator: &a.initiator,
            target: &a.target,
            decision: label,
            target_address: addr.clone(),
        })?;
    } else if let Some(addr) = &addr {
        println!("{addr}");
    }
    match decision {
        RedirectDecision::Redirect(_) => Ok(exit::OK),
        RedirectDecision::Removed => {
            tracing::warn!("target {} is on targets_removed: logins are refused", a.target);
            Ok(exit::DIFFERENCES)
        }
        RedirectDecision::NotFound { no_answer: Some(silent), .. } => {
            tracing::warn!("no node behind {} answered ({silent})", dp.address);
            Ok(exit::DIFFERENCES)
        }
        RedirectDecision::NotFound { no_answer: None, .. } => {
            tracing::warn!(
                "target {} is served by no node behind {} for initiator {}",
                a.target,
                dp.address,
                a.initiator
            );
            Ok(exit::DIFFERENCES)
        }
    }
}
