//! `[archive]`: the backup archive (backup, restore, snapcheck,
//! ddless-maint). Raw TOML shapes here; [`crate::archive::settings`] checks
//! every value and resolves it into typed settings, naming the key of any
//! error (`archive.volumes[2].source.path`).
//!
//! ```toml
//! [archive]
//! namespace = "edu.amherst"
//! timezone = "UTC"
//! prefix = "iscsi"
//!
//! [archive.pools.tank]
//! backend = "zfs"
//! zfs_options = ["compression=on", "refreservation=none"]
//!
//! [[archive.volumes]]
//! name = "vg_satabeast8_vol0/lv_vol00"
//! pool = "tank"
//! schedule = "SNAP_ROTATE_A"
//! source = { kind = "device", path = "/dev/vg_satabeast8_vol0/lv_vol00" }
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::config::InvalidValue;

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct ArchiveConfig {
    /// Property namespace (`<ns>:snap_time`...); the seed's is edu.amherst.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// Time zone of snapshot names: "UTC", "local" or an IANA name.
    #[serde(default = "default_timezone")]
    pub timezone: String,
    /// Default archive volume prefix (`<prefix>_<lv>_bk`).
    #[serde(default = "default_prefix")]
    pub prefix: String,
    #[serde(default = "default_log_dir")]
    pub log_dir: PathBuf,
    #[serde(default = "default_lock_dir")]
    pub lock_dir: PathBuf,
    /// Durable state that is not in a pool (resumable restores to devices).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Volumes backed up at once by `backup -a`.
    #[serde(default = "default_concurrent_workers")]
    pub concurrent_workers: u64,
    /// ddless reader threads per volume.
    #[serde(default = "default_ddless_workers")]
    pub ddless_workers: u64,
    /// Snapshots `snapcheck -d` verifies per run.
    #[serde(default = "default_snapcheck_count")]
    pub snapcheck_count: u64,
    /// Seconds a zfs or btrfs command may take.
    #[serde(default = "default_command_timeout")]
    pub command_timeout_sec: u64,
    #[serde(default)]
    pub pools: BTreeMap<String, PoolConfig>,
    #[serde(default)]
    pub volumes: Vec<VolumeConfig>,
    /// Thresholds of `archive-status`.
    #[serde(default)]
    pub status: StatusConfig,
    /// `zfs-copy`: ssh control and the direct TCP data path.
    #[serde(default)]
    pub copy: CopyConfig,
}

/// `[archive.copy]`: how zfs-copy reaches other archive hosts.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct CopyConfig {
    /// "ssh" (the stream goes through ssh) or "tcp" (a direct connection
    /// santools opens on both ends, gated by a one-time token).
    #[serde(default = "default_transport")]
    pub transport: String,
    /// Ports the receiving side may listen on for the TCP data path.
    #[serde(default = "default_ports")]
    pub ports: String,
    /// Seconds to wait for the data connection, and for data on it.
    #[serde(default = "default_copy_timeout")]
    pub timeout_sec: u64,
    /// The santools binary on the other hosts.
    #[serde(default = "default_remote_santools")]
    pub remote_santools: String,
    /// The configuration file on the other hosts [default: their default].
    pub remote_config: Option<PathBuf>,
    /// ssh: user, port, identity file, extra `-o KEY=VALUE` options
    /// (BatchMode=yes and StrictHostKeyChecking=yes are always set).
    pub ssh_user: Option<String>,
    pub ssh_port: Option<u16>,
    pub ssh_identity: Option<PathBuf>,
    #[serde(default)]
    pub ssh_options: Vec<String>,
    /// This host's address as the other hosts reach it (for a TCP data
    /// connection into this host).
    pub data_address: Option<String>,
}

fn default_transport() -> String {
    "ssh".into()
}
fn default_ports() -> String {
    "50100-50199".into()
}
fn default_copy_timeout() -> u64 {
    120
}
fn default_remote_santools() -> String {
    "santools".into()
}

impl Default for CopyConfig {
    fn default() -> Self {
        CopyConfig {
            transport: default_transport(),
            ports: default_ports(),
            timeout_sec: default_copy_timeout(),
            remote_santools: default_remote_santools(),
            remote_config: None,
            ssh_user: None,
            ssh_port: None,
            ssh_identity: None,
            ssh_options: Vec::new(),
            data_address: None,
        }
    }
}

/// `[archive.status]`: when `archive-status` warns and when it is critical.
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct StatusConfig {
    /// Age of a volume's newest snapshot that is a WARNING (hours).
    #[serde(default = "default_warn_age")]
    pub warn_age_hours: u64,
    /// ... and CRITICAL (hours).
    #[serde(default = "default_crit_age")]
    pub crit_age_hours: u64,
    /// Days since a volume's last snapcheck that are a WARNING (0: never warn).
    #[serde(default = "default_snapcheck_warn")]
    pub snapcheck_warn_days: u64,
    /// ... and CRITICAL (0: never).
    #[serde(default)]
    pub snapcheck_crit_days: u64,
}

fn default_warn_age() -> u64 {
    26
}
fn default_crit_age() -> u64 {
    50
}
fn default_snapcheck_warn() -> u64 {
    14
}

impl Default for StatusConfig {
    fn default() -> Self {
        StatusConfig {
            warn_age_hours: default_warn_age(),
            crit_age_hours: default_crit_age(),
            snapcheck_warn_days: default_snapcheck_warn(),
            snapcheck_crit_days: 0,
        }
    }
}

fn default_namespace() -> String {
    "org.santools".into()
}
fn default_timezone() -> String {
    "UTC".into()
}
fn default_prefix() -> String {
    "iscsi".into()
}
fn default_log_dir() -> PathBuf {
    PathBuf::from("/var/log/santools")
}
fn default_lock_dir() -> PathBuf {
    PathBuf::from("/run/santools/archive")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from("/var/lib/santools/archive")
}
fn default_concurrent_workers() -> u64 {
    2
}
fn default_ddless_workers() -> u64 {
    4
}
fn default_snapcheck_count() -> u64 {
    4
}
fn default_command_timeout() -> u64 {
    600
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// "zfs", "btrfs" or "dir".
    pub backend: String,
    /// zfs: "image" (default; any ZFS, zfs-fuse included) or "zvol".
    pub zfs_mode: Option<String>,
    /// btrfs and dir: the directory the pool lives in.
    pub path: Option<PathBuf>,
    /// zfs: `zfs create -o` options for new volumes (the seed's zfs_options).
    #[serde(default)]
    pub zfs_options: Vec<String>,
}

#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct VolumeConfig {
    /// The source volume's name; a volume group in front (`vg/lv`) is stripped.
    pub name: String,
    pub pool: String,
    /// Overrides `archive.prefix`.
    pub prefix: Option<String>,
    /// Rotation schedule, stored as `<ns>:snaprotate_schedule`.
    pub schedule: Option<String>,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// A table, or a string: an `iscsi://` LUN URL (`kind = "iscsi"`).
    #[serde(deserialize_with = "source_config")]
    pub source: SourceConfig,
}

/// `source = "iscsi://..."` is short for `source = { kind = "iscsi", url = "iscsi://..." }`.
fn source_config<'de, D: serde::Deserializer<'de>>(d: D) -> Result<SourceConfig, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = SourceConfig;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a source table or an iscsi:// URL")
        }
        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SourceConfig, E> {
            if !crate::initiator::IscsiUrl::is_iscsi_url(v) {
                return Err(E::custom(format!(
                    "a source given as a string must be an iscsi:// URL, got {:?}; use a table, e.g. {{ kind = \"device\", path = \"/dev/...\" }}",
                    crate::initiator::url::redact_unparsed(v)
                )));
            }
            Ok(SourceConfig { kind: "iscsi".into(), url: Some(v.to_string()), ..SourceConfig::default() })
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<SourceConfig, A::Error> {
            SourceConfig::deserialize(serde::de::value::MapAccessDeserializer::new(m))
        }
    }
    d.deserialize_any(V)
}

fn default_true() -> bool {
    true
}

#[derive(Debug, Default, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct SourceConfig {
    /// "file", "device", "iscsi" or "command".
    pub kind: String,
    /// file / device: the volume to read.
    pub path: Option<PathBuf>,
    /// iscsi: the LUN, `iscsi://[USER[%PASSWORD]@]HOST[:PORT]/TARGET-IQN/LUN`
    /// (read with santools' initiator and the `[initiator]` section).
    pub url: Option<String>,
    /// file / device: a ddmap of the segments changed since the last backup.
    pub ddmap: Option<PathBuf>,
    /// file / device: the map's state (UNKNOWN, ACTIVE, CLEAN, DIRTY).
    pub ddmap_state: Option<String>,
    /// file / device: a file holding the map's state (the seed's ietd_ddmap state file).
    pub ddmap_state_file: Option<PathBuf>,
    /// command: argument vector printing the source as JSON (docs/archive.md).
    pub prepare: Option<Vec<String>>,
    /// command: argument vector told how the backup ended (JSON on stdin).
    pub finish: Option<Vec<String>>,
    /// command: seconds prepare and finish may take.
    pub timeout_sec: Option<u64>,
}

impl ArchiveConfig {
    pub(crate) fn validate(&self) -> Result<(), InvalidValue> {
        crate::archive::settings::ArchiveSettings::from_config(self).map(|_| ())
    }
}
