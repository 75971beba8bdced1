//! `iscsi://` URLs in libiscsi's syntax (the one qemu-img and libiscsi's
//! tools accept):
//!
//! ```text
//! iscsi://[USER[%PASSWORD]@]HOST[:PORT][/TARGET-IQN[/LUN]][?ARG=VALUE&...]
//! ```
//!
//! HOST is a name, an IPv4 address or an IPv6 address in brackets; PORT
//! defaults to 3260. Arguments (as libiscsi): `header_digest` (`none`,
//! `crc32c`, `none-crc32c`, `crc32c-none`), `target_user` and
//! `target_password` (mutual CHAP). A password in a URL is kept as a
//! [`Secret`]; whether one may come from the command line is the caller's
//! decision (santools refuses it there: see docs/iscsi-initiator.md).

use std::net::Ipv6Addr;

use super::options::DigestPref;
use super::secret::Secret;
use crate::iscsi::name::is_valid_name;
use crate::iscsi::target_address::DEFAULT_PORT;
use crate::scsi::MAX_LUN;

/// Where to connect: host (name or address, IPv6 without brackets) and port.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Portal {
    pub host: String,
    pub port: u16,
}

impl std::fmt::Display for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.host.contains(':') {
            write!(f, "[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{}:{}", self.host, self.port)
        }
    }
}

/// A parsed `iscsi://` URL. Display redacts passwords.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IscsiUrl {
    pub portal: Portal,
    pub target: Option<String>,
    pub lun: Option<u16>,
    pub user: Option<String>,
    pub password: Option<Secret>,
    pub target_user: Option<String>,
    pub target_password: Option<Secret>,
    pub header_digest: Option<DigestPref>,
}

/// Longer URLs are refused (a host name is at most 253 bytes, a target
/// name 223; errors repeat the URL).
pub const MAX_URL_LEN: usize = 2048;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    #[error("not an iscsi:// URL (expected iscsi://[USER[%PASSWORD]@]HOST[:PORT]/TARGET-IQN/LUN)")]
    Scheme,
    #[error("missing host (expected iscsi://HOST[:PORT]/...)")]
    NoHost,
    #[error("invalid host {0:?}: expected a host name, an IPv4 address, or an IPv6 address in brackets")]
    BadHost(String),
    #[error("invalid host {0:?}: IPv6 zone IDs (%INTERFACE) are not supported; use an address that needs none")]
    ZoneId(String),
    #[error("invalid host {0:?}: an IPv6 address goes in brackets (iscsi://[{0}]:PORT/...)")]
    UnbracketedIpv6(String),
    #[error("a URL of {0} bytes: at most {MAX_URL_LEN} expected")]
    TooLong(usize),
    #[error("invalid port {0:?}: expected a number from 1 to 65535")]
    BadPort(String),
    #[error("invalid target name {0:?}: expected an iqn., eui. or naa. name")]
    BadTarget(String),
    #[error("invalid LUN {0:?}: expected a number from 0 to {MAX_LUN}")]
    BadLun(String),
    #[error("the URL names no target (expected iscsi://HOST[:PORT]/TARGET-IQN/LUN)")]
    NoTarget,
    #[error("the URL names no LUN (expected iscsi://HOST[:PORT]/TARGET-IQN/LUN)")]
    NoLun,
    #[error("unexpected path after the LUN: {0:?}")]
    ExtraPath(String),
    #[error("invalid user name: {0}")]
    BadUser(String),
    #[error(
        "a '%' before the host but no '@' after it: a password (USER%PASSWORD@HOST) may not hold '/' or '?' \
         (libiscsi's syntax); give it in the environment or the configuration's chap_password instead"
    )]
    CutPassword,
    #[error(
        "an unknown URL argument after target_password (not shown: a target_password may not hold '&', \
         and this may be the rest of it); give it in LIBISCSI_CHAP_TARGET_PASSWORD or the configuration's \
         target_chap_password instead"
    )]
    CutTargetPassword,
    #[error("unknown URL argument {0:?} (known: header_digest, target_user, target_password)")]
    UnknownArg(String),
    #[error("invalid header_digest {0:?}: expected none, crc32c, none-crc32c or crc32c-none")]
    BadDigest(String),
}

fn valid_user(u: &str) -> bool {
    !u.is_empty() && u.len() <= 255 && u.bytes().all(|b| b.is_ascii_graphic())
}

fn valid_host_name(h: &str) -> bool {
    !h.is_empty()
        && h.len() <= 253
        && h.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
        })
}

fn parse_portal(s: &str) -> Result<Portal, UrlError> {
    if s.is_empty() {
        return Err(UrlError::NoHost);
    }
    let (host, port) = if let Some(rest) = s.strip_prefix('[') {
        let (h, after) = rest.split_once(']').ok_or_else(|| UrlError::BadHost(s.to_string()))?;
        if h.parse::<Ipv6Addr>().is_err() {
            if h.split_once('%').is_some_and(|(a, _)| a.parse::<Ipv6Addr>().is_ok()) {
                return Err(UrlError::ZoneId(h.to_string()));
            }
            return Err(UrlError::BadHost(h.to_string()));
        }
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| UrlError::BadHost(s.to_string()))?),
        };
        (h.to_string(), port)
    } else {
        match s.split_once(':') {
            Some((h, p)) => {
                if p.contains(':') {
                    return Err(UrlError::UnbracketedIpv6(s.to_string()));
                }
                (h.to_string(), Some(p))
            }
            None => (s.to_string(), None),
        }
    };
    if host.is_empty() {
        return Err(UrlError::NoHost);
    }
    if !host.contains(':') && !valid_host_name(&host) {
        return Err(UrlError::BadHost(host));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => return Err(UrlError::BadPort(p.to_string())),
        },
    };
    Ok(Portal { host, port })
}

pub(crate) fn parse_digest_pref(v: &str) -> Option<DigestPref> {
    Some(match v.to_ascii_lowercase().as_str() {
        "none" => DigestPref::None,
        "crc32c" => DigestPref::Crc32c,
        "none-crc32c" | "none,crc32c" => DigestPref::PreferNone,
        "crc32c-none" | "crc32c,none" => DigestPref::PreferCrc32c,
        _ => return None,
    })
}

impl IscsiUrl {
    /// Whether `s` is meant as an iSCSI URL (then it must parse).
    pub fn is_iscsi_url(s: &str) -> bool {
        s.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("iscsi://"))
    }

    /// Parses a portal, target or LUN URL.
    pub fn parse(s: &str) -> Result<IscsiUrl, UrlError> {
        if !Self::is_iscsi_url(s) {
            return Err(UrlError::Scheme);
        }
        if s.len() > MAX_URL_LEN {
            return Err(UrlError::TooLong(s.len()));
        }
        let rest = &s[8..];
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) => (r, Some(q)),
            None => (rest, None),
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        // The last '@' ends the user part: a password may contain '@'.
        let (userinfo, hostport) = match authority.rfind('@') {
            Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
            None => (None, authority),
        };
        // USER%PASS/WORD@HOST: the '/' (or '?') ended the authority inside
        // the password; saying "invalid host" would show part of it.
        if userinfo.is_none() && !hostport.starts_with('[') && hostport.contains('%') {
            return Err(UrlError::CutPassword);
        }
        let (user, password) = match userinfo {
            None => (None, None),
            Some(ui) => {
                let (u, p) = match ui.split_once('%') {
                    Some((u, p)) => (u, Some(Secret::new(p))),
                    None => (ui, None),
                };
                if !valid_user(u) {
                    return Err(UrlError::BadUser("expected printable characters without spaces".into()));
                }
                (Some(u.to_string()), p)
            }
        };
        let portal = parse_portal(hostport)?;
        let mut parts = path.split('/');
        let target = match parts.next() {
            None | Some("") => None,
            Some(t) if is_valid_name(t) => Some(t.to_string()),
            Some(t) => return Err(UrlError::BadTarget(t.to_string())),
        };
        let lun = match parts.next() {
            None | Some("") => None,
            Some(l) => match l.parse::<u16>() {
                Ok(n) if n <= MAX_LUN && l.bytes().all(|b| b.is_ascii_digit()) => Some(n),
                _ => return Err(UrlError::BadLun(l.to_string())),
            },
        };
        let extra: Vec<&str> = parts.filter(|p| !p.is_empty()).collect();
        if !extra.is_empty() || (target.is_none() && path.len() > 1) {
            return Err(UrlError::ExtraPath(extra.join("/")));
        }
        let mut url = IscsiUrl {
            portal,
            target,
            lun,
            user,
            password,
            target_user: None,
            target_password: None,
            header_digest: None,
        };
        let mut after_password = false;
        for arg in query.unwrap_or("").split('&').filter(|a| !a.is_empty()) {
            let (k, v) = arg.split_once('=').unwrap_or((arg, ""));
            let follows_password = std::mem::replace(&mut after_password, k == "target_password");
            match k {
                // After target_password, a bad value may be the rest of the password ("x&header_digest=...").
                "header_digest" if follows_password && parse_digest_pref(v).is_none() => {
                    return Err(UrlError::CutTargetPassword)
                }
                "header_digest" => url.header_digest = Some(parse_digest_pref(v).ok_or(UrlError::BadDigest(v.into()))?),
                "target_user" => {
                    if !valid_user(v) {
                        return Err(UrlError::BadUser("target_user: expected printable characters".into()));
                    }
                    url.target_user = Some(v.to_string());
                }
                "target_password" => url.target_password = Some(Secret::new(v)),
                _ if follows_password => return Err(UrlError::CutTargetPassword),
                // Shown up to its first unusual character: a mistyped
                // `target_password%3D...` must not show the password.
                _ => {
                    let plain = k.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                    return Err(UrlError::UnknownArg(match plain {
                        Some(i) => format!("{}***", &k[..i]),
                        None => k.to_string(),
                    }));
                }
            }
        }
        Ok(url)
    }

    /// Parses a URL that must name a target and a LUN (a volume).
    pub fn parse_lun(s: &str) -> Result<IscsiUrl, UrlError> {
        let u = Self::parse(s)?;
        if u.target.is_none() {
            return Err(UrlError::NoTarget);
        }
        if u.lun.is_none() {
            return Err(UrlError::NoLun);
        }
        Ok(u)
    }

    /// True when the URL carries a password (initiator or target side).
    pub fn has_password(&self) -> bool {
        self.password.is_some() || self.target_password.is_some()
    }

    pub fn target_name(&self) -> &str {
        self.target.as_deref().unwrap_or("")
    }
}

/// Arguments a URL may carry after `target_password=`: its value runs to
/// the next of them (or the end), so a password holding `&` is hidden whole.
const URL_ARGS: [&str; 3] = ["&header_digest=", "&target_user=", "&target_password="];

/// `s` with every secret hidden: anything between the first "%" and the
/// last "@" (a password may hold '@', '/', '?'), or after a "%" no "@"
/// follows (a password whose host is missing); the value of every URL
/// argument but header_digest and target_user (a mistyped or wrongly
/// cased `TARGET_PASSWORD=` too). For URLs shown in messages, logs and
/// reports, whether or not they parse; hides too much rather than too
/// little (no URL that parses holds a '%' outside its passwords).
pub fn redact_secrets(s: &str) -> String {
    // A bracketed host right after "iscsi://", in a URL with no '@', holds
    // no password: its '%' is an IPv6 zone ID (refused by the parser, shown
    // as written). With an '@' anywhere, hide as before.
    let host_end = s
        .find("://")
        .filter(|_| !s.contains('@'))
        .map(|i| i + 3)
        .filter(|&i| s[i..].starts_with('['))
        .and_then(|i| s[i..].find(']').map(|j| i + j));
    let first_pct = match host_end {
        Some(e) if s.find('%').is_some_and(|p| p < e) => s[e..].find('%').map(|p| e + p),
        _ => s.find('%'),
    };
    let s = match (first_pct, s.rfind('@')) {
        (Some(p), Some(at)) if p < at => format!("{}%***{}", &s[..p], &s[at..]),
        (Some(p), _) => format!("{}%***", &s[..p]),
        _ => s.to_string(),
    };
    let Some(q) = s.find('?') else { return s };
    let mut out = String::with_capacity(s.len());
    out.push_str(&s[..=q]);
    let mut rest = &s[q + 1..];
    while !rest.is_empty() {
        // One argument: `key=value` up to the next '&' (a password's value
        // up to the next known argument).
        let (key, after) = match rest.split_once('=') {
            Some((k, a)) if !k.contains('&') => (k, Some(a)),
            _ => (rest.split('&').next().unwrap_or(rest), None),
        };
        out.push_str(key);
        let Some(after) = after else {
            rest = &rest[key.len()..];
            if let Some(r) = rest.strip_prefix('&') {
                out.push('&');
                rest = r;
            }
            continue;
        };
        out.push('=');
        let (shown, end) = match key {
            "target_user" | "header_digest" => {
                let end = after.find('&').unwrap_or(after.len());
                let value = &after[..end];
                // A header_digest that is no digest may be the rest of a
                // password holding '&'.
                let plain = key == "target_user" || parse_digest_pref(value).is_some();
                (if plain { value } else { "***" }, end)
            }
            // Any other key may be a mistyped password's (target_pasword=):
            // its value runs to the next known argument.
            _ => ("***", URL_ARGS.iter().filter_map(|k| after.find(k)).min().unwrap_or(after.len())),
        };
        out.push_str(shown);
        rest = &after[end..];
        if let Some(r) = rest.strip_prefix('&') {
            out.push('&');
            rest = r;
        }
    }
    out
}

/// [`redact_secrets`], for messages about a URL that did not parse: an
/// absurdly long argument is shown by its start only.
pub fn redact_unparsed(s: &str) -> String {
    let s = redact_secrets(s);
    // Cut after the redaction: a cut must never separate a password from its '@'.
    match s.char_indices().nth(160) {
        Some((cut, _)) => s[..cut].to_string(),
        None => s,
    }
}

#[cfg(test)]
mod redact_tests {
    #[test]
    fn long_arguments_are_cut() {
        let long = format!("iscsi://{}/x", "h".repeat(100_000));
        assert_eq!(super::redact_unparsed(&long).len(), 160);
        assert_eq!(super::redact_unparsed("iscsi://u%pw@h/x"), "iscsi://u%***@h/x");
        let pw = "p".repeat(500);
        let cut = super::redact_unparsed(&format!("iscsi://u%{pw}@h/x?target_password={pw}"));
        assert!(!cut.contains("pp"), "{cut}");
    }

    /// Finding: a URL from the configuration with a mutual CHAP
    /// `target_password=` was shown whole in backup's log, report and
    /// errors; a password holding '@', '/' or '&' showed its tail.
    #[test]
    fn every_password_is_hidden_whatever_it_holds() {
        use super::redact_secrets as r;
        let h = "iscsi://10.0.0.1/iqn.2024-01.t:a/1";
        assert_eq!(
            r(&format!("{h}?target_user=t&target_password=S3cret")),
            format!("{h}?target_user=t&target_password=***")
        );
        assert_eq!(
            r(&format!("{h}?target_password=S3&cr=et&target_user=t&header_digest=none")),
            format!("{h}?target_password=***&target_user=t&header_digest=none")
        );
        assert_eq!(
            r(&format!("{h}?target_password=A&target_password=B")),
            format!("{h}?target_password=***&target_password=***")
        );
        assert_eq!(r("iscsi://bob%p@ss@10.0.0.1/iqn.2024-01.t:a/1"), "iscsi://bob%***@10.0.0.1/iqn.2024-01.t:a/1");
        // helper-16: an IPv6 zone ID is no password; a '[' user name is not trusted.
        assert_eq!(r("iscsi://[fe80::1%lo]/iqn.2024-01.t:a/1"), "iscsi://[fe80::1%lo]/iqn.2024-01.t:a/1");
        assert_eq!(r("iscsi://[u%pw]@h/iqn.2024-01.t:a/1"), "iscsi://[u%***@h/iqn.2024-01.t:a/1");
        assert_eq!(r("iscsi://bob%pa/ss@10.0.0.1/iqn.2024-01.t:a/1"), "iscsi://bob%***@10.0.0.1/iqn.2024-01.t:a/1");
        assert_eq!(r("iscsi://bob@10.0.0.1/iqn.2024-01.t:a/1"), "iscsi://bob@10.0.0.1/iqn.2024-01.t:a/1");
        assert_eq!(r(h), h);
        assert_eq!(
            r(&format!("{h}?header_digest=none&target_user=t&target_password=x")),
            format!("{h}?header_digest=none&target_user=t&target_password=***")
        );
        // Finding (attack-final): a mistyped or upper-case key, or a '%'
        // with no '@' after it, showed the password whole.
        assert_eq!(r(&format!("{h}?TARGET_PASSWORD=SECRET")), format!("{h}?TARGET_PASSWORD=***"));
        assert_eq!(r(&format!("{h}?target_pasword=SE&CRET")), format!("{h}?target_pasword=***"));
        assert_eq!(r(&format!("{h}?foo=SECRET&header_digest=none")), format!("{h}?foo=***&header_digest=none"));
        assert_eq!(r(&format!("{h}?foo&bar")), format!("{h}?foo&bar"));
        assert_eq!(
            r(&format!("{h}?target_password=a&header_digest=SECRET")),
            format!("{h}?target_password=***&header_digest=***")
        );
        assert_eq!(r(&format!("{h}?foo=1&bar=2&target_user=t")), format!("{h}?foo=***&target_user=t"));
        assert_eq!(r("iscsi://bob%SECRET:3260/iqn.2024-01.t:a/1"), "iscsi://bob%***");
        assert_eq!(
            r("iscsi://bob@h/iqn.2024-01.t:a/1?target_password=a%SECRET"),
            "iscsi://bob@h/iqn.2024-01.t:a/1?target_password=***"
        );
        for secret in ["p@ssSECRET", "pa/ssSECRET", "pa?ssSECRET", "pa&ssSECRET", "pa%ssSECRET"] {
            for u in [
                format!("iscsi://bob%{secret}@10.0.0.1/iqn.2024-01.t:a/1"),
                format!("{h}?target_user=t&target_password={secret}"),
                format!("{h}?target_password={secret}&header_digest=none"),
            ] {
                assert!(!r(&u).contains("SECRET"), "{u} -> {}", r(&u));
            }
        }
    }
}

impl std::fmt::Display for IscsiUrl {
    /// The URL with every password shown as `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "iscsi://")?;
        if let Some(u) = &self.user {
            write!(f, "{u}")?;
            if self.password.is_some() {
                write!(f, "%***")?;
            }
            write!(f, "@")?;
        }
        write!(f, "{}", self.portal)?;
        if let Some(t) = &self.target {
            write!(f, "/{t}")?;
            if let Some(l) = self.lun {
                write!(f, "/{l}")?;
            }
        }
        let mut args = Vec::new();
        if let Some(d) = self.header_digest {
            args.push(format!("header_digest={}", d.url_value()));
        }
        if let Some(u) = &self.target_user {
            args.push(format!("target_user={u}"));
        }
        if self.target_password.is_some() {
            args.push("target_password=***".to_string());
        }
        if !args.is_empty() {
            write!(f, "?{}", args.join("&"))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_libiscsi_accepts() {
        let u = IscsiUrl::parse_lun("iscsi://10.0.0.1/iqn.2024-01.test:vol1/1").unwrap();
        assert_eq!(u.portal, Portal { host: "10.0.0.1".into(), port: 3260 });
        assert_eq!((u.target_name(), u.lun, u.user.as_deref()), ("iqn.2024-01.test:vol1", Some(1), None));
        let u = IscsiUrl::parse("ISCSI://[fe80::1]:13260/iqn.2024-01.test:a/0").unwrap();
        assert_eq!(u.portal, Portal { host: "fe80::1".into(), port: 13260 });
        assert_eq!(u.portal.to_string(), "[fe80::1]:13260");
        let u = IscsiUrl::parse("iscsi://alice%s3cr%t@x@san-1.example.com:3261/iqn.2024-01.test:a/255").unwrap();
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.password.as_ref().unwrap().as_bytes(), b"s3cr%t@x");
        assert_eq!(u.portal.host, "san-1.example.com");
        assert_eq!(u.to_string(), "iscsi://alice%***@san-1.example.com:3261/iqn.2024-01.test:a/255");
        let p = IscsiUrl::parse("iscsi://127.0.0.1:13260").unwrap();
        assert_eq!((p.target, p.lun), (None, None));
        assert_eq!(IscsiUrl::parse("iscsi://127.0.0.1/").unwrap().target, None);
        let t = IscsiUrl::parse("iscsi://h/iqn.2024-01.test:a").unwrap();
        assert_eq!((t.target.as_deref(), t.lun), (Some("iqn.2024-01.test:a"), None));
        let q = IscsiUrl::parse(
            "iscsi://u@h/iqn.2024-01.test:a/3?header_digest=crc32c-none&target_user=tgt&target_password=pw",
        )
        .unwrap();
        assert_eq!(q.header_digest, Some(DigestPref::PreferCrc32c));
        assert_eq!(q.target_user.as_deref(), Some("tgt"));
        assert!(q.has_password());
        assert_eq!(
            q.to_string(),
            "iscsi://u@h:3260/iqn.2024-01.test:a/3?header_digest=crc32c-none&target_user=tgt&target_password=***"
        );
    }

    #[test]
    fn refusals_name_the_part() {
        let cases: &[(&str, UrlError)] = &[
            ("/dev/sda", UrlError::Scheme),
            ("iscsi://", UrlError::NoHost),
            ("iscsi:///iqn.2024-01.test:a/1", UrlError::NoHost),
            ("iscsi://h:0/iqn.2024-01.test:a/1", UrlError::BadPort("0".into())),
            ("iscsi://h:99999/iqn.2024-01.test:a/1", UrlError::BadPort("99999".into())),
            ("iscsi://h:+5/iqn.2024-01.test:a/1", UrlError::BadPort("+5".into())),
            ("iscsi://h/notaname/1", UrlError::BadTarget("notaname".into())),
            ("iscsi://h/iqn.2024-01.test:a/16384", UrlError::BadLun("16384".into())),
            ("iscsi://h/iqn.2024-01.test:a/-1", UrlError::BadLun("-1".into())),
            ("iscsi://h/iqn.2024-01.test:a/1/x", UrlError::ExtraPath("x".into())),
            ("iscsi://h/iqn.2024-01.test:a/1?foo=1", UrlError::UnknownArg("foo".into())),
            (
                "iscsi://h/iqn.2024-01.test:a/1?target_password%3DLEAK",
                UrlError::UnknownArg("target_password***".into()),
            ),
            ("iscsi://[fe80::1%lo]/iqn.2024-01.test:a/1", UrlError::ZoneId("fe80::1%lo".into())),
            ("iscsi://h/iqn.2024-01.test:a/1?header_digest=md5", UrlError::BadDigest("md5".into())),
            ("iscsi://fe80::1/iqn.2024-01.test:a/1", UrlError::UnbracketedIpv6("fe80::1".into())),
            ("iscsi://[nonsense]/iqn.2024-01.test:a/1", UrlError::BadHost("nonsense".into())),
            (&*format!("iscsi://{}/iqn.2024-01.test:a/1", "h".repeat(3000)), UrlError::TooLong(3029)),
            ("iscsi://bad host/iqn.2024-01.test:a/1", UrlError::BadHost("bad host".into())),
            ("iscsi://h;rm -rf/iqn.2024-01.test:a/1", UrlError::BadHost("h;rm -rf".into())),
        ];
        for (s, e) in cases {
            assert_eq!(IscsiUrl::parse(s).as_ref().err(), Some(e), "{s}");
        }
        assert_eq!(IscsiUrl::parse_lun("iscsi://h").unwrap_err(), UrlError::NoTarget);
        assert_eq!(IscsiUrl::parse_lun("iscsi://h/iqn.2024-01.test:a").unwrap_err(), UrlError::NoLun);
        // A refused password never appears in the message.
        let e = IscsiUrl::parse("iscsi://a b%topsecret@h/iqn.2024-01.test:a/1").unwrap_err().to_string();
        assert!(!e.contains("topsecret"), "{e}");
        // Nor any part of one holding '/' or '?' (it was "invalid host \"bob%top\"").
        for u in ["iscsi://bob%top/secret@h/iqn.2024-01.test:a/1", "iscsi://bob%top?secret@h/iqn.2024-01.test:a/1"] {
            let e = IscsiUrl::parse(u).unwrap_err();
            assert_eq!(e, UrlError::CutPassword, "{u}");
            assert!(!e.to_string().contains("top"), "{e}");
        }
        // Nor the tail of a target_password holding '&'.
        let e = IscsiUrl::parse("iscsi://h/iqn.2024-01.test:a/1?target_password=top&secret").unwrap_err();
        assert_eq!(e, UrlError::CutTargetPassword);
        assert!(!e.to_string().contains("secret"), "{e}");
        // Nor a tail that looks like a bad header_digest (it was "invalid header_digest \"secret\"").
        let e = IscsiUrl::parse("iscsi://h/iqn.2024-01.test:a/1?target_password=top&header_digest=secret").unwrap_err();
        assert_eq!(e, UrlError::CutTargetPassword);
        let e = IscsiUrl::parse("iscsi://h/iqn.2024-01.test:a/1?target_password=x&header_digest=none&foo").unwrap_err();
        assert_eq!(e, UrlError::UnknownArg("foo".into()));
    }
}
