//! The initiator's user-facing surfaces as a new user meets them: a wrong
//! port, a peer that is no iSCSI target. (Secrets in messages: the unit
//! tests of initiator::url and config, and archive_iscsi.rs.)

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::helpers::*;
use crate::initiator::listener_on_free_address;

const ME: &str = "iqn.2024-01.test:newuser";

/// A web server where the user expected a portal (a wrong port): the error
/// says the peer does not speak iSCSI and quotes its answer, instead of
/// "data segment of 3223089 bytes exceeds the negotiated maximum" (the
/// length field of "HTTP/1.1"); exit 2, at once, nothing created.
#[test]
fn a_port_that_answers_http_is_said_not_to_speak_iscsi() {
    let l = listener_on_free_address(8080);
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        }
    });
    let d = tempfile::tempdir().unwrap();
    let lun = format!("iscsi://{addr}/iqn.2024-01.test:vol/1");
    let sums = d.path().join("sums");
    let runs: [Vec<String>; 2] = [
        vec!["iscsi-ls".into(), "-i".into(), ME.into(), format!("iscsi://{addr}")],
        vec![
            "ddless".into(),
            "--initiator-name".into(),
            ME.into(),
            "-s".into(),
            lun,
            "-c".into(),
            sums.display().to_string(),
            "-t".into(),
            d.path().join("img").display().to_string(),
        ],
    ];
    for args in runs {
        let t = Instant::now();
        let o = run(tool(&args[0]).args(&args[1..]));
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("does not speak iSCSI") && err.contains("HTTP/1.1 400 Bad Request"), "{args:?}: {err}");
        assert!(!err.contains("exceeds the negotiated maximum"), "{err}");
        assert!(t.elapsed() < Duration::from_secs(20), "{args:?} took {:?}", t.elapsed());
    }
    assert_eq!(std::fs::read_dir(d.path()).unwrap().count(), 0, "a refused run created files");
}
