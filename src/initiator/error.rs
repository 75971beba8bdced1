//! Initiator errors: typed where callers branch (login refused, SCSI
//! status, connection lost), each with a message an operator can act on.
//! Clone, because one broken connection fails every command in flight.

use crate::iscsi::login::LoginStatus;
use crate::scsi::sense::Sense;
use crate::scsi::Status;

#[derive(Debug, Clone, thiserror::Error)]
pub enum InitiatorError {
    #[error("{0}")]
    Options(String),
    #[error("resolving {host}: {detail}")]
    Resolve { host: String, detail: String },
    #[error("connecting to {addr}: {detail}")]
    Connect { addr: String, detail: String },
    #[error("{peer}: {detail}")]
    Transport { peer: String, detail: String },
    #[error("{peer}: no login response within {secs} s")]
    LoginTimeout { peer: String, secs: u64 },
    #[error("{peer}: login to {target} refused: {text}")]
    LoginRefused { peer: String, target: String, status: LoginStatus, text: String },
    #[error("{peer}: authentication: {detail}")]
    Auth { peer: String, detail: String },
    #[error("{peer}: login negotiation: {detail}")]
    Negotiation { peer: String, detail: String },
    #[error("login redirect loop: {}", chain.join(" -> "))]
    RedirectLoop { chain: Vec<String> },
    #[error("more than {max} login redirects: {}", chain.join(" -> "))]
    TooManyRedirects { max: u32, chain: Vec<String> },
    #[error("{peer}: protocol error: {detail}")]
    Protocol { peer: String, detail: String },
    #[error("connection to {portal} lost ({cause}) and not re-established within {secs} s ({attempts} attempt(s); last: {last})")]
    ConnectionLost { portal: String, cause: String, secs: u64, attempts: u32, last: String },
    #[error("connection to {portal} lost ({cause}) after {count} reconnects in this session (limit max_reconnects)")]
    TooManyReconnects { portal: String, cause: String, count: u32 },
    #[error("{command} on LUN {lun}: {detail}")]
    Scsi { command: &'static str, lun: u16, status: Status, sense: Option<Sense>, detail: String },
    #[error("{command} on LUN {lun}: the target rejected it ({reason})")]
    Rejected { command: &'static str, lun: u16, reason: String },
    #[error("{0}")]
    Volume(String),
    #[error("the session is closed")]
    Closed,
}

impl InitiatorError {
    /// The sense data of a failed SCSI command.
    pub fn sense(&self) -> Option<&Sense> {
        match self {
            InitiatorError::Scsi { sense, .. } => sense.as_ref(),
            _ => None,
        }
    }

    /// Errors a new login attempt cannot fix (wrong name, credentials,
    /// ACL): a reconnect gives up on them at once.
    pub fn is_permanent(&self) -> bool {
        match self {
            InitiatorError::LoginRefused { status, .. } => status.class() == 2,
            InitiatorError::Auth { .. }
            | InitiatorError::Negotiation { .. }
            | InitiatorError::RedirectLoop { .. }
            | InitiatorError::TooManyRedirects { .. }
            | InitiatorError::Options(_) => true,
            _ => false,
        }
    }
}

impl From<InitiatorError> for std::io::Error {
    fn from(e: InitiatorError) -> std::io::Error {
        let kind = match &e {
            InitiatorError::Connect { .. } | InitiatorError::Transport { .. } => std::io::ErrorKind::ConnectionAborted,
            InitiatorError::LoginTimeout { .. } => std::io::ErrorKind::TimedOut,
            InitiatorError::LoginRefused { .. } | InitiatorError::Auth { .. } => std::io::ErrorKind::PermissionDenied,
            _ => std::io::ErrorKind::Other,
        };
        std::io::Error::new(kind, e)
    }
}

/// A refused login in words: the status, its code, and what it means for
/// this initiator and target.
pub fn login_refusal_text(status: LoginStatus, initiator: &str, target: &str, chap_user: Option<&str>) -> String {
    let what = match status {
        LoginStatus::AUTHENTICATION_FAILURE => match chap_user {
            Some(u) => format!("the target did not accept the CHAP credentials of user {u}"),
            None => "the target requires authentication (CHAP) and no credentials were given: set \
                     [initiator] chap_username/chap_password in the configuration or \
                     LIBISCSI_CHAP_USERNAME/LIBISCSI_CHAP_PASSWORD"
                .to_string(),
        },
        LoginStatus::AUTHORIZATION_FAILURE => format!("the target's ACL does not admit initiator {initiator}"),
        // tgt answers an ACL refusal with this status too: it hides targets.
        LoginStatus::NOT_FOUND => format!(
            "the portal serves no target {target} to initiator {initiator} (no such target, or its ACL hides it from this \
             initiator)"
        ),
        LoginStatus::TARGET_REMOVED => format!("target {target} has been removed and is no longer served"),
        LoginStatus::UNSUPPORTED_VERSION => "the target does not speak iSCSI version 0 (RFC 7143)".into(),
        LoginStatus::TOO_MANY_CONNECTIONS => "the target accepts no more connections for this session".into(),
        LoginStatus::MISSING_PARAMETER => "the target missed a login key it needs".into(),
        LoginStatus::CANT_INCLUDE_IN_SESSION => "the target cannot add this connection to the session".into(),
        LoginStatus::SESSION_TYPE_NOT_SUPPORTED => "the target does not support this session type".into(),
        LoginStatus::SESSION_DOES_NOT_EXIST => "the session to continue no longer exists on the target".into(),
        LoginStatus::INVALID_DURING_LOGIN => "the target found a request invalid during login".into(),
        LoginStatus::TARGET_ERROR => "the target failed while logging us in".into(),
        LoginStatus::SERVICE_UNAVAILABLE => "the target is not serving now (service unavailable)".into(),
        LoginStatus::OUT_OF_RESOURCES => "the target is out of resources".into(),
        s if s.class() == 2 => "the target refused the login (initiator error)".into(),
        _ => "the target refused the login".into(),
    };
    status_in_words(status, &what)
}

/// `status` by name and code, then `what` it means here.
pub fn status_in_words(status: LoginStatus, what: &str) -> String {
    format!("{} (0x{:04x}): {what}", status.name(), status.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_in_words() {
        assert_eq!(
            login_refusal_text(LoginStatus::AUTHORIZATION_FAILURE, "iqn.x:a", "iqn.x:t", None),
            "authorization failure (0x0202): the target's ACL does not admit initiator iqn.x:a"
        );
        assert!(login_refusal_text(LoginStatus::AUTHENTICATION_FAILURE, "i", "t", Some("bob")).contains("user bob"));
        assert!(login_refusal_text(LoginStatus::NOT_FOUND, "iqn.x:i", "iqn.x:t", None)
            .contains("no target iqn.x:t to initiator iqn.x:i (no such target, or its ACL hides it"));
        assert!(login_refusal_text(LoginStatus(0x02ff), "i", "t", None).starts_with("unknown status (0x02ff)"));
        let e = InitiatorError::LoginRefused {
            peer: "p".into(),
            target: "t".into(),
            status: LoginStatus::AUTHORIZATION_FAILURE,
            text: String::new(),
        };
        assert!(e.is_permanent());
        assert_eq!(std::io::Error::from(e).kind(), std::io::ErrorKind::PermissionDenied);
    }
}
