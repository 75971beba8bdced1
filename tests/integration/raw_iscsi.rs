//! A raw iSCSI client for the portal tests: any PDU, from any loopback
//! source address, with the santools codec.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::FromRawFd;
use std::time::Duration;

use santools::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests, Pdu};
use santools::iscsi::text::TextParams;
use santools::iscsi::text_pdu::{TextRequest, TextResponse};

/// Connects to `dst` from the local address `src` (bind before connect),
/// so tests can be several "hosts" on loopback.
pub fn connect_from(src: &str, dst: &str) -> std::io::Result<TcpStream> {
    let src: std::net::Ipv4Addr = src.parse().map_err(std::io::Error::other)?;
    let dst: SocketAddr = dst.parse().map_err(std::io::Error::other)?;
    let SocketAddr::V4(dst) = dst else { return Err(std::io::Error::other("IPv4 only")) };
    // SAFETY: plain socket(2); owned by the TcpStream below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a fresh socket we own.
    let s = unsafe { TcpStream::from_raw_fd(fd) };
    let sin = |ip: std::net::Ipv4Addr, port: u16| libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: port.to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(ip).to_be() },
        sin_zero: [0; 8],
    };
    let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    let local = sin(src, 0);
    // SAFETY: valid sockaddr_in of the given length.
    if unsafe { libc::bind(fd, &local as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let remote = sin(*dst.ip(), dst.port());
    // SAFETY: as above.
    if unsafe { libc::connect(fd, &remote as *const _ as *const libc::sockaddr, len) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(s)
}

pub struct Raw {
    pub s: TcpStream,
    buf: Vec<u8>,
    pub limits: DecodeLimits,
    pub statsn: u32,
}

impl Raw {
    pub fn new(s: TcpStream) -> Raw {
        s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        Raw {
            s,
            buf: Vec::new(),
            limits: DecodeLimits { max_data_segment: 1 << 24, digests: Digests::default() },
            statsn: 0,
        }
    }

    pub fn connect(dst: &str) -> Raw {
        Raw::new(TcpStream::connect(dst).unwrap())
    }

    pub fn send(&mut self, pdu: &Pdu) -> std::io::Result<()> {
        self.s.write_all(&encode(pdu, Digests::default()))
    }

    /// The next PDU, or None when the portal closed the connection.
    pub fn recv(&mut self) -> Option<Pdu> {
        let mut chunk = [0u8; 65536];
        loop {
            if let Some((p, n)) = decode(&self.buf, &self.limits).expect("valid PDU from the portal") {
                self.buf.drain(..n);
                return Some(p);
            }
            match self.s.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// Whether the portal closed the connection (reads until it does).
    pub fn closed(&mut self) -> bool {
        while self.recv().is_some() {}
        true
    }

    /// One login request with `keys`, from the operational stage straight
    /// to full feature; the response.
    pub fn login(&mut self, keys: &TextParams) -> Option<LoginResponse> {
        let req = LoginRequest {
            cmdsn: 1,
            ..LoginRequest::opening([0x80, 9, 8, 7, 6, 5], 1, Stage::Operational, Stage::FullFeature, keys.to_bytes())
        };
        self.send(&req.to_pdu()).ok()?;
        let rsp = LoginResponse::from_pdu(&self.recv()?).ok()?;
        self.statsn = rsp.statsn;
        Some(rsp)
    }

    /// A discovery session for `initiator`, logged in.
    pub fn discovery(dst: &str, initiator: &str) -> Raw {
        let mut r = Raw::connect(dst);
        let mut keys = TextParams::new();
        keys.push("InitiatorName", initiator);
        keys.push("SessionType", "Discovery");
        keys.push("MaxRecvDataSegmentLength", "262144");
        let rsp = r.login(&keys).expect("discovery login answered");
        assert_eq!(rsp.status, LoginStatus::SUCCESS);
        r
    }

    /// Sends a text request with `data` and returns the first answer PDU
    /// (a Text Response or a Reject), or None if the connection closed.
    pub fn text(&mut self, data: Vec<u8>) -> Option<Pdu> {
        let req = TextRequest::new(2, 1, self.statsn.wrapping_add(1), data);
        self.send(&req.to_pdu()).ok()?;
        self.recv()
    }

    /// SendTargets=All, following continuations; the whole answer.
    pub fn send_targets_all(&mut self) -> Option<TextParams> {
        let mut keys = TextParams::new();
        keys.push("SendTargets", "All");
        let mut pdu = self.text(keys.to_bytes())?;
        let mut data = Vec::new();
        loop {
            let r = TextResponse::from_pdu(&pdu).ok()?;
            data.extend_from_slice(&r.data);
            if r.fin {
                return TextParams::parse(&data).ok();
            }
            let mut req = TextRequest::new(2, 1, r.statsn.wrapping_add(1), Vec::new());
            req.ttt = r.ttt;
            self.send(&req.to_pdu()).ok()?;
            pdu = self.recv()?;
        }
    }
}

/// A normal-session login for `target` as `initiator`: the status and the
/// TargetAddress of a redirect.
pub fn normal_login(dst: &str, initiator: &str, target: &str) -> Option<(LoginStatus, Option<String>)> {
    let mut r = Raw::connect(dst);
    let mut keys = TextParams::new();
    keys.push("InitiatorName", initiator);
    keys.push("SessionType", "Normal");
    keys.push("TargetName", target);
    let rsp = r.login(&keys)?;
    let addr = TextParams::parse(&rsp.data).ok().and_then(|t| t.get("TargetAddress").map(str::to_string));
    Some((rsp.status, addr))
}

/// The resident memory of a process, in KiB.
pub fn rss_kib(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// The number of threads of a process.
pub fn threads(pid: i32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}
