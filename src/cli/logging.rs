//! Log output on stderr in the seed's style: `ddless => message` for
//! progress lines (-v), `ddless: warning: message` for warnings. Results go
//! to stdout, never through here.

use std::fmt;
use std::io::{self, Write};

use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
    Debug,
}

impl Verbosity {
    pub fn from_flags(verbose: u8, quiet: bool) -> Self {
        match (quiet, verbose) {
            (true, _) => Verbosity::Quiet,
            (false, 0) => Verbosity::Normal,
            (false, 1) => Verbosity::Verbose,
            _ => Verbosity::Debug,
        }
    }

    fn max_level(self) -> Level {
        match self {
            Verbosity::Quiet => Level::ERROR,
            Verbosity::Normal => Level::WARN,
            Verbosity::Verbose => Level::INFO,
            Verbosity::Debug => Level::TRACE,
        }
    }
}

struct SeedFormat {
    tool: String,
}

impl<S, N> FormatEvent<S, N> for SeedFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut w: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        match *event.metadata().level() {
            Level::ERROR => write!(w, "{}: error: ", self.tool)?,
            Level::WARN => write!(w, "{}: warning: ", self.tool)?,
            // The portal's access log keeps the seed's label.
            _ if event.metadata().target() == "access_log" => write!(w, "access_log => ")?,
            _ => write!(w, "{} => ", self.tool)?,
        }
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Writes log lines around the progress bar so they do not tear it.
struct StderrAroundProgress;

impl Write for StderrAroundProgress {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        progress::suspend(|| io::stderr().lock().write_all(buf))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for SeedFormat {
    type Writer = StderrAroundProgress;
    fn make_writer(&'a self) -> Self::Writer {
        StderrAroundProgress
    }
}

/// Sends each formatted line to syslog (background daemons), at the
/// priority of its level.
struct SyslogWriter {
    line: Vec<u8>,
    priority: libc::c_int,
}

/// The syslog priority of a log level.
pub fn syslog_priority(level: &Level) -> libc::c_int {
    match *level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    }
}

impl Write for SyslogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.line.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogWriter {
    fn drop(&mut self) {
        let text: Vec<u8> = self.line.iter().copied().filter(|&b| b != 0 && b != b'\n').collect();
        if let Ok(c) = std::ffi::CString::new(text) {
            // SAFETY: "%s" with one valid C string argument.
            unsafe { libc::syslog(self.priority, c"%s".as_ptr(), c.as_ptr()) };
        }
    }
}

struct SyslogMake;

impl<'a> MakeWriter<'a> for SyslogMake {
    type Writer = SyslogWriter;
    fn make_writer(&'a self) -> Self::Writer {
        SyslogWriter { line: Vec::new(), priority: libc::LOG_INFO }
    }
    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        SyslogWriter { line: Vec::new(), priority: syslog_priority(meta.level()) }
    }
}

/// Logs to syslog (facility daemon, identity `tool`) instead of stderr.
pub fn init_syslog(tool: &str, verbosity: Verbosity) {
    static IDENT: std::sync::OnceLock<std::ffi::CString> = std::sync::OnceLock::new();
    let ident = IDENT.get_or_init(|| std::ffi::CString::new(tool).unwrap_or_default());
    // SAFETY: ident lives for the rest of the process, as openlog requires.
    unsafe { libc::openlog(ident.as_ptr(), libc::LOG_PID, libc::LOG_DAEMON) };
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(verbosity.max_level())
        .with_writer(SyslogMake)
        .event_format(SeedFormat { tool: tool.to_string() })
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}

/// Installs the process-wide log subscriber for `tool`. Calling it twice is
/// harmless (the first one stays).
pub fn init(tool: &str, verbosity: Verbosity) {
    crate::shared::mapped_file::set_program_name(tool);
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(verbosity.max_level())
        .with_writer(SeedFormat { tool: tool.to_string() })
        .event_format(SeedFormat { tool: tool.to_string() })
        .finish();
    let _ = tracing::subscriber::set_global_default(subscriber);
}
