//! Whatever bytes arrive on the portal's sockets: decoding never panics
//! under any digest setting, a decoded PDU re-encodes to bytes that decode
//! to the same PDU, and the typed views, text parser and login negotiation
//! accept or refuse it without panicking. Seeds: real captures
//! (fuzz/seeds/iscsi_pdu, libiscsi, open-iscsi, tgt and the portal).
#![no_main]

use libfuzzer_sys::fuzz_target;
use santools::iscsi::login::{LoginRequest, LoginResponse};
use santools::iscsi::logout::{LogoutRequest, LogoutResponse};
use santools::iscsi::nop::NopOut;
use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests};
use santools::iscsi::target_address::TargetAddress;
use santools::iscsi::text::{split_text, TextParams};
use santools::iscsi::text_pdu::{TextRequest, TextResponse};
use santools::portal::negotiation::{negotiate_operational, negotiate_security, Negotiated};

fuzz_target!(|data: &[u8]| {
    for (header, data_digest, max) in [(false, false, 262_144), (true, true, 8192), (true, false, 512), (false, true, 48)] {
        let digests = Digests { header, data: data_digest };
        let limits = DecodeLimits { max_data_segment: max, digests };
        let Ok(Some((pdu, used))) = decode(data, &limits) else { continue };
        assert!(used <= data.len());
        let again = encode(&pdu, digests);
        let (back, n) = decode(&again, &limits).expect("re-encoded PDU decodes").expect("complete");
        assert_eq!(n, again.len());
        assert_eq!(back.data, pdu.data);
        assert_eq!(back.ahs.len(), pdu.ahs.len());
        let _ = pdu.ahs_entries();
        let _ = LoginRequest::from_pdu(&pdu).map(|r| r.to_pdu());
        let _ = LoginResponse::from_pdu(&pdu).map(|r| r.to_pdu());
        let _ = TextRequest::from_pdu(&pdu).map(|r| r.to_pdu());
        let _ = TextResponse::from_pdu(&pdu).map(|r| r.to_pdu());
        let _ = LogoutRequest::from_pdu(&pdu).map(|r| r.to_pdu());
        let _ = LogoutResponse::from_pdu(&pdu).map(|r| r.to_pdu());
        let _ = NopOut::from_pdu(&pdu);
        if let Ok(keys) = TextParams::parse(&pdu.data) {
            let _ = negotiate_security(&keys);
            let _ = negotiate_operational(&keys, 8192, &mut Negotiated::default());
            for (_, v) in keys.pairs() {
                let _ = TargetAddress::parse(v);
            }
            let bytes = keys.to_bytes();
            let joined: Vec<u8> = split_text(&bytes, 100).into_iter().flat_map(|(c, _)| c.to_vec()).collect();
            assert_eq!(joined, bytes);
        }
    }
});
