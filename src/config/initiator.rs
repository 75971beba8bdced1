//! `[initiator]`: the iSCSI initiator's name, CHAP credentials (general
//! and per target under `[initiator.targets."IQN"]`), and session limits.
//! Secrets here keep the file private (mode 0600): the tools warn when it
//! is readable by others.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::InvalidValue;
use crate::iscsi::name::{format_problem, name_problem};

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct InitiatorConfig {
    /// Initiator name; default: the InitiatorName in `name_file`.
    pub name: Option<String>,
    /// Where open-iscsi keeps the name [default: /etc/iscsi/initiatorname.iscsi].
    pub name_file: Option<PathBuf>,
    pub chap_username: Option<String>,
    pub chap_password: Option<String>,
    /// The target's credentials: mutual CHAP.
    pub target_chap_username: Option<String>,
    pub target_chap_password: Option<String>,
    pub queue_depth: Option<usize>,
    pub max_transfer_kib: Option<u32>,
    /// none, crc32c, none-crc32c (default) or crc32c-none.
    pub header_digest: Option<String>,
    pub data_digest: Option<String>,
    pub connect_timeout_sec: Option<u64>,
    pub login_timeout_sec: Option<u64>,
    pub io_timeout_sec: Option<u64>,
    pub reconnect_timeout_sec: Option<u64>,
    pub max_reconnects: Option<u32>,
    pub max_redirects: Option<u32>,
    /// Credentials per target name.
    pub targets: BTreeMap<String, TargetCredentials>,
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields, default)]
pub struct TargetCredentials {
    pub chap_username: Option<String>,
    pub chap_password: Option<String>,
    pub target_chap_username: Option<String>,
    pub target_chap_password: Option<String>,
}

impl TargetCredentials {
    fn validate(&self, prefix: &str) -> Result<(), InvalidValue> {
        for (user, pass, u_key, p_key) in [
            (&self.chap_username, &self.chap_password, "chap_username", "chap_password"),
            (&self.target_chap_username, &self.target_chap_password, "target_chap_username", "target_chap_password"),
        ] {
            if let Some(u) = user {
                if u.is_empty() || u.len() > 255 || !u.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(InvalidValue::new(format!("{prefix}{u_key}"), "expected 1-255 printable characters"));
                }
            }
            if pass.as_ref().is_some_and(|p| p.is_empty()) {
                return Err(InvalidValue::new(format!("{prefix}{p_key}"), "must not be empty"));
            }
        }
        Ok(())
    }
}

pub(crate) fn valid_digest(v: &str) -> bool {
    matches!(v.to_ascii_lowercase().as_str(), "none" | "crc32c" | "none-crc32c" | "crc32c-none")
}

impl InitiatorConfig {
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        if let Some(n) = &self.name {
            if let Some(why) = format_problem(n) {
                return Err(InvalidValue::new("initiator.name", format!("expected an iSCSI name: {why}")));
            }
        }
        if let Some(p) = &self.name_file {
            if !p.is_absolute() {
                return Err(InvalidValue::new("initiator.name_file", "expected an absolute path"));
            }
        }
        let general = TargetCredentials {
            chap_username: self.chap_username.clone(),
            chap_password: self.chap_password.clone(),
            target_chap_username: self.target_chap_username.clone(),
            target_chap_password: self.target_chap_password.clone(),
        };
        general.validate("initiator.")?;
        for (name, c) in &self.targets {
            if let Some(why) = name_problem(name) {
                return Err(InvalidValue::new(
                    format!("initiator.targets.\"{name}\""),
                    format!("expected an iSCSI target name: {why}"),
                ));
            }
            c.validate(&format!("initiator.targets.\"{name}\"."))?;
        }
        if self.queue_depth.is_some_and(|q| !(1..=crate::initiator::options::MAX_QUEUE_DEPTH).contains(&q)) {
            return Err(InvalidValue::new("initiator.queue_depth", "expected 1 to 256"));
        }
        if self.max_transfer_kib.is_some_and(|k| !(4..=16384).contains(&k)) {
            return Err(InvalidValue::new("initiator.max_transfer_kib", "expected 4 to 16384"));
        }
        for (key, v) in [("initiator.header_digest", &self.header_digest), ("initiator.data_digest", &self.data_digest)]
        {
            if v.as_deref().is_some_and(|d| !valid_digest(d)) {
                return Err(InvalidValue::new(key, "expected none, crc32c, none-crc32c or crc32c-none"));
            }
        }
        for (key, v) in [
            ("initiator.connect_timeout_sec", self.connect_timeout_sec),
            ("initiator.login_timeout_sec", self.login_timeout_sec),
            ("initiator.io_timeout_sec", self.io_timeout_sec),
            ("initiator.reconnect_timeout_sec", self.reconnect_timeout_sec),
        ] {
            if v.is_some_and(|s| !(1..=3600).contains(&s)) {
                return Err(InvalidValue::new(key, "expected 1 to 3600 seconds"));
            }
        }
        if self.max_redirects.is_some_and(|r| r > 64) {
            return Err(InvalidValue::new("initiator.max_redirects", "expected at most 64"));
        }
        if self.max_reconnects.is_some_and(|r| r > 10_000) {
            return Err(InvalidValue::new("initiator.max_reconnects", "expected at most 10000"));
        }
        Ok(())
    }

    /// Whether any secret is kept here.
    pub fn has_secrets(&self) -> bool {
        self.chap_password.is_some()
            || self.target_chap_password.is_some()
            || self.targets.values().any(|t| t.chap_password.is_some() || t.target_chap_password.is_some())
    }
}
