//! Typed names of archive objects. Each constructor is the only place its
//! syntax is checked, so a name that reaches a backend (and with it a `zfs`
//! or `btrfs` argument vector, or a path) cannot carry a `/`, `@`, `..`,
//! whitespace, a leading `-` or anything a tool could read as an option.
//!
//! Layout, as in the seed (chunks 70, 84, 155):
//! - archive volume `<pool>/<prefix>_<lv>_bk` (the LVM volume group is
//!   stripped from the source volume's name),
//! - checksum file `<pool>/ddless/<prefix>_<lv>.ddless` (+ `.ddmap`,
//!   `.ddless.stats`),
//! - snapshots `<volume>@YYYY-MM-DD_HH:MM:SS`.

use std::fmt;

/// ZFS's limit on a whole dataset name (ZFS_MAX_DATASET_NAME_LEN - 1).
pub const MAX_DATASET_NAME: usize = 255;
/// ZFS's limit on a user property name.
pub const MAX_PROPERTY_NAME: usize = 255;
/// ZFS's limit on a user property value is 8191 bytes; ours is smaller.
pub const MAX_PROPERTY_VALUE: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what} {value:?}: {problem}")]
pub struct NameError {
    pub what: &'static str,
    pub value: String,
    pub problem: String,
}

fn err(what: &'static str, value: &str, problem: impl Into<String>) -> NameError {
    NameError { what, value: value.to_string(), problem: problem.into() }
}

/// One path component: letters, digits, `_`, `-`, `.`; starts with a letter,
/// digit or `_`; never `.`/`..`; at most `max` bytes.
fn check_component(what: &'static str, value: &str, extra: &[char], max: usize) -> Result<(), NameError> {
    if value.is_empty() {
        return Err(err(what, value, "must not be empty"));
    }
    if value.len() > max {
        return Err(err(what, value, format!("longer than {max} bytes")));
    }
    let first = value.chars().next().unwrap_or('-');
    if !(first.is_ascii_alphanumeric() || first == '_') {
        return Err(err(what, value, "must start with a letter, a digit or '_'"));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || "_-.".contains(*c) || extra.contains(c))) {
        let allowed: String = extra.iter().map(|c| format!(" '{c}'")).collect();
        return Err(err(
            what,
            value,
            format!("character {bad:?} is not allowed (letters, digits, '_', '-', '.'{allowed} only)"),
        ));
    }
    if value.contains("..") {
        return Err(err(what, value, "must not contain '..'"));
    }
    Ok(())
}

/// A storage pool: a ZFS pool or dataset path (`tank`, `tank/archive`), or
/// the configured name of a btrfs or directory pool.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PoolName(String);

impl PoolName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(err("pool name", name, "must not be empty"));
        }
        if name.len() > MAX_DATASET_NAME - 40 {
            return Err(err("pool name", name, format!("longer than {} bytes", MAX_DATASET_NAME - 40)));
        }
        for part in name.split('/') {
            check_component("pool name", part, &[], MAX_DATASET_NAME)
                .map_err(|e| NameError { value: name.into(), ..e })?;
        }
        Ok(PoolName(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PoolName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name part of an archive volume: `<prefix>_<lv>_bk`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct VolumeName(String);

impl VolumeName {
    /// Any valid volume name (as found on a pool or given on the command line).
    pub fn new(name: &str) -> Result<Self, NameError> {
        check_component("archive volume name", name, &[], 200)?;
        Ok(VolumeName(name.to_string()))
    }

    /// The archive volume of source volume `lv` under `prefix`. A volume
    /// group in front of `lv` (`vg/lv`) is stripped, as in the seed.
    pub fn for_source(prefix: &str, lv: &str) -> Result<Self, NameError> {
        let lv = match lv.split_once('/') {
            Some((vg, name)) => {
                check_component("volume group", vg, &[], 128)
                    .map_err(|e| NameError { value: format!("{vg}/{name}"), ..e })?;
                name
            }
            None => lv,
        };
        check_component("volume prefix", prefix, &[], 64)?;
        check_component("source volume name", lv, &[], 150)?;
        VolumeName::new(&format!("{prefix}_{lv}_bk"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<prefix>_<lv>`: the stem of the checksum, ddmap and history files.
    pub fn checksum_stem(&self) -> &str {
        self.0.strip_suffix("_bk").unwrap_or(&self.0)
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A snapshot name (the part after `@`). Managed snapshots are
/// `YYYY-MM-DD_HH:MM:SS`; others (`before-upgrade`) are foreign but valid.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct SnapshotName(String);

impl SnapshotName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        check_component("snapshot name", name, &[':'], 64)?;
        Ok(SnapshotName(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An archive volume: pool and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeRef {
    pub pool: PoolName,
    pub volume: VolumeName,
}

impl VolumeRef {
    pub fn new(pool: PoolName, volume: VolumeName) -> Self {
        VolumeRef { pool, volume }
    }
}

impl fmt::Display for VolumeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.pool, self.volume)
    }
}

/// `POOL/VOLUME` or `POOL/VOLUME@SNAPSHOT`, as given on a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ObjectRef {
    pub volume: VolumeRef,
    pub snapshot: Option<SnapshotName>,
}

impl ObjectRef {
    pub fn parse(text: &str) -> Result<Self, NameError> {
        let what = "archive object";
        let (path, snap) = match text.split_once('@') {
            Some((p, s)) => (p, Some(SnapshotName::new(s)?)),
            None => (text, None),
        };
        let (pool, vol) =
            path.rsplit_once('/').ok_or_else(|| err(what, text, "expected POOL/VOLUME or POOL/VOLUME@SNAPSHOT"))?;
        Ok(ObjectRef { volume: VolumeRef::new(PoolName::new(pool)?, VolumeName::new(vol)?), snapshot: snap })
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.snapshot {
            Some(s) => write!(f, "{}@{}", self.volume, s),
            None => write!(f, "{}", self.volume),
        }
    }
}

/// A hold tag (`santools-copy-<target>`): letters, digits, `_`, `-`, `.`,
/// `:`; at most 200 bytes. Holds keep a snapshot from being destroyed
/// (rotation names the holder in its output).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct HoldTag(String);

impl HoldTag {
    pub fn new(tag: &str) -> Result<Self, NameError> {
        check_component("hold tag", tag, &[':'], 200)?;
        if tag.contains(',') {
            return Err(err("hold tag", tag, "must not contain ','"));
        }
        Ok(HoldTag(tag.to_string()))
    }

    /// The tag zfs-copy holds its incremental base with, for one target
    /// (`santools-copy-<target>`, characters outside the tag alphabet
    /// replaced by `_`): two targets never release each other's base.
    pub fn for_copy_target(target: &str) -> HoldTag {
        let clean: String =
            target.chars().map(|c| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' }).collect();
        let clean = clean.replace("..", "_.");
        let mut tag = format!("santools-copy-{clean}");
        tag.truncate(200);
        HoldTag(tag)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for HoldTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The property namespace (`edu.amherst` in the seed): lower-case letters,
/// digits, `.` and `-`, starting with a letter.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Namespace(String);

impl Namespace {
    pub fn new(ns: &str) -> Result<Self, NameError> {
        let what = "property namespace";
        if ns.is_empty() || ns.len() > 100 {
            return Err(err(what, ns, "must be 1 to 100 bytes"));
        }
        if !ns.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(err(what, ns, "must start with a lower-case letter"));
        }
        if let Some(bad) = ns.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || ".-".contains(*c))) {
            return Err(err(what, ns, format!("character {bad:?} is not allowed (a-z, 0-9, '.', '-')")));
        }
        if ns.contains("..") || ns.ends_with('.') {
            return Err(err(what, ns, "must be a dotted name like edu.example"));
        }
        Ok(Namespace(ns.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `<ns>:<key>` for one of santools' own keys.
    pub fn prop(&self, key: &str) -> PropertyName {
        PropertyName(format!("{}:{key}", self.0))
    }
}

/// A user property name `<ns>:<key>`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct PropertyName(String);

impl PropertyName {
    pub fn new(name: &str) -> Result<Self, NameError> {
        let what = "property name";
        let (ns, key) = name.split_once(':').ok_or_else(|| err(what, name, "expected NAMESPACE:KEY"))?;
        Namespace::new(ns).map_err(|e| NameError { what, value: name.into(), problem: e.problem })?;
        if key.is_empty() || name.len() > MAX_PROPERTY_NAME {
            return Err(err(what, name, "key must be 1 to 255 bytes"));
        }
        if let Some(bad) = key.chars().find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-:".contains(*c)))
        {
            return Err(err(
                what,
                name,
                format!("character {bad:?} is not allowed in the key (a-z, 0-9, '_', '.', '-', ':')"),
            ));
        }
        Ok(PropertyName(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PropertyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Checks a property value: printable ASCII (space allowed), at most
/// [`MAX_PROPERTY_VALUE`] bytes. Tabs and newlines would break the
/// tab-separated `zfs get -H` output that values are read back from.
pub fn check_property_value(value: &str) -> Result<(), NameError> {
    let what = "property value";
    if value.len() > MAX_PROPERTY_VALUE {
        return Err(err(what, value, format!("longer than {MAX_PROPERTY_VALUE} bytes")));
    }
    if let Some(bad) = value.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(err(what, value, format!("character {bad:?} is not allowed (printable ASCII only)")));
    }
    if value == "-" {
        return Err(err(what, value, "'-' is how zfs shows an unset property"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_volume_names_follow_the_seed() {
        let v = VolumeName::for_source("iscsi4", "vg_satabeast8_vol0/lv_vmc03_vmfs_vm_iet_vol01").unwrap();
        assert_eq!(v.as_str(), "iscsi4_lv_vmc03_vmfs_vm_iet_vol01_bk");
        assert_eq!(v.checksum_stem(), "iscsi4_lv_vmc03_vmfs_vm_iet_vol01");
    }

    #[test]
    fn hostile_names_are_refused() {
        for bad in ["", "a b", "a@b", "../x", "a/..", "-o", "a\nb", "a\tb", ".hidden", "x..y", "a;rm", "a$b", "é"] {
            assert!(VolumeName::new(bad).is_err(), "{bad:?} accepted");
            assert!(VolumeName::for_source("iscsi", bad).is_err(), "{bad:?} accepted as lv");
        }
        for bad in ["", "tank/", "/tank", "tank//a", "tank/../x", "-tank", "ta nk", "tank@x"] {
            assert!(PoolName::new(bad).is_err(), "{bad:?} accepted as pool");
        }
        for bad in ["", "a/b", "a@b", "a b", "-x", "..", "x\u{0}"] {
            assert!(SnapshotName::new(bad).is_err(), "{bad:?} accepted as snapshot");
        }
        assert!(SnapshotName::new("2011-03-29_23:00:01").is_ok());
        assert!(SnapshotName::new("before-upgrade").is_ok());
        assert!(PoolName::new("tank/archive_1").is_ok());
    }

    #[test]
    fn object_refs_split_at_the_last_slash() {
        let o = ObjectRef::parse("tank/archive/iscsi_lv1_bk@2011-03-29_23:00:01").unwrap();
        assert_eq!(o.volume.pool.as_str(), "tank/archive");
        assert_eq!(o.volume.volume.as_str(), "iscsi_lv1_bk");
        assert_eq!(o.snapshot.unwrap().as_str(), "2011-03-29_23:00:01");
        assert!(ObjectRef::parse("tank").is_err());
        assert!(ObjectRef::parse("tank/v@a@b").is_err());
        assert!(ObjectRef::parse("tank/v@").is_err());
        assert_eq!(ObjectRef::parse("tank/v").unwrap().to_string(), "tank/v");
    }

    #[test]
    fn hold_tags() {
        assert!(HoldTag::new("santools-copy-host2").is_ok());
        for bad in ["", "a b", "a,b", "-x", "a/b", "a@b"] {
            assert!(HoldTag::new(bad).is_err(), "{bad:?}");
        }
        let t = HoldTag::for_copy_target("root@host2:tank/iscsi_lv_bk");
        assert_eq!(t.as_str(), "santools-copy-root_host2_tank_iscsi_lv_bk");
        assert!(HoldTag::new(t.as_str()).is_ok());
        assert!(HoldTag::new(HoldTag::for_copy_target("a..b/../c").as_str()).is_ok());
    }

    #[test]
    fn properties() {
        let ns = Namespace::new("edu.amherst").unwrap();
        assert_eq!(ns.prop("snap_time").as_str(), "edu.amherst:snap_time");
        assert!(Namespace::new("Edu").is_err());
        assert!(Namespace::new("edu..x").is_err());
        assert!(PropertyName::new("edu.amherst:snaprotate_schedule").is_ok());
        assert!(PropertyName::new("nocolon").is_err());
        assert!(PropertyName::new("edu:Bad").is_err());
        assert!(check_property_value("SNAP_ROTATE_A").is_ok());
        assert!(check_property_value("a\tb").is_err());
        assert!(check_property_value("a\nb").is_err());
        assert!(check_property_value("-").is_err());
    }
}
