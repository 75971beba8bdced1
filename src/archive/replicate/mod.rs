//! Replication between archive hosts (`zfs-copy`): [`plan`] decides which
//! stream brings the target up to the source snapshot (pure), [`endpoint`]
//! lists, holds and streams on a local store or, over ssh, through
//! `santools zfs-copy-agent` on another host, [`transport`] is the data
//! path (relay, direct TCP with a one-time token), [`run`] carries a copy
//! out and moves the holds.

pub mod agent;
pub mod endpoint;
pub mod plan;
pub mod run;
pub mod transport;

use std::path::PathBuf;
use std::time::Duration;

use crate::config::archive::CopyConfig;
use crate::config::InvalidValue;
use crate::shared::command::SshTarget;

#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Ssh,
    Tcp,
}

impl std::str::FromStr for Transport {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "ssh" => Ok(Transport::Ssh),
            "tcp" => Ok(Transport::Tcp),
            o => Err(format!("must be \"ssh\" or \"tcp\", got {o:?}")),
        }
    }
}

/// `[archive.copy]`, checked.
#[derive(Clone, Debug)]
pub struct CopySettings {
    pub transport: Transport,
    pub ports: (u16, u16),
    pub timeout: Duration,
    pub remote_santools: String,
    pub remote_config: Option<PathBuf>,
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_identity: Option<PathBuf>,
    pub ssh_options: Vec<String>,
    pub data_address: Option<String>,
}

impl CopySettings {
    pub fn from_config(c: &CopyConfig) -> Result<Self, InvalidValue> {
        let transport = c.transport.parse().map_err(|e| InvalidValue::new("archive.copy.transport", e))?;
        let ports = transport::parse_ports(&c.ports).map_err(|e| InvalidValue::new("archive.copy.ports", e))?;
        if !(1..=86_400).contains(&c.timeout_sec) {
            return Err(InvalidValue::new("archive.copy.timeout_sec", "must be between 1 and 86400"));
        }
        if c.remote_santools.is_empty() || c.remote_santools.starts_with('-') {
            return Err(InvalidValue::new("archive.copy.remote_santools", "must be a program name or path"));
        }
        for (i, o) in c.ssh_options.iter().enumerate() {
            let (k, _) = o.split_once('=').ok_or_else(|| {
                InvalidValue::new(format!("archive.copy.ssh_options[{i}]"), format!("{o:?} is not KEY=VALUE"))
            })?;
            if k.eq_ignore_ascii_case("StrictHostKeyChecking") || k.eq_ignore_ascii_case("BatchMode") {
                return Err(InvalidValue::new(
                    format!("archive.copy.ssh_options[{i}]"),
                    format!("{k} is always on (host keys are checked, nothing prompts)"),
                ));
            }
        }
        if let Some(a) = &c.data_address {
            if a.parse::<std::net::IpAddr>().is_err() {
                return Err(InvalidValue::new("archive.copy.data_address", format!("{a:?} is not an IP address")));
            }
        }
        Ok(CopySettings {
            transport,
            ports,
            timeout: Duration::from_secs(c.timeout_sec),
            remote_santools: c.remote_santools.clone(),
            remote_config: c.remote_config.clone(),
            ssh_user: c.ssh_user.clone(),
            ssh_port: c.ssh_port,
            ssh_identity: c.ssh_identity.clone(),
            ssh_options: c.ssh_options.clone(),
            data_address: c.data_address.clone(),
        })
    }

    /// The ssh destination for `host`: BatchMode (the runner), host keys
    /// checked, keep-alives so a dead peer is noticed.
    pub fn ssh(&self, host: &str) -> SshTarget {
        let mut t = SshTarget::new(host)
            .option("StrictHostKeyChecking=yes")
            .option("ServerAliveInterval=15")
            .option("ServerAliveCountMax=4")
            .option(format!("ConnectTimeout={}", self.timeout.as_secs().min(60)));
        if let Some(u) = &self.ssh_user {
            t = t.user(u.clone());
        }
        if let Some(p) = self.ssh_port {
            t = t.port(p);
        }
        if let Some(i) = &self.ssh_identity {
            t = t.identity(i.clone());
        }
        for o in &self.ssh_options {
            t = t.option(o.clone());
        }
        t
    }
}
