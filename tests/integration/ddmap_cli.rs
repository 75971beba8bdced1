//! ddmap end to end: dumps in the seed's format, merges (create, OR, grow,
//! refuse), extents, stats, proc controls, and bad input.

use std::path::Path;

use crate::helpers::*;

fn make_map(path: &Path, name: &str, words: &[u32]) {
    let mut b = b"ddmap\0\0\0".to_vec();
    b.extend(1u32.to_le_bytes());
    b.extend(name.bytes().fold(0u32, |a, c| a.wrapping_add(u32::from(c))).to_le_bytes());
    b.extend((words.len() as u32).to_le_bytes());
    for w in words {
        b.extend(w.to_le_bytes());
    }
    write(path, &b);
}

fn words_of(path: &Path) -> Vec<u32> {
    read(path)[20..].chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect()
}

const NAME: &str = "iqn.1990-01.edu.amherst:iet.iscsi-target4.pg-vlan10.iscsi.vg-satabeast8-vol1.lv-srvrnt40-vol00.0";

#[test]
fn header_and_data_dumps() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    let mut words = vec![0u32; 17];
    words[0] = 3;
    words[1] = 0x0007_0000;
    words[16] = 0x8000_0000;
    make_map(&m, NAME, &words);
    let out = ok(tool("ddmap").arg("-s").arg(&m).arg("-a"));
    let sum: u32 = NAME.bytes().map(u32::from).sum();
    assert!(out.contains(&format!("ddmap device: {}\n", m.display())), "{out}");
    assert!(out.contains("ddmap info: ddmap\n"));
    assert!(out.contains("ddmap version: 1\n"));
    assert!(out.contains(&format!("ddmap name_sum: 0x{sum:08x}\n")), "{out}");
    assert!(out.contains("ddmap map_size: 17 (u32)\n"));
    assert!(out.contains("ddmap map_size_bytes: 68\n"));
    let out = ok(tool("ddmap").arg("-s").arg(&m).arg("-b"));
    let rows: Vec<&str> = out.lines().collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0], "00000000 00000003 00070000 00000000 00000000 00000000 00000000 00000000 00000000");
    assert!(rows[1].starts_with("00000020 00000000"));
    assert_eq!(rows[2], "00000040 80000000");
    let j: serde_json::Value =
        serde_json::from_str(&ok(tool("ddmap").arg("-s").arg(&m).args(["-a", "--json"]))).unwrap();
    assert_eq!(j["map_size"], 17);
    assert_eq!(j["name_sum"], sum);
    let out = ok(tool("ddmap").arg("-s").arg(&m).arg("--stats"));
    assert!(out.starts_with("6 of 544 segments set (1.10%), 98304 bytes flagged"), "{out}");
}

#[test]
fn merge_creates_then_ors_and_grows() {
    let d = tempfile::tempdir().unwrap();
    let (a, b, big, t) = (d.path().join("a"), d.path().join("b"), d.path().join("big"), d.path().join("t"));
    make_map(&a, NAME, &[1, 0, 0x10]);
    make_map(&b, NAME, &[2, 0x8000_0000, 0]);
    make_map(&big, NAME, &[4, 0, 0, 0, 7]);
    let o = run(tool("ddmap").arg("-s").arg(&a).arg("-t").arg(&t).arg("-v"));
    assert!(o.status.success());
    let log = stderr(&o);
    for l in [
        "ddmap => opened map",
        "ddmap => header size 20",
        "ddmap => target does not exist, creating new file",
        "ddmap => source->map_size 3 target->map_size 0",
        "ddmap => merge completed",
    ] {
        assert!(log.contains(l), "missing {l:?}:\n{log}");
    }
    assert_eq!(words_of(&t), vec![1, 0, 0x10]);
    let o = run(tool("ddmap").arg("-s").arg(&b).arg("-t").arg(&t).arg("-v"));
    assert!(stderr(&o).contains("ddmap => name sum matches on source and target, good"), "{}", stderr(&o));
    assert!(stderr(&o).contains("ddmap => source->map_size 3 target->map_size 3"));
    assert_eq!(words_of(&t), vec![3, 0x8000_0000, 0x10]);
    ok(tool("ddmap").arg("-s").arg(&big).arg("-t").arg(&t));
    assert_eq!(words_of(&t), vec![7, 0x8000_0000, 0x10, 0, 7]);
    assert_eq!(
        std::fs::read_dir(d.path())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().contains(".tmp"))
            .count(),
        0
    );
}

#[test]
fn merge_refusals_leave_target_untouched() {
    let d = tempfile::tempdir().unwrap();
    let p = |n: &str| d.path().join(n);
    make_map(&p("t"), NAME, &[1, 2, 3, 4]);
    make_map(&p("other"), "iqn.other.0", &[0xff, 0, 0, 0]);
    make_map(&p("small"), NAME, &[0xff]);
    write(&p("badmagic"), b"DDMAP\0\0\0\x01\0\0\0\0\0\0\0\0\0\0\0");
    let mut v = read(&p("t"));
    v[8] = 9;
    write(&p("v9"), &v);
    write(&p("trunc"), &read(&p("t"))[..25]);
    write(&p("tiny"), b"ddmap");
    let before = read(&p("t"));
    let cases: &[(&str, &[&str])] = &[
        ("other", &["name_sum mismatch"]),
        ("small", &["smaller than target"]),
        ("badmagic", &["badmagic", "bad magic"]),
        ("v9", &["v9", "unsupported version 9"]),
        ("trunc", &["trunc", "needs 16 bytes of map data, found 5"]),
        ("tiny", &["tiny", "too short"]),
        ("missing", &["missing", "No such file"]),
    ];
    for (src, needles) in cases {
        fails_with(tool("ddmap").arg("-s").arg(p(src)).arg("-t").arg(p("t")), needles);
        assert_eq!(read(&p("t")), before, "merge from {src} changed the target");
    }
    // A corrupt target is refused too, and left as it was.
    write(&p("badtarget"), b"garbage garbage garbage");
    fails_with(tool("ddmap").arg("-s").arg(p("t")).arg("-t").arg(p("badtarget")), &["badtarget", "bad magic"]);
    assert_eq!(read(&p("badtarget")), b"garbage garbage garbage");
}

#[test]
fn from_extents_matches_kernel_math_and_feeds_merge() {
    let d = tempfile::tempdir().unwrap();
    let t = d.path().join("t");
    // The seed's dd examples: 16 KiB at 0, 16 KiB at 16 KiB, 20000 bytes at 800000, 4 MiB at 4 MiB.
    let list = "# seed examples\n0 16384\n16384 16384\n800000 20000\n4194304 4194304\n";
    let mut child = tool("ddmap")
        .args(["--from-extents", "-", "--size", "12M", "--name", NAME, "-t"])
        .arg(&t)
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child.stdin.take().unwrap().write_all(list.as_bytes()).unwrap();
    assert!(child.wait().unwrap().success());
    let w = words_of(&t);
    assert_eq!(w.len(), 24);
    assert_eq!(w[0], 3);
    assert_eq!(w[1], 0x0007_0000);
    assert!(w[8..16].iter().all(|&x| x == u32::MAX));
    assert_eq!(w.iter().map(|x| x.count_ones()).sum::<u32>(), 2 + 3 + 256);
    // A second list merges by OR; a different name is refused.
    std::fs::write(d.path().join("l2"), "12566528 16384\n").unwrap();
    ok(tool("ddmap")
        .arg("--from-extents")
        .arg(d.path().join("l2"))
        .args(["--size", "12M", "--name", NAME, "-t"])
        .arg(&t));
    assert_eq!(words_of(&t)[23], 0x8000_0000);
    fails_with(
        tool("ddmap")
            .arg("--from-extents")
            .arg(d.path().join("l2"))
            .args(["--size", "12M", "--name", "other", "-t"])
            .arg(&t),
        &["name_sum mismatch"],
    );
    std::fs::write(d.path().join("bad"), "0 16384\n5 five\n").unwrap();
    fails_with(
        tool("ddmap")
            .arg("--from-extents")
            .arg(d.path().join("bad"))
            .args(["--size", "12M", "--name", NAME, "-t"])
            .arg(&t),
        &["extent list", "bad", "line 2", "LENGTH"],
    );
    std::fs::write(d.path().join("past"), "12582912 1\n").unwrap();
    fails_with(
        tool("ddmap")
            .arg("--from-extents")
            .arg(d.path().join("past"))
            .args(["--size", "12M", "--name", NAME, "-t"])
            .arg(&t),
        &["line 1", "past the volume"],
    );
    fails_with(
        tool("ddmap").args(["--from-extents", "-", "--size", "12Q", "--name", NAME, "-t"]).arg(&t),
        &["--size", "suffix"],
    );
    fails_with(tool("ddmap").args(["--from-extents", "-", "--name", NAME, "-t"]).arg(&t), &["--size"]);
}

#[test]
fn proc_controls_write_the_iet_words() {
    let d = tempfile::tempdir().unwrap();
    let proc_dir = d.path().join("ddmap");
    std::fs::create_dir(&proc_dir).unwrap();
    let entry = NAME.to_string();
    write(&proc_dir.join(&entry), b"");
    for (flag, word) in [("--zap", "mapzap"), ("--suspend", "mapsuspend"), ("--resume", "mapresume")] {
        write(&proc_dir.join(&entry), b"");
        ok(tool("ddmap").arg(flag).arg(&entry).arg("--proc-dir").arg(&proc_dir));
        assert_eq!(read(&proc_dir.join(&entry)), word.as_bytes());
    }
    // Through the config file.
    let cfg = d.path().join("c.toml");
    std::fs::write(&cfg, format!("[ddmap]\nproc_dir = \"{}\"\n", proc_dir.display())).unwrap();
    write(&proc_dir.join(&entry), b"");
    ok(tool("ddmap").args(["--zap", &entry, "--config"]).arg(&cfg));
    assert_eq!(read(&proc_dir.join(&entry)), b"mapzap");
    fails_with(
        tool("ddmap").args(["--zap", "iqn.none.0", "--proc-dir"]).arg(&proc_dir),
        &["no ddmap entry", "iqn.none.0"],
    );
    fails_with(tool("ddmap").args(["--zap", "../escape", "--proc-dir"]).arg(&proc_dir), &["invalid ddmap entry name"]);
    fails_with(tool("ddmap").args(["--zap", "a", "--resume", "b"]), &["cannot be used with"]);
    assert!(!d.path().join("escape").exists());
}

#[test]
fn ddmap_help_and_usage_errors() {
    let out = ok(tool("ddmap").arg("--help"));
    for n in [
        "Usage: ddmap",
        "-s, --source",
        "-t, --target",
        "-a, --header",
        "-b, --data",
        "--stats",
        "--from-extents",
        "--zap",
        "--suspend",
        "--resume",
        "--proc-dir",
        "-V",
    ] {
        assert!(out.contains(n), "missing {n}:\n{out}");
    }
    fails_with(&mut tool("ddmap"), &["no source given"]);
    fails_with(tool("ddmap").args(["-s", "/nonexistent", "-a"]), &["/nonexistent"]);
}

#[test]
fn source_that_reports_size_zero_is_read_to_the_end() {
    // Live /proc/net/iet/ddmap entries report size 0; a pipe behaves the same.
    let d = tempfile::tempdir().unwrap();
    let (m, t) = (d.path().join("m"), d.path().join("t"));
    make_map(&m, NAME, &[5, 6, 7]);
    let f = std::fs::File::open(&m).unwrap();
    let o = tool("ddmap").args(["-s", "/dev/stdin", "-t"]).arg(&t).stdin(f).output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(words_of(&t), vec![5, 6, 7]);
}
