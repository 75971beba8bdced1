//! LVM logical volumes: the snapshot is `lvcreate --snapshot`, exported
//! with direct I/O. With IET's ddmap proc entry configured, the map and
//! the volume's writes are suspended around the snapshot (the seed's
//! sequence: mapsuspend, settle, lvcreate, dump, mapzap, mapresume), and
//! the dumped map is merged into the changes of earlier failed backups;
//! `release` with success drops them, with failure keeps them.
//!
//! The plan is pure ([`create_plan`]) and tested with tables; the
//! executor runs it through `lvm::snap::Lvm` (the one command runner).
//! This machine has no device-mapper, so only plans run in tests.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use super::export;
use super::state::{self, Layout, Phase, VolumeRecord};
use super::{NodeOptions, Outcome, Prepared, Released};
use crate::archive::ddmap_state::DdmapState;
use crate::ddmap::load_ddmap;
use crate::ddmap::{proc_control, ProcCommand};
use crate::lvm::report::Lv;
use crate::lvm::snap::{self, split_lv, Lvm, SnapSize};
use crate::shared::atomic_file::write_atomic;
use crate::shared::ddmap_file::Ddmap;
use crate::targets::model::IoMode;

#[derive(Clone, Debug)]
pub struct LvmOptions {
    pub lvm: Lvm,
    pub suffix: String,
    pub size: SnapSize,
    /// IET's ddmap proc directory and this volume's entry
    /// (`<target iqn>.<lun>`), when the node runs IET with ddmap.
    pub ddmap_proc: Option<(PathBuf, String)>,
    /// How long writes settle after mapsuspend (the seed waits 5 s).
    pub settle: Duration,
}

impl Default for LvmOptions {
    fn default() -> Self {
        LvmOptions {
            lvm: Lvm::default(),
            suffix: "archive".into(),
            size: SnapSize::Default,
            ddmap_proc: None,
            settle: Duration::from_secs(5),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Write a command to the ddmap proc entry.
    Proc(ProcCommand),
    Settle(Duration),
    /// An LVM command.
    Run(Vec<String>),
    /// Read the proc map and merge it into the pending changes.
    DumpMap,
    /// Export the snapshot device.
    Export(PathBuf),
}

/// The steps of `create` for `origin`. A leftover snapshot of the same
/// name (an unreleased earlier run) is removed first; a volume of that
/// name that is not a snapshot of `origin` is refused.
pub fn create_plan(origin: &Lv, all: &[Lv], opts: &LvmOptions) -> anyhow::Result<Vec<Step>> {
    let name = snap::snapshot_name(&origin.name, &opts.suffix);
    let mut steps = Vec::new();
    if let Some(old) = all.iter().find(|l| l.vg == origin.vg && l.name == name) {
        if old.origin.as_deref() != Some(origin.name.as_str()) {
            bail!("{}/{name} exists and is not a snapshot of {}: refusing to touch it", origin.vg, origin.name);
        }
        steps.push(Step::Run(snap::remove_plan(old)?));
    }
    let create = snap::create_plan(origin, &[], &opts.suffix, opts.size, None)?.context("snapshot plan")?;
    let device = PathBuf::from(format!("/dev/{}/{name}", origin.vg));
    if opts.ddmap_proc.is_some() {
        steps.extend([Step::Proc(ProcCommand::Suspend), Step::Settle(opts.settle), Step::Run(create), Step::DumpMap]);
        steps.extend([Step::Proc(ProcCommand::Zap), Step::Proc(ProcCommand::Resume)]);
    } else {
        steps.push(Step::Run(create));
    }
    steps.push(Step::Export(device));
    Ok(steps)
}

fn layout(opts: &NodeOptions, vg: &str, lv: &str) -> Layout {
    Layout { dir: opts.state_dir.join("lun-snapshot").join(vg).join(lv) }
}

fn merge_dump(proc_entry: &Path, pending: &Path) -> anyhow::Result<u64> {
    let dump = load_ddmap(proc_entry)?;
    let merged = match std::fs::read(pending) {
        Ok(bytes) => {
            let mut old = Ddmap::parse(&bytes).with_context(|| format!("pending map {}", pending.display()))?;
            old.merge_from(&dump)
                .with_context(|| format!("merging {} into {}", proc_entry.display(), pending.display()))?;
            old
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => dump,
        Err(e) => return Err(e).with_context(|| format!("reading {}", pending.display())),
    };
    write_atomic(pending, &merged.to_bytes()?).with_context(|| format!("writing {}", pending.display()))?;
    Ok(merged.map.count_set())
}

pub fn create(opts: &NodeOptions, volume: &str) -> anyhow::Result<Prepared> {
    let (vg, lv) = split_lv(volume)?;
    let l = layout(opts, &vg, &lv);
    let _lock = l.lock(opts.lock_wait, volume)?;
    let rec = state::load(&l.record())?;
    let iqn = export::export_iqn(&opts.export_prefix, &format!("{vg}.{lv}"), &format!("{vg}/{lv}"))?;
    let device = PathBuf::from(format!("/dev/{vg}/{}", snap::snapshot_name(&lv, &opts.lvm.suffix)));
    if !export::sessions(&opts.tgtadm, &iqn)?.is_empty() {
        bail!("the previous snapshot of {volume} is still exported as {iqn} with sessions: run `lun-snapshot release` first");
    }
    export::unexport(&opts.tgtadm, &iqn, &device)?;
    let (origin, all) = opts.lvm.lvm.find(volume)?;
    let steps = create_plan(&origin, &all, &opts.lvm)?;
    let mut changed = None;
    let mut suspended = None;
    let result = (|| -> anyhow::Result<()> {
        for s in &steps {
            match s {
                Step::Proc(c) => {
                    let (dir, name) = opts.lvm.ddmap_proc.as_ref().context("no ddmap proc entry")?;
                    proc_control(dir, name, *c)?;
                    suspended = (*c == ProcCommand::Suspend).then_some((dir.clone(), name.clone()));
                }
                Step::Settle(d) => std::thread::sleep(*d),
                Step::Run(argv) => {
                    opts.lvm.lvm.run(argv)?;
                }
                Step::DumpMap => {
                    let (dir, name) = opts.lvm.ddmap_proc.as_ref().context("no ddmap proc entry")?;
                    changed = Some(merge_dump(&dir.join(name), &l.pending_map())?);
                }
                Step::Export(dev) => {
                    export::export(&opts.tgtadm, &iqn, dev, IoMode::Blockio, &opts.initiator)?;
                }
            }
        }
        Ok(())
    })();
    // Writes must never stay suspended, whatever failed.
    if let Some((dir, name)) = suspended {
        if let Err(e) = proc_control(&dir, &name, ProcCommand::Resume) {
            tracing::error!("resuming {name}: {e:#}");
        }
    }
    result?;
    let size = origin.size;
    state::save(
        &l.record(),
        &VolumeRecord {
            phase: Phase::Exported,
            volume: volume.to_string(),
            identity: format!("{vg}/{lv}"),
            iqn: iqn.clone(),
            snapshot: device.clone(),
            size,
            created: state::now(),
            base_size: None,
        },
    )?;
    // The map covers every write since the first zap only when an earlier
    // run zapped it (a record exists); the first map is not trusted.
    let (ddmap, ddmap_state) = match (&opts.lvm.ddmap_proc, rec.is_some()) {
        (Some(_), true) => (Some(l.pending_map()), Some(DdmapState::Clean)),
        _ => (None, None),
    };
    let url = opts.portal.as_ref().map(|p| format!("iscsi://{p}/{iqn}/1"));
    Ok(Prepared {
        path: url.is_none().then(|| device.clone()),
        url,
        snapshot: device,
        size,
        ddmap,
        ddmap_state,
        token: iqn.clone(),
        iqn,
        kind: "lvm".into(),
        changed_segments: changed,
    })
}

pub fn release(opts: &NodeOptions, volume: &str, outcome: Outcome) -> anyhow::Result<Released> {
    let (vg, lv) = split_lv(volume)?;
    let l = layout(opts, &vg, &lv);
    let _lock = l.lock(opts.lock_wait, volume)?;
    let rec = state::load(&l.record())?;
    let iqn = export::export_iqn(&opts.export_prefix, &format!("{vg}.{lv}"), &format!("{vg}/{lv}"))?;
    let name = snap::snapshot_name(&lv, &opts.lvm.suffix);
    let device = PathBuf::from(format!("/dev/{vg}/{name}"));
    let export_removed = export::unexport(&opts.tgtadm, &iqn, &device)?;
    let all = opts.lvm.lvm.lvs(Some(&vg))?;
    let mut snapshot_removed = false;
    if let Some(s) = all.iter().find(|x| x.name == name) {
        if s.origin.as_deref() != Some(lv.as_str()) {
            bail!("{vg}/{name} is not a snapshot of {lv}: left alone");
        }
        opts.lvm.lvm.run(&snap::remove_plan(s)?)?;
        snapshot_removed = true;
    }
    let consumed = outcome == Outcome::Success && rec.as_ref().is_some_and(|r| r.phase == Phase::Exported);
    if consumed {
        let _ = std::fs::remove_file(l.pending_map());
    }
    if let Some(mut r) = rec {
        r.phase = Phase::Released;
        state::save(&l.record(), &r)?;
    }
    Ok(Released { volume: volume.to_string(), outcome, export_removed, snapshot_removed, changes_consumed: consumed })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lv(name: &str, origin: Option<&str>, attr: &str) -> Lv {
        Lv {
            vg: "vg0".into(),
            name: name.into(),
            path: format!("/dev/vg0/{name}"),
            size: 10 << 30,
            extent_size: 4 << 20,
            attr: attr.into(),
            origin: origin.map(str::to_string),
        }
    }

    #[test]
    fn plans() {
        let origin = lv("lv_a", None, "-wi-a-----");
        let create = vec![
            "lvcreate".to_string(),
            "--snapshot".into(),
            "--name".into(),
            "lv_a_archive".into(),
            "--size".into(),
            format!("{}b", 2u64 << 30),
            "vg0/lv_a".into(),
        ];
        let export = Step::Export("/dev/vg0/lv_a_archive".into());
        // Without a ddmap: snapshot, export.
        let o = LvmOptions::default();
        assert_eq!(
            create_plan(&origin, std::slice::from_ref(&origin), &o).unwrap(),
            vec![Step::Run(create.clone()), export.clone()]
        );
        // With IET's ddmap: the seed's sequence, resume before the export.
        let o =
            LvmOptions { ddmap_proc: Some(("/proc/net/iet/ddmap".into(), "iqn.x.0".into())), ..LvmOptions::default() };
        assert_eq!(
            create_plan(&origin, std::slice::from_ref(&origin), &o).unwrap(),
            vec![
                Step::Proc(ProcCommand::Suspend),
                Step::Settle(Duration::from_secs(5)),
                Step::Run(create.clone()),
                Step::DumpMap,
                Step::Proc(ProcCommand::Zap),
                Step::Proc(ProcCommand::Resume),
                export.clone()
            ]
        );
        // A leftover snapshot is removed first; a stranger of that name refused.
        let old = lv("lv_a_archive", Some("lv_a"), "swi-a-s---");
        let o = LvmOptions::default();
        let p = create_plan(&origin, &[origin.clone(), old], &o).unwrap();
        assert_eq!(p[0], Step::Run(vec!["lvremove".into(), "--force".into(), "vg0/lv_a_archive".into()]));
        let stranger = lv("lv_a_archive", None, "-wi-a-----");
        assert!(create_plan(&origin, &[origin.clone(), stranger], &o).is_err());
        // A snapshot is not snapshotted again.
        assert!(create_plan(&lv("s", Some("lv_a"), "swi-a-s---"), &[], &o).is_err());
    }

    #[test]
    fn dumps_merge_into_pending_changes() {
        let d = tempfile::tempdir().unwrap();
        let mut a = Ddmap::for_volume("iqn.x.0", 4 << 20);
        a.map.set(1);
        std::fs::write(d.path().join("dump"), a.to_bytes().unwrap()).unwrap();
        let pending = d.path().join("pending.ddmap");
        assert_eq!(merge_dump(&d.path().join("dump"), &pending).unwrap(), 1);
        let mut b = Ddmap::for_volume("iqn.x.0", 4 << 20);
        b.map.set(7);
        std::fs::write(d.path().join("dump"), b.to_bytes().unwrap()).unwrap();
        assert_eq!(merge_dump(&d.path().join("dump"), &pending).unwrap(), 2);
        // A dump of another volume is refused, the pending map unchanged.
        std::fs::write(d.path().join("dump"), Ddmap::for_volume("other", 4 << 20).to_bytes().unwrap()).unwrap();
        assert!(merge_dump(&d.path().join("dump"), &pending).is_err());
        assert_eq!(Ddmap::parse(&std::fs::read(&pending).unwrap()).unwrap().map.count_set(), 2);
    }
}
