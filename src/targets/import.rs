//! `targets import`: the seed's targets.conf (a bash file of functions
//! `conf_global`, `conf_target_options`, `conf_targets` calling `option K V`,
//! `target STATE DEV TYPE SERIAL PG INITIATORS`, `user in|out NAME SECRET`,
//! with variables) to the TOML inventory, WITHOUT executing it. Only that
//! subset of bash is read: a loop, command substitution, pipe or anything
//! else is an error naming line and column. Callback functions
//! (`conf_target_callback_pre`, `conf_target_callback`, ...) are skipped and
//! reported. The same reader takes ietd_config.sh (IET_TARGET_PREFIX,
//! IET_TARGET_HOSTS, IET_VGS, IPTABLES_PORT) and ifcfg files.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::net::IpAddr;

/// Where in the input something is (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file}:{}:{}: {message}", pos.line, pos.col)]
pub struct ImportError {
    pub file: String,
    pub pos: Pos,
    pub message: String,
}

/// One word after quote removal, and whether it was exactly one variable
/// expansion (`"$ig_x"` / `$ig_x` / `"${ig_x}"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Word {
    pub text: String,
    pub pos: Pos,
    /// The variable, when the word was a lone expansion.
    pub var: Option<String>,
    /// Any part was quoted (a quoted empty string is still a word).
    quoted: bool,
}

/// A simple command: words on one logical line.
#[derive(Clone, Debug)]
pub struct Line {
    pub words: Vec<Word>,
    pub pos: Pos,
}

/// Reads the bash subset: returns logical lines of words; variables are
/// expanded from `vars` as assignments are met, in order.
pub struct Reader<'a> {
    file: String,
    chars: Vec<char>,
    i: usize,
    line: usize,
    col: usize,
    pub vars: &'a mut BTreeMap<String, String>,
    /// Bytes produced by expansions so far (see [`MAX_EXPANDED_BYTES`]).
    expanded: usize,
}

/// Bound on the bytes all `$NAME` expansions of one file may produce. Each
/// `a=$a$a` line doubles a variable, so forty such lines (under 1 KiB of
/// input) would ask for a terabyte; real files expand a few KiB.
pub const MAX_EXPANDED_BYTES: usize = 16 << 20;

fn is_ident(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_')
}

impl<'a> Reader<'a> {
    pub fn new(file: &str, text: &str, vars: &'a mut BTreeMap<String, String>) -> Self {
        Reader { file: file.to_string(), chars: text.chars().collect(), i: 0, line: 1, col: 1, vars, expanded: 0 }
    }

    fn pos(&self) -> Pos {
        Pos { line: self.line, col: self.col }
    }

    pub fn error(&self, pos: Pos, message: impl Into<String>) -> ImportError {
        ImportError { file: self.file.clone(), pos, message: message.into() }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.i).copied()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.chars.get(self.i).copied()?;
        self.i += 1;
        if c == '\n' {
            self.line += 1;
            self.col = 1;
        } else {
            self.col += 1;
        }
        Some(c)
    }

    fn expand(&mut self, out: &mut String, start: Pos) -> Result<String, ImportError> {
        // After '$'.
        let braced = self.peek() == Some('{');
        if braced {
            self.bump();
        }
        let mut name = String::new();
        while let Some(c) = self.peek() {
            if c.is_ascii_alphanumeric() || c == '_' {
                name.push(c);
                self.bump();
            } else {
                break;
            }
        }
        if braced && self.bump() != Some('}') {
            return Err(self.error(start, "only ${NAME} expansions can be read (no ${NAME:-...} or other forms)"));
        }
        if name.is_empty() || !is_ident(&name) {
            let what = match self.peek() {
                Some('(') => "command substitution $(...)",
                _ => "this $ expansion",
            };
            return Err(self.error(start, format!("cannot read {what}: targets.conf is read, never executed")));
        }
        match self.vars.get(&name) {
            Some(v) => {
                self.expanded = self.expanded.saturating_add(v.len());
                if self.expanded > MAX_EXPANDED_BYTES {
                    return Err(self.error(
                        start,
                        format!(
                            "expanding ${name} ({} bytes) takes the file's expansions past {} MiB: not a targets.conf this tool reads",
                            v.len(),
                            MAX_EXPANDED_BYTES >> 20
                        ),
                    ));
                }
                out.push_str(v)
            }
            None => return Err(self.error(start, format!("variable ${name} is not set before this line"))),
        }
        Ok(name)
    }

    /// Reads the next logical line (None at end of input).
    pub fn next_line(&mut self) -> Result<Option<Line>, ImportError> {
        loop {
            let mut words: Vec<Word> = Vec::new();
            loop {
                // Skip blanks and line continuations.
                while let Some(c) = self.peek() {
                    if c == ' ' || c == '\t' {
                        self.bump();
                    } else if c == '\\' && self.chars.get(self.i + 1) == Some(&'\n') {
                        self.bump();
                        self.bump();
                    } else {
                        break;
                    }
                }
                match self.peek() {
                    None => {
                        if words.is_empty() {
                            return Ok(None);
                        }
                        break;
                    }
                    Some('\n') => {
                        self.bump();
                        break;
                    }
                    Some('#') => {
                        while let Some(c) = self.peek() {
                            if c == '\n' {
                                break;
                            }
                            self.bump();
                        }
                        continue;
                    }
                    _ => {}
                }
                words.push(self.word()?);
            }
            if !words.is_empty() {
                return Ok(Some(Line { pos: words[0].pos, words }));
            }
        }
    }

    fn word(&mut self) -> Result<Word, ImportError> {
        let start = self.pos();
        let mut text = String::new();
        let mut parts = 0usize;
        let mut var = None;
        let mut quoted = false;
        while let Some(c) = self.peek() {
            let here = self.pos();
            match c {
                ' ' | '\t' | '\n' => break,
                '\'' => {
                    self.bump();
                    quoted = true;
                    parts += 1;
                    loop {
                        match self.bump() {
                            Some('\'') => break,
                            Some(ch) => text.push(ch),
                            None => return Err(self.error(here, "unterminated single quote")),
                        }
                    }
                }
                '"' => {
                    self.bump();
                    quoted = true;
                    loop {
                        let p = self.pos();
                        match self.bump() {
                            Some('"') => break,
                            Some('$') => {
                                parts += 1;
                                var = Some(self.expand(&mut text, p)?);
                            }
                            Some('`') => return Err(self.error(p, "cannot read command substitution `...`")),
                            Some('\\') => match self.bump() {
                                Some(ch @ ('"' | '\\' | '$' | '`')) => {
                                    parts += 1;
                                    text.push(ch)
                                }
                                Some('\n') => {}
                                Some(ch) => {
                                    parts += 1;
                                    text.push('\\');
                                    text.push(ch);
                                }
                                None => return Err(self.error(p, "unterminated double quote")),
                            },
                            Some(ch) => {
                                parts += 1;
                                text.push(ch)
                            }
                            None => return Err(self.error(here, "unterminated double quote")),
                        }
                    }
                }
                '$' => {
                    self.bump();
                    parts += 1;
                    var = Some(self.expand(&mut text, here)?);
                }
                '\\' => {
                    self.bump();
                    parts += 1;
                    match self.bump() {
                        Some('\n') | None => {}
                        Some(ch) => text.push(ch),
                    }
                }
                '`' => return Err(self.error(here, "cannot read command substitution `...`")),
                '|' => return Err(self.error(here, "cannot read a pipe or || (targets.conf is read, never executed)")),
                '&' => return Err(self.error(here, "cannot read & or && (targets.conf is read, never executed)")),
                ';' => return Err(self.error(here, "cannot read ';' (one command per line)")),
                '<' | '>' => return Err(self.error(here, "cannot read a redirection")),
                '(' if is_ident(&text) && self.chars.get(self.i + 1) == Some(&')') => {
                    // `name()` function header: keep "()" in the word.
                    self.bump();
                    self.bump();
                    text.push_str("()");
                    parts += 1;
                }
                '(' | ')' => {
                    return Err(self.error(here, format!("cannot read '{c}' (subshells and arrays are not supported)")))
                }
                '*' | '?' | '[' if !quoted => {
                    return Err(self.error(here, format!("cannot read the glob character '{c}' unquoted")))
                }
                ch => {
                    self.bump();
                    parts += 1;
                    text.push(ch);
                }
            }
        }
        // A lone expansion is one part that came from a variable.
        let var = if parts == 1 { var } else { None };
        Ok(Word { text, pos: start, var, quoted })
    }
}

/// A variable assignment word `NAME=value` (value already expanded).
fn assignment(w: &Word) -> Option<(String, String)> {
    let eq = w.text.find('=')?;
    let name = &w.text[..eq];
    if !is_ident(name) || w.var.is_some() {
        return None;
    }
    Some((name.to_string(), w.text[eq + 1..].to_string()))
}

/// What an import found, ready to print as TOML.
#[derive(Debug, Default)]
pub struct Imported {
    pub global_options: Vec<(String, String)>,
    pub target_options: Vec<(String, String)>,
    pub initiator_groups: BTreeMap<String, Vec<String>>,
    pub targets: Vec<ImportedTarget>,
    /// Callbacks skipped, with their line.
    pub skipped: Vec<(String, usize)>,
    pub settings: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
pub struct ImportedTarget {
    pub line: usize,
    pub state: String,
    pub device: String,
    pub io: String,
    pub serial: String,
    pub portal_group: String,
    pub initiators: Vec<String>,
    pub incoming_users: Vec<(String, String)>,
    pub outgoing_user: Option<(String, String)>,
}

const KNOWN_FUNCTIONS: &[&str] = &["conf_global", "conf_target_options", "conf_targets"];

/// Parses the function header forms `function NAME {`, `function NAME() {`,
/// `NAME() {`. Returns the name.
fn function_header(l: &Line) -> Option<(String, bool)> {
    let w: Vec<&str> = l.words.iter().map(|w| w.text.as_str()).collect();
    let (name, brace) = match w.as_slice() {
        ["function", name, "{"] | ["function", name, "()", "{"] => (name.trim_end_matches("()"), true),
        ["function", name] | ["function", name, "()"] => (name.trim_end_matches("()"), false),
        [name, "{"] if name.ends_with("()") => (name.trim_end_matches("()"), true),
        [name] if name.ends_with("()") => (name.trim_end_matches("()"), false),
        [name, "()", "{"] => (*name, true),
        [name, "()"] => (*name, false),
        _ => return None,
    };
    is_ident(name).then(|| (name.to_string(), brace))
}

/// After a header without `{`, the next line must be `{`.
fn open_brace(r: &mut Reader, at: Pos) -> Result<(), ImportError> {
    match r.next_line()? {
        Some(l) if l.words.len() == 1 && l.words[0].text == "{" => Ok(()),
        Some(l) => Err(r.error(l.pos, "expected `{` opening the function body")),
        None => Err(r.error(at, "function without a body")),
    }
}

/// Skips a function body we do not read, counting `{`/`}` words.
fn skip_body(text: &str, from_line: usize) -> Option<usize> {
    let mut depth = 1i32;
    for (n, l) in text.lines().enumerate().skip(from_line) {
        let code = l.split(" #").next().unwrap_or("");
        if code.trim_start().starts_with('#') {
            continue;
        }
        for w in code.split_whitespace() {
            if w == "{" || w.ends_with("(){") {
                depth += 1;
            } else if w == "}" || w == "};" {
                depth -= 1;
                if depth == 0 {
                    return Some(n + 1);
                }
            }
        }
    }
    None
}

/// Reads targets.conf.
pub fn import_targets_conf(
    file: &str,
    text: &str,
    vars: &mut BTreeMap<String, String>,
) -> Result<Imported, ImportError> {
    let mut out = Imported::default();
    let mut r = Reader::new(file, text, vars);
    let mut in_fn: Option<String> = None;
    while let Some(l) = r.next_line()? {
        let first = l.words[0].text.as_str();
        if in_fn.is_none() {
            if let Some((name, brace)) = function_header(&l) {
                let mut body_line = l.pos.line;
                if !brace {
                    open_brace(&mut r, l.pos)?;
                    body_line = r.line - 1;
                }
                if KNOWN_FUNCTIONS.contains(&name.as_str()) {
                    in_fn = Some(name);
                } else {
                    out.skipped.push((name.clone(), l.pos.line));
                    // Resume reading after the body's closing brace.
                    let end = skip_body(text, body_line)
                        .ok_or_else(|| r.error(l.pos, format!("function {name} is never closed")))?;
                    while r.line <= end && r.peek().is_some() {
                        r.bump();
                    }
                }
                continue;
            }
        }
        if first == "}" && l.words.len() == 1 {
            if in_fn.take().is_none() {
                return Err(r.error(l.pos, "'}' without an open function"));
            }
            continue;
        }
        if l.words.iter().all(|w| assignment(w).is_some()) {
            for w in &l.words {
                let (k, v) = assignment(w).expect("checked");
                r.vars.insert(k, v);
            }
            continue;
        }
        let args: Vec<&Word> = l.words[1..].iter().collect();
        match (in_fn.as_deref(), first) {
            (Some("conf_global"), "option") | (Some("conf_target_options"), "option") => {
                if args.len() != 2 {
                    return Err(r.error(l.pos, format!("option takes exactly 2 words (KEY VALUE), got {}", args.len())));
                }
                let kv = (args[0].text.clone(), args[1].text.clone());
                if in_fn.as_deref() == Some("conf_global") {
                    out.global_options.push(kv);
                } else {
                    out.target_options.push(kv);
                }
            }
            (Some("conf_targets"), "target") => {
                if args.len() != 6 {
                    return Err(r.error(
                        l.pos,
                        format!("target takes exactly 6 words (up|down DEV blockio|fileio SERIAL PORTAL_GROUP \"INITIATORS\"), got {}", args.len()),
                    ));
                }
                let inits = args[5];
                let initiators = match &inits.var {
                    Some(v) => {
                        let names: Vec<String> = inits.text.split_whitespace().map(str::to_string).collect();
                        out.initiator_groups.insert(v.clone(), names);
                        vec![format!("@{v}")]
                    }
                    None => inits.text.split_whitespace().map(str::to_string).collect(),
                };
                out.targets.push(ImportedTarget {
                    line: l.pos.line,
                    state: args[0].text.clone(),
                    device: args[1].text.clone(),
                    io: args[2].text.clone(),
                    serial: args[3].text.clone(),
                    portal_group: args[4].text.clone(),
                    initiators,
                    ..Default::default()
                });
            }
            (Some("conf_targets"), "user") => {
                if args.len() != 3 || !matches!(args[0].text.as_str(), "in" | "out") {
                    return Err(r.error(l.pos, "user takes exactly: in|out NAME SECRET"));
                }
                let Some(t) = out.targets.last_mut() else {
                    return Err(r.error(l.pos, "user before any target: it applies to the target above it"));
                };
                let acct = (args[1].text.clone(), args[2].text.clone());
                if args[0].text == "in" {
                    t.incoming_users.push(acct);
                } else if t.outgoing_user.replace(acct).is_some() {
                    return Err(r.error(l.pos, "a target has at most one outgoing user"));
                }
            }
            (Some(f), cmd) => {
                return Err(
                    r.error(l.pos, format!("cannot read `{cmd}` in {f} (expected option, target, user or NAME=value)"))
                )
            }
            (None, cmd) => {
                return Err(r.error(
                    l.pos,
                    format!("cannot read `{cmd}` outside a function (expected a function or NAME=value)"),
                ))
            }
        }
    }
    if let Some(f) = in_fn {
        return Err(r.error(r.pos(), format!("function {f} is never closed")));
    }
    Ok(out)
}

/// Reads a file of `NAME=value` lines (ietd_config.sh, ifcfg-*); anything
/// else is an error. Functions are skipped.
pub fn read_assignments(file: &str, text: &str) -> Result<BTreeMap<String, String>, ImportError> {
    let mut vars = BTreeMap::new();
    let mut r = Reader::new(file, text, &mut vars);
    let mut assigned = Vec::new();
    while let Some(l) = r.next_line()? {
        if l.words.first().is_some_and(|w| w.text == "export") && l.words.len() > 1
            || l.words.iter().all(|w| assignment(w).is_some())
        {
            for w in l.words.iter().filter(|w| w.text != "export") {
                let (k, v) = assignment(w).ok_or_else(|| r.error(w.pos, "expected NAME=value"))?;
                r.vars.insert(k.clone(), v.clone());
                assigned.push((k, v));
            }
            continue;
        }
        if let Some((name, brace)) = function_header(&l) {
            let mut body_line = l.pos.line;
            if !brace {
                open_brace(&mut r, l.pos)?;
                body_line = r.line - 1;
            }
            let end =
                skip_body(text, body_line).ok_or_else(|| r.error(l.pos, format!("function {name} is never closed")))?;
            while r.line <= end && r.peek().is_some() {
                r.bump();
            }
            continue;
        }
        return Err(r.error(l.pos, format!("cannot read `{}` (expected NAME=value lines)", l.words[0].text)));
    }
    Ok(assigned.into_iter().collect())
}

/// One interface definition (ifcfg-ethX) with the seed's extensions.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    pub device: String,
    pub address: IpAddr,
    pub prefix_len: u8,
    pub portal_group: Option<String>,
    pub route_table: Option<String>,
}

/// Netmask (dotted) to prefix length; None when not contiguous.
fn mask_len(mask: &str) -> Option<u8> {
    let m: std::net::Ipv4Addr = mask.parse().ok()?;
    let bits = u32::from(m);
    let len = bits.leading_ones();
    (bits.checked_shl(len).unwrap_or(0) == 0).then_some(len as u8)
}

/// Parses an ifcfg file; `Ok(None)` for an interface without an address.
pub fn read_ifcfg(file: &str, text: &str) -> Result<Option<Interface>, ImportError> {
    let v = read_assignments(file, text)?;
    let at = |msg: String| ImportError { file: file.to_string(), pos: Pos { line: 1, col: 1 }, message: msg };
    let Some(ip) = v.get("IPADDR") else {
        return Ok(None);
    };
    let address: IpAddr = ip.parse().map_err(|_| at(format!("IPADDR {ip:?} is not an IP address")))?;
    let prefix_len = match (v.get("PREFIX"), v.get("NETMASK")) {
        (Some(p), _) => {
            p.parse().ok().filter(|&n: &u8| n <= 32).ok_or_else(|| at(format!("PREFIX {p:?} is not 0-32")))?
        }
        (None, Some(m)) => mask_len(m).ok_or_else(|| at(format!("NETMASK {m:?} is not a netmask")))?,
        (None, None) => return Err(at("IPADDR without NETMASK or PREFIX".into())),
    };
    let device = v.get("DEVICE").cloned().ok_or_else(|| at("no DEVICE".into()))?;
    Ok(Some(Interface {
        device,
        address,
        prefix_len,
        portal_group: v.get("IET_PORTAL_GROUP").cloned(),
        route_table: v.get("IET_ROUTE_TABLE").cloned(),
    }))
}

fn q(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

fn opts(v: &[(String, String)]) -> String {
    if v.is_empty() {
        return "[]".into();
    }
    let mut s = "[\n".to_string();
    for (k, val) in v {
        let _ = writeln!(s, "  [{}, {}],", q(k), q(val));
    }
    s.push(']');
    s
}

/// Cluster settings an import needs besides targets.conf.
#[derive(Debug, Default)]
pub struct Cluster {
    pub prefix: String,
    pub hosts: Vec<String>,
    pub volume_groups: Vec<String>,
    pub port: Option<u16>,
    /// portal group -> host -> addresses.
    pub portal_groups: BTreeMap<String, BTreeMap<String, Vec<IpAddr>>>,
}

/// The inventory TOML for what was imported.
pub fn to_toml(c: &Cluster, imp: &Imported) -> String {
    let mut s = String::from("# Imported from the seed's targets.conf by santools targets import.\n[targets]\n");
    let _ = writeln!(s, "prefix = {}", q(&c.prefix));
    let _ = writeln!(s, "hosts = [{}]", c.hosts.iter().map(|h| q(h)).collect::<Vec<_>>().join(", "));
    let _ = writeln!(s, "volume_groups = [{}]", c.volume_groups.iter().map(|h| q(h)).collect::<Vec<_>>().join(", "));
    if let Some(p) = c.port {
        let _ = writeln!(s, "port = {p}");
    }
    let _ = writeln!(s, "global_options = {}", opts(&imp.global_options));
    let _ = writeln!(s, "target_options = {}", opts(&imp.target_options));
    let mut pgs: BTreeMap<String, BTreeMap<String, Vec<IpAddr>>> = c.portal_groups.clone();
    for t in &imp.targets {
        pgs.entry(t.portal_group.clone()).or_default();
    }
    for (pg, hosts) in &pgs {
        let _ = writeln!(s, "\n[targets.portal_groups.{}]", q(pg));
        if hosts.is_empty() {
            let _ =
                writeln!(s, "# no addresses known: add HOST = [\"ADDRESS\", ...] per node (or import with --ifcfg)");
        }
        for (h, addrs) in hosts {
            let list: Vec<String> = addrs.iter().map(|a| q(&a.to_string())).collect();
            let _ = writeln!(s, "{} = [{}]", q(h), list.join(", "));
        }
    }
    if !imp.initiator_groups.is_empty() {
        s.push_str("\n[targets.initiator_groups]\n");
        for (g, names) in &imp.initiator_groups {
            let _ = writeln!(s, "{} = [{}]", q(g), names.iter().map(|n| q(n)).collect::<Vec<_>>().join(", "));
        }
    }
    for t in &imp.targets {
        let _ = writeln!(s, "\n# targets.conf line {}\n[[targets.target]]", t.line);
        let _ = writeln!(s, "state = {}", q(&t.state));
        let _ = writeln!(s, "device = {}", q(&t.device));
        let _ = writeln!(s, "io = {}", q(&t.io));
        let _ = writeln!(s, "serial = {}", q(&t.serial));
        let _ = writeln!(s, "portal_group = {}", q(&t.portal_group));
        let _ = writeln!(s, "initiators = [{}]", t.initiators.iter().map(|n| q(n)).collect::<Vec<_>>().join(", "));
        if !t.incoming_users.is_empty() {
            let users: Vec<String> =
                t.incoming_users.iter().map(|(u, p)| format!("{{ user = {}, secret = {} }}", q(u), q(p))).collect();
            let _ = writeln!(s, "incoming_users = [{}]", users.join(", "));
        }
        if let Some((u, p)) = &t.outgoing_user {
            let _ = writeln!(s, "outgoing_user = {{ user = {}, secret = {} }}", q(u), q(p));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    pub const SEED_CONF: &str = include_str!("../../tests/fixtures/targets/targets.conf");

    fn import(text: &str) -> Result<Imported, ImportError> {
        import_targets_conf("targets.conf", text, &mut BTreeMap::new())
    }

    #[test]
    fn seed_targets_conf_is_read() {
        let imp = import(SEED_CONF).unwrap();
        assert_eq!(imp.global_options[1].0, "TgtNotFoundRespondServiceUnavailable");
        assert_eq!(imp.target_options.len(), 8);
        let t = &imp.targets[0];
        assert_eq!(t.device, "/dev/vg_dsk_0/lv_server01_apps_vol00");
        assert_eq!(t.initiators, ["@ig_server01_apps"]);
        assert_eq!(imp.initiator_groups["ig_server01_apps"], ["iqn.1994-05.com.redhat:swiscsi.server01.apps"]);
        assert_eq!(imp.targets[1].incoming_users, [("esxchap".to_string(), "esx-secret-123".to_string())]);
        let skipped: Vec<&str> = imp.skipped.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(skipped, ["conf_target_callback_pre", "conf_target_callback"]);
    }

    #[test]
    fn unreadable_constructs_name_line_and_column() {
        for (text, line, col, needle) in [
            ("function conf_targets {\n  target up $(ls) blockio S pg \"x\"\n}\n", 2, 13, "command substitution"),
            ("function conf_targets {\n  for x in a b; do\n", 2, 15, "';'"),
            ("x=`id`\n", 1, 3, "`...`"),
            ("function conf_global {\n  option A B | tee /tmp/x\n}\n", 2, 14, "pipe"),
            ("function conf_targets {\n  target up /dev/v/l blockio S pg\n}\n", 2, 3, "exactly 6 words"),
            ("function conf_targets {\n  target up /dev/v/l blockio S pg \"$nope\"\n}\n", 2, 36, "$nope"),
            ("function conf_targets {\n  while true\n}\n", 2, 3, "cannot read `while`"),
            ("echo hi > /tmp/x\n", 1, 9, "redirection"),
        ] {
            let e = import(text).unwrap_err();
            assert_eq!((e.pos.line, e.pos.col), (line, col), "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
        }
    }

    /// Finding T4 (attack-targets): forty `a=$a$a` lines asked for 2^44
    /// bytes and the import died of memory exhaustion (SIGABRT).
    #[test]
    fn expansion_bomb_is_an_error_naming_the_line() {
        let mut text = "a=xxxxxxxxxxxxxxxx\n".to_string();
        for _ in 0..40 {
            text.push_str("a=$a$a\n");
        }
        let e = import(&text).unwrap_err();
        assert!(e.pos.line > 15 && e.pos.line < 41, "{e}");
        assert!(e.to_string().contains("$a") && e.to_string().contains("MiB"), "{e}");
    }

    #[test]
    fn ifcfg_is_read() {
        let i = read_ifcfg(
            "ifcfg-eth2.10",
            "DEVICE=eth2.10\nBOOTPROTO=static\nONBOOT=yes\nIPADDR=10.0.1.1\nNETMASK=255.255.255.0\nVLAN=yes\nIET_PORTAL_GROUP=pg_vlan10_fabric\nIET_ROUTE_TABLE=rt_vlan10_port0\n",
        )
        .unwrap()
        .unwrap();
        assert_eq!(i.prefix_len, 24);
        assert_eq!(i.route_table.as_deref(), Some("rt_vlan10_port0"));
        assert!(read_ifcfg("x", "DEVICE=eth0\nBOOTPROTO=none\n").unwrap().is_none());
        assert!(read_ifcfg("x", "DEVICE=eth0\nIPADDR=10.0.0.1\nNETMASK=255.0.255.0\n").is_err());
    }
}
