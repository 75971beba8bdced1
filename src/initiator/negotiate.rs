//! Initiator-side operational parameter negotiation (RFC 7143 6, 13):
//! what we offer, and what is in force once the target has answered.
//! Pure: keys in, parameters out.

use serde::Serialize;

use super::options::{DigestPref, InitiatorOptions};
use crate::iscsi::text::TextParams;

/// What we declare as MaxRecvDataSegmentLength: the largest Data-In
/// payload we accept (also the receive buffer's size).
pub const OUR_MAX_RECV: u32 = 262_144;
const OUR_MAX_BURST: u32 = 16_776_192;
const OUR_FIRST_BURST: u32 = 262_144;

/// Parameters in force on a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct SessionParams {
    pub header_digest: bool,
    pub data_digest: bool,
    /// Our MaxRecvDataSegmentLength (the most the target may send per PDU).
    pub max_recv_data_segment: u32,
    /// The target's MaxRecvDataSegmentLength: the most we may send per PDU.
    pub max_xmit_data_segment: u32,
    pub max_burst: u32,
    pub first_burst: u32,
    pub immediate_data: bool,
    pub initial_r2t: bool,
    pub max_outstanding_r2t: u32,
    pub data_pdu_in_order: bool,
    pub data_sequence_in_order: bool,
    pub error_recovery_level: u32,
    pub default_time2wait: u32,
    pub default_time2retain: u32,
    pub target_portal_group_tag: Option<u16>,
}

impl Default for SessionParams {
    /// RFC 7143 defaults, before negotiation.
    fn default() -> Self {
        SessionParams {
            header_digest: false,
            data_digest: false,
            max_recv_data_segment: 8192,
            max_xmit_data_segment: 8192,
            max_burst: 262_144,
            first_burst: 65_536,
            immediate_data: true,
            initial_r2t: true,
            max_outstanding_r2t: 1,
            data_pdu_in_order: true,
            data_sequence_in_order: true,
            error_recovery_level: 0,
            default_time2wait: 2,
            default_time2retain: 20,
            target_portal_group_tag: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NegotiationError {
    #[error("the target answered {key}={value}, which we did not offer ({offered})")]
    NotOffered { key: String, value: String, offered: String },
    #[error("the target refused {key}={offered} (answered {value})")]
    Refused { key: String, value: String, offered: String },
    #[error("the target answered {key}={value}: {why}")]
    Invalid { key: String, value: String, why: String },
}

/// The operational keys of a Normal session (Discovery sessions send the
/// digests and MaxRecvDataSegmentLength only).
pub fn operational_offer(opts: &InitiatorOptions, discovery: bool) -> TextParams {
    let mut k = TextParams::new();
    // Discovery carries a few text PDUs, and targets keep their digest
    // settings per target: a discovery session takes what it gets.
    let (hd, dd) = if discovery {
        (DigestPref::PreferNone, DigestPref::PreferNone)
    } else {
        (opts.header_digest, opts.data_digest)
    };
    k.push("HeaderDigest", hd.offer());
    k.push("DataDigest", dd.offer());
    k.push("MaxRecvDataSegmentLength", OUR_MAX_RECV.to_string());
    k.push("DefaultTime2Wait", "2");
    k.push("DefaultTime2Retain", "0");
    k.push("ErrorRecoveryLevel", "0");
    if !discovery {
        k.push("InitialR2T", "No");
        k.push("ImmediateData", "Yes");
        k.push("MaxBurstLength", OUR_MAX_BURST.to_string());
        k.push("FirstBurstLength", OUR_FIRST_BURST.to_string());
        k.push("MaxOutstandingR2T", "1");
        k.push("MaxConnections", "1");
        k.push("DataPDUInOrder", "Yes");
        k.push("DataSequenceInOrder", "Yes");
        k.push("IFMarker", "No");
        k.push("OFMarker", "No");
    }
    k
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn number(key: &str, v: &str, range: std::ops::RangeInclusive<u32>) -> Result<u32, NegotiationError> {
    match v.parse::<u32>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(NegotiationError::Invalid {
            key: key.into(),
            value: v.into(),
            why: format!("expected a number in {}..={}", range.start(), range.end()),
        }),
    }
}

/// Whether a value is one of the "nothing agreed" answers.
fn unanswered(v: &str) -> bool {
    matches!(v, "Reject" | "Irrelevant" | "NotUnderstood")
}

impl SessionParams {
    /// Applies the target's answers (and declarations) to what we
    /// `offered`. Returns the keys the target proposed on its own that we
    /// must answer in our next login request.
    pub fn apply(&mut self, offered: &TextParams, answers: &TextParams) -> Result<TextParams, NegotiationError> {
        let mut reply = TextParams::new();
        for (key, value) in answers.pairs() {
            let k = key.as_str();
            let v = value.as_str();
            let ours = offered.get(k);
            match k {
                "HeaderDigest" | "DataDigest" => {
                    let pref = match ours {
                        Some("None") => DigestPref::None,
                        Some("CRC32C") => DigestPref::Crc32c,
                        Some("CRC32C,None") => DigestPref::PreferCrc32c,
                        Some(_) => DigestPref::PreferNone,
                        None => {
                            // The target proposes: accept None, else CRC32C.
                            let pick = v.split(',').find(|d| *d == "None" || *d == "CRC32C").unwrap_or("Reject");
                            reply.push(k, pick);
                            if pick == "CRC32C" {
                                self.set_digest(k, true);
                            }
                            continue;
                        }
                    };
                    if unanswered(v) {
                        if pref == DigestPref::Crc32c {
                            return Err(NegotiationError::Refused {
                                key: k.into(),
                                value: v.into(),
                                offered: pref.offer().into(),
                            });
                        }
                        self.set_digest(k, false);
                    } else if pref.allows(v) {
                        self.set_digest(k, v == "CRC32C");
                    } else {
                        return Err(NegotiationError::NotOffered {
                            key: k.into(),
                            value: v.into(),
                            offered: pref.offer().into(),
                        });
                    }
                }
                "MaxRecvDataSegmentLength" => {
                    // Declarative: the most we may send the target per PDU.
                    self.max_xmit_data_segment = number(k, v, 512..=16_777_215)?;
                }
                "MaxBurstLength" | "FirstBurstLength" => {
                    if unanswered(v) {
                        continue;
                    }
                    let n = number(k, v, 512..=16_777_215)?;
                    let mine = ours.and_then(|o| o.parse::<u32>().ok()).unwrap_or(n);
                    let n = n.min(mine);
                    if k == "MaxBurstLength" {
                        self.max_burst = n;
                    } else {
                        self.first_burst = n;
                    }
                    if ours.is_none() {
                        reply.push(k, n.to_string());
                    }
                }
                "InitialR2T" | "ImmediateData" | "DataPDUInOrder" | "DataSequenceInOrder" | "IFMarker" | "OFMarker" => {
                    if unanswered(v) {
                        continue;
                    }
                    let theirs = yes_no(v).ok_or_else(|| NegotiationError::Invalid {
                        key: k.into(),
                        value: v.into(),
                        why: "expected Yes or No".into(),
                    })?;
                    // InitialR2T and the InOrder keys are OR, the others AND.
                    let or = matches!(k, "InitialR2T" | "DataPDUInOrder" | "DataSequenceInOrder");
                    let mine = ours.and_then(yes_no).unwrap_or(theirs);
                    let result = if or { mine || theirs } else { mine && theirs };
                    match k {
                        "InitialR2T" => self.initial_r2t = result,
                        "ImmediateData" => self.immediate_data = result,
                        "DataPDUInOrder" => self.data_pdu_in_order = result,
                        "DataSequenceInOrder" => self.data_sequence_in_order = result,
                        _ => {
                            if result {
                                return Err(NegotiationError::Invalid {
                                    key: k.into(),
                                    value: v.into(),
                                    why: "markers are not supported".into(),
                                });
                            }
                        }
                    }
                    if ours.is_none() {
                        reply.push(k, if result { "Yes" } else { "No" });
                    }
                }
                "MaxOutstandingR2T" | "ErrorRecoveryLevel" | "MaxConnections" | "DefaultTime2Retain" => {
                    if unanswered(v) {
                        continue;
                    }
                    let max = if k == "ErrorRecoveryLevel" { 2 } else { 65_535 };
                    let min = u32::from(k == "MaxOutstandingR2T" || k == "MaxConnections");
                    let n = number(k, v, min..=max)?;
                    let mine = ours.and_then(|o| o.parse::<u32>().ok()).unwrap_or(match k {
                        "ErrorRecoveryLevel" => 0,
                        "DefaultTime2Retain" => 0,
                        _ => 1,
                    });
                    let n = n.min(mine);
                    match k {
                        "MaxOutstandingR2T" => self.max_outstanding_r2t = n,
                        "ErrorRecoveryLevel" => self.error_recovery_level = n,
                        "DefaultTime2Retain" => self.default_time2retain = n,
                        _ => {}
                    }
                    if ours.is_none() {
                        reply.push(k, n.to_string());
                    }
                }
                "DefaultTime2Wait" => {
                    if unanswered(v) {
                        continue;
                    }
                    let n = number(k, v, 0..=3600)?;
                    let mine = ours.and_then(|o| o.parse::<u32>().ok()).unwrap_or(n);
                    self.default_time2wait = n.max(mine);
                    if ours.is_none() {
                        reply.push(k, self.default_time2wait.to_string());
                    }
                }
                "TargetPortalGroupTag" => {
                    self.target_portal_group_tag = v.parse().ok();
                }
                // Declarations and login-stage keys.
                "TargetAlias" | "TargetAddress" | "TargetName" | "AuthMethod" | "SessionType" => {}
                k if k.starts_with("CHAP_") => {}
                // Anything else the target proposes we do not know.
                _ if ours.is_none() && !unanswered(v) => reply.push(k, "NotUnderstood"),
                _ => {}
            }
        }
        self.max_recv_data_segment =
            offered.get("MaxRecvDataSegmentLength").and_then(|v| v.parse().ok()).unwrap_or(self.max_recv_data_segment);
        if self.first_burst > self.max_burst {
            self.first_burst = self.max_burst;
        }
        Ok(reply)
    }

    fn set_digest(&mut self, key: &str, on: bool) {
        if key == "HeaderDigest" {
            self.header_digest = on;
        } else {
            self.data_digest = on;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> TextParams {
        TextParams::parse(s.replace('|', "\0").as_bytes()).unwrap()
    }

    fn opts() -> InitiatorOptions {
        InitiatorOptions::new("iqn.2024-01.test:me")
    }

    /// tgt 1.0.85's answer to our offer (captured).
    #[test]
    fn tgt_answer() {
        let offer = operational_offer(&opts(), false);
        let mut p = SessionParams::default();
        let reply = p
            .apply(&offer, &keys("HeaderDigest=None|DataDigest=None|MaxRecvDataSegmentLength=8192|DefaultTime2Wait=2|DefaultTime2Retain=0|ErrorRecoveryLevel=0|InitialR2T=No|ImmediateData=Yes|MaxBurstLength=262144|FirstBurstLength=65536|MaxOutstandingR2T=1|MaxConnections=1|DataPDUInOrder=Yes|DataSequenceInOrder=Yes|IFMarker=No|OFMarker=No|TargetPortalGroupTag=1|"))
            .unwrap();
        assert!(reply.is_empty());
        assert_eq!(p.max_xmit_data_segment, 8192);
        assert_eq!(p.max_recv_data_segment, OUR_MAX_RECV);
        assert_eq!((p.max_burst, p.first_burst), (262_144, 65_536));
        assert!(!p.initial_r2t && p.immediate_data && !p.header_digest);
        assert_eq!(p.default_time2retain, 0);
        assert_eq!(p.target_portal_group_tag, Some(1));
    }

    #[test]
    fn digests_rules() {
        let mut o = opts();
        o.header_digest = DigestPref::Crc32c;
        o.data_digest = DigestPref::PreferCrc32c;
        let offer = operational_offer(&o, false);
        let mut p = SessionParams::default();
        p.apply(&offer, &keys("HeaderDigest=CRC32C|DataDigest=None|")).unwrap();
        assert!(p.header_digest && !p.data_digest);
        assert!(matches!(
            SessionParams::default().apply(&offer, &keys("HeaderDigest=Reject|")),
            Err(NegotiationError::Refused { .. })
        ));
        let plain = operational_offer(&opts(), false);
        let mut p = SessionParams::default();
        p.apply(&plain, &keys("HeaderDigest=CRC32C|")).unwrap();
        assert!(p.header_digest, "None,CRC32C lets the target choose CRC32C");
        let mut none = opts();
        none.header_digest = DigestPref::None;
        assert!(matches!(
            SessionParams::default().apply(&operational_offer(&none, false), &keys("HeaderDigest=CRC32C|")),
            Err(NegotiationError::NotOffered { .. })
        ));
    }

    #[test]
    fn target_proposals_get_answers_and_bad_values_are_named() {
        let offer = operational_offer(&opts(), true);
        let mut p = SessionParams::default();
        let reply = p.apply(&offer, &keys("MaxBurstLength=1048576|X-com.vendor.Thing=1|InitialR2T=Yes|")).unwrap();
        assert_eq!(reply.get("MaxBurstLength"), Some("1048576"));
        assert_eq!(reply.get("X-com.vendor.Thing"), Some("NotUnderstood"));
        assert_eq!(reply.get("InitialR2T"), Some("Yes"));
        let e = SessionParams::default().apply(&offer, &keys("MaxRecvDataSegmentLength=12|")).unwrap_err();
        assert!(e.to_string().contains("MaxRecvDataSegmentLength=12"), "{e}");
        let e = SessionParams::default().apply(&offer, &keys("ErrorRecoveryLevel=7|")).unwrap_err();
        assert!(matches!(e, NegotiationError::Invalid { .. }));
        let mut p = SessionParams::default();
        p.apply(&operational_offer(&opts(), false), &keys("FirstBurstLength=1048576|MaxBurstLength=65536|")).unwrap();
        assert_eq!((p.first_burst, p.max_burst), (65_536, 65_536), "first burst never exceeds max burst");
    }
}
