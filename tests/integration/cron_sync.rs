//! cron-update on a real crontab (of a throwaway user), as systemd units,
//! and sync-all to a second "host" (a second configuration root) through a
//! real sshd.

use std::process::Command;

use crate::helpers::*;
use crate::ssh_lab::Sshd;

/// A system user of our own, with its crontab removed and the user deleted
/// on drop.
struct TempUser(String);

impl TempUser {
    fn new() -> Option<TempUser> {
        let ok = is_root() && which("crontab").is_some() && which("useradd").is_some();
        if !real_component("cron (crontab) and useradd as root", ok, "apt-get install cron") {
            return None;
        }
        let name = format!("santest{}", std::process::id() % 1_000_000);
        let o = Command::new("useradd").args(["-M", "-N", "-s", "/usr/sbin/nologin", &name]).output().unwrap();
        assert!(o.status.success(), "useradd: {}", String::from_utf8_lossy(&o.stderr));
        Some(TempUser(name))
    }

    fn crontab(&self) -> String {
        let o = Command::new("crontab").args(["-u", &self.0, "-l"]).output().unwrap();
        String::from_utf8_lossy(&o.stdout).into_owned()
    }
}

impl Drop for TempUser {
    fn drop(&mut self) {
        let _ = Command::new("crontab").args(["-u", &self.0, "-r"]).output();
        let _ = Command::new("userdel").arg(&self.0).output();
    }
}

fn config(dir: &std::path::Path, host_table: &str) -> std::path::PathBuf {
    let p = dir.join("santools.toml");
    write(
        &p,
        format!("[cron]\nstate_dir = {:?}\nlock_dir = {:?}\n\n{host_table}", dir.join("state"), dir.join("locks"))
            .as_bytes(),
    );
    p
}

const JOBS: &str = r#"jobs = [
  { name = "snapcheck", schedule = "0 7 * * *", command = ["/bin/true", "snapcheck -d"], comment = "7:00am daily" },
  { name = "snaprotate", schedule = "0 22 * * 1-5", command = ["/bin/true", "100%"] },
]
"#;

#[test]
fn cron_update_rewrites_only_its_section_and_is_idempotent() {
    let Some(user) = TempUser::new() else { return };
    let d = tempfile::tempdir().unwrap();
    let own = "MAILTO=root\n# the operator's own job\n*/5 * * * * /bin/true mine\n";
    write(&d.path().join("own"), own.as_bytes());
    ok(Command::new("crontab").args(["-u", &user.0]).arg(d.path().join("own")));
    let cfg = config(d.path(), &format!("[cron.hosts.h1]\ncrontab_user = \"{}\"\n{JOBS}", user.0));
    let cron = |args: &[&str]| {
        let mut c = tool("cron-update");
        c.arg("--config").arg(&cfg).args(["--host", "h1"]).args(args);
        c
    };
    // -n shows the change and changes nothing.
    let out = ok(&mut cron(&["-n"]));
    assert!(out.contains("+# >>> MultiHost Cron BEGIN (h1 ") && out.contains("would change"), "{out}");
    assert_eq!(user.crontab(), own);
    ok(&mut cron(&[]));
    let tab = user.crontab();
    assert!(tab.starts_with(own), "{tab}");
    assert!(
        tab.contains("# >>> MultiHost Cron BEGIN (h1 ") && tab.trim_end().ends_with("# <<< MultiHost Cron END"),
        "{tab}"
    );
    assert!(
        tab.contains("0 7 * * * /usr/bin/flock -n ")
            && tab.contains("santools-cron-snapcheck.lock /bin/true 'snapcheck -d'"),
        "{tab}"
    );
    assert!(tab.contains("/bin/true 100\\%"), "{tab}");
    assert!(d.path().join("state/cron.h1.current").exists() && d.path().join("state/cron.h1.new").exists());
    // A second run changes nothing, not even the time in the marker.
    let out = ok(&mut cron(&[]));
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(user.crontab(), tab);
    // A changed job: only the section changes.
    config(
        d.path(),
        &format!("[cron.hosts.h1]\ncrontab_user = \"{}\"\n{}", user.0, JOBS.replace("0 7 * * *", "30 6 * * *")),
    );
    ok(&mut cron(&[]));
    let tab2 = user.crontab();
    assert!(tab2.starts_with(own) && tab2.contains("30 6 * * * ") && !tab2.contains("0 7 * * * "), "{tab2}");
    // Bad input names the key and changes nothing.
    config(
        d.path(),
        &format!("[cron.hosts.h1]\ncrontab_user = \"{}\"\n{}", user.0, JOBS.replace("0 7 * * *", "0 25 * * *")),
    );
    fails_with(&mut cron(&[]), &["cron.hosts.h1.jobs[0].schedule", "hour"]);
    fails_with(tool("cron-update").arg("--config").arg(&cfg).args(["--host", "nosuch"]), &["nosuch"]);
    assert_eq!(user.crontab(), tab2);
}

#[test]
fn cron_update_writes_systemd_timers() {
    let d = tempfile::tempdir().unwrap();
    let units = d.path().join("units");
    std::fs::create_dir(&units).unwrap();
    write(&units.join("santools-foreign.service"), b"[Service]\nExecStart=/bin/true\n");
    let cfg = config(d.path(), &format!("[cron.hosts.h1]\n{JOBS}"));
    let cron = |args: &[&str]| {
        let mut c = tool("cron-update");
        c.arg("--config").arg(&cfg).args(["--host", "h1", "--systemd"]).arg(&units).args(args);
        c
    };
    ok(&mut cron(&[]));
    let timer = std::fs::read_to_string(units.join("santools-snaprotate.timer")).unwrap();
    assert!(timer.contains("OnCalendar=Mon,Tue,Wed,Thu,Fri *-*-* 22:00:00\nPersistent=true\n"), "{timer}");
    let service = std::fs::read_to_string(units.join("santools-snapcheck.service")).unwrap();
    assert!(
        service.contains("Type=oneshot") && service.contains("santools-cron-snapcheck.lock /bin/true \"snapcheck -d\""),
        "{service}"
    );
    assert!(std::fs::read_to_string(units.join("santools-snaprotate.service")).unwrap().contains("/bin/true 100%%"));
    // systemd itself accepts every calendar expression.
    if which("systemd-analyze").is_some() {
        for line in timer.lines().filter_map(|l| l.strip_prefix("OnCalendar=")) {
            ok(Command::new("systemd-analyze").args(["calendar", line]));
        }
    }
    assert!(ok(&mut cron(&[])).contains("up to date"));
    // A job removed: its units go, the foreign unit stays.
    config(
        d.path(),
        "[cron.hosts.h1]\njobs = [ { name = \"snapcheck\", schedule = \"@daily\", command = [\"/bin/true\"] } ]\n",
    );
    let out = ok(&mut cron(&[]));
    assert!(out.contains("removed") && !units.join("santools-snaprotate.timer").exists(), "{out}");
    assert!(units.join("santools-foreign.service").exists());
    // A unit santools did not write is never replaced.
    write(&units.join("santools-snapcheck.timer"), b"[Timer]\nOnCalendar=daily\n");
    fails_with(&mut cron(&[]), &["not written by santools"]);
    // Finding (attack-final): one that is not UTF-8 read as absent and was
    // replaced unchecked.
    write(&units.join("santools-snapcheck.timer"), b"[Timer]\n\xff\xfe\n");
    fails_with(&mut cron(&[]), &["santools-snapcheck.timer", "refusing to replace it"]);
    assert_eq!(std::fs::read(units.join("santools-snapcheck.timer")).unwrap(), b"[Timer]\n\xff\xfe\n");
}

#[test]
fn sync_all_copies_to_another_host_through_a_real_sshd() {
    let Some(sshd) = Sshd::start() else { return };
    if !real_component("rsync", which("rsync").is_some(), "apt-get install rsync") {
        return;
    }
    let alpha = tempfile::tempdir().unwrap();
    let beta = tempfile::tempdir().unwrap();
    let (a, b) = (alpha.path(), beta.path());
    std::fs::create_dir_all(a.join("scripts")).unwrap();
    std::fs::create_dir_all(b.join("units")).unwrap();
    write(&a.join("scripts/job.sh"), b"#!/bin/sh\n");
    write(&a.join("scripts/secret.local"), b"only here\n");
    write(&a.join("sync_include.conf"), b"santools.toml\nscripts/\nscripts/job.sh\nscripts/secret.local\n");
    write(&a.join("sync_exclude.conf"), b"*.local\n");
    let text = format!(
        "[cron]\nstate_dir = {:?}\nlock_dir = {:?}\n\n[cron.hosts.beta]\nsystemd_dir = {:?}\n{JOBS}\n[sync]\nroot = {:?}\nsantools = {:?}\n\n[sync.hosts.alpha]\n\n[sync.hosts.beta]\naddress = \"{}\"\nroot = {:?}\n{}",
        b.join("state"),
        b.join("locks"),
        b.join("units"),
        a,
        bin(),
        sshd.addr,
        b,
        sshd.ssh_toml()
    );
    write(&a.join("santools.toml"), text.as_bytes());
    let sync = |args: &[&str]| {
        let mut c = tool("sync-all");
        c.arg("--config").arg(a.join("santools.toml")).args(["--host", "alpha"]).args(args);
        c
    };
    // -n copies nothing.
    let out = ok(&mut sync(&["-n"]));
    assert!(out.contains("beta: synchronized (dry run)"), "{out}\n{}", sshd.log());
    assert!(!b.join("santools.toml").exists());
    let out = ok(&mut sync(&[]));
    assert!(out.contains("beta: synchronized"), "{out}");
    assert_eq!(std::fs::read(b.join("santools.toml")).unwrap(), std::fs::read(a.join("santools.toml")).unwrap());
    assert!(b.join("scripts/job.sh").exists());
    assert!(!b.join("scripts/secret.local").exists(), "excluded file copied");
    // cron-update ran on beta with the configuration it received.
    assert!(b.join("units/santools-snapcheck.timer").exists() && b.join("units/santools-snaprotate.service").exists());
    let out = ok(&mut sync(&[]));
    assert!(out.contains("up to date"), "{out}");
    // A host whose key does not match is an error for that host.
    write(
        &sshd.known_hosts,
        format!(
            "[{}]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJmb0bogusbogusbogusbogusbogusbogusbogusbogus\n",
            sshd.addr, sshd.port
        )
        .as_bytes(),
    );
    let o = run(&mut sync(&[]));
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stdout(&o).contains("beta: FAILED"), "{}", stdout(&o));
}
