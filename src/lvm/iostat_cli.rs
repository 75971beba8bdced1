//! `iostat-top` / `lvm-iostat`: I/O per device from /proc/diskstats,
//! top-like on a terminal, one line per device and interval otherwise,
//! `--json` for one JSON array per interval.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging;
use crate::lvm::iostat::{self, Rate};
use crate::multicall::Tool;
use crate::shared::text_file::{read_text, MAX_TEXT_BYTES};

pub const TOOL: Tool = Tool {
    name: "iostat-top",
    aliases: &["iostat_top", "lvm-iostat", "lvm_iostat"],
    about: "disk I/O per device (dm-N shown as vg/lv) from /proc/diskstats, top-like",
    command: IostatArgs::command,
    run,
};

/// Disk I/O per device from /proc/diskstats (the seed's iostat_top.sh / lvm_iostat)
#[derive(Parser, Debug)]
#[command(name = "iostat-top", version)]
pub struct IostatArgs {
    /// Seconds between samples
    #[arg(short = 'i', long, default_value_t = 2.0)]
    interval: f64,
    /// Stop after this many intervals [default: run until interrupted]
    #[arg(short = 'n', long)]
    count: Option<u64>,
    /// Devices whose name starts with one of these comma-separated prefixes
    #[arg(short = 'd', long, default_value = "sd,hd,vd,xvd,nvme,dm-")]
    devices: String,
    /// Include partitions (by default only whole devices, as listed in /sys/block)
    #[arg(long)]
    partitions: bool,
    /// One JSON array of devices per interval
    #[arg(long)]
    json: bool,
    /// Read this file instead of /proc/diskstats
    #[arg(long, value_name = "FILE", default_value = "/proc/diskstats", hide = true)]
    diskstats: PathBuf,
    #[command(flatten)]
    common: CommonArgs,
}

fn display_name(dev: &str) -> String {
    if dev.starts_with("dm-") {
        if let Ok(n) = std::fs::read_to_string(format!("/sys/block/{dev}/dm/name")) {
            return iostat::dm_display_name(n.trim());
        }
    }
    dev.to_string()
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = IostatArgs::from_arg_matches(matches)?;
    logging::init("iostat-top", a.common.verbosity());
    if !(a.interval > 0.0 && a.interval <= 86400.0) {
        anyhow::bail!("--interval must be between 0 and 86400 seconds");
    }
    let read = || -> anyhow::Result<_> {
        let t =
            read_text(&a.diskstats, MAX_TEXT_BYTES).with_context(|| format!("reading {}", a.diskstats.display()))?;
        Ok(iostat::parse(&t)?)
    };
    let tty = std::io::stdout().is_terminal() && !a.json;
    let mut before = read()?;
    let mut t0 = Instant::now();
    let mut n = 0u64;
    while a.count.map_or(true, |c| n < c) {
        std::thread::sleep(Duration::from_secs_f64(a.interval));
        let after = read()?;
        let secs = t0.elapsed().as_secs_f64();
        t0 = Instant::now();
        let mut rs: Vec<Rate> = iostat::rates(&before, &after, secs, &display_name)
            .into_iter()
            .filter(|r| iostat::matches(&r.device, &a.devices))
            .filter(|r| {
                a.partitions
                    || !std::path::Path::new("/sys/block").exists()
                    || std::path::Path::new("/sys/block").join(&r.device).exists()
            })
            .collect();
        before = after;
        n += 1;
        let mut out = std::io::stdout().lock();
        if a.json {
            serde_json::to_writer(&mut out, &rs)?;
            writeln!(out)?;
        } else if tty {
            rs.sort_by(|x, y| {
                (y.read_bytes + y.write_bytes).cmp(&(x.read_bytes + x.write_bytes)).then(x.device.cmp(&y.device))
            });
            write!(out, "\x1b[H\x1b[2J")?;
            writeln!(
                out,
                "{:<8} {:<32} {:>8} {:>8} {:>8} {:>8} {:>5} {:>6} {:>7} {:>7}",
                "device", "name", "r/s", "w/s", "rB/s", "wB/s", "infl", "util%", "avg_r", "avg_w"
            )?;
            for r in &rs {
                writeln!(
                    out,
                    "{:<8} {:<32} {:>8.1} {:>8.1} {:>8} {:>8} {:>5} {:>6.1} {:>7} {:>7}",
                    r.device,
                    r.name,
                    r.reads_per_sec,
                    r.writes_per_sec,
                    iostat::human(r.read_bytes_per_sec),
                    iostat::human(r.write_bytes_per_sec),
                    r.in_flight,
                    r.util_percent,
                    iostat::human(r.avg_read_bytes as f64),
                    iostat::human(r.avg_write_bytes as f64)
                )?;
            }
        } else {
            for r in &rs {
                writeln!(
                    out,
                    "{} {} reads {} writes {} read_bytes {} write_bytes {} r/s {:.1} w/s {:.1} rB/s {:.0} wB/s {:.0} in_flight {} io_ms {} avg_read {} avg_write {}",
                    r.device, r.name, r.reads, r.writes, r.read_bytes, r.write_bytes, r.reads_per_sec, r.writes_per_sec,
                    r.read_bytes_per_sec, r.write_bytes_per_sec, r.in_flight, r.io_ms, r.avg_read_bytes, r.avg_write_bytes
                )?;
            }
        }
        out.flush()?;
    }
    Ok(exit::OK)
}
