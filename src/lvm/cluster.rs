//! lvm_cluster: run an LVM command on the node where its volume group is
//! active. Which group a command names is read from its arguments (pure);
//! which node has it active comes from each node's `lvs` report (pure
//! choice over the reports, refusing none or two).

use crate::lvm::report::Lv;

/// Commands run on every node (reports).
pub const EVERYWHERE: &[&str] = &["vgs", "vgdisplay", "lvs", "lvscan"];
/// Commands run on the node with the volume group active.
pub const ON_ACTIVE: &[&str] = &["lvcreate", "lvextend", "lvremove", "lvresize", "lvrename", "lvchange", "lvreduce"];

/// Options of those commands that take a value as the next argument.
const VALUE_OPTS: &[&str] = &[
    "-L",
    "--size",
    "-l",
    "--extents",
    "-n",
    "--name",
    "-c",
    "--chunksize",
    "-i",
    "--stripes",
    "-I",
    "--stripesize",
    "-m",
    "--mirrors",
    "--type",
    "-r",
    "--readahead",
    "-C",
    "--contiguous",
    "-p",
    "--permission",
    "-a",
    "--activate",
    "--config",
    "--addtag",
    "--deltag",
    "-R",
    "--regionsize",
    "-V",
    "--virtualsize",
    "-T",
    "--thin",
    "--thinpool",
    "--poolmetadatasize",
    "-k",
    "--setactivationskip",
    "--alloc",
    "-Z",
    "--zero",
    "-W",
    "--wipesignatures",
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ClusterError {
    #[error(
        "lvm-cluster runs {EVERYWHERE:?} on every node and {ON_ACTIVE:?} where the volume group is active; not {0:?}"
    )]
    Unsupported(String),
    #[error("cannot tell which volume group `{0}` works on (expected VG, VG/LV or /dev/VG/LV)")]
    NoVg(String),
    #[error("volume group {0} is active on no node")]
    Nowhere(String),
    #[error("volume group {0} is active on more than one node: {1:?}; refusing")]
    Several(String, Vec<String>),
}

/// The volume group an `ON_ACTIVE` command works on.
pub fn vg_of(cmd: &str, args: &[String]) -> Result<String, ClusterError> {
    if !ON_ACTIVE.contains(&cmd) {
        return Err(ClusterError::Unsupported(cmd.into()));
    }
    let mut positional = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        if a == "--" {
            positional.extend(args[i + 1..].iter().cloned());
            break;
        }
        if a.starts_with('-') {
            let opt = a.split('=').next().unwrap_or(a);
            let attached = a.contains('=') || (a.len() > 2 && !a.starts_with("--"));
            if VALUE_OPTS.contains(&opt) && !attached {
                i += 1;
            }
        } else {
            positional.push(a.clone());
        }
        i += 1;
    }
    let first = positional.first().ok_or_else(|| ClusterError::NoVg(format!("{cmd} {}", args.join(" "))))?;
    let rest = first.strip_prefix("/dev/").unwrap_or(first);
    let vg = rest.split('/').next().unwrap_or("");
    if crate::targets::model::check_lvm_name(vg).is_err() {
        return Err(ClusterError::NoVg(format!("{cmd} {}", args.join(" "))));
    }
    Ok(vg.to_string())
}

/// The one node whose report shows an active volume of `vg`.
pub fn choose<'a>(vg: &str, reports: &'a [(String, Vec<Lv>)]) -> Result<&'a str, ClusterError> {
    let active: Vec<&str> = reports
        .iter()
        .filter(|(_, lvs)| lvs.iter().any(|l| l.vg == vg && l.is_active()))
        .map(|(h, _)| h.as_str())
        .collect();
    match active.as_slice() {
        [one] => Ok(one),
        [] => Err(ClusterError::Nowhere(vg.into())),
        many => Err(ClusterError::Several(vg.into(), many.iter().map(|s| s.to_string()).collect())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_string).collect()
    }

    #[test]
    fn volume_group_from_arguments() {
        for (cmd, args, vg) in [
            ("lvcreate", "-L1024G -n lv_server01_apps_vol00 vg_dsk_0", "vg_dsk_0"),
            ("lvcreate", "-L 1024G --name lv_x vg_dsk_1", "vg_dsk_1"),
            ("lvextend", "-L +500G /dev/vg_dsk_0/lv_server01_apps_vol00", "vg_dsk_0"),
            ("lvremove", "-f vg_dsk_1/lv_x", "vg_dsk_1"),
            ("lvcreate", "--size=1G -n x vg_a", "vg_a"),
        ] {
            assert_eq!(vg_of(cmd, &v(args)).unwrap(), vg, "{cmd} {args}");
        }
        assert!(matches!(vg_of("lvcreate", &v("-L 1G -n x")), Err(ClusterError::NoVg(_))));
        assert!(matches!(vg_of("vgremove", &v("vg_a")), Err(ClusterError::Unsupported(_))));
    }

    fn lv(vg: &str, attr: &str) -> Lv {
        Lv {
            vg: vg.into(),
            name: "lv".into(),
            path: String::new(),
            attr: attr.into(),
            size: 1,
            origin: None,
            extent_size: 1,
        }
    }

    #[test]
    fn the_node_with_the_active_group_is_chosen() {
        let reports = vec![
            ("node1".to_string(), vec![lv("vg_dsk_0", "-wi-a-----"), lv("vg_dsk_1", "-wi-------")]),
            ("node2".to_string(), vec![lv("vg_dsk_0", "-wi-------"), lv("vg_dsk_1", "-wi-ao----")]),
        ];
        assert_eq!(choose("vg_dsk_0", &reports).unwrap(), "node1");
        assert_eq!(choose("vg_dsk_1", &reports).unwrap(), "node2");
        assert!(matches!(choose("vg_other", &reports), Err(ClusterError::Nowhere(_))));
        let both = vec![
            ("node1".to_string(), vec![lv("vg_a", "-wi-a-----")]),
            ("node2".to_string(), vec![lv("vg_a", "-wi-a-----")]),
        ];
        assert!(matches!(choose("vg_a", &both), Err(ClusterError::Several(..))));
    }
}
