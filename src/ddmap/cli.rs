//! The `ddmap` command line (seed flags -s -t -a -b -v -V, plus long names
//! and the new --stats, --from-extents and proc-control modes).

use std::io::{Read, Write};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::dump::{data_rows, HeaderInfo, MapStats};
use super::map_io::{load_ddmap, read_map_bytes};
use super::merge::{merge_extents, merge_file, MergeReport};
use super::proc_control::{proc_control, ProcCommand};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging::{self, Verbosity};
use crate::cli::output::print_json;
use crate::config::Config;
use crate::multicall::Tool;
use crate::shared::ddmap_file::{Ddmap, DdmapHeader};

pub const TOOL: Tool = Tool {
    name: "ddmap",
    aliases: &[],
    about: "dump, merge and build ddmap change bitmaps; IET ddmap controls",
    command: DdmapArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Modes:
  header dump     ddmap -s SRC -a
  data dump       ddmap -s SRC -b
  statistics      ddmap -s SRC --stats [--json]
  merge           ddmap -s SRC -t TARGET [-v]      (TARGET created if missing; OR of the bits)
  from extents    ddmap --from-extents FILE|- --size BYTES --name NAME -t TARGET
  IET controls    ddmap --zap|--suspend|--resume NAME [--proc-dir DIR]

SRC may be a regular file or a live /proc/net/iet/ddmap/<target>.<lun> entry.
--size takes bytes, or a number with K, M, G or T (powers of 1024).
Exit codes: 0 success, 2 error.";

/// Parses "1073741824", "10G", "512K".
fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                _ => return Err(format!("unknown size suffix '{c}' (use K, M, G or T)")),
            };
            (&s[..i], m)
        }
        _ => (s, 1),
    };
    let n: u64 = num.parse().map_err(|_| format!("'{s}' is not a size in bytes"))?;
    n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))
}

/// Dump, merge and build ddmap change bitmaps (one bit per 16 KiB segment)
#[derive(Parser, Debug)]
#[command(name = "ddmap", version, disable_version_flag = true, after_help = AFTER_HELP)]
pub struct DdmapArgs {
    /// Source ddmap: a file or a /proc/net/iet/ddmap entry
    #[arg(short = 's', long = "source", value_name = "SRC")]
    source: Option<PathBuf>,
    /// Target ddmap file to merge into (created if missing)
    #[arg(short = 't', long = "target", value_name = "TARGET")]
    target: Option<PathBuf>,
    /// Dump the header
    #[arg(short = 'a', long = "header", requires = "source")]
    header: bool,
    /// Dump the data (hex words, 8 per row)
    #[arg(short = 'b', long = "data", requires = "source")]
    data: bool,
    /// Count the flagged segments
    #[arg(long = "stats", requires = "source", conflicts_with_all = ["header", "data", "target"])]
    stats: bool,
    /// Build a map from "OFFSET LENGTH" lines (- for stdin) and merge it into TARGET
    #[arg(long = "from-extents", value_name = "FILE", requires_all = ["size", "name", "target"], conflicts_with_all = ["source", "header", "data", "stats"])]
    from_extents: Option<String>,
    /// Volume size for --from-extents
    #[arg(long = "size", value_name = "BYTES", value_parser = parse_size, requires = "from_extents")]
    size: Option<u64>,
    /// Map name for --from-extents, "<target iqn>.<lun>" (its byte sum is the name_sum)
    #[arg(long = "name", value_name = "NAME", requires = "from_extents")]
    name: Option<String>,
    /// Clear the live map of NAME (writes mapzap)
    #[arg(long = "zap", value_name = "NAME", group = "control")]
    zap: Option<String>,
    /// Suspend writes to NAME and its map (writes mapsuspend); resume promptly!
    #[arg(long = "suspend", value_name = "NAME", group = "control")]
    suspend: Option<String>,
    /// Resume writes to NAME (writes mapresume)
    #[arg(long = "resume", value_name = "NAME", group = "control")]
    resume: Option<String>,
    /// Directory of the IET ddmap proc entries [default: /proc/net/iet/ddmap, or [ddmap] proc_dir]
    #[arg(long = "proc-dir", value_name = "DIR")]
    proc_dir: Option<PathBuf>,
    /// Verbose with debug detail (the seed's -V)
    #[arg(short = 'V', action = ArgAction::SetTrue)]
    debug: bool,
    /// Print reports as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    /// Print version
    #[arg(long = "version", action = ArgAction::Version)]
    version: Option<bool>,
    #[command(flatten)]
    common: CommonArgs,
}

fn print_header(info: &HeaderInfo) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "ddmap device: {}", info.device)?;
    writeln!(out, "ddmap info: {}", info.info)?;
    writeln!(out, "ddmap version: {}", info.version)?;
    writeln!(out, "ddmap name_sum: 0x{:08x}", info.name_sum)?;
    writeln!(out, "ddmap map_size: {} (u32)", info.map_size)?;
    writeln!(out, "ddmap map_size_bytes: {}", info.map_size_bytes)?;
    Ok(())
}

fn print_merge(json: bool, r: &MergeReport) -> anyhow::Result<()> {
    if json {
        print_json(r)?;
    }
    Ok(())
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let a = DdmapArgs::from_arg_matches(matches)?;
    let verbosity = if a.debug { Verbosity::Debug } else { a.common.verbosity() };
    logging::init("ddmap", verbosity);
    let config = Config::load(a.common.config.as_deref())?;

    let control = [
        (a.zap.as_ref(), ProcCommand::Zap),
        (a.suspend.as_ref(), ProcCommand::Suspend),
        (a.resume.as_ref(), ProcCommand::Resume),
    ]
    .into_iter()
    .find_map(|(n, c)| n.map(|n| (n.clone(), c)));
    if let Some((name, command)) = control {
        if a.source.is_some() || a.target.is_some() || a.from_extents.is_some() {
            bail!("--zap/--suspend/--resume cannot be combined with -s, -t or --from-extents");
        }
        let dir = a.proc_dir.clone().unwrap_or(config.ddmap.proc_dir.clone());
        proc_control(&dir, &name, command)?;
        return Ok(exit::OK);
    }

    if let Some(list) = &a.from_extents {
        let (Some(size), Some(name), Some(target)) = (a.size, a.name.as_deref(), a.target.as_deref()) else {
            bail!("--from-extents needs --size, --name and -t TARGET");
        };
        let (text, origin) = if list == "-" {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading the extent list from stdin")?;
            (s, "<stdin>".to_string())
        } else {
            let s = std::fs::read_to_string(list).with_context(|| format!("reading extent list {list}"))?;
            (s, list.clone())
        };
        let r = merge_extents(&text, &origin, size, name, target)?;
        print_merge(a.json, &r)?;
        return Ok(exit::OK);
    }

    let Some(source) = a.source.as_deref() else {
        bail!("no source given: use -s SRC (see ddmap --help)");
    };
    if a.header || a.data {
        if a.target.is_some() {
            bail!("-a/-b dump a map; they cannot be combined with -t (merge)");
        }
        let bytes = read_map_bytes(source)?;
        let header = DdmapHeader::parse(&bytes).with_context(|| format!("ddmap {}", source.display()))?;
        if a.header {
            let info = HeaderInfo::new(&source.display().to_string(), &header);
            if a.json {
                print_json(&info)?;
            } else {
                print_header(&info)?;
            }
        }
        if a.data {
            let map = Ddmap::parse(&bytes).with_context(|| format!("ddmap {}", source.display()))?;
            let mut out = std::io::stdout().lock();
            for row in data_rows(&map.map) {
                writeln!(out, "{row}")?;
            }
        }
        return Ok(exit::OK);
    }
    if a.stats {
        let map = load_ddmap(source)?;
        let s = MapStats::of(&map.map);
        if a.json {
            print_json(&s)?;
        } else {
            println!(
                "{} of {} segments set ({:.2}%), {} bytes flagged, map_size {} (u32)",
                s.segments_set, s.segments, s.percent, s.bytes_flagged, s.map_size
            );
        }
        return Ok(exit::OK);
    }
    if let Some(target) = a.target.as_deref() {
        let r = merge_file(source, target)?;
        print_merge(a.json, &r)?;
        return Ok(exit::OK);
    }
    bail!("nothing to do: give -a, -b, --stats or -t TARGET (see ddmap --help)")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        DdmapArgs::command().debug_assert();
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("10G"), Ok(10 << 30));
        assert_eq!(parse_size("3k"), Ok(3072));
        assert!(parse_size("10X").is_err());
        assert!(parse_size("G").is_err());
        assert!(parse_size("99999999999T").is_err());
    }
}
