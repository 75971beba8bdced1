//! Misbehaving target nodes for the portal tests: a small iSCSI target on a
//! loopback address that logs anyone in and then answers SendTargets the
//! way an adversary would (never ending, never answering, hostile names,
//! thousands of targets). It is the attacker, not a mock of tgtd: the
//! well-behaved nodes in these tests are real tgtd processes.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use santools::iscsi::bhs::Opcode;
use santools::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use santools::iscsi::logout::{LogoutRequest, LogoutResponse};
use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests, Pdu};
use santools::iscsi::text::TextParams;
use santools::iscsi::text_pdu::{TextRequest, TextResponse};

#[derive(Clone)]
pub enum Behaviour {
    /// Answers SendTargets with these TargetNames (raw: they may be
    /// hostile), each with the node's own address.
    Targets(Vec<String>),
    /// Like Targets, after a pause before each answer.
    Slow(Duration, Vec<String>),
    /// Answers every Text Request with F=0 and a fresh TTT, forever.
    EndlessContinuation,
    /// Accepts connections and never sends a byte.
    Silent,
}

pub struct FakeNode {
    pub addr: String,
    /// Discovery logins completed (upstream sessions the portal opened).
    pub sessions: Arc<AtomicUsize>,
    /// Text Requests received.
    pub text_requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

struct Counters {
    sessions: Arc<AtomicUsize>,
    text_requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

fn read_pdu(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Pdu> {
    let limits = DecodeLimits { max_data_segment: 1 << 20, digests: Digests::default() };
    let mut chunk = [0u8; 8192];
    loop {
        match decode(buf, &limits) {
            Ok(Some((p, n))) => {
                buf.drain(..n);
                return Some(p);
            }
            Ok(None) => {}
            Err(_) => return None,
        }
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn serve(mut s: TcpStream, behaviour: Behaviour, addr: String, c: Arc<Counters>) {
    if matches!(behaviour, Behaviour::Silent) {
        while !c.stop.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return;
    }
    let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
    let mut buf = Vec::new();
    let mut statsn = 1u32;
    let mut ttt = 1u32;
    // The rest of a long answer, sent 8 KiB at a time as asked for.
    let mut rest: Vec<u8> = Vec::new();
    while let Some(pdu) = read_pdu(&mut s, &mut buf) {
        if c.stop.load(Ordering::Relaxed) {
            return;
        }
        let out = match pdu.bhs.opcode() {
            Some(Opcode::LoginRequest) => {
                let Ok(req) = LoginRequest::from_pdu(&pdu) else { return };
                let mut rsp = LoginResponse::answering(&req, LoginStatus::SUCCESS, Vec::new());
                rsp.transit = req.transit;
                rsp.nsg = if req.transit { req.nsg } else { req.csg };
                rsp.statsn = statsn;
                if req.transit && req.nsg == Stage::FullFeature {
                    rsp.tsih = 1;
                    c.sessions.fetch_add(1, Ordering::Relaxed);
                }
                rsp.to_pdu()
            }
            Some(Opcode::TextRequest) => {
                c.text_requests.fetch_add(1, Ordering::Relaxed);
                let Ok(req) = TextRequest::from_pdu(&pdu) else { return };
                let mut rsp = TextResponse {
                    fin: true,
                    cont: false,
                    lun: [0; 8],
                    itt: req.itt,
                    ttt: 0xffff_ffff,
                    statsn,
                    exp_cmdsn: req.cmdsn,
                    max_cmdsn: req.cmdsn + 1,
                    data: Vec::new(),
                };
                match &behaviour {
                    Behaviour::EndlessContinuation => {
                        rsp.fin = false;
                        ttt += 1;
                        rsp.ttt = ttt;
                    }
                    Behaviour::Targets(names) | Behaviour::Slow(_, names) => {
                        if req.ttt == 0xffff_ffff {
                            if let Behaviour::Slow(d, _) = &behaviour {
                                std::thread::sleep(*d);
                            }
                            let mut t = TextParams::new();
                            for n in names {
                                t.push("TargetName", n.clone());
                                t.push("TargetAddress", format!("{addr},1"));
                            }
                            rest = t.to_bytes();
                        }
                        let (end, cont) = santools::iscsi::text::next_chunk(&rest, 0, 8192);
                        rsp.data = rest.drain(..end.min(rest.len())).collect();
                        if !rest.is_empty() {
                            rsp.fin = false;
                            rsp.cont = cont;
                            ttt += 1;
                            rsp.ttt = ttt;
                        }
                    }
                    Behaviour::Silent => unreachable!(),
                }
                rsp.to_pdu()
            }
            Some(Opcode::LogoutRequest) => {
                let Ok(req) = LogoutRequest::from_pdu(&pdu) else { return };
                let rsp =
                    LogoutResponse { response: 0, itt: req.itt, statsn, exp_cmdsn: req.cmdsn, max_cmdsn: req.cmdsn };
                let _ = s.write_all(&encode(&rsp.to_pdu(), Digests::default()));
                return;
            }
            _ => return,
        };
        statsn += 1;
        if s.write_all(&encode(&out, Digests::default())).is_err() {
            return;
        }
    }
}

impl FakeNode {
    /// Listens on `addr` (ip:port) and serves every connection on its own
    /// thread with `behaviour`.
    pub fn start(addr: &str, behaviour: Behaviour) -> FakeNode {
        let listener = TcpListener::bind(addr).unwrap_or_else(|e| panic!("fake node on {addr}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let c = Arc::new(Counters { sessions: Arc::default(), text_requests: Arc::default(), stop: Arc::default() });
        let (sessions, text_requests, stop) = (c.sessions.clone(), c.text_requests.clone(), c.stop.clone());
        let a = addr.to_string();
        let thread = std::thread::spawn(move || {
            while !c.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        let (b, a, c) = (behaviour.clone(), a.clone(), Arc::clone(&c));
                        std::thread::spawn(move || serve(s, b, a, c));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FakeNode { addr: addr.to_string(), sessions, text_requests, stop, thread: Some(thread) }
    }

    pub fn sessions(&self) -> usize {
        self.sessions.load(Ordering::Relaxed)
    }

    pub fn text_requests(&self) -> usize {
        self.text_requests.load(Ordering::Relaxed)
    }
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A TCP forwarder: whatever connects to `listen` is connected to
/// `target` (a node address that is really the portal itself, which the
/// configuration check cannot see).
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Forwarder {
    pub fn start(listen: &str, target: &str) -> Forwarder {
        let listener = TcpListener::bind(listen).unwrap_or_else(|e| panic!("forwarder on {listen}: {e}"));
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (st, target) = (Arc::clone(&stop), target.to_string());
        let thread = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((a, _)) => {
                        let _ = a.set_nonblocking(false);
                        let Ok(b) = TcpStream::connect(&target) else { continue };
                        let (mut a2, mut b2) = (a.try_clone().unwrap(), b.try_clone().unwrap());
                        let (mut a, mut b) = (a, b);
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut a, &mut b);
                            let _ = b.shutdown(std::net::Shutdown::Both);
                        });
                        std::thread::spawn(move || {
                            let _ = std::io::copy(&mut b2, &mut a2);
                            let _ = a2.shutdown(std::net::Shutdown::Both);
                        });
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Forwarder { stop, thread: Some(thread) }
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
