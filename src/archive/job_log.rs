//! The archive's log files, in the seed's line format (chunk 70):
//! `YYYY-MM-DD HH:MM:SS <host> <facility>> <message>`, appended to
//! `<log dir>/<tool>.log`. Every line is one `write` on an O_APPEND file, so
//! concurrent runs never interleave inside a line. The terminal sees the
//! same messages through the ordinary log (stderr).

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use jiff::tz::TimeZone;

pub struct JobLog {
    file: Option<Mutex<File>>,
    path: PathBuf,
    host: String,
    tz: TimeZone,
}

/// This host's name (the seed logs it in every line).
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into buf.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// One log line: control characters (a newline from a command's stderr
/// could forge a line) are replaced.
pub fn format_line(time: &str, host: &str, facility: &str, message: &str) -> String {
    let clean: String = message
        .chars()
        .map(|c| {
            if c == '\n' {
                '|'
            } else if c.is_control() {
                ' '
            } else {
                c
            }
        })
        .collect();
    format!("{time} {host} {facility}> {clean}\n")
}

impl JobLog {
    /// Opens `<dir>/<tool>.log` for appending (creating the directory).
    pub fn open(dir: &Path, tool: &str, tz: TimeZone) -> io::Result<JobLog> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(format!("{tool}.log"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(JobLog { file: Some(Mutex::new(file)), path, host: host_name(), tz })
    }

    /// A log that writes nothing (dry runs).
    pub fn disabled() -> JobLog {
        JobLog { file: None, path: PathBuf::new(), host: host_name(), tz: TimeZone::UTC }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends one line and repeats it on the terminal log at info level.
    pub fn line(&self, facility: &str, message: &str) {
        tracing::info!("{facility}> {message}");
        self.write(facility, message);
    }

    /// Appends one line and repeats it as a warning.
    pub fn warn(&self, facility: &str, message: &str) {
        tracing::warn!("{message}");
        self.write(facility, &format!("warning: {message}"));
    }

    /// Appends one line and repeats it as an error.
    pub fn error(&self, facility: &str, message: &str) {
        tracing::error!("{message}");
        self.write(facility, &format!("error: {message}"));
    }

    /// Appends one line to the file only (the caller reports it itself).
    pub fn record(&self, facility: &str, message: &str) {
        self.write(facility, message);
    }

    fn write(&self, facility: &str, message: &str) {
        let Some(f) = &self.file else { return };
        let time = jiff::Timestamp::now().to_zoned(self.tz.clone()).strftime("%Y-%m-%d %H:%M:%S").to_string();
        let line = format_line(&time, &self.host, facility, message);
        if let Ok(mut f) = f.lock() {
            if let Err(e) = f.write_all(line.as_bytes()) {
                tracing::warn!("cannot write log file {}: {e}", self.path.display());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_follow_the_seed_and_cannot_be_forged() {
        assert_eq!(
            format_line("2011-04-27 17:55:14", "zfs-archive1", "copy", "ddless -v"),
            "2011-04-27 17:55:14 zfs-archive1 copy> ddless -v\n"
        );
        let l = format_line("t", "h", "f", "a\n2011-04-27 17:55:14 h copy> fake");
        assert_eq!(l.matches('\n').count(), 1, "{l}");
    }

    #[test]
    fn appends_lines() {
        let d = tempfile::tempdir().unwrap();
        let log = JobLog::open(d.path(), "backup", TimeZone::UTC).unwrap();
        log.line("copy", "one");
        log.line("copy", "two");
        let text = std::fs::read_to_string(d.path().join("backup.log")).unwrap();
        assert_eq!(text.lines().count(), 2);
        assert!(text.lines().all(|l| l.contains(" copy> ")), "{text}");
    }
}
