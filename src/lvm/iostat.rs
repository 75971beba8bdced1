//! Per-device I/O rates from two /proc/diskstats samples (the seed's
//! lvm_iostat / iostat_top.sh): reads, writes, bytes, rates, in-flight
//! requests, time spent doing I/O, and average request sizes for reads and
//! writes separately. Device-mapper devices are shown as vg/lv.

use std::collections::BTreeMap;

use serde::Serialize;

/// The counters of one /proc/diskstats line that santools uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    pub reads: u64,
    pub read_sectors: u64,
    pub writes: u64,
    pub write_sectors: u64,
    pub in_flight: u64,
    pub io_ms: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("/proc/diskstats line {line}: {problem}")]
pub struct ParseError {
    pub line: usize,
    pub problem: String,
}

/// Parses /proc/diskstats (14, 18 or 20 fields per line, by kernel version).
pub fn parse(text: &str) -> Result<BTreeMap<String, Counters>, ParseError> {
    let mut out = BTreeMap::new();
    for (i, l) in text.lines().enumerate() {
        let f: Vec<&str> = l.split_whitespace().collect();
        if f.is_empty() {
            continue;
        }
        if !matches!(f.len(), 14 | 18 | 20) {
            return Err(ParseError { line: i + 1, problem: format!("{} fields, expected 14, 18 or 20", f.len()) });
        }
        let n = |k: usize| -> Result<u64, ParseError> {
            f[k].parse().map_err(|_| ParseError {
                line: i + 1,
                problem: format!("field {} = {:?} is not a number", k + 1, f[k]),
            })
        };
        out.insert(
            f[2].to_string(),
            Counters {
                reads: n(3)?,
                read_sectors: n(5)?,
                writes: n(7)?,
                write_sectors: n(9)?,
                in_flight: n(11)?,
                io_ms: n(12)?,
            },
        );
    }
    Ok(out)
}

/// `vg_dsk_0-lv_x--y` (device-mapper's name, `-` doubled inside names) to
/// `vg_dsk_0/lv_x-y`; other names unchanged.
pub fn dm_display_name(dm_name: &str) -> String {
    let b = dm_name.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'-' {
            if i + 1 < b.len() && b[i + 1] == b'-' {
                i += 2;
                continue;
            }
            let (vg, lv) = (&dm_name[..i], &dm_name[i + 1..]);
            return format!("{}/{}", vg.replace("--", "-"), lv.replace("--", "-"));
        }
        i += 1;
    }
    dm_name.to_string()
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Rate {
    pub device: String,
    pub name: String,
    pub reads: u64,
    pub writes: u64,
    pub read_bytes: u64,
    pub write_bytes: u64,
    pub reads_per_sec: f64,
    pub writes_per_sec: f64,
    pub read_bytes_per_sec: f64,
    pub write_bytes_per_sec: f64,
    pub in_flight: u64,
    pub io_ms: u64,
    /// Share of the interval the device was busy, 0-100.
    pub util_percent: f64,
    pub avg_read_bytes: u64,
    pub avg_write_bytes: u64,
}

/// Rates between two samples `secs` apart, for devices present in both
/// (counters that went backwards, e.g. a re-created device, count as 0).
pub fn rates(
    before: &BTreeMap<String, Counters>,
    after: &BTreeMap<String, Counters>,
    secs: f64,
    names: &dyn Fn(&str) -> String,
) -> Vec<Rate> {
    let secs = if secs > 0.0 { secs } else { 1.0 };
    let mut out = Vec::new();
    for (dev, a) in after {
        let Some(b) = before.get(dev) else { continue };
        let reads = a.reads.saturating_sub(b.reads);
        let writes = a.writes.saturating_sub(b.writes);
        let read_bytes = a.read_sectors.saturating_sub(b.read_sectors) * 512;
        let write_bytes = a.write_sectors.saturating_sub(b.write_sectors) * 512;
        let io_ms = a.io_ms.saturating_sub(b.io_ms);
        out.push(Rate {
            device: dev.clone(),
            name: names(dev),
            reads,
            writes,
            read_bytes,
            write_bytes,
            reads_per_sec: reads as f64 / secs,
            writes_per_sec: writes as f64 / secs,
            read_bytes_per_sec: read_bytes as f64 / secs,
            write_bytes_per_sec: write_bytes as f64 / secs,
            in_flight: a.in_flight,
            io_ms,
            util_percent: (io_ms as f64 / (secs * 10.0)).min(100.0),
            avg_read_bytes: read_bytes.checked_div(reads).unwrap_or(0),
            avg_write_bytes: write_bytes.checked_div(writes).unwrap_or(0),
        });
    }
    out
}

/// Whether a device name matches one of the comma-separated prefixes (the
/// seed's `-d hd` matches hda, hdb; `dm` every device-mapper device).
pub fn matches(device: &str, prefixes: &str) -> bool {
    prefixes.split(',').map(str::trim).filter(|p| !p.is_empty()).any(|p| device.starts_with(p))
}

/// Bytes in a short human form (`337M`, `7.3G`), as the seed's display.
pub fn human(bytes: f64) -> String {
    let units = ["", "K", "M", "G", "T", "P"];
    let mut v = bytes;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 || v >= 100.0 {
        format!("{:.0}{}", v, units[u])
    } else {
        format!("{:.1}{}", v, units[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = include_str!("../../tests/fixtures/diskstats/sample1");
    const B: &str = include_str!("../../tests/fixtures/diskstats/sample2");

    #[test]
    fn recorded_samples_give_exact_rates() {
        let (a, b) = (parse(A).unwrap(), parse(B).unwrap());
        let r = rates(&a, &b, 2.0, &|d| if d == "dm-4" { "vg_dsk_0/lv_x".into() } else { d.into() });
        let dm = r.iter().find(|x| x.device == "dm-4").unwrap();
        assert_eq!((dm.reads, dm.writes), (100, 50));
        assert_eq!(dm.read_bytes, 100 * 8 * 512);
        assert_eq!(dm.write_bytes, 50 * 128 * 512);
        assert_eq!(dm.avg_read_bytes, 4096);
        assert_eq!(dm.avg_write_bytes, 65536);
        assert_eq!(dm.reads_per_sec, 50.0);
        assert_eq!(dm.in_flight, 3);
        assert_eq!(dm.io_ms, 1000);
        assert_eq!(dm.util_percent, 50.0);
        assert_eq!(dm.name, "vg_dsk_0/lv_x");
        // Kernel 4.18+ (18 fields) and 5.5+ (20 fields) lines both parse.
        assert!(b.contains_key("sda") && b.contains_key("vda"));
    }

    #[test]
    fn bad_lines_are_errors() {
        assert!(parse("8 0 sda 1 2 3\n").is_err());
        assert!(parse("8 0 sda 1 0 x 0 0 0 0 0 0 0 0\n").unwrap_err().problem.contains("\"x\""));
    }

    #[test]
    fn dm_names() {
        assert_eq!(dm_display_name("vg_dsk_0-lv_server01_apps_vol00"), "vg_dsk_0/lv_server01_apps_vol00");
        assert_eq!(dm_display_name("vg--a-lv--b--c"), "vg-a/lv-b-c");
        assert_eq!(dm_display_name("mpath_vg_satabeast3_vol0"), "mpath_vg_satabeast3_vol0");
    }

    #[test]
    fn prefixes_and_human() {
        assert!(matches("hda", "hd") && matches("dm-4", "sd,dm") && !matches("loop0", "sd,dm"));
        assert_eq!(human(353500160.0), "337M");
        assert_eq!(human(7786014208.0), "7.3G");
    }
}
