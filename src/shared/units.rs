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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_figures() {
        assert_eq!(gb(5_368_709_120), "5.00 GB");
        assert_eq!(format!("{:.2}", mb_per_s(5_368_709_120, 40.0)), "128.00");
        assert_eq!(format!("{:.2}", percent(489_712, 32_768_000)), "1.49");
    }
}
