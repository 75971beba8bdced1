//! The target tools read text other programs print (tgtadm, /proc/net/iet,
//! /proc/diskstats, lvs) and files operators write (targets.conf, the TOML
//! inventory, ifcfg): none of their parsers may panic on any input.
#![no_main]

use std::collections::BTreeMap;
use std::path::Path;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = santools::targets::live::tgt::parse_show_targets(text);
    let _ = santools::targets::live::tgt::parse_show_params(text);
    let _ = santools::targets::live::tgt::parse_show_accounts(text);
    for name in ["volume", "session", "vpd", "reservation"] {
        let files: BTreeMap<String, String> = [(name.to_string(), text.to_string())].into();
        let _ = santools::targets::live::iet::parse(&files);
    }
    let _ = santools::lvm::iostat::parse(text);
    let _ = santools::lvm::report::parse_lvs(text);
    let _ = santools::targets::import::import_targets_conf("fuzz", text, &mut BTreeMap::new());
    let _ = santools::targets::import::read_ifcfg("fuzz", text);
    let _ = santools::targets::inventory::parse_file(text, Path::new("fuzz.toml"));
});
