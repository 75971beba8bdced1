//! A blocking TCP connection for the login phase and discovery sessions:
//! one PDU at a time, each read and write bounded by a deadline. The full
//! feature phase of a normal session runs on the same socket, made
//! non-blocking, in the session's event loop (session.rs).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::error::InitiatorError;
use super::url::Portal;
use crate::iscsi::bhs::{Bhs, BHS_LEN};
use crate::iscsi::pdu::{decode, encode, frame_len, DecodeLimits, Digests, Pdu};

pub(crate) enum RecvError {
    Timeout,
    Failed(String),
}

pub(crate) struct Conn {
    pub stream: TcpStream,
    /// The portal as the user or a redirect named it (for messages).
    pub label: String,
    pub limits: DecodeLimits,
    pub send_digests: Digests,
    pub log_pdus: bool,
    /// No PDU has arrived yet: the first must be a Login Response.
    pub first: bool,
}

/// Why the first bytes a peer sent cannot open an iSCSI answer, or None.
/// A Login Response (or a Reject) is the only PDU a target sends first; a
/// web server, an ssh daemon or a wrong port answers text instead, and
/// "data segment of 3223089 bytes exceeds the negotiated maximum" (the
/// length field of "HTTP/1.1") told the user nothing.
pub(crate) fn not_iscsi(head: &[u8; BHS_LEN]) -> Option<String> {
    // Exactly (reserved bits clear): 0x23 Login Response, 0x3f Reject.
    if head[0] == 0x23 || head[0] == 0x3f {
        return None;
    }
    let line: Vec<u8> = head.iter().copied().take_while(|&b| b != b'\r' && b != b'\n').take(60).collect();
    let said = if line.len() >= 4 && line.iter().all(|b| (0x20..0x7f).contains(b)) {
        format!("it answered {:?}", String::from_utf8_lossy(&line))
    } else {
        format!("its first byte is 0x{:02x}, not a Login Response", head[0])
    };
    Some(format!("the peer does not speak iSCSI ({said}): is this the right host and port?"))
}

/// A one-line rendering of a PDU for debug logs.
pub(crate) fn describe(pdu: &Pdu) -> String {
    let op = pdu.bhs.opcode().map_or_else(|| format!("0x{:02x}", pdu.bhs.opcode_raw()), |o| format!("{o:?}"));
    // An outgoing PDU's header gets its length when encoded; a Data-In
    // read straight into a caller's buffer has no data here.
    let dlen = (pdu.bhs.data_len() as usize).max(pdu.data.len());
    let mut s = format!("{op} flags=0x{:02x} itt=0x{:08x} dlen={dlen}", pdu.bhs.flags(), pdu.bhs.itt());
    if !pdu.data.is_empty() && pdu.data.len() < 4096 && pdu.data.iter().all(|&b| b == 0 || (0x20..0x7f).contains(&b)) {
        // CHAP values are hashes of secrets: keep them out of logs.
        let text: String = pdu
            .data
            .split(|&b| b == 0)
            .filter(|i| !i.is_empty())
            .map(|i| {
                let t = String::from_utf8_lossy(i);
                if t.starts_with("CHAP_R=") || t.starts_with("CHAP_C=") {
                    format!("{}=***", &t[..6])
                } else {
                    t.into_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("|");
        s.push_str(&format!(" [{text}]"));
    }
    s
}

/// A lookup may take this long whatever the connect timeout: a resolver
/// whose first name server does not answer tries the next after 5 s.
const RESOLVE_MIN: Duration = Duration::from_secs(12);

/// The addresses of `portal`'s host, within `timeout`: the system
/// resolver's own retries (5 s per try and name server by default) could
/// otherwise hold a run, or a reconnect, far past the timeout asked for.
/// A lookup that has not answered in time is left to finish on its thread.
fn resolve(portal: &Portal, timeout: Duration) -> Result<Vec<SocketAddr>, InitiatorError> {
    let failed = |detail: String| InitiatorError::Resolve { host: portal.host.clone(), detail };
    if let Ok(ip) = portal.host.parse::<std::net::IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, portal.port)]);
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let (host, port) = (portal.host.clone(), portal.port);
    std::thread::Builder::new()
        .name("iscsi-resolve".into())
        .spawn(move || {
            let r = (host.as_str(), port).to_socket_addrs().map(|a| a.collect::<Vec<_>>());
            let _ = tx.send(r);
        })
        .map_err(|e| failed(format!("starting the lookup: {e}")))?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(addrs)) => Ok(addrs),
        Ok(Err(e)) => Err(failed(e.to_string())),
        Err(_) => Err(failed(format!("no answer from the resolver within {} s", timeout.as_secs_f64()))),
    }
}

fn remaining(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).max(Duration::from_millis(1)))
}

impl Conn {
    /// Resolves `portal` (within the timeout, and at least RESOLVE_MIN)
    /// and connects to the first address that answers, all addresses
    /// within `timeout`.
    pub fn connect(portal: &Portal, timeout: Duration, log_pdus: bool) -> Result<Conn, InitiatorError> {
        let addrs = resolve(portal, timeout.max(RESOLVE_MIN))?;
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no addresses");
        for a in &addrs {
            let Some(left) = remaining(deadline) else {
                last = format!("no answer within {} s", timeout.as_secs());
                break;
            };
            match TcpStream::connect_timeout(a, left) {
                Ok(stream) => {
                    stream.set_nodelay(true).ok();
                    return Ok(Conn {
                        stream,
                        label: portal.to_string(),
                        limits: DecodeLimits::default(),
                        send_digests: Digests::default(),
                        log_pdus,
                        first: true,
                    });
                }
                Err(e) => last = e.to_string(),
            }
        }
        Err(InitiatorError::Connect { addr: portal.to_string(), detail: last })
    }

    pub fn transport_error(&self, detail: impl std::fmt::Display) -> InitiatorError {
        InitiatorError::Transport { peer: self.label.clone(), detail: detail.to_string() }
    }

    pub fn send(&mut self, pdu: &Pdu, deadline: Instant) -> Result<(), InitiatorError> {
        if self.log_pdus {
            tracing::debug!("pdu {} <- {}", self.label, describe(pdu));
        }
        let bytes = encode(pdu, self.send_digests);
        let t = remaining(deadline).ok_or_else(|| self.transport_error("timed out sending"))?;
        self.stream.set_write_timeout(Some(t)).map_err(|e| self.transport_error(e))?;
        self.stream.write_all(&bytes).map_err(|e| self.transport_error(format!("sending: {e}")))
    }

    fn read_exact_by(&mut self, buf: &mut [u8], deadline: Instant) -> Result<(), RecvError> {
        let mut got = 0;
        while got < buf.len() {
            let t = remaining(deadline).ok_or(RecvError::Timeout)?;
            self.stream.set_read_timeout(Some(t)).map_err(|e| RecvError::Failed(e.to_string()))?;
            match self.stream.read(&mut buf[got..]) {
                Ok(0) => return Err(RecvError::Failed("the target closed the connection".into())),
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(RecvError::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(RecvError::Failed(e.to_string())),
            }
        }
        Ok(())
    }

    /// Reads one PDU by `deadline`; its data length is checked against
    /// our limit before the data is read.
    pub fn recv(&mut self, deadline: Instant) -> Result<Pdu, RecvError> {
        let mut head = [0u8; BHS_LEN];
        self.read_exact_by(&mut head, deadline)?;
        if std::mem::replace(&mut self.first, false) {
            if let Some(why) = not_iscsi(&head) {
                return Err(RecvError::Failed(why));
            }
        }
        let total = frame_len(&Bhs(head), &self.limits).map_err(|e| RecvError::Failed(e.to_string()))?;
        let mut buf = vec![0u8; total];
        buf[..BHS_LEN].copy_from_slice(&head);
        self.read_exact_by(&mut buf[BHS_LEN..], deadline)?;
        match decode(&buf, &self.limits) {
            Ok(Some((pdu, _))) => {
                if self.log_pdus {
                    tracing::debug!("pdu {} -> {}", self.label, describe(&pdu));
                }
                Ok(pdu)
            }
            Ok(None) => Err(RecvError::Failed("incomplete PDU".into())),
            Err(e) => Err(RecvError::Failed(e.to_string())),
        }
    }

    /// `recv` with errors as InitiatorError; `what` names the awaited answer.
    pub fn recv_or(&mut self, deadline: Instant, timeout_secs: u64, what: &str) -> Result<Pdu, InitiatorError> {
        self.recv(deadline).map_err(|e| match e {
            RecvError::Timeout => InitiatorError::Transport {
                peer: self.label.clone(),
                detail: format!("no {what} within {timeout_secs} s"),
            },
            RecvError::Failed(d) => self.transport_error(format!("waiting for {what}: {d}")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(bytes: &[u8]) -> [u8; BHS_LEN] {
        let mut h = [0u8; BHS_LEN];
        h[..bytes.len()].copy_from_slice(bytes);
        h
    }

    #[test]
    fn a_peer_that_answers_text_is_said_not_to_speak_iscsi() {
        let http = head(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n");
        let e = not_iscsi(&http).unwrap();
        assert!(e.contains("does not speak iSCSI") && e.contains("\"HTTP/1.1 400 Bad Request\""), "{e}");
        let e = not_iscsi(&head(&[0x55, 0x01, 0x02])).unwrap();
        assert!(e.contains("first byte is 0x55"), "{e}");
        // Text whose first byte masks to a Login Response opcode ('c' = 0x63).
        assert!(not_iscsi(&head(b"cannot serve you")).is_some());
        assert_eq!(not_iscsi(&head(&[0x23])), None, "Login Response");
        assert_eq!(not_iscsi(&head(&[0x3f])), None, "Reject");
    }
}
