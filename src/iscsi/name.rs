//! iSCSI names (RFC 7143 4.2.7): `iqn.`, `eui.` or `naa.` names of at most
//! 223 bytes. Names arrive from the network and become state-file names, so
//! anything outside the allowed characters is refused.

pub const MAX_NAME_LEN: usize = 223;

/// Whether `name` is a well-formed iSCSI name. Case is accepted as sent
/// (initiators differ in how strictly they lower-case).
pub fn is_valid_name(name: &str) -> bool {
    name_problem(name).is_none()
}

/// What is wrong with `name` as an iSCSI name, in words (None: nothing).
pub fn name_problem(name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    if !(lower.starts_with("iqn.") || lower.starts_with("eui.") || lower.starts_with("naa.")) {
        return Some("an iSCSI name starts with iqn., eui. or naa.".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("too long: {} bytes, an iSCSI name has at most {MAX_NAME_LEN}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))) {
        return Some(format!("{c:?} is not allowed (letters, digits, '.', '-', ':' and '_' are)"));
    }
    None
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

    #[test]
    fn problems_in_words() {
        assert_eq!(name_problem("iqn.2024-01.x:i"), None);
        assert!(name_problem("foo").unwrap().contains("starts with iqn."));
        assert!(name_problem(&format!("iqn.{}", "a".repeat(230))).unwrap().contains("too long: 234 bytes"));
        assert!(name_problem("iqn.a b").unwrap().contains("' ' is not allowed"));
    }
}
