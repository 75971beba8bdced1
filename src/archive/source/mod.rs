//! Where a backup reads from. A source yields a readable volume, its size,
//! and optionally a ddmap with its state; afterwards it is told how the
//! backup ended (so it clears its map only after a snapshot exists).
//!
//! Kinds: `file` / `device` (a path from the configuration, with an
//! optional ddmap), `iscsi` (a LUN read with santools' initiator, with an
//! optional ddmap) and `command` (prepare / finish argument vectors
//! speaking the JSON protocol in [`protocol`]; it may name a path or an
//! `iscsi://` URL).

pub mod protocol;

use std::ffi::OsStr;
use std::fs::File;
use std::path::Path;

use self::protocol::{expand_argv, parse_prepare, FinishMessage, Location, PreparedSource};
use super::ddmap_state::DdmapState;
use super::settings::{SourceSpec, StateSpec};
use crate::config::InitiatorConfig;
use crate::initiator::settings::{SessionArgs, UrlSource};
use crate::shared::block_device::{device_kind, device_size, DeviceKind};
use crate::shared::command::Command;
use crate::volume::{Access, VolumeSpec};

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("source {what}: {problem}")]
    Invalid { what: String, problem: String },
    #[error("source prepare command: {0}")]
    Prepare(String),
    #[error("source finish command: {0}")]
    Finish(String),
}

/// A prepared source, to be finished exactly once.
pub struct OpenedSource {
    pub prepared: PreparedSource,
    /// What ddless reads: the path, or the LUN with its session settings.
    volume_spec: VolumeSpec,
    spec: SourceSpec,
    volume: String,
    finished: bool,
}

fn invalid(what: impl Into<String>, problem: impl Into<String>) -> SourceError {
    SourceError::Invalid { what: what.into(), problem: problem.into() }
}

/// Size of a readable path (file or block device), checking its kind.
pub fn readable_size(path: &Path, want_device: Option<bool>) -> Result<u64, SourceError> {
    let shown = path.display().to_string();
    let f = File::open(path).map_err(|e| invalid(&shown, format!("cannot open: {e}")))?;
    let meta = f.metadata().map_err(|e| invalid(&shown, e.to_string()))?;
    let kind = device_kind(&meta).map_err(|e| invalid(&shown, e.to_string()))?;
    match (want_device, kind) {
        (Some(true), DeviceKind::RegularFile) => {
            return Err(invalid(&shown, "is a regular file, but the source kind is \"device\""))
        }
        (Some(false), DeviceKind::BlockDevice) => {
            return Err(invalid(&shown, "is a block device, but the source kind is \"file\""))
        }
        _ => {}
    }
    device_size(&f, kind).map_err(|e| invalid(&shown, format!("cannot read its size: {e}")))
}

/// An `iscsi://` source: its session settings (the `[initiator]` section;
/// the URL comes from the configuration or a prepare command, so it may
/// carry a CHAP password) and the LUN's size, read by logging in.
fn lun_source(url: &str, initiator: &InitiatorConfig) -> Result<(VolumeSpec, u64), SourceError> {
    let shown = protocol::redact_url(url);
    let spec = VolumeSpec::resolve(OsStr::new(url), UrlSource::ConfigFile, None, &SessionArgs::default(), initiator)
        .map_err(|e| invalid(&shown, e.to_string()))?;
    let size = spec.open(Access::ReadOnly).map_err(|e| invalid(&shown, format!("cannot open the LUN: {e}")))?.size();
    Ok((spec, size))
}

fn ddmap_state_of(ddmap: &Option<std::path::PathBuf>, state: &StateSpec) -> Result<Option<DdmapState>, SourceError> {
    Ok(match state {
        StateSpec::Unknown => ddmap.as_ref().map(|_| DdmapState::Unknown),
        StateSpec::Fixed(s) => Some(*s),
        StateSpec::File(f) => Some(read_state_file(f)?),
    })
}

fn read_state_file(path: &Path) -> Result<DdmapState, SourceError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let shown = path.display().to_string();
    let bad = |why: String| invalid(format!("ddmap state file {shown}"), why);
    // Opened non-blocking (a FIFO must not hang the backup), checked to be a
    // regular file, and read only up to its bound (/dev/zero must not fill
    // memory).
    let f = match std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path) {
        Ok(f) => f,
        // No state file yet: the map cannot be trusted.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DdmapState::Unknown),
        Err(e) => return Err(bad(e.to_string())),
    };
    if !f.metadata().map_err(|e| bad(e.to_string()))?.is_file() {
        return Err(bad("is not a regular file".into()));
    }
    let mut b = Vec::new();
    f.take(4097).read_to_end(&mut b).map_err(|e| bad(e.to_string()))?;
    if b.len() > 4096 {
        return Err(bad("is larger than 4 KiB".into()));
    }
    let text = String::from_utf8_lossy(&b);
    // The seed's state file holds the state name, possibly after other words.
    let word = text.split_whitespace().last().unwrap_or("");
    word.parse().map_err(|e: String| bad(e))
}

/// Prepares a source for a backup of `volume` (the configured name).
/// `initiator` is the `[initiator]` section (for iscsi:// sources).
pub fn prepare(spec: &SourceSpec, volume: &str, initiator: &InitiatorConfig) -> Result<OpenedSource, SourceError> {
    let mut lun: Option<VolumeSpec> = None;
    let prepared = match spec {
        SourceSpec::Iscsi { url, ddmap, state } => {
            let (v, size) = lun_source(url, initiator)?;
            lun = Some(v);
            PreparedSource {
                location: Location::Url(url.clone()),
                size,
                ddmap: ddmap.clone(),
                ddmap_state: ddmap_state_of(ddmap, state)?,
                checksum: None,
                token: None,
                ignored_keys: Vec::new(),
            }
        }
        SourceSpec::Path { device, path, ddmap, state } => {
            let size = readable_size(path, Some(*device))?;
            if size == 0 {
                return Err(invalid(path.display().to_string(), "is empty (size 0)"));
            }
            let ddmap_state = ddmap_state_of(ddmap, state)?;
            PreparedSource {
                location: Location::Path(path.clone()),
                size,
                ddmap: ddmap.clone(),
                ddmap_state,
                checksum: None,
                token: None,
                ignored_keys: Vec::new(),
            }
        }
        SourceSpec::Command { prepare, timeout, .. } => {
            let argv = expand_argv(prepare, volume);
            let out = Command::new(&argv[0])
                .args(&argv[1..])
                .env("SANTOOLS_VOLUME", volume)
                .timeout(*timeout)
                .max_stdout(protocol::MAX_PREPARE_OUTPUT)
                .run()
                .map_err(|e| SourceError::Prepare(e.to_string()))?;
            let p = parse_prepare(&out.stdout).map_err(|e| SourceError::Prepare(format!("{} {e}", argv[0])))?;
            if !p.ignored_keys.is_empty() {
                tracing::debug!("source prepare printed keys this version ignores: {}", p.ignored_keys.join(", "));
            }
            let actual = match &p.location {
                Location::Path(path) => readable_size(path, None)?,
                Location::Url(url) => {
                    let (v, size) = lun_source(url, initiator)?;
                    lun = Some(v);
                    size
                }
            };
            if actual != p.size {
                return Err(SourceError::Prepare(format!(
                    "said {} is {} bytes, but it is {actual} bytes",
                    p.location, p.size
                )));
            }
            p
        }
    };
    if prepared.size == 0 {
        return Err(invalid(prepared.location.to_string(), "is empty (size 0)"));
    }
    if let Some(m) = &prepared.ddmap {
        if !m.is_file() {
            return Err(invalid(format!("ddmap {}", m.display()), "does not exist or is not a regular file"));
        }
    }
    let volume_spec = match (&prepared.location, lun) {
        (_, Some(v)) => v,
        (Location::Path(p), None) => VolumeSpec::Path(p.clone()),
        (Location::Url(u), None) => return Err(invalid(protocol::redact_url(u), "no session settings")),
    };
    Ok(OpenedSource { prepared, volume_spec, spec: spec.clone(), volume: volume.to_string(), finished: false })
}

impl OpenedSource {
    /// What ddless reads: the path, or the LUN with its session settings.
    pub fn volume_spec(&self) -> &VolumeSpec {
        &self.volume_spec
    }

    pub fn description(&self) -> String {
        self.prepared.location.to_string()
    }

    /// Tells the source how the backup ended. Idempotent.
    pub fn finish(&mut self, msg: &FinishMessage) -> Result<(), SourceError> {
        if self.finished {
            return Ok(());
        }
        self.finished = true;
        let SourceSpec::Command { finish: Some(finish), timeout, .. } = &self.spec else { return Ok(()) };
        let argv = expand_argv(finish, &self.volume);
        let body = serde_json::to_vec(msg).map_err(|e| SourceError::Finish(e.to_string()))?;
        let status = match msg.status {
            protocol::Status::Success => "success",
            protocol::Status::Failure => "failure",
        };
        Command::new(&argv[0])
            .args(&argv[1..])
            .env("SANTOOLS_VOLUME", &self.volume)
            .env("SANTOOLS_BACKUP_STATUS", status)
            .env("SANTOOLS_SOURCE_TOKEN", self.prepared.token.as_deref().unwrap_or(""))
            .stdin_bytes(body)
            .timeout(*timeout)
            .run()
            .map(|_| ())
            .map_err(|e| SourceError::Finish(e.to_string()))
    }

    pub fn is_finished(&self) -> bool {
        self.finished
    }
}

/// A path used as a source in a report.
pub fn describe_spec(spec: &SourceSpec) -> String {
    match spec {
        SourceSpec::Path { device, path, ddmap, .. } => {
            let kind = if *device { "device" } else { "file" };
            match ddmap {
                Some(m) => format!("{kind} {} (ddmap {})", path.display(), m.display()),
                None => format!("{kind} {}", path.display()),
            }
        }
        SourceSpec::Iscsi { url, ddmap, .. } => match ddmap {
            Some(m) => format!("iscsi {} (ddmap {})", protocol::redact_url(url), m.display()),
            None => format!("iscsi {}", protocol::redact_url(url)),
        },
        SourceSpec::Command { prepare, .. } => format!("command {}", prepare.join(" ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_files_are_bounded_regular_files() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("state");
        assert_eq!(read_state_file(&f).unwrap(), DdmapState::Unknown);
        std::fs::write(&f, "lv_a CLEAN\n").unwrap();
        assert_eq!(read_state_file(&f).unwrap(), DdmapState::Clean);
        std::fs::write(&f, "x".repeat(5000)).unwrap();
        assert!(read_state_file(&f).unwrap_err().to_string().contains("larger than 4 KiB"));
        // An endless device and a FIFO nobody writes: refused at once.
        assert!(read_state_file(Path::new("/dev/zero")).unwrap_err().to_string().contains("not a regular file"));
        let fifo = d.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a valid NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(read_state_file(&fifo).unwrap_err().to_string().contains("not a regular file"));
    }
}
