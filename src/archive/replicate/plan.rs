//! Which stream brings a target up to a source snapshot: pure, from both
//! sides' snapshot lists. Snapshots are matched by GUID (identity that
//! survives send/receive), never by name alone.

use serde::Serialize;

/// A snapshot on one side: name and GUID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Snap {
    pub name: String,
    pub guid: Option<String>,
}

impl Snap {
    pub fn new(name: &str, guid: &str) -> Snap {
        Snap { name: name.into(), guid: Some(guid.into()) }
    }
}

/// What the operator asked for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    Full,
    /// `-i BASE` (false) or `-I BASE` (true: with the intermediate snapshots).
    Incremental {
        base: String,
        intermediates: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Step {
    Full { snapshot: String },
    Incremental { from: String, to: String, intermediates: bool, rollback: bool },
    UpToDate { snapshot: String },
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Conflict {
    #[error("source snapshot {0} does not exist")]
    NoSuchSnapshot(String),
    #[error("incremental base {0} does not exist on the source")]
    NoSuchBase(String),
    #[error("incremental base {base} is not older than {snapshot}")]
    BaseNotOlder { base: String, snapshot: String },
    #[error("the target exists{}; copy incrementally with -i/-I BASE", newest_common.as_ref().map(|c| format!(" (newest snapshot both sides share: {c})")).unwrap_or_default())]
    TargetExists { newest_common: Option<String> },
    #[error("the target does not exist: an incremental copy needs the base {0} there (copy it in full first)")]
    NoTarget(String),
    #[error("the target has no snapshot {base} with the source's GUID (target snapshots: {})", target.join(", "))]
    BaseMissingOnTarget { base: String, target: Vec<String> },
    #[error("the target has diverged: it has snapshots after the base {base} ({}); give -F to roll them back", newer.join(", "))]
    Diverged { base: String, newer: Vec<String> },
    #[error("the target has {name} but it is not the source's snapshot (GUID {target_guid} against {source_guid})")]
    SameNameDifferentSnapshot { name: String, source_guid: String, target_guid: String },
}

fn guid_of(list: &[Snap], name: &str) -> Option<Option<String>> {
    list.iter().find(|s| s.name == name).map(|s| s.guid.clone())
}

/// `source` and `target` oldest first; `target` is None when the target
/// volume does not exist.
pub fn plan(
    source: &[Snap],
    target: Option<&[Snap]>,
    snapshot: &str,
    mode: &Mode,
    force: bool,
) -> Result<Step, Conflict> {
    let pos = |name: &str| source.iter().position(|s| s.name == name);
    let Some(to_pos) = pos(snapshot) else { return Err(Conflict::NoSuchSnapshot(snapshot.into())) };
    let src_guid = source[to_pos].guid.clone();
    if let Some(t) = target {
        if let Some(tg) = guid_of(t, snapshot) {
            if tg.is_some() && tg == src_guid {
                return Ok(Step::UpToDate { snapshot: snapshot.into() });
            }
            return Err(Conflict::SameNameDifferentSnapshot {
                name: snapshot.into(),
                source_guid: src_guid.unwrap_or_else(|| "-".into()),
                target_guid: tg.unwrap_or_else(|| "-".into()),
            });
        }
    }
    match mode {
        Mode::Full => match target {
            None => Ok(Step::Full { snapshot: snapshot.into() }),
            Some(t) => {
                let common = t
                    .iter()
                    .rev()
                    .find(|ts| ts.guid.is_some() && source.iter().any(|s| s.guid == ts.guid))
                    .map(|s| s.name.clone());
                Err(Conflict::TargetExists { newest_common: common })
            }
        },
        Mode::Incremental { base, intermediates } => {
            let Some(base_pos) = pos(base) else { return Err(Conflict::NoSuchBase(base.clone())) };
            if base_pos >= to_pos {
                return Err(Conflict::BaseNotOlder { base: base.clone(), snapshot: snapshot.into() });
            }
            let Some(t) = target else { return Err(Conflict::NoTarget(base.clone())) };
            let base_guid = &source[base_pos].guid;
            let Some(tpos) = t.iter().position(|s| s.guid.is_some() && &s.guid == base_guid) else {
                return Err(Conflict::BaseMissingOnTarget {
                    base: base.clone(),
                    target: t.iter().map(|s| s.name.clone()).collect(),
                });
            };
            let newer: Vec<String> = t[tpos + 1..].iter().map(|s| s.name.clone()).collect();
            if !newer.is_empty() && !force {
                return Err(Conflict::Diverged { base: base.clone(), newer });
            }
            Ok(Step::Incremental {
                from: base.clone(),
                to: snapshot.into(),
                intermediates: *intermediates,
                rollback: !newer.is_empty(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn src() -> Vec<Snap> {
        vec![Snap::new("a", "1"), Snap::new("b", "2"), Snap::new("c", "3")]
    }

    #[test]
    fn plans_by_table() {
        let inc = |b: &str, i: bool| Mode::Incremental { base: b.into(), intermediates: i };
        let t_ab = vec![Snap::new("a", "1"), Snap::new("b", "2")];
        let t_ax = vec![Snap::new("a", "1"), Snap::new("x", "9")];
        let renamed = vec![Snap::new("a-renamed", "1")];
        type Case<'a> = (Option<Vec<Snap>>, &'a str, Mode, bool, Result<Step, Conflict>);
        let cases: Vec<Case> = vec![
            (None, "c", Mode::Full, false, Ok(Step::Full { snapshot: "c".into() })),
            (None, "z", Mode::Full, false, Err(Conflict::NoSuchSnapshot("z".into()))),
            (
                Some(t_ab.clone()),
                "c",
                Mode::Full,
                false,
                Err(Conflict::TargetExists { newest_common: Some("b".into()) }),
            ),
            (Some(t_ab.clone()), "b", Mode::Full, false, Ok(Step::UpToDate { snapshot: "b".into() })),
            (
                Some(t_ab.clone()),
                "c",
                inc("b", false),
                false,
                Ok(Step::Incremental { from: "b".into(), to: "c".into(), intermediates: false, rollback: false }),
            ),
            (
                Some(t_ab.clone()),
                "c",
                inc("a", true),
                false,
                Err(Conflict::Diverged { base: "a".into(), newer: vec!["b".into()] }),
            ),
            (
                Some(t_ax.clone()),
                "c",
                inc("a", true),
                true,
                Ok(Step::Incremental { from: "a".into(), to: "c".into(), intermediates: true, rollback: true }),
            ),
            // Matched by GUID: a renamed base on the target still counts.
            (
                Some(renamed),
                "c",
                inc("a", true),
                false,
                Ok(Step::Incremental { from: "a".into(), to: "c".into(), intermediates: true, rollback: false }),
            ),
            (None, "c", inc("a", false), false, Err(Conflict::NoTarget("a".into()))),
            (Some(t_ab.clone()), "c", inc("q", false), false, Err(Conflict::NoSuchBase("q".into()))),
            (Some(t_ab.clone()), "a", inc("b", false), false, Ok(Step::UpToDate { snapshot: "a".into() })),
            (
                Some(vec![Snap::new("x", "9")]),
                "c",
                inc("b", false),
                false,
                Err(Conflict::BaseMissingOnTarget { base: "b".into(), target: vec!["x".into()] }),
            ),
            (
                Some(vec![Snap::new("c", "77")]),
                "c",
                Mode::Full,
                false,
                Err(Conflict::SameNameDifferentSnapshot {
                    name: "c".into(),
                    source_guid: "3".into(),
                    target_guid: "77".into(),
                }),
            ),
        ];
        for (target, snap, mode, force, want) in cases {
            let got = plan(&src(), target.as_deref(), snap, &mode, force);
            assert_eq!(got, want, "{target:?} {snap} {mode:?} {force}");
        }
        let e = plan(&src(), Some(&t_ax), "c", &inc("a", false), false).unwrap_err().to_string();
        assert!(e.contains("diverged") && e.contains("-F") && e.contains('x'), "{e}");
        assert!(matches!(plan(&src(), None, "b", &inc("c", false), false), Err(Conflict::BaseNotOlder { .. })));
    }
}
