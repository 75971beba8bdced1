//! Golden PDUs: every PDU captured from real peers (libiscsi, open-iscsi,
//! tgt, and the portal itself; fuzz/seeds/iscsi_pdu) decodes, re-encodes
//! to the very same bytes, and reads as its typed message.

use santools::iscsi::bhs::Opcode;
use santools::iscsi::login::{LoginRequest, LoginResponse, LoginStatus};
use santools::iscsi::logout::{LogoutRequest, LogoutResponse};
use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests};
use santools::iscsi::text::TextParams;
use santools::iscsi::text_pdu::{TextRequest, TextResponse};

#[test]
fn captured_pdus_round_trip_both_ways() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/iscsi_pdu");
    let limits = DecodeLimits { max_data_segment: 262_144, digests: Digests::default() };
    let mut seen = std::collections::BTreeMap::<String, usize>::new();
    let mut redirects = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        let (pdu, n) = decode(&bytes, &limits).unwrap().unwrap_or_else(|| panic!("{}: incomplete", path.display()));
        assert_eq!(n, bytes.len(), "{}", path.display());
        assert_eq!(encode(&pdu, Digests::default()), bytes, "{}: re-encoding changed the bytes", path.display());
        let op = pdu.bhs.opcode().unwrap_or_else(|| panic!("{}: unknown opcode", path.display()));
        *seen.entry(format!("{op:?}")).or_default() += 1;
        let ctx = path.display().to_string();
        match op {
            Opcode::LoginRequest => {
                let r = LoginRequest::from_pdu(&pdu).expect(&ctx);
                let keys = TextParams::parse(&r.data).expect(&ctx);
                assert!(keys.get("InitiatorName").is_some(), "{ctx}");
                assert_eq!(encode(&r.to_pdu(), Digests::default()), bytes, "{ctx}");
            }
            Opcode::LoginResponse => {
                let r = LoginResponse::from_pdu(&pdu).expect(&ctx);
                if r.status == LoginStatus::TARGET_MOVED_TEMPORARILY {
                    redirects += 1;
                    assert!(TextParams::parse(&r.data).unwrap().get("TargetAddress").unwrap().contains(':'), "{ctx}");
                }
                assert_eq!(encode(&r.to_pdu(), Digests::default()), bytes, "{ctx}");
            }
            Opcode::TextRequest => {
                let r = TextRequest::from_pdu(&pdu).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), bytes, "{ctx}");
            }
            Opcode::TextResponse => {
                let r = TextResponse::from_pdu(&pdu).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), bytes, "{ctx}");
            }
            Opcode::LogoutRequest => {
                let r = LogoutRequest::from_pdu(&pdu).expect(&ctx);
                assert_eq!(encode(&r.to_pdu(), Digests::default()), bytes, "{ctx}");
            }
            Opcode::LogoutResponse => {
                LogoutResponse::from_pdu(&pdu).expect(&ctx);
            }
            _ => {}
        }
    }
    for op in ["LoginRequest", "LoginResponse", "TextRequest", "TextResponse", "LogoutRequest", "LogoutResponse"] {
        assert!(seen.contains_key(op), "no captured {op}: {seen:?}");
    }
    assert!(redirects >= 1, "the captures include the portal's redirect");
}
