//! One initiator connection: the login phase, then either a redirect
//! (normal session: answer 0x0101 with a node's portal and close) or a
//! discovery session (negotiate, answer SendTargets, NOP, Logout).
//! Every read has a deadline; anything malformed ends the connection, never
//! the daemon.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::access_log::{access, plain_ip, Esc};
use super::limits::{
    LOGIN_PDU_DATA, MAX_ANSWER_TARGETS, MAX_LOGGED_TARGETS, MAX_LOGIN_ROUNDS, MAX_LOGIN_TEXT, MAX_SEND_TARGETS_KEYS,
    MAX_TEXT_KEYS, MAX_TEXT_REQUEST, MAX_TEXT_RESPONSE,
};
use super::memory::Reservation;
use super::negotiation::{negotiate_operational, negotiate_security, Negotiated};
use super::node_budget::Priority;
use super::nodes::{deadline_after, NodeAnswer, NodeQuery};
use super::redirect::{RedirectDecision, RedirectRequest};
use super::server::Portal;
use super::throttle::{throttled, Throttle};
use super::transport::{PduStream, TransportError};
use super::upstream::{is_own_isid, HOPS_KEY, MAX_HOPS};
use crate::config::PortalConfig;
use crate::iscsi::bhs::Opcode;
use crate::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use crate::iscsi::logout::{LogoutRequest, LogoutResponse};
use crate::iscsi::name::is_valid_name;
use crate::iscsi::nop::{NopIn, NopOut};
use crate::iscsi::pdu::{DecodeLimits, Digests, Pdu};
use crate::iscsi::reject::{Reject, RejectReason};
use crate::iscsi::target_address::TargetAddress;
use crate::iscsi::text::{next_chunk, TextAssembler, TextParams};
use crate::iscsi::text_pdu::{TextRequest, TextResponse};
use crate::iscsi::RESERVED_TAG;

/// Commands the initiator may have outstanding (discovery needs 1).
const CMD_WINDOW: u32 = 31;
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys negotiated in the operational stage (anything but security keys
/// and the initiator's declarations).
fn is_operational_key(k: &str) -> bool {
    !matches!(k, "AuthMethod" | "InitiatorName" | "InitiatorAlias" | "SessionType" | "TargetName" | HOPS_KEY)
        && !k.starts_with("CHAP_")
}

/// The rest of a long answer, sent as the initiator asks for it by TTT.
/// It holds its bytes from the connection budget.
struct PendingAnswer {
    ttt: u32,
    data: Vec<u8>,
    pos: usize,
    chunk: usize,
    _held: Reservation,
}

/// What a text request gets.
enum TextAnswer {
    /// An answer (encoded keys), with the budget bytes it holds.
    Keys(Vec<u8>, Reservation),
    /// Refused with a Reject PDU, after which the connection ends.
    Reject(RejectReason, String),
}

/// Why a connection ended early.
#[derive(Debug, thiserror::Error)]
enum End {
    #[error(transparent)]
    Transport(#[from] TransportError),
    #[error("protocol error: {0}")]
    Protocol(String),
    /// A login refused with a status (already answered).
    #[error("login refused: {0}")]
    Refused(LoginStatus),
    /// A PDU answered with a Reject (already sent and logged).
    #[error("rejected")]
    Rejected,
}

struct Session<'a> {
    s: PduStream,
    portal: &'a Portal,
    cfg: Arc<PortalConfig>,
    ip: IpAddr,
    statsn: u32,
    exp_cmdsn: u32,
    next_ttt: u32,
    /// Portals the initiator's discovery login already went through.
    hops: u32,
}

/// Warnings a client can trigger at will are logged at most once a minute
/// each (with a count of the rest): every such connection would otherwise
/// add a line.
static UNSERVED: Mutex<Throttle> = Mutex::new(Throttle::new(Duration::from_secs(60)));
static LOOPS: Mutex<Throttle> = Mutex::new(Throttle::new(Duration::from_secs(60)));

fn more(earlier: Option<u64>) -> String {
    earlier.map(|n| format!(" ({n} more not logged in the last minute)")).unwrap_or_default()
}

/// A connection reached an address no discovery portal has (a wildcard
/// listen address).
fn unserved_address(local: IpAddr) {
    throttled(&UNSERVED, |earlier| {
        tracing::warn!("no discovery portal is configured for local address {local}: refused (0x0300){}", more(earlier))
    });
}

/// Serves one accepted connection to its end.
pub fn serve(stream: std::net::TcpStream, portal: &Portal) {
    let cfg = portal.config();
    // RFC 7143: MaxRecvDataSegmentLength is 8192 until the login ends.
    let limits = DecodeLimits { max_data_segment: LOGIN_PDU_DATA, digests: Digests::default() };
    let mut s = match PduStream::new(stream, limits) {
        Ok(s) => s,
        Err(e) => {
            tracing::debug!("connection lost before it started: {e}");
            return;
        }
    };
    let ip = plain_ip(s.peer.ip());
    access(ip, format_args!("connect to {}", plain_ip(s.local.ip())));
    s.log_pdus = portal.log_pdus;
    s.budget = Some(Arc::clone(&portal.buffers));
    let mut session = Session { s, portal, cfg, ip, statsn: 0, exp_cmdsn: 0, next_ttt: 1, hops: 0 };
    match session.run() {
        Ok(()) | Err(End::Transport(TransportError::Closed)) | Err(End::Refused(_)) | Err(End::Rejected) => {}
        Err(End::Transport(TransportError::Timeout)) => access(ip, format_args!("timed out, dropping connection")),
        Err(e) => access(ip, format_args!("dropping connection: {e}")),
    }
    session.s.shutdown();
    access(ip, format_args!("disconnected"));
}

impl Session<'_> {
    fn write(&mut self, pdu: &Pdu) -> Result<(), End> {
        Ok(self.s.write_pdu(pdu, deadline_after(WRITE_TIMEOUT))?)
    }

    fn next_statsn(&mut self) -> u32 {
        let s = self.statsn;
        self.statsn = self.statsn.wrapping_add(1);
        s
    }

    fn login_response(&mut self, req: &LoginRequest, status: LoginStatus, keys: &TextParams) -> LoginResponse {
        let mut rsp = LoginResponse::answering(req, status, keys.to_bytes());
        rsp.statsn = self.next_statsn();
        rsp.exp_cmdsn = self.exp_cmdsn;
        rsp.max_cmdsn = self.exp_cmdsn.wrapping_add(CMD_WINDOW);
        rsp
    }

    /// Answers `req` with a failure status and ends the login.
    fn refuse(&mut self, req: &LoginRequest, status: LoginStatus, keys: TextParams) -> End {
        let rsp = self.login_response(req, status, &keys);
        if let Err(e) = self.write(&rsp.to_pdu()) {
            return e;
        }
        End::Refused(status)
    }

    /// Reads one login request, assembling text sent with the C bit.
    fn read_login(&mut self, deadline: Instant) -> Result<(LoginRequest, TextParams), End> {
        let mut asm = TextAssembler::new(MAX_LOGIN_TEXT);
        loop {
            let pdu = self.s.read_pdu(deadline)?;
            if pdu.bhs.opcode() != Some(Opcode::LoginRequest) {
                return Err(End::Protocol(format!(
                    "expected a Login Request, got opcode 0x{:02x}",
                    pdu.bhs.opcode_raw()
                )));
            }
            let req = LoginRequest::from_pdu(&pdu).map_err(|e| End::Protocol(format!("login request: {e}")))?;
            match asm.push(&req.data, req.cont) {
                Ok(None) => {
                    // More text follows: acknowledge with an empty response.
                    let rsp = self.login_response(&req, LoginStatus::SUCCESS, &TextParams::new());
                    self.write(&rsp.to_pdu())?;
                }
                Ok(Some(text)) => match TextParams::parse(&text) {
                    Ok(keys) => return Ok((req, keys)),
                    Err(e) => {
                        access(self.ip, format_args!("malformed login keys: {}", Esc(&e.to_string())));
                        return Err(self.refuse(&req, LoginStatus::INITIATOR_ERROR, TextParams::new()));
                    }
                },
                Err(e) => {
                    access(self.ip, format_args!("login text: {}", Esc(&e.to_string())));
                    return Err(self.refuse(&req, LoginStatus::INITIATOR_ERROR, TextParams::new()));
                }
            }
        }
    }

    fn run(&mut self) -> Result<(), End> {
        let deadline = deadline_after(self.cfg.login_timeout());
        let (req, keys) = match self.read_login(deadline) {
            Err(End::Transport(TransportError::Timeout)) => {
                access(self.ip, format_args!("no login within {}s, dropping connection", self.cfg.login_timeout_sec));
                return Ok(());
            }
            other => other?,
        };
        self.statsn = req.exp_statsn;
        self.exp_cmdsn = req.cmdsn;
        if req.version_min > 0 {
            return Err(self.refuse(&req, LoginStatus::UNSUPPORTED_VERSION, TextParams::new()));
        }
        let Some(initiator) = keys.get("InitiatorName").map(str::to_string) else {
            access(self.ip, format_args!("login without InitiatorName refused"));
            return Err(self.refuse(&req, LoginStatus::MISSING_PARAMETER, TextParams::new()));
        };
        if !is_valid_name(&initiator) {
            access(self.ip, format_args!("invalid InitiatorName \"{}\" refused", Esc(&initiator)));
            return Err(self.refuse(&req, LoginStatus::INITIATOR_ERROR, TextParams::new()));
        }
        let session_type = keys.get("SessionType").unwrap_or("Normal").to_string();
        access(self.ip, format_args!("initiator {initiator} session {}", Esc(&session_type)));
        self.hops = keys.get(HOPS_KEY).and_then(|h| h.parse::<u32>().ok()).unwrap_or(0);
        if is_own_isid(&req.isid) || self.hops >= MAX_HOPS {
            let how = if is_own_isid(&req.isid) {
                "from this portal's own node client".to_string()
            } else {
                format!("that already went through {} portals", self.hops)
            };
            let local = plain_ip(self.s.local.ip());
            throttled(&LOOPS, |earlier| {
                tracing::warn!(
                    "loop: a discovery login {how} reached the portal at {local}: a node portal in the configuration leads back to a portal; refused (0x0300){}",
                    more(earlier)
                )
            });
            access(self.ip, format_args!("portal loop detected, refused (0x0300)"));
            return Err(self.refuse(&req, LoginStatus::TARGET_ERROR, TextParams::new()));
        }
        match session_type.as_str() {
            "Normal" => self.redirect(&req, &keys, &initiator),
            "Discovery" => self.discovery(req, keys, &initiator, deadline),
            _ => {
                access(self.ip, format_args!("session type not supported, refused (0x0209)"));
                Err(self.refuse(&req, LoginStatus::SESSION_TYPE_NOT_SUPPORTED, TextParams::new()))
            }
        }
    }

    // ---- normal session: redirect ----

    fn redirect(&mut self, req: &LoginRequest, keys: &TextParams, initiator: &str) -> Result<(), End> {
        let Some(target) = keys.get("TargetName").map(str::to_string) else {
            access(self.ip, format_args!("normal session without TargetName refused"));
            return Err(self.refuse(req, LoginStatus::MISSING_PARAMETER, TextParams::new()));
        };
        access(self.ip, format_args!("target {}", Esc(&target)));
        if !is_valid_name(&target) {
            access(self.ip, format_args!("invalid TargetName refused (0x0203)"));
            return Err(self.refuse(req, LoginStatus::NOT_FOUND, TextParams::new()));
        }
        let local = plain_ip(self.s.local.ip());
        let cfg = self.cfg.clone();
        let Some(dp) = cfg.discovery_portal_for(local) else {
            unserved_address(local);
            return Err(self.refuse(req, LoginStatus::TARGET_ERROR, TextParams::new()));
        };
        let decision = RedirectRequest {
            config: &cfg,
            portal: dp,
            store: &self.portal.store,
            nodes: &self.portal.nodes,
            initiator,
            target: &target,
            log_pdus: self.portal.log_pdus,
            wait_for_failover: true,
            stop: &self.portal.stop,
            invalidated_at: self.portal.invalidated_at(),
            client: Some(self.ip),
        }
        .decide();
        let (status, keys) = match decision {
            Ok(RedirectDecision::Redirect(addr)) => {
                access(self.ip, format_args!("redirect to {addr} REDIR_NORMAL"));
                let mut k = TextParams::new();
                k.push("TargetAddress", addr.to_string());
                (LoginStatus::TARGET_MOVED_TEMPORARILY, k)
            }
            Ok(RedirectDecision::Removed) => {
                access(self.ip, format_args!("target {target} is removed, refused (0x0204)"));
                (LoginStatus::TARGET_REMOVED, TextParams::new())
            }
            Ok(RedirectDecision::NotFound { waited, no_answer }) => {
                match no_answer {
                    Some(silent) => access(
                        self.ip,
                        format_args!(
                            "target {target}: no node answered ({silent}) after {}s, service unavailable (0x0301)",
                            waited.as_secs()
                        ),
                    ),
                    None => access(
                        self.ip,
                        format_args!(
                            "target {target} found on no node after {}s, service unavailable (0x0301)",
                            waited.as_secs()
                        ),
                    ),
                }
                (LoginStatus::SERVICE_UNAVAILABLE, TextParams::new())
            }
            Err(e) => {
                tracing::error!("{e}");
                (LoginStatus::SERVICE_UNAVAILABLE, TextParams::new())
            }
        };
        let rsp = self.login_response(req, status, &keys);
        self.write(&rsp.to_pdu())
    }

    // ---- discovery session ----

    fn discovery(
        &mut self,
        first: LoginRequest,
        first_keys: TextParams,
        initiator: &str,
        deadline: Instant,
    ) -> Result<(), End> {
        let mut neg = Negotiated::default();
        let (mut req, mut keys) = (first, first_keys);
        let mut declared_tpgt = false;
        for _ in 0..MAX_LOGIN_ROUNDS {
            let mut answer = TextParams::new();
            if !declared_tpgt {
                answer.push("TargetPortalGroupTag", "1");
                declared_tpgt = true;
            }
            match req.csg {
                Stage::Security => match negotiate_security(&keys) {
                    Ok(sec) => answer.extend(&sec),
                    Err(status) => {
                        access(self.ip, format_args!("discovery login refused: {status}"));
                        return Err(self.refuse(&req, status, TextParams::new()));
                    }
                },
                Stage::Operational => {}
                Stage::FullFeature => {
                    return Err(self.refuse(&req, LoginStatus::INVALID_DURING_LOGIN, TextParams::new()))
                }
            }
            // Some initiators send operational keys already in the security
            // stage; answer them wherever they come.
            if req.csg == Stage::Operational || keys.pairs().iter().any(|(k, _)| is_operational_key(k)) {
                answer.extend(&negotiate_operational(&keys, self.cfg.max_recv_data_segment_length, &mut neg));
            }
            let mut rsp = self.login_response(&req, LoginStatus::SUCCESS, &answer);
            rsp.transit = req.transit;
            rsp.nsg = if req.transit { req.nsg } else { req.csg };
            let finished = req.transit && req.nsg == Stage::FullFeature;
            if finished {
                rsp.tsih = self.portal.next_tsih();
            }
            self.write_login_response(rsp, deadline)?;
            if finished {
                // The login phase is over: our declared limit applies now.
                self.s.limits.max_data_segment = self.cfg.max_recv_data_segment_length;
                self.s.limits.digests = Digests { header: neg.header_digest, data: neg.data_digest };
                self.s.send_digests = self.s.limits.digests;
                return self.full_feature(initiator, neg);
            }
            (req, keys) = self.read_login(deadline)?;
        }
        Err(End::Protocol(format!("login not finished after {MAX_LOGIN_ROUNDS} exchanges")))
    }

    /// Sends a login response whose keys may not fit one login PDU (RFC
    /// 7143: 8192 bytes during login): then in pieces with the C bit, each
    /// acknowledged by an empty Login Request.
    fn write_login_response(&mut self, mut rsp: LoginResponse, deadline: Instant) -> Result<(), End> {
        let data = std::mem::take(&mut rsp.data);
        let max = LOGIN_PDU_DATA as usize;
        if data.len() <= max {
            rsp.data = data;
            return self.write(&rsp.to_pdu());
        }
        let (transit, nsg, tsih) = (rsp.transit, rsp.nsg, rsp.tsih);
        let mut start = 0;
        loop {
            let (end, _) = next_chunk(&data, start, max);
            let last = end == data.len();
            let mut part = rsp.clone();
            part.data = data[start..end].to_vec();
            part.cont = !last;
            part.transit = last && transit;
            part.nsg = if last { nsg } else { rsp.csg };
            part.tsih = if last { tsih } else { 0 };
            if start > 0 {
                part.statsn = self.next_statsn();
            }
            self.write(&part.to_pdu())?;
            if last {
                return Ok(());
            }
            let pdu = self.s.read_pdu(deadline)?;
            let ack = LoginRequest::from_pdu(&pdu).map_err(|e| End::Protocol(format!("login request: {e}")))?;
            if !ack.data.is_empty() || ack.cont || ack.transit {
                return Err(End::Protocol(
                    "expected an empty Login Request acknowledging a continued login response".into(),
                ));
            }
            start = end;
        }
    }

    /// Answers with a Reject PDU and ends the session.
    fn reject(&mut self, pdu: &Pdu, reason: RejectReason, why: &str) -> End {
        access(self.ip, format_args!("{why}: rejected (reason 0x{:02x}), dropping connection", reason as u8));
        let rej = Reject {
            reason,
            statsn: self.next_statsn(),
            exp_cmdsn: self.exp_cmdsn,
            max_cmdsn: self.exp_cmdsn.wrapping_add(CMD_WINDOW),
            rejected: pdu.bhs.0,
        };
        match self.write(&rej.to_pdu()) {
            Ok(()) => End::Rejected,
            Err(e) => e,
        }
    }

    fn full_feature(&mut self, initiator: &str, neg: Negotiated) -> Result<(), End> {
        let mut asm = TextAssembler::new(MAX_TEXT_REQUEST);
        let mut pending: Option<PendingAnswer> = None;
        let chunk = (neg.peer_max_recv as usize).min(MAX_TEXT_RESPONSE);
        loop {
            let deadline = deadline_after(self.cfg.idle_timeout());
            let pdu = match self.s.read_pdu(deadline) {
                Err(TransportError::Timeout) => {
                    access(self.ip, format_args!("idle for {}s, dropping connection", self.cfg.idle_timeout_sec));
                    return Ok(());
                }
                other => other?,
            };
            if !pdu.bhs.immediate() {
                self.exp_cmdsn = pdu.bhs.u32_at(24).wrapping_add(1);
            }
            match pdu.bhs.opcode() {
                Some(Opcode::TextRequest) => {
                    let req = TextRequest::from_pdu(&pdu).map_err(|e| End::Protocol(format!("text request: {e}")))?;
                    if req.ttt != RESERVED_TAG && req.data.is_empty() {
                        if let Some(p) = pending.as_mut().filter(|p| p.ttt == req.ttt) {
                            let (end, cont) = next_chunk(&p.data, p.pos, p.chunk);
                            let part = p.data[p.pos..end].to_vec();
                            p.pos = end;
                            let last = p.pos >= p.data.len();
                            let ttt = if last { RESERVED_TAG } else { p.ttt };
                            self.text_response(&req, part, last, cont && !last, ttt)?;
                            if last {
                                pending = None;
                            }
                            continue;
                        }
                    }
                    // A new request ends an unfinished answer.
                    pending = None;
                    let text = match asm.push(&req.data, req.cont) {
                        Ok(None) => {
                            let ttt = self.fresh_ttt();
                            self.text_response(&req, Vec::new(), false, false, ttt)?;
                            continue;
                        }
                        Ok(Some(t)) => t,
                        Err(e) => {
                            return Err(self.reject(&pdu, RejectReason::ProtocolError, &format!("text request: {e}")))
                        }
                    };
                    let keys = match TextParams::parse(&text) {
                        Ok(k) => k,
                        Err(e) => {
                            let why = format!("text request: {}", Esc(&e.to_string()));
                            return Err(self.reject(&pdu, RejectReason::ProtocolError, &why));
                        }
                    };
                    let (data, held) = match self.answer_text(&keys, initiator) {
                        TextAnswer::Keys(d, r) => (d, r),
                        TextAnswer::Reject(reason, why) => return Err(self.reject(&pdu, reason, &why)),
                    };
                    let (end, cont) = if data.is_empty() { (0, false) } else { next_chunk(&data, 0, chunk) };
                    if end == data.len() {
                        self.text_response(&req, data, true, false, RESERVED_TAG)?;
                    } else {
                        let ttt = self.fresh_ttt();
                        self.text_response(&req, data[..end].to_vec(), false, cont, ttt)?;
                        pending = Some(PendingAnswer { ttt, data, pos: end, chunk, _held: held });
                    }
                }
                Some(Opcode::NopOut) => {
                    let nop = NopOut::from_pdu(&pdu).map_err(|e| End::Protocol(e.to_string()))?;
                    if nop.itt != RESERVED_TAG {
                        let rsp = NopIn {
                            lun: nop.lun,
                            itt: nop.itt,
                            ttt: RESERVED_TAG,
                            statsn: self.next_statsn(),
                            exp_cmdsn: self.exp_cmdsn,
                            max_cmdsn: self.exp_cmdsn.wrapping_add(CMD_WINDOW),
                            data: nop.data,
                        };
                        self.write(&rsp.to_pdu())?;
                    }
                }
                Some(Opcode::LogoutRequest) => {
                    let req = LogoutRequest::from_pdu(&pdu).map_err(|e| End::Protocol(e.to_string()))?;
                    let rsp = LogoutResponse {
                        response: 0,
                        itt: req.itt,
                        statsn: self.next_statsn(),
                        exp_cmdsn: self.exp_cmdsn,
                        max_cmdsn: self.exp_cmdsn.wrapping_add(CMD_WINDOW),
                    };
                    self.write(&rsp.to_pdu())?;
                    return Ok(());
                }
                other => {
                    let reason =
                        if other.is_some() { RejectReason::CommandNotSupported } else { RejectReason::ProtocolError };
                    let why = format!("opcode 0x{:02x} is not allowed in a discovery session", pdu.bhs.opcode_raw());
                    return Err(self.reject(&pdu, reason, &why));
                }
            }
        }
    }

    fn fresh_ttt(&mut self) -> u32 {
        let t = self.next_ttt;
        self.next_ttt = self.next_ttt.wrapping_add(1).max(1);
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 1;
        }
        t
    }

    fn text_response(&mut self, req: &TextRequest, data: Vec<u8>, fin: bool, cont: bool, ttt: u32) -> Result<(), End> {
        let rsp = TextResponse {
            fin,
            cont,
            lun: req.lun,
            itt: req.itt,
            ttt,
            statsn: self.next_statsn(),
            exp_cmdsn: self.exp_cmdsn,
            max_cmdsn: self.exp_cmdsn.wrapping_add(CMD_WINDOW),
            data,
        };
        self.write(&rsp.to_pdu())
    }

    /// The answer to a text request in a discovery session: at most one
    /// SendTargets key, answered from the nodes (or refused when no node
    /// answered), every other key NotUnderstood; the encoded answer holds
    /// its bytes from the connection budget.
    fn answer_text(&mut self, keys: &TextParams, initiator: &str) -> TextAnswer {
        let pairs = keys.pairs();
        if pairs.len() > MAX_TEXT_KEYS {
            return TextAnswer::Reject(
                RejectReason::ProtocolError,
                format!("text request with {} keys (at most {MAX_TEXT_KEYS})", pairs.len()),
            );
        }
        let asks = pairs.iter().filter(|(k, _)| k == "SendTargets").count();
        if asks > MAX_SEND_TARGETS_KEYS {
            return TextAnswer::Reject(
                RejectReason::ProtocolError,
                format!("text request with {asks} SendTargets keys (at most {MAX_SEND_TARGETS_KEYS})"),
            );
        }
        let Some(mut held) = self.portal.buffers.reserve(0) else {
            return TextAnswer::Reject(RejectReason::OutOfResources, "no memory budget".into());
        };
        let mut out = Vec::new();
        for (k, v) in pairs {
            if k != "SendTargets" {
                out.extend_from_slice(format!("{k}=NotUnderstood\0").as_bytes());
                continue;
            }
            access(self.ip, format_args!("initiator request SendTargets={}", Esc(v)));
            if !(v == "All" || v.is_empty() || is_valid_name(v)) {
                access(
                    self.ip,
                    format_args!("SendTargets value is neither All nor an iSCSI name: answered with no targets"),
                );
                continue;
            }
            if let Err(reject) = self.send_targets(v, initiator, &mut out, &mut held) {
                return reject;
            }
        }
        TextAnswer::Keys(out, held)
    }

    /// Appends the SendTargets answer for `v` ("All", "" or a name) to `out`.
    fn send_targets(
        &mut self,
        v: &str,
        initiator: &str,
        out: &mut Vec<u8>,
        held: &mut Reservation,
    ) -> Result<(), TextAnswer> {
        let local: SocketAddr = self.s.local;
        let local_ip = plain_ip(local.ip());
        let cfg = self.cfg.clone();
        let Some(dp) = cfg.discovery_portal_for(local_ip) else {
            unserved_address(local_ip);
            return Err(TextAnswer::Reject(
                RejectReason::OutOfResources,
                format!("no discovery portal is configured for {local_ip}"),
            ));
        };
        let q = NodeQuery {
            config: &cfg,
            portal: dp,
            initiator,
            query: "All",
            max_age: cfg.state_time(),
            priority: Priority::Interactive,
            hops: self.hops,
            log_pdus: self.portal.log_pdus,
        };
        let mut answers = self.portal.nodes.query(&q);
        if answers.iter().all(|a| a.targets.is_err()) {
            let silent = super::nodes::silent_nodes(&answers).unwrap_or_default();
            return Err(TextAnswer::Reject(
                RejectReason::OutOfResources,
                format!("no node answered SendTargets ({silent}); refusing rather than answering an empty list"),
            ));
        }
        self.fill_in_silent_nodes(&mut answers, initiator);
        let names = super::nodes::merged_target_names(&answers);
        let address = TargetAddress::new(local_ip, local.port(), 1).to_string();
        let (mut listed, mut dropped) = (0usize, 0usize);
        for name in names {
            if cfg.is_removed(&name) || (v != "All" && !v.is_empty() && !v.eq_ignore_ascii_case(&name)) {
                continue;
            }
            if listed == MAX_ANSWER_TARGETS {
                dropped += 1;
                continue;
            }
            let item = format!("TargetName={name}\0TargetAddress={address}\0");
            let need = out.len() + item.len();
            // The answer, and a Text Response's worth of copies while sending.
            if !held.grow_to(need + 2 * need.min(MAX_TEXT_RESPONSE)) {
                return Err(TextAnswer::Reject(
                    RejectReason::OutOfResources,
                    format!("SendTargets answer of more than {need} bytes does not fit the connection budget now"),
                ));
            }
            out.extend_from_slice(item.as_bytes());
            if listed < MAX_LOGGED_TARGETS {
                access(self.ip, format_args!("portal response TargetName={}", Esc(&name)));
                access(self.ip, format_args!("portal response TargetAddress={address}"));
            }
            listed += 1;
        }
        if listed > MAX_LOGGED_TARGETS {
            access(self.ip, format_args!("portal response: {} more targets (not logged)", listed - MAX_LOGGED_TARGETS));
        }
        if dropped > 0 {
            tracing::warn!(
                "SendTargets answer for {initiator} cut at {MAX_ANSWER_TARGETS} targets ({dropped} left out)"
            );
        }
        Ok(())
    }

    /// A node that did not answer is represented by its last answer for
    /// this initiator (at most limits::STALE_ANSWER_MAX old), so a slow or
    /// restarting node does not make its targets vanish from an answer an
    /// initiator might act on; either way the partial answer is logged.
    fn fill_in_silent_nodes(&mut self, answers: &mut [NodeAnswer], initiator: &str) {
        for a in answers.iter_mut() {
            let Err(e) = &a.targets else { continue };
            match self.portal.nodes.last_answer(a.addr, initiator, "All") {
                Some((t, age)) => {
                    access(
                        self.ip,
                        format_args!(
                            "partial answer: node {} portal {} did not answer ({}); listing its answer from {}s ago",
                            a.node,
                            a.addr,
                            Esc(e),
                            age.as_secs()
                        ),
                    );
                    a.targets = Ok(t);
                }
                None => access(
                    self.ip,
                    format_args!(
                        "partial answer: node {} portal {} did not answer ({}); its targets are missing from this answer",
                        a.node,
                        a.addr,
                        Esc(e)
                    ),
                ),
            }
        }
    }
}
