//! Tells the crate whether this rustc has the 256-bit carry-less multiply
//! intrinsics (`_mm256_clmulepi64_epi128`, stable since Rust 1.89). With
//! them, ddless computes a segment's CRC-32 in the same pass as its
//! MurmurHash3 (src/shared/checksum_x8.rs); older compilers build the
//! separate passes, so the crate's minimum Rust stays 1.80.

use std::process::Command;

fn main() {
    println!("cargo:rustc-check-cfg=cfg(santools_vpclmulqdq)");
    println!("cargo:rerun-if-changed=build.rs");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let minor = Command::new(rustc)
        .arg("--version")
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok())
        .and_then(|v| v.split('.').nth(1).and_then(|m| m.parse::<u32>().ok()));
    if minor.is_some_and(|m| m >= 89) {
        println!("cargo:rustc-cfg=santools_vpclmulqdq");
    }
}
