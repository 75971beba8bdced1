//! Tells the crate whether this compiler has the 256-bit carry-less
//! multiply intrinsics (`_mm256_clmulepi64_epi128`, stable since Rust
//! 1.89). With them, ddless computes a segment's CRC-32 in the same pass as
//! its MurmurHash3 (src/shared/checksum_x8.rs); without, it builds the
//! separate passes, so the crate's minimum Rust stays 1.80.
//!
//! The test is a probe: a two-line library using the intrinsic is compiled
//! (metadata only) with the same rustc and target. A version number would
//! also accept a 1.89 nightly from before the intrinsics were stable.

use std::path::PathBuf;
use std::process::{Command, Stdio};

const PROBE: &str = r#"
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,vpclmulqdq")]
pub unsafe fn probe(a: std::arch::x86_64::__m256i) -> std::arch::x86_64::__m256i {
    std::arch::x86_64::_mm256_clmulepi64_epi128(a, a, 0x11)
}
"#;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(santools_vpclmulqdq)");
    println!("cargo:rerun-if-changed=build.rs");
    if probe_compiles().unwrap_or(false) {
        println!("cargo:rustc-cfg=santools_vpclmulqdq");
    }
}

fn probe_compiles() -> Option<bool> {
    let out = PathBuf::from(std::env::var_os("OUT_DIR")?);
    let src = out.join("vpclmulqdq_probe.rs");
    std::fs::write(&src, PROBE).ok()?;
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut cmd = Command::new(rustc);
    cmd.args(["--edition", "2021", "--crate-type", "lib", "--emit", "metadata", "--crate-name", "vpclmulqdq_probe"])
        .arg("--out-dir")
        .arg(&out)
        .arg(&src)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if let Some(target) = std::env::var_os("TARGET") {
        cmd.arg("--target").arg(target);
    }
    Some(cmd.status().ok()?.success())
}
