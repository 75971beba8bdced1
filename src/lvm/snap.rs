//! LVM snapshots as the seed's lvm_snap_create / lvm_snap_remove make
//! them: named `<lv>_<suffix>` (default suffix `snap`), 20% of the origin
//! below 100 GiB and 15% from there (the seed's DEFAULT_SNAP_SPACE_SM/XL),
//! rounded up to whole extents; an existing snapshot is left alone; remove
//! refuses anything that is not a snapshot. Plans are pure; [`Lvm`] runs
//! them through the one command runner.

use std::time::Duration;

use crate::lvm::report::{parse_lvs, Lv, LV_FIELDS};
use crate::shared::command::{Command, CommandError, SshTarget};

pub const DEFAULT_SUFFIX: &str = "snap";
const GIB: u64 = 1 << 30;

/// How big a snapshot should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SnapSize {
    /// The seed's rule: 20% below 100 GiB, else 15%.
    Default,
    Percent(u32),
    Bytes(u64),
}

impl std::str::FromStr for SnapSize {
    type Err = String;
    /// `25%`, or a size: `512M`, `10G`, `1T`, plain bytes.
    fn from_str(s: &str) -> Result<Self, String> {
        if let Some(p) = s.strip_suffix('%') {
            let n: u32 = p.parse().map_err(|_| format!("{s:?}: expected N% or a size like 10G"))?;
            if !(1..=100).contains(&n) {
                return Err(format!("{s:?}: a percentage must be 1-100"));
            }
            return Ok(SnapSize::Percent(n));
        }
        parse_size(s)
            .map(SnapSize::Bytes)
            .ok_or_else(|| format!("{s:?}: expected N% or a size like 512M, 10G, 1T (binary units) or bytes"))
    }
}

/// `512M`, `10G`, `1T` (binary units, as LVM), `4096b` or `4096`.
pub fn parse_size(s: &str) -> Option<u64> {
    let (num, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        't' | 'T' => (&s[..s.len() - 1], 1 << 40),
        'b' | 'B' => (&s[..s.len() - 1], 1),
        _ => (s, 1),
    };
    let n: u64 = num.parse().ok()?;
    n.checked_mul(mult).filter(|&b| b > 0)
}

fn percent_of(bytes: u64, p: u32) -> u64 {
    (u128::from(bytes) * u128::from(p)).div_ceil(100).min(u128::from(u64::MAX)) as u64
}

/// The snapshot size in bytes, rounded up to whole extents.
pub fn snap_bytes(origin: u64, extent: u64, size: SnapSize) -> u64 {
    let raw = match size {
        SnapSize::Default => percent_of(origin, if origin < 100 * GIB { 20 } else { 15 }),
        SnapSize::Percent(p) => percent_of(origin, p),
        SnapSize::Bytes(b) => b,
    };
    let e = extent.max(1);
    raw.div_ceil(e).max(1) * e
}

pub fn snapshot_name(lv: &str, suffix: &str) -> String {
    format!("{lv}_{suffix}")
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SnapError {
    #[error("{0} is not a logical volume (expected /dev/VG/LV or VG/LV)")]
    NotAnLv(String),
    #[error("logical volume {0} does not exist")]
    Missing(String),
    #[error("{0} is not a snapshot (lv_attr {1}): refusing to remove it")]
    NotASnapshot(String, String),
    #[error("{0} is itself a snapshot: snapshot its origin {1}")]
    OfSnapshot(String, String),
    #[error("suffix {0:?} must be letters, digits, '_', '.', '+' or '-'")]
    BadSuffix(String),
}

/// `/dev/VG/LV` or `VG/LV` to (vg, lv), names checked.
pub fn split_lv(path: &str) -> Result<(String, String), SnapError> {
    let rest = path.strip_prefix("/dev/").unwrap_or(path);
    let (vg, lv) = rest.split_once('/').ok_or_else(|| SnapError::NotAnLv(path.into()))?;
    let ok = |s: &str| crate::targets::model::check_lvm_name(s).is_ok();
    if !ok(vg) || !ok(lv) {
        return Err(SnapError::NotAnLv(path.into()));
    }
    Ok((vg.into(), lv.into()))
}

/// The lvcreate argv for a snapshot of `origin`, or None when the snapshot
/// already exists (the seed takes no further action then).
pub fn create_plan(
    origin: &Lv,
    all: &[Lv],
    suffix: &str,
    size: SnapSize,
    chunk: Option<&str>,
) -> Result<Option<Vec<String>>, SnapError> {
    if suffix.is_empty() || !suffix.chars().all(|c| c.is_ascii_alphanumeric() || "_.+-".contains(c)) {
        return Err(SnapError::BadSuffix(suffix.into()));
    }
    if origin.is_snapshot() {
        return Err(SnapError::OfSnapshot(origin.path.clone(), origin.origin.clone().unwrap_or_default()));
    }
    let name = snapshot_name(&origin.name, suffix);
    if all.iter().any(|l| l.vg == origin.vg && l.name == name) {
        return Ok(None);
    }
    let bytes = snap_bytes(origin.size, origin.extent_size, size);
    let mut argv: Vec<String> =
        vec!["lvcreate".into(), "--snapshot".into(), "--name".into(), name, "--size".into(), format!("{bytes}b")];
    if let Some(c) = chunk {
        argv.extend(["--chunksize".into(), c.into()]);
    }
    argv.push(format!("{}/{}", origin.vg, origin.name));
    Ok(Some(argv))
}

/// The lvremove argv for a snapshot; anything else is refused.
pub fn remove_plan(lv: &Lv) -> Result<Vec<String>, SnapError> {
    if !lv.is_snapshot() {
        return Err(SnapError::NotASnapshot(lv.path.clone(), lv.attr.clone()));
    }
    Ok(vec!["lvremove".into(), "--force".into(), format!("{}/{}", lv.vg, lv.name)])
}

/// Runs LVM commands (locally or on a host) with optional `--config`.
#[derive(Clone, Debug, Default)]
pub struct Lvm {
    pub host: Option<SshTarget>,
    /// Passed as `--config STRING` to every LVM command.
    pub config: Option<String>,
}

impl Lvm {
    fn command(&self, argv: &[String]) -> Command {
        let mut a: Vec<String> = vec![argv[0].clone()];
        if let Some(c) = &self.config {
            a.extend(["--config".into(), c.clone()]);
        }
        a.extend(argv[1..].iter().cloned());
        Command::new(&a[0])
            .args(&a[1..])
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .env("LC_ALL", "C")
            .timeout(Duration::from_secs(300))
            .on(self.host.clone())
    }

    /// The argv as it would run (for `-n` output).
    pub fn shown(&self, argv: &[String]) -> String {
        let c = self.command(argv);
        c.argv()
            .map(|v| {
                v.iter()
                    .map(|a| crate::shared::command::shell_quote(&a.to_string_lossy()))
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|_| argv.join(" "))
    }

    pub fn run(&self, argv: &[String]) -> Result<String, CommandError> {
        let out = self.command(argv).run()?;
        Ok(out.stdout_str()?.to_string())
    }

    /// `lvs` of a volume group (or everything).
    pub fn lvs(&self, vg: Option<&str>) -> anyhow::Result<Vec<Lv>> {
        let mut argv: Vec<String> = ["lvs", "--reportformat", "json", "--units", "b", "--nosuffix", "-o", LV_FIELDS]
            .iter()
            .map(|s| s.to_string())
            .collect();
        if let Some(v) = vg {
            argv.push(v.into());
        }
        Ok(parse_lvs(&self.run(&argv)?)?)
    }

    /// The LV at `path`, and all LVs of its group.
    pub fn find(&self, path: &str) -> anyhow::Result<(Lv, Vec<Lv>)> {
        let (vg, lv) = split_lv(path)?;
        let all = self.lvs(Some(&vg))?;
        let found =
            all.iter().find(|l| l.name == lv).cloned().ok_or_else(|| SnapError::Missing(format!("{vg}/{lv}")))?;
        Ok((found, all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(name: &str, size: u64, attr: &str, origin: Option<&str>) -> Lv {
        Lv {
            vg: "vg_dsk_0".into(),
            name: name.into(),
            path: format!("/dev/vg_dsk_0/{name}"),
            attr: attr.into(),
            size,
            origin: origin.map(str::to_string),
            extent_size: 4 << 20,
        }
    }

    #[test]
    fn snapshot_size_table() {
        let e = 4 << 20;
        for (origin, size, want) in [
            (10 * GIB, SnapSize::Default, 512 * e),
            (99 * GIB, SnapSize::Default, 5069 * e),
            (100 * GIB, SnapSize::Default, 3840 * e),
            (10 * GIB, SnapSize::Percent(50), 1280 * e),
            (10 * GIB, SnapSize::Bytes(1), e),
            (1 << 20, SnapSize::Default, e),
        ] {
            let got = snap_bytes(origin, e, size);
            assert_eq!(got, want, "{origin} {size:?}");
            assert_eq!(got % e, 0);
        }
        // The seed's rule at the 100 GiB edge.
        assert!(snap_bytes(100 * GIB - e, e, SnapSize::Default) > snap_bytes(100 * GIB, e, SnapSize::Default));
    }

    #[test]
    fn create_and_remove_plans() {
        let origin = lv("lv_server01_apps_vol00", 10 * GIB, "-wi-a-----", None);
        let p = create_plan(&origin, std::slice::from_ref(&origin), DEFAULT_SUFFIX, SnapSize::Default, Some("64k"))
            .unwrap()
            .unwrap();
        assert_eq!(
            p,
            [
                "lvcreate",
                "--snapshot",
                "--name",
                "lv_server01_apps_vol00_snap",
                "--size",
                &format!("{}b", snap_bytes(10 * GIB, 4 << 20, SnapSize::Default)),
                "--chunksize",
                "64k",
                "vg_dsk_0/lv_server01_apps_vol00"
            ]
        );
        let snap = lv("lv_server01_apps_vol00_snap", GIB, "swi-a-s---", Some("lv_server01_apps_vol00"));
        assert_eq!(
            create_plan(&origin, &[origin.clone(), snap.clone()], "snap", SnapSize::Default, None).unwrap(),
            None
        );
        assert!(matches!(create_plan(&snap, &[], "snap", SnapSize::Default, None), Err(SnapError::OfSnapshot(..))));
        assert!(create_plan(&origin, &[], "a b", SnapSize::Default, None).is_err());
        assert_eq!(remove_plan(&snap).unwrap(), ["lvremove", "--force", "vg_dsk_0/lv_server01_apps_vol00_snap"]);
        assert!(matches!(remove_plan(&origin), Err(SnapError::NotASnapshot(..))));
    }

    #[test]
    fn lv_paths() {
        assert_eq!(split_lv("/dev/vg_a/lv_b").unwrap(), ("vg_a".into(), "lv_b".into()));
        assert_eq!(split_lv("vg_a/lv_b").unwrap(), ("vg_a".into(), "lv_b".into()));
        for bad in ["/dev/sda", "vg/../x", "/dev/vg/lv/x", "vg/-x"] {
            assert!(split_lv(bad).is_err(), "{bad}");
        }
        assert_eq!("25%".parse::<SnapSize>().unwrap(), SnapSize::Percent(25));
        assert!("0%".parse::<SnapSize>().is_err());
    }
}
