//! iSCSI names (RFC 7143 4.2.7): `iqn.`, `eui.` or `naa.` names of at most
//! 223 bytes. Names arrive from the network and become state-file names, so
//! anything outside the allowed characters is refused.

pub const MAX_NAME_LEN: usize = 223;

/// Whether `name` is a well-formed iSCSI name. Case is accepted as sent
/// (initiators differ in how strictly they lower-case).
pub fn is_valid_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let prefixed = lower.starts_with("iqn.") || lower.starts_with("eui.") || lower.starts_with("naa.");
    prefixed
        && name.len() <= MAX_NAME_LEN
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'_'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for ok in [
            "iqn.1990-01.edu.amherst:iet.iscsi-target.pg-vlan10-fabric.vg-dsk-0.lv-server01-apps-vol00",
            "eui.02004567A425678D",
            "naa.52004567BA64678D",
            "iqn.1998-01.com.vmware:esx_1",
        ] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in ["", "iqn", "foo.bar", "iqn.x/../../etc", "iqn.a b", "iqn.\0", &format!("iqn.{}", "a".repeat(230))] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }
}
