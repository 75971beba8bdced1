//! The login phase (RFC 7143 5.3, 6, 12): security stage with CHAP (one-way
//! or mutual), operational negotiation, and redirects (0x0101, 0x0102)
//! followed up to a bound with loops detected. A login response may be
//! held back by a portal during a failover: each response is awaited for
//! the full login timeout. "Service unavailable" and "out of resources"
//! are retried until that timeout; every other refusal ends the login
//! with the status in words.

use std::time::{Duration, Instant};

use super::chap;
use super::conn::{Conn, RecvError};
use super::error::{login_refusal_text, status_in_words, InitiatorError};
use super::negotiate::{operational_offer, SessionParams};
use super::options::InitiatorOptions;
use super::url::Portal;
use crate::iscsi::bhs::Opcode;
use crate::iscsi::login::{LoginRequest, LoginResponse, LoginStatus, Stage};
use crate::iscsi::pdu::{DecodeLimits, Digests};
use crate::iscsi::target_address::TargetAddress;
use crate::iscsi::text::{TextAssembler, TextParams};

/// The CmdSN a new session starts with.
pub(crate) const FIRST_CMDSN: u32 = 1;
/// Login exchanges per stage at most (a target cannot keep us talking).
const MAX_ROUNDS: usize = 32;
const MAX_LOGIN_TEXT: usize = 64 << 10;
/// Login Response PDUs one answer may span (C bit): 64 KiB of text in
/// 512-byte pieces at most.
const MAX_CONTINUATIONS: usize = MAX_LOGIN_TEXT / 512;

/// A connection in the full feature phase.
pub(crate) struct Established {
    pub conn: Conn,
    pub params: SessionParams,
    pub tsih: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    pub max_cmdsn: u32,
    /// Set by a 0x0102 redirect: later reconnects go straight there.
    pub moved_permanently: Option<Portal>,
}

enum Outcome {
    Done(Box<Established>),
    Redirect { to: Portal, permanent: bool },
}

/// ISIDs of the random type (RFC 7143 11.12.5: T=10b, B and C random).
pub(crate) fn new_isid() -> [u8; 6] {
    let r = chap::random_bytes(3);
    [0x80, r[0], r[1], r[2], 0, 0]
}

/// Logs in to `target` (None: a discovery session) starting at `start`.
pub(crate) fn login(
    start: &Portal,
    target: Option<&str>,
    isid: [u8; 6],
    opts: &InitiatorOptions,
) -> Result<Established, InitiatorError> {
    let give_up = Instant::now() + opts.login_timeout;
    let mut retry_wait = Duration::from_millis(500);
    'attempt: loop {
        let mut chain = vec![start.to_string()];
        let mut portal = start.clone();
        let mut moved = None;
        loop {
            match login_once(&portal, target, isid, opts) {
                Ok(Outcome::Done(mut est)) => {
                    est.moved_permanently = moved;
                    return Ok(*est);
                }
                Ok(Outcome::Redirect { to, permanent }) => {
                    tracing::info!(
                        "{portal} redirects the login to {to} ({})",
                        if permanent { "moved permanently" } else { "moved temporarily" }
                    );
                    let label = to.to_string();
                    if chain.contains(&label) {
                        chain.push(label);
                        return Err(InitiatorError::RedirectLoop { chain });
                    }
                    chain.push(label);
                    if chain.len() - 1 > opts.max_redirects as usize {
                        return Err(InitiatorError::TooManyRedirects { max: opts.max_redirects, chain });
                    }
                    if permanent {
                        moved = Some(to.clone());
                    }
                    portal = to;
                }
                Err(InitiatorError::LoginRefused { status, peer, target, text })
                    if status.class() == 3 && Instant::now() + retry_wait < give_up =>
                {
                    tracing::info!("{peer}: {text}; trying again in {} ms", retry_wait.as_millis());
                    let _ = (peer, target);
                    std::thread::sleep(retry_wait);
                    retry_wait = (retry_wait * 2).min(Duration::from_secs(5));
                    continue 'attempt;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

struct Exchange<'a> {
    conn: Conn,
    opts: &'a InitiatorOptions,
    target: Option<&'a str>,
    isid: [u8; 6],
    exp_statsn: u32,
}

impl Exchange<'_> {
    fn peer(&self) -> String {
        self.conn.label.clone()
    }

    fn auth_error(&self, detail: impl Into<String>) -> InitiatorError {
        InitiatorError::Auth { peer: self.peer(), detail: detail.into() }
    }

    fn protocol(&self, detail: impl Into<String>) -> InitiatorError {
        InitiatorError::Protocol { peer: self.peer(), detail: detail.into() }
    }

    /// Sends one login request and returns the (reassembled) response.
    fn round(&mut self, csg: Stage, nsg: Stage, transit: bool, keys: &TextParams) -> Result<Reply, InitiatorError> {
        let mut req = LoginRequest {
            transit,
            cmdsn: FIRST_CMDSN,
            exp_statsn: self.exp_statsn,
            ..LoginRequest::opening(self.isid, 0, csg, nsg, keys.to_bytes())
        };
        let mut asm = TextAssembler::new(MAX_LOGIN_TEXT);
        let mut pieces = 0usize;
        loop {
            let deadline = Instant::now() + self.opts.login_timeout;
            self.conn.send(&req.to_pdu(), deadline)?;
            let pdu = self.conn.recv(deadline).map_err(|e| match e {
                RecvError::Timeout => {
                    InitiatorError::LoginTimeout { peer: self.peer(), secs: self.opts.login_timeout.as_secs() }
                }
                RecvError::Failed(d) => self.conn.transport_error(format!("waiting for a login response: {d}")),
            })?;
            if pdu.bhs.opcode() != Some(Opcode::LoginResponse) {
                return Err(
                    self.protocol(format!("expected a Login Response, got opcode 0x{:02x}", pdu.bhs.opcode_raw()))
                );
            }
            let rsp = LoginResponse::from_pdu(&pdu).map_err(|e| self.protocol(format!("login response: {e}")))?;
            if rsp.itt != req.itt {
                return Err(self.protocol(format!("login response for task 0x{:08x}", rsp.itt)));
            }
            if rsp.status != LoginStatus::SUCCESS {
                let keys = TextParams::parse(&rsp.data).unwrap_or_default();
                return Ok(Reply { rsp, keys });
            }
            self.exp_statsn = rsp.statsn.wrapping_add(1);
            if rsp.version_active != 0 {
                return Err(self.protocol(format!("unsupported version {}", rsp.version_active)));
            }
            if rsp.cont {
                // Each piece must carry text, and there is a bound: a target
                // cannot keep us asking for the rest forever.
                pieces += 1;
                if rsp.data.is_empty() {
                    return Err(self.protocol("a login response continued (C bit) without any text"));
                }
                if pieces > MAX_CONTINUATIONS {
                    return Err(self.protocol(format!(
                        "a login response continued (C bit) over more than {MAX_CONTINUATIONS} PDUs"
                    )));
                }
            }
            if let Some(text) = asm.push(&rsp.data, rsp.cont).map_err(|e| self.protocol(e.to_string()))? {
                let keys = TextParams::parse(&text).map_err(|e| self.protocol(format!("login keys: {e}")))?;
                return Ok(Reply { rsp, keys });
            }
            // C bit: ask for the rest with an empty request.
            req = LoginRequest {
                transit: false,
                cmdsn: FIRST_CMDSN,
                exp_statsn: self.exp_statsn,
                ..LoginRequest::opening(self.isid, 0, csg, nsg, Vec::new())
            };
        }
    }
}

struct Reply {
    rsp: LoginResponse,
    keys: TextParams,
}

/// A refused login in words. `chap_sent`: our CHAP response went out (an
/// authentication failure before it is about the method, not the secret).
fn refused(ex: &Exchange<'_>, reply: &Reply, chap_sent: bool) -> InitiatorError {
    let status = reply.rsp.status;
    let auth = &ex.opts.auth;
    let chap_user = auth.chap.as_ref().map(|c| c.user.as_str());
    let target = ex.target.unwrap_or("(discovery)");
    let mutual = (status == LoginStatus::AUTHENTICATION_FAILURE)
        .then(|| mutual_refusal(chap_user, auth.mutual.as_ref().map(|m| m.user.as_str()), chap_sent))
        .flatten();
    let text = match mutual {
        Some(why) => status_in_words(status, &why),
        None => login_refusal_text(status, &ex.opts.initiator_name, target, chap_user),
    };
    InitiatorError::LoginRefused { peer: ex.peer(), target: target.to_string(), status, text }
}

/// What an authentication failure means when mutual CHAP was asked for:
/// the target may not do CHAP at all with this initiator, or may have no
/// account to prove itself with, which a wrong initiator secret cannot be
/// told apart from.
fn mutual_refusal(chap_user: Option<&str>, target_user: Option<&str>, chap_sent: bool) -> Option<String> {
    let (user, tuser) = (chap_user?, target_user?);
    Some(if chap_sent {
        format!(
            "the target did not accept the CHAP credentials of user {user}, or cannot prove itself as {tuser} \
             (mutual CHAP: it needs an outgoing account {tuser} with our target secret)"
        )
    } else {
        no_chap_for_mutual("it refused AuthMethod=CHAP")
    })
}

/// A target that will not do CHAP, when our target credentials require it.
fn no_chap_for_mutual(answer: &str) -> String {
    format!(
        "the target does not do CHAP with this initiator ({answer}); target credentials are set, which require \
         mutual CHAP"
    )
}

fn redirect_of(ex: &Exchange<'_>, reply: &Reply) -> Result<Option<Outcome>, InitiatorError> {
    let status = reply.rsp.status;
    if status != LoginStatus::TARGET_MOVED_TEMPORARILY && status != LoginStatus::TARGET_MOVED_PERMANENTLY {
        return Ok(None);
    }
    let v = reply
        .keys
        .get("TargetAddress")
        .ok_or_else(|| ex.protocol(format!("redirect {status} without a TargetAddress")))?;
    let a =
        TargetAddress::parse(v).ok_or_else(|| ex.protocol(format!("redirect to an invalid TargetAddress {v:?}")))?;
    Ok(Some(Outcome::Redirect {
        to: Portal { host: a.host, port: a.port },
        permanent: status == LoginStatus::TARGET_MOVED_PERMANENTLY,
    }))
}

fn login_once(
    portal: &Portal,
    target: Option<&str>,
    isid: [u8; 6],
    opts: &InitiatorOptions,
) -> Result<Outcome, InitiatorError> {
    let mut conn = Conn::connect(portal, opts.connect_timeout, opts.log_pdus)?;
    conn.limits = DecodeLimits { max_data_segment: MAX_LOGIN_TEXT as u32, digests: Digests::default() };
    let mut ex = Exchange { conn, opts, target, isid, exp_statsn: 0 };

    // Security stage.
    let mut keys = TextParams::new();
    keys.push("InitiatorName", &opts.initiator_name);
    keys.push("SessionType", if target.is_some() { "Normal" } else { "Discovery" });
    if let Some(t) = target {
        keys.push("TargetName", t);
    }
    let auth = &opts.auth;
    // Target credentials make a Normal session require CHAP with the
    // target proving itself. A discovery session only learns names and
    // addresses (every login to them still requires it), and targets such
    // as tgt do not authenticate discovery: it takes None when offered.
    let discovery = target.is_none();
    let offer = match (&auth.chap, &auth.mutual) {
        (None, _) => "None",
        (Some(_), None) => "CHAP,None",
        (Some(_), Some(_)) if discovery => "CHAP,None",
        (Some(_), Some(_)) => "CHAP",
    };
    keys.push("AuthMethod", offer);
    let mut transit = auth.chap.is_none();
    let mut chap_done = false;
    let mut mutual_challenge: Option<(u8, Vec<u8>)> = None;
    let mut stage = Stage::Security;
    for _ in 0..MAX_ROUNDS {
        let reply = ex.round(Stage::Security, Stage::Operational, transit, &keys)?;
        if let Some(r) = redirect_of(&ex, &reply)? {
            return Ok(r);
        }
        if reply.rsp.status != LoginStatus::SUCCESS {
            return Err(refused(&ex, &reply, chap_done));
        }
        keys = TextParams::new();
        let k = &reply.keys;
        if let Some(m) = k.get("AuthMethod") {
            match m {
                "None" if auth.mutual.is_some() && !discovery => {
                    return Err(ex.auth_error(
                        "the target skipped CHAP, but target credentials are configured (mutual CHAP required)",
                    ))
                }
                "None" => transit = true,
                "CHAP" if auth.chap.is_some() => {
                    keys.push("CHAP_A", chap::ALGORITHM_MD5);
                    transit = false;
                }
                "CHAP" => {
                    return Err(ex.auth_error(
                        "the target requires CHAP and no credentials were given: set [initiator] chap_username and \
                         chap_password in the configuration, or LIBISCSI_CHAP_USERNAME and LIBISCSI_CHAP_PASSWORD",
                    ))
                }
                "Reject" if auth.mutual.is_some() && !discovery => {
                    return Err(ex.auth_error(no_chap_for_mutual("AuthMethod=Reject")))
                }
                other => return Err(ex.auth_error(format!("the target answered AuthMethod={other} to {offer}"))),
            }
        }
        if let Some(c) = k.get("CHAP_C") {
            let creds = auth.chap.as_ref().ok_or_else(|| ex.auth_error("unexpected CHAP challenge"))?;
            if k.get("CHAP_A") != Some(chap::ALGORITHM_MD5) {
                return Err(ex.auth_error(format!(
                    "the target chose CHAP algorithm {:?}; only MD5 (5) is supported",
                    k.get("CHAP_A").unwrap_or("")
                )));
            }
            let id: u8 = k
                .get("CHAP_I")
                .and_then(|i| i.parse().ok())
                .ok_or_else(|| ex.auth_error("CHAP challenge without a valid CHAP_I"))?;
            let challenge = chap::parse_binary(c).map_err(|e| ex.auth_error(format!("CHAP_C: {e}")))?;
            keys.push("CHAP_N", &creds.user);
            keys.push("CHAP_R", chap::to_hex(&chap::response(id, creds.secret.as_bytes(), &challenge)));
            if auth.mutual.is_some() {
                let mut ours = chap::random_bytes(16);
                while ours == challenge {
                    ours = chap::random_bytes(16);
                }
                let our_id = chap::random_bytes(1)[0];
                keys.push("CHAP_I", our_id.to_string());
                keys.push("CHAP_C", chap::to_hex(&ours));
                mutual_challenge = Some((our_id, ours));
            }
            chap_done = true;
            transit = true;
        } else if let Some(r) = k.get("CHAP_R") {
            let (Some(m), Some((id, ch))) = (&auth.mutual, &mutual_challenge) else {
                return Err(ex.auth_error("the target sent a CHAP response nobody asked for"));
            };
            let name = k.get("CHAP_N").unwrap_or("");
            if name != m.user {
                return Err(
                    ex.auth_error(format!("mutual CHAP: the target named itself {name:?}, expected {:?}", m.user))
                );
            }
            let got = chap::parse_binary(r).map_err(|e| ex.auth_error(format!("CHAP_R: {e}")))?;
            if !chap::same(&got, &chap::response(*id, m.secret.as_bytes(), ch)) {
                return Err(
                    ex.auth_error("mutual CHAP: the target's response is wrong (it does not know our target secret)")
                );
            }
            tracing::info!("{}: the target proved itself (mutual CHAP)", ex.peer());
            mutual_challenge = None;
        }
        if reply.rsp.transit {
            if auth.mutual.is_some() && ((!chap_done && !discovery) || mutual_challenge.is_some()) {
                return Err(ex.auth_error("mutual CHAP: the target left the security stage without proving itself"));
            }
            stage = reply.rsp.nsg;
            break;
        }
    }
    if stage == Stage::Security {
        return Err(ex.protocol("the security stage did not end"));
    }

    // Operational stage (skipped when the target went straight to full feature).
    let mut params = SessionParams::default();
    let offered = operational_offer(opts, target.is_none());
    params.apply(&offered, &TextParams::new()).ok();
    let mut keys = offered.clone();
    let mut last = None;
    if stage == Stage::Operational {
        for _ in 0..MAX_ROUNDS {
            let reply = ex.round(Stage::Operational, Stage::FullFeature, true, &keys)?;
            if let Some(r) = redirect_of(&ex, &reply)? {
                return Ok(r);
            }
            if reply.rsp.status != LoginStatus::SUCCESS {
                return Err(refused(&ex, &reply, true));
            }
            keys = params
                .apply(&offered, &reply.keys)
                .map_err(|e| InitiatorError::Negotiation { peer: ex.peer(), detail: e.to_string() })?;
            if reply.rsp.transit && reply.rsp.nsg == Stage::FullFeature {
                last = Some(reply.rsp);
                break;
            }
        }
    }
    let Some(rsp) = last else {
        return Err(ex.protocol("login did not reach the full feature phase"));
    };
    let mut conn = ex.conn;
    let digests = Digests { header: params.header_digest, data: params.data_digest };
    conn.limits = DecodeLimits { max_data_segment: params.max_recv_data_segment, digests };
    conn.send_digests = digests;
    tracing::info!(
        "logged in to {} at {} (TSIH {}, header digest {}, data digest {}, MaxRecvDataSegmentLength {}/{})",
        target.unwrap_or("discovery"),
        conn.label,
        rsp.tsih,
        if params.header_digest { "CRC32C" } else { "None" },
        if params.data_digest { "CRC32C" } else { "None" },
        params.max_recv_data_segment,
        params.max_xmit_data_segment
    );
    Ok(Outcome::Done(Box::new(Established {
        conn,
        params,
        tsih: rsp.tsih,
        cmdsn: FIRST_CMDSN,
        exp_statsn: rsp.statsn.wrapping_add(1),
        max_cmdsn: rsp.max_cmdsn,
        moved_permanently: None,
    })))
}
