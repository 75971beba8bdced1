//! The archive host's side: run `lun-snapshot` on a target node through
//! ssh (argument vectors, BatchMode, host keys checked by ssh), and fetch
//! the change map, so the archive's `command` source gets a map path it
//! can read. The map is checked (format, size for the volume) before it is
//! written, atomically, to the local map directory.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};

use super::{Outcome, Prepared, Released};
use crate::shared::atomic_file::write_atomic;
use crate::shared::change_map::words_for_volume;
use crate::shared::command::{Command, SshTarget};
use crate::shared::ddmap_file::{Ddmap, DDMAP_HEADER_SIZE};
use crate::targets::model::check_target_iqn;

/// Largest JSON answer accepted from the node.
const MAX_ANSWER: usize = 64 * 1024;
/// Largest volume whose change map is fetched (a 1 GiB map): the map is
/// held in memory, and its size bound comes from the node's answer.
const MAX_REMOTE_VOLUME: u64 = 1 << 47;

#[derive(Clone, Debug)]
pub struct Remote {
    pub ssh: SshTarget,
    /// The santools program on the node.
    pub santools: String,
    /// Node-side options passed along (`--initiator`, `--portal`, ...).
    pub forwarded: Vec<String>,
    /// Where fetched maps are kept on this host.
    pub map_dir: PathBuf,
    pub timeout: Duration,
}

impl Remote {
    fn command(&self, sub: &str, volume: &str, extra: &[&str]) -> Command {
        Command::new(&self.santools)
            .args(["lun-snapshot", sub])
            .args(extra)
            .args(&self.forwarded)
            .arg("--")
            .arg(volume)
            .timeout(self.timeout)
            .ssh(self.ssh.clone())
    }
}

/// What this host takes from a node's `create` answer before acting on it.
/// The export IQN names the map file written here: one with '/' or '..' (a
/// compromised node's "../../x") would have this host write where the node
/// says. The volume size bounds the map read into memory.
fn check_answer(p: &Prepared, host: &str) -> anyhow::Result<()> {
    check_target_iqn(&p.iqn)
        .map_err(|e| anyhow::anyhow!("{host}: lun-snapshot create answered with export IQN {:?}, which {e}", p.iqn))?;
    if p.ddmap.is_some() && p.size > MAX_REMOTE_VOLUME {
        bail!(
            "{host}: lun-snapshot create answered with a volume of {} bytes, more than this host takes a map for",
            p.size
        );
    }
    Ok(())
}

pub fn create(r: &Remote, volume: &str) -> anyhow::Result<Prepared> {
    let out = r.command("create", volume, &["--json"]).max_stdout(MAX_ANSWER).run()?;
    let mut p: Prepared = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: lun-snapshot create printed no snapshot description", r.ssh.host))?;
    check_answer(&p, &r.ssh.host)?;
    if p.ddmap.is_some() {
        let limit = DDMAP_HEADER_SIZE as u64 + 4 * words_for_volume(p.size);
        let out = r.command("map", volume, &[]).max_stdout(usize::try_from(limit)? + 1).run()?;
        let map =
            Ddmap::parse(&out.stdout).with_context(|| format!("the change map of {volume} from {}", r.ssh.host))?;
        if !map.fits_volume(p.size) {
            bail!("the change map of {volume} from {} does not fit its {} bytes", r.ssh.host, p.size);
        }
        std::fs::create_dir_all(&r.map_dir).with_context(|| format!("creating {}", r.map_dir.display()))?;
        let local = r.map_dir.join(format!("{}.ddmap", p.iqn));
        write_atomic(&local, &out.stdout).with_context(|| format!("writing {}", local.display()))?;
        p.ddmap = Some(local);
    }
    if p.url.is_none() {
        tracing::warn!("no --portal: the snapshot's path {} is on {}", p.snapshot.display(), r.ssh.host);
    }
    Ok(p)
}

pub fn release(r: &Remote, volume: &str, outcome: Outcome) -> anyhow::Result<Released> {
    let status = match outcome {
        Outcome::Success => "success",
        Outcome::Failure => "failure",
    };
    let out = r.command("release", volume, &["--json", "--status", status]).max_stdout(MAX_ANSWER).run()?;
    let rel: Released = serde_json::from_slice(&out.stdout)
        .with_context(|| format!("{}: lun-snapshot release printed no result", r.ssh.host))?;
    Ok(rel)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding T17 (attack-targets): the map fetched from a node was written
    /// to `map_dir/<iqn from the node's answer>.ddmap`: an answer with
    /// "../../etc/x" or "/etc/x" as IQN wrote outside the map directory.
    #[test]
    fn a_nodes_answer_cannot_name_a_file_outside_the_map_dir() {
        let answer = |iqn: &str, size: u64| -> Prepared {
            serde_json::from_value(serde_json::json!({
                "iqn": iqn, "token": iqn, "snapshot": "/srv/.lun-snapshot/v/snapshot.img", "size": size,
                "ddmap": "/srv/.lun-snapshot/v/changes.ddmap", "ddmap_state": "CLEAN", "kind": "file",
            }))
            .unwrap()
        };
        for bad in ["../../etc/x", "/etc/x", "iqn.2024-01.org.santools.lun-snapshot/../../x", ""] {
            let e = check_answer(&answer(bad, 1 << 20), "node1").unwrap_err().to_string();
            assert!(e.contains("node1") && e.contains("export IQN"), "{bad}: {e}");
        }
        check_answer(&answer("iqn.2024-01.org.santools.lun-snapshot.v-img.1a2b3c4d", 1 << 20), "node1").unwrap();
        let e = check_answer(&answer("iqn.2024-01.org.santools.lun-snapshot.v", u64::MAX), "n").unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
    }
}
