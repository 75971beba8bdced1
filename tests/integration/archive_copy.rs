//! zfs-copy between two zfs-fuse pools on this machine, and to and from a
//! "remote" host: a real sshd on a loopback address with generated keys
//! (host keys checked against the known_hosts the test writes).

use std::process::Command;

use crate::archive_lab::*;
use crate::helpers::*;
use crate::ssh_lab::Sshd;

const VOL: &str = "iscsi_lv_c_bk";

struct Lab {
    a: Archive,
    b: PoolLab,
    tree: String,
}

fn zfs(args: &[&str]) -> String {
    let o = Command::new("zfs").args(args).output().unwrap();
    assert!(o.status.success(), "zfs {args:?}: {}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn guid(obj: &str) -> String {
    zfs(&["get", "-Hp", "-o", "value", "guid", obj]).trim().to_string()
}

fn userrefs(obj: &str) -> String {
    zfs(&["get", "-Hp", "-o", "value", "userrefs", obj]).trim().to_string()
}

fn setup(extra: &str) -> Option<Lab> {
    let pa = PoolLab::new(Backend::Zfs)?;
    let b = PoolLab::new(Backend::Zfs)?;
    let tree = format!("{}/tree", b.name);
    zfs(&["create", &tree]);
    let vols = format!(
        "[[archive.volumes]]\nname = \"vg/lv_c\"\npool = \"{{pool}}\"\nsource = {{ kind = \"file\", path = \"{{dir}}/c.img\" }}\n\n{}\n[archive.pools.\"{tree}\"]\nbackend = \"zfs\"\n\n[archive.copy]\n{extra}",
        b.pool_toml()
    );
    let a = Archive::new(pa, &vols);
    Some(Lab { a, b, tree })
}

/// Backs up with a changed byte and waits until the name is in the past.
fn night(a: &Archive, n: u8) -> String {
    let mut data = if a.path("c.img").exists() { image_of(&a.path("c.img")) } else { Rng(4).bytes(2 << 20) };
    data[n as usize * 70_000] ^= 0x5a;
    write(&a.path("c.img"), &data);
    ok(a.tool("backup").args(["-q", "-a"]));
    let newest = a.pool.snapshots(VOL).into_iter().max().unwrap();
    let at = santools::archive::snapshot_time::managed_timestamp(&newest, &jiff::tz::TimeZone::UTC).unwrap();
    while jiff::Timestamp::now() <= at {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    newest
}

fn copy(a: &Archive, args: &[&str]) -> serde_json::Value {
    let o = run(a.tool("zfs-copy").args(args).arg("--json"));
    assert!(o.status.success(), "zfs-copy {args:?}: {}\n{}", stdout(&o), stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn local_copies_full_incremental_intermediates_force_and_tree() {
    let Some(l) = setup("") else { return };
    let (a, pa, pb) = (&l.a, l.a.pool.name.clone(), l.b.name.clone());
    let s1 = night(a, 1);
    let s2 = night(a, 2);
    let src = |s: &str| format!("{pa}/{VOL}@{s}");
    let dst = format!("{pb}/{VOL}");
    let tag = format!("santools-copy-local_{pb}_{VOL}");

    // Full.
    let r = copy(a, &["-s", &src(&s1), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "full", "{r}");
    assert_eq!(guid(&format!("{dst}@{s1}")), guid(&src(&s1)));
    assert_eq!((userrefs(&src(&s1)), userrefs(&format!("{dst}@{s1}"))), ("1".into(), "1".into()));
    assert_eq!(r["hold_tag"], tag.as_str());
    // A full copy onto an existing target is refused and names the common snapshot.
    fails_with(a.tool("zfs-copy").args(["-s", &src(&s2), "-t", &dst]), &["target exists", &s1]);
    // -i: the hold moves to the new base on both sides.
    let r = copy(a, &["-i", &s1, "-s", &src(&s2), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "incremental", "{r}");
    assert_eq!((userrefs(&src(&s1)), userrefs(&format!("{dst}@{s1}"))), ("0".into(), "0".into()));
    assert_eq!((userrefs(&src(&s2)), userrefs(&format!("{dst}@{s2}"))), ("1".into(), "1".into()));
    // Rotation sees the base as held, and names the holder.
    let (_, list) = {
        let o = run(a.tool("zfs-list").arg("--json"));
        (o.status.code(), serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap())
    };
    let snaps = list[0]["volumes"][0]["snapshots"].as_array().unwrap().clone();
    assert!(snaps.iter().any(|s| s["name"] == s2.as_str() && s["holds"][0] == tag.as_str()), "{list}");
    // Again: up to date, nothing sent.
    let r = copy(a, &["-i", &s1, "-s", &src(&s2), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "up_to_date", "{r}");
    // -I over the TCP data path: the intermediate snapshot comes along.
    let s3 = night(a, 3);
    let s4 = night(a, 4);
    let r = copy(a, &["-I", &s2, "-s", &src(&s4), "-t", &dst, "--transport", "tcp"]);
    assert_eq!((r["step"]["intermediates"].as_bool(), r["transport"].as_str()), (Some(true), Some("tcp")), "{r}");
    assert_eq!(guid(&format!("{dst}@{s3}")), guid(&src(&s3)));
    assert_eq!(guid(&format!("{dst}@{s4}")), guid(&src(&s4)));
    // A target that diverged is refused without -F, rolled back with it.
    zfs(&["snapshot", &format!("{dst}@operator-made")]);
    let s5 = night(a, 5);
    fails_with(a.tool("zfs-copy").args(["-i", &s4, "-s", &src(&s5), "-t", &dst]), &["diverged", "operator-made", "-F"]);
    let r = copy(a, &["-i", &s4, "-s", &src(&s5), "-t", &dst, "-F"]);
    assert_eq!(r["step"]["rollback"], true, "{r}");
    assert!(!l.b.snapshots(VOL).contains(&"operator-made".to_string()));
    // -n copies nothing.
    let s6 = night(a, 6);
    let r = copy(a, &["-n", "-i", &s5, "-s", &src(&s6), "-t", &dst]);
    assert_eq!(r["dry_run"], true);
    assert!(!l.b.snapshots(VOL).contains(&s6));
    // -p: the whole tree with properties, into another pool.
    let r = copy(a, &["-s", &src(&s6), "-t", &l.tree, "-p"]);
    assert_eq!(r["step"]["kind"], "full", "{r}");
    let tree_vol = format!("{}/{VOL}", l.tree);
    assert_eq!(zfs(&["list", "-H", "-o", "name", "-t", "snapshot", "-r", &tree_vol]).lines().count(), 6);
    assert_eq!(
        zfs(&["get", "-H", "-o", "value", &format!("{NS}:snap_time"), &format!("{tree_vol}@{s6}")]).trim(),
        zfs(&["get", "-H", "-o", "value", &format!("{NS}:snap_time"), &src(&s6)]).trim()
    );
    // Refusals: -p into the source's own pool, a missing snapshot, names.
    fails_with(a.tool("zfs-copy").args(["-s", &src(&s6), "-t", &pa, "-p"]), &["must differ"]);
    fails_with(
        a.tool("zfs-copy").args(["-s", &src("2000-01-01_00:00:00"), "-t", &format!("{pb}/x_bk")]),
        &["does not exist"],
    );
    // Without @SNAP the newest snapshot is meant.
    let r = copy(a, &["-n", "-i", &s5, "-s", &format!("{pa}/{VOL}"), "-t", &dst]);
    assert_eq!((r["step"]["to"].as_str(), r["source"].as_str()), (Some(s6.as_str()), Some(src(&s6).as_str())), "{r}");
    fails_with(a.tool("zfs-copy").args(["-s", &src(&s6), "-t", "x:tank/a b"]), &["invalid"]);
    fails_with(a.tool("zfs-copy").args(["-i", &s5, "-s", &src(&s6), "-t", &l.tree, "-p"]), &["-p"]);
}

/// kill -9 mid-stream: no snapshot arrives, and the next run copies it
/// and releases the hold the killed run left.
#[test]
fn a_killed_copy_leaves_nothing_and_runs_again() {
    let Some(l) = setup("") else { return };
    let (a, pa, pb) = (&l.a, l.a.pool.name.clone(), l.b.name.clone());
    let s1 = night(a, 1);
    let src = format!("{pa}/{VOL}@{s1}");
    let dst = format!("{pb}/{VOL}");
    for transport in ["ssh", "tcp"] {
        let o = run(a
            .tool("zfs-copy")
            .args(["-q", "-s", &src, "-t", &dst, "--transport", transport])
            .env("SANTOOLS_FAILPOINT", "copy.relay"));
        assert_eq!(o.status.code(), None, "not killed: {}", stderr(&o));
        assert!(l.b.snapshots(VOL).is_empty(), "{transport}: a snapshot arrived: {:?}", l.b.snapshots(VOL));
        assert_eq!(userrefs(&src), "1", "the killed run's hold stays until the next run");
    }
    let r = copy(a, &["-s", &src, "-t", &dst]);
    assert_eq!(r["step"]["kind"], "full");
    assert_eq!(guid(&format!("{dst}@{s1}")), guid(&src));
    assert_eq!(userrefs(&src), "1");
}

#[test]
fn remote_copies_through_a_real_sshd() {
    let Some(sshd) = Sshd::start() else { return };
    let remote_config = sshd.path("remote.toml");
    let extra = format!(
        "{}remote_santools = {:?}\nremote_config = {:?}\nports = \"{}-{}\"\ndata_address = \"{}\"\n",
        sshd.ssh_toml(),
        bin(),
        remote_config,
        40000 + std::process::id() % 20000,
        40000 + std::process::id() % 20000 + 50,
        sshd.addr
    );
    let Some(l) = setup(&extra) else { return };
    let (a, pa, pb) = (&l.a, l.a.pool.name.clone(), l.b.name.clone());
    // The "remote" host's configuration knows only pool B.
    std::fs::write(
        &remote_config,
        format!(
            "[archive]\nnamespace = \"edu.remote\"\nlog_dir = {:?}\nlock_dir = {:?}\n{}",
            sshd.path("log"),
            sshd.path("lock"),
            l.b.pool_toml()
        ),
    )
    .unwrap();
    let s1 = night(a, 1);
    let s2 = night(a, 2);
    let host = &sshd.addr;
    let dst = format!("{host}:{pb}/{VOL}");
    let r = copy(a, &["-s", &format!("{pa}/{VOL}@{s1}"), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "full", "{r}\n{}", sshd.log());
    assert_eq!(guid(&format!("{pb}/{VOL}@{s1}")), guid(&format!("{pa}/{VOL}@{s1}")));
    // The far side recorded its hold under its own namespace.
    assert_eq!(
        zfs(&["get", "-H", "-o", "value", "edu.remote:holds", &format!("{pb}/{VOL}@{s1}")]).trim(),
        r["hold_tag"].as_str().unwrap()
    );
    // Incremental over the direct TCP data path into the remote host.
    let r = copy(a, &["-i", &s1, "-s", &format!("{pa}/{VOL}@{s2}"), "-t", &dst, "--transport", "tcp"]);
    assert_eq!(r["step"]["kind"], "incremental", "{r}");
    assert_eq!(guid(&format!("{pb}/{VOL}@{s2}")), guid(&format!("{pa}/{VOL}@{s2}")));
    // And back from the remote host, over TCP into this one.
    let r = copy(
        a,
        &["-s", &format!("{host}:{pb}/{VOL}@{s2}"), "-t", &format!("{pa}/iscsi_lv_back_bk"), "--transport", "tcp"],
    );
    assert_eq!(r["step"]["kind"], "full", "{r}");
    assert_eq!(guid(&format!("{pa}/iscsi_lv_back_bk@{s2}")), guid(&format!("{pa}/{VOL}@{s2}")));
    // A host key that does not match known_hosts is refused.
    std::fs::write(
        &sshd.known_hosts,
        format!(
            "[{host}]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmb0bogusbogusbogusbogusbogusbogusbogusbogus\n",
            sshd.port
        ),
    )
    .unwrap();
    fails_with(
        a.tool("zfs-copy").args(["-n", "-s", &format!("{pa}/{VOL}@{s2}"), "-t", &dst]),
        &["Host key verification failed"],
    );
}

/// btrfs and dir pools have no send stream zfs-copy could move: refused
/// before anything is held (a hold left behind would block rotation).
#[test]
fn copying_a_pool_without_send_receive_is_refused_before_anything_is_held() {
    let Some(pool) = PoolLab::new(Backend::Dir) else { return };
    let vols = "[[archive.volumes]]\nname = \"vg/lv_c\"\npool = \"{pool}\"\nsource = { kind = \"file\", path = \"{dir}/c.img\" }\n";
    let a = Archive::new(pool, vols);
    write(&a.path("c.img"), &Rng(5).bytes(1 << 20));
    ok(a.tool("backup").args(["-q", "-a"]));
    let snap = a.pool.snapshots(VOL).pop().unwrap();
    let before = ok(a.tool("zfs-list").arg("--json"));
    let src = format!("{}/{VOL}@{snap}", a.pool.name);
    for target in [format!("{}/iscsi_copy_bk", a.pool.name), format!("{}:{}/iscsi_copy_bk", "h", a.pool.name)] {
        let o = run(a.tool("zfs-copy").args(["-s", &src, "-t", &target]));
        assert_eq!(o.status.code(), Some(2), "{}{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains("cannot send or receive snapshots"), "{}", stderr(&o));
    }
    // Hostile names and hosts are refused before anything runs.
    for (s, t) in [
        (format!("{}/iscsi lv@{snap}", a.pool.name), "x/y".to_string()),
        (format!("{}/../x@{snap}", a.pool.name), "x/y".to_string()),
        (src.clone(), format!("{}/a/../b", a.pool.name)),
        (format!("-oProxyCommand=touch /tmp/pwn:{}/v@{snap}", a.pool.name), "h:x/y".to_string()),
        (src.clone(), "h h:x/y".to_string()),
    ] {
        let o = run(a.tool("zfs-copy").arg(format!("--source={s}")).arg(format!("--target={t}")));
        assert_eq!(o.status.code(), Some(2), "{s} -> {t}: {}{}", stdout(&o), stderr(&o));
        assert!(stderr(&o).contains("invalid") || stderr(&o).contains("cannot send"), "{s} -> {t}: {}", stderr(&o));
    }
    assert_eq!(ok(a.tool("zfs-list").arg("--json")), before, "nothing held, nothing created");
}

/// The TCP data path's receiving end (the agent, as zfs-copy starts it on
/// the target host): connections with a wrong token are closed unread and
/// never reach `zfs receive`; after 16 of them the receive gives up (exit
/// 2) and nothing was received.
#[test]
fn a_data_connection_with_a_wrong_token_is_refused() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::Stdio;
    let Some(pool) = PoolLab::new(Backend::Zfs) else { return };
    let a = Archive::new(pool, "");
    let mut agent = a
        .tool("zfs-copy-agent")
        .args(["receive", &a.pool.name, "iscsi_tok_bk", "--listen", "127.0.0.1", "--ports", "47300-47399"])
        .args(["--timeout", "60"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let token = "ab".repeat(32);
    writeln!(agent.stdin.take().unwrap(), "{token}").unwrap();
    let mut line = String::new();
    BufReader::new(agent.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let port = serde_json::from_str::<serde_json::Value>(&line).unwrap()["port"].as_u64().unwrap();
    let wrong = format!("SANTOOLS-COPY {}\n", "cd".repeat(32));
    for i in 0..16 {
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port as u16)) else { break };
        s.set_read_timeout(Some(std::time::Duration::from_secs(60))).unwrap();
        let _ = s.write_all(if i % 2 == 0 {
            wrong.as_bytes()
        } else {
            b"GET / HTTP/1.0\r\n\r\n...........................................................\n"
        });
        let _ = s.write_all(b"not a zfs stream");
        let mut buf = [0u8; 16];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)), "a wrong token got an answer");
    }
    let out = agent.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong token"), "{}", String::from_utf8_lossy(&out.stderr));
    let o = Command::new("zfs").args(["list", &format!("{}/iscsi_tok_bk", a.pool.name)]).output().unwrap();
    assert!(!o.status.success(), "something was received");
}

/// `btrfs subvolume show`'s UUID and Received UUID of a path.
fn btrfs_uuids(path: &std::path::Path) -> (String, String) {
    let o = Command::new("btrfs").args(["subvolume", "show"]).arg(path).output().unwrap();
    assert!(o.status.success(), "btrfs subvolume show {}: {}", path.display(), String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout).into_owned();
    let field = |k: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(k).map(|v| v.trim().to_string()))
            .unwrap_or_else(|| panic!("no {k} in {text}"))
    };
    (field("UUID:"), field("Received UUID:"))
}

/// The identity santools binds a btrfs snapshot's overlay file to
/// (props_file::identity: inode and birth time).
fn btrfs_identity_of(path: &std::path::Path) -> String {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).unwrap();
    let born = m.created().unwrap().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}:{born}", m.ino())
}

/// Snapshots of VOL on `pool` as santools lists them, with their holds.
fn listed(a: &Archive, pool: &str) -> Vec<(String, Vec<String>)> {
    let list: serde_json::Value = serde_json::from_str(&ok(a.tool("zfs-list").arg("--json"))).unwrap();
    let Some(p) = list.as_array().unwrap().iter().find(|p| p["name"] == pool) else { return Vec::new() };
    let name = format!("{pool}/{VOL}");
    let Some(v) = p["volumes"].as_array().unwrap().iter().find(|v| v["name"] == name.as_str()) else {
        return Vec::new();
    };
    v["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let holds = s["holds"].as_array().unwrap().iter().map(|h| h.as_str().unwrap().to_string()).collect();
            (s["name"].as_str().unwrap().to_string(), holds)
        })
        .collect()
}

/// btrfs pools replicate with `btrfs send [-p]` / `btrfs receive`: full,
/// -i, -I over TCP, holds moved, a diverged target refused and rolled
/// back with -F, a killed receive that never shows up as a snapshot, and
/// what btrfs cannot do (-p, a zfs stream) refused.
#[test]
fn btrfs_pools_copy_full_incremental_intermediates_and_force() {
    let Some(pa) = PoolLab::new(Backend::Btrfs) else { return };
    let Some(mut b) = PoolLab::new(Backend::Btrfs) else { return };
    b.name = "btcopy".into();
    let vols = format!(
        "[[archive.volumes]]\nname = \"vg/lv_c\"\npool = \"{{pool}}\"\nsource = {{ kind = \"file\", path = \"{{dir}}/c.img\" }}\n\n{}",
        b.pool_toml()
    );
    let a = Archive::new(pa, &vols);
    let (pa, pb) = (a.pool.name.clone(), b.name.clone());
    let (root_a, root_b) = (a.pool.path.clone().unwrap(), b.path.clone().unwrap());
    let snap_a = |s: &str| root_a.join(".snapshots").join(VOL).join(s);
    let snap_b = |s: &str| root_b.join(".snapshots").join(VOL).join(s);
    let src = |s: &str| format!("{pa}/{VOL}@{s}");
    let dst = format!("{pb}/{VOL}");
    let tag = format!("santools-copy-local_{pb}_{VOL}");
    let same_snapshot = |s: &str| {
        assert_eq!(image_of(&snap_b(s).join("image")), image_of(&snap_a(s).join("image")), "@{s} differs");
        // The received snapshot is known by the sender's UUID.
        assert_eq!(btrfs_uuids(&snap_b(s)).1, btrfs_uuids(&snap_a(s)).0, "@{s} is not the sender's snapshot");
    };
    let s1 = night(&a, 1);
    let s2 = night(&a, 2);

    // A killed receive leaves no snapshot santools would list, and the
    // next run removes what it left and copies.
    let o = run(a.tool("zfs-copy").args(["-q", "-s", &src(&s1), "-t", &dst]).env("SANTOOLS_FAILPOINT", "copy.relay"));
    assert_eq!(o.status.code(), None, "not killed: {}", stderr(&o));
    assert!(listed(&a, &pb).is_empty(), "a snapshot arrived: {:?}", listed(&a, &pb));
    let r = copy(&a, &["-s", &src(&s1), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "full", "{r}");
    same_snapshot(&s1);
    assert_eq!(b.snapshots(VOL), vec![s1.clone()], "the cut-off receive was not removed");
    // The target volume is the newest snapshot, writable.
    assert_eq!(image_of(&b.image(VOL)), image_of(&snap_a(&s1).join("image")));
    assert_eq!(listed(&a, &pb), vec![(s1.clone(), vec![tag.clone()])]);
    // A full copy onto it again is refused; -i moves the hold.
    fails_with(a.tool("zfs-copy").args(["-s", &src(&s2), "-t", &dst]), &["target exists", &s1]);
    let r = copy(&a, &["-i", &s1, "-s", &src(&s2), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "incremental", "{r}");
    same_snapshot(&s2);
    assert_eq!(listed(&a, &pb), vec![(s1.clone(), vec![]), (s2.clone(), vec![tag.clone()])]);
    assert!(listed(&a, &pa).iter().all(|(n, h)| (n == &s2) == (h == &vec![tag.clone()])), "{:?}", listed(&a, &pa));
    // -I over the TCP data path brings the snapshot in between.
    let s3 = night(&a, 3);
    let s4 = night(&a, 4);
    let r = copy(&a, &["-I", &s2, "-s", &src(&s4), "-t", &dst, "--transport", "tcp"]);
    assert_eq!(r["step"]["intermediates"], true, "{r}");
    same_snapshot(&s3);
    same_snapshot(&s4);
    assert_eq!(image_of(&b.image(VOL)), image_of(&snap_a(&s4).join("image")));
    let r = copy(&a, &["-i", &s2, "-s", &src(&s4), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "up_to_date", "{r}");
    // A snapshot made on the target: diverged, refused without -F.
    let o = Command::new("btrfs")
        .args(["subvolume", "snapshot", "-r"])
        .arg(root_b.join(VOL))
        .arg(snap_b("operator-made"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s5 = night(&a, 5);
    fails_with(a.tool("zfs-copy").args(["-i", &s4, "-s", &src(&s5), "-t", &dst]), &["diverged", "operator-made", "-F"]);
    let r = copy(&a, &["-i", &s4, "-s", &src(&s5), "-t", &dst, "-F"]);
    assert_eq!(r["step"]["rollback"], true, "{r}");
    same_snapshot(&s5);
    assert!(!b.snapshots(VOL).contains(&"operator-made".to_string()));
    // A receive that fails at once (a writable subvolume of an operator
    // already has the name: btrfs receive says "File exists") ends the run
    // with exit 2 instead of leaving the sender blocked on its pipe, and
    // the operator's subvolume is not taken for a cut-off receive.
    let s6 = night(&a, 6);
    let squatter = snap_b(&s6);
    let o = Command::new("btrfs").args(["subvolume", "create"]).arg(&squatter).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    std::fs::write(squatter.join("operator-notes"), b"mine").unwrap();
    for transport in ["ssh", "tcp"] {
        let mut child = a
            .tool("zfs-copy")
            .args(["-i", &s5, "-s", &src(&s6), "-t", &dst, "--transport", transport])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = std::time::Instant::now();
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if t0.elapsed() > std::time::Duration::from_secs(120) {
                let _ = child.kill();
                panic!("{transport}: zfs-copy hangs after the receive failed");
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert_eq!(status.code(), Some(2), "{transport}");
        assert_eq!(std::fs::read(squatter.join("operator-notes")).unwrap(), b"mine", "{transport}");
    }
    let o = Command::new("btrfs").args(["subvolume", "delete"]).arg(&squatter).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = copy(&a, &["-i", &s5, "-s", &src(&s6), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "incremental", "{r}");
    same_snapshot(&s6);
    // A copy killed after its receive, before its finish, leaves the
    // snapshots without the live volume: the next run still plans from
    // them and puts the volume back.
    let o = Command::new("btrfs").args(["subvolume", "delete"]).arg(root_b.join(VOL)).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r = copy(&a, &["-i", &s5, "-s", &src(&s6), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "up_to_date", "{r}");
    assert_eq!(image_of(&b.image(VOL)), image_of(&snap_a(&s6).join("image")));
    // -F that would have to delete a held snapshot deletes nothing.
    let held = snap_b("operator-held");
    let o =
        Command::new("btrfs").args(["subvolume", "snapshot", "-r"]).arg(root_b.join(VOL)).arg(&held).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let s7 = night(&a, 7);
    std::fs::write(
        root_b.join(".snapshots").join(VOL).join("operator-held.props.json"),
        serde_json::json!({ "identity": btrfs_identity_of(&held), "properties": {}, "holds": ["operator"] })
            .to_string(),
    )
    .unwrap();
    fails_with(a.tool("zfs-copy").args(["-i", &s6, "-s", &src(&s7), "-t", &dst, "-F"]), &["held"]);
    assert!(b.snapshots(VOL).contains(&"operator-held".to_string()) && b.snapshots(VOL).contains(&s6));
    // Only *_bk names are archive volumes (not the pool's `ddless` directory).
    fails_with(a.tool("zfs-copy").args(["-s", &src(&s7), "-t", &format!("{pb}/ddless")]), &["_bk"]);
    // What btrfs cannot do is refused, and nothing is left held for it.
    fails_with(a.tool("zfs-copy").args(["-s", &src(&s7), "-t", &pb, "-p"]), &["btrfs", "-I"]);
    assert!(listed(&a, &pa).iter().all(|(n, h)| (n == &s6) == (h == &vec![tag.clone()])), "{:?}", listed(&a, &pa));
}

/// A zfs send stream cannot go into a btrfs pool nor the other way round:
/// refused before anything is held.
#[test]
fn streams_of_one_backend_are_not_received_by_another() {
    let Some(pz) = PoolLab::new(Backend::Zfs) else { return };
    let Some(mut b) = PoolLab::new(Backend::Btrfs) else { return };
    b.name = "btmixed".into();
    let vols = format!(
        "[[archive.volumes]]\nname = \"vg/lv_c\"\npool = \"{{pool}}\"\nsource = {{ kind = \"file\", path = \"{{dir}}/c.img\" }}\n\n{}",
        b.pool_toml()
    );
    let a = Archive::new(pz, &vols);
    let s1 = night(&a, 1);
    let src = format!("{}/{VOL}@{s1}", a.pool.name);
    let before = ok(a.tool("zfs-list").arg("--json"));
    fails_with(a.tool("zfs-copy").args(["-s", &src, "-t", &format!("btmixed/{VOL}")]), &["zfs pool", "btrfs pool"]);
    assert_eq!(ok(a.tool("zfs-list").arg("--json")), before, "nothing held, nothing created");
}

/// btrfs into a "remote" host through a real sshd: the agent there
/// receives and puts the snapshots in place, over ssh and over TCP.
#[test]
fn btrfs_copies_to_a_remote_host_through_a_real_sshd() {
    let Some(sshd) = Sshd::start() else { return };
    let Some(pa) = PoolLab::new(Backend::Btrfs) else { return };
    let Some(mut b) = PoolLab::new(Backend::Btrfs) else { return };
    b.name = "btremote".into();
    let remote_config = sshd.path("remote.toml");
    std::fs::write(
        &remote_config,
        format!("[archive]\nlog_dir = {:?}\nlock_dir = {:?}\n{}", sshd.path("log"), sshd.path("lock"), b.pool_toml()),
    )
    .unwrap();
    let port = 40000 + std::process::id() % 20000 + 100;
    let vols = format!(
        "[[archive.volumes]]\nname = \"vg/lv_c\"\npool = \"{{pool}}\"\nsource = {{ kind = \"file\", path = \"{{dir}}/c.img\" }}\n\n[archive.copy]\n{}remote_santools = {:?}\nremote_config = {:?}\nports = \"{port}-{}\"\ndata_address = \"{}\"\n",
        sshd.ssh_toml(),
        bin(),
        remote_config,
        port + 50,
        sshd.addr
    );
    let a = Archive::new(pa, &vols);
    let s1 = night(&a, 1);
    let s2 = night(&a, 2);
    let src = |s: &str| format!("{}/{VOL}@{s}", a.pool.name);
    let dst = format!("{}:btremote/{VOL}", sshd.addr);
    let r = copy(&a, &["-s", &src(&s1), "-t", &dst]);
    assert_eq!(r["step"]["kind"], "full", "{r}\n{}", sshd.log());
    let r = copy(&a, &["-i", &s1, "-s", &src(&s2), "-t", &dst, "--transport", "tcp"]);
    assert_eq!(r["step"]["kind"], "incremental", "{r}");
    let root_b = b.path.clone().unwrap();
    for s in [&s1, &s2] {
        let there = root_b.join(".snapshots").join(VOL).join(s);
        let here = a.pool.path.clone().unwrap().join(".snapshots").join(VOL).join(s);
        assert_eq!(image_of(&there.join("image")), image_of(&here.join("image")), "@{s}");
        assert_eq!(btrfs_uuids(&there).1, btrfs_uuids(&here).0, "@{s}");
    }
    assert_eq!(b.snapshots(VOL), vec![s1.clone(), s2.clone()]);
    assert_eq!(
        image_of(&b.image(VOL)),
        image_of(&a.pool.path.clone().unwrap().join(".snapshots").join(VOL).join(&s2).join("image"))
    );
}
