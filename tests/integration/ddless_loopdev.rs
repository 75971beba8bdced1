//! ddless on real block devices (loop devices; needs root and losetup):
//! the size comes from the kernel, O_DIRECT works, and a device target
//! smaller than the source is refused before anything is written.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::helpers::*;

pub struct Loop {
    pub dev: PathBuf,
}

impl Loop {
    pub fn attach(file: &Path, sizelimit: Option<u64>) -> Loop {
        Self::attach_with(file, sizelimit, false)
    }

    pub fn attach_with(file: &Path, sizelimit: Option<u64>, read_only: bool) -> Loop {
        let mut c = Command::new("losetup");
        c.args(["--find", "--show"]);
        if read_only {
            c.arg("--read-only");
        }
        if let Some(s) = sizelimit {
            c.arg("--sizelimit").arg(s.to_string());
        }
        let o = c.arg(file).output().expect("losetup");
        assert!(o.status.success(), "losetup: {}", String::from_utf8_lossy(&o.stderr));
        Loop { dev: PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()) }
    }
}

impl Drop for Loop {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.dev).status();
    }
}

pub fn loop_devices_usable() -> bool {
    let why = if !is_root() {
        "tests are not running as root"
    } else if which("losetup").is_none() {
        "losetup not installed (util-linux)"
    } else if !Path::new("/dev/loop-control").exists() {
        "no /dev/loop-control"
    } else {
        return real_component("loop devices", true, "");
    };
    real_component("loop devices", false, why)
}

#[test]
fn device_source_and_target_with_direct_io() {
    if !loop_devices_usable() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (sfile, tfile, sums) = (d.path().join("s.img"), d.path().join("t.img"), d.path().join("sums"));
    let mut rng = Rng(21);
    let mut data = rng.bytes(32 << 20);
    // The backing file is larger than the device: a size found by seeking
    // the file would be wrong, BLKGETSIZE64 is right.
    let mut backing = data.clone();
    backing.extend(rng.bytes(1 << 20));
    write(&sfile, &backing);
    write(&tfile, &vec![0u8; 32 << 20]);
    let s = Loop::attach(&sfile, Some(32 << 20));
    let t = Loop::attach(&tfile, None);
    let o = run(tool("ddless")
        .arg("-d")
        .arg("-s")
        .arg(&s.dev)
        .arg("-c")
        .arg(&sums)
        .arg("-t")
        .arg(&t.dev)
        .args(["-v", "--json"]));
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("direct IO 1"));
    assert!(stderr(&o).contains(&format!("source device size {} bytes", 32 << 20)), "{}", stderr(&o));
    let r: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(r["source_size"], 32u64 << 20);
    assert_eq!(r["segments_changed"], 2048);
    let got = std::fs::read(&t.dev).unwrap();
    assert_eq!(got, data);
    // Change the source device through the device node, copy again with O_DIRECT.
    mutate_segments(&mut rng, &mut data, 10);
    std::fs::write(&s.dev, &data).unwrap();
    let o =
        run(tool("ddless").arg("-d").arg("-s").arg(&s.dev).arg("-c").arg(&sums).arg("-t").arg(&t.dev).arg("--json"));
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(std::fs::read(&t.dev).unwrap(), data);
    assert_eq!(read(&sums), reference_checksums(&data));
    // The read test reads the device with O_DIRECT.
    let out = ok(tool("ddless").arg("-d").arg("-s").arg(&s.dev));
    assert!(out.starts_with(&format!("read {} bytes in 4 buffers", 32 << 20)), "{out}");
    let out =
        ok(tool("ddless").arg("-d").arg("-z").arg("-s").arg(&s.dev).args(["--zone-count", "4", "--zone-sample", "1"]));
    assert_eq!(out.lines().filter(|l| !l.starts_with('#')).count(), 4);
}

#[test]
fn device_target_smaller_than_source_is_refused() {
    if !loop_devices_usable() {
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let (sfile, tfile, sums) = (d.path().join("s.img"), d.path().join("t.img"), d.path().join("sums"));
    write(&sfile, &Rng(22).bytes(8 << 20));
    write(&tfile, &vec![0x55u8; 4 << 20]);
    let t = Loop::attach(&tfile, None);
    fails_with(
        tool("ddless").arg("-s").arg(&sfile).arg("-c").arg(&sums).arg("-t").arg(&t.dev),
        &["smaller than the source", &t.dev.display().to_string(), "4194304 bytes"],
    );
    assert!(!sums.exists());
    assert_eq!(std::fs::read(&t.dev).unwrap(), vec![0x55u8; 4 << 20], "refused copy wrote to the device");
}
