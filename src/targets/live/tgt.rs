//! tgtd's live state. tgtadm has no machine-readable output, so its text is
//! parsed strictly (known keys in known order, indentation checked, anything
//! else an error naming the line): a tgt version that prints differently
//! fails loudly instead of being misread. Fixtures per tgt version are in
//! tests/fixtures/tgt/<version>/.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;

use crate::shared::command::{Command, CommandError, Output};

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connection {
    pub cid: u64,
    pub address: String,
}

/// An I_T nexus: one session of one initiator.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Nexus {
    pub sid: u64,
    pub initiator: String,
    pub alias: Option<String>,
    pub connections: Vec<Connection>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveLun {
    pub lun: u64,
    /// `controller`, `disk`, ...
    pub kind: String,
    pub scsi_id: String,
    pub scsi_sn: String,
    /// tgt prints sizes in (decimal, rounded) megabytes.
    pub size_mb: u64,
    pub block_size: u64,
    pub online: bool,
    pub readonly: bool,
    pub backing_type: String,
    /// None for the controller (`None` in tgt's output).
    pub backing_path: Option<String>,
    pub backing_flags: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveTarget {
    pub tid: u32,
    pub iqn: String,
    pub driver: String,
    /// `ready` or `offline`.
    pub state: String,
    pub nexuses: Vec<Nexus>,
    pub luns: Vec<LiveLun>,
    pub incoming_users: Vec<String>,
    pub outgoing_users: Vec<String>,
    /// Address ACLs (`ALL`, `10.0.0.0/8`, `0.0.0.0/32`).
    pub acl_addresses: Vec<String>,
    /// Initiator-name ACLs.
    pub acl_names: Vec<String>,
}

impl LiveTarget {
    /// (initiator, address) of every connection.
    pub fn sessions(&self) -> Vec<(String, String)> {
        self.nexuses
            .iter()
            .flat_map(|n| n.connections.iter().map(move |c| (n.initiator.clone(), c.address.clone())))
            .collect()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("tgtadm output line {line}: {problem}: {text:?}")]
pub struct ParseError {
    pub line: usize,
    pub text: String,
    pub problem: String,
}

struct Lines<'a> {
    lines: Vec<&'a str>,
    i: usize,
}

impl<'a> Lines<'a> {
    fn peek(&self) -> Option<(usize, &'a str)> {
        self.lines.get(self.i).map(|l| (indent(l), *l))
    }
    fn err(&self, problem: impl Into<String>) -> ParseError {
        let n = self.i.min(self.lines.len().saturating_sub(1));
        ParseError { line: n + 1, text: self.lines.get(n).unwrap_or(&"").to_string(), problem: problem.into() }
    }
    /// An error about the line just consumed.
    fn err_prev(&self, problem: impl Into<String>) -> ParseError {
        let n = self.i.saturating_sub(1);
        ParseError { line: n + 1, text: self.lines.get(n).unwrap_or(&"").to_string(), problem: problem.into() }
    }
    /// The next line, which must be at `depth` (4 spaces per level) and
    /// start with `key`; returns the rest.
    fn expect(&mut self, depth: usize, key: &str) -> Result<&'a str, ParseError> {
        match self.peek() {
            Some((d, l)) if d == depth * 4 && l[d..].starts_with(key) => {
                self.i += 1;
                Ok(&l[d + key.len()..])
            }
            Some(_) => Err(self.err(format!("expected {key:?} at indentation {}", depth * 4))),
            None => Err(self.err(format!("output ends where {key:?} was expected"))),
        }
    }
    fn num<T: std::str::FromStr>(&mut self, depth: usize, key: &str, what: &str) -> Result<T, ParseError> {
        let v = self.expect(depth, key)?;
        v.trim().parse().map_err(|_| {
            self.i -= 1;
            self.err(format!("{what} {v:?} is not a number"))
        })
    }
    fn yes(&mut self, depth: usize, key: &str) -> Result<bool, ParseError> {
        let v = self.expect(depth, key)?;
        match v {
            "Yes" => Ok(true),
            "No" => Ok(false),
            other => {
                self.i -= 1;
                Err(self.err(format!("expected Yes or No, got {other:?}")))
            }
        }
    }
    /// Whether the next line is at `depth` and starts with `key`.
    fn at(&self, depth: usize, key: &str) -> bool {
        matches!(self.peek(), Some((d, l)) if d == depth * 4 && l[d..].starts_with(key))
    }
    /// The next line's text at exactly `depth`, if it is at that depth.
    fn item(&mut self, depth: usize) -> Option<&'a str> {
        match self.peek() {
            Some((d, l)) if d == depth * 4 => {
                self.i += 1;
                Some(&l[d..])
            }
            _ => None,
        }
    }
}

fn indent(l: &str) -> usize {
    l.len() - l.trim_start_matches(' ').len()
}

fn number<T: std::str::FromStr>(lines: &Lines, s: &str, what: &str) -> Result<T, ParseError> {
    s.trim().parse().map_err(|_| lines.err_prev(format!("{what} {s:?} is not a number")))
}

/// Parses `tgtadm --op show --mode target`.
pub fn parse_show_targets(text: &str) -> Result<Vec<LiveTarget>, ParseError> {
    let mut lines = Lines { lines: text.lines().collect(), i: 0 };
    if let Some(n) = lines.lines.iter().position(|l| l.contains('\t') || l.ends_with('\r')) {
        lines.i = n;
        return Err(lines.err("tab or carriage return"));
    }
    let mut targets = Vec::new();
    while lines.peek().is_some() {
        let head = lines.expect(0, "Target ")?;
        let (tid, iqn) = head.split_once(": ").ok_or_else(|| lines.err_prev("expected \"Target N: IQN\""))?;
        let tid: u32 = number(&lines, tid, "tid")?;
        lines.expect(1, "System information:")?;
        let driver = lines.expect(2, "Driver: ")?.to_string();
        let state = lines.expect(2, "State: ")?.to_string();
        if !matches!(state.as_str(), "ready" | "offline") {
            return Err(lines.err_prev(format!("unknown target state {state:?}")));
        }
        lines.expect(1, "I_T nexus information:")?;
        let mut nexuses = Vec::new();
        while lines.at(2, "I_T nexus: ") {
            let sid = lines.num(2, "I_T nexus: ", "I_T nexus")?;
            let ini = lines.expect(3, "Initiator: ")?;
            let (initiator, alias) = ini
                .split_once(" alias: ")
                .ok_or_else(|| lines.err_prev("expected \"Initiator: NAME alias: ALIAS\""))?;
            let mut connections = Vec::new();
            while lines.at(3, "Connection: ") {
                let cid = lines.num(3, "Connection: ", "connection")?;
                let address = lines.expect(4, "IP Address: ")?.to_string();
                connections.push(Connection { cid, address });
            }
            nexuses.push(Nexus {
                sid,
                initiator: initiator.to_string(),
                alias: (alias != "none").then(|| alias.to_string()),
                connections,
            });
        }
        lines.expect(1, "LUN information:")?;
        let mut luns = Vec::new();
        while lines.at(2, "LUN: ") {
            let lun = lines.num(2, "LUN: ", "LUN")?;
            let kind = lines.expect(3, "Type: ")?.to_string();
            let scsi_id = lines.expect(3, "SCSI ID: ")?.to_string();
            let scsi_sn = lines.expect(3, "SCSI SN: ")?.to_string();
            let size = lines.expect(3, "Size: ")?;
            let (mb, bs) = size
                .split_once(" MB, Block size: ")
                .ok_or_else(|| lines.err_prev("expected \"Size: N MB, Block size: N\""))?;
            let size_mb = number(&lines, mb, "size")?;
            let block_size = number(&lines, bs, "block size")?;
            let online = lines.yes(3, "Online: ")?;
            lines.yes(3, "Removable media: ")?;
            lines.yes(3, "Prevent removal: ")?;
            let readonly = lines.yes(3, "Readonly: ")?;
            lines.yes(3, "SWP: ")?;
            lines.yes(3, "Thin-provisioning: ")?;
            let backing_type = lines.expect(3, "Backing store type: ")?.to_string();
            let path = lines.expect(3, "Backing store path: ")?;
            let backing_flags = lines.expect(3, "Backing store flags:")?.trim().to_string();
            luns.push(LiveLun {
                lun,
                kind,
                scsi_id,
                scsi_sn,
                size_mb,
                block_size,
                online,
                readonly,
                backing_type,
                backing_path: (path != "None").then(|| path.to_string()),
                backing_flags,
            });
        }
        lines.expect(1, "Account information:")?;
        let (mut incoming_users, mut outgoing_users) = (Vec::new(), Vec::new());
        while let Some(a) = lines.item(2) {
            match a.strip_suffix(" (outgoing)") {
                Some(u) => outgoing_users.push(u.to_string()),
                None => incoming_users.push(a.to_string()),
            }
        }
        lines.expect(1, "ACL information:")?;
        let (mut acl_addresses, mut acl_names) = (Vec::new(), Vec::new());
        while let Some(a) = lines.item(2) {
            if crate::iscsi::name::is_valid_name(a) {
                acl_names.push(a.to_string());
            } else if a == "ALL" || is_address_acl(a) {
                acl_addresses.push(a.to_string());
            } else {
                lines.i -= 1;
                return Err(lines.err("ACL entry is neither an iSCSI name nor an address"));
            }
        }
        if let Some((d, _)) = lines.peek() {
            if d != 0 {
                return Err(lines.err("unexpected line (unknown key or indentation)"));
            }
        }
        targets.push(LiveTarget {
            tid,
            iqn: iqn.to_string(),
            driver,
            state,
            nexuses,
            luns,
            incoming_users,
            outgoing_users,
            acl_addresses,
            acl_names,
        });
    }
    Ok(targets)
}

fn is_address_acl(a: &str) -> bool {
    let (addr, len) = match a.split_once('/') {
        Some((ad, l)) => (ad, Some(l)),
        None => (a, None),
    };
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    addr.parse::<std::net::IpAddr>().is_ok() && len.map_or(true, |l| l.parse::<u8>().is_ok_and(|n| n <= 128))
}

/// Parses `tgtadm --op show --mode target --tid N` (the target's iSCSI
/// parameters, `key=value` per line).
pub fn parse_show_params(text: &str) -> Result<Vec<(String, String)>, ParseError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        let (k, v) = l.split_once('=').ok_or_else(|| ParseError {
            line: i + 1,
            text: l.into(),
            problem: "expected key=value".into(),
        })?;
        if k.is_empty() || !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || v.contains(char::is_whitespace)
        {
            return Err(ParseError { line: i + 1, text: l.into(), problem: "malformed parameter".into() });
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// Parses `tgtadm --op show --mode account`.
pub fn parse_show_accounts(text: &str) -> Result<Vec<String>, ParseError> {
    let mut lines = Lines { lines: text.lines().collect(), i: 0 };
    if lines.lines.is_empty() {
        // tgtd prints nothing at all when there is no account.
        return Ok(Vec::new());
    }
    lines.expect(0, "Account list:")?;
    let mut out = Vec::new();
    while let Some(a) = lines.item(1) {
        out.push(a.to_string());
    }
    if lines.peek().is_some() {
        return Err(lines.err("unexpected line"));
    }
    Ok(out)
}

/// Everything `targets apply` and the state tools read from one tgtd.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LiveState {
    pub targets: Vec<LiveTarget>,
    /// Per tid: the target's parameters.
    pub params: Vec<(u32, Vec<(String, String)>)>,
    pub accounts: Vec<String>,
}

impl LiveState {
    pub fn target(&self, iqn: &str) -> Option<&LiveTarget> {
        self.targets.iter().find(|t| t.iqn.eq_ignore_ascii_case(iqn))
    }
    pub fn params_of(&self, tid: u32) -> &[(String, String)] {
        self.params.iter().find(|(t, _)| *t == tid).map(|(_, p)| p.as_slice()).unwrap_or(&[])
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TgtError {
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error("{argv}: {source}")]
    Parse { argv: String, source: ParseError },
}

/// The tgtadm client: program and control port, through the one runner.
#[derive(Clone, Debug)]
pub struct Tgtadm {
    pub program: PathBuf,
    pub control_port: Option<u16>,
    pub timeout: Duration,
}

impl Default for Tgtadm {
    fn default() -> Self {
        Tgtadm { program: PathBuf::from("tgtadm"), control_port: None, timeout: Duration::from_secs(60) }
    }
}

impl Tgtadm {
    /// The full argument vector for `args` (from [`crate::targets::tgtadm`]).
    pub fn full_argv(&self, args: &[String]) -> Vec<String> {
        let mut v = vec![self.program.to_string_lossy().into_owned()];
        if let Some(p) = self.control_port {
            v.extend(["-C".to_string(), p.to_string()]);
        }
        v.extend(["--lld".to_string(), "iscsi".to_string()]);
        v.extend(args.iter().cloned());
        v
    }

    pub fn run(&self, args: &[String]) -> Result<Output, CommandError> {
        let argv = self.full_argv(args);
        Command::new(&argv[0]).args(&argv[1..]).env("LC_ALL", "C").timeout(self.timeout).run()
    }

    fn show(&self, args: &[&str]) -> Result<(String, String), TgtError> {
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let out = self.run(&args)?;
        Ok((out.stdout_str()?.to_string(), self.full_argv(&args).join(" ")))
    }

    pub fn show_targets(&self) -> Result<Vec<LiveTarget>, TgtError> {
        let (text, argv) = self.show(&["--op", "show", "--mode", "target"])?;
        parse_show_targets(&text).map_err(|source| TgtError::Parse { argv, source })
    }

    pub fn show_params(&self, tid: u32) -> Result<Vec<(String, String)>, TgtError> {
        let (text, argv) = self.show(&["--op", "show", "--mode", "target", "--tid", &tid.to_string()])?;
        parse_show_params(&text).map_err(|source| TgtError::Parse { argv, source })
    }

    pub fn show_accounts(&self) -> Result<Vec<String>, TgtError> {
        let (text, argv) = self.show(&["--op", "show", "--mode", "account"])?;
        parse_show_accounts(&text).map_err(|source| TgtError::Parse { argv, source })
    }

    /// Reads targets, each target's parameters, and accounts.
    pub fn read_state(&self) -> Result<LiveState, TgtError> {
        let targets = self.show_targets()?;
        let mut params = Vec::new();
        for t in &targets {
            params.push((t.tid, self.show_params(t.tid)?));
        }
        Ok(LiveState { targets, params, accounts: self.show_accounts()? })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHOW: &str = include_str!("../../../tests/fixtures/tgt/1.0.85/show-target.txt");
    const PARAMS: &str = include_str!("../../../tests/fixtures/tgt/1.0.85/show-target-tid.txt");
    const ACCOUNTS: &str = include_str!("../../../tests/fixtures/tgt/1.0.85/show-account.txt");

    #[test]
    fn captured_show_target_parses() {
        let t = parse_show_targets(SHOW).unwrap();
        assert_eq!(t.len(), 2);
        let a = &t[0];
        assert_eq!((a.tid, a.state.as_str()), (1, "ready"));
        assert_eq!(a.nexuses.len(), 1);
        assert_eq!(a.nexuses[0].initiator, "iqn.1994-05.com.redhat:a");
        assert_eq!(a.nexuses[0].connections[0].address, "127.0.0.1");
        assert_eq!(a.luns.len(), 3);
        assert_eq!(a.luns[0].kind, "controller");
        assert_eq!(a.luns[0].backing_path, None);
        assert_eq!(a.luns[1].scsi_id, "AMHDSK-1");
        assert_eq!(a.luns[1].size_mb, 17);
        assert_eq!(a.luns[1].backing_flags, "direct");
        assert_eq!(a.incoming_users, ["u1"]);
        assert_eq!(a.outgoing_users, ["o1"]);
        assert_eq!(a.acl_addresses, ["0.0.0.0/32"]);
        assert_eq!(a.acl_names, ["iqn.1994-05.com.redhat:a", "iqn.1994-05.com.redhat:b"]);
        assert_eq!(t[1].state, "offline");
        assert!(t[1].nexuses.is_empty() && t[1].acl_names.is_empty());
    }

    #[test]
    fn params_and_accounts_parse() {
        let p = parse_show_params(PARAMS).unwrap();
        assert!(p.contains(&("ImmediateData".to_string(), "No".to_string())));
        assert_eq!(parse_show_accounts(ACCOUNTS).unwrap(), ["o1", "u1"]);
        assert_eq!(parse_show_targets("").unwrap(), []);
    }

    #[test]
    fn anything_unknown_is_an_error() {
        for (from, to, line_has) in [
            ("        State: ready\n", "        State: ready\n        Frobs: 3\n", "Frobs"),
            ("            Type: disk\n", "           Type: disk\n", "Type"),
            ("            Online: Yes\n", "            Online: Maybe\n", "Maybe"),
            ("Target 2:", "Target two:", "Target two"),
            ("    ACL information:\n        0.0.0.0/32\n", "    ACL information:\n        some junk\n", "junk"),
            ("            Size: 17 MB, Block size: 512\n", "            Size: 17 GB\n", "17 GB"),
            ("        State: offline\n", "        State: running\n", "running"),
        ] {
            assert!(SHOW.contains(from), "{from}");
            let e = parse_show_targets(&SHOW.replacen(from, to, 1)).unwrap_err();
            assert!(e.text.contains(line_has), "{from:?}: {e}");
        }
        assert!(parse_show_params("a b\n").is_err());
        assert!(parse_show_accounts("Accounts:\n").is_err());
    }
}
