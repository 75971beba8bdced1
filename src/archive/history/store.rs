//! The checksum history of one archive volume: every snapshot's checksum
//! file, kept as a chain of reverse deltas anchored at the live checksum
//! file, so 30 nightly snapshots with 1% change cost about a third of one
//! full checksum file instead of 30 (docs/archive.md, "checksum history").
//!
//! Files in `<ddless dir>/history/<prefix>_<lv>/`:
//! - `head.json`: the newest snapshot, whose checksum file is the live one,
//!   and the digest the live file had when that snapshot was taken;
//! - `<SNAP>.base`: a copy of the live file made before a backup (or a
//!   repair) changes it, so the head's checksum file survives a crash;
//! - `<SNAP>.delta`: how `<SNAP>`'s checksum file differs from the next
//!   newer snapshot's (named in the delta);
//! - `pending.json`: the snapshot a backup is about to take and the digest
//!   of the live file it will stand for.
//!
//! Every file is replaced atomically; every step can be repeated after a
//! crash (merging an orphaned delta into its predecessor is idempotent).
//! The caller holds the volume lock.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::delta::{DeltaError, DeltaHeader, DeltaReader, DeltaWriter, Digest, DigestBuilder};
use crate::shared::atomic_file::{sync_parent_dir, AtomicFile};
use crate::shared::checksum_file::record_count;
use crate::shared::checksum_record::ChecksumRecord;
use crate::shared::failpoint;

/// Records processed per read while streaming checksum files.
const CHUNK_RECORDS: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("no checksum history for snapshot {snapshot}: {reason}")]
    NoHistory { snapshot: String, reason: String },
    #[error("checksum history file {}: {cause}", path.display())]
    Damaged { path: PathBuf, cause: DeltaError },
    #[error("checksum history file {}: {message}", path.display())]
    BadState { path: PathBuf, message: String },
    #[error("{what} {}: {cause}", path.display())]
    Io { what: &'static str, path: PathBuf, cause: io::Error },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> HistoryError + 'a {
    move |cause| HistoryError::Io { what, path: path.to_path_buf(), cause }
}

/// `head.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Head {
    pub format: String,
    pub snapshot: String,
    pub segments: u64,
    pub digest: Digest,
}

/// `pending.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pending {
    pub format: String,
    pub next: String,
    pub segments: u64,
    pub digest: Digest,
}

const HEAD_FORMAT: &str = "santools-history-head-1";
const PENDING_FORMAT: &str = "santools-history-pending-1";

/// What [`HistoryStore::preserve_head`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Preserved {
    /// No snapshot yet: nothing to keep.
    NoHead,
    /// The head's checksum file is (now) kept in its base copy.
    Kept,
    /// The live file no longer matches the head: the head's history (and
    /// with it every older one) cannot be kept. Carries the reason.
    Lost(String),
}

/// A snapshot's checksum file rebuilt from the history.
#[derive(Debug)]
pub struct Reconstruction {
    pub segments: u64,
    /// Problems found on the way (damaged files, digest mismatch). Empty
    /// when the rebuilt file provably equals the one the snapshot had.
    pub problems: Vec<String>,
    /// The history files the reconstruction read, for reports.
    pub files: Vec<PathBuf>,
}

pub struct HistoryStore {
    live: PathBuf,
    dir: PathBuf,
}

/// Streams a checksum file's digest.
pub fn digest_of(path: &Path) -> io::Result<(u64, Digest)> {
    let f = File::open(path)?;
    let len = f.metadata()?.len();
    let segments = record_count(len).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let mut r = BufReader::with_capacity(1 << 20, f);
    let mut d = DigestBuilder::default();
    let mut buf = vec![0u8; CHUNK_RECORDS * 8];
    loop {
        let n = read_full(&mut r, &mut buf)?;
        if n == 0 {
            break;
        }
        d.update(&buf[..n]);
    }
    Ok((segments, d.finish()))
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match r.read(&mut buf[done..]) {
            Ok(0) => break,
            Ok(n) => done += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

/// Copies `from` to `to` atomically and durably (reflinked where the file
/// system can).
fn copy_durable(from: &Path, to: &Path) -> io::Result<()> {
    let tmp = AtomicFile::create(to)?;
    let mut src = File::open(from)?;
    io::copy(&mut src, &mut tmp.file())?;
    tmp.commit()
}

fn write_json_atomic<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let mut bytes = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    bytes.push(b'\n');
    crate::shared::atomic_file::write_atomic(path, &bytes)
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>, HistoryError> {
    let bytes = match fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(HistoryError::Io { what: "reading", path: path.to_path_buf(), cause: e }),
    };
    if bytes.len() > 64 * 1024 {
        return Err(HistoryError::BadState { path: path.to_path_buf(), message: "larger than 64 KiB".into() });
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| HistoryError::BadState { path: path.to_path_buf(), message: e.to_string() })
}

fn open_delta(path: &Path) -> Result<DeltaReader<BufReader<File>>, HistoryError> {
    let f = File::open(path).map_err(io_err("opening", path))?;
    DeltaReader::open(BufReader::with_capacity(1 << 20, f))
        .map_err(|cause| HistoryError::Damaged { path: path.to_path_buf(), cause })
}

impl HistoryStore {
    /// The history of the volume whose live checksum file is `live`, kept
    /// in `dir`.
    pub fn new(live: PathBuf, dir: PathBuf) -> Self {
        HistoryStore { live, dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn live(&self) -> &Path {
        &self.live
    }

    fn head_path(&self) -> PathBuf {
        self.dir.join("head.json")
    }
    fn pending_path(&self) -> PathBuf {
        self.dir.join("pending.json")
    }
    fn base_path(&self, snap: &str) -> PathBuf {
        self.dir.join(format!("{snap}.base"))
    }
    pub fn delta_path(&self, snap: &str) -> PathBuf {
        self.dir.join(format!("{snap}.delta"))
    }

    fn ensure_dir(&self) -> Result<(), HistoryError> {
        if !self.dir.is_dir() {
            fs::create_dir_all(&self.dir).map_err(io_err("creating history directory", &self.dir))?;
            sync_parent_dir(&self.dir).map_err(io_err("syncing", &self.dir))?;
        }
        Ok(())
    }

    pub fn head(&self) -> Result<Option<Head>, HistoryError> {
        let h: Option<Head> = read_json(&self.head_path())?;
        if let Some(h) = &h {
            if h.format != HEAD_FORMAT {
                return Err(HistoryError::BadState {
                    path: self.head_path(),
                    message: format!("unknown format {:?}", h.format),
                });
            }
        }
        Ok(h)
    }

    pub fn pending(&self) -> Result<Option<Pending>, HistoryError> {
        read_json(&self.pending_path())
    }

    /// Before the live checksum file changes (a backup or a repair): keeps
    /// the head snapshot's checksum file in `<head>.base`, unless it is
    /// already kept there (an interrupted run: then the live file may be
    /// half-updated and must not be copied again).
    pub fn preserve_head(&self) -> Result<Preserved, HistoryError> {
        let Some(head) = self.head()? else { return Ok(Preserved::NoHead) };
        let base = self.base_path(&head.snapshot);
        if base.exists() {
            return Ok(Preserved::Kept);
        }
        let (segments, digest) = match digest_of(&self.live) {
            Ok(v) => v,
            Err(e) => return Ok(Preserved::Lost(format!("live checksum file {}: {e}", self.live.display()))),
        };
        if (segments, digest) != (head.segments, head.digest) {
            return Ok(Preserved::Lost(format!(
                "live checksum file {} changed since snapshot {} was taken",
                self.live.display(),
                head.snapshot
            )));
        }
        self.ensure_dir()?;
        copy_durable(&self.live, &base).map_err(io_err("keeping the head checksum file in", &base))?;
        failpoint::hit("history.after-base");
        Ok(Preserved::Kept)
    }

    /// After the copy, before the snapshot `next` is taken: writes the
    /// head's delta against the live file and `pending.json`.
    pub fn prepare_commit(&self, next: &str) -> Result<Pending, HistoryError> {
        self.ensure_dir()?;
        let (segments, digest) = digest_of(&self.live).map_err(io_err("reading live checksum file", &self.live))?;
        if let Some(head) = self.head()? {
            let base = self.base_path(&head.snapshot);
            if base.exists() {
                self.write_delta(&head, &base, next)?;
            }
        }
        failpoint::hit("history.after-delta");
        let pending = Pending { format: PENDING_FORMAT.into(), next: next.to_string(), segments, digest };
        write_json_atomic(&self.pending_path(), &pending).map_err(io_err("writing", &self.pending_path()))?;
        Ok(pending)
    }

    /// After the snapshot exists: it becomes the head.
    pub fn finish_commit(&self) -> Result<(), HistoryError> {
        let Some(p) = self.pending()? else { return Ok(()) };
        let head = Head { format: HEAD_FORMAT.into(), snapshot: p.next, segments: p.segments, digest: p.digest };
        // Durable before pending.json goes: a crash must never leave neither.
        write_json_atomic(&self.head_path(), &head).map_err(io_err("writing", &self.head_path()))?;
        failpoint::hit("history.after-head");
        self.remove_stale_bases(&head.snapshot)?;
        fs::remove_file(self.pending_path()).map_err(io_err("removing", &self.pending_path()))?;
        sync_parent_dir(&self.pending_path()).map_err(io_err("syncing", &self.dir))?;
        Ok(())
    }

    /// After a crash: if the snapshot a backup was about to take exists,
    /// finishes its commit. Returns the snapshot it completed.
    pub fn recover(&self, snapshot_exists: impl Fn(&str) -> bool) -> Result<Option<String>, HistoryError> {
        let Some(p) = self.pending()? else {
            if let Some(h) = self.head()? {
                // A crash between head.json and the base removal.
                if self.pending()?.is_none() {
                    self.remove_stale_bases(&h.snapshot)?;
                }
            }
            return Ok(None);
        };
        if snapshot_exists(&p.next) {
            self.finish_commit()?;
            return Ok(Some(p.next));
        }
        Ok(None)
    }

    fn remove_stale_bases(&self, head: &str) -> Result<(), HistoryError> {
        let keep = format!("{head}.base");
        for name in self.list_names()? {
            if name.ends_with(".base") && name != keep {
                let p = self.dir.join(&name);
                fs::remove_file(&p).map_err(io_err("removing", &p))?;
            }
        }
        Ok(())
    }

    fn list_names(&self) -> Result<Vec<String>, HistoryError> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(HistoryError::Io { what: "listing", path: self.dir.clone(), cause: e }),
        };
        let mut out = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io_err("listing", &self.dir))?;
            if let Some(n) = entry.file_name().to_str() {
                out.push(n.to_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Snapshots that have a delta file.
    pub fn delta_snapshots(&self) -> Result<Vec<String>, HistoryError> {
        Ok(self.list_names()?.into_iter().filter_map(|n| n.strip_suffix(".delta").map(str::to_string)).collect())
    }

    /// Writes `<head>.delta`: the head's records (from its base copy) that
    /// differ from the live file, pointing at `next`.
    fn write_delta(&self, head: &Head, base: &Path, next: &str) -> Result<(), HistoryError> {
        let out = self.delta_path(&head.snapshot);
        // Pass 1: count entries (the header announces them) and check the base.
        let mut count = 0u64;
        let mut digest = DigestBuilder::default();
        let segments = self.diff(base, |_, _| count += 1, &mut digest)?;
        let d = digest.finish();
        if (segments, d) != (head.segments, head.digest) {
            return Err(HistoryError::BadState {
                path: base.to_path_buf(),
                message: format!("does not hold the checksum file of snapshot {} (digest differs)", head.snapshot),
            });
        }
        let header = DeltaHeader {
            snapshot: head.snapshot.clone(),
            next: next.to_string(),
            segments,
            digest: d,
            entries: count,
        };
        let tmp = AtomicFile::create(&out).map_err(io_err("creating", &out))?;
        let mut w = DeltaWriter::new(BufWriter::with_capacity(1 << 20, tmp.file()), &header)
            .map_err(|cause| HistoryError::Damaged { path: out.clone(), cause })?;
        let mut failure: Option<DeltaError> = None;
        self.diff(
            base,
            |i, r| {
                if failure.is_none() {
                    if let Err(e) = w.push(i, r) {
                        failure = Some(e);
                    }
                }
            },
            &mut DigestBuilder::default(),
        )?;
        if let Some(source) = failure {
            return Err(HistoryError::Damaged { path: out, cause: source });
        }
        let mut buf = w.finish().map_err(|cause| HistoryError::Damaged { path: out.clone(), cause })?;
        buf.flush().map_err(io_err("writing", &out))?;
        drop(buf);
        // pending.json, written next into the same directory, syncs it.
        tmp.commit_then_sync_dir_later().map_err(io_err("writing", &out))
    }

    /// Calls `entry(i, base[i])` for every record of `base` that the live
    /// file does not have equal; returns the base's record count.
    fn diff(
        &self,
        base: &Path,
        mut entry: impl FnMut(u64, ChecksumRecord),
        digest: &mut DigestBuilder,
    ) -> Result<u64, HistoryError> {
        let bf = File::open(base).map_err(io_err("opening", base))?;
        let lf = File::open(&self.live).map_err(io_err("opening", &self.live))?;
        let blen = bf.metadata().map_err(io_err("reading", base))?.len();
        let llen = lf.metadata().map_err(io_err("reading", &self.live))?.len();
        let bn = record_count(blen)
            .map_err(|e| HistoryError::BadState { path: base.to_path_buf(), message: e.to_string() })?;
        let ln = record_count(llen)
            .map_err(|e| HistoryError::BadState { path: self.live.clone(), message: e.to_string() })?;
        let mut b = vec![0u8; CHUNK_RECORDS * 8];
        let mut l = vec![0u8; CHUNK_RECORDS * 8];
        let mut first = 0u64;
        while first < bn {
            let n = (bn - first).min(CHUNK_RECORDS as u64) as usize;
            bf.read_exact_at(&mut b[..n * 8], first * 8).map_err(io_err("reading", base))?;
            digest.update(&b[..n * 8]);
            let ln_here = ln.saturating_sub(first).min(n as u64) as usize;
            if ln_here > 0 {
                lf.read_exact_at(&mut l[..ln_here * 8], first * 8).map_err(io_err("reading", &self.live))?;
            }
            for k in 0..n {
                let br = &b[k * 8..k * 8 + 8];
                let differs = if k < ln_here { br != &l[k * 8..k * 8 + 8] } else { br != [0u8; 8] };
                if differs {
                    entry(first + k as u64, ChecksumRecord::from_bytes(br.try_into().unwrap_or([0; 8])));
                }
            }
            first += n as u64;
        }
        Ok(bn)
    }

    /// Rebuilds snapshot `snap`'s checksum file into `out` (created or
    /// replaced). Errors only when there is no history to rebuild from;
    /// damage found on the way is listed in the result.
    pub fn reconstruct(&self, snap: &str, out: &Path) -> Result<Reconstruction, HistoryError> {
        let head = self.head()?.ok_or_else(|| HistoryError::NoHistory {
            snapshot: snap.to_string(),
            reason: "no backup has recorded a checksum history for this volume".into(),
        })?;
        // The chain of deltas from `snap` up to the head.
        let mut chain: Vec<(PathBuf, DeltaHeader)> = Vec::new();
        let mut cur = snap.to_string();
        let limit = self.list_names()?.len() + 1;
        while cur != head.snapshot {
            let p = self.delta_path(&cur);
            if !p.exists() {
                let reason = if chain.is_empty() {
                    format!("{} does not exist", p.display())
                } else {
                    format!("the chain is broken at {cur}: {} does not exist", p.display())
                };
                return Err(HistoryError::NoHistory { snapshot: snap.to_string(), reason });
            }
            let r = open_delta(&p)?;
            let h = r.header().clone();
            if h.snapshot != cur {
                return Err(HistoryError::Damaged {
                    path: p,
                    cause: DeltaError::Field {
                        field: "snapshot name",
                        problem: format!("names {:?}, not {cur:?}", h.snapshot),
                    },
                });
            }
            cur = h.next.clone();
            chain.push((p, h));
            if chain.len() > limit {
                return Err(HistoryError::BadState { path: self.dir.clone(), message: "the delta chain loops".into() });
            }
        }
        let mut problems = Vec::new();
        let mut files = Vec::new();
        let base = self.base_path(&head.snapshot);
        let anchor = if base.exists() { base } else { self.live.clone() };
        copy_durable_fast(&anchor, out).map_err(io_err("copying", &anchor))?;
        files.push(anchor.clone());
        match digest_of(out) {
            Ok(v) if v == (head.segments, head.digest) => {}
            Ok(_) => problems.push(format!(
                "{} does not hold the checksum file of snapshot {} any more (digest differs)",
                anchor.display(),
                head.snapshot
            )),
            Err(e) => problems.push(format!("{}: {e}", anchor.display())),
        }
        let f = fs::OpenOptions::new().read(true).write(true).open(out).map_err(io_err("opening", out))?;
        let mut expect = (head.segments, head.digest);
        for (path, h) in chain.iter().rev() {
            files.push(path.clone());
            f.set_len(h.segments * 8).map_err(io_err("resizing", out))?;
            let mut r = open_delta(path)?;
            loop {
                match r.next_entry() {
                    Ok(Some((i, rec))) => f.write_all_at(&rec.to_bytes(), i * 8).map_err(io_err("writing", out))?,
                    Ok(None) => break,
                    Err(e) => {
                        problems.push(format!("{}: {e}", path.display()));
                        break;
                    }
                }
            }
            expect = (h.segments, h.digest);
        }
        drop(f);
        match digest_of(out) {
            Ok(v) if v == expect => {}
            Ok(_) => problems.push(format!("the rebuilt checksum file of {snap} does not match its recorded digest")),
            Err(e) => problems.push(format!("{}: {e}", out.display())),
        }
        Ok(Reconstruction { segments: expect.0, problems, files })
    }

    /// Merges away the deltas of snapshots that no longer exist (and stale
    /// base copies). Returns the files removed. Never touches the live file,
    /// the head, or a pending backup's state.
    pub fn remove_orphans(&self, existing: &BTreeSet<String>) -> Result<Vec<PathBuf>, HistoryError> {
        let head = self.head()?;
        let head_name = head.as_ref().map(|h| h.snapshot.clone());
        let mut removed = Vec::new();
        if let Some(h) = &head_name {
            if self.pending()?.is_none() {
                for name in self.list_names()? {
                    if name.ends_with(".base") && name != format!("{h}.base") {
                        let p = self.dir.join(&name);
                        fs::remove_file(&p).map_err(io_err("removing", &p))?;
                        removed.push(p);
                    }
                }
            }
        }
        for orphan in self.delta_snapshots()? {
            if existing.contains(&orphan) || Some(&orphan) == head_name.as_ref() {
                continue;
            }
            let orphan_path = self.delta_path(&orphan);
            // Deltas pointing at the orphan absorb it.
            let mut pointing = Vec::new();
            for s in self.delta_snapshots()? {
                if s == orphan {
                    continue;
                }
                let r = open_delta(&self.delta_path(&s))?;
                if r.header().next == orphan {
                    pointing.push(s);
                }
            }
            for s in pointing {
                self.merge_into(&s, &orphan_path)?;
            }
            failpoint::hit("history.after-merge");
            fs::remove_file(&orphan_path).map_err(io_err("removing", &orphan_path))?;
            sync_parent_dir(&orphan_path).map_err(io_err("syncing", &self.dir))?;
            removed.push(orphan_path);
        }
        Ok(removed)
    }

    /// Replaces `<older>.delta` by itself merged with the delta at `skip`,
    /// so it points where `skip` pointed. Streams both (sorted) deltas
    /// twice, counting then writing: memory stays at two entries whatever
    /// their size.
    fn merge_into(&self, older: &str, skip: &Path) -> Result<(), HistoryError> {
        let older_path = self.delta_path(older);
        let oh = open_delta(&older_path)?.header().clone();
        let sh = open_delta(skip)?.header().clone();
        let mut count = 0u64;
        self.merged_entries(&older_path, skip, oh.segments, sh.segments, |_, _| {
            count += 1;
            Ok(())
        })?;
        let header = DeltaHeader { next: sh.next.clone(), entries: count, ..oh.clone() };
        let tmp = AtomicFile::create(&older_path).map_err(io_err("creating", &older_path))?;
        let mut w = DeltaWriter::new(BufWriter::with_capacity(1 << 20, tmp.file()), &header)
            .map_err(|cause| HistoryError::Damaged { path: older_path.clone(), cause })?;
        self.merged_entries(&older_path, skip, oh.segments, sh.segments, |i, rec| {
            w.push(i, rec).map_err(|cause| HistoryError::Damaged { path: older_path.clone(), cause })
        })?;
        let mut buf = w.finish().map_err(|cause| HistoryError::Damaged { path: older_path.clone(), cause })?;
        buf.flush().map_err(io_err("writing", &older_path))?;
        drop(buf);
        tmp.commit().map_err(io_err("writing", &older_path))
    }

    /// The entries of `older` merged over `skip`, in index order: `older`'s
    /// where it has one; else `skip`'s (below `older`'s segment count); else,
    /// for segments `skip`'s snapshot did not have, INVALID.
    fn merged_entries(
        &self,
        older: &Path,
        skip: &Path,
        older_segments: u64,
        skip_segments: u64,
        mut out: impl FnMut(u64, ChecksumRecord) -> Result<(), HistoryError>,
    ) -> Result<(), HistoryError> {
        let next = |r: &mut DeltaReader<BufReader<File>>, p: &Path| {
            r.next_entry().map_err(|cause| HistoryError::Damaged { path: p.to_path_buf(), cause })
        };
        let mut ro = open_delta(older)?;
        let mut rs = open_delta(skip)?;
        let mut a = next(&mut ro, older)?;
        let mut b = next(&mut rs, skip)?.filter(|(i, _)| *i < older_segments);
        // Indexes in [skip_segments, older_segments) not yet emitted read as INVALID.
        let mut fill = skip_segments.min(older_segments);
        loop {
            let ia = a.map(|(i, _)| i).unwrap_or(u64::MAX);
            let ib = b.map(|(i, _)| i).unwrap_or(u64::MAX);
            let ifill = if fill < older_segments { fill } else { u64::MAX };
            let i = ia.min(ib).min(ifill);
            if i == u64::MAX {
                break;
            }
            let rec = if ia == i {
                a.map(|(_, r)| r).unwrap_or(ChecksumRecord::INVALID)
            } else if ib == i {
                b.map(|(_, r)| r).unwrap_or(ChecksumRecord::INVALID)
            } else {
                ChecksumRecord::INVALID
            };
            out(i, rec)?;
            if ia == i {
                a = next(&mut ro, older)?;
            }
            if ib == i {
                b = next(&mut rs, skip)?.filter(|(j, _)| *j < older_segments);
            }
            if ifill == i {
                fill += 1;
            } else if fill <= i && fill >= skip_segments {
                fill = i + 1;
            }
        }
        // Reading to the end checked both files' trailing checksums.
        Ok(())
    }

    /// Bytes the history takes on disk (deltas, base copies, state files).
    pub fn disk_usage(&self) -> Result<u64, HistoryError> {
        use std::os::unix::fs::MetadataExt;
        let mut total = 0;
        for name in self.list_names()? {
            let p = self.dir.join(&name);
            if let Ok(m) = fs::symlink_metadata(&p) {
                total += m.blocks() * 512;
            }
        }
        Ok(total)
    }
}

/// Copies a file (not durably: for temporary reconstructions).
fn copy_durable_fast(from: &Path, to: &Path) -> io::Result<()> {
    let _ = fs::remove_file(to);
    fs::copy(from, to).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shared::checksum_record::encode_records;

    fn recs(seed: u32, n: usize) -> Vec<ChecksumRecord> {
        (0..n as u32).map(|i| ChecksumRecord { crc32: i.wrapping_mul(2654435761) ^ seed, murmur3: i + 1 }).collect()
    }

    struct Lab {
        _dir: tempfile::TempDir,
        store: HistoryStore,
        out: PathBuf,
    }

    fn lab() -> Lab {
        let dir = tempfile::tempdir().unwrap();
        let live = dir.path().join("iscsi_lv.ddless");
        let store = HistoryStore::new(live, dir.path().join("history/iscsi_lv"));
        let out = dir.path().join("rebuilt");
        Lab { _dir: dir, store, out }
    }

    fn set_live(l: &Lab, r: &[ChecksumRecord]) {
        fs::write(l.store.live(), encode_records(r)).unwrap();
    }

    fn backup(l: &Lab, snap: &str, r: &[ChecksumRecord]) {
        assert_ne!(l.store.preserve_head().unwrap(), Preserved::Lost(String::new()));
        set_live(l, r);
        l.store.prepare_commit(snap).unwrap();
        l.store.finish_commit().unwrap();
    }

    fn rebuilt(l: &Lab, snap: &str) -> Vec<ChecksumRecord> {
        let rec = l.store.reconstruct(snap, &l.out).unwrap();
        assert!(rec.problems.is_empty(), "{:?}", rec.problems);
        let mut v = Vec::new();
        crate::shared::checksum_record::decode_records(&fs::read(&l.out).unwrap(), &mut v);
        v
    }

    #[test]
    fn every_snapshot_rebuilds_exactly_including_resizes() {
        let l = lab();
        let mut versions = vec![recs(1, 100)];
        let mut v = versions[0].clone();
        v[3] = ChecksumRecord { crc32: 9, murmur3: 9 };
        versions.push(v.clone());
        v.truncate(60); // shrink
        versions.push(v.clone());
        v.extend(recs(5, 70)); // grow past the old size
        v[0] = ChecksumRecord::INVALID;
        versions.push(v.clone());
        versions.push(v.clone()); // no change
        for (n, r) in versions.iter().enumerate() {
            backup(&l, &format!("s{n}"), r);
        }
        for (n, r) in versions.iter().enumerate() {
            assert_eq!(&rebuilt(&l, &format!("s{n}")), r, "snapshot s{n}");
        }
        // Orphans: drop s1 and s3, everything else still rebuilds.
        let existing: BTreeSet<String> = ["s0", "s2", "s4"].iter().map(|s| s.to_string()).collect();
        let removed = l.store.remove_orphans(&existing).unwrap();
        assert_eq!(removed.len(), 2, "{removed:?}");
        for n in [0, 2, 4] {
            assert_eq!(&rebuilt(&l, &format!("s{n}")), &versions[n], "after orphans, s{n}");
        }
        // Idempotent.
        assert!(l.store.remove_orphans(&existing).unwrap().is_empty());
        // Now the shrunk one: s0 (100 segments) absorbs s2 (60).
        let existing: BTreeSet<String> = ["s0", "s4"].iter().map(|s| s.to_string()).collect();
        assert_eq!(l.store.remove_orphans(&existing).unwrap().len(), 1);
        assert_eq!(&rebuilt(&l, "s0"), &versions[0]);
        assert_eq!(&rebuilt(&l, "s4"), &versions[4]);
    }

    #[test]
    fn interrupted_backup_keeps_the_head_from_its_base() {
        let l = lab();
        let a = recs(1, 50);
        backup(&l, "s0", &a);
        // Backup 2 starts, the live file is half-written, crash.
        assert_eq!(l.store.preserve_head().unwrap(), Preserved::Kept);
        let mut half = a.clone();
        half[7] = ChecksumRecord::INVALID;
        set_live(&l, &half);
        // The rerun must not copy the half-written live file as the base.
        assert_eq!(l.store.preserve_head().unwrap(), Preserved::Kept);
        assert_eq!(rebuilt(&l, "s0"), a);
        let b = recs(2, 50);
        set_live(&l, &b);
        l.store.prepare_commit("s1").unwrap();
        // Crash after the snapshot, before finish: recovery completes it.
        assert_eq!(l.store.recover(|s| s == "s1").unwrap(), Some("s1".to_string()));
        assert_eq!(rebuilt(&l, "s0"), a);
        assert_eq!(rebuilt(&l, "s1"), b);
        assert!(!l.store.base_path("s0").exists());
    }

    #[test]
    fn a_pending_snapshot_that_never_came_is_replaced() {
        let l = lab();
        let a = recs(1, 20);
        backup(&l, "s0", &a);
        l.store.preserve_head().unwrap();
        set_live(&l, &recs(2, 20));
        l.store.prepare_commit("never").unwrap();
        assert_eq!(l.store.recover(|_| false).unwrap(), None);
        let c = recs(3, 20);
        set_live(&l, &c);
        l.store.prepare_commit("s1").unwrap();
        l.store.finish_commit().unwrap();
        assert_eq!(rebuilt(&l, "s0"), a);
        assert_eq!(rebuilt(&l, "s1"), c);
    }

    #[test]
    fn damage_is_reported_not_hidden() {
        let l = lab();
        backup(&l, "s0", &recs(1, 40));
        backup(&l, "s1", &recs(2, 40));
        let p = l.store.delta_path("s0");
        let mut bytes = fs::read(&p).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 1;
        fs::write(&p, bytes).unwrap();
        let r = l.store.reconstruct("s0", &l.out).unwrap();
        assert!(!r.problems.is_empty());
        // A changed live file is noticed for the head.
        set_live(&l, &recs(9, 40));
        assert!(!l.store.reconstruct("s1", &l.out).unwrap().problems.is_empty());
        assert!(matches!(l.store.preserve_head().unwrap(), Preserved::Lost(_)));
        assert!(matches!(l.store.reconstruct("nope", &l.out), Err(HistoryError::NoHistory { .. })));
    }

    #[test]
    fn history_is_small_for_small_changes() {
        let l = lab();
        let n = 16384;
        let mut v = recs(1, n);
        backup(&l, "s00", &v);
        for night in 1..=30 {
            for k in 0..(n / 100) {
                let i = (k * 7919 + night * 104_729) % n;
                v[i] = ChecksumRecord { crc32: (night * 1000 + k) as u32, murmur3: 1 };
            }
            backup(&l, &format!("s{night:02}"), &v);
        }
        let full = (n * 8) as u64;
        let used = l.store.disk_usage().unwrap();
        assert!(used < 3 * full, "history takes {used} bytes, 3 full copies are {}", 3 * full);
    }
}
