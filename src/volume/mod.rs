//! One block-volume interface over files, block devices and `iscsi://`
//! LUNs, for the tools that read and write volumes (ddless, and the
//! archive's sources and restore targets).
//!
//! A [`VolumeSpec`] is a volume as a user named it, resolved and ready to
//! open: a path, or an `iscsi://` LUN URL together with the initiator
//! settings for it. ddless's library entry points take one for their
//! source and target (`ddless::CopyOptions::source` and `target`, ...).
//!
//! ```no_run
//! use santools::volume::{Access, BlockVolume, VolumeSpec};
//! use santools::initiator::settings::{SessionArgs, UrlSource};
//! # fn main() -> anyhow::Result<()> {
//! let cfg = santools::config::InitiatorConfig::default();
//! // A path or a URL, as a user wrote it (here from a configuration file,
//! // where a URL may carry a CHAP password).
//! let spec = VolumeSpec::resolve(
//!     "iscsi://10.0.0.1/iqn.2024-01.example:vol1/1".as_ref(),
//!     UrlSource::ConfigFile,
//!     Some("iqn.2024-01.example:backup"),
//!     &SessionArgs::default(),
//!     &cfg,
//! )?;
//! let v = spec.open(Access::ReadOnly)?;
//! let mut buf = vec![0u8; 1 << 20];
//! v.read_at(&mut buf, 0)?;
//! // A plain path needs no initiator settings.
//! let file: VolumeSpec = std::path::PathBuf::from("/dev/vg0/data").into();
//! println!("{} and {}", spec.display(), file.display());
//! # Ok(()) }
//! ```
//!
//! Contract: `read_at` fills the whole buffer or fails; `write_at` writes
//! the whole buffer (iSCSI: whole blocks) or fails; `flush` returns Ok
//! only when everything written before it is durable (fdatasync for
//! files, SYNCHRONIZE CACHE for LUNs). All three may be called from many
//! threads at once.

mod file;

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

pub use file::FileVolume;

use crate::config::InitiatorConfig;
use crate::initiator::settings::{resolve, SessionArgs, UrlSource};
use crate::initiator::{InitiatorError, InitiatorOptions, IscsiUrl, IscsiVolume};

pub trait BlockVolume: Send + Sync {
    /// Size in bytes.
    fn size(&self) -> u64;
    /// The unit writes must be aligned to (512 for files).
    fn block_size(&self) -> u32;
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()>;
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()>;
    fn flush(&self) -> io::Result<()>;
    /// For messages (passwords redacted).
    fn describe(&self) -> String;
}

/// How to open a volume.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

/// An `iscsi://` LUN and the settings of the session that reaches it.
#[derive(Clone, Debug)]
pub struct IscsiSpec {
    pub url: IscsiUrl,
    pub options: InitiatorOptions,
}

/// A volume named by a user: a path (file or block device), or an
/// `iscsi://HOST[:PORT]/TARGET-IQN/LUN` URL with its initiator settings.
#[derive(Clone, Debug)]
pub enum VolumeSpec {
    Path(PathBuf),
    Iscsi(Box<IscsiSpec>),
}

impl From<PathBuf> for VolumeSpec {
    fn from(p: PathBuf) -> VolumeSpec {
        VolumeSpec::Path(p)
    }
}

impl From<&Path> for VolumeSpec {
    fn from(p: &Path) -> VolumeSpec {
        VolumeSpec::Path(p.to_path_buf())
    }
}

impl std::fmt::Display for VolumeSpec {
    /// The path, or the URL with passwords shown as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            VolumeSpec::Path(p) => write!(f, "{}", p.display()),
            VolumeSpec::Iscsi(s) => write!(f, "{}", s.url),
        }
    }
}

impl VolumeSpec {
    /// Whether `arg` is meant as an iSCSI URL (then it must parse as one).
    pub fn is_iscsi_arg(arg: &OsStr) -> bool {
        arg.to_str().is_some_and(IscsiUrl::is_iscsi_url)
    }

    /// A LUN URL with the settings to reach it.
    pub fn iscsi(url: IscsiUrl, options: InitiatorOptions) -> Result<VolumeSpec, InitiatorError> {
        if url.target.is_none() || url.lun.is_none() {
            return Err(InitiatorError::Options(format!("{url}: a volume URL names a target and a LUN")));
        }
        options.validate().map_err(InitiatorError::Options)?;
        Ok(VolumeSpec::Iscsi(Box::new(IscsiSpec { url, options })))
    }

    /// `arg` as a user wrote it: an `iscsi://` LUN URL (resolved with
    /// [`settings::resolve`](crate::initiator::settings::resolve): name
    /// flag, session flags, `[initiator]` config, libiscsi's CHAP
    /// environment variables; a password in a URL from the command line is
    /// refused), or else a path.
    pub fn resolve(
        arg: &OsStr,
        origin: UrlSource,
        name_flag: Option<&str>,
        args: &SessionArgs,
        cfg: &InitiatorConfig,
    ) -> Result<VolumeSpec, InitiatorError> {
        match arg.to_str() {
            Some(s) if IscsiUrl::is_iscsi_url(s) => {
                // Callers name the volume (with its role, the URL redacted).
                let url = IscsiUrl::parse_lun(s).map_err(|e| InitiatorError::Options(e.to_string()))?;
                let options = resolve(&url, origin, name_flag, args, cfg, &|k| std::env::var(k).ok())?;
                VolumeSpec::iscsi(url, options)
            }
            // `iscsi:/host/...` or `iscsi:host/...` is a mistyped URL, not a
            // path to look for ("No such file or directory" said nothing);
            // a file of that name is still reached as `./iscsi:...`.
            Some(s) if s.get(..6).is_some_and(|p| p.eq_ignore_ascii_case("iscsi:")) => {
                let shown = crate::initiator::url::redact_unparsed(s);
                Err(InitiatorError::Options(format!(
                    "{shown:?} is not an iscsi:// URL (expected iscsi://HOST[:PORT]/TARGET-IQN/LUN; a file of that \
                     name: ./{shown})"
                )))
            }
            _ => Ok(VolumeSpec::Path(PathBuf::from(arg))),
        }
    }

    /// Something that displays the path or the redacted URL (as
    /// `Path::display`).
    pub fn display(&self) -> &Self {
        self
    }

    pub fn is_iscsi(&self) -> bool {
        matches!(self, VolumeSpec::Iscsi(_))
    }

    /// The path, when this is one.
    pub fn as_path(&self) -> Option<&Path> {
        match self {
            VolumeSpec::Path(p) => Some(p),
            VolumeSpec::Iscsi(_) => None,
        }
    }

    /// Opens the volume.
    pub fn open(&self, access: Access) -> io::Result<Box<dyn BlockVolume>> {
        match self {
            VolumeSpec::Path(p) => Ok(Box::new(FileVolume::open(p, access)?)),
            VolumeSpec::Iscsi(s) => Ok(Box::new(IscsiVolume::open(&s.url, &s.options)?)),
        }
    }
}

impl BlockVolume for IscsiVolume {
    fn size(&self) -> u64 {
        IscsiVolume::size(self)
    }
    fn block_size(&self) -> u32 {
        IscsiVolume::block_size(self)
    }
    fn read_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        Ok(IscsiVolume::read_at(self, buf, offset)?)
    }
    fn write_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        Ok(IscsiVolume::write_at(self, buf, offset)?)
    }
    fn flush(&self) -> io::Result<()> {
        Ok(IscsiVolume::flush(self)?)
    }
    fn describe(&self) -> String {
        self.info().url.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> InitiatorConfig {
        crate::config::Config::parse("[initiator]\nname = \"iqn.2024-01.test:me\"\n", Path::new("/t.toml"))
            .unwrap()
            .initiator
    }

    #[test]
    fn paths_urls_and_refusals() {
        let args = SessionArgs::default();
        let p = VolumeSpec::resolve(OsStr::new("./iscsi:/x"), UrlSource::CommandLine, None, &args, &cfg()).unwrap();
        assert_eq!(p.as_path(), Some(Path::new("./iscsi:/x")));
        // A mistyped URL is said to be one, not looked for as a file.
        for typo in ["iscsi:/h/iqn.2024-01.test:t/1", "ISCSI:h/iqn.2024-01.test:t/1", "iscsi:"] {
            let e = VolumeSpec::resolve(OsStr::new(typo), UrlSource::CommandLine, None, &args, &cfg())
                .unwrap_err()
                .to_string();
            assert!(e.contains("is not an iscsi:// URL"), "{typo}: {e}");
        }
        let e = VolumeSpec::resolve(OsStr::new("iscsi:/u%hunter2@h/x/1"), UrlSource::CommandLine, None, &args, &cfg())
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
        let u = VolumeSpec::resolve(
            OsStr::new("iscsi://127.0.0.1/iqn.2024-01.test:t/1"),
            UrlSource::CommandLine,
            None,
            &args,
            &cfg(),
        )
        .unwrap();
        assert!(u.is_iscsi());
        assert_eq!(u.display().to_string(), "iscsi://127.0.0.1:3260/iqn.2024-01.test:t/1");
        let e = VolumeSpec::resolve(
            OsStr::new("iscsi://h/iqn.2024-01.test:t"),
            UrlSource::CommandLine,
            None,
            &args,
            &cfg(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("names no LUN"), "{e}");
        let e = VolumeSpec::resolve(
            OsStr::new("iscsi://u%hunter2secret@h/iqn.2024-01.test:t/1"),
            UrlSource::CommandLine,
            None,
            &args,
            &cfg(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("refused") && !e.contains("hunter2"), "{e}");
        let e =
            VolumeSpec::resolve(OsStr::new("iscsi://u%hunter2@h:99999/x"), UrlSource::CommandLine, None, &args, &cfg())
                .unwrap_err()
                .to_string();
        assert!(e.contains("port") && !e.contains("hunter2"), "{e}");
    }
}
