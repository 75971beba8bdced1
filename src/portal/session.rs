//! One initiator connection: the login phase, then either a redirect
//! (normal session: answer 0x0101 with a node's portal and close) or a
//! discovery session (negotiate, answer SendTargets, NOP, Logout).
//! Every read has a deadline; anything malformed ends the connection, never
//! the daemon.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::access_log::{access, plain_ip};
use super::negotiation::{negotiate_operational, negotiate_security, Negotiated};
use super::nodes::{merged_target_names, query_nodes, NodeQuery};
use super::redirect::{RedirectDecision, RedirectRequest};
use super::server::Portal;
use super::transport::{PduStream, TransportError};
use super::upstream::UpstreamTimeouts;
use crate::config::PortalConfig;
use crate::iscsi::bhs::Opcode;
use crate::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use crate::iscsi::logout::{LogoutRequest, LogoutResponse};
use crate::iscsi::name::is_valid_name;
use crate::iscsi::nop::{NopIn, NopOut};
use crate::iscsi::pdu::{DecodeLimits, Digests, Pdu};
use crate::iscsi::reject::{Reject, RejectReason};
use crate::iscsi::target_address::TargetAddress;
use crate::iscsi::text::{split_text, TextAssembler, TextParams};
use crate::iscsi::text_pdu::{TextRequest, TextResponse};
use crate::iscsi::RESERVED_TAG;

/// Largest text (login keys or a text request) we assemble from pieces.
const MAX_TEXT: usize = 64 * 1024;
/// Login exchanges before we give up on an initiator that never finishes.
const MAX_LOGIN_ROUNDS: usize = 16;
/// Commands the initiator may have outstanding (discovery needs 1).
const CMD_WINDOW: u32 = 31;
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);

/// Keys negotiated in the operational stage (anything but security keys
/// and the initiator's declarations).
fn is_operational_key(k: &str) -> bool {
    !matches!(k, "AuthMethod" | "InitiatorName" | "InitiatorAlias" | "SessionType" | "TargetName")
        && !k.starts_with("CHAP_")
}

/// One Text Response's worth of a long answer, and its C bit.
struct TextChunk {
    data: Vec<u8>,
    cont: bool,
}

/// The rest of a long answer, sent as the initiator asks for it by TTT.
struct PendingAnswer {
    ttt: u32,
    chunks: std::collections::VecDeque<TextChunk>,
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
}

struct Session<'a> {
    s: PduStream,
    portal: &'a Portal,
    cfg: Arc<PortalConfig>,
    ip: IpAddr,
    statsn: u32,
    exp_cmdsn: u32,
    next_ttt: u32,
}

/// Serves one accepted connection to its end.
pub fn serve(stream: std::net::TcpStream, portal: &Portal) {
    let cfg = portal.config();
    let limits = DecodeLimits { max_data_segment: cfg.max_recv_data_segment_length, digests: Digests::default() };
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
    let mut session = Session { s, portal, cfg, ip, statsn: 0, exp_cmdsn: 0, next_ttt: 1 };
    match session.run() {
        Ok(()) | Err(End::Transport(TransportError::Closed)) | Err(End::Refused(_)) => {}
        Err(End::Transport(TransportError::Timeout)) => access(ip, format_args!("timed out, dropping connection")),
        Err(e) => access(ip, format_args!("dropping connection: {e}")),
    }
    session.s.shutdown();
    access(ip, format_args!("disconnected"));
}

impl Session<'_> {
    fn write(&mut self, pdu: &Pdu) -> Result<(), End> {
        Ok(self.s.write_pdu(pdu, Instant::now() + WRITE_TIMEOUT)?)
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
        let mut asm = TextAssembler::new(MAX_TEXT);
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
                        access(self.ip, format_args!("malformed login keys: {e}"));
                        return Err(self.refuse(&req, LoginStatus::INITIATOR_ERROR, TextParams::new()));
                    }
                },
                Err(e) => {
                    access(self.ip, format_args!("login text: {e}"));
                    return Err(self.refuse(&req, LoginStatus::INITIATOR_ERROR, TextParams::new()));
                }
            }
        }
    }

    fn run(&mut self) -> Result<(), End> {
        let deadline = Instant::now() + self.cfg.login_timeout();
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
            access(self.ip, format_args!("invalid InitiatorName {initiator:?} refused"));
            return Err(self.refuse(&req, LoginStatus::INITIATOR_ERROR, TextParams::new()));
        }
        let session_type = keys.get("SessionType").unwrap_or("Normal").to_string();
        access(self.ip, format_args!("initiator {initiator} session {session_type}"));
        match session_type.as_str() {
            "Normal" => self.redirect(&req, &keys, &initiator),
            "Discovery" => self.discovery(req, keys, &initiator, deadline),
            _ => Err(self.refuse(&req, LoginStatus::SESSION_TYPE_NOT_SUPPORTED, TextParams::new())),
        }
    }

    // ---- normal session: redirect ----

    fn redirect(&mut self, req: &LoginRequest, keys: &TextParams, initiator: &str) -> Result<(), End> {
        let Some(target) = keys.get("TargetName").map(str::to_string) else {
            access(self.ip, format_args!("normal session without TargetName refused"));
            return Err(self.refuse(req, LoginStatus::MISSING_PARAMETER, TextParams::new()));
        };
        access(self.ip, format_args!("target {target}"));
        if !is_valid_name(&target) {
            access(self.ip, format_args!("invalid TargetName refused (0x0203)"));
            return Err(self.refuse(req, LoginStatus::NOT_FOUND, TextParams::new()));
        }
        let local = plain_ip(self.s.local.ip());
        let cfg = self.cfg.clone();
        let Some(dp) = cfg.discovery_portal_for(local) else {
            tracing::warn!("no discovery portal is configured for local address {local}");
            return Err(self.refuse(req, LoginStatus::TARGET_ERROR, TextParams::new()));
        };
        let decision = RedirectRequest {
            config: &cfg,
            portal: dp,
            store: &self.portal.store,
            initiator,
            target: &target,
            log_pdus: self.portal.log_pdus,
            wait_for_failover: true,
            stop: &self.portal.stop,
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
            Ok(RedirectDecision::NotFound { waited }) => {
                access(
                    self.ip,
                    format_args!(
                        "target {target} found on no node after {}s, service unavailable (0x0301)",
                        waited.as_secs()
                    ),
                );
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
            self.write(&rsp.to_pdu())?;
            if finished {
                self.s.limits.digests = Digests { header: neg.header_digest, data: neg.data_digest };
                self.s.send_digests = self.s.limits.digests;
                return self.full_feature(initiator, neg);
            }
            (req, keys) = self.read_login(deadline)?;
        }
        Err(End::Protocol(format!("login not finished after {MAX_LOGIN_ROUNDS} exchanges")))
    }

    fn full_feature(&mut self, initiator: &str, neg: Negotiated) -> Result<(), End> {
        let mut asm = TextAssembler::new(MAX_TEXT);
        let mut pending: Option<PendingAnswer> = None;
        loop {
            let deadline = Instant::now() + self.cfg.idle_timeout();
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
                            let chunk = p.chunks.pop_front().unwrap_or(TextChunk { data: Vec::new(), cont: false });
                            let last = p.chunks.is_empty();
                            let ttt = if last { RESERVED_TAG } else { p.ttt };
                            self.text_response(&req, chunk.data, last, chunk.cont, ttt)?;
                            if last {
                                pending = None;
                            }
                            continue;
                        }
                    }
                    let text = match asm.push(&req.data, req.cont) {
                        Ok(None) => {
                            let ttt = self.fresh_ttt();
                            self.text_response(&req, Vec::new(), false, false, ttt)?;
                            continue;
                        }
                        Ok(Some(t)) => t,
                        Err(e) => return Err(End::Protocol(format!("text request: {e}"))),
                    };
                    let keys = TextParams::parse(&text).map_err(|e| End::Protocol(format!("text request: {e}")))?;
                    let answer = self.answer_text(&keys, initiator);
                    let bytes = answer.to_bytes();
                    let mut chunks: std::collections::VecDeque<TextChunk> =
                        split_text(&bytes, neg.peer_max_recv as usize)
                            .into_iter()
                            .map(|(c, cont)| TextChunk { data: c.to_vec(), cont })
                            .collect();
                    let first = chunks.pop_front().unwrap_or(TextChunk { data: Vec::new(), cont: false });
                    if chunks.is_empty() {
                        self.text_response(&req, first.data, true, false, RESERVED_TAG)?;
                    } else {
                        let ttt = self.fresh_ttt();
                        self.text_response(&req, first.data, false, first.cont, ttt)?;
                        pending = Some(PendingAnswer { ttt, chunks });
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
                    let rej = Reject {
                        reason,
                        statsn: self.next_statsn(),
                        exp_cmdsn: self.exp_cmdsn,
                        max_cmdsn: self.exp_cmdsn.wrapping_add(CMD_WINDOW),
                        rejected: pdu.bhs.0,
                    };
                    self.write(&rej.to_pdu())?;
                    return Err(End::Protocol(format!(
                        "opcode 0x{:02x} is not allowed in a discovery session",
                        pdu.bhs.opcode_raw()
                    )));
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

    /// The answer to a text request in a discovery session.
    fn answer_text(&mut self, keys: &TextParams, initiator: &str) -> TextParams {
        let mut out = TextParams::new();
        for (k, v) in keys.pairs() {
            if k != "SendTargets" {
                out.push(k, "NotUnderstood");
                continue;
            }
            access(self.ip, format_args!("initiator request SendTargets={v}"));
            let local: SocketAddr = self.s.local;
            let local_ip = plain_ip(local.ip());
            let cfg = self.cfg.clone();
            let Some(dp) = cfg.discovery_portal_for(local_ip) else {
                tracing::warn!("no discovery portal is configured for local address {local_ip}");
                continue;
            };
            let q = NodeQuery {
                portal: dp,
                initiator,
                timeouts: UpstreamTimeouts {
                    connect: cfg.upstream_connect_timeout(),
                    response: cfg.upstream_response_timeout(),
                },
                log_pdus: self.portal.log_pdus,
                cache: Some((&self.portal.nodes, cfg.state_time())),
            };
            let names = merged_target_names(&query_nodes(&q));
            let address = TargetAddress::new(local_ip, local.port(), 1).to_string();
            for name in names {
                if cfg.is_removed(&name) {
                    continue;
                }
                if v != "All" && !v.is_empty() && !v.eq_ignore_ascii_case(&name) {
                    continue;
                }
                access(self.ip, format_args!("portal response TargetName={name}"));
                access(self.ip, format_args!("portal response TargetAddress={address}"));
                out.push("TargetName", name);
                out.push("TargetAddress", address.clone());
            }
        }
        out
    }
}
