//! Regression tests from the hostile pass on the archive (issue 8):
//! aliased pools, a volume of another source, the archive's own checksum
//! file offered as the source's, a damaged history head, and one damaged
//! volume during the daily snapcheck.

use std::path::{Path, PathBuf};

use crate::archive_lab::*;
use crate::helpers::*;

const MB: usize = 1 << 20;

fn volume(name: &str, pool: &str, src: &str) -> String {
    format!("[[archive.volumes]]\nname = \"{name}\"\npool = \"{pool}\"\nsource = {{ kind = \"file\", path = \"{{dir}}/{src}\" }}\n")
}

fn setup() -> Option<Archive> {
    let pool = PoolLab::new(Backend::Dir)?;
    let a = Archive::new(pool, &volume("vgA/lv_a", "{pool}", "a.img"));
    write(&a.path("a.img"), &Rng(3).bytes(2 * MB));
    write(&a.path("b.img"), &Rng(4).bytes(2 * MB));
    Some(a)
}

fn find(dir: &Path, name: &str) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(find(&p, name));
            } else if p.file_name().is_some_and(|n| n == name) {
                out.push(p);
            }
        }
    }
    out
}

#[test]
fn two_pools_naming_one_directory_and_a_volume_of_another_source_are_refused() {
    let Some(a) = setup() else { return };
    let pool_path = a.pool.path.clone().unwrap();
    let link = a.path("alias");
    std::os::unix::fs::symlink(&pool_path, &link).unwrap();
    a.write_config(&format!(
        "{}[archive.pools.alias]\nbackend = \"dir\"\npath = {:?}\n{}",
        volume("vgA/lv_a", "{pool}", "a.img"),
        link,
        volume("vgB/lv_a", "alias", "b.img")
    ));
    fails_with(a.tool("backup").args(["-q", "-a"]), &["same directory", "alias"]);
    assert!(a.pool.snapshots("iscsi_lv_a_bk").is_empty());
    // One pool; then another source claims the same archive volume.
    a.write_config(&volume("vgA/lv_a", "{pool}", "a.img"));
    ok(a.tool("backup").args(["-q", "-a"]));
    a.write_config(&volume("vgB/lv_a", "{pool}", "b.img"));
    fails_with(a.tool("backup").args(["-q", "-a"]), &["belongs to source \"vgA/lv_a\""]);
    assert_eq!(a.pool.snapshots("iscsi_lv_a_bk").len(), 1);
    assert!(image_of(&a.pool.image("iscsi_lv_a_bk")) == image_of(&a.path("a.img")));
}

#[test]
fn integrity_refuses_the_archives_own_checksum_file_as_the_sources() {
    let Some(a) = setup() else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let live = find(&a.pool.ddless_dir(), "iscsi_lv_a.ddless");
    assert_eq!(live.len(), 1, "{live:?}");
    let prep = a.path("prepare.sh");
    write(
        &prep,
        format!(
            "#!/bin/sh\nprintf '{{\"path\":\"{}\",\"size\":{},\"checksum\":\"{}\"}}'\n",
            a.path("a.img").display(),
            2 * MB,
            live[0].display()
        )
        .as_bytes(),
    );
    std::process::Command::new("chmod").arg("+x").arg(&prep).status().unwrap();
    a.write_config(&format!(
        "[[archive.volumes]]\nname = \"vgA/lv_a\"\npool = \"{{pool}}\"\nsource = {{ kind = \"command\", prepare = [\"{}\"] }}\n",
        prep.display()
    ));
    let o = run(a.tool("backup").args(["-s", "vgA/lv_a", "-i"]));
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("archive's own checksum files"), "{}", stderr(&o));
}

#[test]
fn a_damaged_history_head_is_an_error_not_nohistory() {
    let Some(a) = setup() else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    std::thread::sleep(std::time::Duration::from_millis(1100));
    ok(a.tool("backup").args(["-q", "-a"]));
    let heads = find(&a.pool.ddless_dir(), "head.json");
    assert_eq!(heads.len(), 1, "{heads:?}");
    let good = std::fs::read(&heads[0]).unwrap();
    let mut v: serde_json::Value = serde_json::from_slice(&good).unwrap();
    v["snapshot"] = "../../../etc".into();
    write(&heads[0], v.to_string().as_bytes());
    let snaps = a.pool.snapshots("iscsi_lv_a_bk");
    let newest = format!("{}/iscsi_lv_a_bk@{}", a.pool.name, snaps.last().unwrap());
    // A damaged history is a finding (exit 1, as a mismatch), never "nohistory".
    let o = run(a.tool("snapcheck").args(["-s", &newest]));
    assert_eq!(o.status.code(), Some(1), "{}{}", stdout(&o), stderr(&o));
    assert!(stderr(&o).contains("head.json") && stderr(&o).contains("damaged"), "{}", stderr(&o));
    let o = run(a.tool("backup").args(["-q", "-a"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    // The damaged head was not overwritten: an operator can still repair it.
    assert!(std::fs::read_to_string(&heads[0]).unwrap().contains("../../../etc"));
    write(&heads[0], &good);
    ok(a.tool("snapcheck").args(["-q", "-s", &newest]));
}

#[test]
fn snapcheck_daily_goes_on_past_a_volume_it_cannot_list() {
    let Some(a) = setup() else { return };
    a.write_config(&format!("{}{}", volume("vgA/lv_a", "{pool}", "a.img"), volume("vgA/lv_b", "{pool}", "b.img")));
    ok(a.tool("backup").args(["-q", "-a"]));
    let meta = find(&a.pool.path.clone().unwrap().join(".snapshots").join("iscsi_lv_a_bk"), ".santools-snapshot.json");
    assert!(!meta.is_empty());
    write(&meta[0], b"{");
    let o = run(a.tool("snapcheck").args(["-d", "--count", "10"]));
    assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
    assert!(stdout(&o).contains("ok ") && stdout(&o).contains("iscsi_lv_b_bk"), "lv_b was not checked: {}", stdout(&o));
    assert!(stderr(&o).contains("iscsi_lv_a_bk"), "{}", stderr(&o));
}

#[test]
fn a_refused_restore_creates_no_directory_and_no_marker() {
    let Some(a) = setup() else { return };
    ok(a.tool("backup").args(["-q", "-a"]));
    let src = format!("{}/iscsi_lv_a_bk", a.pool.name);
    let typo = a.path("no-such-dir").join("t.img");
    fails_with(a.tool("restore").args(["-s", &src, "-t"]).arg(&typo), &["does not exist"]);
    assert!(!a.path("no-such-dir").exists());
    let link = a.path("dangling");
    std::os::unix::fs::symlink(a.path("nowhere.img"), &link).unwrap();
    fails_with(a.tool("restore").args(["-s", &src, "-t"]).arg(&link), &["dangling"]);
    let left: Vec<String> = std::fs::read_dir(a.dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("restore"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(!a.path("nowhere.img").exists());
}

#[test]
fn a_backup_refused_at_prepare_creates_nothing_in_a_new_pool() {
    let Some(a) = setup() else { return };
    let prep = a.path("prepare.sh");
    write(&prep, b"#!/bin/sh\necho 'not json'\n");
    std::process::Command::new("chmod").arg("+x").arg(&prep).status().unwrap();
    a.write_config(&format!(
        "[[archive.volumes]]\nname = \"vgA/lv_a\"\npool = \"{{pool}}\"\nsource = {{ kind = \"command\", prepare = [\"{}\"] }}\n",
        prep.display()
    ));
    let pool = a.pool.path.clone().unwrap();
    let before: Vec<_> = std::fs::read_dir(&pool).unwrap().flatten().map(|e| e.file_name()).collect();
    let o = run(a.tool("backup").args(["-q", "-a"]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let after: Vec<_> = std::fs::read_dir(&pool).unwrap().flatten().map(|e| e.file_name()).collect();
    assert_eq!(before, after, "a refused backup changed the pool");
}
