//! From flags, the `[initiator]` config section and the environment to
//! [`InitiatorOptions`]. Precedence: command line, then environment, then
//! the config's section for the target, then its general keys.
//!
//! Secrets never come from the command line: a URL given there with a
//! password is refused (other users read it in `ps` and
//! /proc/PID/cmdline). They come from libiscsi's environment variables
//! (`LIBISCSI_CHAP_PASSWORD`, `LIBISCSI_CHAP_TARGET_PASSWORD`; the user
//! names from `LIBISCSI_CHAP_USERNAME`, `LIBISCSI_CHAP_TARGET_USERNAME` or
//! the URL) or from the configuration file, which should be mode 0600.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;

use super::error::InitiatorError;
use super::options::{Auth, ChapCredentials, DigestPref, InitiatorOptions, MAX_QUEUE_DEPTH};
use super::secret::Secret;
use super::url::{parse_digest_pref, IscsiUrl};
use crate::config::initiator::InitiatorConfig;
use crate::iscsi::name::format_problem;

/// open-iscsi's initiator name file.
pub const DEFAULT_NAME_FILE: &str = "/etc/iscsi/initiatorname.iscsi";

pub const ENV_CHAP_USERNAME: &str = "LIBISCSI_CHAP_USERNAME";
pub const ENV_CHAP_PASSWORD: &str = "LIBISCSI_CHAP_PASSWORD";
pub const ENV_TARGET_USERNAME: &str = "LIBISCSI_CHAP_TARGET_USERNAME";
pub const ENV_TARGET_PASSWORD: &str = "LIBISCSI_CHAP_TARGET_PASSWORD";

/// Session flags shared by every tool that opens `iscsi://` URLs.
#[derive(Args, Debug, Clone, Default)]
pub struct SessionArgs {
    /// iSCSI commands in flight per session, 1-256 [default: [initiator] queue_depth, else 16]
    #[arg(long = "queue-depth", value_name = "N", value_parser = parse_queue_depth)]
    pub queue_depth: Option<usize>,
    /// HeaderDigest to offer: none, crc32c, none-crc32c or crc32c-none [default: none-crc32c]
    #[arg(long = "header-digest", value_name = "DIGEST")]
    pub header_digest: Option<String>,
    /// DataDigest to offer (as --header-digest) [default: none-crc32c]
    #[arg(long = "data-digest", value_name = "DIGEST")]
    pub data_digest: Option<String>,
    /// Seconds to keep re-establishing a dropped iSCSI connection [default: 60]
    #[arg(long = "reconnect-timeout", value_name = "SEC", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub reconnect_timeout: Option<u64>,
    /// Seconds to wait for each login response (a portal may hold one during failover) [default: 60]
    #[arg(long = "login-timeout", value_name = "SEC", value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub login_timeout: Option<u64>,
    /// Log every iSCSI PDU at debug level (with -vv)
    #[arg(long = "debug-pdus")]
    pub debug_pdus: bool,
}

/// Where a URL came from: the command line may not carry secrets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UrlSource {
    CommandLine,
    ConfigFile,
}

fn opt_err(s: impl Into<String>) -> InitiatorError {
    InitiatorError::Options(s.into())
}

/// The InitiatorName in an open-iscsi style file (comments with '#').
pub fn read_name_file(path: &Path) -> Result<String, InitiatorError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    const MAX: u64 = 64 << 10;
    let failed = |e: std::io::Error| {
        opt_err(format!(
            "reading initiator name file {}: {e} (or give --initiator-name IQN, or set [initiator] name in the \
             configuration)",
            path.display()
        ))
    };
    // Opened once, without blocking (a FIFO would wait for a writer), and
    // checked through the handle: a device or FIFO (name_file =
    // "/dev/zero") would be read forever.
    let file = std::fs::OpenOptions::new().read(true).custom_flags(libc::O_NONBLOCK).open(path).map_err(failed)?;
    if !file.metadata().map_err(failed)?.is_file() {
        return Err(opt_err(format!("initiator name file {} is not a regular file", path.display())));
    }
    let mut text = String::new();
    file.take(MAX + 1).read_to_string(&mut text).map_err(failed)?;
    if text.len() as u64 > MAX {
        return Err(opt_err(format!("initiator name file {} is larger than 64 KiB", path.display())));
    }
    for line in text.lines() {
        let line = line.trim();
        if let Some(v) = line.strip_prefix("InitiatorName=") {
            let v = v.trim();
            if let Some(why) = format_problem(v) {
                return Err(opt_err(format!(
                    "initiator name file {}: InitiatorName={v:?} is not an iSCSI name ({why})",
                    path.display()
                )));
            }
            return Ok(v.to_string());
        }
    }
    Err(opt_err(format!("initiator name file {} has no InitiatorName= line", path.display())))
}

/// The initiator name: the flag, else `[initiator] name`, else the name file.
pub fn initiator_name(flag: Option<&str>, cfg: &InitiatorConfig) -> Result<String, InitiatorError> {
    if let Some(n) = flag {
        if let Some(why) = format_problem(n) {
            return Err(opt_err(format!("--initiator-name {n:?} is not an iSCSI name ({why})")));
        }
        return Ok(n.to_string());
    }
    if let Some(n) = &cfg.name {
        return Ok(n.clone());
    }
    let file = cfg.name_file.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_NAME_FILE));
    if !file.exists() {
        return Err(opt_err(format!(
            "no initiator name: give --initiator-name IQN, set [initiator] name in the configuration, or create {} \
             with a line InitiatorName=IQN",
            file.display()
        )));
    }
    read_name_file(&file)
}

fn pick<'a>(levels: &[Option<&'a str>]) -> Option<&'a str> {
    levels.iter().flatten().next().copied()
}

/// `--queue-depth`: refused by the argument parser, so the flag is named
/// and a run on files (where it does not apply) is refused too.
fn parse_queue_depth(v: &str) -> Result<usize, String> {
    match v.parse::<usize>() {
        Ok(q) if (1..=MAX_QUEUE_DEPTH).contains(&q) => Ok(q),
        _ => Err(format!("expected a number from 1 to {MAX_QUEUE_DEPTH}")),
    }
}

fn duration(flag: Option<u64>, cfg: Option<u64>, default: Duration, what: &str) -> Result<Duration, InitiatorError> {
    match flag.or(cfg) {
        None => Ok(default),
        Some(s) if (1..=3600).contains(&s) => Ok(Duration::from_secs(s)),
        Some(s) => Err(opt_err(format!("{what} {s} s is outside 1-3600"))),
    }
}

fn digest(
    flag: Option<&str>,
    url: Option<DigestPref>,
    cfg: Option<&str>,
    what: &str,
) -> Result<DigestPref, InitiatorError> {
    if let Some(f) = flag {
        return parse_digest_pref(f)
            .ok_or_else(|| opt_err(format!("--{what} {f:?}: expected none, crc32c, none-crc32c or crc32c-none")));
    }
    if let Some(u) = url {
        return Ok(u);
    }
    Ok(cfg.and_then(parse_digest_pref).unwrap_or(DigestPref::PreferNone))
}

/// Builds the options for opening `url`.
pub fn resolve(
    url: &IscsiUrl,
    source: UrlSource,
    name_flag: Option<&str>,
    args: &SessionArgs,
    cfg: &InitiatorConfig,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<InitiatorOptions, InitiatorError> {
    if source == UrlSource::CommandLine && url.has_password() {
        return Err(opt_err(format!(
            "a password in a URL on the command line is visible to every user (ps, /proc/PID/cmdline, shell \
             history) and is refused; put it in {ENV_CHAP_PASSWORD} (target side: {ENV_TARGET_PASSWORD}) or in the \
             configuration's [initiator] chap_password (per target: [initiator.targets.\"IQN\"]), mode 0600"
        )));
    }
    let mut o = InitiatorOptions::new(initiator_name(name_flag, cfg)?);
    let per = url.target.as_deref().and_then(|t| cfg.targets.get(t));
    let env_user = env(ENV_CHAP_USERNAME);
    let env_pass = env(ENV_CHAP_PASSWORD);
    let env_tuser = env(ENV_TARGET_USERNAME);
    let env_tpass = env(ENV_TARGET_PASSWORD);
    let user = pick(&[
        url.user.as_deref(),
        env_user.as_deref(),
        per.and_then(|p| p.chap_username.as_deref()),
        cfg.chap_username.as_deref(),
    ]);
    let pass_owned = url.password.as_ref().map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned());
    let pass = pick(&[
        pass_owned.as_deref(),
        env_pass.as_deref(),
        per.and_then(|p| p.chap_password.as_deref()),
        cfg.chap_password.as_deref(),
    ]);
    let tuser = pick(&[
        url.target_user.as_deref(),
        env_tuser.as_deref(),
        per.and_then(|p| p.target_chap_username.as_deref()),
        cfg.target_chap_username.as_deref(),
    ]);
    let tpass_owned = url.target_password.as_ref().map(|s| String::from_utf8_lossy(s.as_bytes()).into_owned());
    let tpass = pick(&[
        tpass_owned.as_deref(),
        env_tpass.as_deref(),
        per.and_then(|p| p.target_chap_password.as_deref()),
        cfg.target_chap_password.as_deref(),
    ]);
    let creds = |u: Option<&str>, p: Option<&str>, who: &str, uvar: &str, pvar: &str| match (u, p) {
        (Some(u), Some(p)) => Ok(Some(ChapCredentials { user: u.to_string(), secret: Secret::new(p) })),
        (None, None) => Ok(None),
        (Some(u), None) => Err(opt_err(format!(
            "{who} CHAP user {u:?} has no password: set {pvar} or the configuration's [initiator] {}chap_password",
            if who == "target" { "target_" } else { "" }
        ))),
        (None, Some(_)) => Err(opt_err(if who == "target" {
            format!(
                "a target CHAP password is set but no target user name: add ?target_user=NAME to the URL, or set \
                 {uvar} or the configuration's [initiator] target_chap_username"
            )
        } else {
            format!(
                "an {who} CHAP password is set but no user name: put USER@ in the URL, or set {uvar} or the \
                 configuration's [initiator] chap_username"
            )
        })),
    };
    o.auth = Auth {
        chap: creds(user, pass, "initiator", ENV_CHAP_USERNAME, ENV_CHAP_PASSWORD)?,
        mutual: creds(tuser, tpass, "target", ENV_TARGET_USERNAME, ENV_TARGET_PASSWORD)?,
    };
    if let Some(c) = &o.auth.chap {
        if c.secret.len() < 12 {
            tracing::warn!("the CHAP secret of {} is shorter than 12 characters (RFC 7143 asks for 96 bits)", c.user);
        }
    }
    o.header_digest =
        digest(args.header_digest.as_deref(), url.header_digest, cfg.header_digest.as_deref(), "header-digest")?;
    o.data_digest = digest(args.data_digest.as_deref(), None, cfg.data_digest.as_deref(), "data-digest")?;
    if let Some(q) = args.queue_depth.or(cfg.queue_depth) {
        o.queue_depth = q;
    }
    if let Some(k) = cfg.max_transfer_kib {
        o.max_transfer = k * 1024;
    }
    o.connect_timeout = duration(None, cfg.connect_timeout_sec, o.connect_timeout, "connect timeout")?;
    o.login_timeout = duration(args.login_timeout, cfg.login_timeout_sec, o.login_timeout, "login timeout")?;
    o.io_timeout = duration(None, cfg.io_timeout_sec, o.io_timeout, "I/O timeout")?;
    o.reconnect_timeout =
        duration(args.reconnect_timeout, cfg.reconnect_timeout_sec, o.reconnect_timeout, "reconnect timeout")?;
    if let Some(r) = cfg.max_reconnects {
        o.max_reconnects = r;
    }
    if let Some(r) = cfg.max_redirects {
        o.max_redirects = r;
    }
    o.log_pdus = args.debug_pdus;
    o.validate().map_err(opt_err)?;
    Ok(o)
}

/// A warning when the configuration file holds secrets and others may read it.
pub fn config_exposure_warning(path: &Path, cfg: &InitiatorConfig) -> Option<String> {
    exposure_warning(path, cfg.has_secrets())
}

/// [`config_exposure_warning`] for a file whose secrets the caller found
/// (the archive's source URLs may carry passwords too).
pub fn exposure_warning(path: &Path, holds_secrets: bool) -> Option<String> {
    if !holds_secrets {
        return None;
    }
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o044 != 0).then(|| {
        format!(
            "configuration {} holds CHAP secrets and is readable by other users (mode {:04o}): chmod 600 it",
            path.display(),
            mode & 0o7777
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(text: &str) -> InitiatorConfig {
        crate::config::Config::parse(text, Path::new("/t.toml")).unwrap().initiator
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    const URL: &str = "iscsi://h/iqn.2024-01.test:vol1/1";

    #[test]
    fn flags_out_of_range_are_refused_by_name() {
        use clap::Parser;
        #[derive(Parser)]
        struct Cli {
            #[command(flatten)]
            session: SessionArgs,
        }
        let parse = |args: &[&str]| Cli::try_parse_from(std::iter::once("t").chain(args.iter().copied()));
        for (args, flag) in [
            (&["--queue-depth", "0"][..], "--queue-depth"),
            (&["--queue-depth", "257"], "--queue-depth"),
            (&["--queue-depth=-1"], "--queue-depth"),
            (&["--login-timeout", "0"], "--login-timeout"),
            (&["--reconnect-timeout", "3601"], "--reconnect-timeout"),
        ] {
            let e = parse(args).err().unwrap_or_else(|| panic!("{args:?} accepted")).to_string();
            assert!(e.contains(flag), "{args:?}: {e}");
        }
        let ok = parse(&["--queue-depth", "256", "--login-timeout", "3600"]).unwrap().session;
        assert_eq!((ok.queue_depth, ok.login_timeout), (Some(256), Some(3600)));
    }

    #[test]
    fn name_precedence_and_file() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("initiatorname.iscsi");
        std::fs::write(&f, "## comment\n\nInitiatorName=iqn.1993-08.org.debian:01:abc\n").unwrap();
        let c = cfg(&format!("[initiator]\nname_file = \"{}\"\n", f.display()));
        assert_eq!(initiator_name(None, &c).unwrap(), "iqn.1993-08.org.debian:01:abc");
        assert_eq!(initiator_name(Some("iqn.2024-01.test:flag"), &c).unwrap(), "iqn.2024-01.test:flag");
        let c2 = cfg("[initiator]\nname = \"iqn.2024-01.test:cfg\"\n");
        assert_eq!(initiator_name(None, &c2).unwrap(), "iqn.2024-01.test:cfg");
        assert!(initiator_name(Some("bad name"), &c).is_err());
        // Our own name has the RFC's form: a bare prefix or an undated iqn. is refused.
        for bad in ["iqn.", "iqn.x", "iqn.2024-13.test:x", "eui.12"] {
            let e = initiator_name(Some(bad), &c).unwrap_err().to_string();
            assert!(e.contains("--initiator-name") && e.contains("not an iSCSI name"), "{bad}: {e}");
        }
        std::fs::write(&f, "InitiatorName=iqn.host1\n").unwrap();
        assert!(initiator_name(None, &c).unwrap_err().to_string().contains("iqn.YYYY-MM"));
        std::fs::write(&f, "InitiatorName=not-a-name\n").unwrap();
        assert!(initiator_name(None, &c).unwrap_err().to_string().contains("not an iSCSI name"));
        std::fs::write(&f, "# nothing\n").unwrap();
        assert!(initiator_name(None, &c).unwrap_err().to_string().contains("no InitiatorName"));
        let missing = cfg("[initiator]\nname_file = \"/nonexistent/x\"\n");
        assert!(initiator_name(None, &missing).unwrap_err().to_string().contains("--initiator-name"));
    }

    #[test]
    fn secrets_come_from_env_and_config_never_the_command_line() {
        let c = cfg("[initiator]\nname = \"iqn.2024-01.test:me\"\nchap_username = \"gen\"\nchap_password = \"general-secret\"\n[initiator.targets.\"iqn.2024-01.test:vol1\"]\nchap_username = \"per\"\nchap_password = \"per-target-secret\"\ntarget_chap_username = \"tgt\"\ntarget_chap_password = \"target-secret!!\"\n");
        let url = IscsiUrl::parse(URL).unwrap();
        let o = resolve(&url, UrlSource::CommandLine, None, &SessionArgs::default(), &c, &no_env).unwrap();
        let chap = o.auth.chap.unwrap();
        assert_eq!((chap.user.as_str(), chap.secret.as_bytes()), ("per", &b"per-target-secret"[..]));
        assert_eq!(o.auth.mutual.unwrap().user, "tgt");
        let env = |k: &str| match k {
            ENV_CHAP_USERNAME => Some("envuser".to_string()),
            ENV_CHAP_PASSWORD => Some("env-secret-123".to_string()),
            _ => None,
        };
        let o = resolve(&url, UrlSource::CommandLine, None, &SessionArgs::default(), &c, &env).unwrap();
        assert_eq!(o.auth.chap.unwrap().secret.as_bytes(), b"env-secret-123");
        let with_pw = IscsiUrl::parse("iscsi://u%topsecret@h/iqn.2024-01.test:vol1/1").unwrap();
        let e = resolve(&with_pw, UrlSource::CommandLine, None, &SessionArgs::default(), &c, &no_env).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("refused") && msg.contains(ENV_CHAP_PASSWORD) && !msg.contains("topsecret"), "{msg}");
        let o = resolve(&with_pw, UrlSource::ConfigFile, None, &SessionArgs::default(), &c, &no_env).unwrap();
        assert_eq!(o.auth.chap.unwrap().secret.as_bytes(), b"topsecret");
        let plain = cfg("[initiator]\nname = \"iqn.2024-01.test:me\"\n");
        let user_only = IscsiUrl::parse("iscsi://bob@h/iqn.2024-01.test:vol1/1").unwrap();
        let e =
            resolve(&user_only, UrlSource::CommandLine, None, &SessionArgs::default(), &plain, &no_env).unwrap_err();
        assert!(e.to_string().contains("has no password"), "{e}");
    }

    #[test]
    fn flags_beat_config() {
        let c = cfg("[initiator]\nname = \"iqn.2024-01.test:me\"\nqueue_depth = 4\nheader_digest = \"crc32c\"\nreconnect_timeout_sec = 9\n");
        let url = IscsiUrl::parse(URL).unwrap();
        let o = resolve(&url, UrlSource::CommandLine, None, &SessionArgs::default(), &c, &no_env).unwrap();
        assert_eq!((o.queue_depth, o.header_digest, o.reconnect_timeout.as_secs()), (4, DigestPref::Crc32c, 9));
        let args = SessionArgs { queue_depth: Some(32), header_digest: Some("none".into()), ..Default::default() };
        let o = resolve(&url, UrlSource::CommandLine, None, &args, &c, &no_env).unwrap();
        assert_eq!((o.queue_depth, o.header_digest), (32, DigestPref::None));
        let bad = SessionArgs { queue_depth: Some(0), ..Default::default() };
        assert!(resolve(&url, UrlSource::CommandLine, None, &bad, &c, &no_env).is_err());
        let bad = SessionArgs { data_digest: Some("md5".into()), ..Default::default() };
        assert!(resolve(&url, UrlSource::CommandLine, None, &bad, &c, &no_env)
            .unwrap_err()
            .to_string()
            .contains("--data-digest"));
    }

    #[test]
    fn config_errors_name_the_key() {
        for (text, key) in [
            ("[initiator]\nname = \"nope\"\n", "initiator.name"),
            ("[initiator]\nqueue_depth = 0\n", "initiator.queue_depth"),
            ("[initiator]\nheader_digest = \"md5\"\n", "initiator.header_digest"),
            ("[initiator]\nreconnect_timeout_sec = 0\n", "initiator.reconnect_timeout_sec"),
            ("[initiator.targets.\"bad name\"]\n", "initiator.targets"),
            ("[initiator.targets.\"iqn.2024-01.test:a\"]\nchap_password = \"\"\n", "chap_password"),
            ("[initiator]\nchap_pasword = \"x\"\n", "chap_pasword"),
        ] {
            let e = crate::config::Config::parse(text, Path::new("/t.toml")).unwrap_err().to_string();
            assert!(e.contains(key), "{text}: {e}");
        }
    }
}
