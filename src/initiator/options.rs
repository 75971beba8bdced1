//! Resolved initiator settings: everything a session needs, already
//! validated. The CLI builds them from flags, the `[initiator]` config
//! section and the environment (settings.rs); library callers fill them in.

use std::time::Duration;

use super::secret::Secret;

/// What to offer for HeaderDigest / DataDigest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub enum DigestPref {
    /// "None": no digest.
    None,
    /// "CRC32C": digests required; a target that refuses them fails the login.
    Crc32c,
    /// "None,CRC32C": none unless the target insists (the default).
    PreferNone,
    /// "CRC32C,None": digests unless the target refuses them.
    PreferCrc32c,
}

impl DigestPref {
    /// The offer as sent in the login.
    pub fn offer(self) -> &'static str {
        match self {
            DigestPref::None => "None",
            DigestPref::Crc32c => "CRC32C",
            DigestPref::PreferNone => "None,CRC32C",
            DigestPref::PreferCrc32c => "CRC32C,None",
        }
    }

    /// libiscsi's URL spelling.
    pub fn url_value(self) -> &'static str {
        match self {
            DigestPref::None => "none",
            DigestPref::Crc32c => "crc32c",
            DigestPref::PreferNone => "none-crc32c",
            DigestPref::PreferCrc32c => "crc32c-none",
        }
    }

    /// Whether `answer` (the target's choice) is one we offered.
    pub fn allows(self, answer: &str) -> bool {
        self.offer().split(',').any(|o| o == answer)
    }
}

/// A CHAP name and secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: Secret,
}

/// Authentication for one login.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Auth {
    /// The initiator's CHAP name and secret (one-way CHAP).
    pub chap: Option<ChapCredentials>,
    /// The target's name and secret: with it the target must prove itself
    /// too (mutual CHAP), and a target that skips CHAP is refused.
    pub mutual: Option<ChapCredentials>,
}

/// Everything a session needs.
#[derive(Clone, Debug)]
pub struct InitiatorOptions {
    pub initiator_name: String,
    pub auth: Auth,
    pub header_digest: DigestPref,
    pub data_digest: DigestPref,
    /// Commands in flight at most (also bounded by the target's CmdSN window).
    pub queue_depth: usize,
    /// Largest single READ/WRITE in bytes (also bounded by the LUN's Block Limits).
    pub max_transfer: u32,
    pub connect_timeout: Duration,
    /// How long to wait for each login response: the portal may hold a
    /// login while a target fails over, so this is generous.
    pub login_timeout: Duration,
    /// Silence from the target, with commands outstanding, after which the
    /// connection counts as dead (a NOP-Out ping goes out at a third of it).
    pub io_timeout: Duration,
    /// How long to keep trying to re-establish a dropped connection.
    pub reconnect_timeout: Duration,
    /// Reconnects per session at most (a flapping link ends the run).
    pub max_reconnects: u32,
    /// Login redirects followed per login at most.
    pub max_redirects: u32,
    /// Retries of a command answered with UNIT ATTENTION, BUSY or TASK SET FULL.
    pub command_retries: u32,
    /// Acknowledged writes kept for replay until SYNCHRONIZE CACHE covers
    /// them (bytes); past half of it a write first flushes.
    pub write_journal_limit: usize,
    /// Log every PDU at debug level.
    pub log_pdus: bool,
}

pub const DEFAULT_QUEUE_DEPTH: usize = 16;
pub const MAX_QUEUE_DEPTH: usize = 256;
/// 512 KiB: against tgt 1.0.85 on loopback, reads of 256-512 KiB per
/// command ran ~1.45x faster than 1 MiB (tgtd's CPU per GB 0.59x), and
/// writes of 512 KiB-1 MiB ~1.1x faster than 256 KiB (docs/performance.md,
/// "Command size").
pub const DEFAULT_MAX_TRANSFER: u32 = 512 << 10;

impl InitiatorOptions {
    /// Defaults for everything but the name.
    pub fn new(initiator_name: impl Into<String>) -> InitiatorOptions {
        InitiatorOptions {
            initiator_name: initiator_name.into(),
            auth: Auth::default(),
            header_digest: DigestPref::PreferNone,
            data_digest: DigestPref::PreferNone,
            queue_depth: DEFAULT_QUEUE_DEPTH,
            max_transfer: DEFAULT_MAX_TRANSFER,
            connect_timeout: Duration::from_secs(5),
            login_timeout: Duration::from_secs(60),
            io_timeout: Duration::from_secs(30),
            reconnect_timeout: Duration::from_secs(60),
            max_reconnects: 20,
            max_redirects: 8,
            command_retries: 10,
            write_journal_limit: 64 << 20,
            log_pdus: false,
        }
    }

    /// Checks the values a library caller may have set by hand.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(why) = crate::iscsi::name::format_problem(&self.initiator_name) {
            return Err(format!("initiator name {:?} is not an iSCSI name ({why})", self.initiator_name));
        }
        if !(1..=MAX_QUEUE_DEPTH).contains(&self.queue_depth) {
            return Err(format!("queue depth {} is outside 1-{MAX_QUEUE_DEPTH}", self.queue_depth));
        }
        if !(4096..=(16 << 20)).contains(&self.max_transfer) {
            return Err(format!("max transfer {} bytes is outside 4 KiB-16 MiB", self.max_transfer));
        }
        for (what, c) in [("CHAP", &self.auth.chap), ("target CHAP", &self.auth.mutual)] {
            if let Some(c) = c {
                if c.user.is_empty() || c.secret.is_empty() {
                    return Err(format!("{what} credentials need both a user name and a secret"));
                }
            }
        }
        if let (Some(a), Some(b)) = (&self.auth.chap, &self.auth.mutual) {
            if a.secret == b.secret {
                // RFC 7143 12.1.3: one secret both ways invites reflection attacks.
                return Err("the initiator and target CHAP secrets must differ".into());
            }
        }
        if self.auth.mutual.is_some() && self.auth.chap.is_none() {
            return Err("mutual CHAP (target credentials) needs the initiator's CHAP credentials too".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation() {
        let mut o = InitiatorOptions::new("iqn.2024-01.test:me");
        assert_eq!(o.validate(), Ok(()));
        o.queue_depth = 0;
        assert!(o.validate().unwrap_err().contains("queue depth"));
        o.queue_depth = 8;
        let same = ChapCredentials { user: "u".into(), secret: Secret::new("samesamesame") };
        o.auth = Auth { chap: Some(same.clone()), mutual: Some(same) };
        assert!(o.validate().unwrap_err().contains("must differ"));
        o.auth = Auth { chap: None, mutual: Some(ChapCredentials { user: "t".into(), secret: Secret::new("x") }) };
        assert!(o.validate().is_err());
        o.auth = Auth::default();
        o.initiator_name = "me".into();
        assert!(o.validate().unwrap_err().contains("not an iSCSI name"));
        assert!(DigestPref::PreferNone.allows("CRC32C") && !DigestPref::None.allows("CRC32C"));
    }
}
