//! The `[archive]` configuration, checked and resolved into typed settings.
//! Every error names its key (`archive.volumes[1].source.path`).

use std::collections::{BTreeMap, BTreeSet};
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use jiff::tz::TimeZone;

use super::ddmap_state::DdmapState;
use super::names::{check_property_value, Namespace, PoolName, VolumeName, VolumeRef};
use super::snapshot_time::parse_time_zone;
use super::store::dir::{Flavor, TreeStore};
use super::store::zfs::{ZfsMode, ZfsStore};
use super::store::ArchiveStore;
use crate::config::archive::{ArchiveConfig, PoolConfig, SourceConfig, VolumeConfig};
use crate::config::InvalidValue;

/// Upper bounds of the numeric keys (a typo must not start 10^9 threads).
pub const MAX_CONCURRENT_WORKERS: u64 = 64;
pub const MAX_DDLESS_WORKERS: u64 = 64;
pub const MAX_SNAPCHECK_COUNT: u64 = 100_000;
pub const MAX_TIMEOUT_SEC: u64 = 7 * 86_400;

#[derive(Clone, Debug)]
pub enum BackendSettings {
    Zfs { mode: ZfsMode, options: Vec<String> },
    Btrfs { path: PathBuf },
    Dir { path: PathBuf },
}

#[derive(Clone, Debug)]
pub struct PoolSettings {
    pub name: PoolName,
    pub backend: BackendSettings,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StateSpec {
    /// No state given: a map alone is not trusted (UNKNOWN).
    Unknown,
    Fixed(DdmapState),
    /// Read at each backup (the seed's ietd_ddmap state file).
    File(PathBuf),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SourceSpec {
    Path {
        device: bool,
        path: PathBuf,
        ddmap: Option<PathBuf>,
        state: StateSpec,
    },
    /// An `iscsi://` LUN read with santools' initiator (the URL as
    /// configured: it may carry a CHAP password; shown redacted).
    Iscsi {
        url: String,
        ddmap: Option<PathBuf>,
        state: StateSpec,
    },
    Command {
        prepare: Vec<String>,
        finish: Option<Vec<String>>,
        timeout: Duration,
    },
}

#[derive(Clone, Debug)]
pub struct VolumeSettings {
    /// The source volume's name as configured (`vg/lv` or `lv`).
    pub source_name: String,
    pub archive: VolumeRef,
    pub schedule: Option<String>,
    pub enabled: bool,
    pub source: SourceSpec,
}

#[derive(Clone, Debug)]
pub struct ArchiveSettings {
    pub ns: Namespace,
    pub tz: TimeZone,
    pub tz_name: String,
    pub log_dir: PathBuf,
    pub lock_dir: PathBuf,
    pub state_dir: PathBuf,
    pub concurrent_workers: NonZeroUsize,
    pub ddless_workers: NonZeroUsize,
    pub snapcheck_count: usize,
    pub command_timeout: Duration,
    pub pools: BTreeMap<PoolName, PoolSettings>,
    pub volumes: Vec<VolumeSettings>,
    /// The `[initiator]` section, for iscsi:// sources and restore targets
    /// (set by the tools that load it; empty otherwise).
    pub initiator: crate::config::InitiatorConfig,
    pub status: super::status::Thresholds,
    pub copy: super::replicate::CopySettings,
}

fn bounded(key: &str, value: u64, min: u64, max: u64) -> Result<u64, InvalidValue> {
    if value < min || value > max {
        return Err(InvalidValue::new(key, format!("must be between {min} and {max}, got {value}")));
    }
    Ok(value)
}

fn absolute(key: &str, p: &Path) -> Result<PathBuf, InvalidValue> {
    if !p.is_absolute() {
        return Err(InvalidValue::new(key, format!("must be an absolute path, got {:?}", p)));
    }
    if p.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(InvalidValue::new(key, format!("must not contain '..', got {:?}", p)));
    }
    Ok(p.to_path_buf())
}

fn check_zfs_option(key: &str, opt: &str) -> Result<(), InvalidValue> {
    let Some((k, v)) = opt.split_once('=') else {
        return Err(InvalidValue::new(key, format!("{opt:?} is not PROPERTY=VALUE")));
    };
    let key_ok = !k.is_empty()
        && k.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && k.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_:.-".contains(c));
    if !key_ok {
        return Err(InvalidValue::new(key, format!("{opt:?}: property {k:?} is not a ZFS property name")));
    }
    if v.is_empty() || !v.chars().all(|c| c.is_ascii_graphic()) {
        return Err(InvalidValue::new(key, format!("{opt:?}: the value must be printable and without spaces")));
    }
    Ok(())
}

fn pool(key: &str, name: &str, c: &PoolConfig) -> Result<PoolSettings, InvalidValue> {
    let pname = PoolName::new(name).map_err(|e| InvalidValue::new(key, e.to_string()))?;
    let backend = match c.backend.as_str() {
        "zfs" => {
            if c.path.is_some() {
                return Err(InvalidValue::new(
                    format!("{key}.path"),
                    "only for btrfs and dir pools (a zfs pool is named by its key)",
                ));
            }
            let mode = match c.zfs_mode.as_deref() {
                None | Some("image") => ZfsMode::Image,
                Some("zvol") => ZfsMode::Zvol,
                Some(m) => {
                    return Err(InvalidValue::new(
                        format!("{key}.zfs_mode"),
                        format!("must be \"image\" or \"zvol\", got {m:?}"),
                    ))
                }
            };
            for (i, o) in c.zfs_options.iter().enumerate() {
                check_zfs_option(&format!("{key}.zfs_options[{i}]"), o)?;
            }
            BackendSettings::Zfs { mode, options: c.zfs_options.clone() }
        }
        "btrfs" | "dir" => {
            if c.zfs_mode.is_some() {
                return Err(InvalidValue::new(format!("{key}.zfs_mode"), "only for zfs pools"));
            }
            if !c.zfs_options.is_empty() {
                return Err(InvalidValue::new(format!("{key}.zfs_options"), "only for zfs pools"));
            }
            let path = c
                .path
                .as_deref()
                .ok_or_else(|| InvalidValue::new(format!("{key}.path"), "is required for btrfs and dir pools"))?;
            let path = absolute(&format!("{key}.path"), path)?;
            if c.backend == "btrfs" {
                BackendSettings::Btrfs { path }
            } else {
                BackendSettings::Dir { path }
            }
        }
        other => {
            return Err(InvalidValue::new(
                format!("{key}.backend"),
                format!("must be \"zfs\", \"btrfs\" or \"dir\", got {other:?}"),
            ))
        }
    };
    Ok(PoolSettings { name: pname, backend })
}

fn argv(key: &str, v: &[String]) -> Result<Vec<String>, InvalidValue> {
    if v.is_empty() || v[0].is_empty() {
        return Err(InvalidValue::new(
            key,
            "must be a non-empty argument vector, e.g. [\"/usr/local/bin/prepare\", \"{volume}\"]",
        ));
    }
    if let Some(a) = v.iter().find(|a| a.contains('\0')) {
        return Err(InvalidValue::new(key, format!("argument {a:?} contains a NUL byte")));
    }
    Ok(v.to_vec())
}

fn source(key: &str, c: &SourceConfig) -> Result<SourceSpec, InvalidValue> {
    let only = |field: &str, present: bool, kinds: &str| -> Result<(), InvalidValue> {
        if present {
            Err(InvalidValue::new(format!("{key}.{field}"), format!("only for {kinds} sources")))
        } else {
            Ok(())
        }
    };
    match c.kind.as_str() {
        "file" | "device" | "iscsi" => {
            only("prepare", c.prepare.is_some(), "command")?;
            only("finish", c.finish.is_some(), "command")?;
            only("timeout_sec", c.timeout_sec.is_some(), "command")?;
            let iscsi = c.kind == "iscsi";
            only("url", c.url.is_some() && !iscsi, "iscsi")?;
            only("path", c.path.is_some() && iscsi, "file and device")?;
            let ddmap = c.ddmap.as_deref().map(|p| absolute(&format!("{key}.ddmap"), p)).transpose()?;
            let state = match (&c.ddmap_state, &c.ddmap_state_file) {
                (Some(_), Some(_)) => {
                    return Err(InvalidValue::new(
                        format!("{key}.ddmap_state_file"),
                        "give ddmap_state or ddmap_state_file, not both",
                    ))
                }
                (Some(s), None) => {
                    StateSpec::Fixed(s.parse().map_err(|e: String| InvalidValue::new(format!("{key}.ddmap_state"), e))?)
                }
                (None, Some(f)) => StateSpec::File(absolute(&format!("{key}.ddmap_state_file"), f)?),
                (None, None) => StateSpec::Unknown,
            };
            if ddmap.is_none() && state != StateSpec::Unknown {
                return Err(InvalidValue::new(format!("{key}.ddmap"), "a ddmap state needs a ddmap"));
            }
            if iscsi {
                let url = c.url.as_deref().ok_or_else(|| InvalidValue::new(format!("{key}.url"), "is required"))?;
                crate::initiator::IscsiUrl::parse_lun(url).map_err(|e| {
                    InvalidValue::new(
                        format!("{key}.url"),
                        format!("{}: {e}", crate::initiator::url::redact_unparsed(url)),
                    )
                })?;
                return Ok(SourceSpec::Iscsi { url: url.to_string(), ddmap, state });
            }
            let path = c.path.as_deref().ok_or_else(|| InvalidValue::new(format!("{key}.path"), "is required"))?;
            let path = absolute(&format!("{key}.path"), path)?;
            Ok(SourceSpec::Path { device: c.kind == "device", path, ddmap, state })
        }
        "command" => {
            for (f, present) in [
                ("path", c.path.is_some()),
                ("url", c.url.is_some()),
                ("ddmap", c.ddmap.is_some()),
                ("ddmap_state", c.ddmap_state.is_some()),
                ("ddmap_state_file", c.ddmap_state_file.is_some()),
            ] {
                only(f, present, "file and device")?;
            }
            let prepare = argv(
                &format!("{key}.prepare"),
                c.prepare
                    .as_deref()
                    .ok_or_else(|| InvalidValue::new(format!("{key}.prepare"), "is required for command sources"))?,
            )?;
            let finish = c.finish.as_deref().map(|f| argv(&format!("{key}.finish"), f)).transpose()?;
            let secs = bounded(&format!("{key}.timeout_sec"), c.timeout_sec.unwrap_or(600), 1, MAX_TIMEOUT_SEC)?;
            Ok(SourceSpec::Command { prepare, finish, timeout: Duration::from_secs(secs) })
        }
        other => Err(InvalidValue::new(
            format!("{key}.kind"),
            format!("must be \"file\", \"device\", \"iscsi\" or \"command\", got {other:?}"),
        )),
    }
}

fn volume(
    key: &str,
    c: &VolumeConfig,
    default_prefix: &str,
    pools: &BTreeMap<PoolName, PoolSettings>,
) -> Result<VolumeSettings, InvalidValue> {
    let pool = PoolName::new(&c.pool).map_err(|e| InvalidValue::new(format!("{key}.pool"), e.to_string()))?;
    if !pools.contains_key(&pool) {
        let known: Vec<&str> = pools.keys().map(PoolName::as_str).collect();
        return Err(InvalidValue::new(
            format!("{key}.pool"),
            format!("pool {:?} is not configured under [archive.pools] (known: {})", c.pool, known.join(", ")),
        ));
    }
    let prefix = c.prefix.as_deref().unwrap_or(default_prefix);
    let name =
        VolumeName::for_source(prefix, &c.name).map_err(|e| InvalidValue::new(format!("{key}.name"), e.to_string()))?;
    if let Some(s) = &c.schedule {
        check_property_value(s).map_err(|e| InvalidValue::new(format!("{key}.schedule"), e.to_string()))?;
        if s.contains(' ') || s.is_empty() {
            return Err(InvalidValue::new(format!("{key}.schedule"), "must be a schedule name without spaces"));
        }
    }
    Ok(VolumeSettings {
        source_name: c.name.clone(),
        archive: VolumeRef::new(pool, name),
        schedule: c.schedule.clone(),
        enabled: c.enabled,
        source: source(&format!("{key}.source"), &c.source)?,
    })
}

impl ArchiveSettings {
    pub fn from_config(c: &ArchiveConfig) -> Result<Self, InvalidValue> {
        let ns = Namespace::new(&c.namespace).map_err(|e| InvalidValue::new("archive.namespace", e.to_string()))?;
        let tz = parse_time_zone(&c.timezone).map_err(|e| InvalidValue::new("archive.timezone", e))?;
        VolumeName::for_source(&c.prefix, "x").map_err(|e| InvalidValue::new("archive.prefix", e.to_string()))?;
        let log_dir = absolute("archive.log_dir", &c.log_dir)?;
        let lock_dir = absolute("archive.lock_dir", &c.lock_dir)?;
        let state_dir = absolute("archive.state_dir", &c.state_dir)?;
        let cw = bounded("archive.concurrent_workers", c.concurrent_workers, 1, MAX_CONCURRENT_WORKERS)?;
        let dw = bounded("archive.ddless_workers", c.ddless_workers, 1, MAX_DDLESS_WORKERS)?;
        let sc = bounded("archive.snapcheck_count", c.snapcheck_count, 1, MAX_SNAPCHECK_COUNT)?;
        let to = bounded("archive.command_timeout_sec", c.command_timeout_sec, 1, MAX_TIMEOUT_SEC)?;
        let mut pools = BTreeMap::new();
        for (name, p) in &c.pools {
            let ps = pool(&format!("archive.pools.{name:?}"), name, p)?;
            pools.insert(ps.name.clone(), ps);
        }
        let mut volumes = Vec::new();
        let mut seen: BTreeSet<VolumeRef> = BTreeSet::new();
        for (i, v) in c.volumes.iter().enumerate() {
            let key = format!("archive.volumes[{i}]");
            let vs = volume(&key, v, &c.prefix, &pools)?;
            if !seen.insert(vs.archive.clone()) {
                return Err(InvalidValue::new(
                    format!("{key}.name"),
                    format!("archive volume {} is already used by another volume entry", vs.archive),
                ));
            }
            volumes.push(vs);
        }
        let st = &c.status;
        let warn = bounded("archive.status.warn_age_hours", st.warn_age_hours, 1, 100_000)?;
        let crit = bounded("archive.status.crit_age_hours", st.crit_age_hours, 1, 100_000)?;
        if crit < warn {
            return Err(InvalidValue::new(
                "archive.status.crit_age_hours",
                format!("must not be below warn_age_hours ({warn}), got {crit}"),
            ));
        }
        let status = super::status::Thresholds {
            warn_age_hours: warn,
            crit_age_hours: crit,
            snapcheck_warn_days: bounded("archive.status.snapcheck_warn_days", st.snapcheck_warn_days, 0, 100_000)?,
            snapcheck_crit_days: bounded("archive.status.snapcheck_crit_days", st.snapcheck_crit_days, 0, 100_000)?,
        };
        let copy = super::replicate::CopySettings::from_config(&c.copy)?;
        Ok(ArchiveSettings {
            copy,
            status,
            ns,
            tz,
            tz_name: c.timezone.clone(),
            log_dir,
            lock_dir,
            state_dir,
            concurrent_workers: NonZeroUsize::new(cw as usize).unwrap_or(NonZeroUsize::MIN),
            ddless_workers: NonZeroUsize::new(dw as usize).unwrap_or(NonZeroUsize::MIN),
            snapcheck_count: sc as usize,
            command_timeout: Duration::from_secs(to),
            pools,
            volumes,
            initiator: crate::config::InitiatorConfig::default(),
        })
    }

    /// The storage backend of a pool.
    pub fn store(&self, pool: &PoolName) -> Option<Arc<dyn ArchiveStore>> {
        let p = self.pools.get(pool)?;
        Some(match &p.backend {
            BackendSettings::Zfs { mode, options } => {
                Arc::new(ZfsStore::new(p.name.clone(), *mode, options.clone(), self.command_timeout, &self.ns))
            }
            BackendSettings::Btrfs { path } => {
                Arc::new(TreeStore::new(p.name.clone(), path.clone(), Flavor::Btrfs, self.command_timeout))
            }
            BackendSettings::Dir { path } => {
                Arc::new(TreeStore::new(p.name.clone(), path.clone(), Flavor::Plain, self.command_timeout))
            }
        })
    }

    /// The configured volume whose archive volume is `v`.
    pub fn volume_for(&self, v: &VolumeRef) -> Option<&VolumeSettings> {
        self.volumes.iter().find(|s| &s.archive == v)
    }

    /// The configured volume named `name`: its source name (`lv` or
    /// `vg/lv`) or its archive volume (`pool/prefix_lv_bk`).
    pub fn find_volume(&self, name: &str) -> Option<&VolumeSettings> {
        self.volumes.iter().find(|s| {
            s.source_name == name
                || s.source_name.rsplit('/').next() == Some(name)
                || s.archive.to_string() == name
                || s.archive.volume.as_str() == name
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ArchiveSettings, String> {
        let c: crate::config::Config = toml::from_str(text).map_err(|e| e.to_string())?;
        ArchiveSettings::from_config(c.archive.as_ref().unwrap()).map_err(|e| format!("{}: {}", e.key, e.problem))
    }

    const GOOD: &str = r#"
[archive]
namespace = "edu.amherst"
[archive.pools.tank]
backend = "zfs"
zfs_options = ["compression=on"]
[archive.pools.bt]
backend = "btrfs"
path = "/srv/bt"
[[archive.volumes]]
name = "vg8/lv_a"
pool = "tank"
schedule = "SNAP_ROTATE_A"
source = { kind = "file", path = "/dev/vg8/lv_a", ddmap = "/var/m/lv_a.ddmap", ddmap_state = "CLEAN" }
[[archive.volumes]]
name = "lv_b"
pool = "bt"
source = { kind = "command", prepare = ["/usr/bin/prep", "{volume}"] }
"#;

    #[test]
    fn a_good_config_resolves() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.volumes[0].archive.to_string(), "tank/iscsi_lv_a_bk");
        assert_eq!(s.volumes[1].archive.to_string(), "bt/iscsi_lv_b_bk");
        assert!(s.store(&s.volumes[1].archive.pool).is_some());
        assert!(s.find_volume("lv_a").is_some());
        assert!(s.find_volume("tank/iscsi_lv_b_bk").is_none());
    }

    #[test]
    fn the_example_configuration_is_valid() {
        let text = include_str!("../../examples/santools.toml");
        let s = parse(text).unwrap();
        assert_eq!(s.volumes.len(), 4);
        assert_eq!(s.volumes[0].archive.to_string(), "vg_satabeast7_vol0/iscsi_lv_mail_bk");
        assert!(matches!(&s.volumes[3].source, SourceSpec::Iscsi { ddmap: Some(_), .. }));
        assert!(matches!(
            s.pools[&PoolName::new("vg_satabeast7_vol0").unwrap()].backend,
            BackendSettings::Zfs { mode: ZfsMode::Zvol, .. }
        ));
        assert!(!s.volumes[2].enabled);
    }

    #[test]
    fn every_bad_value_names_its_key() {
        let cases = [
            ("namespace = \"edu.amherst\"", "namespace = \"Bad NS\"", "archive.namespace"),
            (
                "namespace = \"edu.amherst\"",
                "namespace = \"edu.amherst\"\ntimezone = \"Mars/Base\"",
                "archive.timezone",
            ),
            (
                "namespace = \"edu.amherst\"",
                "namespace = \"edu.amherst\"\nconcurrent_workers = 0",
                "archive.concurrent_workers",
            ),
            (
                "namespace = \"edu.amherst\"",
                "namespace = \"edu.amherst\"\nddless_workers = 99999999999",
                "archive.ddless_workers",
            ),
            ("namespace = \"edu.amherst\"", "namespace = \"edu.amherst\"\nlog_dir = \"rel\"", "archive.log_dir"),
            ("zfs_options = [\"compression=on\"]", "zfs_options = [\"-o x\"]", "zfs_options[0]"),
            ("path = \"/srv/bt\"", "path = \"srv\"", "archive.pools.\"bt\".path"),
            ("name = \"vg8/lv_a\"", "name = \"../etc\"", "archive.volumes[0].name"),
            ("name = \"vg8/lv_a\"", "name = \"lv b\"", "archive.volumes[0].name"),
            ("pool = \"tank\"", "pool = \"nope\"", "archive.volumes[0].pool"),
            ("ddmap_state = \"CLEAN\"", "ddmap_state = \"SHINY\"", "archive.volumes[0].source.ddmap_state"),
            ("prepare = [\"/usr/bin/prep\", \"{volume}\"]", "prepare = []", "archive.volumes[1].source.prepare"),
            ("kind = \"file\", path = \"/dev/vg8/lv_a\"", "kind = \"iscsi\"", "archive.volumes[0].source.url"),
            ("kind = \"file\"", "kind = \"iscsi\"", "archive.volumes[0].source.path"),
            ("kind = \"file\"", "kind = \"file\", url = \"iscsi://h/iqn.2024-01.x:t/1\"", "archive.volumes[0].source.url"),
            (
                "source = { kind = \"file\", path = \"/dev/vg8/lv_a\", ddmap = \"/var/m/lv_a.ddmap\", ddmap_state = \"CLEAN\" }",
                "source = \"iscsi://h/iqn.2024-01.x:t\"",
                "archive.volumes[0].source.url",
            ),
        ];
        for (from, to, key) in cases {
            let text = GOOD.replacen(from, to, 1);
            let e = parse(&text).unwrap_err();
            assert!(e.contains(key), "{to}: {e}");
        }
        // The duplicate is only a duplicate on the same pool.
        let text = GOOD.replacen("name = \"lv_b\"\npool = \"bt\"", "name = \"lv_a\"\npool = \"tank\"", 1);
        assert!(parse(&text).unwrap_err().contains("already used"));
        assert!(parse(&GOOD.replace("kind = \"file\"", "kind = \"file\", bogus = 1")).unwrap_err().contains("bogus"));
        // An iscsi:// LUN: a string is short for kind = "iscsi"; a table may add a ddmap.
        let lun = GOOD.replacen(
            "source = { kind = \"file\", path = \"/dev/vg8/lv_a\", ddmap = \"/var/m/lv_a.ddmap\", ddmap_state = \"CLEAN\" }",
            "source = \"iscsi://10.0.0.5/iqn.2024-01.x:t/1\"",
            1,
        );
        let s = parse(&lun).unwrap();
        assert!(matches!(&s.volumes[0].source, SourceSpec::Iscsi { url, ddmap: None, .. } if url.ends_with("x:t/1")));
        let e = parse(&lun.replace("\"iscsi://10.0.0.5/iqn.2024-01.x:t/1\"", "\"/dev/sdb\"")).unwrap_err();
        assert!(e.contains("must be an iscsi:// URL") && e.contains("/dev/sdb"), "{e}");
        let lun = GOOD.replacen(
            "kind = \"file\", path = \"/dev/vg8/lv_a\"",
            "kind = \"iscsi\", url = \"iscsi://h/iqn.2024-01.x:t/0\"",
            1,
        );
        let s = parse(&lun).unwrap();
        assert!(matches!(&s.volumes[0].source, SourceSpec::Iscsi { ddmap: Some(_), state: StateSpec::Fixed(_), .. }));
    }
}
