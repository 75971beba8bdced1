//! Command lines of the portal family.

pub mod daemon_cli;
pub mod query_cli;
pub mod sendtargets_cli;

use std::path::Path;

use anyhow::Context;

use crate::config::{Config, PortalConfig};

/// Loads the configuration and insists on a `[portal]` section.
pub(crate) fn load_portal_config(path: Option<&Path>) -> anyhow::Result<PortalConfig> {
    let config = Config::load(path)?;
    let shown = path.map_or_else(|| crate::config::DEFAULT_CONFIG_PATH.to_string(), |p| p.display().to_string());
    config.portal.with_context(|| format!("configuration {shown} has no [portal] section (see examples/santools.toml)"))
}
