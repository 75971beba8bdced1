//! The multi-call front door: tool list, unknown names, dispatch through
//! real symlinks, install-links, check-config.

use std::process::Command;

use crate::helpers::*;

#[test]
fn help_lists_the_tools() {
    let out = ok(Command::new(bin()).arg("--help"));
    assert!(out.contains("Usage: santools TOOL"));
    for t in [
        "ddless",
        "ddmap",
        "iscsi-portal",
        "iscsi_portal_daemon",
        "iscsi-portal-query",
        "iscsi-portal-sendtargets",
        "install-links",
        "check-config",
        "Exit codes",
    ] {
        assert!(out.contains(t), "--help lacks {t}:\n{out}");
    }
    let list = ok(Command::new(bin()).arg("--list"));
    assert!(list.lines().any(|l| l == "ddless") && list.lines().any(|l| l == "ddmap"));
    assert!(ok(Command::new(bin()).arg("--version")).starts_with("santools "));
}

#[test]
fn unknown_tool_is_a_clear_error() {
    let o = run(Command::new(bin()).arg("ddmore"));
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("unknown tool 'ddmore'") && e.contains("ddless") && e.contains("ddmap"), "{e}");
    let o = run(&mut Command::new(bin()));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("Usage"));
}

#[test]
fn install_links_and_argv0_dispatch() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("bin");
    std::fs::create_dir(&dir).unwrap();
    ok(Command::new(bin()).arg("install-links").arg(&dir));
    let out = ok(Command::new(dir.join("ddless")).arg("--help"));
    assert!(out.contains("Usage: ddless"), "{out}");
    let out = ok(Command::new(dir.join("ddmap")).arg("--help"));
    assert!(out.contains("Usage: ddmap"));
    // The seed's names work too, and each tool sees its own name.
    let out = ok(Command::new(dir.join("iscsi_portal_daemon")).arg("--help"));
    assert!(out.contains("Usage: iscsi_portal_daemon") && out.contains("-D, --daemon"), "{out}");
    for t in ["iscsi-portal-query", "iscsi_portal_query", "iscsi-portal-sendtargets", "iscsi_portal_sendtargets"] {
        assert!(ok(Command::new(dir.join(t)).arg("--help")).contains(&format!("Usage: {t}")), "{t}");
    }
    // Through `santools ddless`, the usage line names the tool too.
    assert!(ok(Command::new(bin()).args(["ddless", "--help"])).contains("Usage: ddless"));
    // Idempotent; refuses to replace a foreign file or link.
    ok(Command::new(bin()).arg("install-links").arg(&dir));
    std::fs::remove_file(dir.join("ddmap")).unwrap();
    std::fs::write(dir.join("ddmap"), "#!/bin/sh\n").unwrap();
    let o = run(Command::new(bin()).arg("install-links").arg(&dir));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("refusing to replace") && stderr(&o).contains("ddmap"), "{}", stderr(&o));
    assert_eq!(std::fs::read_to_string(dir.join("ddmap")).unwrap(), "#!/bin/sh\n");
    std::fs::remove_file(dir.join("ddmap")).unwrap();
    std::os::unix::fs::symlink("/bin/true", dir.join("ddmap")).unwrap();
    let o = run(Command::new(bin()).arg("install-links").arg(&dir));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("it is a link to /bin/true"), "{}", stderr(&o));
    let o = run(Command::new(bin()).arg("install-links").arg(d.path().join("nope")));
    assert!(stderr(&o).contains("not a directory"));
}

/// Finding (new-user pass): libiscsi-bin installs /usr/bin/iscsi-ls, a
/// different tool (`iscsi-ls -s URL`) that the docs use as the reference;
/// install-links put santools' iscsi-ls in front of it (or behind it)
/// without a word. It still links, and says which other program shares
/// the name; a program in the link directory itself or this binary is not
/// reported.
#[test]
fn install_links_warns_about_another_program_of_the_same_name_in_path() {
    let d = tempfile::tempdir().unwrap();
    let (links, other) = (d.path().join("sbin"), d.path().join("usr-bin"));
    std::fs::create_dir(&links).unwrap();
    std::fs::create_dir(&other).unwrap();
    let fake = other.join("iscsi-ls");
    std::fs::write(&fake, "#!/bin/sh\necho libiscsi\n").unwrap();
    std::fs::set_permissions(&fake, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let path = std::env::join_paths([&links, &other]).unwrap();
    let o = run(Command::new(bin()).arg("install-links").arg(&links).env("PATH", &path));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    assert!(err.contains("warning") && err.contains(&*fake.to_string_lossy()), "{err}");
    assert_eq!(err.matches("warning").count(), 1, "only iscsi-ls has a namesake: {err}");
    assert!(ok(Command::new(links.join("iscsi-ls")).arg("--help")).contains("Usage: iscsi-ls"));
    // Without the namesake: silent.
    std::fs::remove_file(&fake).unwrap();
    let o = run(Command::new(bin()).arg("install-links").arg(&links).env("PATH", &path));
    assert_eq!((o.status.code(), stderr(&o).as_str()), (Some(0), ""));
}

#[test]
fn check_config_validates_and_names_keys() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("santools.toml");
    std::fs::write(&cfg, "[ddless]\nworkers = 2\n[ddmap]\nproc_dir = \"/proc/net/iet/ddmap\"\n").unwrap();
    assert!(ok(Command::new(bin()).arg("check-config").arg("--config").arg(&cfg)).contains("configuration is valid"));
    // Valid, but others may change it: said (finding of the new-user pass).
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let o = run(Command::new(bin()).arg("check-config").arg("--config").arg(&cfg));
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("is writable by other users (mode 0666)"), "{}", stderr(&o));
    std::fs::set_permissions(&cfg, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(&cfg, "[ddless]\nread_rate_mb_s = 0\n").unwrap();
    let o = run(Command::new(bin()).arg("check-config").arg("--config").arg(&cfg));
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("ddless.read_rate_mb_s"), "{}", stderr(&o));
}

#[test]
fn every_example_config_parses() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples");
    let mut seen = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "toml") {
            seen += 1;
            let o = run(Command::new(bin()).arg("check-config").arg("--config").arg(&p));
            assert!(o.status.success(), "{}: {}", p.display(), stderr(&o));
        }
    }
    assert!(seen > 0, "no example configs in {}", dir.display());
}

#[test]
fn broken_pipe_is_not_an_error() {
    let d = tempfile::tempdir().unwrap();
    let m = d.path().join("m");
    let mut b = b"ddmap\0\0\0".to_vec();
    b.extend(1u32.to_le_bytes());
    b.extend(0u32.to_le_bytes());
    b.extend(200_000u32.to_le_bytes());
    b.extend(vec![0u8; 800_000]);
    write(&m, &b);
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' ddmap -s '{}' -b | head -1; echo \"status=${{PIPESTATUS:-x}}\"",
            bin().display(),
            m.display()
        ))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("00000000 00000000"), "{text}");
    assert!(!String::from_utf8_lossy(&out.stderr).contains("error"), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Any tool whose reader went away ends as a Unix tool does (SIGPIPE),
/// never with a Rust panic message: stdout is a pipe whose read end is
/// closed before the tool writes.
#[test]
fn a_closed_stdout_ends_quietly_never_with_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("pool")).unwrap();
    let cfg = d.path().join("s.toml");
    let dir = d.path().display();
    std::fs::write(
        &cfg,
        format!("[archive]\nlog_dir = \"{dir}/log\"\nlock_dir = \"{dir}/lock\"\n[archive.pools.p]\nbackend = \"dir\"\npath = \"{dir}/pool\"\n"),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    // archive-status prints with println!, which panics on a broken stdout
    // unless the hook turns it into SIGPIPE.
    for args in [
        &["archive-status", "--config", cfg][..],
        &["zfs-list", "--config", cfg][..],
        &["--list"][..],
        &["ddless", "--help"][..],
    ] {
        let (r, w) = nix::unistd::pipe().unwrap();
        drop(r);
        let out = Command::new(bin()).args(args).stdout(std::process::Stdio::from(w)).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert!(
            out.status.signal() == Some(libc::SIGPIPE) || out.status.code().is_some_and(|c| c != 101),
            "{args:?}: {:?} {err}",
            out.status
        );
    }
}

/// A new user's first run: no /etc/santools/santools.toml. Each tool that
/// needs a section says the file does not exist (not that it lacks the
/// section) and how to give one; exit 2, nothing created.
#[test]
fn tools_needing_a_section_say_that_there_is_no_configuration_file() {
    if std::path::Path::new("/etc/santools/santools.toml").exists() {
        eprintln!("SKIPPED: /etc/santools/santools.toml exists on this machine");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    for (name, args, section) in [
        ("backup", &[][..], "[archive]"),
        ("snapcheck", &["-d"][..], "[archive]"),
        ("iscsi-portal", &["--foreground"][..], "[portal]"),
        ("cron-update", &["-n"][..], "[cron]"),
        ("sync-all", &["-n"][..], "[sync]"),
    ] {
        let e =
            fails_with(tool(name).current_dir(d.path()).args(args), &["/etc/santools/santools.toml does not exist"]);
        assert!(e.contains(section) && e.contains("--config FILE"), "{name}: {e}");
    }
    // A monitoring check says it on stdout, in its one status line.
    let o = run(tool("archive-status").current_dir(d.path()));
    assert_eq!(o.status.code(), Some(2));
    assert!(stdout(&o).starts_with("ARCHIVE CRITICAL - no configuration file: /etc/santools/santools.toml"), "{o:?}");
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "a refused run created files");
}
