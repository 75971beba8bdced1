//! The LVM tools on a real volume group: metadata-only LVM on a loop device
//! (no device-mapper here, so `activation=0`): create, extend, report and
//! refusals run for real; snapshot creation is checked as its exact plan.
//! File copies run for real with dd, ddless and gzip; iostat-top reads this
//! machine's /proc/diskstats.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::helpers::*;

struct LoopVg {
    vg: String,
    dev: String,
    config: String,
    _dir: tempfile::TempDir,
}

impl LoopVg {
    fn new() -> Option<LoopVg> {
        let have = is_root() && which("losetup").is_some() && which("vgcreate").is_some();
        if !real_component("lvm2 on a loop device", have, "needs root, losetup and lvm2") {
            return None;
        }
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("pv.img");
        std::fs::File::create(&img).unwrap().set_len(64 << 20).unwrap();
        let o = Command::new("losetup").args(["-f", "--show"]).arg(&img).output().unwrap();
        assert!(o.status.success(), "losetup: {}", String::from_utf8_lossy(&o.stderr));
        let dev = String::from_utf8(o.stdout).unwrap().trim().to_string();
        let config = format!("global{{activation=0}} devices{{filter=[\"a|^{dev}$|\",\"r|.*|\"] scan_lvs=0}}");
        let vg = format!("vg_st11_{}_{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let v = LoopVg { vg, dev, config, _dir: dir };
        v.lvm(&["pvcreate", "-q", &v.dev.clone()]);
        v.lvm(&["vgcreate", "-q", &v.vg.clone(), &v.dev.clone()]);
        Some(v)
    }

    fn lvm(&self, args: &[&str]) -> String {
        let o = Command::new(args[0])
            .arg("--config")
            .arg(&self.config)
            .args(&args[1..])
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .output()
            .unwrap();
        assert!(o.status.success(), "{args:?}: {}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8(o.stdout).unwrap()
    }

    fn lv_size(&self, lv: &str) -> Option<u64> {
        let out = self.lvm(&[
            "lvs",
            "--reportformat",
            "json",
            "--units",
            "b",
            "--nosuffix",
            "-o",
            santools::lvm::report::LV_FIELDS,
            &self.vg.clone(),
        ]);
        santools::lvm::report::parse_lvs(&out).unwrap().into_iter().find(|l| l.name == lv).map(|l| l.size)
    }
}

impl Drop for LoopVg {
    fn drop(&mut self) {
        let q = |args: &[&str]| {
            let _ = Command::new(args[0])
                .arg("--config")
                .arg(&self.config)
                .args(&args[1..])
                .env("LVM_SUPPRESS_FD_WARNINGS", "1")
                .output();
        };
        q(&["vgremove", "-q", "-f", &self.vg]);
        q(&["pvremove", "-q", &self.dev]);
        let _ = Command::new("losetup").args(["-d", &self.dev]).output();
    }
}

fn lvm_tool(name: &str, v: &LoopVg) -> Command {
    let mut c = tool(name);
    c.arg("--lvm-config").arg(&v.config);
    c
}

#[test]
fn lvm_copy_prepare_creates_then_extends_the_target_volume() {
    let Some(v) = LoopVg::new() else { return };
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    std::fs::File::create(&src).unwrap().set_len(8 << 20).unwrap();
    let target = format!("lvm:/dev/{}/lv_copy", v.vg);
    let out = ok(lvm_tool("lvm-copy", &v).args(["-p", "-t", &target, "-s"]).arg(format!("file:{}", src.display())));
    assert!(out.contains(&format!("lvcreate --name lv_copy --size 8388608b {}", v.vg)), "{out}");
    assert_eq!(v.lv_size("lv_copy"), Some(8 << 20));
    std::fs::File::options().write(true).open(&src).unwrap().set_len(12 << 20).unwrap();
    let out = ok(lvm_tool("lvm_copy", &v).args(["-p", "-t", &target, "-s"]).arg(format!("file:{}", src.display())));
    assert!(out.contains(&format!("lvextend --size 12582912b {}/lv_copy", v.vg)), "{out}");
    assert_eq!(v.lv_size("lv_copy"), Some(12 << 20));
    // Prepared: nothing left to do.
    let out =
        ok(lvm_tool("lvm-copy", &v).args(["-p", "-N", "-t", &target, "-s"]).arg(format!("file:{}", src.display())));
    assert_eq!(out, "");
}

#[test]
fn lvm_snapshots_are_planned_by_the_seed_rule_and_remove_refuses_origins() {
    let Some(v) = LoopVg::new() else { return };
    v.lvm(&["lvcreate", "-q", "--name", "lv_origin", "--size", "40m", &v.vg.clone()]);
    let path = format!("/dev/{}/lv_origin", v.vg);
    let err = fails_with(lvm_tool("lvm-snap-remove", &v).args(["-s", &path]), &["is not a snapshot", "refusing"]);
    assert!(err.contains("lv_origin"));
    assert_eq!(v.lv_size("lv_origin"), Some(40 << 20));
    // 20% of 40 MiB is 8 MiB: two 4 MiB extents.
    let out = ok(lvm_tool("lvm-snap-create", &v).args(["-N", "-s", &path]));
    assert!(
        out.contains("lvcreate --config")
            && out.contains(&format!("--snapshot --name lv_origin_snap --size 8388608b {}/lv_origin", v.vg)),
        "{out}"
    );
    assert!(out.ends_with(&format!("/dev/{}/lv_origin_snap\n", v.vg)), "{out}");
    let out = ok(lvm_tool("lvm_snap_create", &v).args(["-N", "-s", &path, "-t", "bkup", "-n", "25%"]));
    assert!(out.contains("--name lv_origin_bkup --size 12582912b"), "{out}");
    fails_with(
        lvm_tool("lvm-snap-create", &v).args(["-N", "-s", &format!("/dev/{}/lv_missing", v.vg)]),
        &["does not exist"],
    );
    assert_eq!(ok(tool("lvm-devsize").arg(&v.dev)), format!("{}\n", 64 << 20));
}

fn copy(src: &Path, dst: &str, extra: &[&str]) -> String {
    ok(tool("lvm-copy").arg("-s").arg(format!("file:{}", src.display())).args(["-t", dst]).args(extra))
}

#[test]
fn lvm_copy_between_files_with_dd_ddless_and_gzip() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    let mut data = Rng(11).bytes(3 << 20);
    write(&src, &data);
    let dst: PathBuf = d.path().join("dst.img");
    copy(&src, &format!("file:{}", dst.display()), &[]);
    assert_eq!(read(&dst), data);
    mutate_segments(&mut Rng(12), &mut data, 5);
    write(&src, &data);
    let sums = d.path().join("dst.ddless");
    copy(&src, &format!("file:{}", dst.display()), &["-m", "ddless", "-o", &format!("-c {}", sums.display())]);
    assert_eq!(read(&dst), data);
    assert!(sums.exists());
    let gz = d.path().join("dst.img.gz");
    copy(&src, &format!("file:{}", gz.display()), &["-z"]);
    let o = Command::new("gzip").arg("-dc").arg(&gz).output().unwrap();
    assert_eq!(o.stdout, data);
    fails_with(tool("lvm-copy").args(["-s", "file:relative", "-t", "file:/tmp/x"]), &["expected file:"]);
    fails_with(
        tool("lvm-copy").arg("-s").arg(format!("file:{}", src.display())).args([
            "-t",
            "file:host1:/x",
            "-m",
            "ddless",
            "-o",
            "-c /x",
        ]),
        &["remote"],
    );
}

/// Finding T8 (attack-targets): a target that is the source under another
/// spelling (hard link, `./`, symlink) was copied onto: dd truncated it and
/// the source was lost, exit 0.
#[test]
fn lvm_copy_refuses_a_target_that_is_its_source() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("src.img");
    let data = Rng(13).bytes(3 << 20);
    write(&src, &data);
    std::fs::hard_link(&src, d.path().join("hard.img")).unwrap();
    std::os::unix::fs::symlink(&src, d.path().join("link.img")).unwrap();
    for other in ["hard.img", "./src.img", "link.img"] {
        let t = format!("file:{}", d.path().join(other).display());
        for extra in [&[][..], &["-z"][..], &["-N"][..]] {
            fails_with(
                tool("lvm-copy").arg("-s").arg(format!("file:{}", src.display())).args(["-t", &t]).args(extra),
                &["source", "target", "same file", "nothing was changed"],
            );
        }
        assert_eq!(read(&src), data, "{other}");
    }
    fails_with(
        tool("lvm-copy").args(["-s", "lvm:/dev/vg0/lv0", "-t", "lvm:/dev/vg0/lv0", "-N"]),
        &["same logical volume"],
    );
}

/// Finding T14 (attack-targets): a FIFO given as a device (lvm-devsize,
/// lvm-copy's source, a LUN's device in `targets apply`) blocked in open(2)
/// forever instead of being refused.
#[test]
fn lvm_devsize_and_lvm_copy_refuse_a_fifo_instead_of_hanging() {
    let d = tempfile::tempdir().unwrap();
    let fifo = d.path().join("fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let fifo_src = format!("file:{}", fifo.display());
    let dst = format!("file:{}", d.path().join("dst").display());
    for args in [vec!["lvm-devsize", fifo.to_str().unwrap()], vec!["lvm-copy", "-s", &fifo_src, "-t", &dst]] {
        let mut child = tool(args[0])
            .args(&args[1..])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t = std::time::Instant::now();
        while child.try_wait().unwrap().is_none() {
            if t.elapsed() > std::time::Duration::from_secs(20) {
                let _ = child.kill();
                panic!("{args:?} hangs on a FIFO");
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
        assert!(stderr(&o).contains("FIFO"), "{args:?}: {}", stderr(&o));
    }
    assert!(!d.path().join("dst").exists());
}

#[test]
fn iostat_top_reads_this_machines_devices() {
    let out = ok(tool("iostat-top").args(["-n", "2", "-i", "0.2", "--json", "-d", "loop,vd,sd,nvme,zram,dm-"]));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    for l in lines {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        let devs = v.as_array().unwrap();
        assert!(!devs.is_empty(), "no devices in {l}");
        for d in devs {
            for k in [
                "device",
                "name",
                "reads_per_sec",
                "write_bytes_per_sec",
                "in_flight",
                "io_ms",
                "avg_read_bytes",
                "avg_write_bytes",
            ] {
                assert!(d.get(k).is_some(), "{k} missing in {d}");
            }
        }
    }
    let out = ok(tool("lvm-iostat").args(["-n", "1", "-i", "0.2", "-d", "loop,vd,sd,nvme,zram"]));
    assert!(out.lines().all(|l| l.contains(" reads ") && l.contains(" avg_write ")), "{out}");
    fails_with(tool("iostat-top").args(["-n", "1", "-i", "0"]), &["--interval"]);
}
