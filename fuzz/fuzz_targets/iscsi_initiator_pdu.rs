//! Whatever a target sends an initiator: the PDU decoders of the full
//! feature phase (SCSI Response, Data-In, R2T, Async Message, NOP-In,
//! Reject, and the initiator's own SCSI Command, Data-Out, NOP-Out) never
//! panic, and every PDU they accept re-encodes to one that decodes to the
//! same value (decode -> encode -> decode). The same bytes feed the SCSI
//! parsers (sense, INQUIRY, READ CAPACITY, REPORT LUNS), the CHAP value
//! decoder, the login negotiation and the URL parser.
//! Seeds: fuzz/seeds/iscsi_initiator_pdu (captured from tgt).
#![no_main]

use libfuzzer_sys::fuzz_target;
use santools::initiator::chap::parse_binary;
use santools::initiator::negotiate::{operational_offer, SessionParams};
use santools::initiator::{InitiatorOptions, IscsiUrl};
use santools::iscsi::async_message::AsyncMessage;
use santools::iscsi::data_pdu::{DataIn, DataOut, R2t};
use santools::iscsi::nop::{NopIn, NopOut};
use santools::iscsi::pdu::{decode, encode, DecodeLimits, Digests};
use santools::iscsi::reject::RejectNotice;
use santools::iscsi::scsi_pdu::{ScsiCommand, ScsiResponse};
use santools::iscsi::text::TextParams;
use santools::scsi::data::{
    lun_identifiers, parse_device_identification, parse_report_luns, BlockLimits, Capacity, Inquiry,
};
use santools::scsi::sense::Sense;

macro_rules! round_trip {
    ($ty:ty, $pdu:expr) => {
        if let Ok(v) = <$ty>::from_pdu($pdu) {
            let again = <$ty>::from_pdu(&v.to_pdu()).expect(concat!(stringify!($ty), " re-encodes to a valid PDU"));
            assert_eq!(again, v, concat!(stringify!($ty), ": decode -> encode -> decode changed it"));
        }
    };
}

fuzz_target!(|data: &[u8]| {
    for (header, data_digest, max) in [(false, false, 262_144), (true, true, 8192), (false, true, 64)] {
        let digests = Digests { header, data: data_digest };
        let limits = DecodeLimits { max_data_segment: max, digests };
        let Ok(Some((pdu, _))) = decode(data, &limits) else { continue };
        let again = encode(&pdu, digests);
        let (back, _) = decode(&again, &limits).expect("re-encoded PDU decodes").expect("complete");
        assert_eq!(back.data, pdu.data);
        round_trip!(ScsiCommand, &pdu);
        round_trip!(ScsiResponse, &pdu);
        round_trip!(DataIn, &pdu);
        round_trip!(DataOut, &pdu);
        round_trip!(R2t, &pdu);
        round_trip!(AsyncMessage, &pdu);
        round_trip!(NopIn, &pdu);
        round_trip!(RejectNotice, &pdu);
        if let Ok(n) = NopOut::from_pdu(&pdu) {
            let _ = n.to_pdu();
        }
        if let Ok(d) = DataIn::from_bhs(&pdu.bhs) {
            assert_eq!(d.itt, pdu.bhs.itt());
        }
        if let Ok(r) = ScsiResponse::from_pdu(&pdu) {
            let _ = Sense::parse(&r.sense).map(|s| s.to_string());
        }
    }
    let _ = Sense::parse(data).map(|s| s.to_string());
    let _ = Inquiry::parse(data);
    let _ = Capacity::parse_10(data);
    let _ = Capacity::parse_16(data);
    let _ = BlockLimits::parse(data);
    let _ = parse_report_luns(data);
    if let Ok(d) = parse_device_identification(data) {
        for id in lun_identifiers(&d) {
            // Identities go into key=value stats files: never '=', space or newline.
            assert!(!id.contains(['=', ' ', '\n']), "{id}");
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = parse_binary(s);
        if let Ok(u) = IscsiUrl::parse(s) {
            // A URL that parses prints (redacted) and parses again the same.
            let shown = u.to_string();
            if !u.has_password() {
                assert_eq!(IscsiUrl::parse(&shown).as_ref(), Ok(&u), "{shown}");
            }
        }
    }
    if let Ok(keys) = TextParams::parse(data) {
        let opts = InitiatorOptions::new("iqn.2024-01.fuzz:initiator");
        for discovery in [false, true] {
            let offered = operational_offer(&opts, discovery);
            let mut p = SessionParams::default();
            if p.apply(&offered, &keys).is_ok() {
                assert!(p.first_burst <= p.max_burst);
            }
        }
    }
});
