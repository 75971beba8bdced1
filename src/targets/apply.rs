//! `targets apply` for tgtd: lock, read live state, plan, print, re-read
//! and refuse if it moved, run the plan's tgtadm commands in order, record
//! what was applied. Refuses disruptive changes on targets with sessions
//! unless forced; a refused or dry run changes nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use crate::shared::atomic_file::write_atomic;
use crate::shared::block_device::size_of_path;
use crate::shared::file_identity::euid;
use crate::shared::file_lock::LockFile;
use crate::shared::owned_dir::{check_owned_dir, ensure_owned_dir};
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};
use crate::targets::live::tgt::{LiveState, Tgtadm};
use crate::targets::model::NodeView;
use crate::targets::plan::{self, Inputs, LastApplied, Plan};

pub const LAST_APPLIED: &str = "tgt-last-applied.json";

#[derive(Clone, Debug)]
pub struct ApplyOptions {
    pub state_dir: PathBuf,
    pub tgtadm: Tgtadm,
    pub force: bool,
    pub dry_run: bool,
}

#[derive(Debug)]
pub enum Outcome {
    /// Nothing to do.
    NoOp(Plan),
    Applied(Plan),
    DryRun(Plan),
    /// Disruptive changes on targets with sessions, without --force.
    Refused(Plan),
}

/// Current sizes of the devices the view exports (absent ones left out).
pub fn device_sizes(view: &NodeView) -> BTreeMap<PathBuf, u64> {
    let mut out = BTreeMap::new();
    for t in &view.targets {
        for l in &t.luns {
            let size = size_of_path(&l.device).ok();
            if let Some(s) = size {
                out.insert(l.device.clone(), s);
            }
        }
    }
    out
}

pub fn read_last_applied(state_dir: &Path) -> anyhow::Result<LastApplied> {
    let p = state_dir.join(LAST_APPLIED);
    match read_text(&p, MAX_TEXT_BYTES) {
        Ok(text) => serde_json::from_str(&text).with_context(|| format!("reading last-applied record {}", p.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(LastApplied::default()),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// Plans and (unless refused or dry) applies. `show` receives the plan
/// before anything is changed.
///
/// Nothing is created before a change is certain: a dry, refused or noop
/// run, or one that cannot read tgtd, leaves no state directory or lock
/// file behind. A run that will change something then makes sure the state
/// directory is this user's alone (records and the lock in a directory
/// others may write could be symlinks planted to make root overwrite any
/// file), takes the lock, and goes on only if neither the record nor tgtd
/// moved since the plan (another apply may have run in between).
pub fn apply(view: &NodeView, opts: &ApplyOptions, show: &mut dyn FnMut(&Plan)) -> anyhow::Result<Outcome> {
    if opts.state_dir.exists() {
        check_owned_dir(&opts.state_dir, euid()).context("the state directory cannot be trusted")?;
    }
    let last = read_last_applied(&opts.state_dir)?;
    let live = opts.tgtadm.read_state().context("reading tgtd's live state")?;
    let sizes = device_sizes(view);
    let p = plan::plan(&Inputs { view, live: &live, last: &last, sizes: &sizes })?;
    show(&p);
    if !p.refused().is_empty() && !opts.force {
        return Ok(Outcome::Refused(p));
    }
    if opts.dry_run {
        return Ok(Outcome::DryRun(p));
    }
    let record = plan::record(view, &sizes);
    if p.is_noop() && record == last {
        return Ok(Outcome::NoOp(p));
    }
    ensure_owned_dir(&opts.state_dir, euid(), 0o755)
        .with_context(|| format!("preparing the state directory {}", opts.state_dir.display()))?;
    let _lock = LockFile::for_path(&opts.state_dir.join("tgt-apply")).context("another targets apply is running")?;
    if read_last_applied(&opts.state_dir)? != last {
        bail!("another targets apply ran while the plan was made: nothing was changed; run apply again");
    }
    if p.is_noop() {
        write_record(&opts.state_dir, &record)?;
        return Ok(Outcome::NoOp(p));
    }
    let again: LiveState = opts.tgtadm.read_state().context("re-reading tgtd's live state")?;
    if again != live {
        bail!("tgtd's state changed while the plan was made (another tool or a new session): nothing was changed; run apply again");
    }
    for (n, argv) in p.commands().enumerate() {
        tracing::info!("{}", crate::targets::tgtadm::masked(&opts.tgtadm.full_argv(argv)).join(" "));
        if let Err(e) = opts.tgtadm.run(argv) {
            let total = p.commands().count();
            return Err(anyhow::Error::new(e).context(format!(
                "command {} of {total} failed; the {n} before it were applied; run apply again to converge",
                n + 1
            )));
        }
    }
    write_record(&opts.state_dir, &record)?;
    Ok(Outcome::Applied(p))
}

fn write_record(state_dir: &Path, record: &LastApplied) -> anyhow::Result<()> {
    let p = state_dir.join(LAST_APPLIED);
    let mut bytes = serde_json::to_vec_pretty(record)?;
    bytes.push(b'\n');
    write_atomic(&p, &bytes).with_context(|| format!("writing {}", p.display()))
}
