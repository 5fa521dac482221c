//! APTPL persistence (SPC-4 5.13.5): the complete table as one versioned,
//! checksummed record. The appliance writes it crash-atomically; this
//! module only encodes and decodes.
//!
//! ```text
//! 0..4    magic "RVPR"
//! 4..6    version (1), big-endian like everything below
//! 6       flags: bit 0 APTPL
//! 7       reserved, 0
//! 8..12   PRgeneration
//! 12..14  target port count P, then P × u16 relative target port ids
//!         registration count R (u32), then R registrations:
//!           key u64 · target port u16 · flags u8 (bit 0 ALL_TG_PT, bit 1 ISID
//!           present) · ISID [6] · name length u16 · name (UTF-8)
//!         reservation: present u8 · type u8 · holder index u32 (all ones for
//!           all-registrants types)
//! last 4  CRC32C of every byte before it
//! ```
//! Fixed-size fields come first in each record so a reader can bound the
//! variable-length name before reading it.

use crate::ids::{
    Generation, InitiatorPort, Isid, Nexus, ReservationKey, ReservationType, TargetPortId,
};
use crate::table::{Held, Registration, ReservationTable};

const MAGIC: [u8; 4] = *b"RVPR";
const VERSION: u16 = 1;
const NO_HOLDER: u32 = u32::MAX;
/// Bounds the names read back (RFC 7143 4.2.7.1: at most 223 bytes).
const MAX_NAME_LEN: usize = 223;

/// Why a persisted reservation record was rejected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Shorter than its own fields say.
    #[error("reservation record is truncated")]
    Truncated,
    /// Not a reservation record.
    #[error("not a reservation record (bad magic)")]
    BadMagic,
    /// Written by a newer Reservoir.
    #[error("reservation record version {0} is not supported")]
    UnsupportedVersion(u16),
    /// The CRC32C does not match: torn or corrupted write.
    #[error("reservation record checksum mismatch")]
    Checksum,
    /// Well-formed bytes describing an impossible table.
    #[error("reservation record is inconsistent: {0}")]
    Inconsistent(&'static str),
}

struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut a = [0; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_be_bytes(a))
    }
}

fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n).unwrap_or(u16::MAX).to_be_bytes()
}

impl ReservationTable {
    /// The complete state as a persistence record.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_be_bytes());
        out.push(u8::from(self.aptpl));
        out.push(0);
        out.extend_from_slice(&self.generation.0.to_be_bytes());
        out.extend_from_slice(&len16(self.target_ports.len()));
        for p in &self.target_ports {
            out.extend_from_slice(&p.0.to_be_bytes());
        }
        out.extend_from_slice(
            &u32::try_from(self.registrations.len())
                .unwrap_or(u32::MAX)
                .to_be_bytes(),
        );
        for r in &self.registrations {
            out.extend_from_slice(&r.key.0.to_be_bytes());
            out.extend_from_slice(&r.nexus.target_port.0.to_be_bytes());
            let isid = r.nexus.initiator.isid;
            out.push(u8::from(r.all_tg_pt) | u8::from(isid.is_some()) << 1);
            out.extend_from_slice(&isid.unwrap_or_default());
            let name = r.nexus.initiator.name.as_bytes();
            out.extend_from_slice(&len16(name.len()));
            out.extend_from_slice(name);
        }
        match &self.reservation {
            None => out.extend_from_slice(&[0, 0, 0xff, 0xff, 0xff, 0xff]),
            Some(held) => {
                out.push(1);
                out.push(held.rtype.code());
                let idx = held
                    .holder
                    .as_ref()
                    .and_then(|h| self.registrations.iter().position(|r| &r.nexus == h));
                let idx = idx.map_or(NO_HOLDER, |i| u32::try_from(i).unwrap_or(NO_HOLDER));
                out.extend_from_slice(&idx.to_be_bytes());
            }
        }
        let crc = crc32c::crc32c(&out);
        out.extend_from_slice(&crc.to_be_bytes());
        out
    }

    /// Restores a table from [`ReservationTable::encode`]'s record. With
    /// APTPL clear nothing survives power loss (SPC-4 5.13.5): the result
    /// is an empty table on the same target ports.
    pub fn decode(bytes: &[u8]) -> Result<ReservationTable, DecodeError> {
        if bytes.len() < MAGIC.len() + 4 {
            return Err(DecodeError::Truncated);
        }
        if bytes[..4] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32c::crc32c(body).to_be_bytes() != crc {
            return Err(DecodeError::Checksum);
        }
        let mut r = Reader { buf: &body[4..] };
        let version = r.u16()?;
        if version != VERSION {
            return Err(DecodeError::UnsupportedVersion(version));
        }
        let aptpl = r.u8()? & 1 != 0;
        r.u8()?;
        let generation = Generation(r.u32()?);
        let ports = (0..r.u16()?)
            .map(|_| r.u16().map(TargetPortId))
            .collect::<Result<Vec<_>, _>>()?;
        let mut table = ReservationTable::new(ports);
        let count = r.u32()?;
        // Each registration is at least 19 bytes: bound the count before
        // trusting it.
        if usize::try_from(count).map_or(true, |c| c.saturating_mul(19) > r.buf.len()) {
            return Err(DecodeError::Truncated);
        }
        let mut registrations: Vec<Registration> = Vec::new();
        for _ in 0..count {
            let key = ReservationKey(r.u64()?);
            let port = TargetPortId(r.u16()?);
            let flags = r.u8()?;
            let mut isid: Isid = [0; 6];
            isid.copy_from_slice(r.take(6)?);
            let len = usize::from(r.u16()?);
            if len == 0 || len > MAX_NAME_LEN {
                return Err(DecodeError::Inconsistent("initiator name length"));
            }
            let name = std::str::from_utf8(r.take(len)?)
                .map_err(|_| DecodeError::Inconsistent("initiator name is not UTF-8"))?;
            let initiator = InitiatorPort {
                name: name.to_owned(),
                isid: (flags & 2 != 0).then_some(isid),
            };
            let nexus = Nexus::new(initiator, port);
            if key.is_zero() {
                return Err(DecodeError::Inconsistent("zero reservation key"));
            }
            if registrations.iter().any(|x| x.nexus.overlaps(&nexus)) {
                return Err(DecodeError::Inconsistent("overlapping registrations"));
            }
            registrations.push(Registration {
                nexus,
                key,
                all_tg_pt: flags & 1 != 0,
            });
        }
        let present = r.u8()?;
        let type_code = r.u8()?;
        let holder = r.u32()?;
        if !r.buf.is_empty() {
            return Err(DecodeError::Inconsistent("trailing bytes"));
        }
        let reservation = match present {
            0 => None,
            1 => {
                let rtype = ReservationType::from_code(type_code)
                    .ok_or(DecodeError::Inconsistent("reservation type"))?;
                let holder = if rtype.is_all_registrants() {
                    if registrations.is_empty() {
                        return Err(DecodeError::Inconsistent("reservation without registrants"));
                    }
                    None
                } else {
                    let i = usize::try_from(holder).unwrap_or(usize::MAX);
                    let reg = registrations
                        .get(i)
                        .ok_or(DecodeError::Inconsistent("holder is not registered"))?;
                    Some(reg.nexus.clone())
                };
                Some(Held { rtype, holder })
            }
            _ => return Err(DecodeError::Inconsistent("reservation flag")),
        };
        if aptpl {
            table.generation = generation;
            table.aptpl = true;
            table.registrations = registrations;
            table.reservation = reservation;
        }
        Ok(table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_magic_version_checksum_and_truncation() {
        let t = ReservationTable::new([TargetPortId(1)]);
        let good = t.encode();
        assert!(ReservationTable::decode(&good).is_ok());
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(ReservationTable::decode(&bad), Err(DecodeError::BadMagic));
        let mut bad = good.clone();
        bad[10] ^= 1;
        assert_eq!(ReservationTable::decode(&bad), Err(DecodeError::Checksum));
        let mut bad = good[..good.len() - 4].to_vec();
        bad[5] = 2;
        let crc = crc32c::crc32c(&bad);
        bad.extend_from_slice(&crc.to_be_bytes());
        assert_eq!(
            ReservationTable::decode(&bad),
            Err(DecodeError::UnsupportedVersion(2))
        );
        assert_eq!(
            ReservationTable::decode(&good[..6]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(ReservationTable::decode(&[]), Err(DecodeError::Truncated));
    }
}
