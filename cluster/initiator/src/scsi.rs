//! SCSI values the initiator sends and receives, and the pure decoders for
//! the data-in buffers it gets back (sense, READ CAPACITY (16), PERSISTENT
//! RESERVE IN). No FFI here: everything is bytes in, types out.

use std::fmt;

pub use reservoir_pr::{ReservationKey, ReservationType};

use crate::error::Error;
use crate::transport_id::TransportId;

/// A SCSI status byte (SAM-5 §5.3.1).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct ScsiStatus(pub u8);

impl ScsiStatus {
    pub const GOOD: Self = Self(0x00);
    pub const CHECK_CONDITION: Self = Self(0x02);
    pub const CONDITION_MET: Self = Self(0x04);
    pub const BUSY: Self = Self(0x08);
    pub const RESERVATION_CONFLICT: Self = Self(0x18);
    pub const TASK_SET_FULL: Self = Self(0x28);
    pub const ACA_ACTIVE: Self = Self(0x30);
    pub const TASK_ABORTED: Self = Self(0x40);

    fn name(self) -> Option<&'static str> {
        Some(match self {
            Self::GOOD => "GOOD",
            Self::CHECK_CONDITION => "CHECK CONDITION",
            Self::CONDITION_MET => "CONDITION MET",
            Self::BUSY => "BUSY",
            Self::RESERVATION_CONFLICT => "RESERVATION CONFLICT",
            Self::TASK_SET_FULL => "TASK SET FULL",
            Self::ACA_ACTIVE => "ACA ACTIVE",
            Self::TASK_ABORTED => "TASK ABORTED",
            _ => return None,
        })
    }
}

impl fmt::Debug for ScsiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ScsiStatus({self})")
    }
}

impl fmt::Display for ScsiStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(n) => write!(f, "{n} (0x{:02x})", self.0),
            None => write!(f, "status 0x{:02x}", self.0),
        }
    }
}

/// Sense key (SPC-4 §4.5.6, table 48).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SenseKey {
    NoSense,
    RecoveredError,
    NotReady,
    MediumError,
    HardwareError,
    IllegalRequest,
    UnitAttention,
    DataProtect,
    BlankCheck,
    VendorSpecific,
    CopyAborted,
    AbortedCommand,
    VolumeOverflow,
    Miscompare,
    Completed,
    Reserved,
}

impl SenseKey {
    pub fn from_u8(key: u8) -> Self {
        use SenseKey::*;
        [
            NoSense,
            RecoveredError,
            NotReady,
            MediumError,
            HardwareError,
            IllegalRequest,
            UnitAttention,
            DataProtect,
            BlankCheck,
            VendorSpecific,
            CopyAborted,
            AbortedCommand,
            Reserved,
            VolumeOverflow,
            Miscompare,
            Completed,
        ][usize::from(key & 0x0f)]
    }
}

/// Decoded sense data: what failed and why (SPC-4 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Sense {
    pub key: SenseKey,
    pub asc: u8,
    pub ascq: u8,
}

impl Sense {
    /// Decodes fixed-format (response code 70h/71h, SPC-4 §4.5.3) or
    /// descriptor-format (72h/73h, §4.5.2) sense data. Returns `None` when the
    /// buffer is too short or the response code is not a sense format.
    pub fn decode(sense: &[u8]) -> Option<Self> {
        match sense.first()? & 0x7f {
            0x70 | 0x71 => Some(Sense {
                key: SenseKey::from_u8(*sense.get(2)?),
                // ASC/ASCQ sit at bytes 12/13; a target may truncate after the key
                // (ADDITIONAL SENSE LENGTH < 6), which means "none given".
                asc: sense.get(12).copied().unwrap_or(0),
                ascq: sense.get(13).copied().unwrap_or(0),
            }),
            0x72 | 0x73 => Some(Sense {
                key: SenseKey::from_u8(*sense.get(1)?),
                asc: *sense.get(2)?,
                ascq: *sense.get(3)?,
            }),
            _ => None,
        }
    }

    /// Decodes the data segment of an iSCSI SCSI Response PDU, which carries
    /// a two-byte SenseLength before the sense bytes (RFC 7143 §11.4.7.2).
    pub fn from_response_data(data: &[u8]) -> Option<Self> {
        let len = usize::from(u16::from_be_bytes([*data.first()?, *data.get(1)?]));
        Sense::decode(data.get(2..2 + len)?)
    }
}

impl fmt::Display for Sense {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} asc/ascq 0x{:02x}/0x{:02x}",
            self.key, self.asc, self.ascq
        )
    }
}

/// READ CAPACITY (16) result (SBC-4 §5.20.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Capacity {
    pub block_size: u32,
    /// Number of logical blocks (RETURNED LOGICAL BLOCK ADDRESS + 1).
    pub blocks: u64,
}

impl Capacity {
    pub(crate) fn decode(data: &[u8]) -> Result<Self, Error> {
        let malformed = |reason| Error::Malformed {
            what: "READ CAPACITY (16)",
            reason,
        };
        let last_lba = be_u64(data, 0).ok_or(malformed("shorter than 12 bytes"))?;
        let block_size = be_u32(data, 8).ok_or(malformed("shorter than 12 bytes"))?;
        if block_size == 0 {
            return Err(malformed("block length is zero"));
        }
        let blocks = last_lba
            .checked_add(1)
            .ok_or(malformed("last LBA is 2^64-1"))?;
        Ok(Capacity { block_size, blocks })
    }
}

/// PERSISTENT RESERVE OUT service actions with the basic parameter list
/// (SPC-4 §6.17.2). REGISTER AND MOVE has its own parameter list and its own
/// call, `Initiator::register_and_move`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PrOutAction {
    Register,
    Reserve,
    Release,
    Clear,
    Preempt,
    PreemptAndAbort,
    RegisterAndIgnoreExistingKey,
}

impl PrOutAction {
    pub(crate) fn code(self) -> u8 {
        match self {
            Self::Register => 0x0,
            Self::Reserve => 0x1,
            Self::Release => 0x2,
            Self::Clear => 0x3,
            Self::Preempt => 0x4,
            Self::PreemptAndAbort => 0x5,
            Self::RegisterAndIgnoreExistingKey => 0x6,
        }
    }
}

/// PERSISTENT RESERVE OUT service action code for REGISTER AND MOVE.
const REGISTER_AND_MOVE: u8 = 0x07;

/// The CDB and parameter list of PERSISTENT RESERVE OUT / REGISTER AND MOVE
/// (SPC-4 §6.17.4): the list carries the keys, UNREG and APTPL, the relative
/// port through which the destination reaches the LU, and its TransportID.
pub(crate) fn register_and_move_command(
    key: ReservationKey,
    sa_key: ReservationKey,
    relative_target_port: u16,
    destination: &TransportId,
    unreg: bool,
    aptpl: bool,
) -> ([u8; 10], Vec<u8>) {
    let tid = destination.encode();
    let mut list = Vec::with_capacity(24 + tid.len());
    list.extend_from_slice(&key.0.to_be_bytes());
    list.extend_from_slice(&sa_key.0.to_be_bytes());
    list.push(0);
    list.push(u8::from(unreg) << 1 | u8::from(aptpl));
    list.extend_from_slice(&relative_target_port.to_be_bytes());
    // A TransportID is at most 4 + 2^16 - 1 bytes, so this cannot truncate.
    list.extend_from_slice(&(tid.len() as u32).to_be_bytes());
    list.extend_from_slice(&tid);
    // SCOPE and TYPE stay zero: the target keeps the reservation's own
    // (SPC-4 §5.13.8).
    let mut cdb = [0u8; 10];
    cdb[0] = PERSISTENT_RESERVE_OUT;
    cdb[1] = REGISTER_AND_MOVE;
    cdb[5..9].copy_from_slice(&(list.len() as u32).to_be_bytes());
    (cdb, list)
}

const PERSISTENT_RESERVE_OUT: u8 = 0x5f;

/// Bits of the PERSISTENT RESERVE OUT basic parameter list (SPC-4 §6.17.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct PrOutFlags {
    /// Activate persist through power loss.
    pub aptpl: bool,
    /// Register on all target ports (REGISTER only).
    pub all_tg_pt: bool,
}

/// READ KEYS parameter data (SPC-4 §6.16.2): generation and registered keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegisteredKeys {
    pub generation: u32,
    pub keys: Vec<ReservationKey>,
}

/// Outcome of decoding PR IN data that may not have fit the allocation.
pub(crate) enum PrIn<T> {
    Complete(T),
    /// The target has this many bytes of parameter data; ask again with more.
    NeedsBytes(usize),
}

pub(crate) fn decode_read_keys(data: &[u8]) -> Result<PrIn<RegisteredKeys>, Error> {
    let malformed = |reason| Error::Malformed {
        what: "PERSISTENT RESERVE IN / READ KEYS",
        reason,
    };
    let generation = be_u32(data, 0).ok_or(malformed("shorter than the 8-byte header"))?;
    let additional = be_u32(data, 4).ok_or(malformed("shorter than the 8-byte header"))? as usize;
    if !additional.is_multiple_of(8) {
        return Err(malformed("ADDITIONAL LENGTH is not a multiple of 8"));
    }
    if data.len() < 8 + additional {
        return Ok(PrIn::NeedsBytes(8 + additional));
    }
    let keys = data[8..8 + additional]
        .chunks_exact(8)
        .map(|k| ReservationKey(u64::from_be_bytes(k.try_into().expect("chunk of 8"))))
        .collect();
    Ok(PrIn::Complete(RegisteredKeys { generation, keys }))
}

/// READ RESERVATION parameter data (SPC-4 §6.16.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReservationStatus {
    pub generation: u32,
    pub reservation: Option<(ReservationKey, ReservationType)>,
}

pub(crate) fn decode_read_reservation(data: &[u8]) -> Result<ReservationStatus, Error> {
    let malformed = |reason| Error::Malformed {
        what: "PERSISTENT RESERVE IN / READ RESERVATION",
        reason,
    };
    let generation = be_u32(data, 0).ok_or(malformed("shorter than the 8-byte header"))?;
    let additional = be_u32(data, 4).ok_or(malformed("shorter than the 8-byte header"))?;
    match additional {
        0 => Ok(ReservationStatus {
            generation,
            reservation: None,
        }),
        16 => {
            let key = be_u64(data, 8).ok_or(malformed("reservation descriptor truncated"))?;
            let scope_type = *data
                .get(21)
                .ok_or(malformed("reservation descriptor truncated"))?;
            // SCOPE (high nibble) must be LU_SCOPE (0h), the only scope SPC-4 keeps.
            if scope_type >> 4 != 0 {
                return Err(malformed("reservation scope is not LU_SCOPE"));
            }
            let kind = ReservationType::from_code(scope_type & 0x0f)
                .ok_or(malformed("unknown reservation type"))?;
            Ok(ReservationStatus {
                generation,
                reservation: Some((ReservationKey(key), kind)),
            })
        }
        _ => Err(malformed("ADDITIONAL LENGTH is neither 0 nor 16")),
    }
}

/// One READ FULL STATUS descriptor (SPC-4 §6.16.5): a registered I_T nexus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullStatusEntry {
    pub key: ReservationKey,
    /// Registered with ALL_TG_PT = 1.
    pub all_tg_pt: bool,
    /// This nexus holds the reservation.
    pub holder: bool,
    /// The reservation's type when `holder`.
    pub kind: Option<ReservationType>,
    pub relative_target_port: u16,
    /// The initiator port's TransportID (SPC-4 §7.6.4.6 for iSCSI).
    pub transport_id: Vec<u8>,
}

impl FullStatusEntry {
    /// The iSCSI name in the TransportID, without the `,i,0x<ISID>` part.
    pub fn initiator_name(&self) -> Option<&str> {
        let name = self.transport_id.get(4..)?;
        let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
        let name = std::str::from_utf8(&name[..end]).ok()?;
        Some(name.split(",i,0x").next().unwrap_or(name))
    }
}

impl FullStatusEntry {
    /// The initiator port in the TransportID (iSCSI name and ISID).
    pub fn initiator_port(&self) -> Option<TransportId> {
        TransportId::decode(&self.transport_id)
    }
}

/// READ FULL STATUS parameter data (SPC-4 §6.16.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FullStatus {
    pub generation: u32,
    pub entries: Vec<FullStatusEntry>,
}

pub(crate) fn decode_read_full_status(data: &[u8]) -> Result<PrIn<FullStatus>, Error> {
    let malformed = |reason| Error::Malformed {
        what: "PERSISTENT RESERVE IN / READ FULL STATUS",
        reason,
    };
    let generation = be_u32(data, 0).ok_or(malformed("shorter than the 8-byte header"))?;
    let additional = be_u32(data, 4).ok_or(malformed("shorter than the 8-byte header"))? as usize;
    if data.len() < 8 + additional {
        return Ok(PrIn::NeedsBytes(8 + additional));
    }
    let mut rest = &data[8..8 + additional];
    let mut entries = Vec::new();
    while !rest.is_empty() {
        let key = be_u64(rest, 0).ok_or(malformed("descriptor truncated"))?;
        let flags = *rest.get(12).ok_or(malformed("descriptor truncated"))?;
        let scope_type = *rest.get(13).ok_or(malformed("descriptor truncated"))?;
        let port = rest
            .get(18..20)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
            .ok_or(malformed("descriptor truncated"))?;
        let len = be_u32(rest, 20).ok_or(malformed("descriptor truncated"))? as usize;
        let transport_id = rest
            .get(24..24 + len)
            .ok_or(malformed("TransportID truncated"))?
            .to_vec();
        let holder = flags & 0x01 != 0;
        entries.push(FullStatusEntry {
            key: ReservationKey(key),
            all_tg_pt: flags & 0x02 != 0,
            holder,
            kind: holder
                .then(|| ReservationType::from_code(scope_type & 0x0f))
                .flatten(),
            relative_target_port: port,
            transport_id,
        });
        rest = &rest[24 + len..];
    }
    Ok(PrIn::Complete(FullStatus {
        generation,
        entries,
    }))
}

fn be_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn be_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_be_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_format_sense() {
        // LBA OUT OF RANGE: ILLEGAL REQUEST, 21h/00h (SPC-4 annex F).
        let mut s = [0u8; 18];
        s[0] = 0xf0; // VALID bit set, response code 70h
        s[2] = 0x05;
        s[7] = 10;
        s[12] = 0x21;
        let sense = Sense::decode(&s).unwrap();
        assert_eq!(
            sense,
            Sense {
                key: SenseKey::IllegalRequest,
                asc: 0x21,
                ascq: 0
            }
        );
        assert_eq!(sense.to_string(), "IllegalRequest asc/ascq 0x21/0x00");

        // Truncated after the sense key: no ASC given.
        assert_eq!(Sense::decode(&s[..8]).unwrap().asc, 0);
    }

    #[test]
    fn descriptor_format_sense() {
        // UNIT ATTENTION, RESERVATIONS PREEMPTED 2Ah/03h.
        let s = [0x72, 0x06, 0x2a, 0x03, 0, 0, 0, 0];
        assert_eq!(
            Sense::decode(&s).unwrap(),
            Sense {
                key: SenseKey::UnitAttention,
                asc: 0x2a,
                ascq: 0x03
            }
        );
        assert_eq!(Sense::decode(&s[..3]), None);
    }

    #[test]
    fn rejects_non_sense_and_short_input() {
        assert_eq!(Sense::decode(&[]), None);
        assert_eq!(Sense::decode(&[0x70, 0]), None);
        assert_eq!(Sense::decode(&[0x00; 18]), None);
    }

    #[test]
    fn iscsi_response_data_carries_a_length_prefix() {
        let mut d = vec![0, 18];
        let mut s = [0u8; 18];
        s[0] = 0x70;
        s[2] = 0x06;
        s[12] = 0x29;
        d.extend_from_slice(&s);
        assert_eq!(
            Sense::from_response_data(&d).unwrap().key,
            SenseKey::UnitAttention
        );
        assert_eq!(
            Sense::from_response_data(&d[..10]),
            None,
            "length prefix exceeds the data"
        );
        assert_eq!(Sense::from_response_data(&[0]), None);
    }

    #[test]
    fn sense_key_table() {
        assert_eq!(SenseKey::from_u8(0x0b), SenseKey::AbortedCommand);
        assert_eq!(SenseKey::from_u8(0x0c), SenseKey::Reserved);
        assert_eq!(SenseKey::from_u8(0x0e), SenseKey::Miscompare);
        assert_eq!(
            SenseKey::from_u8(0xf7),
            SenseKey::DataProtect,
            "upper nibble ignored"
        );
    }

    #[test]
    fn status_display() {
        assert_eq!(
            ScsiStatus::RESERVATION_CONFLICT.to_string(),
            "RESERVATION CONFLICT (0x18)"
        );
        assert_eq!(ScsiStatus(0x22).to_string(), "status 0x22");
    }

    #[test]
    fn read_capacity_16() {
        let mut d = [0u8; 32];
        d[..8].copy_from_slice(&(2_097_151u64).to_be_bytes());
        d[8..12].copy_from_slice(&512u32.to_be_bytes());
        assert_eq!(
            Capacity::decode(&d).unwrap(),
            Capacity {
                block_size: 512,
                blocks: 2_097_152
            }
        );
        assert!(Capacity::decode(&d[..11]).is_err());
        d[8..12].fill(0);
        assert!(Capacity::decode(&d).is_err());
    }

    #[test]
    fn read_keys() {
        let mut d = vec![0, 0, 0, 7, 0, 0, 0, 16];
        d.extend_from_slice(&0x1122_3344_5566_7788u64.to_be_bytes());
        d.extend_from_slice(&1u64.to_be_bytes());
        let PrIn::Complete(k) = decode_read_keys(&d).unwrap() else {
            panic!("complete")
        };
        assert_eq!(k.generation, 7);
        assert_eq!(
            k.keys,
            vec![ReservationKey(0x1122_3344_5566_7788), ReservationKey(1)]
        );

        assert!(matches!(
            decode_read_keys(&d[..16]).unwrap(),
            PrIn::NeedsBytes(24)
        ));
        assert!(decode_read_keys(&d[..7]).is_err());
        d[7] = 12;
        assert!(decode_read_keys(&d).is_err(), "not a multiple of 8");
    }

    #[test]
    fn read_reservation() {
        let none = decode_read_reservation(&[0, 0, 0, 3, 0, 0, 0, 0]).unwrap();
        assert_eq!(
            none,
            ReservationStatus {
                generation: 3,
                reservation: None
            }
        );

        let mut d = vec![0, 0, 0, 4, 0, 0, 0, 16];
        d.extend_from_slice(&0xabcdu64.to_be_bytes());
        d.extend_from_slice(&[0, 0, 0, 0, 0, 0x05, 0, 0]);
        let r = decode_read_reservation(&d).unwrap();
        assert_eq!(
            r.reservation,
            Some((
                ReservationKey(0xabcd),
                ReservationType::WriteExclusiveRegistrantsOnly
            ))
        );

        d[21] = 0x15;
        assert!(decode_read_reservation(&d).is_err(), "scope must be LU");
        d[21] = 0x02;
        assert!(decode_read_reservation(&d).is_err(), "type 2 is obsolete");
        assert!(decode_read_reservation(&d[..20]).is_err());
    }

    #[test]
    fn register_and_move_parameter_list() {
        let dest = TransportId::new("iqn.b", Some("800000000002".parse().unwrap())).unwrap();
        let (cdb, list) = register_and_move_command(
            ReservationKey(0xa),
            ReservationKey(0xb),
            1,
            &dest,
            true,
            false,
        );
        let tid = dest.encode();
        assert_eq!(list.len(), 24 + tid.len());
        assert_eq!(cdb[..5], [0x5f, 0x07, 0, 0, 0]);
        assert_eq!(be_u32(&cdb, 5), Some(list.len() as u32));
        assert_eq!(be_u64(&list, 0), Some(0xa));
        assert_eq!(be_u64(&list, 8), Some(0xb));
        assert_eq!(
            list[16..20],
            [0, 0b10, 0, 1],
            "UNREG set, APTPL clear, port 1"
        );
        assert_eq!(be_u32(&list, 20), Some(tid.len() as u32));
        assert_eq!(list[24..], tid[..]);
        let (_, list) = register_and_move_command(
            ReservationKey(0xa),
            ReservationKey(0xb),
            2,
            &dest,
            false,
            true,
        );
        assert_eq!(list[17..20], [0b01, 0, 2], "APTPL set, port 2");
    }

    #[test]
    fn reservation_type_codes_round_trip() {
        for code in 0..=15u8 {
            if let Some(t) = ReservationType::from_code(code) {
                assert_eq!(t.code(), code);
            }
        }
    }
}
