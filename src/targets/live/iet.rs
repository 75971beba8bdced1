//! IET's /proc/net/iet files: `volume`, `session` (stock, and the seed's
//! patched format with `s_ip`/`d_ip`), `vpd` and `reservation` (the seed's
//! patches). Each is `tid:N name:IQN` lines with tab-indented `key:value`
//! records below; unknown keys or indentation are errors naming the line.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{file} line {line}: {problem}: {text:?}")]
pub struct ParseError {
    pub file: String,
    pub line: usize,
    pub text: String,
    pub problem: String,
}

/// One parsed line: its depth (leading tabs) and its key:value fields.
struct Rec<'a> {
    depth: usize,
    fields: Vec<(&'a str, &'a str)>,
}

fn records<'a>(file: &str, text: &'a str) -> Result<Vec<(usize, &'a str, Rec<'a>)>, ParseError> {
    let mut out = Vec::new();
    for (i, l) in text.lines().enumerate() {
        if l.trim().is_empty() {
            continue;
        }
        let depth = l.len() - l.trim_start_matches('\t').len();
        let body = &l[depth..];
        let err = |p: &str| ParseError { file: file.into(), line: i + 1, text: l.into(), problem: p.into() };
        if body.starts_with(' ') {
            return Err(err("indentation must be tabs"));
        }
        let mut fields = Vec::new();
        // vpd_83_scsi_id's value is hex bytes separated by spaces: keep the
        // rest of the line as its value.
        if let Some(rest) = body.strip_prefix("vpd_83_scsi_id:") {
            fields.push(("vpd_83_scsi_id", rest.trim()));
        } else if let Some(rest) = body.strip_prefix("vpd_80_scsi_sn:") {
            fields.push(("vpd_80_scsi_sn", rest.trim()));
        } else {
            for tok in body.split_whitespace() {
                let (k, v) = tok.split_once(':').ok_or_else(|| err("expected key:value"))?;
                fields.push((k, v));
            }
        }
        out.push((i + 1, l, Rec { depth, fields }));
    }
    Ok(out)
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IetLun {
    pub lun: u32,
    pub path: String,
    pub iotype: Option<String>,
    pub blocks: Option<u64>,
    pub blocksize: Option<u64>,
    pub scsi_sn: Option<String>,
    pub scsi_id: Option<String>,
    pub reserve: Option<u64>,
    pub release: Option<u64>,
    pub reserved: Option<u64>,
    pub reserved_by: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IetConn {
    pub cid: u64,
    /// The initiator's address (`ip` in the stock format, `s_ip` patched).
    pub ip: String,
    /// The target address (`d_ip`, patched format only).
    pub target_ip: Option<String>,
    pub state: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IetSession {
    pub sid: u64,
    pub initiator: String,
    pub conns: Vec<IetConn>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct IetTarget {
    pub tid: u32,
    pub name: String,
    pub luns: Vec<IetLun>,
    pub sessions: Vec<IetSession>,
}

fn get<'a>(r: &Rec<'a>, k: &str) -> Option<&'a str> {
    r.fields.iter().find(|(fk, _)| *fk == k).map(|(_, v)| *v)
}

fn check_keys(file: &str, line: usize, text: &str, r: &Rec, allowed: &[&str]) -> Result<(), ParseError> {
    for (k, _) in &r.fields {
        if !allowed.contains(k) {
            return Err(ParseError {
                file: file.into(),
                line,
                text: text.into(),
                problem: format!("unknown key {k:?}"),
            });
        }
    }
    Ok(())
}

fn num<T: std::str::FromStr>(file: &str, line: usize, text: &str, r: &Rec, k: &str) -> Result<T, ParseError> {
    get(r, k).and_then(|v| v.parse().ok()).ok_or_else(|| ParseError {
        file: file.into(),
        line,
        text: text.into(),
        problem: format!("missing or non-numeric {k}"),
    })
}

/// The /proc/net/iet files, parsed and merged per target.
pub fn parse(files: &BTreeMap<String, String>) -> Result<Vec<IetTarget>, ParseError> {
    let mut targets: BTreeMap<u32, IetTarget> = BTreeMap::new();
    for (file, text) in files {
        let mut tid: Option<u32> = None;
        let mut lun: Option<u32> = None;
        let mut sid: Option<u64> = None;
        for (line, raw, r) in records(file, text)? {
            let perr = |p: &str| ParseError { file: file.clone(), line, text: raw.into(), problem: p.into() };
            match r.depth {
                0 => {
                    check_keys(file, line, raw, &r, &["tid", "name"])?;
                    let t: u32 = num(file, line, raw, &r, "tid")?;
                    let name = get(&r, "name").ok_or_else(|| perr("missing name"))?;
                    let e = targets.entry(t).or_insert_with(|| IetTarget {
                        tid: t,
                        name: name.into(),
                        ..Default::default()
                    });
                    if e.name != name {
                        return Err(perr("tid has a different name in another file"));
                    }
                    tid = Some(t);
                    lun = None;
                    sid = None;
                }
                1 if file == "session" => {
                    check_keys(file, line, raw, &r, &["sid", "initiator"])?;
                    let t = targets.get_mut(&tid.ok_or_else(|| perr("session before any tid"))?).expect("entry");
                    let s: u64 = num(file, line, raw, &r, "sid")?;
                    t.sessions.push(IetSession {
                        sid: s,
                        initiator: get(&r, "initiator").ok_or_else(|| perr("missing initiator"))?.into(),
                        conns: vec![],
                    });
                    sid = Some(s);
                }
                2 if file == "session" => {
                    check_keys(file, line, raw, &r, &["cid", "ip", "s_ip", "d_ip", "state", "hd", "dd"])?;
                    let t = targets.get_mut(&tid.ok_or_else(|| perr("connection before any tid"))?).expect("entry");
                    let s = sid.ok_or_else(|| perr("connection before any sid"))?;
                    let ip = get(&r, "ip").or(get(&r, "s_ip")).ok_or_else(|| perr("missing ip or s_ip"))?;
                    let c = IetConn {
                        cid: num(file, line, raw, &r, "cid")?,
                        ip: ip.into(),
                        target_ip: get(&r, "d_ip").map(str::to_string),
                        state: get(&r, "state").unwrap_or("").into(),
                    };
                    t.sessions.iter_mut().find(|x| x.sid == s).expect("pushed").conns.push(c);
                }
                1 => {
                    let allowed: &[&str] = match file.as_str() {
                        "volume" => &["lun", "state", "iotype", "iomode", "blocks", "blocksize", "path"],
                        _ => &["lun", "path"],
                    };
                    check_keys(file, line, raw, &r, allowed)?;
                    let t = targets.get_mut(&tid.ok_or_else(|| perr("lun before any tid"))?).expect("entry");
                    let n: u32 = num(file, line, raw, &r, "lun")?;
                    let path = get(&r, "path").ok_or_else(|| perr("missing path"))?;
                    let l = match t.luns.iter_mut().find(|l| l.lun == n) {
                        Some(l) => l,
                        None => {
                            t.luns.push(IetLun { lun: n, path: path.into(), ..Default::default() });
                            t.luns.last_mut().expect("pushed")
                        }
                    };
                    if l.path != path {
                        return Err(perr("lun has a different path in another file"));
                    }
                    if file == "volume" {
                        l.iotype = get(&r, "iotype").map(str::to_string);
                        l.blocks = Some(num(file, line, raw, &r, "blocks")?);
                        l.blocksize = Some(num(file, line, raw, &r, "blocksize")?);
                    }
                    lun = Some(n);
                }
                2 => {
                    let t = targets.get_mut(&tid.ok_or_else(|| perr("record before any tid"))?).expect("entry");
                    let n = lun.ok_or_else(|| perr("record before any lun"))?;
                    let l = t.luns.iter_mut().find(|l| l.lun == n).expect("lun seen");
                    match file.as_str() {
                        "vpd" => {
                            check_keys(file, line, raw, &r, &["vpd_83_scsi_id", "vpd_80_scsi_sn"])?;
                            if let Some(v) = get(&r, "vpd_80_scsi_sn") {
                                l.scsi_sn = Some(v.into());
                            }
                            if let Some(v) = get(&r, "vpd_83_scsi_id") {
                                l.scsi_id =
                                    Some(decode_hex_id(v).ok_or_else(|| perr("vpd_83_scsi_id is not hex bytes"))?);
                            }
                        }
                        "reservation" => {
                            check_keys(file, line, raw, &r, &["reserve", "release", "reserved", "reserved_by"])?;
                            l.reserve = Some(num(file, line, raw, &r, "reserve")?);
                            l.release = Some(num(file, line, raw, &r, "release")?);
                            l.reserved = Some(num(file, line, raw, &r, "reserved")?);
                            l.reserved_by = get(&r, "reserved_by").map(str::to_string);
                        }
                        _ => return Err(perr("unexpected indentation")),
                    }
                }
                _ => return Err(perr("unexpected indentation")),
            }
        }
    }
    Ok(targets.into_values().collect())
}

/// `41 4d 48 ...` (optionally followed by the text rendering) to the text.
fn decode_hex_id(v: &str) -> Option<String> {
    let mut bytes = Vec::new();
    for tok in v.split_whitespace() {
        if tok.len() == 2 && tok.bytes().all(|b| b.is_ascii_hexdigit()) {
            bytes.push(u8::from_str_radix(tok, 16).ok()?);
        } else {
            break;
        }
    }
    let s: String = bytes.iter().take_while(|&&b| b != 0).map(|&b| b as char).collect();
    (!bytes.is_empty()).then_some(s)
}

/// Reads the files IET has under `dir` (missing ones are skipped: the
/// vpd/reservation files exist only with the seed's patches).
pub fn read_dir(dir: &std::path::Path) -> std::io::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for name in ["volume", "session", "vpd", "reservation"] {
        // Bounded: --proc names any directory (a FIFO or /dev/zero link in it must not grow memory).
        match read_text(&dir.join(name), MAX_TEXT_BYTES) {
            Ok(t) => {
                files.insert(name.to_string(), t);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && name != "volume" && name != "session" => {}
            Err(e) => return Err(std::io::Error::new(e.kind(), format!("{}: {e}", dir.join(name).display()))),
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(dir: &str) -> BTreeMap<String, String> {
        read_dir(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/iet").join(dir)).unwrap()
    }

    #[test]
    fn patched_proc_files_merge() {
        let t = parse(&fixture("patched")).unwrap();
        assert_eq!(t.len(), 2);
        let a = t.iter().find(|t| t.tid == 2).unwrap();
        let b = t.iter().find(|t| t.tid == 1).unwrap();
        assert_eq!(a.luns[0].scsi_sn.as_deref(), Some("AMHDSK-070401-02"));
        assert_eq!(a.luns[0].scsi_id.as_deref(), Some("AMHDSK-070401-02"));
        assert_eq!(a.luns[0].reserve, Some(12778));
        assert_eq!(b.sessions[0].conns[0].ip, "10.0.1.90");
        assert_eq!(b.sessions[0].conns[0].target_ip.as_deref(), Some("10.0.1.1"));
        assert_eq!(a.luns[0].blocks, Some(2097152));
    }

    #[test]
    fn stock_session_format_parses() {
        let t = parse(&fixture("stock")).unwrap();
        assert_eq!(t[0].sessions[0].conns[0].ip, "10.0.1.91");
        assert_eq!(t[0].sessions[0].conns[0].target_ip, None);
    }

    #[test]
    fn unknown_keys_and_indentation_fail() {
        let mut f = BTreeMap::new();
        f.insert(
            "volume".into(),
            "tid:1 name:iqn.x\n\tlun:0 state:0 colour:red path:/dev/x blocks:1 blocksize:512\n".into(),
        );
        assert!(parse(&f).unwrap_err().problem.contains("colour"));
        f.insert("volume".into(), "tid:1 name:iqn.x\n    lun:0 path:/dev/x\n".into());
        assert!(parse(&f).is_err());
    }
}
