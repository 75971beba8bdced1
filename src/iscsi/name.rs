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
    if name.len() <= 4 {
        return Some("nothing follows the iqn., eui. or naa. prefix".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Some(format!("too long: {} bytes, an iSCSI name has at most {MAX_NAME_LEN}", name.len()));
    }
    if let Some(c) = name.chars().find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '_'))) {
        return Some(format!("{c:?} is not allowed (letters, digits, '.', '-', ':' and '_' are)"));
    }
    None
}

/// What keeps `name` from being an iSCSI name in the form RFC 7143 4.2.7
/// gives (None: nothing): `iqn.YYYY-MM.naming-authority[:unique]`,
/// `eui.` and 16 hex digits, or `naa.` and 16 or 32 hex digits. For names
/// this host gives itself (its initiator name); names heard from others
/// get the tolerant [`name_problem`], as they were sent.
pub fn format_problem(name: &str) -> Option<String> {
    if let Some(why) = name_problem(name) {
        return Some(why);
    }
    let (kind, rest) = name.split_at(4);
    match kind.to_ascii_lowercase().as_str() {
        "iqn." => {
            // Digits only: parse() alone would take a sign ("+1").
            let number = |s: &str| s.bytes().all(|c| c.is_ascii_digit()).then(|| s.parse::<u16>().ok()).flatten();
            let dated = rest.len() > 8
                && number(&rest[..4]).is_some_and(|y| y >= 1970)
                && rest.as_bytes()[4] == b'-'
                && number(&rest[5..7]).is_some_and(|m| (1..=12).contains(&m))
                && rest.as_bytes()[7] == b'.';
            let (authority, unique) = match rest.get(8..).unwrap_or("").split_once(':') {
                Some((a, u)) => (a, Some(u)),
                None => (rest.get(8..).unwrap_or(""), None),
            };
            // A reversed domain name: labels of letters, digits and '-'.
            let label_ok = |l: &str| {
                !l.is_empty() && !l.starts_with('-') && l.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'-')
            };
            let ok = dated && authority.split('.').all(label_ok) && unique != Some("");
            (!ok).then(|| {
                "an iqn. name reads iqn.YYYY-MM.reversed.domain[:unique], e.g. iqn.2024-01.com.example:host1".into()
            })
        }
        _ => {
            let hex = rest.bytes().all(|c| c.is_ascii_hexdigit());
            let lens: &[usize] = if kind.eq_ignore_ascii_case("eui.") { &[16] } else { &[16, 32] };
            (!hex || !lens.contains(&rest.len())).then(|| {
                format!("an {kind} name is followed by {} hex digits", if lens.len() == 1 { "16" } else { "16 or 32" })
            })
        }
    }
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
        for bad in [
            "",
            "iqn",
            "iqn.",
            "naa.",
            "foo.bar",
            "iqn.x/../../etc",
            "iqn.a b",
            "iqn.\0",
            &format!("iqn.{}", "a".repeat(230)),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn rfc_form_for_names_we_give_ourselves() {
        for ok in [
            "iqn.2024-01.com.example:host1",
            "iqn.1998-01.com.vmware:esx_1",
            "iqn.2024-12.test",
            "iqn.1993-08.org.debian:01:abc",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "eui.02004567A425678D",
            "naa.52004567BA64678D",
            "naa.6001405ABCDEF0123456789ABCDEF012",
        ] {
            assert_eq!(format_problem(ok), None, "{ok}");
        }
        for bad in [
            "iqn.",
            "iqn.x",
            "iqn.2024-1.com.example",
            "iqn.2024-13.com.example",
            "iqn.2024-01",
            "iqn.2024-01.",
            "iqn.2024-01.:x",
            "iqn.20a4-01.com.x",
            "eui.0200",
            "iqn.2024-01.a:",
            "iqn.2024-01.a..b",
            "iqn.0000-01.a",
            "iqn.2024-01.-x",
            "iqn.2024-01.a_b:x",
            "eui.02004567A425678G",
            "naa.52004567BA64678D00",
        ] {
            assert!(format_problem(bad).is_some(), "{bad}");
        }
        assert!(format_problem("iqn.x").unwrap().contains("iqn.YYYY-MM"));
        assert!(format_problem("eui.1").unwrap().contains("16 hex digits"));
    }

    #[test]
    fn problems_in_words() {
        assert_eq!(name_problem("iqn.2024-01.x:i"), None);
        assert!(name_problem("foo").unwrap().contains("starts with iqn."));
        assert!(name_problem(&format!("iqn.{}", "a".repeat(230))).unwrap().contains("too long: 234 bytes"));
        assert!(name_problem("iqn.a b").unwrap().contains("' ' is not allowed"));
    }
}
