//! The target tools from the command line: import, check, gen, IET plan,
//! iet-state and session-top (on IET fixtures and a live tgtd), routing.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::helpers::*;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn seed_inventory() -> PathBuf {
    fixtures().join("targets/inventory.toml")
}

#[test]
fn targets_import_reads_the_seed_targets_conf_without_running_it() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("ietd_config.sh");
    std::fs::write(
        &cfg,
        "VGMETA_DIR=/mnt/iscsi-target\nIPTABLES_PORT=3260\nIET_CONF_DIR=/etc/iet\nIET_TARGET_HOSTS=\"iscsi-target-node1 iscsi-target-node2\"\nIET_VGS=\"vg_dsk_0 vg_dsk_1\"\nIET_TARGET_PREFIX=\"iqn.1990-01.edu.amherst:iet.iscsi-target\"\n",
    )
    .unwrap();
    // The callback would create this file if targets.conf were executed.
    let out = d.path().join("inventory.toml");
    let mut c = tool("targets");
    c.arg("import").arg(fixtures().join("targets/targets.conf")).arg("--ietd-config").arg(&cfg);
    c.arg("--ifcfg").arg(format!("iscsi-target-node1={}", fixtures().join("ifcfg/ifcfg-eth2.10").display()));
    c.arg("--ifcfg").arg(format!("iscsi-target-node1={}", fixtures().join("ifcfg/ifcfg-eth3.10").display()));
    c.arg("--out").arg(&out);
    let o = run(&mut c);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("callback conf_target_callback skipped"), "{}", stderr(&o));
    let text = std::fs::read_to_string(&out).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&out).unwrap().permissions().mode() & 0o777,
        0o600,
        "the inventory holds CHAP secrets"
    );
    assert!(text.contains("\"ig_server01_apps\" = [\"iqn.1994-05.com.redhat:swiscsi.server01.apps\"]"), "{text}");
    assert!(text.contains("\"10.0.1.1\", \"10.0.1.2\""), "{text}");
    // pg_vlan20_fabric has no addresses yet: the operator fills them in.
    let filled = text.replace(
        "[targets.portal_groups.\"pg_vlan20_fabric\"]\n# no addresses known: add HOST = [\"ADDRESS\", ...] per node (or import with --ifcfg)\n",
        "[targets.portal_groups.\"pg_vlan20_fabric\"]\n\"iscsi-target-node1\" = [\"10.0.2.1\"]\n",
    );
    std::fs::write(&out, filled).unwrap();
    let listed = ok(tool("targets")
        .args(["check", "--node", "iscsi-target-node1", "--active-vg", "vg_dsk_0", "--inventory"])
        .arg(&out));
    assert!(
        listed.contains(
            "serve iqn.1990-01.edu.amherst:iet.iscsi-target.pg-vlan10-fabric.vg-dsk-0.lv-server01-apps-vol00"
        ),
        "{listed}"
    );
    assert!(
        listed.contains(
            "skip  iqn.1990-01.edu.amherst:iet.iscsi-target.pg-vlan10-fabric.vg-dsk-1.lv-srvrnt09-storage-vol00"
        ),
        "{listed}"
    );
    // The imported inventory generates the same ietd.conf as the hand-written one.
    let a = ok(tool("targets")
        .args(["gen", "iet", "--node", "iscsi-target-node1", "--active-vg", "vg_dsk_0", "--inventory"])
        .arg(&out));
    let b = ok(tool("targets")
        .args(["gen", "iet", "--node", "iscsi-target-node1", "--active-vg", "vg_dsk_0", "--inventory"])
        .arg(seed_inventory()));
    let conf = |s: &str| s.split("==> initiators.allow").next().unwrap().to_string();
    // (targets.conf has one LUN per target and no per-target options: the
    // hand-written inventory's extras are left out of the comparison.)
    let b = conf(&b).replace("\tMaxConnections 1\n", "").replace(
        "\tLun 1 Path=/dev/vg_dsk_0/lv_esx_vmfs_vol01,Type=fileio,ScsiId=AMHDSK-100415-03,ScsiSN=AMHDSK-100415-03\n",
        "",
    );
    assert_eq!(conf(&a), b);
}

#[test]
fn targets_import_refuses_what_it_cannot_read_with_line_and_column() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("targets.conf");
    let marker = d.path().join("executed");
    std::fs::write(
        &f,
        format!("function conf_targets\n{{\n\ttarget up $(touch {}) blockio S pg \"x\"\n}}\n", marker.display()),
    )
    .unwrap();
    let o =
        run(tool("targets").arg("import").arg(&f).args(["--prefix", "iqn.2024-01.x:y", "--host", "n1", "--vg", "vg"]));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains(&format!("{}:3:12: cannot read command substitution", f.display())), "{}", stderr(&o));
    assert!(!marker.exists());
}

#[test]
fn targets_check_names_file_line_and_key() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("inv.toml");
    let text = std::fs::read_to_string(seed_inventory()).unwrap().replace("AMHDSK-100415-03", "AMHDSK-100415-01");
    std::fs::write(&f, &text).unwrap();
    let line = text[..text.find("serial = \"AMHDSK-100415-01\" }").unwrap()].lines().count();
    let e = fails_with(
        tool("targets")
            .args(["check", "--node", "iscsi-target-node1", "--active-vg", "vg_dsk_0", "--inventory"])
            .arg(&f),
        &["already used"],
    );
    assert!(e.contains(&format!("{}:{line}: key `targets.target[1].luns[0].serial`", f.display())), "{e}");
    // The same section inline in santools.toml: check-config names it too.
    let cfg = d.path().join("santools.toml");
    std::fs::write(&cfg, format!("[ddless]\n{text}")).unwrap();
    let o = run(Command::new(bin()).arg("check-config").arg("--config").arg(&cfg));
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains(&format!("line {}", line + 1)) && stderr(&o).contains("targets.target[1].luns[0].serial"),
        "{}",
        stderr(&o)
    );
    // A valid inline inventory is used by the tools through --config.
    std::fs::write(&cfg, std::fs::read_to_string(seed_inventory()).unwrap()).unwrap();
    let out = ok(tool("targets").arg("--config").arg(&cfg).args([
        "check",
        "--node",
        "iscsi-target-node2",
        "--active-vg",
        "vg_dsk_1",
    ]));
    assert!(
        out.contains(
            "serve iqn.1990-01.edu.amherst:iet.iscsi-target.pg-vlan10-fabric.vg-dsk-1.lv-srvrnt09-storage-vol00"
        ),
        "{out}"
    );
}

/// Finding T12 (attack-targets): an output that is one of the run's inputs
/// (an inventory named targets.conf in `gen tgt --out`'s directory, `import
/// x.conf -o x.conf`) was replaced by the output and lost.
#[test]
fn targets_gen_and_import_refuse_to_overwrite_their_inputs() {
    let d = tempfile::tempdir().unwrap();
    let inv = d.path().join("targets.conf");
    std::fs::copy(seed_inventory(), &inv).unwrap();
    let before = read(&inv);
    fails_with(
        tool("targets")
            .args(["gen", "tgt", "--node", "iscsi-target-node1", "--active-vg", "vg_dsk_0", "--inventory"])
            .arg(&inv)
            .arg("--out")
            .arg(d.path().join(".")),
        &["input", "output", "same file", "nothing was changed"],
    );
    assert_eq!(read(&inv), before);
    let conf = d.path().join("seed.conf");
    std::fs::copy(fixtures().join("targets/targets.conf"), &conf).unwrap();
    std::os::unix::fs::symlink(&conf, d.path().join("link.conf")).unwrap();
    let before = read(&conf);
    for out in ["seed.conf", "./seed.conf", "link.conf"] {
        fails_with(
            tool("targets")
                .arg("import")
                .arg(&conf)
                .args(["--prefix", "iqn.2000-01.x:y", "--host", "h", "--vg", "vg_dsk_0", "--vg", "vg_dsk_1", "-o"])
                .arg(d.path().join(out)),
            &["same file"],
        );
        assert_eq!(read(&conf), before, "{out}");
    }
}

/// Finding T18 (attack-targets): a targets.conf whose values the inventory
/// refuses (a 24-character serial, a CHAP secret with shell characters) was
/// imported anyway: the invalid inventory was written, exit 0, with a
/// warning naming a line of the generated TOML.
#[test]
fn targets_import_of_invalid_values_writes_nothing_and_names_the_source_line() {
    let d = tempfile::tempdir().unwrap();
    let seed = std::fs::read_to_string(fixtures().join("targets/targets.conf")).unwrap();
    let line = seed.lines().position(|l| l.contains("AMHDSK-100415-01 ")).unwrap() + 1;
    let conf = d.path().join("targets.conf");
    for (from, to, needle) in [
        ("AMHDSK-100415-01 ", "AMHDSK-100415-01-TOOLONG ", "at most 16"),
        ("esx-secret-123", "'u|id>/tmp/x1'", "shell"),
    ] {
        assert!(seed.contains(from), "{from}");
        std::fs::write(&conf, seed.replacen(from, to, 1)).unwrap();
        let out = d.path().join("inventory.toml");
        let e = fails_with(
            tool("targets")
                .arg("import")
                .arg(&conf)
                .args(["--prefix", "iqn.1990-01.edu.amherst:iet.iscsi-target", "--host", "iscsi-target-node1"])
                .args(["--vg", "vg_dsk_0", "--vg", "vg_dsk_1", "-o"])
                .arg(&out),
            &[needle, "nothing was written"],
        );
        assert!(!out.exists(), "{e}");
        if needle == "at most 16" {
            assert!(e.contains(&format!("{}:{line}:", conf.display())), "{e}");
        }
    }
}

#[test]
fn targets_gen_writes_golden_bytes_atomically_and_only_when_changed() {
    let d = tempfile::tempdir().unwrap();
    for flavour in ["iet", "tgt", "lio", "scst"] {
        let dir = d.path().join(flavour);
        std::fs::create_dir(&dir).unwrap();
        let gen = |dir: &Path| {
            ok(tool("targets")
                .args(["gen", flavour, "--node", "iscsi-target-node1", "--active-vg", "vg_dsk_0", "--inventory"])
                .arg(seed_inventory())
                .arg("--out")
                .arg(dir))
        };
        gen(&dir);
        let golden = fixtures().join("targets/golden/node1").join(flavour);
        let mut names: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
        names.sort();
        assert!(!names.is_empty());
        for n in &names {
            assert_eq!(read(&dir.join(n)), read(&golden.join(n)), "{flavour}/{}", n.to_string_lossy());
        }
        let inode = |n: &std::ffi::OsStr| std::os::unix::fs::MetadataExt::ino(&std::fs::metadata(dir.join(n)).unwrap());
        let before: Vec<u64> = names.iter().map(|n| inode(n)).collect();
        gen(&dir);
        let after: Vec<u64> = names.iter().map(|n| inode(n)).collect();
        assert_eq!(before, after, "{flavour}: unchanged files were rewritten");
    }
    // tgtadm argument vectors for the same state.
    let out = ok(tool("targets")
        .args(["gen", "tgt", "--tgtadm", "--node", "iscsi-target-node1", "--active-vg", "vg_dsk_0", "--inventory"])
        .arg(seed_inventory()));
    assert!(
        out.lines().next().unwrap().starts_with("tgtadm --lld iscsi --op new --mode target --tid 1 --targetname "),
        "{out}"
    );
}

#[test]
fn targets_plan_for_iet_from_proc_fixtures() {
    let d = tempfile::tempdir().unwrap();
    let luns = d.path().join("luns");
    std::fs::create_dir(&luns).unwrap();
    std::fs::write(luns.join("lv_a"), vec![0u8; 1 << 20]).unwrap();
    std::fs::write(luns.join("lv_b"), vec![0u8; 1 << 20]).unwrap();
    let proc = d.path().join("proc");
    std::fs::create_dir(&proc).unwrap();
    let iqn = |lv: &str| format!("iqn.2024-01.test:t.pg.vg-f.{lv}");
    // lv-a is exported with a stale size and has a session; lv-old is gone from the inventory.
    std::fs::write(
        proc.join("volume"),
        format!(
            "tid:1 name:{}\n\tlun:0 state:0 iotype:fileio iomode:wt blocks:1024 blocksize:512 path:{}/lv_a\ntid:2 name:{}\n\tlun:0 state:0 iotype:fileio iomode:wt blocks:1 blocksize:512 path:/x\n",
            iqn("lv-a"),
            luns.display(),
            iqn("lv-old")
        ),
    )
    .unwrap();
    std::fs::write(
        proc.join("session"),
        format!("tid:1 name:{}\n\tsid:281474997486080 initiator:iqn.2024-01.test:i1\n\t\tcid:0 ip:10.0.1.90 state:active hd:none dd:none\ntid:2 name:{}\n", iqn("lv-a"), iqn("lv-old")),
    )
    .unwrap();
    let inv = d.path().join("inv.toml");
    std::fs::write(
        &inv,
        format!(
            "[targets]\nprefix = \"iqn.2024-01.test:t\"\nhosts = [\"n1\"]\n[targets.file_groups]\nvg_f = \"{l}\"\n[targets.portal_groups.pg]\nn1 = [\"10.0.1.1\"]\n\
             [[targets.target]]\nstate = \"up\"\ndevice = \"{l}/lv_a\"\nio = \"fileio\"\nserial = \"SA\"\nportal_group = \"pg\"\ninitiators = [\"iqn.2024-01.test:i1\"]\n\
             [[targets.target]]\nstate = \"up\"\ndevice = \"{l}/lv_b\"\nio = \"blockio\"\nserial = \"SB\"\nportal_group = \"pg\"\ninitiators = [\"iqn.2024-01.test:i1\"]\nincoming_users = [{{ user = \"u\", secret = \"secret-secret\" }}]\n",
            l = luns.display()
        ),
    )
    .unwrap();
    let out = ok(tool("targets")
        .args(["plan", "--backend", "iet", "--node", "n1"])
        .arg("--inventory")
        .arg(&inv)
        .arg("--proc")
        .arg(&proc));
    let want = [
        format!("~ {} (tid 1): re-add LUN 0: resize 524288 -> 1048576 bytes [disruptive; sessions: iqn.2024-01.test:i1 from 10.0.1.90]", iqn("lv-a")),
        "    ietadm --op delete --tid=1 --sid=281474997486080 --cid=0".to_string(),
        "    ietadm --op delete --tid=1 --lun=0".to_string(),
        format!("    ietadm --op new --tid=1 --lun=0 --params Path={}/lv_a,Type=fileio,ScsiId=SA,ScsiSN=SA", luns.display()),
        format!("+ {} (tid 3): create", iqn("lv-b")),
        format!("    ietadm --op new --tid=3 --params Name={}", iqn("lv-b")),
    ];
    for w in &want {
        assert!(out.contains(w.as_str()), "missing {w:?} in:\n{out}");
    }
    assert!(
        out.contains(&format!("- {} (tid 2): remove", iqn("lv-old"))) && out.contains("ietadm --op delete --tid=2\n"),
        "{out}"
    );
    assert!(!out.contains("secret-secret") && out.contains("IncomingUser=u,Password=********"), "{out}");
}

/// A copy of the patched IET /proc/net/iet fixture under `dir`.
fn iet_proc_fixture(dir: &std::path::Path) -> std::path::PathBuf {
    let proc = dir.join("iet");
    std::fs::create_dir(&proc).unwrap();
    for f in ["volume", "session", "vpd", "reservation"] {
        std::fs::copy(fixtures().join("iet/patched").join(f), proc.join(f)).unwrap();
    }
    proc
}

#[test]
fn iet_state_and_session_top_on_proc_fixtures() {
    let d = tempfile::tempdir().unwrap();
    let proc = iet_proc_fixture(d.path());
    let st = |args: &[&str]| {
        let mut c = tool("iet-state");
        c.args(args).arg("--proc").arg(&proc);
        c
    };
    let out = ok(&mut st(&["state"]));
    assert!(out.contains("\t\tcid:0 s_ip:10.0.1.90 d_ip:10.0.1.1") && out.contains("serial:AMHDSK-070401-02"), "{out}");
    let t1 = "iqn.1990-01.edu.amherst:iscsi4.pg-vlan10.vg-satabeast8-vol0.lv-srvrux30-netlog";
    assert_eq!(ok(&mut st(&["target-tid", "-t", t1])), "1\n");
    assert_eq!(ok(&mut st(&["target-initiators", "-t", t1])), "10.0.1.90\n");
    assert_eq!(
        ok(&mut st(&["lun-path-target", "-p", "/dev/vg_satabeast8_vol0/lv_csc0_gfs_vol00"])).trim(),
        "iqn.1990-01.edu.amherst:iscsi4.pg-vlan345.vg-satabeast8-vol0.lv-csc0-gfs"
    );
    let rm = ok(&mut st(&["sessions-remove", "--all", "-n"]));
    assert_eq!(rm, "ietadm --op delete --tid=1 --sid=1970324874527232 --cid=0\n");
    // state-diff: the first run records, an unchanged state is 0, a lost session 1.
    let rec = d.path().join("state.json");
    let diff = |c: &mut Command| run(c.arg("--state-file").arg(&rec));
    assert_eq!(diff(&mut st(&["state-diff"])).status.code(), Some(0));
    assert_eq!(diff(&mut st(&["state-diff"])).status.code(), Some(0));
    // session-top sees the same.
    let counts = d.path().join("target_sessions");
    let top = |args: &[&str]| {
        let mut c = tool("session-top");
        c.args(args).arg("--proc").arg(&proc).arg("--file").arg(&counts);
        c
    };
    ok(&mut top(&["save"]));
    let out = ok(&mut top(&["diff"]));
    assert!(out.contains(&format!("OK 1 expect 1 {t1}")), "{out}");
    std::fs::write(
        proc.join("session"),
        std::fs::read_to_string(proc.join("session"))
            .unwrap()
            .lines()
            .take(2)
            .map(|l| format!("{l}\n"))
            .collect::<String>(),
    )
    .unwrap();
    let o = diff(&mut st(&["state-diff"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stdout(&o).contains(&format!("- target {t1} initiator iqn.1994-05.com.redhat:swiscsi.server01.apps")),
        "{}",
        stdout(&o)
    );
    let o = run(&mut top(&["diff"]));
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).contains(&format!("DIFF 0 expect 1 {t1}")), "{}", stdout(&o));
    let o = run(&mut top(&["watch", "--count", "1", "--interval", "1"]));
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn session_top_and_iet_state_on_a_live_tgtd() {
    let Some(s) = crate::targets_live::setup() else { return };
    let tgtd = &s.tgtd;
    let iqn = s.iqn("lv_alpha");
    let url = tgtd.url(&iqn, 1);
    let d = tempfile::tempdir().unwrap();
    let counts = d.path().join("target_sessions");
    let port = tgtd.port.to_string();
    let top = |args: &[&str]| {
        let mut c = tool("session-top");
        c.args(args).args(["--backend", "tgt", "-C", &port]).arg("--file").arg(&counts);
        c
    };
    let mut perf = crate::targets_live::Perf::start("iqn.2024-01.test:init1", &url);
    let sid = tgtd.wait_for_nexus(&iqn, &[], Duration::from_secs(20)).expect("session");
    ok(&mut top(&["save"]));
    assert!(ok(&mut top(&["diff"])).contains(&format!("OK 1 expect 1 {iqn}")));
    let out = ok(tool("iet-state").args(["--backend", "tgt", "-C", &port, "target-initiators", "-t", &iqn]));
    assert_eq!(out, "127.0.0.1\n");
    let out = ok(tool("iet-state").args(["--backend", "tgt", "-C", &port, "--json", "state"]));
    assert!(out.contains(&format!("\"sid\": {sid}")), "{out}");
    perf.stop();
    let t = std::time::Instant::now();
    while !tgtd.nexuses(&iqn).is_empty() && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let o = run(&mut top(&["diff"]));
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("DIFF 0 expect 1 {iqn}")), "{}", stdout(&o));
}

#[test]
fn ietd_routing_and_iptables_print_commands() {
    let out = ok(tool("ietd-routing").arg("start").arg(fixtures().join("ifcfg")));
    assert!(
        out.contains("# 10\trt_vlan10_port0") && out.contains("ip rule add from 10.0.1.2 table rt_vlan10_port1"),
        "{out}"
    );
    assert!(out.contains("sysctl -w net.ipv4.conf.all.arp_filter=1"));
    // Finding (attack-final): --table-base 253 printed "254 rt_vlan10_port1"
    // (the main table, which `stop` then flushes); 4294967295 panicked.
    for base in ["253", "4294967295"] {
        let o = run(tool("ietd-routing").args(["start", "--table-base", base]).arg(fixtures().join("ifcfg")));
        assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
        assert!(stdout(&o).is_empty() && stderr(&o).contains("--table-base"), "{}", stderr(&o));
    }
    assert_eq!(
        ok(tool("ietd-iptables").args(["stop", "10.0.1.0/24"])),
        "iptables -I INPUT -p tcp -s 10.0.1.0/24 --dport 3260 -j DROP\n"
    );
    assert_eq!(ok(tool("ietd-iptables").args(["start"])), "iptables -D INPUT -p tcp --dport 3260 -j DROP\n");
    fails_with(tool("ietd-iptables").args(["stop", "10.0.1.0/24;reboot"]), &["10.0.1.0/24;reboot"]);
}

/// Finding (attack-final): iet-state state-diff read --state-file whole
/// and --proc's files whole: /dev/zero there grew memory without bound.
#[test]
fn iet_state_refuses_endless_state_and_proc_files() {
    let d = tempfile::tempdir().unwrap();
    let proc = iet_proc_fixture(d.path());
    let o = run(tool("iet-state").args(["state-diff", "--state-file", "/dev/zero", "--proc"]).arg(&proc));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("/dev/zero") && stderr(&o).contains("longer than"), "{}", stderr(&o));
    std::fs::remove_file(proc.join("session")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", proc.join("session")).unwrap();
    let o = run(tool("iet-state").arg("state").arg("--proc").arg(&proc));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(stderr(&o).contains("session") && stderr(&o).contains("longer than"), "{}", stderr(&o));
}
