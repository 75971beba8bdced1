//! One side of a copy: a store on this host, or a pool on another host
//! reached through ssh, where `santools zfs-copy-agent` does the same
//! operations on its own store (argument vectors quoted once by the
//! runner; BatchMode, host keys checked).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use super::plan::Snap;
use super::CopySettings;
use crate::archive::names::{HoldTag, ObjectRef, PoolName, SnapshotName, VolumeName};
use crate::archive::store::{ArchiveStore, StoreError};
use crate::shared::command::{Command, SshTarget};

/// `[[USER@]HOST:]REST`: a host is the part before the first `:` when that
/// part has no `/` (snapshot names contain `:` themselves, but always after
/// `POOL/VOLUME@`, so a local object has a `/` before its first `:`). A
/// `USER@` needs both sides non-empty and only one `@`.
pub fn split_host(text: &str) -> (Option<&str>, &str) {
    let user_host_ok = |h: &str| match h.split_once('@') {
        Some((u, host)) => !u.is_empty() && !host.is_empty() && !host.contains('@'),
        None => true,
    };
    match text.split_once(':') {
        Some((h, rest)) if !h.is_empty() && !h.contains('/') && user_host_ok(h) && !rest.is_empty() => (Some(h), rest),
        _ => (None, text),
    }
}

/// zfs-copy moves send streams (zfs, btrfs): a pool whose backend has
/// none (a plain directory) is refused before anything is held or sent.
pub fn check_can_copy(store: &dyn ArchiveStore) -> anyhow::Result<()> {
    if store.capabilities().send_receive {
        return Ok(());
    }
    anyhow::bail!(
        "{} cannot send or receive snapshots: zfs-copy copies between ZFS pools or between btrfs pools",
        store.describe()
    )
}

/// A zfs stream cannot be received by btrfs nor the other way round.
pub fn check_same_format(src: &Listing, dst: &Listing, src_name: &str, dst_name: &str) -> anyhow::Result<()> {
    match (&src.format, &dst.format) {
        (Some(a), Some(b)) if a != b => anyhow::bail!(
            "{src_name} is on a {a} pool and {dst_name} on a {b} pool: a {a} send stream cannot be received there"
        ),
        _ => Ok(()),
    }
}

/// A side as given on the command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Side {
    pub host: Option<String>,
    pub pool: PoolName,
    pub volume: Option<VolumeName>,
    pub snapshot: Option<SnapshotName>,
}

impl Side {
    /// `[HOST:]POOL/VOLUME[@SNAPSHOT]`
    pub fn object(text: &str) -> anyhow::Result<Side> {
        let (host, rest) = split_host(text);
        let o = ObjectRef::parse(rest)?;
        Ok(Side {
            host: host.map(str::to_string),
            pool: o.volume.pool,
            volume: Some(o.volume.volume),
            snapshot: o.snapshot,
        })
    }

    /// `[HOST:]POOL` (the target of `-p`).
    pub fn pool(text: &str) -> anyhow::Result<Side> {
        let (host, rest) = split_host(text);
        Ok(Side { host: host.map(str::to_string), pool: PoolName::new(rest)?, volume: None, snapshot: None })
    }

    pub fn describe(&self) -> String {
        let mut s = match &self.host {
            Some(h) => format!("{h}:{}", self.pool),
            None => self.pool.to_string(),
        };
        if let Some(v) = &self.volume {
            s.push_str(&format!("/{v}"));
        }
        if let Some(n) = &self.snapshot {
            s.push_str(&format!("@{n}"));
        }
        s
    }
}

/// What `list` returns (also the agent's JSON).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Listing {
    pub exists: bool,
    pub snapshots: Vec<ListedSnapshot>,
    /// The pool's send stream kind ("zfs", "btrfs"); absent from agents
    /// before btrfs replication.
    #[serde(default)]
    pub format: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ListedSnapshot {
    pub name: String,
    pub guid: Option<String>,
    pub holds: Vec<String>,
}

impl Listing {
    pub fn snaps(&self) -> Vec<Snap> {
        self.snapshots.iter().map(|s| Snap { name: s.name.clone(), guid: s.guid.clone() }).collect()
    }
}

/// Lists a volume on a local store.
pub fn list_local(store: &dyn ArchiveStore, v: &VolumeName) -> Result<Listing, StoreError> {
    let format = store.stream_format().map(str::to_string);
    Ok(match store.snapshot_ids(v)? {
        None => Listing { format, ..Listing::default() },
        Some(snaps) => Listing {
            exists: true,
            snapshots: snaps
                .into_iter()
                .map(|s| ListedSnapshot { name: s.name.to_string(), guid: s.guid, holds: s.holds })
                .collect(),
            format,
        },
    })
}

#[derive(Clone)]
pub enum Endpoint {
    Local(Arc<dyn ArchiveStore>),
    Remote {
        host: String,
        ssh: SshTarget,
        santools: String,
        config: Option<PathBuf>,
        pool: PoolName,
        timeout: Duration,
    },
}

impl Endpoint {
    pub fn new(side: &Side, local: Option<Arc<dyn ArchiveStore>>, s: &CopySettings) -> anyhow::Result<Endpoint> {
        match &side.host {
            None => Ok(Endpoint::Local(local.with_context(|| {
                format!("pool {} is not configured under [archive.pools] on this host", side.pool)
            })?)),
            Some(h) => Ok(Endpoint::Remote {
                host: h.clone(),
                ssh: s.ssh(h),
                santools: s.remote_santools.clone(),
                config: s.remote_config.clone(),
                pool: side.pool.clone(),
                timeout: s.timeout.max(Duration::from_secs(60)),
            }),
        }
    }

    pub fn is_local(&self) -> bool {
        matches!(self, Endpoint::Local(_))
    }

    /// The agent on the far side: `santools zfs-copy-agent [--config F] ARGS`.
    pub fn agent<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let Endpoint::Remote { ssh, santools, config, .. } = self else {
            unreachable!("agent() is only called for remote endpoints")
        };
        let mut c = Command::new(santools).arg("zfs-copy-agent");
        if let Some(cfg) = config {
            c = c.arg("--config").arg(cfg);
        }
        c.args(args).ssh(ssh.clone())
    }

    fn remote_json<T: for<'de> Deserialize<'de>>(&self, args: Vec<String>) -> anyhow::Result<T> {
        let Endpoint::Remote { timeout, .. } = self else { unreachable!() };
        let out = self.agent(args).timeout(*timeout).max_stdout(64 << 20).run()?;
        let text = out.stdout_str()?;
        serde_json::from_str(text.trim()).with_context(|| format!("unexpected answer from zfs-copy-agent: {text:?}"))
    }

    fn pool_arg(&self) -> String {
        match self {
            Endpoint::Local(s) => s.pool().to_string(),
            Endpoint::Remote { pool, .. } => pool.to_string(),
        }
    }

    pub fn list(&self, v: &VolumeName) -> anyhow::Result<Listing> {
        match self {
            Endpoint::Local(s) => Ok(list_local(s.as_ref(), v)?),
            Endpoint::Remote { .. } => self.remote_json(vec!["list".into(), self.pool_arg(), v.to_string()]),
        }
    }

    pub fn hold(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> anyhow::Result<()> {
        match self {
            Endpoint::Local(st) => Ok(st.hold(v, s, tag)?),
            Endpoint::Remote { .. } => {
                let _: serde_json::Value = self.remote_json(vec![
                    "hold".into(),
                    self.pool_arg(),
                    v.to_string(),
                    s.to_string(),
                    tag.to_string(),
                ])?;
                Ok(())
            }
        }
    }

    pub fn release(&self, v: &VolumeName, s: &SnapshotName, tag: &HoldTag) -> anyhow::Result<bool> {
        match self {
            Endpoint::Local(st) => Ok(st.release(v, s, tag)?),
            Endpoint::Remote { .. } => {
                let r: serde_json::Value = self.remote_json(vec![
                    "release".into(),
                    self.pool_arg(),
                    v.to_string(),
                    s.to_string(),
                    tag.to_string(),
                ])?;
                Ok(r["released"].as_bool().unwrap_or(false))
            }
        }
    }

    pub fn rollback(&self, v: &VolumeName, s: &SnapshotName) -> anyhow::Result<()> {
        match self {
            Endpoint::Local(st) => Ok(st.rollback(v, s)?),
            Endpoint::Remote { .. } => {
                let _: serde_json::Value =
                    self.remote_json(vec!["rollback".into(), self.pool_arg(), v.to_string(), s.to_string()])?;
                Ok(())
            }
        }
    }

    /// Arguments of the agent's `send` for this stream.
    pub fn send_args(
        &self,
        v: &VolumeName,
        s: &SnapshotName,
        from: Option<&SnapshotName>,
        intermediates: bool,
        tree: bool,
    ) -> Vec<String> {
        let mut a = vec!["send".into(), self.pool_arg(), v.to_string(), s.to_string()];
        if let Some(f) = from {
            a.extend(["--from".into(), f.to_string()]);
        }
        if intermediates {
            a.push("--intermediates".into());
        }
        if tree {
            a.push("--tree".into());
        }
        a
    }

    /// Arguments of the agent's `receive`.
    pub fn receive_args(&self, v: Option<&VolumeName>, force: bool) -> Vec<String> {
        let mut a = vec!["receive".into(), self.pool_arg()];
        if let Some(v) = v {
            a.push(v.to_string());
        }
        if force {
            a.push("--force".into());
        }
        a
    }

    /// The host name data connections go to (remote) or None (this host).
    pub fn host(&self) -> Option<&str> {
        match self {
            Endpoint::Local(_) => None,
            Endpoint::Remote { host, .. } => Some(host.split_once('@').map(|(_, h)| h).unwrap_or(host)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_told_apart_from_snapshot_colons() {
        assert_eq!(split_host("tank/v@2011-03-29_23:00:01"), (None, "tank/v@2011-03-29_23:00:01"));
        assert_eq!(split_host("host2:tank/v@2011-03-29_23:00:01"), (Some("host2"), "tank/v@2011-03-29_23:00:01"));
        assert_eq!(split_host("host2:tank"), (Some("host2"), "tank"));
        assert_eq!(split_host("tank"), (None, "tank"));
        let s = Side::object("root@10.0.0.2:tank/iscsi_lv_bk@2011-03-29_23:00:01").unwrap();
        assert_eq!(s.host.as_deref(), Some("root@10.0.0.2"));
        assert_eq!(s.describe(), "root@10.0.0.2:tank/iscsi_lv_bk@2011-03-29_23:00:01");
        assert!(Side::object("h:tank/../x").is_err());
        assert!(Side::pool("h:tank/a").is_ok());
        assert!(Side::pool("h:ta nk").is_err());
        // A pool's snapshot without a volume is no host.
        assert!(Side::object("tank@2011-03-29_23:00:01").is_err());
        assert_eq!(split_host("@h:tank"), (None, "@h:tank"));
        assert_eq!(split_host("a@b@c:tank"), (None, "a@b@c:tank"));
    }
}
