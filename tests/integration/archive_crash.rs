//! kill -9 at every step of a backup (and of a restore), then a rerun: the
//! newest snapshot must be byte-identical to the source as of the rerun,
//! every snapshot must match its checksum history, and no ddmap change may
//! be lost. The source is a command source whose finish clears its map only
//! on success, as a target node's would.

use std::os::unix::process::ExitStatusExt;
use std::process::Command;

use crate::archive_lab::*;
use crate::helpers::*;

const MB: usize = 1 << 20;
const VOL: &str = "iscsi_lv_k_bk";

/// Every crash point of the backup sequence (and of what it calls).
const BACKUP_STEPS: &[&str] = &[
    "backup.after-lock",
    "backup.after-prepare",
    "backup.after-create",
    "history.after-base",
    "ddless.after-invalidate-sync",
    "ddless.after-target-sync",
    "ddless.before-final-sync",
    "backup.after-copy",
    "backup.after-integrity",
    "history.after-delta",
    "backup.after-history",
    "backup.after-snapshot",
    "history.after-head",
    "backup.after-commit",
    "atomic.before-rename:1",
    "atomic.before-rename:3",
    "atomic.before-rename:5",
];

struct Site {
    a: Archive,
    data: Vec<u8>,
    rng: Rng,
}

impl Site {
    fn new(b: Backend) -> Option<Site> {
        let pool = PoolLab::new(b)?;
        let a = Archive::new(pool, "");
        let d = a.dir.path().display().to_string();
        let data = Rng(11).bytes(3 * MB + 4321);
        write(&a.path("src.img"), &data);
        write(&a.path("src.ddmap"), &ddmap_bytes(data.len() as u64, &[]));
        let prep = a.path("prepare.sh");
        write(
            &prep,
            format!("#!/bin/sh\nprintf '{{\"path\":\"{d}/src.img\",\"size\":%s,\"ddmap\":\"{d}/src.ddmap\",\"ddmap_state\":\"CLEAN\"}}' $(stat -c %s {d}/src.img)\n").as_bytes(),
        );
        // On success the target node clears its map (the changes are archived).
        let fin = a.path("finish.sh");
        write(
            &fin,
            format!(
                "#!/bin/sh\nif [ \"$SANTOOLS_BACKUP_STATUS\" = success ]; then cp {d}/empty.ddmap {d}/src.ddmap; fi\n"
            )
            .as_bytes(),
        );
        write(&a.path("empty.ddmap"), &ddmap_bytes(data.len() as u64, &[]));
        Command::new("chmod").arg("+x").arg(&prep).arg(&fin).status().unwrap();
        a.write_config(&format!(
            "[[archive.volumes]]\nname = \"lv_k\"\npool = \"{{pool}}\"\nsource = {{ kind = \"command\", prepare = [\"{}\"], finish = [\"{}\"] }}\n",
            prep.display(),
            fin.display()
        ));
        Some(Site { a, data, rng: Rng(77) })
    }

    /// A day of writes on the target node: segments change and are flagged.
    fn write_some(&mut self, count: usize) {
        let segs = self.data.len().div_ceil(SEG) as u64;
        let mut map = read(&self.a.path("src.ddmap"));
        for _ in 0..count {
            let s = self.rng.below(segs);
            let end = ((s as usize + 1) * SEG).min(self.data.len());
            self.rng.fill(&mut self.data[s as usize * SEG..end]);
            let off = 20 + (s / 32) as usize * 4;
            let mut w = u32::from_le_bytes(map[off..off + 4].try_into().unwrap());
            w |= 1 << (s % 32);
            map[off..off + 4].copy_from_slice(&w.to_le_bytes());
        }
        write(&self.a.path("src.img"), &self.data);
        write(&self.a.path("src.ddmap"), &map);
    }

    fn check(&self, label: &str) {
        let snaps = self.a.pool.snapshots(VOL);
        let newest = snaps.last().unwrap_or_else(|| panic!("{label}: no snapshot"));
        let t = self.a.path(&format!("restored-{}.img", snaps.len()));
        ok(self.a.tool("restore").args(["-q", "-s", &format!("{}/{VOL}@{newest}", self.a.pool.name), "-t"]).arg(&t));
        assert!(read(&t) == self.data, "{label}: the newest snapshot differs from the source");
        std::fs::remove_file(&t).unwrap();
        let o = run(self.a.tool("snapcheck").args(["-d", "--count", "1000"]));
        let text = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{label}: snapcheck: {text}{}", stderr(&o));
        assert_eq!(text.matches("ok ").count(), snaps.len(), "{label}: every snapshot must match its history:\n{text}");
    }
}

fn kill_at_every_step(b: Backend) {
    let Some(mut site) = Site::new(b) else { return };
    ok(site.a.tool("backup").args(["-q", "-a"]));
    site.check("first backup");
    for step in BACKUP_STEPS {
        site.write_some(5);
        let o = run(site.a.tool("backup").args(["-q", "-a", "-i"]).env("SANTOOLS_FAILPOINT", step));
        assert_eq!(o.status.signal(), Some(9), "{step}: the failpoint was not reached: {}{}", stdout(&o), stderr(&o));
        // More writes happen before the rerun.
        site.write_some(2);
        let o = run(site.a.tool("backup").args(["-q", "-a", "-i"]));
        assert_eq!(o.status.code(), Some(0), "{step}: rerun failed: {}{}", stdout(&o), stderr(&o));
        site.check(step);
    }
    // Nothing of ours is left behind.
    let leftovers: Vec<String> = std::fs::read_dir(site.a.pool.ddless_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

fn killed_restore_resumes(b: Backend) {
    let Some(site) = Site::new(b) else { return };
    ok(site.a.tool("backup").args(["-q", "-a"]));
    let t = site.a.path("restore-me.img");
    let src = format!("{}/{VOL}", site.a.pool.name);
    for step in ["restore.after-claim", "ddless.after-target-sync", "restore.after-copy"] {
        let o = run(site.a.tool("restore").args(["-q", "-s", &src, "-t"]).arg(&t).env("SANTOOLS_FAILPOINT", step));
        assert_eq!(o.status.signal(), Some(9), "{step}: {}", stderr(&o));
        assert!(t.exists(), "{step}: the target should exist");
        let o = run(site.a.tool("restore").args(["-s", &src, "-t"]).arg(&t));
        assert_eq!(o.status.code(), Some(0), "{step}: {}{}", stdout(&o), stderr(&o));
        assert!(stdout(&o).contains("(resumed)"), "{step}: {}", stdout(&o));
        assert!(read(&t) == site.data, "{step}: restored bytes differ");
        std::fs::remove_file(&t).unwrap();
    }
    // A target that replaced the half-written one is not taken over.
    let o = run(site
        .a
        .tool("restore")
        .args(["-q", "-s", &src, "-t"])
        .arg(&t)
        .env("SANTOOLS_FAILPOINT", "restore.after-claim"));
    assert_eq!(o.status.signal(), Some(9));
    std::fs::remove_file(&t).unwrap();
    write(&t, b"someone else's file");
    fails_with(site.a.tool("restore").args(["-s", &src, "-t"]).arg(&t), &["refusing to overwrite"]);
    assert_eq!(read(&t), b"someone else's file");
}

macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod on_zfs { $( #[test] fn $name() { super::$name(super::Backend::Zfs) } )* }
        mod on_btrfs { $( #[test] fn $name() { super::$name(super::Backend::Btrfs) } )* }
        mod on_dir { $( #[test] fn $name() { super::$name(super::Backend::Dir) } )* }
    };
}

on_every_backend!(kill_at_every_step, killed_restore_resumes);
