//! The santools configuration file (TOML, default
//! /etc/santools/santools.toml, `--config` to override): one section per
//! tool family. Unknown keys are rejected and every value is checked at load,
//! with the key named in the error. Command-line flags override it.

use std::path::{Path, PathBuf};

use serde::Deserialize;

pub mod archive;
pub mod ddless;
pub mod ddmap;
pub mod portal;
pub mod snaprotate;

pub use self::ddless::DdlessConfig;
pub use self::ddmap::DdmapConfig;
pub use self::portal::{DiscoveryPortal, PortalConfig};

/// Where the configuration is read from when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/santools/santools.toml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading configuration {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("configuration {}: {message}", path.display())]
    Parse { path: PathBuf, message: String },
    #[error("configuration {}: key `{key}`: {problem}", path.display())]
    Invalid { path: PathBuf, key: String, problem: String },
}

/// A value that failed validation: which key, and what was expected.
#[derive(Debug)]
pub struct InvalidValue {
    pub key: String,
    pub problem: String,
}

impl InvalidValue {
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        InvalidValue { key: key.into(), problem: problem.into() }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub ddless: DdlessConfig,
    pub ddmap: DdmapConfig,
    /// Required by the portal daemon and its tools.
    pub portal: Option<PortalConfig>,
    /// Required by the archive tools (backup, restore, snapcheck, ddless-maint).
    pub archive: Option<archive::ArchiveConfig>,
    /// Rotation schedules (snaprotate).
    pub snaprotate: snaprotate::SnaprotateConfig,
}

impl Config {
    /// Parses and validates configuration text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate().map_err(|v| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: v.key,
            problem: v.problem,
        })?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        self.ddless.validate()?;
        self.ddmap.validate()?;
        if let Some(p) = &self.portal {
            p.validate()?;
        }
        if let Some(a) = &self.archive {
            a.validate()?;
        }
        Ok(())
    }

    /// Loads `explicit` (which must exist) or the default path (which may
    /// be absent: then every setting has its default).
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match std::fs::read_to_string(&path) {
            Ok(text) => Config::parse(&text, &path),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(Config::default()),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/santools/santools.toml"))
    }

    #[test]
    fn empty_is_all_defaults() {
        let c = parse("").unwrap();
        assert_eq!(c.ddmap.proc_dir, PathBuf::from("/proc/net/iet/ddmap"));
        assert_eq!(c.ddless.workers, None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = parse("[ddless]\nworkerz = 2\n").unwrap_err().to_string();
        assert!(e.contains("workerz"), "{e}");
        let e = parse("[nosuchsection]\n").unwrap_err().to_string();
        assert!(e.contains("nosuchsection"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = parse("[ddless]\nworkers = 0\n").unwrap_err().to_string();
        assert!(e.contains("ddless.workers"), "{e}");
        let e = parse("[ddless]\nworkers = \"two\"\n").unwrap_err().to_string();
        assert!(e.contains("workers"), "{e}");
        let e = parse("[ddmap]\nproc_dir = \"relative/dir\"\n").unwrap_err().to_string();
        assert!(e.contains("ddmap.proc_dir"), "{e}");
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        assert!(matches!(Config::load(Some(Path::new("/nonexistent/x.toml"))), Err(ConfigError::Read { .. })));
    }
}
