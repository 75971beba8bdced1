//! The `ddmap` command line (seed flags -s -t -a -b -v -V, plus long names
//! and the new --stats, --from-extents and proc-control modes).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgAction, ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::dump::{data_row, HeaderInfo, MapStats};
use super::map_io::{open_map, MapStream};
use super::merge::{check_map_name, merge_extents, merge_file, MergeReport};
use super::proc_control::{proc_control, ProcCommand};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging::{self, Verbosity};
use crate::cli::output::print_json;
use crate::config::{Config, Section};
use crate::multicall::Tool;
use crate::shared::ddmap_file::MAX_MAP_VOLUME_BYTES;

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
    let bytes = n.checked_mul(mult).ok_or_else(|| format!("'{s}' is too large"))?;
    if bytes > MAX_MAP_VOLUME_BYTES {
        return Err(format!(
            "'{s}' is larger than a ddmap can describe ({MAX_MAP_VOLUME_BYTES} bytes: map_size is a 32-bit word count)"
        ));
    }
    Ok(bytes)
}

fn parse_name(s: &str) -> Result<String, String> {
    check_map_name(s)?;
    Ok(s.to_string())
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
    #[arg(long = "name", value_name = "NAME", requires = "from_extents", value_parser = parse_name)]
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
    writeln!(out, "ddmap suspended: {}", info.suspended)?;
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
    let config = Config::load_for(a.common.config.as_deref(), &[Section::Ddmap])?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }

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
        let r = if list == "-" {
            merge_extents(std::io::stdin().lock(), "<stdin>", None, size, name, target)?
        } else {
            let path = std::path::Path::new(list);
            let f = std::fs::File::open(path).with_context(|| format!("reading extent list {list}"))?;
            if f.metadata().is_ok_and(|m| m.is_dir()) {
                bail!("extent list {list} is a directory");
            }
            merge_extents(std::io::BufReader::new(f), list, Some(path), size, name, target)?
        };
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
        dump(source, a.header, a.data, a.json)?;
        return Ok(exit::OK);
    }
    if a.stats {
        let mut m = open_map(source)?;
        let words = u64::from(m.header().map_size);
        let mut set = 0u64;
        let mut buf = Vec::with_capacity(CHUNK_WORDS);
        loop {
            buf.clear();
            if m.read_words(&mut buf, CHUNK_WORDS).with_context(|| format!("ddmap {}", source.display()))? == 0 {
                break;
            }
            set += buf.iter().map(|w| u64::from(w.count_ones())).sum::<u64>();
        }
        m.finish().with_context(|| format!("ddmap {}", source.display()))?;
        let s = MapStats::from_counts(words, set);
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

/// Words read per step of a streamed dump.
const CHUNK_WORDS: usize = 1 << 16;

/// Reads the whole map (bounded chunks) to check it, without keeping it.
fn check_rest(m: MapStream, source: &std::path::Path) -> anyhow::Result<()> {
    m.finish().with_context(|| format!("ddmap {}", source.display()))?;
    Ok(())
}

/// `-a` and/or `-b`, as text or one JSON object; the map is streamed (the
/// header is printed after the whole map was found valid, except for `-b`,
/// whose rows are printed as they are read).
fn dump(source: &std::path::Path, header: bool, data: bool, json: bool) -> anyhow::Result<()> {
    let mut m = open_map(source)?;
    let info = HeaderInfo::new(&source.display().to_string(), m.header());
    if !data {
        check_rest(m, source)?;
        return if json { print_json(&info) } else { print_header(&info) };
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if json {
        let head = serde_json::to_string(&info)?;
        // The header's fields, then the words, streamed into one object.
        write!(out, "{},\"words\":[", head.trim_end_matches('}'))?;
    } else if header {
        drop(out);
        print_header(&info)?;
        out = std::io::BufWriter::new(std::io::stdout().lock());
    }
    let mut buf = Vec::with_capacity(CHUNK_WORDS);
    let mut first_word = 0u64;
    loop {
        buf.clear();
        let n = m.read_words(&mut buf, CHUNK_WORDS).with_context(|| format!("ddmap {}", source.display()))?;
        if n == 0 {
            break;
        }
        if json {
            for (i, w) in buf.iter().enumerate() {
                let sep = if first_word == 0 && i == 0 { "" } else { "," };
                write!(out, "{sep}{w}")?;
            }
        } else {
            for (row, words) in buf.chunks(8).enumerate() {
                writeln!(out, "{}", data_row(first_word + row as u64 * 8, words))?;
            }
        }
        first_word += n as u64;
    }
    check_rest(m, source)?;
    if json {
        writeln!(out, "]}}")?;
    }
    out.flush()?;
    Ok(())
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
