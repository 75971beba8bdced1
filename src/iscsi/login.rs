//! Login Request and Login Response (RFC 7143 11.12, 11.13) and the login
//! status codes (11.13.5).

use super::bhs::{Bhs, Opcode};
use super::pdu::Pdu;
use super::FieldError;

/// Login stages (CSG/NSG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    Security,
    Operational,
    FullFeature,
}

impl Stage {
    pub fn from_bits(v: u8) -> Result<Stage, FieldError> {
        match v & 3 {
            0 => Ok(Stage::Security),
            1 => Ok(Stage::Operational),
            3 => Ok(Stage::FullFeature),
            _ => Err(FieldError::Invalid { field: "CSG/NSG", detail: "stage 2 is reserved".into() }),
        }
    }

    pub fn bits(self) -> u8 {
        match self {
            Stage::Security => 0,
            Stage::Operational => 1,
            Stage::FullFeature => 3,
        }
    }
}

const T_BIT: u8 = 0x80;
const C_BIT: u8 = 0x40;

fn check_op(bhs: &Bhs, expected: Opcode) -> Result<(), FieldError> {
    if bhs.opcode() != Some(expected) {
        return Err(FieldError::WrongOpcode { expected, got: bhs.opcode_raw() });
    }
    Ok(())
}

/// A Login Request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginRequest {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_min: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub cid: u16,
    pub cmdsn: u32,
    pub exp_statsn: u32,
    /// Text key=value data (possibly partial when `cont`).
    pub data: Vec<u8>,
}

impl LoginRequest {
    /// A request of a new session (TSIH 0, connection 0, version 0) moving
    /// from `csg` to `nsg`. CmdSN and ExpStatSN start at 0; set them as
    /// the session goes on.
    pub fn opening(isid: [u8; 6], itt: u32, csg: Stage, nsg: Stage, data: Vec<u8>) -> Self {
        LoginRequest {
            transit: true,
            cont: false,
            csg,
            nsg,
            version_max: 0,
            version_min: 0,
            isid,
            tsih: 0,
            itt,
            cid: 0,
            cmdsn: 0,
            exp_statsn: 0,
            data,
        }
    }

    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        check_op(&p.bhs, Opcode::LoginRequest)?;
        let f = p.bhs.flags();
        let transit = f & T_BIT != 0;
        let cont = f & C_BIT != 0;
        if transit && cont {
            return Err(FieldError::Invalid { field: "flags", detail: "T and C both set".into() });
        }
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&p.bhs.0[8..14]);
        Ok(LoginRequest {
            transit,
            cont,
            csg: Stage::from_bits(f >> 2)?,
            nsg: Stage::from_bits(f)?,
            version_max: p.bhs.0[2],
            version_min: p.bhs.0[3],
            isid,
            tsih: p.bhs.u16_at(14),
            itt: p.bhs.itt(),
            cid: p.bhs.u16_at(20),
            cmdsn: p.bhs.u32_at(24),
            exp_statsn: p.bhs.u32_at(28),
            data: p.data.clone(),
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::LoginRequest);
        b.set_immediate(true);
        let mut f = (self.csg.bits() << 2) | if self.transit { T_BIT | self.nsg.bits() } else { 0 };
        if self.cont {
            f |= C_BIT;
        }
        b.set_flags(f);
        b.0[2] = self.version_max;
        b.0[3] = self.version_min;
        b.0[8..14].copy_from_slice(&self.isid);
        b.set_u16(14, self.tsih);
        b.set_itt(self.itt);
        b.set_u16(20, self.cid);
        b.set_u32(24, self.cmdsn);
        b.set_u32(28, self.exp_statsn);
        Pdu::new(b, self.data.clone())
    }
}

/// Login status: class (high byte) and detail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoginStatus(pub u16);

impl LoginStatus {
    pub const SUCCESS: LoginStatus = LoginStatus(0x0000);
    pub const TARGET_MOVED_TEMPORARILY: LoginStatus = LoginStatus(0x0101);
    pub const TARGET_MOVED_PERMANENTLY: LoginStatus = LoginStatus(0x0102);
    pub const INITIATOR_ERROR: LoginStatus = LoginStatus(0x0200);
    pub const AUTHENTICATION_FAILURE: LoginStatus = LoginStatus(0x0201);
    pub const AUTHORIZATION_FAILURE: LoginStatus = LoginStatus(0x0202);
    pub const NOT_FOUND: LoginStatus = LoginStatus(0x0203);
    pub const TARGET_REMOVED: LoginStatus = LoginStatus(0x0204);
    pub const UNSUPPORTED_VERSION: LoginStatus = LoginStatus(0x0205);
    pub const TOO_MANY_CONNECTIONS: LoginStatus = LoginStatus(0x0206);
    pub const MISSING_PARAMETER: LoginStatus = LoginStatus(0x0207);
    pub const CANT_INCLUDE_IN_SESSION: LoginStatus = LoginStatus(0x0208);
    pub const SESSION_TYPE_NOT_SUPPORTED: LoginStatus = LoginStatus(0x0209);
    pub const SESSION_DOES_NOT_EXIST: LoginStatus = LoginStatus(0x020a);
    pub const INVALID_DURING_LOGIN: LoginStatus = LoginStatus(0x020b);
    pub const TARGET_ERROR: LoginStatus = LoginStatus(0x0300);
    pub const SERVICE_UNAVAILABLE: LoginStatus = LoginStatus(0x0301);
    pub const OUT_OF_RESOURCES: LoginStatus = LoginStatus(0x0302);

    pub fn class(self) -> u8 {
        (self.0 >> 8) as u8
    }

    pub fn detail(self) -> u8 {
        self.0 as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::SUCCESS => "success",
            Self::TARGET_MOVED_TEMPORARILY => "target moved temporarily",
            Self::TARGET_MOVED_PERMANENTLY => "target moved permanently",
            Self::INITIATOR_ERROR => "initiator error",
            Self::AUTHENTICATION_FAILURE => "authentication failure",
            Self::AUTHORIZATION_FAILURE => "authorization failure",
            Self::NOT_FOUND => "not found",
            Self::TARGET_REMOVED => "target removed",
            Self::UNSUPPORTED_VERSION => "unsupported version",
            Self::TOO_MANY_CONNECTIONS => "too many connections",
            Self::MISSING_PARAMETER => "missing parameter",
            Self::CANT_INCLUDE_IN_SESSION => "cannot include in session",
            Self::SESSION_TYPE_NOT_SUPPORTED => "session type not supported",
            Self::SESSION_DOES_NOT_EXIST => "session does not exist",
            Self::INVALID_DURING_LOGIN => "invalid request during login",
            Self::TARGET_ERROR => "target error",
            Self::SERVICE_UNAVAILABLE => "service unavailable",
            Self::OUT_OF_RESOURCES => "out of resources",
            _ => "unknown status",
        }
    }
}

impl std::fmt::Display for LoginStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04x} ({})", self.0, self.name())
    }
}

/// A Login Response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginResponse {
    pub transit: bool,
    pub cont: bool,
    pub csg: Stage,
    pub nsg: Stage,
    pub version_max: u8,
    pub version_active: u8,
    pub isid: [u8; 6],
    pub tsih: u16,
    pub itt: u32,
    pub statsn: u32,
    pub exp_cmdsn: u32,
    pub max_cmdsn: u32,
    pub status: LoginStatus,
    pub data: Vec<u8>,
}

impl LoginResponse {
    /// A response to `req` with the sequence numbers a fresh connection uses.
    pub fn answering(req: &LoginRequest, status: LoginStatus, data: Vec<u8>) -> LoginResponse {
        LoginResponse {
            transit: false,
            cont: false,
            csg: req.csg,
            nsg: req.csg,
            version_max: 0,
            version_active: 0,
            isid: req.isid,
            tsih: 0,
            itt: req.itt,
            statsn: req.exp_statsn,
            exp_cmdsn: req.cmdsn,
            max_cmdsn: req.cmdsn,
            status,
            data,
        }
    }

    pub fn from_pdu(p: &Pdu) -> Result<Self, FieldError> {
        check_op(&p.bhs, Opcode::LoginResponse)?;
        let f = p.bhs.flags();
        let mut isid = [0u8; 6];
        isid.copy_from_slice(&p.bhs.0[8..14]);
        Ok(LoginResponse {
            transit: f & T_BIT != 0,
            cont: f & C_BIT != 0,
            csg: Stage::from_bits(f >> 2)?,
            nsg: Stage::from_bits(f)?,
            version_max: p.bhs.0[2],
            version_active: p.bhs.0[3],
            isid,
            tsih: p.bhs.u16_at(14),
            itt: p.bhs.itt(),
            statsn: p.bhs.u32_at(24),
            exp_cmdsn: p.bhs.u32_at(28),
            max_cmdsn: p.bhs.u32_at(32),
            status: LoginStatus(p.bhs.u16_at(36)),
            data: p.data.clone(),
        })
    }

    pub fn to_pdu(&self) -> Pdu {
        let mut b = Bhs::new(Opcode::LoginResponse);
        let mut f = self.csg.bits() << 2;
        if self.transit {
            f |= T_BIT | self.nsg.bits();
        }
        if self.cont {
            f |= C_BIT;
        }
        b.set_flags(f);
        b.0[2] = self.version_max;
        b.0[3] = self.version_active;
        b.0[8..14].copy_from_slice(&self.isid);
        b.set_u16(14, self.tsih);
        b.set_itt(self.itt);
        b.set_u32(24, self.statsn);
        b.set_u32(28, self.exp_cmdsn);
        b.set_u32(32, self.max_cmdsn);
        b.set_u16(36, self.status.0);
        Pdu::new(b, self.data.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::iscsi::pdu::{decode, encode, DecodeLimits, Digests};

    /// The first login PDU libiscsi 1.19 sent in a capture (flags 0x87).
    #[test]
    fn decodes_a_captured_libiscsi_login() {
        let mut b = Bhs::new(Opcode::LoginRequest);
        b.set_immediate(true);
        b.set_flags(0x87);
        b.0[8..14].copy_from_slice(&[0x80, 0xee, 0xa2, 0x50, 0, 0]);
        let pdu = Pdu::new(b, b"InitiatorName=iqn.x\0SessionType=Discovery\0".to_vec());
        let bytes = encode(&pdu, Digests::default());
        assert_eq!(bytes[0], 0x43);
        let (p, _) = decode(&bytes, &DecodeLimits::default()).unwrap().unwrap();
        let req = LoginRequest::from_pdu(&p).unwrap();
        assert!(req.transit && !req.cont);
        assert_eq!((req.csg, req.nsg), (Stage::Operational, Stage::FullFeature));
        assert_eq!(req.isid, [0x80, 0xee, 0xa2, 0x50, 0, 0]);
        assert_eq!(encode(&req.to_pdu(), Digests::default()), bytes);
    }

    #[test]
    fn redirect_response_layout() {
        let req = LoginRequest {
            cmdsn: 9,
            exp_statsn: 3,
            ..LoginRequest::opening([1, 2, 3, 4, 5, 6], 0x1234, Stage::Security, Stage::Operational, vec![])
        };
        let rsp = LoginResponse::answering(
            &req,
            LoginStatus::TARGET_MOVED_TEMPORARILY,
            b"TargetAddress=127.0.0.2:3260,1\0".to_vec(),
        );
        let p = rsp.to_pdu();
        assert_eq!(p.bhs.0[0], 0x23);
        assert_eq!(&p.bhs.0[36..38], &[1, 1]);
        assert_eq!(p.bhs.itt(), 0x1234);
        assert_eq!(LoginResponse::from_pdu(&p).unwrap(), rsp);
        assert_eq!(LoginStatus::TARGET_MOVED_TEMPORARILY.to_string(), "0x0101 (target moved temporarily)");
    }

    #[test]
    fn bad_fields_are_named() {
        let mut b = Bhs::new(Opcode::LoginRequest);
        b.set_flags(0xc0);
        assert!(matches!(
            LoginRequest::from_pdu(&Pdu::new(b, vec![])),
            Err(FieldError::Invalid { field: "flags", .. })
        ));
        b.set_flags(0x08);
        assert!(matches!(
            LoginRequest::from_pdu(&Pdu::new(b, vec![])),
            Err(FieldError::Invalid { field: "CSG/NSG", .. })
        ));
        let t = Bhs::new(Opcode::TextRequest);
        assert!(matches!(LoginRequest::from_pdu(&Pdu::new(t, vec![])), Err(FieldError::WrongOpcode { .. })));
    }
}
