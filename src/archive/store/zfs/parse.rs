//! Pure parsers of `zfs` machine-readable output (`-H -p`: tab-separated,
//! exact numbers). Each line must have exactly the fields asked for; one
//! line that does not fit fails the whole parse instead of being guessed
//! at. Tested on output captured from the installed zfs-fuse
//! (tests/fixtures/zfs/).

use std::collections::BTreeMap;

/// One property of one object as `zfs get -Hp -o name,property,value,source` prints it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PropLine {
    pub value: String,
    pub source: String,
}

/// Objects (datasets and snapshots) by name, each with its properties.
pub type PropTable = BTreeMap<String, BTreeMap<String, PropLine>>;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

fn fields(text: &str, n: usize) -> Result<Vec<Vec<&str>>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.is_empty() {
            continue;
        }
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != n {
            return Err(ParseError {
                line: i + 1,
                problem: format!("expected {n} tab-separated fields, found {}: {line:?}", f.len()),
            });
        }
        out.push(f);
    }
    Ok(out)
}

/// Parses `zfs get -Hp -o name,property,value,source ...`.
pub fn parse_get(text: &str) -> Result<PropTable, ParseError> {
    let mut t = PropTable::new();
    for f in fields(text, 4)? {
        t.entry(f[0].to_string())
            .or_default()
            .insert(f[1].to_string(), PropLine { value: f[2].to_string(), source: f[3].to_string() });
    }
    Ok(t)
}

/// Parses `zfs list -H -o name ...`.
pub fn parse_names(text: &str) -> Result<Vec<String>, ParseError> {
    Ok(fields(text, 1)?.into_iter().map(|f| f[0].to_string()).collect())
}

/// Parses `zfs get -Hp -o name,value PROP ...` into name -> value.
pub fn parse_name_value(text: &str) -> Result<BTreeMap<String, String>, ParseError> {
    Ok(fields(text, 2)?.into_iter().map(|f| (f[0].to_string(), f[1].to_string())).collect())
}

/// The user properties (`ns:key`, set locally or received) of one object.
pub fn user_properties(props: &BTreeMap<String, PropLine>) -> BTreeMap<String, String> {
    props
        .iter()
        .filter(|(k, p)| k.contains(':') && (p.source == "local" || p.source.starts_with("received")))
        .map(|(k, p)| (k.clone(), p.value.clone()))
        .collect()
}

/// A numeric property (`-p` prints exact integers); `-` (unset) is None.
pub fn number(props: &BTreeMap<String, PropLine>, key: &str) -> Result<Option<u64>, String> {
    match props.get(key).map(|p| p.value.as_str()) {
        None | Some("-") => Ok(None),
        Some(v) => v.parse::<u64>().map(Some).map_err(|_| format!("property {key} is {v:?}, not a number")),
    }
}

/// The hold tags of a snapshot: `userrefs` counts every hold, the record
/// names the ones santools placed. A record without holds is stale (the
/// holds were released behind our back); holds beyond the record were
/// placed by someone else and are counted, since zfs-fuse cannot name them.
pub fn hold_tags(userrefs: u64, recorded: Vec<String>) -> Vec<String> {
    if userrefs == 0 {
        return Vec::new();
    }
    let mut tags: Vec<String> = recorded.into_iter().take(userrefs as usize).collect();
    let unknown = userrefs - tags.len() as u64;
    if unknown > 0 {
        tags.push(format!("{unknown} hold(s) not made by santools"));
    }
    tags
}

/// `compressratio` (`1.52x`; zfs-fuse prints the `x` even with `-p`).
pub fn ratio(value: &str) -> Option<f64> {
    value.trim_end_matches('x').parse::<f64>().ok().filter(|r| r.is_finite() && *r >= 0.0)
}

/// The kind of stderr message from a failed zfs command, for callers that
/// branch (conservatively: anything else stays generic).
#[derive(Debug, PartialEq, Eq)]
pub enum ZfsFailure {
    DoesNotExist,
    AlreadyExists,
    /// Held, has dependent clones, or in use.
    Busy(String),
    Other,
}

pub fn classify_stderr(stderr: &str) -> ZfsFailure {
    let s = stderr.to_ascii_lowercase();
    if s.contains("dataset does not exist") || s.contains("could not find any snapshots") {
        ZfsFailure::DoesNotExist
    } else if s.contains("already exists") {
        ZfsFailure::AlreadyExists
    } else if s.contains("dataset is busy") || s.contains("has dependent clones") || s.contains("being held") {
        ZfsFailure::Busy(stderr.trim().lines().next().unwrap_or("").to_string())
    } else {
        ZfsFailure::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GET_ALL: &str =
        include_str!("../../../../tests/fixtures/zfs/zfs-fuse-0.7.0/get-all-volume-and-snapshots.txt");
    const ORIGIN: &str = include_str!("../../../../tests/fixtures/zfs/zfs-fuse-0.7.0/get-origin-pool.txt");
    const LIST: &str = include_str!("../../../../tests/fixtures/zfs/zfs-fuse-0.7.0/list-children.txt");
    const MISSING: &str = include_str!("../../../../tests/fixtures/zfs/zfs-fuse-0.7.0/get-missing.stderr");

    #[test]
    fn parses_captured_get_all() {
        // zfs get -Hp -o name,property,value,source -r -d 1 all zxtest1/iscsi_vol1_bk
        let t = parse_get(GET_ALL).unwrap();
        assert_eq!(t.len(), 3, "{:?}", t.keys().collect::<Vec<_>>());
        let snap = &t["zxtest1/iscsi_vol1_bk@2026-11-30_07:55:00"];
        assert_eq!(snap["type"].value, "snapshot");
        assert_eq!(user_properties(snap).get("edu.amherst:snap_time").map(String::as_str), Some("123"));
        assert_eq!(number(snap, "userrefs").unwrap(), Some(0));
        assert!(number(snap, "creation").unwrap().unwrap() > 1_700_000_000);
        let vol = &t["zxtest1/iscsi_vol1_bk"];
        assert_eq!(vol["type"].value, "filesystem");
        assert!(user_properties(vol).is_empty());
    }

    #[test]
    fn parses_captured_lists() {
        // zfs get -Hp -o name,value -r origin zxtest1
        let o = parse_name_value(ORIGIN).unwrap();
        assert_eq!(o["zxtest1/clonetest"], "zxtest1/iscsi_vol1_bk@2026-11-30_07:55:01");
        assert_eq!(o["zxtest1/ddless"], "-");
        // zfs list -H -o name -d 1 -t filesystem,volume zxtest1
        assert_eq!(
            parse_names(LIST).unwrap(),
            vec!["zxtest1", "zxtest1/clonetest", "zxtest1/ddless", "zxtest1/iscsi_vol1_bk"]
        );
        assert_eq!(classify_stderr(MISSING), ZfsFailure::DoesNotExist);
    }

    #[test]
    fn hold_tags_reconcile_the_record_with_userrefs() {
        let rec = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(hold_tags(0, rec(&["santools-copy-b"])).is_empty());
        assert_eq!(hold_tags(1, rec(&["santools-copy-b"])), rec(&["santools-copy-b"]));
        assert_eq!(
            hold_tags(2, rec(&["santools-copy-b"])),
            rec(&["santools-copy-b", "1 hold(s) not made by santools"])
        );
        assert_eq!(hold_tags(1, Vec::new()), rec(&["1 hold(s) not made by santools"]));
        assert_eq!(ratio("1.02x"), Some(1.02));
        assert_eq!(ratio("-"), None);
    }

    #[test]
    fn lines_that_do_not_fit_fail_the_parse() {
        assert!(parse_get("a\tb\tc\n").is_err());
        assert!(parse_get("a\tb\tc\td\te\n").is_err());
        assert!(parse_name_value("a b\n").is_err());
        let t = parse_get("p/v\tedu.x:k\thello world\tlocal\n").unwrap();
        assert_eq!(t["p/v"]["edu.x:k"].value, "hello world");
        assert!(number(&t["p/v"], "edu.x:k").is_err());
        assert_eq!(
            classify_stderr("cannot destroy 'p/v@s': dataset is busy\n"),
            ZfsFailure::Busy("cannot destroy 'p/v@s': dataset is busy".into())
        );
        assert_eq!(
            classify_stderr("cannot destroy 'p/v@s': snapshot has dependent clones\nuse '-R'"),
            ZfsFailure::Busy("cannot destroy 'p/v@s': snapshot has dependent clones".into())
        );
        assert_eq!(classify_stderr("boom"), ZfsFailure::Other);
    }
}
