//! Exporting a snapshot as its own tgt target for the archive host only,
//! and removing that export. Targets are found by IQN and checked by what
//! they serve before anything is removed: a target of the same name that
//! serves something else is refused, never torn down.

use std::path::Path;

use anyhow::{bail, Context};

use crate::targets::live::tgt::{LiveTarget, Tgtadm};
use crate::targets::model::{check_target_iqn, IoMode};
use crate::targets::tgtadm::{delete_target, export_single, free_tid, remove_export};

/// `<prefix>.<label>.<crc of the volume>`: readable, unique per volume
/// (two volumes both named `x.img` differ in the checksum).
pub fn export_iqn(prefix: &str, label: &str, volume_key: &str) -> anyhow::Result<String> {
    let mut clean = String::new();
    for c in label.chars() {
        let c = c.to_ascii_lowercase();
        let c = if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' };
        if !(c == '-' && clean.ends_with('-')) {
            clean.push(c);
        }
    }
    let clean = clean.trim_matches(|c| c == '-' || c == '.');
    let iqn = format!("{prefix}.{clean}.{:08x}", crc32fast::hash(volume_key.as_bytes()));
    check_target_iqn(&iqn).map_err(|e| anyhow::anyhow!("export name {iqn:?} {e} (check --export-prefix)"))?;
    Ok(iqn)
}

/// A SCSI serial (at most 16 characters) unique to the export.
pub fn serial_of(iqn: &str) -> String {
    format!("SNAP{:08X}", crc32fast::hash(iqn.as_bytes()))
}

fn find(tgtadm: &Tgtadm, iqn: &str) -> anyhow::Result<Option<LiveTarget>> {
    Ok(tgtadm.show_targets().context("reading tgtd's targets")?.into_iter().find(|t| t.iqn == iqn))
}

fn serves(t: &LiveTarget, backing: &Path) -> bool {
    let want = backing.to_string_lossy();
    t.luns.iter().any(|l| l.lun == 1 && l.backing_path.as_deref() == Some(want.as_ref()))
}

/// Exports `backing` as LUN 1 of a new target `iqn`, admitting only
/// `initiator`. Returns the tid. A half-made export is deleted again.
pub fn export(tgtadm: &Tgtadm, iqn: &str, backing: &Path, io: IoMode, initiator: &str) -> anyhow::Result<u32> {
    let device = backing.to_str().context("the snapshot path is not UTF-8")?;
    // Another tool may take the tid we picked between reading and
    // creating: read again and retry a few times.
    for _ in 0..5 {
        let live = tgtadm.show_targets().context("reading tgtd's targets")?;
        if let Some(t) = live.iter().find(|t| t.iqn == iqn) {
            bail!("tgtd already has a target {iqn} (tid {}): remove the stale export first", t.tid);
        }
        let tid = free_tid(&live);
        let mut steps = export_single(tid, iqn, device, io, &serial_of(iqn), initiator);
        // The archive only reads: a write through the export would change
        // the snapshot the map and the archive's records describe.
        steps.insert(2, readonly_lun(tid));
        if let Err(e) = tgtadm.run(&steps[0]) {
            if find(tgtadm, iqn)?.is_none() && tgtadm.show_targets()?.iter().any(|t| t.tid == tid) {
                continue; // lost the tid to someone else
            }
            return Err(e).context(format!("creating target {iqn}"));
        }
        for s in &steps[1..] {
            if let Err(e) = tgtadm.run(s) {
                let _ = tgtadm.run(&delete_target(tid, true));
                return Err(e).context(format!("exporting {} as {iqn}", backing.display()));
            }
        }
        tracing::info!("exported {} as {iqn} (tid {tid}) to {initiator} only", backing.display());
        return Ok(tid);
    }
    bail!("could not find a free tid for {iqn}: tgtd's targets keep changing")
}

fn readonly_lun(tid: u32) -> Vec<String> {
    ["--op", "update", "--mode", "logicalunit", "--tid", &tid.to_string(), "--lun", "1", "--params", "readonly=1"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// Removes the export `iqn` (cutting its sessions) if it serves `backing`.
/// Ok(false) when there is none.
pub fn unexport(tgtadm: &Tgtadm, iqn: &str, backing: &Path) -> anyhow::Result<bool> {
    let Some(t) = find(tgtadm, iqn)? else { return Ok(false) };
    if !serves(&t, backing) {
        bail!(
            "tgtd's target {iqn} (tid {}) does not serve {} as LUN 1: not ours, left alone",
            t.tid,
            backing.display()
        );
    }
    for s in remove_export(&t) {
        tgtadm.run(&s).with_context(|| format!("removing export {iqn}"))?;
    }
    tracing::info!("removed export {iqn} (tid {})", t.tid);
    Ok(true)
}

/// Initiators connected to the export `iqn`.
pub fn sessions(tgtadm: &Tgtadm, iqn: &str) -> anyhow::Result<Vec<(String, String)>> {
    Ok(find(tgtadm, iqn)?.map(|t| t.sessions()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn export_names_are_valid_and_distinct() {
        let a = export_iqn("iqn.2024-01.org.x", "Vol A_b@1.img", "/srv/a/Vol A_b@1.img").unwrap();
        assert!(a.starts_with("iqn.2024-01.org.x.vol-a-b-1.img."), "{a}");
        let b = export_iqn("iqn.2024-01.org.x", "Vol A_b@1.img", "/srv/b/Vol A_b@1.img").unwrap();
        assert_ne!(a, b);
        assert!(export_iqn("not-an-iqn", "x", "x").is_err());
        assert!(export_iqn("iqn.2024-01.org.x", &"x".repeat(300), "x").is_err());
        assert!(serial_of(&a).len() <= 16);
    }
}
