//! lun-snapshot: the target-node half of a backup, for real. A "target
//! node" (tgtd on a probed-free loopback address, a btrfs file system on a
//! loop device holding a file-backed LUN) is reached through a real sshd;
//! the archive's `command` source runs `lun-snapshot create/release
//! --node` there, reads the exported snapshot while the volume is being
//! written, and stores it. The archive's snapshot must equal the volume at
//! snapshot time, the second backup must read only what the map flags,
//! and only the archive's initiator may see the export.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::archive_lab::{image_of, Archive, Backend, PoolLab};
use crate::helpers::*;
use crate::iscsi_lab::{iscsi_tools_present, libiscsi};
use crate::ssh_lab::Sshd;
use crate::targets_live::Tgtd;

const ARCHIVE_IQN: &str = "iqn.2024-01.test:archive-host";
const MIB: usize = 1 << 20;

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes 4 KiB blocks at pseudo-random offsets of `path` once `go`
/// exists, until `stop`.
fn writer(path: PathBuf, go: PathBuf, stop: Arc<AtomicBool>, writes: Arc<AtomicU64>) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        while !go.exists() && !stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut f = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        let len = f.metadata().unwrap().len();
        let mut n = 1u64;
        while !stop.load(Ordering::Relaxed) {
            let off = (n.wrapping_mul(2_654_435_761) % (len / 4096)) * 4096;
            f.seek(SeekFrom::Start(off)).unwrap();
            f.write_all(&random_bytes(4096, n)).unwrap();
            f.sync_data().unwrap();
            writes.fetch_add(1, Ordering::Relaxed);
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
    })
}

fn restore_snapshot(a: &Archive, volume: &str, snap: &str, to: &Path) -> Vec<u8> {
    let _ = std::fs::remove_file(to);
    let _ = std::fs::remove_file(to.with_extension("img.restore.json"));
    ok(a.tool("restore").args(["-q", "-s", &format!("{}/{volume}@{snap}", a.pool.name), "-t"]).arg(to));
    image_of(to)
}

/// The archive reads the export with its native initiator (`url`).
#[test]
fn archive_backs_up_a_lun_snapshot_over_ssh_and_iscsi_while_the_volume_is_written() {
    end_to_end(true)
}

/// The archive reads the snapshot file (`path`: archive and node on one host).
#[test]
fn archive_backs_up_a_lun_snapshot_over_ssh_by_path_while_the_volume_is_written() {
    end_to_end(false)
}

fn end_to_end(via_url: bool) {
    if !iscsi_tools_present() {
        real_component("tgt", false, "tgtd/tgtadm are needed");
        return;
    }
    let Some(node_fs) = PoolLab::new(Backend::Btrfs) else { return };
    let Some(pool) = PoolLab::new(Backend::Dir) else { return };
    let Some(sshd) = Sshd::start() else { return };
    let tgt = Tgtd::start();
    let luns = node_fs.path.clone().unwrap().join("luns");
    std::fs::create_dir_all(&luns).unwrap();
    let volume = luns.join("vm 1.img");
    write(&volume, &random_bytes(32 * MIB, 7));

    let a = Archive::new(pool, "");
    let d = a.dir.path().to_path_buf();
    let maps = d.join("maps");
    let node_args = |sub: &str| -> Vec<String> {
        let mut v: Vec<String> = vec![bin().display().to_string(), "lun-snapshot".into(), sub.into()];
        v.extend(["--node".into(), sshd.addr.clone(), "--ssh-port".into(), sshd.port.to_string()]);
        v.extend(["--ssh-identity".into(), sshd.identity.display().to_string()]);
        v.extend(["--ssh-option".into(), format!("UserKnownHostsFile={}", sshd.known_hosts.display())]);
        v.extend(["--ssh-option".into(), "IdentitiesOnly=yes".into()]);
        v.extend(["--remote-santools".into(), bin().display().to_string()]);
        v.extend(["--initiator".into(), ARCHIVE_IQN.into(), "-C".into(), tgt.port.to_string()]);
        v.extend(["--map-dir".into(), maps.display().to_string()]);
        if via_url {
            v.extend(["--portal".into(), tgt.ip.clone()]);
        }
        v
    };
    // prepare: the snapshot over ssh, then (for the test's truth) a copy of
    // the volume as it is at snapshot time, then the writer may start.
    let prep = d.join("prepare.sh");
    let quoted = |v: &[String]| v.iter().map(|s| format!("'{s}'")).collect::<Vec<_>>().join(" ");
    write(
        &prep,
        format!(
            "#!/bin/sh\nset -e\n{} \"$1\" > '{d}/prepared.json'\ncp '{vol}' '{d}/expected.img'\ntouch '{d}/go'\ncat '{d}/prepared.json'\n",
            quoted(&node_args("create")),
            d = d.display(),
            vol = volume.display()
        )
        .as_bytes(),
    );
    std::process::Command::new("chmod").arg("+x").arg(&prep).status().unwrap();
    let fin = node_args("release");
    a.write_config(&format!(
        "[initiator]\nname = \"{ARCHIVE_IQN}\"\n\n[[archive.volumes]]\nname = \"lv_vm1\"\npool = \"{{pool}}\"\nsource = {{ kind = \"command\", prepare = [\"{}\", \"{}\"], finish = [{}] }}\n",
        prep.display(),
        volume.display(),
        fin.iter().chain([volume.display().to_string()].iter()).map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
    ));

    let stop = Arc::new(AtomicBool::new(false));
    let writes = Arc::new(AtomicU64::new(0));
    let w = writer(volume.clone(), d.join("go"), stop.clone(), writes.clone());
    // Slow the copy down enough that the writer certainly runs during it.
    let (code, r) = a.backup_json(&["-a", "-w", "1"]);
    assert_eq!(code, Some(0), "{r}\nsshd log: {}", sshd.log());
    let during = writes.load(Ordering::Relaxed);
    let first: serde_json::Value = serde_json::from_slice(&image_of(&d.join("prepared.json"))).unwrap();
    assert!(first.get("ddmap").is_none() && first.get("ddmap_state").is_none(), "{first}");
    assert_eq!(first["size"], 32 * MIB);
    assert_eq!((first.get("url").is_some(), first.get("path").is_some()), (via_url, !via_url), "{first}");

    // Round 2: a few known writes while nothing else runs, then a backup
    // that reads only the flagged segments.
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    std::fs::remove_file(d.join("go")).unwrap();
    assert!(during > 0, "the writer never ran during the first backup");
    let snaps = a.pool.snapshots("iscsi_lv_vm1_bk");
    assert_eq!(snaps.len(), 1, "{snaps:?}");
    let got = restore_snapshot(&a, "iscsi_lv_vm1_bk", &snaps[0], &d.join("r1.img"));
    let expected = image_of(&d.join("expected.img"));
    assert!(got == expected, "the archive's snapshot is not the volume at snapshot time");
    assert!(image_of(&volume) != expected, "the volume was not written after the snapshot");
    // Nothing stays exported.
    assert!(!tgt.show().contains("lun-snapshot"), "{}", tgt.show());

    std::thread::sleep(Duration::from_millis(1100)); // a new snapshot name
    let stop = Arc::new(AtomicBool::new(false));
    let w = writer(volume.clone(), d.join("never"), stop.clone(), Arc::new(AtomicU64::new(0)));
    stop.store(true, Ordering::Relaxed);
    w.join().unwrap();
    let (code, r) = a.backup_json(&["-a"]);
    assert_eq!(code, Some(0), "{r}");
    let second: serde_json::Value = serde_json::from_slice(&image_of(&d.join("prepared.json"))).unwrap();
    assert_eq!(second["ddmap_state"], "CLEAN", "{second}");
    // Every write after the first snapshot is in the map, nothing else:
    // at most one segment per 4 KiB write, far fewer than the 2048.
    let flagged = second["changed_segments"].as_u64().unwrap();
    assert!(flagged > 0 && flagged <= during.max(1) + 4 && flagged < 2048, "{second}");
    assert_eq!(r[0]["map_flagged_segments"], flagged, "{r}");
    let snaps = a.pool.snapshots("iscsi_lv_vm1_bk");
    assert_eq!(snaps.len(), 2, "{snaps:?}");
    let got = restore_snapshot(&a, "iscsi_lv_vm1_bk", &snaps[1], &d.join("r2.img"));
    assert!(got == image_of(&d.join("expected.img")), "second snapshot differs from the volume at snapshot time");
    assert!(!tgt.show().contains("lun-snapshot"), "{}", tgt.show());
}

/// The node side alone: the export admits only the archive's initiator and
/// is read-only; a failed backup keeps the changes, a successful one
/// consumes them; an unreleased snapshot is cleaned up by the next create;
/// a volume on a file system without reflinks is refused with nothing left.
#[test]
fn node_side_export_acl_outcomes_and_refusals() {
    if !iscsi_tools_present() {
        real_component("tgt", false, "tgtd/tgtadm are needed");
        return;
    }
    let Some(node_fs) = PoolLab::new(Backend::Btrfs) else { return };
    let tgt = Tgtd::start();
    let volume = node_fs.path.clone().unwrap().join("lun@1.img");
    write(&volume, &random_bytes(8 * MIB, 3));
    let port = tgt.port.to_string();
    let create = || -> serde_json::Value {
        let out = ok(tool("lun-snapshot")
            .args(["create", "--json", "--initiator", ARCHIVE_IQN, "-C", &port, "--portal"])
            .arg(&tgt.ip)
            .arg(&volume));
        serde_json::from_str(&out).unwrap()
    };
    let release = |status: &str| {
        ok(tool("lun-snapshot").args(["release", "--status", status, "-C", &port]).arg(&volume));
    };
    let p = create();
    let url = p["url"].as_str().unwrap().to_string();
    assert!(p.get("path").is_none(), "the protocol takes url or path, not both: {p}");
    assert!(url.starts_with(&format!("iscsi://{}/iqn.2024-01.org.santools.lun-snapshot.lun-1.img.", tgt.ip)), "{p}");
    // Only the archive's initiator sees it.
    let (_, seen) =
        libiscsi("iscsi-ls", &["-s", "-i", ARCHIVE_IQN, &format!("iscsi://{}", tgt.ip)], Duration::from_secs(30));
    assert!(seen.contains(p["iqn"].as_str().unwrap()), "{seen}");
    let (_, other) = libiscsi(
        "iscsi-ls",
        &["-s", "-i", "iqn.2024-01.test:stranger", &format!("iscsi://{}", tgt.ip)],
        Duration::from_secs(30),
    );
    assert!(!other.contains("lun-snapshot"), "{other}");
    assert!(tgt.show().contains("Readonly: Yes"), "{}", tgt.show());
    release("success");

    // Two writes in different segments; failure keeps them, success consumes.
    let mut f = std::fs::OpenOptions::new().write(true).open(&volume).unwrap();
    for off in [0u64, 5 * 16384 + 100] {
        f.seek(SeekFrom::Start(off)).unwrap();
        f.write_all(b"changed").unwrap();
    }
    f.sync_all().unwrap();
    assert_eq!(create()["changed_segments"], 2);
    release("failure");
    // Unreleased: the next create cleans up and still sees both changes.
    assert_eq!(create()["changed_segments"], 2);
    let p = create();
    assert_eq!((p["changed_segments"].as_u64(), p["ddmap_state"].as_str()), (Some(2), Some("CLEAN")), "{p}");
    // The archive's finish JSON on stdin says how it ended.
    let mut c = tool("lun-snapshot");
    c.args(["release", "-C", &port]).arg(&volume).env_remove("SANTOOLS_BACKUP_STATUS");
    let o = run_with_stdin(&mut c, br#"{"status": "success", "volume": "x"}"#);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(create()["changed_segments"], 0);
    release("failure");
    assert!(!tgt.show().contains("lun-snapshot"), "{}", tgt.show());

    // Refusals: its own files are not volumes;
    let own = node_fs.path.clone().unwrap().join(".lun-snapshot/lun@1.img/base.img");
    assert!(own.exists());
    let o = run(tool("lun-snapshot").args(["create", "--initiator", ARCHIVE_IQN, "-C", &port]).arg(&own));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a volume"), "{}", stderr(&o));
    // no initiator; a file system without reflinks (tmpfs-like
    // /dev/shm or a plain dir on ext4/overlay): exit 2, nothing exported.
    let o = run(tool("lun-snapshot").args(["create", "-C", &port]).arg(&volume));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("--initiator"), "{}", stderr(&o));
    let plain = tempfile::tempdir_in("/dev/shm").unwrap();
    let pv = plain.path().join("v.img");
    write(&pv, &random_bytes(MIB, 1));
    let o = run(tool("lun-snapshot").args(["create", "--initiator", ARCHIVE_IQN, "-C", &port]).arg(&pv));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("cannot clone"), "{}", stderr(&o));
    // Finding T13 (attack-targets): the refusal left .lun-snapshot/v.img/lock behind.
    assert!(!plain.path().join(".lun-snapshot").exists(), "a refused create left its state directory");
    assert!(!tgt.show().contains("lun-snapshot"), "{}", tgt.show());
}

fn run_with_stdin(c: &mut std::process::Command, input: &[u8]) -> std::process::Output {
    use std::process::Stdio;
    let mut child = c.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input).unwrap();
    child.wait_with_output().unwrap()
}

/// Finding (attack-final): `--wait 18446744073709551615` panicked
/// (exit 101, "overflow when adding duration to instant") after creating
/// the volume's state directory; it is refused by the parser, naming
/// --wait, before anything is written.
#[test]
fn an_absurd_wait_is_refused_by_name_before_anything_is_written() {
    let d = tempfile::tempdir().unwrap();
    let vol = d.path().join("vol.img");
    std::fs::write(&vol, vec![0u8; 65536]).unwrap();
    for w in ["18446744073709551615", "604801", "-1"] {
        let o = run(tool("lun-snapshot")
            .args(["create", "--initiator", "iqn.2024-01.test:archive", &format!("--wait={w}"), "--state-dir"])
            .arg(d.path().join("st"))
            .arg(&vol));
        assert_eq!(o.status.code(), Some(2), "--wait {w}: {}", stderr(&o));
        assert!(stderr(&o).contains("--wait"), "{}", stderr(&o));
        let mut left: Vec<_> = std::fs::read_dir(d.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        left.sort();
        assert_eq!(left, ["vol.img"], "--wait {w}");
    }
}
