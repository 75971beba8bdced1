//! The santools configuration file (TOML, default
//! /etc/santools/santools.toml, `--config` to override): one section per
//! tool family. Unknown keys are rejected and every value is checked at load,
//! with the key named in the error. Command-line flags override it.
//!
//! The file is shared by every tool on a host, so a tool loads it with
//! [`Config::load_for`] naming the sections it uses: errors there are fatal,
//! errors in other sections only warnings (those sections are ignored), so a
//! typo in `[portal]` does not stop the nightly `ddless`. [`Config::load`]
//! (and `santools check-config`) still fail on any error.

use std::path::{Path, PathBuf};

use crate::shared::text_file::MAX_CONFIG_BYTES;

use serde::Deserialize;

pub mod archive;
pub mod cron;
pub mod ddless;
pub mod ddmap;
pub mod initiator;
pub mod portal;
pub mod snaprotate;
pub mod targets;

pub use self::ddless::DdlessConfig;
pub use self::ddmap::DdmapConfig;
pub use self::initiator::InitiatorConfig;
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

/// A top-level section of the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Section {
    Ddless,
    Ddmap,
    Portal,
    Initiator,
    Archive,
    Snaprotate,
    Cron,
    Sync,
    Targets,
}

impl Section {
    pub fn name(self) -> &'static str {
        match self {
            Section::Ddless => "ddless",
            Section::Ddmap => "ddmap",
            Section::Portal => "portal",
            Section::Initiator => "initiator",
            Section::Archive => "archive",
            Section::Snaprotate => "snaprotate",
            Section::Cron => "cron",
            Section::Sync => "sync",
            Section::Targets => "targets",
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub ddless: DdlessConfig,
    pub ddmap: DdmapConfig,
    pub initiator: InitiatorConfig,
    /// Required by the portal daemon and its tools.
    pub portal: Option<PortalConfig>,
    /// Required by the archive tools (backup, restore, snapcheck, ddless-maint).
    pub archive: Option<archive::ArchiveConfig>,
    /// Rotation schedules (snaprotate).
    pub snaprotate: snaprotate::SnaprotateConfig,
    /// Scheduled jobs per host (cron-update).
    pub cron: cron::CronConfig,
    /// Copying the configuration to the other archive hosts (sync-all).
    pub sync: cron::SyncConfig,
    /// Errors found in sections the loading tool does not use (each names
    /// the file, section and problem); the tool prints them as warnings.
    #[serde(skip)]
    pub warnings: Vec<String>,
    /// The file these settings were read from; None when no `--config` was
    /// given and the default path does not exist (every setting its default).
    #[serde(skip)]
    pub file: Option<PathBuf>,
    /// The target inventory and the target tools' settings.
    pub targets: Option<targets::TargetsConfig>,
}

/// The top-level table whose text contains byte `offset` (None for keys
/// before any table header). With `before_header`, an offset on a header
/// line counts for the table before it.
fn section_at(text: &str, offset: usize, before_header: bool) -> Option<String> {
    let mut current = None;
    let mut at = 0;
    for line in text.split_inclusive('\n') {
        let end = at + line.len();
        if let Some(name) = header_name(line) {
            if before_header && offset >= at && offset < end {
                return current;
            }
            current = Some(name);
        }
        if end > offset {
            break;
        }
        at = end;
    }
    current
}

/// The byte range of the entry of `text` that covers byte `offset`: its
/// line, or every line of a multi-line string (`"""` or `'''`) that
/// starts with a `key = ` line.
fn entry_at(text: &str, offset: usize) -> std::ops::Range<usize> {
    let mut pos = 0;
    // (where the open multi-line entry starts, its closing delimiter)
    let mut open: Option<(usize, &str)> = None;
    for line in text.split_inclusive('\n') {
        let (start, end) = (pos, pos + line.len());
        pos = end;
        match open {
            Some((s, delim)) => {
                if line.contains(delim) {
                    open = None;
                    if offset < end {
                        return s..end;
                    }
                }
            }
            None => {
                let value = line.split_once('=').map(|(_, v)| v.trim_start());
                for delim in ["\"\"\"", "'''"] {
                    if let Some(rest) = value.and_then(|v| v.strip_prefix(delim)) {
                        if !rest.contains(delim) {
                            open = Some((start, delim));
                        }
                        break;
                    }
                }
                if open.is_none() && offset < end {
                    return start..end;
                }
            }
        }
    }
    match open {
        Some((s, _)) => s..text.len(),
        None => {
            let o = offset.min(text.len());
            text[..o].rfind('\n').map_or(0, |i| i + 1)..text.len()
        }
    }
}

/// The pieces of the value of the entry covering byte `offset` (one per
/// line, quotes trimmed) if that entry may hold a secret: a key like a
/// password's or CHAP's, or an `iscsi://` URL that may carry one.
fn secret_value(text: &str, offset: usize) -> Option<Vec<&str>> {
    let entry = text.get(entry_at(text, offset.min(text.len())))?;
    let lower = entry.to_ascii_lowercase();
    // By the key, typos included (`chap_pasword`), or a URL's password.
    let first = lower.lines().next().unwrap_or("");
    let key = first.split_once('=').map_or(first, |(k, _)| k);
    let secret = ["pas", "pwd", "secret", "chap", "token"].iter().any(|w| key.contains(w))
        || (lower.contains("iscsi://") && (lower.contains('%') || lower.contains("target_password")));
    if !secret {
        return None;
    }
    let value = entry.split_once('=').map_or("", |(_, v)| v);
    let mut pieces: Vec<&str> =
        value.lines().map(|l| l.trim().trim_matches(|c| c == '"' || c == '\'')).filter(|l| !l.is_empty()).collect();
    // Longest first, so that no piece is left half-replaced by a shorter one.
    pieces.sort_by_key(|p| std::cmp::Reverse(p.len()));
    Some(pieces)
}

/// toml's message (without the quoted line) for `e`, with the value of a
/// secret-holding entry (`invalid type: integer `...``) shown as `***`.
fn message_without_secret(text: &str, e: &toml::de::Error) -> String {
    let mut message = e.message().trim_end().to_string();
    if let Some(pieces) = e.span().and_then(|sp| secret_value(text, sp.start)) {
        for p in pieces {
            message = message.replace(p, "***");
        }
    }
    message
}

/// A TOML error for the user: toml's own message, except that a line
/// holding a secret (`chap_password = "...`, a URL with a password) is not
/// quoted, nor its value repeated (`invalid type: integer `...``): the
/// message goes to stderr, cron mail and logs that others may read.
fn toml_error_message(text: &str, e: &toml::de::Error) -> String {
    let full = e.to_string().trim_end().to_string();
    let Some(start) = e.span().map(|sp| sp.start) else { return full };
    if secret_value(text, start).is_none() {
        return full;
    }
    let start = start.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let col = start - text[..start].rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(
        "TOML parse error at line {line_no}, column {col} (the line holds a secret and is not shown)\n{}",
        message_without_secret(text, e)
    )
}

/// The top-level name of a `[a.b]` or `[[a.b]]` header line.
fn header_name(line: &str) -> Option<String> {
    let t = line.trim_start();
    let inner = t.strip_prefix('[')?;
    let inner = inner.strip_prefix('[').unwrap_or(inner);
    let end = inner.find(']')?;
    let first = inner[..end].split('.').next()?.trim().trim_matches(|c| c == '"' || c == '\'');
    Some(first.to_string())
}

/// `text` without the tables of top-level section `name`.
fn without_section(text: &str, name: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut current: Option<String> = None;
    for line in text.split_inclusive('\n') {
        if let Some(h) = header_name(line) {
            current = Some(h);
        }
        if current.as_deref() != Some(name) {
            out.push_str(line);
        }
    }
    out
}

impl Config {
    /// Parses and validates configuration text; `path` is only for messages.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_path_buf(), message: toml_error_message(text, &e) })?;
        config.validate().map_err(|v| ConfigError::Invalid {
            path: path.to_path_buf(),
            key: v.key,
            problem: v.problem,
        })?;
        if let Some(t) = &config.targets {
            t.check(text, path)?;
        }
        Ok(config)
    }

    fn validate(&self) -> Result<(), InvalidValue> {
        self.ddless.validate()?;
        self.ddmap.validate()?;
        self.initiator.validate()?;
        if let Some(p) = &self.portal {
            p.validate()?;
        }
        if let Some(a) = &self.archive {
            a.validate()?;
        }
        Ok(())
    }

    /// Parses for a tool that uses `uses`: an error in another section (or
    /// an unknown section) is recorded in `warnings` and that section is
    /// ignored; an error in a used section, or outside any section, fails.
    pub fn parse_for(text: &str, path: &Path, uses: &[Section]) -> Result<Config, ConfigError> {
        let used = |name: &str| uses.iter().any(|s| s.name() == name);
        let mut text = text.to_string();
        let mut warnings = Vec::new();
        // Each round removes one broken unused section; there are few.
        for _ in 0..64 {
            let broken = match toml::from_str::<Config>(&text) {
                Err(e) => {
                    // A syntax error may only show where the next table
                    // starts (an unclosed array): blame the table before.
                    let syntax = text.parse::<toml::Table>().is_err();
                    let section = e.span().and_then(|s| section_at(&text, s.start, syntax));
                    let message = message_without_secret(&text, &e);
                    match section {
                        Some(name) if !used(&name) => (name, message),
                        _ => return Config::parse(&text, path),
                    }
                }
                Ok(mut config) => match config.validate() {
                    Ok(()) => match config.targets.as_ref().map(|t| t.check(&text, path)) {
                        // The inventory's own check names file, line and key.
                        Some(Err(e)) if used("targets") => return Err(e),
                        Some(Err(e)) => ("targets".to_string(), e.to_string()),
                        _ => {
                            config.warnings = warnings;
                            return Ok(config);
                        }
                    },
                    Err(v) => {
                        let name = v.key.split('.').next().unwrap_or_default().to_string();
                        if used(&name) {
                            return Err(ConfigError::Invalid {
                                path: path.to_path_buf(),
                                key: v.key,
                                problem: v.problem,
                            });
                        }
                        (name, format!("key `{}`: {}", v.key, v.problem))
                    }
                },
            };
            let (name, message) = broken;
            warnings.push(format!(
                "configuration {}: section [{name}] is ignored by this tool: {message} (santools check-config reports it)",
                path.display()
            ));
            text = without_section(&text, &name);
        }
        Config::parse(&text, path)
    }

    fn read(explicit: Option<&Path>) -> Result<Option<(String, PathBuf)>, ConfigError> {
        let (path, required) = match explicit {
            Some(p) => (p.to_path_buf(), true),
            None => (PathBuf::from(DEFAULT_CONFIG_PATH), false),
        };
        match crate::shared::text_file::read_text(&path, MAX_CONFIG_BYTES) {
            Ok(text) => Ok(Some((text, path))),
            Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ConfigError::Read { path, source }),
        }
    }

    /// Loads `explicit` (which must exist) or the default path (which may
    /// be absent: then every setting has its default). Any error in any
    /// section fails (check-config, and tools that use every section).
    pub fn load(explicit: Option<&Path>) -> Result<Config, ConfigError> {
        match Config::read(explicit)? {
            Some((text, path)) => Config::parse(&text, &path).map(|c| c.with_file_warnings(&path)),
            None => Ok(Config::default()),
        }
    }

    /// Loads like [`Config::load`] for a tool that uses only `uses`: errors
    /// elsewhere become `warnings` (see [`Config::parse_for`]).
    pub fn load_for(explicit: Option<&Path>, uses: &[Section]) -> Result<Config, ConfigError> {
        match Config::read(explicit)? {
            Some((text, path)) => Config::parse_for(&text, &path, uses).map(|c| c.with_file_warnings(&path)),
            None => Ok(Config::default()),
        }
    }

    /// Adds a warning when others may change the file: whoever can write it
    /// chooses the initiator name, the LUNs backed up and restored (and
    /// where to), the commands a command source runs, as this user.
    fn with_file_warnings(mut self, path: &Path) -> Config {
        if let Some(w) = writable_by_others(path) {
            self.warnings.insert(0, w);
        }
        self.file = Some(path.to_path_buf());
        self
    }

    /// The error for a tool that needs section `name` and did not get it:
    /// names the file read, or says that none was (a new user's first run
    /// has no /etc/santools/santools.toml; "has no [archive] section" of a
    /// file that does not exist sent them looking inside it).
    pub fn missing_section(&self, name: &str) -> String {
        match &self.file {
            Some(p) => format!("configuration {} has no [{name}] section (see examples/santools.toml)", p.display()),
            None => format!(
                "no configuration file: {DEFAULT_CONFIG_PATH} does not exist, and this tool needs its [{name}] \
                 section (write it, or give --config FILE; see examples/santools.toml)"
            ),
        }
    }
}

/// A warning when `path` (or the directory holding it) may be written by
/// a user other than its owner.
pub fn writable_by_others(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let what = [
        (format!("configuration {}", path.display()), path),
        (format!("directory {} (holding configuration {})", dir.display(), path.display()), dir.as_path()),
    ];
    for (what, p) in what {
        let m = std::fs::metadata(p).ok()?;
        // A sticky directory (/tmp) lets nobody replace another's file.
        let sticky = m.is_dir() && m.mode() & 0o1000 != 0;
        if m.mode() & 0o022 != 0 && !sticky {
            return Some(format!(
                "{what} is writable by other users (mode {:04o}): whoever can change it chooses what is backed up \
                 and restored where, and the commands run for it; chmod go-w it",
                m.mode() & 0o7777
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text, Path::new("/etc/santools/santools.toml"))
    }

    #[test]
    fn endless_or_huge_files_are_refused_within_a_bound() {
        let e = Config::load(Some(Path::new("/dev/zero"))).unwrap_err().to_string();
        assert!(e.contains("/dev/zero") && e.contains("longer than 4 MiB"), "{e}");
        let d = tempfile::tempdir().unwrap();
        let big = d.path().join("big.toml");
        std::fs::write(&big, "# comment\n".repeat((MAX_CONFIG_BYTES / 10 + 1) as usize)).unwrap();
        assert!(Config::load(Some(&big)).unwrap_err().to_string().contains("longer than 4 MiB"));
        let bin = d.path().join("bin.toml");
        std::fs::write(&bin, [0xffu8, 0xfe, 0]).unwrap();
        assert!(Config::load(Some(&bin)).unwrap_err().to_string().contains("not UTF-8"));
        let ok = d.path().join("ok.toml");
        std::fs::write(&ok, "# comment\n".repeat(1000)).unwrap();
        assert!(Config::load(Some(&ok)).is_ok());
    }

    #[test]
    fn a_missing_section_names_the_file_read_or_says_there_was_none() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("site.toml");
        std::fs::write(&f, "[ddless]\n").unwrap();
        let read = Config::load_for(Some(&f), &[Section::Archive]).unwrap();
        assert_eq!(read.file.as_deref(), Some(f.as_path()));
        let e = read.missing_section("archive");
        assert!(e.contains(&format!("configuration {} has no [archive] section", f.display())), "{e}");
        let none = Config::default();
        let e = none.missing_section("portal");
        assert!(e.contains("no configuration file: /etc/santools/santools.toml does not exist"), "{e}");
        assert!(e.contains("[portal]") && e.contains("--config FILE"), "{e}");
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

    /// Finding (new-user pass): a TOML error quoted the offending line,
    /// so a typo next to a secret printed the secret (`chap_password =
    /// "s3cret` unterminated, or an integer password repeated in "invalid
    /// type: integer `...`"). The key is still named; the value is not.
    #[test]
    fn parse_errors_never_quote_a_secret() {
        let cases = [
            ("[initiator]\nchap_password = \"Sup3rSecretValue\n", "line 2"),
            ("[initiator]\nchap_password = 12345678901234567\n", "12345678901234567"),
            ("[initiator]\ntarget_chap_password = 'Sup3rSecretValue\n", "line 2"),
            ("[initiator.targets.\"iqn.2024-01.t:a\"]\nchap_pasword = \"Sup3rSecretValue\"\n", "chap_pasword"),
            ("[initiator]\npasswd = \"Sup3rSecretValue\"\n", "passwd"),
            (
                "[[archive.volumes]]\nname = \"v\"\nsource = \"iscsi://u%Sup3rSecretValue@h/iqn.2024-01.t:a/1\nx\n",
                "line 3",
            ),
            // Multi-line strings: the error may fall on any line of the value
            // (helper-16's pass: the continuation line was quoted).
            ("[initiator]\nchap_password = \"\"\"first\nSup3rSecretValue\\q\"\"\"\n", "line 3"),
            ("[initiator]\nchap_password = '''first\nSup3rSecretValue'''x\n", "line 3"),
            ("[initiator]\nchap_password = \"\"\"\nSup3rSecretValue\n", "line 4"),
            ("[initiator]\nchap_password = \"\"\"Sup3rSecretValue\nmore\"\"\"\nname = 5\n", "name"),
        ];
        for (text, shown) in cases {
            let e = parse(text).unwrap_err().to_string();
            assert!(!e.contains("Sup3rSecretValue") && !e.contains("12345678901234567"), "{text:?}: {e}");
            if shown != "12345678901234567" {
                assert!(e.contains(shown), "{text:?}: {e}");
            }
            // And as a warning of a tool that does not use the section.
            let c = Config::parse_for(text, Path::new("/x.toml"), &[Section::Ddmap]);
            let shown = format!("{:?}", c.map(|c| c.warnings).map_err(|e| e.to_string()));
            assert!(!shown.contains("Sup3rSecretValue") && !shown.contains("12345678901234567"), "{text:?}: {shown}");
        }
        // Other lines are still quoted as toml shows them.
        let e = parse("[ddless]\nworkers = \"two\"\n").unwrap_err().to_string();
        assert!(e.contains("workers = \"two\""), "{e}");
    }

    /// Finding (new-user pass): a configuration others could write (its
    /// URLs choose where data goes, a command source's prepare runs as
    /// root) was loaded without a word.
    #[test]
    fn a_configuration_others_may_write_is_warned_about() {
        use std::os::unix::fs::PermissionsExt;
        let d = tempfile::tempdir().unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = d.path().join("santools.toml");
        std::fs::write(&p, "[ddless]\nworkers = 2\n").unwrap();
        for (mode, warned) in [(0o644, false), (0o600, false), (0o664, true), (0o666, true)] {
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            for c in [Config::load(Some(&p)).unwrap(), Config::load_for(Some(&p), &[Section::Ddless]).unwrap()] {
                let w = c.warnings.iter().any(|w| w.contains("writable by other users"));
                assert_eq!(w, warned, "mode {mode:o}: {:?}", c.warnings);
            }
        }
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let c = Config::load(Some(&p)).unwrap();
        assert!(c.warnings.iter().any(|w| w.contains("(holding configuration")), "{:?}", c.warnings);
        std::fs::set_permissions(d.path(), std::fs::Permissions::from_mode(0o1777)).unwrap();
        assert!(Config::load(Some(&p)).unwrap().warnings.is_empty(), "a sticky directory is fine");
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
    fn errors_in_unused_sections_are_warnings() {
        let text =
            "[ddless]\nworkers = 2\n\n[portal]\nlisten = [\"10.0.0.1:3260\"]\nstate_tme_sec = 5\n\n[nosuch]\nx = 1\n";
        let path = Path::new("/etc/santools/santools.toml");
        assert!(Config::parse(text, path).is_err(), "check-config must still fail");
        let c = Config::parse_for(text, path, &[Section::Ddless]).unwrap();
        assert_eq!(c.ddless.workers, Some(2));
        assert!(c.portal.is_none());
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        assert!(c.warnings[0].contains("[portal]") && c.warnings[0].contains("state_tme_sec"), "{:?}", c.warnings);
        // The portal uses [portal]: its error stays fatal there.
        let e = Config::parse_for(text, path, &[Section::Portal]).unwrap_err().to_string();
        assert!(e.contains("state_tme_sec"), "{e}");
        // A syntax error inside an unused section is skipped too.
        let broken = "[portal]\nlisten = [\"x\"\n[ddless]\nworkers = 3\n";
        assert_eq!(Config::parse_for(broken, path, &[Section::Ddless]).unwrap().ddless.workers, Some(3));
        // A bad value in a used section fails, naming the key.
        let e = Config::parse_for("[ddless]\nworkers = 0\n[portal]\nbad = 1\n", path, &[Section::Ddless])
            .unwrap_err()
            .to_string();
        assert!(e.contains("ddless.workers"), "{e}");
        let bad_value = Config::parse_for("[ddmap]\nproc_dir = \"rel\"\n", path, &[Section::Ddless]).unwrap();
        assert_eq!(bad_value.warnings.len(), 1);
        assert_eq!(bad_value.ddmap.proc_dir, PathBuf::from("/proc/net/iet/ddmap"));
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        assert!(matches!(Config::load(Some(Path::new("/nonexistent/x.toml"))), Err(ConfigError::Read { .. })));
    }
}
