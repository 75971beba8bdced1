//! The `ddless` command line: seed-compatible short flags, long names, mode
//! selection, text or JSON output. All work is done by the library.

use std::ffi::OsString;
use std::io::Write;
use std::num::{NonZeroU32, NonZeroU64, NonZeroUsize};
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{ArgMatches, CommandFactory, FromArgMatches, Parser};

use super::options::MAX_WORKERS;
use super::options::{
    ChecksumMode, ChecksumOptions, CommitTuning, CopyOptions, ReadOptions, ReadTestOptions, VerifyOptions, ZoneOptions,
};
use super::report::{CopyReport, VerifyReport};
use crate::cli::common_args::CommonArgs;
use crate::cli::exit;
use crate::cli::logging::{self, Verbosity};
use crate::cli::output::print_json;
use crate::cli::progress::TerminalProgress;
use crate::config::{Config, Section, DEFAULT_CONFIG_PATH};
use crate::initiator::settings::{config_exposure_warning, SessionArgs, UrlSource};
use crate::multicall::Tool;
use crate::progress::{NoProgress, Progress};
use crate::volume::VolumeSpec;

pub const TOOL: Tool = Tool {
    name: "ddless",
    aliases: &[],
    about: "copy a volume writing only the 16 KiB segments that changed",
    command: DdlessArgs::command,
    run,
};

const AFTER_HELP: &str = "\
Modes:
  copy            ddless [-d] -s SRC [-m DDMAP] [-r MB/s] -c CHECKSUM -t TARGET [-w N] [-v]
  checksum only   ddless [-d] -s SRC -c CHECKSUM
  verify          ddless --verify -s SRC -c CHECKSUM       (exit 1 if segments differ)
  read test       ddless [-d] -s SRC -v
  speed zones     ddless [-d] -z -s SRC
  parameters      ddless -p
  check only      ddless -b -s SRC -c CHECKSUM -t TARGET   (exit 3: a new checksum file is required)

SRC and TARGET are files, block devices or iSCSI LUNs:
  iscsi://[USER@]HOST[:PORT]/TARGET-IQN/LUN (IPv6 hosts in brackets; a portal's redirect is followed).
  The initiator name comes from --initiator-name, [initiator] name, or /etc/iscsi/initiatorname.iscsi;
  CHAP secrets from LIBISCSI_CHAP_PASSWORD (LIBISCSI_CHAP_TARGET_PASSWORD) or the [initiator] section,
  never from the command line. A LUN target must be at least as large as the source.
Use -c /dev/null to copy without checksums (every segment is written).
After a copy, statistics are saved in CHECKSUM.stats.
Exit codes: 0 success, 1 verify found differences, 2 error, 3 (-b) new checksum file required.";

fn workers_arg(s: &str) -> Result<usize, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) if n > MAX_WORKERS as u64 => Err(format!("must be at most {MAX_WORKERS}")),
        Ok(n) => Ok(n as usize),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// Most zones `-z` measures: each costs a seek and a sample read.
const MAX_ZONES: u32 = 100_000;

fn zone_count_arg(s: &str) -> Result<NonZeroU32, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) if n > u64::from(MAX_ZONES) => Err(format!("must be at most {MAX_ZONES}")),
        Ok(n) => NonZeroU32::new(n as u32).ok_or_else(|| "must be at least 1".into()),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

fn zone_sample_arg(s: &str) -> Result<NonZeroU64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) if n > 1 << 20 => Err("must be at most 1048576 (MB)".into()),
        Ok(n) => NonZeroU64::new(n).ok_or_else(|| "must be at least 1".into()),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

fn at_least_one_u64(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(_) => Err(format!("'{s}' is not a whole number")),
    }
}

/// Copy a volume writing only the 16 KiB segments whose checksum changed
#[derive(Parser, Debug)]
#[command(name = "ddless", version, after_help = AFTER_HELP)]
pub struct DdlessArgs {
    /// Source device, file or iscsi:// LUN
    #[arg(short = 's', long = "source", value_name = "SRC")]
    source: Option<OsString>,
    /// Target device, file or iscsi:// LUN (a file grows as needed)
    #[arg(short = 't', long = "target", value_name = "TARGET")]
    target: Option<OsString>,
    /// Checksum file kept beside the target (/dev/null: none)
    #[arg(short = 'c', long = "checksum", value_name = "CHECKSUM")]
    checksum: Option<PathBuf>,
    /// Read only the segments this ddmap flags
    #[arg(short = 'm', long = "ddmap", value_name = "DDMAP")]
    ddmap: Option<PathBuf>,
    /// Read with O_DIRECT, bypassing the page cache
    #[arg(short = 'd', long = "direct")]
    direct: bool,
    /// Worker threads [default: one per CPU, at most 8; see -p]; an iscsi:// source may run more (up to 8 in all) to keep its queue full
    #[arg(short = 'w', long = "workers", value_name = "N", value_parser = workers_arg)]
    workers: Option<usize>,
    /// Maximum read rate per worker, MB/s (the run reads at most -w times this)
    #[arg(short = 'r', long = "read-rate", value_name = "MB_PER_S", value_parser = at_least_one_u64)]
    read_rate: Option<u64>,
    /// Copy nothing: exit 3 if the copy would need a new checksum file, 0 if it can use CHECKSUM (as the seed's -b)
    #[arg(short = 'b', long = "check-checksum")]
    bail_on_new_checksum: bool,
    /// Compare SRC with CHECKSUM and list differing segments; writes nothing
    #[arg(long = "verify", conflicts_with_all = ["target", "ddmap", "zones", "params"])]
    verify: bool,
    /// Print the read throughput of 100 equal zones of SRC
    #[arg(short = 'z', long = "zones", conflicts_with_all = ["target", "checksum", "ddmap", "params"])]
    zones: bool,
    /// Number of zones for -z
    #[arg(long = "zone-count", value_name = "N", default_value = "100", value_parser = zone_count_arg, requires = "zones")]
    zone_count: NonZeroU32,
    /// MB read at the start of each zone for -z
    #[arg(long = "zone-sample", value_name = "MB", default_value = "64", value_parser = zone_sample_arg, requires = "zones")]
    zone_sample: NonZeroU64,
    /// Print the built-in parameters
    #[arg(short = 'p', long = "params", conflicts_with_all = ["source", "target", "checksum", "ddmap"])]
    params: bool,
    /// Copy tuning: MB written between checkpoints (target fsync, then checksum update)
    #[arg(long = "checkpoint-mb", value_name = "MB", value_parser = at_least_one_u64, requires = "target")]
    checkpoint_mb: Option<u64>,
    /// Copy tuning: MB of changed data batched per checksum invalidation fsync
    #[arg(long = "invalidate-batch-mb", value_name = "MB", value_parser = at_least_one_u64, requires = "target")]
    invalidate_batch_mb: Option<u64>,
    /// Print the report as JSON on stdout
    #[arg(long = "json")]
    json: bool,
    /// iSCSI initiator name for iscsi:// volumes [default: [initiator] name, else /etc/iscsi/initiatorname.iscsi]
    #[arg(long = "initiator-name", value_name = "IQN")]
    initiator_name: Option<String>,
    #[command(flatten)]
    session: SessionArgs,
    #[command(flatten)]
    common: CommonArgs,
}

enum Mode {
    Params,
    CheckChecksum(CopyOptions),
    Zones(ZoneOptions),
    Verify(VerifyOptions),
    Copy(CopyOptions),
    Checksum(ChecksumOptions),
    ReadTest(ReadTestOptions),
}

fn tuning(a: &DdlessArgs) -> CommitTuning {
    let d = CommitTuning::default();
    CommitTuning {
        checkpoint_bytes: a.checkpoint_mb.map_or(d.checkpoint_bytes, |m| m.saturating_mul(1 << 20)),
        invalidate_batch_bytes: a
            .invalidate_batch_mb
            .map_or(d.invalidate_batch_bytes, |m| usize::try_from(m.saturating_mul(1 << 20)).unwrap_or(usize::MAX)),
    }
}

/// `-s`/`-t` as given: a path, or an iscsi:// URL resolved with the
/// initiator flags and the `[initiator]` section.
fn volume_arg(a: &DdlessArgs, config: &Config, arg: &OsString, role: &str) -> anyhow::Result<VolumeSpec> {
    VolumeSpec::resolve(arg, UrlSource::CommandLine, a.initiator_name.as_deref(), &a.session, &config.initiator)
        .with_context(|| format!("{role} {}", crate::initiator::url::redact_unparsed(&arg.to_string_lossy())))
}

fn resolve_mode(a: &DdlessArgs, config: &Config) -> anyhow::Result<Mode> {
    if a.params {
        return Ok(Mode::Params);
    }
    let Some(source) = a.source.as_ref() else {
        bail!("no source given: use -s SRC (see ddless --help)");
    };
    let source = volume_arg(a, config, source, "source")?;
    let target = a.target.as_ref().map(|t| volume_arg(a, config, t, "target")).transpose()?;
    let direct_io = a.direct || config.ddless.direct_io;
    let workers =
        a.workers.or(config.ddless.workers).and_then(NonZeroUsize::new).unwrap_or_else(ReadOptions::default_workers);
    let read_rate_mb_s = a.read_rate.or(config.ddless.read_rate_mb_s).and_then(NonZeroU64::new);
    let read = ReadOptions { direct_io, workers, read_rate_mb_s };
    if a.zones {
        return Ok(Mode::Zones(ZoneOptions {
            source,
            direct_io,
            zones: a.zone_count,
            sample_bytes: a.zone_sample.saturating_mul(NonZeroU64::new(1 << 20).unwrap_or(NonZeroU64::MIN)),
        }));
    }
    if a.ddmap.is_some() && a.target.is_none() {
        bail!("-m/--ddmap only applies to a copy (add -t TARGET and -c CHECKSUM)");
    }
    if a.verify {
        let Some(checksum) = a.checksum.clone() else {
            bail!("--verify needs the checksum file to compare with: -c CHECKSUM");
        };
        return Ok(Mode::Verify(VerifyOptions { source, checksum, read }));
    }
    match (target, &a.checksum) {
        (Some(target), Some(checksum)) if a.bail_on_new_checksum => Ok(Mode::CheckChecksum(CopyOptions {
            source,
            target,
            checksum: ChecksumMode::File(checksum.clone()),
            ddmap: a.ddmap.clone(),
            read,
            tuning: tuning(a),
        })),
        (Some(target), Some(checksum)) => Ok(Mode::Copy(CopyOptions {
            source,
            target,
            checksum: if super::checksum_access::is_dev_null(checksum) {
                ChecksumMode::Disabled
            } else {
                ChecksumMode::File(checksum.clone())
            },
            ddmap: a.ddmap.clone(),
            read,
            tuning: tuning(a),
        })),
        (Some(_), None) => {
            bail!("a copy needs a checksum file: -c CHECKSUM (or -c /dev/null to copy without checksums)")
        }
        (None, Some(checksum)) => Ok(Mode::Checksum(ChecksumOptions { source, checksum: checksum.clone(), read })),
        (None, None) => Ok(Mode::ReadTest(ReadTestOptions { source, direct_io })),
    }
}

fn print_verify(r: &VerifyReport) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for m in &r.mismatches {
        let note = if m.invalid_records > 0 {
            format!(" ({} with an invalid record)", m.invalid_records)
        } else {
            String::new()
        };
        writeln!(
            out,
            "differ: segments {}-{} bytes {}-{}{}",
            m.first_segment,
            m.last_segment,
            m.first_byte,
            m.end_byte.saturating_sub(1),
            note
        )?;
    }
    writeln!(
        out,
        "{}: {} of {} segments differ",
        if r.matches() { "OK" } else { "MISMATCH" },
        r.segments_differing,
        r.segments
    )?;
    Ok(())
}

fn print_copy_summary(r: &CopyReport) -> anyhow::Result<()> {
    // Only on request: a successful copy is silent, as the seed's.
    print_json(r)
}

fn run(matches: &ArgMatches) -> anyhow::Result<u8> {
    let args = DdlessArgs::from_arg_matches(matches)?;
    let verbosity = if args.session.debug_pdus && args.common.verbosity() != Verbosity::Quiet {
        Verbosity::Debug
    } else {
        args.common.verbosity()
    };
    logging::init("ddless", verbosity);
    // The [initiator] section matters (and must be valid) only for iscsi:// volumes.
    let iscsi = [&args.source, &args.target].into_iter().flatten().any(|v| VolumeSpec::is_iscsi_arg(v));
    let sections: &[Section] = if iscsi { &[Section::Ddless, Section::Initiator] } else { &[Section::Ddless] };
    let config = Config::load_for(args.common.config.as_deref(), sections)?;
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    if iscsi {
        let path = args.common.config.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        if let Some(w) = config_exposure_warning(&path, &config.initiator) {
            tracing::warn!("{w}");
        }
    }
    let mode = resolve_mode(&args, &config)?;
    if args.bail_on_new_checksum && !matches!(mode, Mode::CheckChecksum(_)) {
        tracing::warn!("-b only applies to a copy (-s SRC -c CHECKSUM -t TARGET); ignored");
    }
    let bar = TerminalProgress::for_terminal(args.common.quiet, "ddless");
    let progress: &dyn Progress = match &bar {
        Some(b) => b,
        None => &NoProgress,
    };
    match mode {
        Mode::Params => {
            let p = super::parameters();
            if args.json {
                print_json(&p)?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(out, "version: {}", p.version)?;
                writeln!(out, "segment size: {} bytes", p.segment_size)?;
                writeln!(out, "read buffer: {} bytes ({} segments)", p.read_buffer_size, p.segments_per_buffer)?;
                writeln!(out, "default workers: {}", p.default_workers)?;
                writeln!(out, "checksum record: {} bytes: {}", p.checksum_record_size, p.checksum_layout)?;
                writeln!(out, "invalid record: {}", p.invalid_record)?;
                writeln!(out, "ddmap: {} bytes of volume per u32 word", p.ddmap_bytes_per_word)?;
                writeln!(out, "murmur3 lanes: {}", p.murmur3_lanes)?;
            }
            Ok(exit::OK)
        }
        Mode::CheckChecksum(opts) => {
            drop(bar);
            tracing::info!("invoking ddless and verify checksum usability");
            let r = super::check_checksum_file(&opts)?;
            if args.json {
                print_json(&r)?;
            }
            if r.usable {
                tracing::info!("checksum file will be used, exiting");
                Ok(exit::OK)
            } else {
                tracing::info!(
                    "new checksum file required, exiting ({})",
                    r.reason.as_deref().unwrap_or("no usable checksum file")
                );
                Ok(exit::NEW_CHECKSUM_REQUIRED)
            }
        }
        Mode::Zones(opts) => {
            drop(bar);
            let json = args.json;
            let mut header_done = false;
            let zones = super::speed_zones(&opts, |z| {
                if !json {
                    let mut out = std::io::stdout().lock();
                    if !header_done {
                        writeln!(out, "# zone offset_bytes offset_gb mb_per_s")?;
                        header_done = true;
                    }
                    writeln!(
                        out,
                        "{} {} {:.2} {:.2}",
                        z.zone,
                        z.offset,
                        z.offset as f64 / (1u64 << 30) as f64,
                        z.mb_s
                    )?;
                }
                Ok(())
            })?;
            if json {
                print_json(&zones)?;
            }
            Ok(exit::OK)
        }
        Mode::Verify(opts) => {
            let report = super::verify(&opts, progress)?;
            drop(bar);
            if args.json {
                print_json(&report)?;
            } else {
                print_verify(&report)?;
            }
            Ok(if report.matches() { exit::OK } else { exit::DIFFERENCES })
        }
        Mode::Copy(opts) => {
            let report = super::copy(&opts, progress)?;
            drop(bar);
            if args.json {
                print_copy_summary(&report)?;
            }
            Ok(exit::OK)
        }
        Mode::Checksum(opts) => {
            let report = super::compute_checksums(&opts, progress)?;
            drop(bar);
            if args.json {
                print_json(&report)?;
            }
            Ok(exit::OK)
        }
        Mode::ReadTest(opts) => {
            drop(bar);
            let per_buffer = args.common.verbose > 0 && !args.json;
            let report = super::read_test(&opts, |b| {
                if per_buffer {
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{:.0} ms {:.2} MB/s", b.milliseconds, b.mb_s)?;
                }
                Ok(())
            })
            .context("read test")?;
            if args.json {
                print_json(&report)?;
            } else {
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "read {} bytes in {} buffers, {:.2} seconds, {:.2} MB/s (slowest buffer {:.2} MB/s, fastest {:.2} MB/s)",
                    report.source_size, report.buffers, report.elapsed_seconds, report.mb_s, report.slowest_mb_s, report.fastest_mb_s
                )?;
            }
            Ok(exit::OK)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_tree_is_consistent() {
        DdlessArgs::command().debug_assert();
    }
}
