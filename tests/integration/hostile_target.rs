//! A hostile iSCSI target for the initiator's tests: it logs anyone in,
//! serves a small disk (INQUIRY, READ CAPACITY, READ(16)) and then
//! misbehaves the way an attacker or a broken target would. It is the
//! adversary, not a mock of tgtd: well-behaved targets in these tests are
//! real tgtd processes. Bytes are built by hand so that the misbehaviour
//! can be anything the wire allows.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Misbehaviour {
    /// Every login response has the C bit set and no text, forever.
    LoginContinuesForever,
    /// A discovery session's SendTargets answer: F=0, no text, forever.
    DiscoveryContinuesForever,
    /// READ(16) is never answered; NOP-Out pings are (promptly).
    ReadsNeverComplete,
    /// MaxCmdSN stays below the next CmdSN in every PDU (the window
    /// never opens); pings are answered.
    WindowNeverOpens,
    /// READ(16) is answered with NOP-In pings carrying 256 KiB each, as
    /// fast as the initiator takes them, forever.
    PingFlood,
    /// WRITE(16) is answered with an R2T for the whole write, again and
    /// again after each Data-Out sequence, forever.
    R2tRepeat,
    /// READ(16) is answered with empty Data-In PDUs (no status), forever.
    EmptyDataInForever,
    /// WRITE(16) is answered with R2Ts for 0 bytes, forever.
    EmptyR2tForever,
    /// READ CAPACITY(16) reports this last LBA and block size.
    Capacity { last_lba: u64, block_size: u32 },
    /// SendTargets announces `count` targets, each with `addresses`
    /// addresses where nothing listens (this address, port 3261).
    ManyTargets { count: usize, addresses: usize },
}

pub struct HostileTarget {
    pub addr: String,
    /// Connections accepted.
    pub connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

pub const TARGET: &str = "iqn.2024-01.test.hostile:disk";

impl HostileTarget {
    /// Listens on a free 127.x.y.z address, port 3260.
    pub fn start(how: Misbehaviour) -> HostileTarget {
        let seed = std::process::id().wrapping_mul(2_654_435_761);
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let listener = (0..200)
            .find_map(|i| {
                let n = seed.wrapping_add((NEXT.fetch_add(1, Ordering::Relaxed) + i) as u32 * 7919);
                let ip = format!("127.{}.{}.{}", 230 + n % 20, (n >> 8) % 250 + 1, (n >> 16) % 250 + 1);
                TcpListener::bind(format!("{ip}:3260")).ok()
            })
            .expect("no free loopback address for the hostile target");
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let stop = Arc::new(AtomicBool::new(false));
        let connections = Arc::new(AtomicUsize::new(0));
        let (s, c) = (Arc::clone(&stop), Arc::clone(&connections));
        let thread = std::thread::spawn(move || {
            while !s.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((conn, _)) => {
                        c.fetch_add(1, Ordering::Relaxed);
                        let s = Arc::clone(&s);
                        std::thread::spawn(move || {
                            let _ = serve(conn, how, &s);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        HostileTarget { addr, connections, stop, thread: Some(thread) }
    }

    pub fn portal_url(&self) -> String {
        format!("iscsi://{}", self.addr)
    }

    pub fn lun_url(&self) -> String {
        format!("iscsi://{}/{TARGET}/1", self.addr)
    }
}

impl Drop for HostileTarget {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Pdu {
    bhs: [u8; 48],
    data: Vec<u8>,
}

impl Pdu {
    fn opcode(&self) -> u8 {
        self.bhs[0] & 0x3f
    }
    fn u32_at(&self, at: usize) -> u32 {
        u32::from_be_bytes(self.bhs[at..at + 4].try_into().unwrap())
    }
    fn itt(&self) -> u32 {
        self.u32_at(16)
    }
}

fn recv(s: &mut TcpStream, stop: &AtomicBool) -> std::io::Result<Pdu> {
    let mut bhs = [0u8; 48];
    read_full(s, &mut bhs, stop)?;
    let ahs = bhs[4] as usize * 4;
    let dlen = u32::from_be_bytes([0, bhs[5], bhs[6], bhs[7]]) as usize;
    let mut rest = vec![0u8; ahs + dlen.div_ceil(4) * 4];
    read_full(s, &mut rest, stop)?;
    Ok(Pdu { bhs, data: rest[ahs..ahs + dlen].to_vec() })
}

fn read_full(s: &mut TcpStream, buf: &mut [u8], stop: &AtomicBool) -> std::io::Result<()> {
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    let mut got = 0;
    while got < buf.len() {
        if stop.load(Ordering::Relaxed) {
            return Err(std::io::ErrorKind::Interrupted.into());
        }
        match s.read(&mut buf[got..]) {
            Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// A target PDU: opcode, flags, bytes 2-3, ITT, and the words at 20..48.
struct Out {
    bhs: [u8; 48],
    data: Vec<u8>,
}

impl Out {
    fn new(op: u8, flags: u8, itt: u32) -> Out {
        let mut bhs = [0u8; 48];
        bhs[0] = op;
        bhs[1] = flags;
        bhs[16..20].copy_from_slice(&itt.to_be_bytes());
        Out { bhs, data: Vec::new() }
    }
    fn word(mut self, at: usize, v: u32) -> Out {
        self.bhs[at..at + 4].copy_from_slice(&v.to_be_bytes());
        self
    }
    fn byte(mut self, at: usize, v: u8) -> Out {
        self.bhs[at] = v;
        self
    }
    fn data(mut self, d: Vec<u8>) -> Out {
        self.data = d;
        self
    }
    fn send(mut self, s: &mut TcpStream) -> std::io::Result<()> {
        let n = self.data.len() as u32;
        self.bhs[5..8].copy_from_slice(&n.to_be_bytes()[1..]);
        let mut all = self.bhs.to_vec();
        all.extend_from_slice(&self.data);
        all.resize(48 + self.data.len().div_ceil(4) * 4, 0);
        s.write_all(&all)
    }
}

fn keys(text: &[(&str, &str)]) -> Vec<u8> {
    let mut p = santools::iscsi::text::TextParams::new();
    for (k, v) in text {
        p.push(k, *v);
    }
    p.to_bytes()
}

/// The keys of a login request, answered with plain values.
fn answer_operational(req: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for item in req.split(|b| *b == 0).filter(|i| !i.is_empty()) {
        let t = String::from_utf8_lossy(item);
        let Some((k, _)) = t.split_once('=') else { continue };
        let v = match k {
            "HeaderDigest" | "DataDigest" => "None",
            "MaxRecvDataSegmentLength" => "8192",
            "InitialR2T" => "Yes",
            "ImmediateData" | "DataPDUInOrder" | "DataSequenceInOrder" => "Yes",
            "MaxBurstLength" => "262144",
            "FirstBurstLength" => "65536",
            "MaxOutstandingR2T" | "MaxConnections" => "1",
            "DefaultTime2Wait" => "2",
            "DefaultTime2Retain" | "ErrorRecoveryLevel" => "0",
            "IFMarker" | "OFMarker" => "No",
            _ => continue,
        };
        out.extend_from_slice(format!("{k}={v}").as_bytes());
        out.push(0);
    }
    out
}

fn serve(mut s: TcpStream, how: Misbehaviour, stop: &AtomicBool) -> std::io::Result<()> {
    let mut statsn = 1u32;
    let closed = how == Misbehaviour::WindowNeverOpens;
    let mut discovery = false;
    // Login.
    loop {
        let p = recv(&mut s, stop)?;
        if p.opcode() != 0x03 {
            return Ok(());
        }
        let csg = (p.bhs[1] >> 2) & 3;
        let text = String::from_utf8_lossy(&p.data).into_owned();
        discovery |= text.contains("SessionType=Discovery");
        let rsp = |flags: u8, data: Vec<u8>, statsn: u32| {
            let mut o =
                Out::new(0x23, flags, p.itt()).word(24, statsn).word(28, 1).word(32, if closed { 0 } else { 32 });
            o.bhs[8..14].copy_from_slice(&p.bhs[8..14]);
            o.data(data)
        };
        if how == Misbehaviour::LoginContinuesForever {
            rsp(0x40 | (csg << 2) | 1, Vec::new(), statsn).send(&mut s)?;
            continue;
        }
        statsn += 1;
        if csg == 0 {
            rsp(0x80 | 1, keys(&[("AuthMethod", "None"), ("TargetPortalGroupTag", "1")]), statsn - 1).send(&mut s)?;
        } else {
            rsp(0x80 | (1 << 2) | 3, answer_operational(&p.data), statsn - 1).send(&mut s)?;
            break;
        }
    }
    let mut exp_cmdsn = 1u32;
    let mut ttt = 1u32;
    loop {
        let p = recv(&mut s, stop)?;
        let itt = p.itt();
        if p.bhs[0] & 0x40 == 0 {
            exp_cmdsn = p.u32_at(24).wrapping_add(1);
        }
        let max = if closed { exp_cmdsn.wrapping_sub(1) } else { exp_cmdsn.wrapping_add(32) };
        let sn = |o: Out, statsn: u32| o.word(24, statsn).word(28, exp_cmdsn).word(32, max);
        match p.opcode() {
            0x00 if itt != 0xffff_ffff => {
                sn(Out::new(0x20, 0x80, itt).word(20, 0xffff_ffff), statsn).data(p.data.clone()).send(&mut s)?;
                statsn += 1;
            }
            0x04 if discovery => {
                if how == Misbehaviour::DiscoveryContinuesForever {
                    ttt += 1;
                    sn(Out::new(0x24, 0, itt).word(20, ttt), statsn).send(&mut s)?;
                } else if let Misbehaviour::ManyTargets { count, addresses } = how {
                    let ip = s.local_addr()?.ip();
                    let dead = format!("{ip}:3261,1");
                    let mut p = santools::iscsi::text::TextParams::new();
                    for i in 0..count {
                        p.push("TargetName", format!("{TARGET}{i}"));
                        for _ in 0..addresses {
                            p.push("TargetAddress", dead.as_str());
                        }
                    }
                    sn(Out::new(0x24, 0x80, itt).word(20, 0xffff_ffff), statsn).data(p.to_bytes()).send(&mut s)?;
                } else {
                    let d = keys(&[("TargetName", TARGET)]);
                    sn(Out::new(0x24, 0x80, itt).word(20, 0xffff_ffff), statsn).data(d).send(&mut s)?;
                }
                statsn += 1;
            }
            0x06 => {
                sn(Out::new(0x26, 0x80, itt), statsn).send(&mut s)?;
                return Ok(());
            }
            0x01 => {
                let cdb = &p.bhs[32..48];
                let edtl = p.u32_at(20) as usize;
                let data_in = |d: Vec<u8>, statsn: u32| {
                    let mut d = d;
                    d.truncate(edtl);
                    sn(Out::new(0x25, 0x81, itt).word(20, 0xffff_ffff), statsn).data(d)
                };
                let check = |asc: u8, statsn: u32| {
                    // SenseLength 18, fixed format, ILLEGAL REQUEST.
                    let sense = vec![0u8, 18, 0x70, 0, 5, 0, 0, 0, 0, 10, 0, 0, 0, 0, asc, 0, 0, 0, 0, 0];
                    sn(Out::new(0x21, 0x80, itt).byte(3, 2), statsn).data(sense)
                };
                match cdb[0] {
                    0x12 if cdb[1] & 1 == 0 => {
                        let mut inq = vec![0u8, 0, 5, 2, 91, 0, 0, 0];
                        inq.extend_from_slice(b"HOSTILE DISK            0001");
                        inq.resize(96, 0);
                        data_in(inq, statsn).send(&mut s)?;
                    }
                    0x00 | 0x35 => sn(Out::new(0x21, 0x80, itt), statsn).send(&mut s)?,
                    0x9e => {
                        let (last, bs) = match how {
                            Misbehaviour::Capacity { last_lba, block_size } => (last_lba, block_size),
                            _ => (2047, 512),
                        };
                        let mut cap = last.to_be_bytes().to_vec();
                        cap.extend_from_slice(&bs.to_be_bytes());
                        cap.resize(32, 0);
                        data_in(cap, statsn).send(&mut s)?;
                    }
                    0x1a => data_in(vec![3, 0, 0, 0], statsn).send(&mut s)?,
                    0x88 if how == Misbehaviour::ReadsNeverComplete => continue,
                    0x88 if how == Misbehaviour::PingFlood => {
                        for ttt in 1.. {
                            let o = Out::new(0x20, 0x80, 0xffff_ffff).word(20, ttt);
                            sn(o, statsn).data(vec![0x50; 256 << 10]).send(&mut s)?;
                        }
                    }
                    0x88 if how == Misbehaviour::EmptyDataInForever => loop {
                        sn(Out::new(0x25, 0, itt).word(20, 0xffff_ffff), 0).send(&mut s)?;
                        std::thread::sleep(Duration::from_millis(1));
                    },
                    0x8a if how == Misbehaviour::EmptyR2tForever => {
                        for ttt in 1u32.. {
                            sn(Out::new(0x31, 0x80, itt).word(20, ttt), statsn).send(&mut s)?;
                            std::thread::sleep(Duration::from_millis(1));
                        }
                    }
                    0x8a if how == Misbehaviour::R2tRepeat => {
                        for ttt in 1u32.. {
                            sn(Out::new(0x31, 0x80, itt).word(20, ttt), statsn).word(44, edtl as u32).send(&mut s)?;
                            // Take the Data-Out sequence, then ask again.
                            loop {
                                let d = recv(&mut s, stop)?;
                                if d.opcode() == 0x05 && d.bhs[1] & 0x80 != 0 && d.u32_at(20) == ttt {
                                    break;
                                }
                            }
                        }
                    }
                    0x88 => {
                        // Zeros, in 8 KiB Data-In PDUs, status in the last.
                        let mut off = 0;
                        while off < edtl {
                            let n = (edtl - off).min(8192);
                            let last = off + n == edtl;
                            let o = sn(
                                Out::new(0x25, if last { 0x81 } else { 0 }, itt).word(20, 0xffff_ffff),
                                if last { statsn } else { 0 },
                            )
                            .word(40, off as u32)
                            .data(vec![0u8; n]);
                            o.send(&mut s)?;
                            off += n;
                        }
                    }
                    _ => check(0x24, statsn).send(&mut s)?,
                }
                statsn += 1;
            }
            _ => {}
        }
    }
}
