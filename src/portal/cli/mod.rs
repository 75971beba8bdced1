//! Command lines of the portal family.

pub mod daemon_cli;
pub mod query_cli;
pub mod sendtargets_cli;

use std::path::Path;

use anyhow::Context;

use crate::config::{Config, PortalConfig, Section};

/// Loads the configuration and insists on a `[portal]` section. Errors in
/// other tools' sections are warnings: a typo in `[ddless]` or `[archive]`
/// must not stop (or refuse the reload of) the portal.
pub(crate) fn load_portal_config(path: Option<&Path>) -> anyhow::Result<PortalConfig> {
    let config = Config::load_for(path, &[Section::Portal])?;
    for w in &config.warnings {
        // The daemon sets up its log (stderr or syslog) only after loading.
        if tracing::dispatcher::has_been_set() {
            tracing::warn!("{w}");
        } else {
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "iscsi-portal: warning: {w}");
        }
    }
    let missing = config.missing_section("portal");
    config.portal.context(missing)
}
