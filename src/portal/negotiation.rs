//! Target-side login negotiation for discovery sessions (RFC 7143 6, 13):
//! the answer to each key an initiator offers, and what is in force after.
//! Pure: keys in, keys out.
//!
//! Digests: an initiator offering "None" gets None; one that insists on
//! CRC32C gets CRC32C, and the portal then checks and sends digests on
//! every PDU after the login phase.

use crate::iscsi::login::LoginStatus;
use crate::iscsi::text::TextParams;

/// What the portal offers for the session-wide keys (values close to
/// tgt's, which libiscsi and open-iscsi both accept).
const OUR_INITIAL_R2T: bool = true;
const OUR_IMMEDIATE_DATA: bool = true;
const OUR_MAX_BURST: u32 = 262_144;
const OUR_FIRST_BURST: u32 = 65_536;
const OUR_TIME2WAIT: u32 = 2;
const OUR_TIME2RETAIN: u32 = 0;

/// What is in force on the connection after negotiation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Negotiated {
    pub header_digest: bool,
    pub data_digest: bool,
    /// The initiator's MaxRecvDataSegmentLength: the most we may send it.
    pub peer_max_recv: u32,
}

impl Default for Negotiated {
    fn default() -> Self {
        Negotiated { header_digest: false, data_digest: false, peer_max_recv: 8192 }
    }
}

fn yes_no(v: &str) -> Option<bool> {
    match v {
        "Yes" => Some(true),
        "No" => Some(false),
        _ => None,
    }
}

fn yn(b: bool) -> &'static str {
    if b {
        "Yes"
    } else {
        "No"
    }
}

/// Keys the initiator declares and we take note of without answering.
const DECLARATIVE: &[&str] = &["InitiatorName", "InitiatorAlias", "SessionType", "TargetName"];

/// The security stage: only AuthMethod=None is offered (the portal carries
/// no data; the nodes authenticate the real session).
pub fn negotiate_security(keys: &TextParams) -> Result<TextParams, LoginStatus> {
    let mut out = TextParams::new();
    for (k, v) in keys.pairs() {
        match k.as_str() {
            "AuthMethod" => {
                if v.split(',').any(|m| m == "None") {
                    out.push("AuthMethod", "None");
                } else {
                    return Err(LoginStatus::AUTHENTICATION_FAILURE);
                }
            }
            k if DECLARATIVE.contains(&k) => {}
            // Operational keys may already appear here; answer them later.
            _ => {}
        }
    }
    Ok(out)
}

/// The operational stage: answers every key, updating `state`.
pub fn negotiate_operational(keys: &TextParams, our_max_recv: u32, state: &mut Negotiated) -> TextParams {
    let mut out = TextParams::new();
    for (k, v) in keys.pairs() {
        let key = k.as_str();
        let answer: Option<String> = match key {
            "HeaderDigest" | "DataDigest" => {
                let pick = v.split(',').find(|d| *d == "None" || *d == "CRC32C");
                if let Some(d) = pick {
                    let on = d == "CRC32C";
                    if key == "HeaderDigest" {
                        state.header_digest = on;
                    } else {
                        state.data_digest = on;
                    }
                }
                Some(pick.unwrap_or("Reject").to_string())
            }
            "MaxRecvDataSegmentLength" => {
                match v.parse::<u32>() {
                    Ok(n) if (512..=16_777_215).contains(&n) => state.peer_max_recv = n,
                    _ => {
                        out.push(key, "Reject");
                        continue;
                    }
                }
                // Declarative both ways: we declare ours separately.
                None
            }
            "InitialR2T" | "DataPDUInOrder" | "DataSequenceInOrder" => {
                let ours = if key == "InitialR2T" { OUR_INITIAL_R2T } else { true };
                Some(yes_no(v).map_or("Reject", |theirs| yn(theirs || ours)).to_string())
            }
            "ImmediateData" | "IFMarker" | "OFMarker" => {
                let ours = key == "ImmediateData" && OUR_IMMEDIATE_DATA;
                Some(yes_no(v).map_or("Reject", |theirs| yn(theirs && ours)).to_string())
            }
            "MaxBurstLength" | "FirstBurstLength" | "MaxOutstandingR2T" | "ErrorRecoveryLevel" | "MaxConnections"
            | "DefaultTime2Retain" => {
                let ours = match key {
                    "MaxBurstLength" => OUR_MAX_BURST,
                    "FirstBurstLength" => OUR_FIRST_BURST,
                    "DefaultTime2Retain" => OUR_TIME2RETAIN,
                    "ErrorRecoveryLevel" => 0,
                    _ => 1,
                };
                Some(v.parse::<u32>().map_or("Reject".to_string(), |theirs| theirs.min(ours).to_string()))
            }
            "DefaultTime2Wait" => {
                Some(v.parse::<u32>().map_or("Reject".to_string(), |theirs| theirs.max(OUR_TIME2WAIT).to_string()))
            }
            k if DECLARATIVE.contains(&k) => None,
            "AuthMethod" => Some("None".to_string()),
            _ => Some("NotUnderstood".to_string()),
        };
        if let Some(a) = answer {
            out.push(key, a);
        }
    }
    out.push("MaxRecvDataSegmentLength", our_max_recv.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(s: &str) -> TextParams {
        TextParams::parse(s.replace('|', "\0").as_bytes()).unwrap()
    }

    #[test]
    fn answers_the_captured_libiscsi_offer() {
        let offer = keys("InitiatorName=iqn.x|SessionType=Discovery|HeaderDigest=None,CRC32C|DataDigest=None|InitialR2T=No|ImmediateData=Yes|MaxBurstLength=262144|FirstBurstLength=262144|DefaultTime2Wait=2|DefaultTime2Retain=0|MaxOutstandingR2T=1|ErrorRecoveryLevel=0|IFMarker=No|OFMarker=No|MaxConnections=1|MaxRecvDataSegmentLength=262144|DataPDUInOrder=Yes|DataSequenceInOrder=Yes|");
        let mut st = Negotiated::default();
        let ans = negotiate_operational(&offer, 65536, &mut st);
        let want = [
            ("HeaderDigest", "None"),
            ("DataDigest", "None"),
            ("InitialR2T", "Yes"),
            ("ImmediateData", "Yes"),
            ("MaxBurstLength", "262144"),
            ("FirstBurstLength", "65536"),
            ("DefaultTime2Wait", "2"),
            ("DefaultTime2Retain", "0"),
            ("MaxOutstandingR2T", "1"),
            ("ErrorRecoveryLevel", "0"),
            ("IFMarker", "No"),
            ("OFMarker", "No"),
            ("MaxConnections", "1"),
            ("DataPDUInOrder", "Yes"),
            ("DataSequenceInOrder", "Yes"),
            ("MaxRecvDataSegmentLength", "65536"),
        ];
        for (k, v) in want {
            assert_eq!(ans.get(k), Some(v), "{k}");
        }
        assert_eq!(ans.get("InitiatorName"), None);
        assert_eq!(st, Negotiated { header_digest: false, data_digest: false, peer_max_recv: 262_144 });
    }

    #[test]
    fn insisting_on_crc32c_gets_it_and_garbage_gets_reject() {
        let mut st = Negotiated::default();
        let ans = negotiate_operational(
            &keys("HeaderDigest=CRC32C|DataDigest=CRC32C|MaxRecvDataSegmentLength=100|X-Vendor=1|MaxBurstLength=lots|"),
            8192,
            &mut st,
        );
        assert_eq!(ans.get("HeaderDigest"), Some("CRC32C"));
        assert!(st.header_digest && st.data_digest);
        assert_eq!(st.peer_max_recv, 8192, "an out-of-range declaration is refused");
        assert_eq!(ans.get("X-Vendor"), Some("NotUnderstood"));
        assert_eq!(ans.get("MaxBurstLength"), Some("Reject"));
        let ans = negotiate_operational(&keys("HeaderDigest=MD5|"), 8192, &mut Negotiated::default());
        assert_eq!(ans.get("HeaderDigest"), Some("Reject"));
    }

    #[test]
    fn security_stage() {
        assert_eq!(
            negotiate_security(&keys("AuthMethod=CHAP,None|InitiatorName=iqn.x|")).unwrap().get("AuthMethod"),
            Some("None")
        );
        assert_eq!(negotiate_security(&keys("AuthMethod=CHAP|")), Err(LoginStatus::AUTHENTICATION_FAILURE));
        assert!(negotiate_security(&keys("InitiatorName=iqn.x|")).unwrap().is_empty());
    }
}
