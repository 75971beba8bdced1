//! lvm_copy: copy a volume between `file:`, `lvm:` and `dev:` endpoints,
//! the target local or `host:` over ssh, with dd or ddless (`-m`), staged
//! (`-g`), prepare-only (`-p`), gzip-compressed into a file (`-z`). The
//! copy is a plan of steps (pure, printed with `-n`, tested as such), run
//! step by step through the one command runner.

use std::path::PathBuf;

use serde::Serialize;

/// One end of a copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Endpoint {
    File { host: Option<String>, path: String },
    Lvm { host: Option<String>, vg: String, lv: String },
    Dev { host: Option<String>, path: String },
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CopyError {
    #[error("{0:?}: expected file:[HOST:]PATH, lvm:[HOST:]/dev/VG/LV or dev:[HOST:]/dev/NAME")]
    BadEndpoint(String),
    #[error("the source must be local")]
    RemoteSource,
    #[error("ddless cannot write to a remote host or compress (use -m dd)")]
    DdlessRemote,
    #[error("-z compresses into a file target only")]
    CompressNeedsFile,
    #[error("target device {path} has {have} bytes, the source {need}")]
    TargetTooSmall { path: String, have: u64, need: u64 },
    #[error("-g stages LVM targets only")]
    StageNeedsLvm,
    #[error("ddless needs a checksum file (-o \"-c FILE\")")]
    NeedChecksum,
}

fn host_ok(h: &str) -> bool {
    !h.is_empty() && !h.starts_with('-') && h.chars().all(|c| c.is_ascii_alphanumeric() || ".-_@".contains(c))
}

impl std::str::FromStr for Endpoint {
    type Err = CopyError;
    fn from_str(s: &str) -> Result<Self, CopyError> {
        let bad = || CopyError::BadEndpoint(s.into());
        let (kind, rest) = s.split_once(':').ok_or_else(bad)?;
        let (host, path) = match rest.split_once(':') {
            Some((h, p)) if !h.contains('/') => {
                if !host_ok(h) {
                    return Err(bad());
                }
                (Some(h.to_string()), p)
            }
            _ => (None, rest),
        };
        if !path.starts_with('/') || path.split('/').any(|c| c == "..") || path.chars().any(|c| c.is_control()) {
            return Err(bad());
        }
        match kind {
            "file" => Ok(Endpoint::File { host, path: path.into() }),
            "dev" => Ok(Endpoint::Dev { host, path: path.into() }),
            "lvm" => {
                let (vg, lv) = crate::lvm::snap::split_lv(path).map_err(|_| bad())?;
                Ok(Endpoint::Lvm { host, vg, lv })
            }
            _ => Err(bad()),
        }
    }
}

impl Endpoint {
    pub fn host(&self) -> Option<&str> {
        match self {
            Endpoint::File { host, .. } | Endpoint::Lvm { host, .. } | Endpoint::Dev { host, .. } => host.as_deref(),
        }
    }
    pub fn path(&self) -> String {
        match self {
            Endpoint::File { path, .. } | Endpoint::Dev { path, .. } => path.clone(),
            Endpoint::Lvm { vg, lv, .. } => format!("/dev/{vg}/{lv}"),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Method {
    Dd,
    Ddless,
}

#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    pub method: Option<Method>,
    /// Extra arguments for dd or ddless (the seed's `-o`).
    pub module_options: Vec<String>,
    pub stage: bool,
    pub prepare_only: bool,
    pub compress: bool,
}

/// What the target looks like now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TargetState {
    pub exists: bool,
    pub size: u64,
}

/// One step of a copy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Step {
    /// Run a command (on a host, or here).
    Run { host: Option<String>, argv: Vec<String> },
    /// Stream a local command's stdout into a command on `host`'s stdin.
    Pipe { from: Vec<String>, host: Option<String>, to: Vec<String> },
}

fn s(v: &[&str]) -> Vec<String> {
    v.iter().map(|x| x.to_string()).collect()
}

/// The steps of a copy of `size` bytes from `src` to `dst`.
pub fn plan(
    src: &Endpoint,
    size: u64,
    dst: &Endpoint,
    target: TargetState,
    o: &CopyOptions,
    santools: &str,
) -> Result<Vec<Step>, CopyError> {
    if src.host().is_some() {
        return Err(CopyError::RemoteSource);
    }
    let method = o.method.unwrap_or(Method::Dd);
    let host = dst.host().map(str::to_string);
    if method == Method::Ddless && (host.is_some() || o.compress) {
        return Err(CopyError::DdlessRemote);
    }
    if o.compress && !matches!(dst, Endpoint::File { .. }) {
        return Err(CopyError::CompressNeedsFile);
    }
    if o.stage && !matches!(dst, Endpoint::Lvm { .. }) {
        return Err(CopyError::StageNeedsLvm);
    }
    let mut steps = Vec::new();
    let mut write_to = dst.path();
    // Prepare the target.
    match dst {
        Endpoint::Lvm { vg, lv, .. } => {
            let bytes = format!("{size}b");
            if !target.exists {
                steps
                    .push(Step::Run { host: host.clone(), argv: s(&["lvcreate", "--name", lv, "--size", &bytes, vg]) });
            } else if target.size < size {
                steps.push(Step::Run {
                    host: host.clone(),
                    argv: s(&["lvextend", "--size", &bytes, &format!("{vg}/{lv}")]),
                });
            }
            if o.stage {
                let stage = format!("{lv}_stage");
                match method {
                    // dd writes a fresh stage volume that replaces the target on success.
                    Method::Dd => {
                        steps.push(Step::Run {
                            host: host.clone(),
                            argv: s(&["lvcreate", "--name", &stage, "--size", &bytes, vg]),
                        });
                        write_to = format!("/dev/{vg}/{stage}");
                    }
                    // ddless writes the target under a snapshot that keeps the old data until it succeeded.
                    Method::Ddless => {
                        let snap = crate::lvm::snap::snap_bytes(size, 4 << 20, crate::lvm::snap::SnapSize::Default);
                        steps.push(Step::Run {
                            host: host.clone(),
                            argv: s(&[
                                "lvcreate",
                                "--snapshot",
                                "--name",
                                &stage,
                                "--size",
                                &format!("{snap}b"),
                                &format!("{vg}/{lv}"),
                            ]),
                        });
                    }
                }
            }
        }
        Endpoint::Dev { path, .. } if target.size < size => {
            return Err(CopyError::TargetTooSmall { path: path.clone(), have: target.size, need: size });
        }
        _ => {}
    }
    if o.prepare_only {
        return Ok(steps);
    }
    let src_path = src.path();
    match method {
        Method::Dd => {
            let from = if o.compress {
                s(&["gzip", "-c", "-1", &src_path])
            } else {
                let mut v = s(&["dd", &format!("if={src_path}"), "bs=1M", "status=none"]);
                v.extend(o.module_options.iter().cloned());
                v
            };
            let mut to = s(&["dd", &format!("of={write_to}"), "bs=1M", "status=none", "conv=fsync"]);
            if !matches!(dst, Endpoint::File { .. }) {
                to.push("oflag=direct".into());
            }
            steps.push(Step::Pipe { from, host: host.clone(), to });
        }
        Method::Ddless => {
            if !o.module_options.iter().any(|a| a == "-c" || a.starts_with("--checksum")) {
                return Err(CopyError::NeedChecksum);
            }
            let mut v = s(&[santools, "ddless", "-s", &src_path, "-t", &write_to]);
            v.extend(o.module_options.iter().cloned());
            steps.push(Step::Run { host: None, argv: v });
        }
    }
    if o.stage {
        if let Endpoint::Lvm { vg, lv, .. } = dst {
            let stage = format!("{lv}_stage");
            match method {
                Method::Dd => {
                    steps.push(Step::Run {
                        host: host.clone(),
                        argv: s(&["lvremove", "--force", &format!("{vg}/{lv}")]),
                    });
                    steps.push(Step::Run { host: host.clone(), argv: s(&["lvrename", vg, &stage, lv]) });
                }
                Method::Ddless => {
                    steps.push(Step::Run {
                        host: host.clone(),
                        argv: s(&["lvremove", "--force", &format!("{vg}/{stage}")]),
                    });
                }
            }
        }
    }
    Ok(steps)
}

/// A step as a shell line (for `-n`).
pub fn render(step: &Step) -> String {
    let q = |v: &[String]| v.iter().map(|a| crate::shared::command::shell_quote(a)).collect::<Vec<_>>().join(" ");
    let on = |h: &Option<String>, line: String| match h {
        Some(h) => format!("ssh -o BatchMode=yes {h} -- {}", crate::shared::command::shell_quote(&line)),
        None => line,
    };
    match step {
        Step::Run { host, argv } => on(host, q(argv)),
        Step::Pipe { from, host, to } => format!("{} | {}", q(from), on(host, q(to))),
    }
}

/// Where santools itself is, for the ddless step.
pub fn self_exe() -> String {
    std::env::current_exe().map(|p: PathBuf| p.to_string_lossy().into_owned()).unwrap_or_else(|_| "santools".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(s: &str) -> Endpoint {
        s.parse().unwrap()
    }

    const NEW: TargetState = TargetState { exists: false, size: 0 };

    #[test]
    fn endpoints_parse() {
        assert_eq!(
            ep("lvm:/dev/vg_test/lv_test"),
            Endpoint::Lvm { host: None, vg: "vg_test".into(), lv: "lv_test".into() }
        );
        assert_eq!(
            ep("file:backup1:/tmp/somefile"),
            Endpoint::File { host: Some("backup1".into()), path: "/tmp/somefile".into() }
        );
        assert_eq!(ep("dev:/dev/sda"), Endpoint::Dev { host: None, path: "/dev/sda".into() });
        for bad in ["lvm:/dev/sda", "tape:/dev/st0", "file:relative", "file:-oProxy:/x", "file:/a/../b", "nocolon"] {
            assert!(bad.parse::<Endpoint>().is_err(), "{bad}");
        }
    }

    #[test]
    fn seed_example_lvm_to_lvm_with_dd_creates_the_target() {
        let steps = plan(
            &ep("lvm:/dev/vg_test/lv_test"),
            1 << 30,
            &ep("lvm:/dev/vg_big/lv_test"),
            NEW,
            &CopyOptions::default(),
            "santools",
        )
        .unwrap();
        let lines: Vec<String> = steps.iter().map(render).collect();
        assert_eq!(
            lines,
            [
                "lvcreate --name lv_test --size 1073741824b vg_big",
                "dd if=/dev/vg_test/lv_test bs=1M status=none | dd of=/dev/vg_big/lv_test bs=1M status=none conv=fsync oflag=direct"
            ]
        );
    }

    #[test]
    fn plan_table() {
        let small = TargetState { exists: true, size: 1 << 20 };
        let big = TargetState { exists: true, size: 4 << 30 };
        let o = |m: Method, stage: bool, prep: bool, z: bool, opts: &[&str]| CopyOptions {
            method: Some(m),
            module_options: opts.iter().map(|x| x.to_string()).collect(),
            stage,
            prepare_only: prep,
            compress: z,
        };
        let src = ep("lvm:/dev/vg_a/lv_x");
        for (dst, state, opts, want) in [
            ("lvm:/dev/vg_b/lv_x", small, o(Method::Dd, false, true, false, &[]), vec!["lvextend --size 1073741824b vg_b/lv_x"]),
            ("lvm:/dev/vg_b/lv_x", big, o(Method::Dd, false, true, false, &[]), vec![]),
            (
                "lvm:node2:/dev/vg_b/lv_x",
                big,
                o(Method::Dd, true, false, false, &[]),
                vec![
                    "ssh -o BatchMode=yes node2 -- 'lvcreate --name lv_x_stage --size 1073741824b vg_b'",
                    "dd if=/dev/vg_a/lv_x bs=1M status=none | ssh -o BatchMode=yes node2 -- 'dd of=/dev/vg_b/lv_x_stage bs=1M status=none conv=fsync oflag=direct'",
                    "ssh -o BatchMode=yes node2 -- 'lvremove --force vg_b/lv_x'",
                    "ssh -o BatchMode=yes node2 -- 'lvrename vg_b lv_x_stage lv_x'",
                ],
            ),
            (
                "lvm:/dev/vg_b/lv_x",
                big,
                o(Method::Ddless, true, false, false, &["-c", "/var/lib/x.ddless"]),
                vec![
                    "lvcreate --snapshot --name lv_x_stage --size 218103808b vg_b/lv_x",
                    "santools ddless -s /dev/vg_a/lv_x -t /dev/vg_b/lv_x -c /var/lib/x.ddless",
                    "lvremove --force vg_b/lv_x_stage",
                ],
            ),
            ("file:/backup/x.img.gz", NEW, o(Method::Dd, false, false, true, &[]), vec!["gzip -c -1 /dev/vg_a/lv_x | dd of=/backup/x.img.gz bs=1M status=none conv=fsync"]),
        ] {
            let lines: Vec<String> = plan(&src, 1 << 30, &ep(dst), state, &opts, "santools").unwrap().iter().map(render).collect();
            assert_eq!(lines, want, "{dst}");
        }
        for (dst, state, opts, err) in [
            ("dev:/dev/sdb", small, o(Method::Dd, false, false, false, &[]), "has 1048576 bytes"),
            ("file:h:/x", NEW, o(Method::Ddless, false, false, false, &["-c", "/x"]), "remote"),
            ("lvm:/dev/v/l", NEW, o(Method::Dd, false, false, true, &[]), "file target"),
            ("file:/x", NEW, o(Method::Dd, true, false, false, &[]), "LVM targets"),
            ("file:/x", NEW, o(Method::Ddless, false, false, false, &[]), "checksum"),
        ] {
            let e = plan(&src, 1 << 30, &ep(dst), state, &opts, "santools").unwrap_err().to_string();
            assert!(e.contains(err), "{dst}: {e}");
        }
        assert_eq!(
            plan(&ep("file:h:/x"), 1, &ep("file:/y"), NEW, &CopyOptions::default(), "s"),
            Err(CopyError::RemoteSource)
        );
    }
}
