//! The command-source protocol (docs/archive.md, "sources"): what a
//! `prepare` command prints and what `finish` is told. Pure: parsing and
//! rendering only, tested with tables.
//!
//! prepare prints one JSON object on stdout:
//!
//! ```json
//! {"path": "/dev/vg8/lv_a-snap", "size": 10737418240,
//!  "ddmap": "/var/lib/santools/lv_a.ddmap", "ddmap_state": "CLEAN",
//!  "checksum": "/var/lib/santools/lv_a-snap.ddless", "token": "anything"}
//! ```
//!
//! `path` (or `url`, an `iscsi://` LUN) and `size` are required. `ddmap`
//! and `ddmap_state` say which segments changed since the last backup the
//! source was told succeeded; `checksum` is a ddless checksum file of the
//! source computed on the source side (used by `backup -i`); `token` is
//! handed back to finish. Other keys are ignored (logged with -v).
//!
//! finish gets one JSON object on stdin:
//!
//! ```json
//! {"status": "success", "volume": "vg8/lv_a", "token": "anything",
//!  "snapshot": "tank/iscsi_lv_a_bk@2011-03-29_23:00:01", "integrity": "ok"}
//! ```
//!
//! `status` is `success` only when the snapshot exists: then the source may
//! clear its map. On `failure` it must keep it (the next backup needs the
//! same changes again).

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::archive::ddmap_state::DdmapState;

/// Largest prepare output accepted.
pub const MAX_PREPARE_OUTPUT: usize = 64 * 1024;

/// What prepare said, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PreparedSource {
    pub location: Location,
    pub size: u64,
    pub ddmap: Option<PathBuf>,
    pub ddmap_state: Option<DdmapState>,
    pub checksum: Option<PathBuf>,
    pub token: Option<String>,
    /// Keys prepare printed that this version does not know.
    pub ignored_keys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Location {
    Path(PathBuf),
    Url(String),
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Path(p) => write!(f, "{}", p.display()),
            Location::Url(u) => f.write_str(&redact_url(u)),
        }
    }
}

/// An `iscsi://user%password@host/...?target_password=...` URL with every
/// password hidden (also one holding '@', '/' or '&').
pub fn redact_url(url: &str) -> String {
    crate::initiator::url::redact_secrets(url)
}

#[derive(Deserialize)]
struct Raw {
    path: Option<String>,
    url: Option<String>,
    size: Option<serde_json::Value>,
    ddmap: Option<String>,
    ddmap_state: Option<String>,
    checksum: Option<String>,
    token: Option<serde_json::Value>,
    #[serde(flatten)]
    rest: serde_json::Map<String, serde_json::Value>,
}

fn abs_path(field: &str, s: &str) -> Result<PathBuf, String> {
    let p = PathBuf::from(s);
    if s.is_empty() || !p.is_absolute() || s.contains('\0') {
        return Err(format!("\"{field}\" must be an absolute path, got {s:?}"));
    }
    Ok(p)
}

/// Parses prepare's stdout.
pub fn parse_prepare(stdout: &[u8]) -> Result<PreparedSource, String> {
    if stdout.len() > MAX_PREPARE_OUTPUT {
        return Err(format!("printed {} bytes; at most {MAX_PREPARE_OUTPUT} are accepted", stdout.len()));
    }
    let text = std::str::from_utf8(stdout).map_err(|_| "printed output that is not UTF-8".to_string())?;
    if text.trim().is_empty() {
        return Err("printed nothing (expected one JSON object with \"path\" and \"size\")".into());
    }
    let raw: Raw = serde_json::from_str(text.trim()).map_err(|e| format!("printed invalid JSON: {e}"))?;
    let location = match (raw.path, raw.url) {
        (Some(p), None) => Location::Path(abs_path("path", &p)?),
        (None, Some(u)) => {
            if !u.starts_with("iscsi://") || u.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(format!("\"url\" must be an iscsi:// URL, got {:?}", redact_url(&u)));
            }
            Location::Url(u)
        }
        (Some(_), Some(_)) => return Err("gave both \"path\" and \"url\"; exactly one is expected".into()),
        (None, None) => return Err("gave neither \"path\" nor \"url\"".into()),
    };
    let size = match raw.size {
        Some(serde_json::Value::Number(n)) => {
            n.as_u64().ok_or_else(|| format!("\"size\" must be a whole number of bytes, got {n}"))?
        }
        Some(other) => return Err(format!("\"size\" must be a number of bytes, got {other}")),
        None => return Err("gave no \"size\"".into()),
    };
    if size == 0 || size > i64::MAX as u64 {
        return Err(format!("\"size\" {size} is not a usable volume size"));
    }
    let ddmap = raw.ddmap.as_deref().map(|d| abs_path("ddmap", d)).transpose()?;
    let ddmap_state = raw
        .ddmap_state
        .as_deref()
        .map(|s| s.parse::<DdmapState>().map_err(|e| format!("\"ddmap_state\": {e}")))
        .transpose()?;
    if ddmap_state.is_some() && ddmap.is_none() {
        return Err("gave \"ddmap_state\" without \"ddmap\"".into());
    }
    let checksum = raw.checksum.as_deref().map(|c| abs_path("checksum", c)).transpose()?;
    let token = match raw.token {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(other) => Some(other.to_string()),
    };
    if token.as_ref().is_some_and(|t| t.len() > 4096) {
        return Err("\"token\" is longer than 4096 bytes".into());
    }
    Ok(PreparedSource {
        location,
        size,
        ddmap,
        ddmap_state,
        checksum,
        token,
        ignored_keys: raw.rest.keys().cloned().collect(),
    })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Success,
    Failure,
}

/// What finish is told, on stdin.
#[derive(Clone, Debug, Serialize)]
pub struct FinishMessage {
    pub status: Status,
    pub volume: String,
    pub token: Option<String>,
    pub snapshot: Option<String>,
    /// "ok", "mismatch" or "not_checked".
    pub integrity: String,
    pub error: Option<String>,
}

/// Replaces `{volume}` in each argument (never through a shell).
pub fn expand_argv(argv: &[String], volume: &str) -> Vec<String> {
    argv.iter().map(|a| a.replace("{volume}", volume)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_outputs() {
        let p = parse_prepare(
            br#"{"path":"/dev/x","size":1048576,"ddmap":"/m","ddmap_state":"DDMAP_CLEAN","token":7,"extra":1}"#,
        )
        .unwrap();
        assert_eq!(p.location, Location::Path("/dev/x".into()));
        assert_eq!(p.size, 1 << 20);
        assert_eq!(p.ddmap_state, Some(DdmapState::Clean));
        assert_eq!(p.token.as_deref(), Some("7"));
        assert_eq!(p.ignored_keys, vec!["extra".to_string()]);
        let u = parse_prepare(
            br#" {"url":"iscsi://u%secret@10.0.0.1/iqn.x:y/0","size":512}
"#,
        )
        .unwrap();
        assert_eq!(u.location.to_string(), "iscsi://u%***@10.0.0.1/iqn.x:y/0");
    }

    #[test]
    fn bad_outputs_say_what_is_wrong() {
        let cases: [(&[u8], &str); 12] = [
            (b"", "printed nothing"),
            (b"not json", "invalid JSON"),
            (b"[1,2]", "invalid JSON"),
            (br#"{"size":5}"#, "neither"),
            (br#"{"path":"rel","size":5}"#, "absolute"),
            (br#"{"path":"/x"}"#, "no \"size\""),
            (br#"{"path":"/x","size":-5}"#, "whole number"),
            (br#"{"path":"/x","size":"5"}"#, "number of bytes"),
            (br#"{"path":"/x","size":0}"#, "not a usable"),
            (br#"{"path":"/x","size":5,"ddmap_state":"CLEAN"}"#, "without"),
            (br#"{"path":"/x","url":"iscsi://h/t/0","size":5}"#, "both"),
            (br#"{"url":"http://h/","size":5}"#, "iscsi://"),
        ];
        for (input, want) in cases {
            let e = parse_prepare(input).unwrap_err();
            assert!(e.contains(want), "{:?}: {e}", String::from_utf8_lossy(input));
        }
        assert!(parse_prepare(&vec![b' '; MAX_PREPARE_OUTPUT + 1]).unwrap_err().contains("at most"));
    }

    #[test]
    fn argv_expansion_is_per_argument() {
        let a = expand_argv(&["ssh".into(), "node1".into(), "snap {volume}; rm -rf /".into()], "vg/lv");
        assert_eq!(a[2], "snap vg/lv; rm -rf /");
        assert_eq!(a.len(), 3);
    }
}
