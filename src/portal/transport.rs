//! PDUs over a TCP stream, with a deadline on every read and write so a
//! slow or silent peer costs at most the caller's timeout. Used by both
//! sides: the portal's connections and its discovery client.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::limits::LOGIN_PDU_DATA;
use super::memory::ByteBudget;

use crate::iscsi::bhs::{Bhs, BHS_LEN};
use crate::iscsi::pdu::{decode, encode, frame_len, DecodeError, DecodeLimits, Digests, Pdu};

#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("peer closed the connection")]
    Closed,
    #[error("peer closed the connection in the middle of a PDU ({got} of {want} bytes)")]
    Truncated { got: usize, want: usize },
    #[error("timed out waiting for the peer")]
    Timeout,
    #[error("a {len}-byte PDU does not fit the portal's buffer budget now")]
    NoBufferSpace { len: usize },
    #[error("malformed PDU: {0}")]
    Malformed(#[from] DecodeError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A connection carrying PDUs.
pub struct PduStream {
    stream: TcpStream,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// What we accept (our MaxRecvDataSegmentLength, digests in effect).
    pub limits: DecodeLimits,
    /// Digests on what we send.
    pub send_digests: Digests,
    /// Log every PDU at debug level (`-d`).
    pub log_pdus: bool,
    /// Where PDUs larger than a login PDU get their buffer bytes (None:
    /// unbudgeted, for the portal's own client).
    pub budget: Option<Arc<ByteBudget>>,
}

/// Frames up to this size are read without asking the budget.
const SMALL_FRAME: usize = 48 + 1020 + 8 + LOGIN_PDU_DATA as usize;

fn remaining(deadline: Instant) -> Result<Duration, TransportError> {
    let now = Instant::now();
    if now >= deadline {
        return Err(TransportError::Timeout);
    }
    Ok((deadline - now).max(Duration::from_millis(1)))
}

/// A one-line rendering of a PDU for `-d` logs: opcode, flags, ITT, and
/// the text data with NULs shown as `|`.
pub fn describe(pdu: &Pdu) -> String {
    let op = pdu.bhs.opcode().map_or_else(|| format!("0x{:02x}", pdu.bhs.opcode_raw()), |o| format!("{o:?}"));
    let mut s = format!("{op} flags=0x{:02x} itt=0x{:08x} dlen={}", pdu.bhs.flags(), pdu.bhs.itt(), pdu.data.len());
    if !pdu.data.is_empty() && pdu.data.iter().all(|&b| b == 0 || (0x20..0x7f).contains(&b)) {
        let text: String = pdu.data.iter().take(512).map(|&b| if b == 0 { '|' } else { b as char }).collect();
        s.push_str(&format!(" [{text}]"));
    }
    s
}

impl PduStream {
    pub fn new(stream: TcpStream, limits: DecodeLimits) -> io::Result<PduStream> {
        stream.set_nodelay(true)?;
        Ok(PduStream {
            peer: stream.peer_addr()?,
            local: stream.local_addr()?,
            stream,
            limits,
            send_digests: Digests::default(),
            log_pdus: false,
            budget: None,
        })
    }

    /// Connects with a timeout.
    pub fn connect(addr: SocketAddr, timeout: Duration, limits: DecodeLimits) -> io::Result<PduStream> {
        let s = TcpStream::connect_timeout(&addr, timeout)?;
        PduStream::new(s, limits)
    }

    fn read_exact_by(
        &mut self,
        buf: &mut [u8],
        deadline: Instant,
        at_boundary: bool,
        want_total: usize,
        already: usize,
    ) -> Result<(), TransportError> {
        let mut got = 0;
        while got < buf.len() {
            self.stream.set_read_timeout(Some(remaining(deadline)?))?;
            match self.stream.read(&mut buf[got..]) {
                Ok(0) if at_boundary && got == 0 => return Err(TransportError::Closed),
                Ok(0) => return Err(TransportError::Truncated { got: already + got, want: want_total }),
                Ok(n) => got += n,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Err(TransportError::Timeout)
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
    }

    /// Reads one whole PDU by `deadline`. The data segment length is checked
    /// against our limit before any of the data is read.
    pub fn read_pdu(&mut self, deadline: Instant) -> Result<Pdu, TransportError> {
        let mut head = [0u8; BHS_LEN];
        self.read_exact_by(&mut head, deadline, true, BHS_LEN, 0)?;
        let total = frame_len(&Bhs(head), &self.limits)?;
        // The frame buffer and the decoded copy of its data.
        let _held = match &self.budget {
            Some(b) if total > SMALL_FRAME => {
                Some(b.reserve(2 * total).ok_or(TransportError::NoBufferSpace { len: total })?)
            }
            _ => None,
        };
        let mut buf = vec![0u8; total];
        buf[..BHS_LEN].copy_from_slice(&head);
        self.read_exact_by(&mut buf[BHS_LEN..], deadline, false, total, BHS_LEN)?;
        match decode(&buf, &self.limits)? {
            Some((pdu, _)) => {
                if self.log_pdus {
                    tracing::debug!("pdu {} -> {}", self.peer.ip(), describe(&pdu));
                }
                Ok(pdu)
            }
            None => Err(TransportError::Truncated { got: buf.len(), want: total }),
        }
    }

    /// Writes one PDU by `deadline`.
    pub fn write_pdu(&mut self, pdu: &Pdu, deadline: Instant) -> Result<(), TransportError> {
        if self.log_pdus {
            tracing::debug!("pdu {} <- {}", self.peer.ip(), describe(pdu));
        }
        let bytes = encode(pdu, self.send_digests);
        self.stream.set_write_timeout(Some(remaining(deadline)?))?;
        match self.stream.write_all(&bytes) {
            Ok(()) => Ok(()),
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                Err(TransportError::Timeout)
            }
            Err(e) => Err(e.into()),
        }
    }

    pub fn shutdown(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Both);
    }
}
