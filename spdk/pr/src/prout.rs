//! PERSISTENT RESERVE OUT: CDB and parameter list parsed once into a typed
//! command (SPC-4 6.16).
//!
//! Basic parameter list (SPC-4 6.16.3), every service action but REGISTER AND MOVE:
//! ```text
//! 0..8    RESERVATION KEY
//! 8..16   SERVICE ACTION RESERVATION KEY
//! 16..20  obsolete
//! 20      SPEC_I_PT (bit 3) | ALL_TG_PT (bit 2) | APTPL (bit 0)
//! 21..24  reserved / obsolete
//! 24..28  TRANSPORTID PARAMETER DATA LENGTH        (SPEC_I_PT = 1 only)
//! 28..    TransportIDs
//! ```
//! REGISTER AND MOVE parameter list (SPC-4 6.16.4):
//! ```text
//! 0..8    RESERVATION KEY
//! 8..16   SERVICE ACTION RESERVATION KEY
//! 17      UNREG (bit 1) | APTPL (bit 0)
//! 18..20  RELATIVE TARGET PORT IDENTIFIER
//! 20..24  TRANSPORTID PARAMETER DATA LENGTH
//! 24..    TransportID
//! ```

use crate::error::{cdb_field, length_error, param_field, FieldPointer, PrError};
use crate::ids::{InitiatorPort, ReservationKey, ReservationType, TargetPortId};
use crate::transport_id;

/// Service action codes (SPC-4 6.16.2, table "PERSISTENT RESERVE OUT service action codes").
const SA_REGISTER: u8 = 0x00;
const SA_RESERVE: u8 = 0x01;
const SA_RELEASE: u8 = 0x02;
const SA_CLEAR: u8 = 0x03;
const SA_PREEMPT: u8 = 0x04;
const SA_PREEMPT_AND_ABORT: u8 = 0x05;
const SA_REGISTER_AND_IGNORE: u8 = 0x06;
const SA_REGISTER_AND_MOVE: u8 = 0x07;

/// SCOPE LU_SCOPE (SPC-4 6.16.2): the only scope SPC-4 defines.
pub(crate) const LU_SCOPE: u8 = 0x0;

/// Length of the basic parameter list without additional data (SPC-4 6.16.3).
const BASIC_LEN: usize = 24;
/// PERSISTENT RESERVE OUT is a 10-byte CDB (SPC-4 6.16.1).
const CDB_LEN: usize = 10;

/// REGISTER / REGISTER AND IGNORE EXISTING KEY parameters (SPC-4 5.13.7).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RegisterParams {
    /// RESERVATION KEY (ignored for REGISTER AND IGNORE EXISTING KEY).
    pub key: ReservationKey,
    /// SERVICE ACTION RESERVATION KEY: the new key, zero to unregister.
    pub sa_key: ReservationKey,
    /// REGISTER AND IGNORE EXISTING KEY rather than REGISTER.
    pub ignore_existing: bool,
    /// ALL_TG_PT: register on every target port.
    pub all_tg_pt: bool,
    /// APTPL: persist through power loss.
    pub aptpl: bool,
    /// SPEC_I_PT = 1 (REGISTER only): the TransportIDs' initiator ports.
    pub spec_i_pt: Option<Vec<InitiatorPort>>,
}

/// A parsed PERSISTENT RESERVE OUT command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProutCommand {
    /// REGISTER (0h) or REGISTER AND IGNORE EXISTING KEY (6h).
    Register(RegisterParams),
    /// RESERVE (1h).
    Reserve {
        /// RESERVATION KEY.
        key: ReservationKey,
        /// TYPE.
        rtype: ReservationType,
    },
    /// RELEASE (2h). SCOPE and TYPE stay raw: a mismatch with the held
    /// reservation is INVALID RELEASE OF PERSISTENT RESERVATION, not a CDB error.
    Release {
        /// RESERVATION KEY.
        key: ReservationKey,
        /// SCOPE field as received.
        scope: u8,
        /// TYPE field as received.
        type_code: u8,
    },
    /// CLEAR (3h).
    Clear {
        /// RESERVATION KEY.
        key: ReservationKey,
    },
    /// PREEMPT (4h) or PREEMPT AND ABORT (5h). SCOPE and TYPE stay raw:
    /// only preempting a reservation uses them; removing registrations
    /// ignores them (SPC-4 5.13.11.4.4 b).
    Preempt {
        /// RESERVATION KEY.
        key: ReservationKey,
        /// SERVICE ACTION RESERVATION KEY: whose registrations to remove.
        sa_key: ReservationKey,
        /// SCOPE field as received.
        scope: u8,
        /// TYPE field as received: the type the preempting nexus reserves.
        type_code: u8,
        /// PREEMPT AND ABORT.
        abort: bool,
    },
    /// REGISTER AND MOVE (7h).
    RegisterAndMove {
        /// RESERVATION KEY.
        key: ReservationKey,
        /// SERVICE ACTION RESERVATION KEY registered for the destination.
        sa_key: ReservationKey,
        /// APTPL.
        aptpl: bool,
        /// UNREG: unregister the source I_T nexus.
        unreg: bool,
        /// RELATIVE TARGET PORT IDENTIFIER of the destination I_T nexus.
        target_port: TargetPortId,
        /// Destination initiator port from the TransportID.
        destination: InitiatorPort,
    },
}

fn be_u64(b: &[u8]) -> u64 {
    let mut a = [0; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn be_u32(b: &[u8]) -> usize {
    let mut a = [0; 4];
    a.copy_from_slice(&b[..4]);
    // usize is at least 32 bits on every target we build for.
    usize::try_from(u32::from_be_bytes(a)).unwrap_or(usize::MAX)
}

impl ProutCommand {
    /// Parses a PERSISTENT RESERVE OUT CDB and the parameter list received
    /// for it. `data` must hold at least PARAMETER LIST LENGTH bytes; only
    /// that many are looked at.
    ///
    /// Errors are those SPC-4 6.16 assigns to CDB and parameter-list
    /// validation; state-dependent errors come from
    /// [`crate::ReservationTable::execute_out`].
    pub fn parse(cdb: &[u8], data: &[u8]) -> Result<Self, PrError> {
        if cdb.len() < CDB_LEN {
            return Err(cdb_field(0, 7));
        }
        let service_action = cdb[1] & 0x1f;
        let scope = cdb[2] >> 4;
        let type_code = cdb[2] & 0x0f;
        let param_len = be_u32(&cdb[5..9]);
        if service_action > SA_REGISTER_AND_MOVE {
            return Err(cdb_field(1, 4));
        }
        let data = data.get(..param_len).ok_or_else(length_error)?;
        if service_action == SA_REGISTER_AND_MOVE {
            // SPC-4 5.13.8 b): SCOPE and TYPE are ignored; the reservation
            // keeps its own.
            return parse_register_and_move(data);
        }
        let spec_i_pt = data.get(20).is_some_and(|b| b & 0x08 != 0);
        if data.len() < BASIC_LEN || (!spec_i_pt && data.len() != BASIC_LEN) {
            // SPC-4 6.16.3: 24 bytes unless SPEC_I_PT adds TransportIDs.
            return Err(length_error());
        }
        let key = ReservationKey(be_u64(&data[0..8]));
        let sa_key = ReservationKey(be_u64(&data[8..16]));
        if spec_i_pt && service_action != SA_REGISTER {
            // SPC-4 6.16.3: SPEC_I_PT is valid for REGISTER only.
            return Err(param_field(FieldPointer::bit(20, 3)));
        }
        Ok(match service_action {
            SA_REGISTER | SA_REGISTER_AND_IGNORE => ProutCommand::Register(RegisterParams {
                key,
                sa_key,
                ignore_existing: service_action == SA_REGISTER_AND_IGNORE,
                // SPC-4 6.16.3: ALL_TG_PT and APTPL matter for the register actions only.
                all_tg_pt: data[20] & 0x04 != 0,
                aptpl: data[20] & 0x01 != 0,
                spec_i_pt: if spec_i_pt {
                    Some(parse_spec_i_pt(data)?)
                } else {
                    None
                },
            }),
            SA_RESERVE => ProutCommand::Reserve {
                key,
                rtype: scoped_type(scope, type_code)?,
            },
            SA_RELEASE => ProutCommand::Release {
                key,
                scope,
                type_code,
            },
            SA_CLEAR => ProutCommand::Clear { key },
            SA_PREEMPT | SA_PREEMPT_AND_ABORT => ProutCommand::Preempt {
                key,
                sa_key,
                scope,
                type_code,
                abort: service_action == SA_PREEMPT_AND_ABORT,
            },
            _ => return Err(cdb_field(1, 4)),
        })
    }

    /// The RESERVATION KEY field.
    pub fn key(&self) -> ReservationKey {
        match self {
            ProutCommand::Register(r) => r.key,
            ProutCommand::Reserve { key, .. }
            | ProutCommand::Release { key, .. }
            | ProutCommand::Clear { key }
            | ProutCommand::Preempt { key, .. }
            | ProutCommand::RegisterAndMove { key, .. } => *key,
        }
    }
}

/// SPC-4 6.16.2: LU_SCOPE is the only scope; TYPE must be one of the six.
pub(crate) fn scoped_type(scope: u8, type_code: u8) -> Result<ReservationType, PrError> {
    if scope != LU_SCOPE {
        return Err(cdb_field(2, 7));
    }
    ReservationType::from_code(type_code).ok_or_else(|| cdb_field(2, 3))
}

/// TransportIDs after the basic list (SPC-4 6.16.3, TRANSPORTID PARAMETER DATA LENGTH).
fn parse_spec_i_pt(data: &[u8]) -> Result<Vec<InitiatorPort>, PrError> {
    const TIDS: usize = BASIC_LEN + 4;
    if data.len() < TIDS {
        return Err(length_error());
    }
    let tpdl = be_u32(&data[BASIC_LEN..TIDS]);
    // SPC-4 6.16.3 a): the parameter list must include every TransportID byte.
    let list = data
        .get(TIDS..TIDS.saturating_add(tpdl))
        .ok_or_else(length_error)?;
    let mut ports = Vec::new();
    let mut off = 0;
    while off < list.len() {
        // SPC-4 6.16.3 b): a truncated TransportID is an invalid field.
        let (port, len) = transport_id::parse(&list[off..], TIDS + off)?;
        ports.push(port);
        off += len;
    }
    Ok(ports)
}

fn parse_register_and_move(data: &[u8]) -> Result<ProutCommand, PrError> {
    if data.len() < BASIC_LEN {
        return Err(length_error());
    }
    let tpdl = be_u32(&data[20..24]);
    let tid = data
        .get(BASIC_LEN..BASIC_LEN.saturating_add(tpdl))
        .ok_or_else(length_error)?;
    let (destination, _) = transport_id::parse(tid, BASIC_LEN)?;
    Ok(ProutCommand::RegisterAndMove {
        key: ReservationKey(be_u64(&data[0..8])),
        sa_key: ReservationKey(be_u64(&data[8..16])),
        unreg: data[17] & 0x02 != 0,
        aptpl: data[17] & 0x01 != 0,
        target_port: TargetPortId(u16::from_be_bytes([data[18], data[19]])),
        destination,
    })
}

/// Test and tooling helpers that build wire-format commands.
#[cfg(test)]
pub(crate) mod wire {
    pub(crate) fn cdb(service_action: u8, scope: u8, type_code: u8, len: usize) -> [u8; 10] {
        let mut c = [0u8; 10];
        c[0] = 0x5f;
        c[1] = service_action;
        c[2] = scope << 4 | type_code;
        c[5..9].copy_from_slice(&(len as u32).to_be_bytes());
        c
    }

    pub(crate) fn basic(key: u64, sa_key: u64, flags: u8) -> Vec<u8> {
        let mut d = vec![0u8; 24];
        d[0..8].copy_from_slice(&key.to_be_bytes());
        d[8..16].copy_from_slice(&sa_key.to_be_bytes());
        d[20] = flags;
        d
    }
}

#[cfg(test)]
mod tests {
    use super::wire::*;
    use super::*;
    use crate::error::IllegalRequest;

    fn parse(sa: u8, scope: u8, ty: u8, data: &[u8]) -> Result<ProutCommand, PrError> {
        ProutCommand::parse(&cdb(sa, scope, ty, data.len()), data)
    }

    fn cdb_err(byte: u16, bit: u8) -> PrError {
        PrError::IllegalRequest(IllegalRequest::InvalidFieldInCdb(FieldPointer::bit(
            byte, bit,
        )))
    }

    fn param_err(byte: u16, bit: Option<u8>) -> PrError {
        PrError::IllegalRequest(IllegalRequest::InvalidFieldInParameterList(FieldPointer {
            byte,
            bit,
        }))
    }

    const LEN_ERR: PrError = PrError::IllegalRequest(IllegalRequest::ParameterListLengthError);

    #[test]
    fn parses_every_basic_service_action() {
        let d = basic(0x11, 0x22, 0x05);
        assert_eq!(
            parse(0, 0, 0, &d).unwrap(),
            ProutCommand::Register(RegisterParams {
                key: ReservationKey(0x11),
                sa_key: ReservationKey(0x22),
                ignore_existing: false,
                all_tg_pt: true,
                aptpl: true,
                spec_i_pt: None,
            })
        );
        assert!(
            matches!(parse(6, 0xf, 0xf, &d).unwrap(), ProutCommand::Register(r) if r.ignore_existing)
        );
        assert_eq!(
            parse(1, 0, 5, &d).unwrap(),
            ProutCommand::Reserve {
                key: ReservationKey(0x11),
                rtype: ReservationType::WriteExclusiveRegistrantsOnly
            }
        );
        assert_eq!(
            parse(2, 3, 0, &d).unwrap(),
            ProutCommand::Release {
                key: ReservationKey(0x11),
                scope: 3,
                type_code: 0
            }
        );
        assert_eq!(
            parse(3, 0, 0, &d).unwrap(),
            ProutCommand::Clear {
                key: ReservationKey(0x11)
            }
        );
        assert!(matches!(
            parse(5, 0, 8, &d).unwrap(),
            ProutCommand::Preempt { abort: true, .. }
        ));
        assert!(matches!(
            parse(4, 0, 8, &d).unwrap(),
            ProutCommand::Preempt { abort: false, .. }
        ));
    }

    #[test]
    fn cdb_errors_point_at_their_fields() {
        let d = basic(1, 0, 0);
        for sa in [8u8, 0x1f] {
            assert_eq!(parse(sa, 0, 1, &d), Err(cdb_err(1, 4)));
        }
        // RESERVE checks SCOPE and TYPE at parse; PREEMPT only when it
        // preempts a reservation (see the table tests).
        assert_eq!(parse(1, 0, 0, &d), Err(cdb_err(2, 3)), "type 0");
        assert_eq!(parse(1, 0, 2, &d), Err(cdb_err(2, 3)), "type 2");
        assert_eq!(parse(1, 1, 1, &d), Err(cdb_err(2, 7)), "element scope");
        assert_eq!(ProutCommand::parse(&[0x5f; 6], &d), Err(cdb_err(0, 7)));
    }

    #[test]
    fn parameter_list_length_must_be_24() {
        for len in [0usize, 23, 25, 32] {
            let mut d = basic(1, 2, 0);
            d.resize(len, 0);
            for sa in [0u8, 1, 2, 3, 4, 5, 6] {
                assert_eq!(parse(sa, 0, 1, &d), Err(LEN_ERR), "sa {sa} len {len}");
            }
        }
        // Data shorter than the CDB claims.
        let d = basic(1, 2, 0);
        assert_eq!(ProutCommand::parse(&cdb(0, 0, 0, 28), &d), Err(LEN_ERR));
    }

    #[test]
    fn spec_i_pt_only_for_register() {
        let d = basic(1, 2, 0x08);
        for sa in [1u8, 2, 3, 4, 5, 6] {
            let mut d = d.clone();
            d.extend_from_slice(&[0; 4]);
            assert_eq!(parse(sa, 0, 1, &d), Err(param_err(20, Some(3))), "sa {sa}");
        }
    }

    #[test]
    fn spec_i_pt_transport_ids() {
        let a = crate::transport_id::encode_transport_id(&InitiatorPort::new("iqn.a", [1; 6]));
        let b = crate::transport_id::encode_transport_id(&InitiatorPort::any_isid("iqn.b"));
        let mut d = basic(0, 9, 0x08);
        d.extend_from_slice(&((a.len() + b.len()) as u32).to_be_bytes());
        d.extend_from_slice(&a);
        d.extend_from_slice(&b);
        let ProutCommand::Register(r) = parse(0, 0, 0, &d).unwrap() else {
            panic!()
        };
        assert_eq!(
            r.spec_i_pt,
            Some(vec![
                InitiatorPort::new("iqn.a", [1; 6]),
                InitiatorPort::any_isid("iqn.b")
            ])
        );
        // Missing TPDL.
        assert_eq!(parse(0, 0, 0, &basic(0, 9, 0x08)), Err(LEN_ERR));
        // TPDL beyond the parameter list.
        let mut short = d.clone();
        short.truncate(d.len() - 4);
        assert_eq!(parse(0, 0, 0, &short), Err(LEN_ERR));
        // TPDL cutting the second TransportID: invalid field at its length.
        let mut cut = d.clone();
        let tpdl = (a.len() + b.len() - 4) as u32;
        cut[24..28].copy_from_slice(&tpdl.to_be_bytes());
        cut.truncate(28 + tpdl as usize);
        assert_eq!(
            parse(0, 0, 0, &cut),
            Err(param_err((28 + a.len() + 2) as u16, None))
        );
        // Zero TransportIDs is fine.
        let mut none = basic(0, 9, 0x08);
        none.extend_from_slice(&[0; 4]);
        assert!(parse(0, 0, 0, &none).is_ok());
    }

    fn move_list(unreg: bool, port: u16, tid: &[u8]) -> Vec<u8> {
        let mut d = vec![0u8; 24];
        d[0..8].copy_from_slice(&5u64.to_be_bytes());
        d[8..16].copy_from_slice(&6u64.to_be_bytes());
        d[17] = u8::from(unreg) << 1 | 1;
        d[18..20].copy_from_slice(&port.to_be_bytes());
        d[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
        d.extend_from_slice(tid);
        d
    }

    #[test]
    fn register_and_move_list() {
        let tid = crate::transport_id::encode_transport_id(&InitiatorPort::new("iqn.dest", [2; 6]));
        let d = move_list(true, 7, &tid);
        assert_eq!(
            parse(7, 0, 1, &d).unwrap(),
            ProutCommand::RegisterAndMove {
                key: ReservationKey(5),
                sa_key: ReservationKey(6),
                aptpl: true,
                unreg: true,
                target_port: TargetPortId(7),
                destination: InitiatorPort::new("iqn.dest", [2; 6]),
            }
        );
        assert_eq!(parse(7, 0, 1, &d[..20]), Err(LEN_ERR));
        assert_eq!(parse(7, 0, 1, &d[..d.len() - 4]), Err(LEN_ERR));
        // SCOPE and TYPE are ignored.
        assert_eq!(parse(7, 2, 4, &d), parse(7, 0, 1, &d));
        let empty = move_list(false, 7, &[]);
        assert_eq!(parse(7, 0, 1, &empty), Err(param_err(26, None)));
    }
}
