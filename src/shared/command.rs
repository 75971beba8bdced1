//! The one way santools runs a system tool (tgtadm, lvm, zfs, ssh, ...):
//! an argument vector, never a shell string; optional stdin bytes; a
//! timeout; stdout captured whole (up to a cap), stderr kept as a bounded
//! tail for the error message; the child killed and reaped if the caller
//! drops it or the timeout passes.
//!
//! Remote execution goes through `ssh -o BatchMode=yes HOST -- CMDLINE`.
//! The far side hands CMDLINE to a shell, so the runner quotes each
//! argument exactly once here; callers never quote.
//!
//! ```no_run
//! use std::time::Duration;
//! use santools::shared::command::Command;
//! let out = Command::new("lvs").args(["--reportformat", "json"]).timeout(Duration::from_secs(30)).run()?;
//! println!("{}", out.stdout_str()?);
//! # Ok::<(), santools::shared::command::CommandError>(())
//! ```

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::io::{self, Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How much of stderr is kept (the end of it) for error messages.
pub const STDERR_TAIL_BYTES: usize = 32 * 1024;
/// How much of that tail an error message shows.
const STDERR_SHOWN_BYTES: usize = 2048;
/// Default cap on captured stdout: tool reports are small; a runaway tool
/// must not fill memory.
pub const DEFAULT_MAX_STDOUT: usize = 64 << 20;

/// Where a command runs when it is not local: an ssh destination.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshTarget {
    /// Host name or address (no leading `-`, no spaces).
    pub host: String,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity: Option<PathBuf>,
    /// Extra `-o KEY=VALUE` options (e.g. `UserKnownHostsFile=...`).
    pub options: Vec<String>,
}

impl SshTarget {
    pub fn new(host: impl Into<String>) -> Self {
        SshTarget { host: host.into(), user: None, port: None, identity: None, options: Vec::new() }
    }
    pub fn user(mut self, user: impl Into<String>) -> Self {
        self.user = Some(user.into());
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }
    pub fn identity(mut self, path: impl Into<PathBuf>) -> Self {
        self.identity = Some(path.into());
        self
    }
    pub fn option(mut self, opt: impl Into<String>) -> Self {
        self.options.push(opt.into());
        self
    }

    fn check(&self) -> Result<(), String> {
        let bad =
            |s: &str| s.is_empty() || s.starts_with('-') || s.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad(&self.host) {
            return Err(format!("invalid ssh host {:?}", self.host));
        }
        if let Some(u) = &self.user {
            if bad(u) || u.contains('@') {
                return Err(format!("invalid ssh user {u:?}"));
            }
        }
        if let Some(o) = self.options.iter().find(|o| !o.contains('=') || o.chars().any(|c| c.is_control())) {
            return Err(format!("invalid ssh option {o:?} (expected KEY=VALUE)"));
        }
        Ok(())
    }
}

/// Quotes one argument for a POSIX shell: unchanged when it only has
/// characters no shell treats specially, else in single quotes.
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-./:=@%+,".contains(&b))
        && !arg.starts_with('=');
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

/// A command to run: program, arguments, and how.
#[derive(Clone, Debug)]
pub struct Command {
    program: OsString,
    args: Vec<OsString>,
    stdin: Option<Vec<u8>>,
    timeout: Option<Duration>,
    ssh: Option<SshTarget>,
    env: Vec<(OsString, OsString)>,
    max_stdout: usize,
}

/// What a finished command printed.
#[derive(Clone, Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    /// The last [`STDERR_TAIL_BYTES`] of stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// stdout as UTF-8 (tool reports are text).
    pub fn stdout_str(&self) -> Result<&str, CommandError> {
        std::str::from_utf8(&self.stdout).map_err(|_| CommandError::NotUtf8)
    }
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }
}

/// Why a command did not succeed. Each variant names the argument vector.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("cannot run {}: {source}", Argv(argv))]
    Spawn { argv: Vec<String>, source: io::Error },
    #[error("{} failed ({}){}", Argv(argv), describe_status(*status), tail_suffix(stderr_tail))]
    Failed { argv: Vec<String>, status: ExitStatus, stderr_tail: String },
    #[error("{} timed out after {}s and was killed{}", Argv(argv), timeout.as_secs_f64(), tail_suffix(stderr_tail))]
    TimedOut { argv: Vec<String>, timeout: Duration, stderr_tail: String },
    #[error("{} printed more than {limit} bytes on stdout and was killed", Argv(argv))]
    OutputTooLarge { argv: Vec<String>, limit: usize },
    #[error("{}: {source}", Argv(argv))]
    Io { argv: Vec<String>, source: io::Error },
    #[error("invalid command: {0}")]
    Invalid(String),
    #[error("command output is not UTF-8")]
    NotUtf8,
}

impl CommandError {
    /// The exit code, when the command ran and exited non-zero.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            CommandError::Failed { status, .. } => status.code(),
            _ => None,
        }
    }
    pub fn stderr_tail(&self) -> &str {
        match self {
            CommandError::Failed { stderr_tail, .. } | CommandError::TimedOut { stderr_tail, .. } => stderr_tail,
            _ => "",
        }
    }
    pub fn argv(&self) -> &[String] {
        match self {
            CommandError::Spawn { argv, .. }
            | CommandError::Failed { argv, .. }
            | CommandError::TimedOut { argv, .. }
            | CommandError::OutputTooLarge { argv, .. }
            | CommandError::Io { argv, .. } => argv,
            _ => &[],
        }
    }
}

/// Displays an argument vector as a shell would need it typed.
struct Argv<'a>(&'a [String]);

impl fmt::Display for Argv<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let quoted: Vec<String> = self.0.iter().map(|a| shell_quote(a)).collect();
        f.write_str(&quoted.join(" "))
    }
}

fn describe_status(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(c), _) => format!("exit status {c}"),
        (None, Some(s)) => format!("killed by signal {s}"),
        _ => "unknown status".to_string(),
    }
}

fn tail_suffix(tail: &str) -> String {
    let t = tail.trim_end();
    if t.is_empty() {
        return String::new();
    }
    let mut start = t.len().saturating_sub(STDERR_SHOWN_BYTES);
    while !t.is_char_boundary(start) {
        start += 1;
    }
    let cut = if start > 0 { "..." } else { "" };
    format!(": {cut}{}", &t[start..])
}

impl Command {
    pub fn new(program: impl AsRef<OsStr>) -> Self {
        Command {
            program: program.as_ref().to_owned(),
            args: Vec::new(),
            stdin: None,
            timeout: None,
            ssh: None,
            env: Vec::new(),
            max_stdout: DEFAULT_MAX_STDOUT,
        }
    }
    pub fn arg(mut self, arg: impl AsRef<OsStr>) -> Self {
        self.args.push(arg.as_ref().to_owned());
        self
    }
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        self.args.extend(args.into_iter().map(|a| a.as_ref().to_owned()));
        self
    }
    /// Bytes fed to the command's stdin (then closed). Without this, stdin
    /// is /dev/null.
    pub fn stdin_bytes(mut self, bytes: impl Into<Vec<u8>>) -> Self {
        self.stdin = Some(bytes.into());
        self
    }
    /// Kill the command (and fail) if it runs longer than this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
    /// Run on another host through ssh (BatchMode: never prompts).
    pub fn ssh(mut self, target: SshTarget) -> Self {
        self.ssh = Some(target);
        self
    }
    /// Like [`Command::ssh`], or local for `None`.
    pub fn on(mut self, target: Option<SshTarget>) -> Self {
        self.ssh = target;
        self
    }
    /// An environment variable for the local process (over ssh: for the
    /// ssh client, not the remote command).
    pub fn env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.env.push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }
    /// Cap on captured stdout (default [`DEFAULT_MAX_STDOUT`]).
    pub fn max_stdout(mut self, bytes: usize) -> Self {
        self.max_stdout = bytes;
        self
    }

    /// The program and arguments as given (before any ssh wrapping).
    pub fn command_argv(&self) -> Vec<String> {
        std::iter::once(&self.program).chain(&self.args).map(|a| a.to_string_lossy().into_owned()).collect()
    }

    /// The argument vector actually executed: the command itself, or the
    /// ssh invocation carrying it.
    pub fn argv(&self) -> Result<Vec<OsString>, CommandError> {
        let Some(t) = &self.ssh else {
            return Ok(std::iter::once(self.program.clone()).chain(self.args.iter().cloned()).collect());
        };
        t.check().map_err(CommandError::Invalid)?;
        let mut remote = Vec::new();
        for a in std::iter::once(&self.program).chain(&self.args) {
            let s = a.to_str().ok_or_else(|| CommandError::Invalid(format!("argument {a:?} is not UTF-8")))?;
            if s.contains('\0') {
                return Err(CommandError::Invalid("argument contains a NUL byte".into()));
            }
            remote.push(shell_quote(s));
        }
        let mut v: Vec<OsString> = vec!["ssh".into(), "-o".into(), "BatchMode=yes".into()];
        if let Some(p) = t.port {
            v.extend(["-p".into(), p.to_string().into()]);
        }
        if let Some(i) = &t.identity {
            v.extend(["-i".into(), i.clone().into_os_string()]);
        }
        for o in &t.options {
            v.extend(["-o".into(), o.into()]);
        }
        if let Some(u) = &t.user {
            v.extend(["-l".into(), u.into()]);
        }
        v.push(t.host.clone().into());
        v.push("--".into());
        v.push(remote.join(" ").into());
        Ok(v)
    }

    fn display_argv(&self) -> Vec<String> {
        match self.argv() {
            Ok(v) => v.iter().map(|a| a.to_string_lossy().into_owned()).collect(),
            Err(_) => self.command_argv(),
        }
    }

    /// Starts the command with stdout piped to the caller (stdin piped too
    /// when no [`Command::stdin_bytes`] were given): for streams such as
    /// `zfs send`. Dropping the [`Running`] kills and reaps the child.
    pub fn spawn(&self) -> Result<Running, CommandError> {
        self.spawn_inner(true)
    }

    fn spawn_inner(&self, caller_stdin: bool) -> Result<Running, CommandError> {
        let argv = self.argv()?;
        let shown = self.display_argv();
        let mut c = std::process::Command::new(&argv[0]);
        c.args(&argv[1..]);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.stdin(if self.stdin.is_some() || caller_stdin { Stdio::piped() } else { Stdio::null() });
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        // A command with a deadline runs in its own process group, so the
        // deadline ends everything it started (a shell wrapper's children
        // hold our pipes too), not only the process we spawned. Without a
        // deadline it stays in ours and gets the terminal's Ctrl-C.
        let group = self.timeout.is_some();
        if group {
            c.process_group(0);
        }
        let mut child = c.spawn().map_err(|source| CommandError::Spawn { argv: shown.clone(), source })?;
        let stderr = child.stderr.take().expect("piped stderr");
        let stderr_thread = std::thread::spawn(move || read_tail(stderr, STDERR_TAIL_BYTES));
        let mut stdin_thread = None;
        let mut stdin_pipe = child.stdin.take();
        if let Some(bytes) = self.stdin.clone() {
            let mut pipe = stdin_pipe.take().expect("piped stdin");
            // A command that exits without reading its input closes the
            // pipe: that is its business, not a write error of ours.
            stdin_thread = Some(std::thread::spawn(move || {
                let _ = pipe.write_all(&bytes);
            }));
        }
        Ok(Running {
            group: group.then(|| child.id() as i32),
            child: Some(child),
            argv: shown,
            started: Instant::now(),
            timeout: self.timeout,
            stdin: stdin_pipe,
            stderr_thread: Some(stderr_thread),
            stdin_thread,
        })
    }

    /// Runs to completion: Ok when the exit status is 0.
    pub fn run(&self) -> Result<Output, CommandError> {
        let out = self.run_unchecked()?;
        if out.status.success() {
            Ok(out)
        } else {
            Err(CommandError::Failed {
                argv: self.display_argv(),
                status: out.status,
                stderr_tail: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        }
    }

    /// Runs to completion and returns the output whatever the exit status
    /// (for tools whose non-zero status is an answer, e.g. `grep`).
    pub fn run_unchecked(&self) -> Result<Output, CommandError> {
        let mut r = self.spawn_inner(false)?;
        let stdout = r.child.as_mut().and_then(|c| c.stdout.take()).expect("piped stdout");
        let limit = self.max_stdout;
        let stdout_thread = std::thread::spawn(move || read_capped(stdout, limit));
        let status = r.wait_status()?;
        // The command exited; anything it left behind holding our pipes
        // gets the rest of the deadline, then its group is killed.
        r.wait_for_pipes(&stdout_thread);
        let stdout = stdout_thread.join().unwrap_or_else(|_| Err(io::Error::other("stdout reader panicked")));
        let stderr = r.take_stderr();
        match stdout {
            Ok(Some(stdout)) => Ok(Output { status, stdout, stderr }),
            Ok(None) => Err(CommandError::OutputTooLarge { argv: r.argv.clone(), limit }),
            Err(source) => Err(CommandError::Io { argv: r.argv.clone(), source }),
        }
    }
}

/// Reads everything up to `limit` bytes; `None` when there was more (the
/// rest is drained so the writer is not blocked).
fn read_capped(mut r: impl Read, limit: usize) -> io::Result<Option<Vec<u8>>> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    let mut over = false;
    loop {
        let n = match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !over && buf.len() + n <= limit {
            buf.extend_from_slice(&chunk[..n]);
        } else {
            over = true;
        }
    }
    Ok(if over { None } else { Some(buf) })
}

/// Reads everything, keeping only the last `keep` bytes.
fn read_tail(mut r: impl Read, keep: usize) -> Vec<u8> {
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        match r.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > 2 * keep {
                    buf.drain(..buf.len() - keep);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(_) => break,
        }
    }
    if buf.len() > keep {
        buf.drain(..buf.len() - keep);
    }
    buf
}

/// A started command. Dropping it kills and reaps the child.
pub struct Running {
    /// The process group of a command with a deadline.
    group: Option<i32>,
    child: Option<Child>,
    argv: Vec<String>,
    started: Instant,
    timeout: Option<Duration>,
    stdin: Option<ChildStdin>,
    stderr_thread: Option<JoinHandle<Vec<u8>>>,
    stdin_thread: Option<JoinHandle<()>>,
}

impl Running {
    pub fn argv(&self) -> &[String] {
        &self.argv
    }
    pub fn id(&self) -> u32 {
        self.child.as_ref().map_or(0, |c| c.id())
    }
    /// The command's stdout, to stream from (once).
    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.as_mut().and_then(|c| c.stdout.take())
    }
    /// The command's stdin, to stream into (once; drop it to send EOF).
    pub fn take_stdin(&mut self) -> Option<ChildStdin> {
        self.stdin.take()
    }

    /// Kills the command's process group (commands with a deadline).
    fn kill_group(&self) {
        if let Some(pgid) = self.group {
            // SAFETY: kill(2) with a negative pid signals that process group.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }

    /// Waits until `reader` finished (its pipe closed) or the deadline
    /// passed; then kills the group so the pipe closes.
    fn wait_for_pipes<T>(&self, reader: &JoinHandle<T>) {
        let Some(t) = self.timeout else { return };
        let finished = || reader.is_finished() && self.stderr_thread.as_ref().map_or(true, |e| e.is_finished());
        while !finished() && self.started.elapsed() < t {
            std::thread::sleep(Duration::from_millis(10));
        }
        if !finished() {
            self.kill_group();
        }
    }

    fn take_stderr(&mut self) -> Vec<u8> {
        self.stderr_thread.take().and_then(|t| t.join().ok()).unwrap_or_default()
    }

    fn wait_status(&mut self) -> Result<ExitStatus, CommandError> {
        let child = self.child.as_mut().expect("child present until dropped");
        let status = loop {
            match child.try_wait() {
                Ok(Some(s)) => break s,
                Ok(None) => {}
                Err(source) => return Err(CommandError::Io { argv: self.argv.clone(), source }),
            }
            if let Some(t) = self.timeout {
                if self.started.elapsed() >= t {
                    let _ = child.kill();
                    let _ = child.wait();
                    self.kill_group();
                    drop(self.stdin.take());
                    let tail = self.take_stderr();
                    return Err(CommandError::TimedOut {
                        argv: self.argv.clone(),
                        timeout: t,
                        stderr_tail: String::from_utf8_lossy(&tail).into_owned(),
                    });
                }
            }
            let Some(_) = self.timeout else {
                match child.wait() {
                    Ok(s) => break s,
                    Err(source) => return Err(CommandError::Io { argv: self.argv.clone(), source }),
                }
            };
            let e = self.started.elapsed();
            std::thread::sleep(if e < Duration::from_millis(50) {
                Duration::from_millis(1)
            } else if e < Duration::from_secs(1) {
                Duration::from_millis(5)
            } else {
                Duration::from_millis(20)
            });
        };
        if let Some(t) = self.stdin_thread.take() {
            let _ = t.join();
        }
        Ok(status)
    }

    /// Waits for the end (closing our end of stdin first); Ok on status 0.
    pub fn wait(mut self) -> Result<ExitStatus, CommandError> {
        drop(self.stdin.take());
        let status = self.wait_status()?;
        let tail = self.take_stderr();
        if status.success() {
            Ok(status)
        } else {
            Err(CommandError::Failed {
                argv: self.argv.clone(),
                status,
                stderr_tail: String::from_utf8_lossy(&tail).into_owned(),
            })
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            if let Ok(None) = c.try_wait() {
                let _ = c.kill();
                self.kill_group();
            }
            let _ = c.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_stdout_and_feeds_stdin() {
        let out = Command::new("cat").stdin_bytes(b"hello\n".to_vec()).run().unwrap();
        assert_eq!(out.stdout, b"hello\n");
        assert!(out.status.success());
    }

    #[test]
    fn stdin_is_null_without_bytes() {
        let out = Command::new("cat").timeout(Duration::from_secs(10)).run().unwrap();
        assert!(out.stdout.is_empty());
    }

    #[test]
    fn arguments_are_passed_verbatim() {
        let weird = "a b;$(touch /tmp/x)'\"\n*";
        let out = Command::new("printf").args(["%s|", weird, ""]).run().unwrap();
        assert_eq!(out.stdout_str().unwrap(), format!("{weird}||"));
    }

    #[test]
    fn failure_carries_argv_status_and_stderr_tail() {
        let e = Command::new("sh").args(["-c", "echo oops >&2; exit 3"]).run().unwrap_err();
        assert_eq!(e.exit_code(), Some(3));
        assert_eq!(e.stderr_tail().trim(), "oops");
        assert_eq!(e.argv()[0], "sh");
        let msg = e.to_string();
        assert!(msg.contains("exit status 3") && msg.contains("oops") && msg.starts_with("sh -c"), "{msg}");
    }

    #[test]
    fn stderr_is_bounded_to_its_tail() {
        let e = Command::new("sh")
            .args([
                "-c",
                "i=0; while [ $i -lt 3000 ]; do echo line-$i-xxxxxxxxxxxxxxxxxxxx >&2; i=$((i+1)); done; exit 1",
            ])
            .run()
            .unwrap_err();
        assert!(e.stderr_tail().len() <= STDERR_TAIL_BYTES);
        assert!(e.stderr_tail().contains("line-2999-"));
        assert!(!e.stderr_tail().contains("line-0-"));
        assert!(e.to_string().len() < STDERR_SHOWN_BYTES + 200);
    }

    #[test]
    fn timeout_kills_the_child() {
        let t = Instant::now();
        let e = Command::new("sleep").arg("30").timeout(Duration::from_millis(200)).run().unwrap_err();
        assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(20));
    }

    #[test]
    fn a_deadline_ends_everything_the_command_started() {
        // A wrapper whose child keeps our pipes open: the deadline still
        // holds, and the child is gone afterwards.
        let d = tempfile::tempdir().unwrap();
        let marker = d.path().join("alive");
        let script = format!("(sleep 30; touch {}) & sleep 30", marker.display());
        let t = Instant::now();
        let e = Command::new("sh").args(["-c", &script]).timeout(Duration::from_millis(300)).run().unwrap_err();
        assert!(matches!(e, CommandError::TimedOut { .. }), "{e}");
        assert!(t.elapsed() < Duration::from_secs(20));
        // The wrapper exits at once but leaves a child holding stdout:
        // the output is returned when the deadline ends that child.
        let t = Instant::now();
        let script = format!("(sleep 30; touch {}) & echo hi", marker.display());
        let out = Command::new("sh").args(["-c", &script]).timeout(Duration::from_millis(500)).run().unwrap();
        assert_eq!(out.stdout, b"hi\n");
        assert!(t.elapsed() < Duration::from_secs(20));
        std::thread::sleep(Duration::from_millis(200));
        assert!(!marker.exists());
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let e = Command::new("/nonexistent/santools-no-such-tool").run().unwrap_err();
        assert!(matches!(e, CommandError::Spawn { .. }));
        assert!(e.to_string().contains("/nonexistent/santools-no-such-tool"));
    }

    #[test]
    fn unchecked_returns_nonzero_status() {
        let out = Command::new("false").run_unchecked().unwrap();
        assert_eq!(out.status.code(), Some(1));
    }

    #[test]
    fn stdout_cap_is_enforced() {
        let e = Command::new("head").args(["-c", "100000", "/dev/zero"]).max_stdout(1000).run().unwrap_err();
        assert!(matches!(e, CommandError::OutputTooLarge { limit: 1000, .. }), "{e}");
    }

    #[test]
    fn dropping_a_running_command_kills_and_reaps_it() {
        let r = Command::new("sleep").arg("30").spawn().unwrap();
        let pid = r.id() as i32;
        drop(r);
        // SAFETY: signal 0 only checks for existence; the child was reaped,
        // so the PID no longer names it (reuse within this instant is not a concern).
        let alive = unsafe { libc::kill(pid, 0) } == 0;
        assert!(!alive, "child {pid} still exists after drop");
    }

    #[test]
    fn streaming_spawn_and_wait() {
        let mut r = Command::new("cat").spawn().unwrap();
        let mut stdin = r.take_stdin().unwrap();
        let mut stdout = r.take_stdout().unwrap();
        stdin.write_all(b"stream").unwrap();
        drop(stdin);
        let mut s = String::new();
        stdout.read_to_string(&mut s).unwrap();
        assert_eq!(s, "stream");
        r.wait().unwrap();
    }

    #[test]
    fn quoting_table() {
        for (arg, quoted) in [
            ("plain-name_1.2:3", "plain-name_1.2:3"),
            ("", "''"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("$(rm -rf /)", "'$(rm -rf /)'"),
            ("*", "'*'"),
            ("a\nb", "'a\nb'"),
            ("~root", "'~root'"),
            ("=x", "'=x'"),
        ] {
            assert_eq!(shell_quote(arg), quoted, "{arg:?}");
        }
    }

    #[test]
    fn ssh_argv_quotes_each_argument_once() {
        let c = Command::new("lvs")
            .args(["--select", "lv_name = 'x y'", "vg 1"])
            .ssh(SshTarget::new("node1").user("root").port(2222).option("ConnectTimeout=5"));
        let argv: Vec<String> = c.argv().unwrap().into_iter().map(|a| a.into_string().unwrap()).collect();
        assert_eq!(
            argv,
            [
                "ssh",
                "-o",
                "BatchMode=yes",
                "-p",
                "2222",
                "-o",
                "ConnectTimeout=5",
                "-l",
                "root",
                "node1",
                "--",
                r"lvs --select 'lv_name = '\''x y'\''' 'vg 1'"
            ]
        );
        // A POSIX shell splits the remote line back into the original words.
        let remote = argv.last().unwrap().clone();
        let out = Command::new("sh").args(["-c", &format!("printf '%s|' {remote}")]).run().unwrap();
        assert_eq!(out.stdout_str().unwrap(), "lvs|--select|lv_name = 'x y'|vg 1|");
    }

    #[test]
    fn bad_ssh_hosts_are_refused() {
        for host in ["-oProxyCommand=x", "a b", ""] {
            let e = Command::new("true").ssh(SshTarget::new(host)).run().unwrap_err();
            assert!(matches!(e, CommandError::Invalid(_)), "{host:?}: {e}");
        }
    }
}
