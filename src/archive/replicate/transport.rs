//! The data path of zfs-copy: a relay that copies a send stream into a
//! receive while counting bytes, and the direct TCP connection (the seed
//! used socat for speed): the receiving side listens on a port from a
//! configured range, the sending side connects and first sends a one-time
//! token, so nothing else can feed the receive. Accept and idle timeouts
//! are bounded.

use std::io::{self, BufRead, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd};
use std::time::{Duration, Instant};

use crate::progress::Progress;

/// The first bytes on a data connection: this prefix, 64 hex digits, `\n`.
pub const TOKEN_PREFIX: &str = "SANTOOLS-COPY ";
const TOKEN_LINE: usize = 14 + 64 + 1;
/// Connections with a wrong token a listener turns away before giving up.
const MAX_BAD_CONNECTIONS: usize = 16;

/// A fresh one-time token (32 random bytes, hex).
pub fn new_token() -> io::Result<String> {
    let mut b = [0u8; 32];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b.iter().map(|x| format!("{x:02x}")).collect())
}

pub fn check_token(t: &str) -> io::Result<()> {
    if t.len() == 64 && t.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(io::Error::new(io::ErrorKind::InvalidInput, "a copy token is 64 hex digits"))
    }
}

/// Reads one token line (from the control channel's stdin).
pub fn read_token_line(r: &mut dyn BufRead) -> io::Result<String> {
    let mut line = String::new();
    r.take(128).read_line(&mut line)?;
    let t = line.trim().to_string();
    check_token(&t)?;
    Ok(t)
}

fn equal_constant_time(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Parses `A-B` (a port range).
pub fn parse_ports(s: &str) -> Result<(u16, u16), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u16 = a.trim().parse().map_err(|_| format!("{s:?}: expected PORT or FIRST-LAST"))?;
    let b: u16 = b.trim().parse().map_err(|_| format!("{s:?}: expected PORT or FIRST-LAST"))?;
    if a == 0 || b < a {
        return Err(format!("{s:?}: expected 1 <= FIRST <= LAST"));
    }
    Ok((a, b))
}

/// Binds the first free port of `ports` on `addr`.
pub fn bind_in_range(addr: IpAddr, ports: (u16, u16)) -> io::Result<TcpListener> {
    let mut last = None;
    for p in ports.0..=ports.1 {
        match TcpListener::bind(SocketAddr::new(addr, p)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no free port in {}-{} on {addr}{}",
            ports.0,
            ports.1,
            last.map(|e| format!(" (last: {e})")).unwrap_or_default()
        ),
    ))
}

/// Accepts the data connection that presents `token`. Each connection's
/// token is checked on a thread of its own, so a peer that connects and
/// sends nothing cannot hold the real sender back; at most
/// `MAX_BAD_CONNECTIONS` checks run at once, and that many wrong or missing
/// tokens end the wait.
pub fn accept_with_token(l: &TcpListener, token: &str, timeout: Duration, idle: Duration) -> io::Result<TcpStream> {
    let deadline = Instant::now() + timeout;
    l.set_nonblocking(true)?;
    let (tx, rx) = std::sync::mpsc::channel::<Option<TcpStream>>();
    let (mut bad, mut checking) = (0usize, 0usize);
    loop {
        while let Ok(checked) = rx.try_recv() {
            checking -= 1;
            match checked {
                Some(s) => {
                    s.set_read_timeout(Some(idle))?;
                    return Ok(s);
                }
                None => bad += 1,
            }
        }
        if bad >= MAX_BAD_CONNECTIONS {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "too many connections with a wrong token"));
        }
        match l.accept() {
            Ok((s, peer)) => {
                if checking >= MAX_BAD_CONNECTIONS {
                    tracing::warn!("refused a data connection from {peer}: too many unchecked connections");
                    bad += 1;
                    continue;
                }
                s.set_nonblocking(false)?;
                let left = deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(100));
                s.set_read_timeout(Some(left.min(Duration::from_secs(30))))?;
                let (tx, token) = (tx.clone(), token.as_bytes().to_vec());
                checking += 1;
                std::thread::spawn(move || {
                    let mut line = [0u8; TOKEN_LINE];
                    let ok = (&s).read_exact(&mut line).is_ok()
                        && line.starts_with(TOKEN_PREFIX.as_bytes())
                        && line[TOKEN_LINE - 1] == b'\n'
                        && equal_constant_time(&line[TOKEN_PREFIX.len()..TOKEN_LINE - 1], &token);
                    if !ok {
                        tracing::warn!("refused a data connection from {peer}: wrong or missing copy token");
                    }
                    // The waiter may be gone (it timed out or took another
                    // connection): then the socket just closes.
                    let _ = tx.send(ok.then_some(s));
                });
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no sender with the copy token connected within {} s", timeout.as_secs()),
                    ));
                }
                // Sleep until a connection arrives (or a token check
                // could have finished), not a fixed tick: the sender's
                // stream waits on this.
                let tick = if checking > 0 { 2 } else { 50 };
                let left = deadline.saturating_duration_since(Instant::now()).as_millis().min(tick) as libc::c_int;
                let mut pfd = libc::pollfd { fd: l.as_raw_fd(), events: libc::POLLIN, revents: 0 };
                // SAFETY: one pollfd on a listener we borrow.
                unsafe { libc::poll(&mut pfd, 1, left.max(1)) };
            }
            Err(e) => return Err(e),
        }
    }
}

/// Connects to a listening receiver and presents the token.
pub fn connect_with_token(addr: SocketAddr, token: &str, timeout: Duration, idle: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_write_timeout(Some(idle))?;
    s.set_nodelay(true)?;
    (&s).write_all(format!("{TOKEN_PREFIX}{token}\n").as_bytes())?;
    Ok(s)
}

/// Moves everything from `from` to `to`, counting bytes. Where one end is
/// a pipe (always, here: the ends are `zfs send`'s stdout, `zfs receive`'s
/// stdin, a data socket, our own stdin/stdout over ssh) the kernel moves the
/// pages with splice(2) and the stream never passes through this process's
/// memory; otherwise (splice refused before the first byte) it falls back
/// to read/write, 1 MiB at a time.
pub fn relay(from: BorrowedFd<'_>, to: BorrowedFd<'_>, progress: &dyn Progress) -> io::Result<u64> {
    let mut total = 0u64;
    loop {
        // SAFETY: splice between two descriptors we borrow for the call,
        // no offsets (both are streams).
        let n = unsafe {
            libc::splice(
                from.as_raw_fd(),
                std::ptr::null_mut(),
                to.as_raw_fd(),
                std::ptr::null_mut(),
                RELAY_CHUNK,
                libc::SPLICE_F_MOVE | libc::SPLICE_F_MORE,
            )
        };
        match n {
            0 => return Ok(total),
            n if n > 0 => moved(n as usize, &mut total, progress),
            _ => {
                let e = io::Error::last_os_error();
                match e.raw_os_error() {
                    Some(libc::EINTR) => continue,
                    Some(libc::EINVAL) | Some(libc::ENOSYS) if total == 0 => return copy(from, to, progress),
                    // A socket's SO_RCVTIMEO/SO_SNDTIMEO ran out.
                    Some(libc::EAGAIN) => {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the stream stalled (no data moved within the timeout) after {total} bytes"),
                        ))
                    }
                    _ => return Err(e),
                }
            }
        }
    }
}

const RELAY_CHUNK: usize = 1 << 20;

fn moved(n: usize, total: &mut u64, progress: &dyn Progress) {
    // A copy killed mid-stream (kill -9 tests).
    crate::shared::failpoint::hit("copy.relay");
    *total += n as u64;
    progress.advance(n as u64);
}

/// The read/write fallback of [`relay`].
fn copy(from: BorrowedFd<'_>, to: BorrowedFd<'_>, progress: &dyn Progress) -> io::Result<u64> {
    // SAFETY: the descriptors stay owned by the caller: ManuallyDrop never
    // closes them.
    let mut r = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(from.as_raw_fd()) });
    let mut w = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(to.as_raw_fd()) });
    let mut buf = vec![0u8; RELAY_CHUNK];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        w.write_all(&buf[..n])?;
        moved(n, &mut total, progress);
    }
    Ok(total)
}

/// Grows a pipe's buffer (Linux: up to /proc/sys/fs/pipe-max-size, 1 MiB
/// by default) so the relay between `zfs send` and `zfs receive` keeps
/// both busy instead of handing 64 KiB back and forth. Best effort.
pub fn widen_pipe(fd: &impl AsRawFd) {
    // SAFETY: fcntl on a file descriptor we own; a failure only leaves the
    // default size.
    unsafe {
        libc::fcntl(fd.as_raw_fd(), libc::F_SETPIPE_SZ, 1 << 20);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::progress::NoProgress;
    use std::os::fd::AsFd;

    #[test]
    fn the_token_gates_the_data_connection() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let token = new_token().unwrap();
        let good = token.clone();
        let t = std::thread::spawn(move || {
            // An intruder first, then the real sender.
            let mut bad = TcpStream::connect(addr).unwrap();
            bad.write_all(format!("{TOKEN_PREFIX}{}\n", "0".repeat(64)).as_bytes()).unwrap();
            let mut s = connect_with_token(addr, &good, Duration::from_secs(5), Duration::from_secs(5)).unwrap();
            s.write_all(b"stream bytes").unwrap();
        });
        let mut s = accept_with_token(&l, &token, Duration::from_secs(20), Duration::from_secs(20)).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"stream bytes");
        t.join().unwrap();
    }

    /// A peer that connects and says nothing must not hold the real sender
    /// back (the checks used to run one connection at a time: the silent
    /// one would have used up the whole accept timeout).
    #[test]
    fn a_silent_connection_does_not_block_the_sender() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let token = new_token().unwrap();
        let good = token.clone();
        let silent = TcpStream::connect(addr).unwrap();
        let t = std::thread::spawn(move || {
            let mut s = connect_with_token(addr, &good, Duration::from_secs(20), Duration::from_secs(20)).unwrap();
            s.write_all(b"stream bytes").unwrap();
        });
        let mut s = accept_with_token(&l, &token, Duration::from_secs(20), Duration::from_secs(20)).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"stream bytes");
        t.join().unwrap();
        // The sender got through while the silent peer was still being
        // waited for (served one at a time, it would have been closed
        // first, after its whole read timeout).
        silent.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        let e = (&silent).read(&mut [0u8; 1]).unwrap_err();
        assert!(matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut), "{e}");
    }

    /// The relay moves every byte between the kinds of ends zfs-copy
    /// has: pipe to socket, socket to pipe (splice), and two regular files
    /// (splice refused: the read/write fallback).
    #[test]
    fn the_relay_moves_every_byte_by_splice_or_by_copy() {
        use std::os::unix::net::UnixStream;
        let data: Vec<u8> = (0..3_000_007u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        // pipe -> socket -> pipe
        let (pr, pw) = nix::unistd::pipe().unwrap();
        let (sa, sb) = UnixStream::pair().unwrap();
        let (qr, qw) = nix::unistd::pipe().unwrap();
        let feed = {
            let d = data.clone();
            std::thread::spawn(move || std::fs::File::from(pw).write_all(&d).unwrap())
        };
        let there = std::thread::spawn(move || {
            let n = relay(pr.as_fd(), sa.as_fd(), &NoProgress).unwrap();
            drop(sa);
            n
        });
        let back = std::thread::spawn(move || {
            let n = relay(sb.as_fd(), qw.as_fd(), &NoProgress).unwrap();
            drop(qw);
            n
        });
        let mut out = Vec::new();
        std::fs::File::from(qr).read_to_end(&mut out).unwrap();
        feed.join().unwrap();
        assert_eq!(there.join().unwrap(), data.len() as u64);
        assert_eq!(back.join().unwrap(), data.len() as u64);
        assert!(out == data, "the stream arrived changed");
        // file -> file: no pipe at either end
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a"), &data).unwrap();
        let a = std::fs::File::open(dir.path().join("a")).unwrap();
        let b = std::fs::File::create(dir.path().join("b")).unwrap();
        assert_eq!(relay(a.as_fd(), b.as_fd(), &NoProgress).unwrap(), data.len() as u64);
        assert!(std::fs::read(dir.path().join("b")).unwrap() == data);
    }

    #[test]
    fn nobody_connecting_times_out() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let e = accept_with_token(&l, &new_token().unwrap(), Duration::from_millis(200), Duration::from_secs(1))
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn port_ranges() {
        assert_eq!(parse_ports("50000-50010"), Ok((50000, 50010)));
        assert_eq!(parse_ports("7000"), Ok((7000, 7000)));
        assert!(parse_ports("9-1").is_err() && parse_ports("0-5").is_err() && parse_ports("x").is_err());
        assert!(check_token("ab").is_err());
        assert!(read_token_line(&mut "zz\n".as_bytes()).is_err());
    }
}
