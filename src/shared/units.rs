//! Human-readable sizes and rates in the units the seed's logs use:
//! "GB" and "MB" are binary (2^30, 2^20), so 5368709120 bytes print as
//! "5.00 GB" and 5120 MB in 40 s as "128.00 MB/s".

pub const MIB: f64 = 1024.0 * 1024.0;
pub const GIB: f64 = 1024.0 * 1024.0 * 1024.0;

pub fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / GIB)
}

pub fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        0.0
    } else {
        bytes as f64 / MIB / seconds
    }
}

pub fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// A size as `zfs list` prints it: `512`, `260K`, `12.5M`, `1.17T`
/// (binary units, three significant digits).
pub fn human(bytes: u64) -> String {
    const UNITS: [&str; 7] = ["", "K", "M", "G", "T", "P", "E"];
    if bytes < 1024 {
        return bytes.to_string();
    }
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    let text = if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    };
    format!("{text}{}", UNITS[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes_as_zfs_prints_them() {
        assert_eq!(human(0), "0");
        assert_eq!(human(1023), "1023");
        assert_eq!(human(266_240), "260K");
        assert_eq!(human(13_107_200), "12.5M");
        assert_eq!(human(1_286_420_000_000), "1.17T");
    }

    #[test]
    fn seed_figures() {
        assert_eq!(gb(5_368_709_120), "5.00 GB");
        assert_eq!(format!("{:.2}", mb_per_s(5_368_709_120, 40.0)), "128.00");
        assert_eq!(format!("{:.2}", percent(489_712, 32_768_000)), "1.49");
    }
}
