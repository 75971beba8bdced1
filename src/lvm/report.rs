//! LVM's machine-readable reports (`lvs`/`vgs --reportformat json --units b
//! --nosuffix`), parsed by pure functions tested on captured output
//! (tests/fixtures/lvm/<version>/). Sizes are unsigned bytes; a missing
//! field or a non-numeric size is an error naming it.

use serde::Deserialize;

/// The fields santools asks `lvs` for, in this order.
pub const LV_FIELDS: &str = "vg_name,lv_name,lv_path,lv_attr,lv_size,origin,vg_extent_size";
/// The fields santools asks `vgs` for.
pub const VG_FIELDS: &str = "vg_name,vg_attr,vg_extent_size,vg_size,vg_free,lv_count";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lv {
    pub vg: String,
    pub name: String,
    pub path: String,
    pub attr: String,
    pub size: u64,
    /// The origin's name for a snapshot.
    pub origin: Option<String>,
    pub extent_size: u64,
}

impl Lv {
    /// lv_attr's first character: `s` snapshot, `S` invalid snapshot.
    pub fn is_snapshot(&self) -> bool {
        matches!(self.attr.chars().next(), Some('s' | 'S')) || self.origin.is_some() && self.attr.starts_with('s')
    }
    /// lv_attr's fifth character: `a` active.
    pub fn is_active(&self) -> bool {
        self.attr.chars().nth(4) == Some('a')
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vg {
    pub name: String,
    pub attr: String,
    pub extent_size: u64,
    pub size: u64,
    pub free: u64,
    pub lv_count: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("LVM report: {0}")]
pub struct ReportError(pub String);

#[derive(Deserialize)]
struct Report<T> {
    report: Vec<T>,
}
#[derive(Deserialize)]
struct LvSection {
    lv: Vec<std::collections::BTreeMap<String, String>>,
}
#[derive(Deserialize)]
struct VgSection {
    vg: Vec<std::collections::BTreeMap<String, String>>,
}

fn field<'a>(row: &'a std::collections::BTreeMap<String, String>, k: &str) -> Result<&'a str, ReportError> {
    row.get(k).map(String::as_str).ok_or_else(|| ReportError(format!("row without field {k}")))
}

fn bytes(row: &std::collections::BTreeMap<String, String>, k: &str) -> Result<u64, ReportError> {
    let v = field(row, k)?;
    v.parse().map_err(|_| ReportError(format!("field {k} = {v:?} is not a byte count (use --units b --nosuffix)")))
}

pub fn parse_lvs(json: &str) -> Result<Vec<Lv>, ReportError> {
    let r: Report<LvSection> =
        serde_json::from_str(json).map_err(|e| ReportError(format!("not an lvs JSON report: {e}")))?;
    let mut out = Vec::new();
    for section in r.report {
        for row in section.lv {
            let origin = field(&row, "origin")?;
            out.push(Lv {
                vg: field(&row, "vg_name")?.into(),
                name: field(&row, "lv_name")?.into(),
                path: field(&row, "lv_path")?.into(),
                attr: field(&row, "lv_attr")?.into(),
                size: bytes(&row, "lv_size")?,
                origin: (!origin.is_empty()).then(|| origin.to_string()),
                extent_size: bytes(&row, "vg_extent_size")?,
            });
        }
    }
    Ok(out)
}

pub fn parse_vgs(json: &str) -> Result<Vec<Vg>, ReportError> {
    let r: Report<VgSection> =
        serde_json::from_str(json).map_err(|e| ReportError(format!("not a vgs JSON report: {e}")))?;
    let mut out = Vec::new();
    for section in r.report {
        for row in section.vg {
            out.push(Vg {
                name: field(&row, "vg_name")?.into(),
                attr: field(&row, "vg_attr")?.into(),
                extent_size: bytes(&row, "vg_extent_size")?,
                size: bytes(&row, "vg_size")?,
                free: bytes(&row, "vg_free")?,
                lv_count: bytes(&row, "lv_count")?,
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LVS: &str = include_str!("../../tests/fixtures/lvm/2.03.16/lvs.json");
    const VGS: &str = include_str!("../../tests/fixtures/lvm/2.03.16/vgs.json");
    const LVS_SNAP: &str = include_str!("../../tests/fixtures/lvm/2.03.16/lvs-snapshot.json");

    #[test]
    fn captured_reports_parse() {
        let lvs = parse_lvs(LVS).unwrap();
        assert_eq!(lvs[0].name, "lv_server01_apps_vol00");
        assert_eq!(lvs[0].size, 12 << 20);
        assert_eq!(lvs[0].extent_size, 4 << 20);
        assert!(!lvs[0].is_snapshot());
        let vgs = parse_vgs(VGS).unwrap();
        assert_eq!(vgs[0].name, "vg_santools_fixture");
        assert!(vgs[0].free < vgs[0].size);
    }

    #[test]
    fn snapshot_rows_are_recognised() {
        let lvs = parse_lvs(LVS_SNAP).unwrap();
        let snap = lvs.iter().find(|l| l.name.ends_with("_snap")).unwrap();
        assert!(snap.is_snapshot());
        assert_eq!(snap.origin.as_deref(), Some("lv_server01_apps_vol00"));
        let origin = lvs.iter().find(|l| l.name == "lv_server01_apps_vol00").unwrap();
        assert!(!origin.is_snapshot() && origin.is_active());
    }

    #[test]
    fn bad_reports_are_errors() {
        assert!(parse_lvs("{}").is_err());
        assert!(parse_lvs(&LVS.replace("12582912", "12.00m")).unwrap_err().0.contains("lv_size"));
    }
}
