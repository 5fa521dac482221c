//! iSCSI TransportIDs (SPC-4 7.6.4.6).
//!
//! ```text
//! byte 0      FORMAT CODE (7..6) | reserved | PROTOCOL IDENTIFIER (3..0) = 5h
//! byte 1      reserved
//! bytes 2..3  ADDITIONAL LENGTH (n - 3): a multiple of 4, at least 20
//! bytes 4..n  00b: iSCSI name, null-terminated, null-padded
//!             01b: "<iSCSI name>,i,0x<ISID as 12 hex digits>", null-terminated, null-padded
//! ```

use crate::error::{param_field, FieldPointer, PrError};
use crate::ids::{InitiatorPort, Isid};

/// PROTOCOL IDENTIFIER for iSCSI (SPC-4 7.6.1, table "Protocol identifier values").
const PROTOCOL_ISCSI: u8 = 0x5;
/// FORMAT CODE 00b: initiator device name only.
const FORMAT_NAME: u8 = 0b00;
/// FORMAT CODE 01b: initiator port name (name + ISID).
const FORMAT_PORT: u8 = 0b01;
/// SPC-4 7.6.4.6: ADDITIONAL LENGTH shall be at least 20.
const MIN_ADDITIONAL_LENGTH: usize = 20;
/// RFC 7143 4.2.7.1: an iSCSI name is at most 223 bytes.
const MAX_NAME_LEN: usize = 223;
const SEPARATOR: &str = ",i,0x";

/// Parses one iSCSI TransportID at the start of `buf`; `base` is the offset
/// of `buf` within the parameter list, for field pointers. Returns the
/// initiator port (ISID `None` for FORMAT CODE 00b) and the TransportID's
/// length in bytes.
pub(crate) fn parse(buf: &[u8], base: usize) -> Result<(InitiatorPort, usize), PrError> {
    let at = |off: usize, bit: Option<u8>| {
        param_field(FieldPointer {
            byte: u16::try_from(base + off).unwrap_or(u16::MAX),
            bit,
        })
    };
    if buf.len() < 4 {
        return Err(at(2, None));
    }
    if buf[0] & 0x0f != PROTOCOL_ISCSI {
        return Err(at(0, Some(3)));
    }
    let format = buf[0] >> 6;
    if format != FORMAT_NAME && format != FORMAT_PORT {
        return Err(at(0, Some(7)));
    }
    let additional = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
    if additional % 4 != 0 || additional < MIN_ADDITIONAL_LENGTH || buf.len() < 4 + additional {
        return Err(at(2, None));
    }
    let field = &buf[4..4 + additional];
    let nul = field.iter().position(|&b| b == 0).ok_or(at(4, None))?;
    let text = std::str::from_utf8(&field[..nul]).map_err(|_| at(4, None))?;
    let port = if format == FORMAT_NAME {
        InitiatorPort::any_isid(text)
    } else {
        parse_port_name(text).ok_or(at(4, None))?
    };
    if port.name.is_empty() || port.name.len() > MAX_NAME_LEN || port.name.contains(',') {
        return Err(at(4, None));
    }
    Ok((port, 4 + additional))
}

/// `<name>,i,0x<12 hex digits>`; the separator's letters in either case.
fn parse_port_name(text: &str) -> Option<InitiatorPort> {
    let lower = text.to_ascii_lowercase();
    let split = lower.rfind(SEPARATOR)?;
    let hex = &text[split + SEPARATOR.len()..];
    if hex.len() != 12 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let mut isid: Isid = [0; 6];
    for (i, byte) in isid.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(InitiatorPort::new(&text[..split], isid))
}

/// Parses one iSCSI TransportID at the start of `buf` (as READ FULL STATUS
/// returns them, or as an initiator builds them): the initiator port and
/// the TransportID's length in bytes.
pub fn parse_transport_id(buf: &[u8]) -> Result<(InitiatorPort, usize), PrError> {
    parse(buf, 0)
}

/// Encodes `port` as an iSCSI TransportID: FORMAT CODE 01b when the ISID is
/// known, 00b otherwise.
pub fn encode_transport_id(port: &InitiatorPort) -> Vec<u8> {
    let (format, text) = match port.isid {
        Some(_) => (FORMAT_PORT, port.to_string()),
        None => (FORMAT_NAME, port.name.clone()),
    };
    // Null terminator, then null padding to a multiple of 4 (SPC-4 7.6.4.6).
    let additional = (text.len() + 1)
        .next_multiple_of(4)
        .max(MIN_ADDITIONAL_LENGTH);
    let mut out = Vec::with_capacity(4 + additional);
    out.push(format << 6 | PROTOCOL_ISCSI);
    out.push(0);
    // Names are at most 223 bytes (validated at parse), so this fits.
    out.extend_from_slice(&u16::try_from(additional).unwrap_or(u16::MAX).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.resize(4 + additional, 0);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::IllegalRequest;

    fn tid(format: u8, text: &str, additional: usize) -> Vec<u8> {
        let mut v = vec![format << 6 | PROTOCOL_ISCSI, 0];
        v.extend_from_slice(&(additional as u16).to_be_bytes());
        v.extend_from_slice(text.as_bytes());
        v.resize(4 + additional, 0);
        v
    }

    fn pointer(e: PrError) -> FieldPointer {
        match e {
            PrError::IllegalRequest(IllegalRequest::InvalidFieldInParameterList(p)) => p,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn name_only_matches_any_isid() {
        let buf = tid(0, "iqn.2026-01.org.example:node1", 32);
        let (port, len) = parse(&buf, 24).unwrap();
        assert_eq!(len, 36);
        assert_eq!(
            port,
            InitiatorPort::any_isid("iqn.2026-01.org.example:node1")
        );
    }

    #[test]
    fn port_name_carries_isid() {
        let buf = tid(1, "iqn.2026-01.org.example:node1,I,0X400001370000", 48);
        let (port, _) = parse(&buf, 0).unwrap();
        assert_eq!(
            port,
            InitiatorPort::new("iqn.2026-01.org.example:node1", [0x40, 0, 1, 0x37, 0, 0])
        );
    }

    #[test]
    fn round_trips_both_formats() {
        for port in [
            InitiatorPort::new("iqn.a:b", [1, 2, 3, 4, 5, 6]),
            InitiatorPort::any_isid("iqn.2026-01.org.example:a-much-longer-initiator-name"),
            InitiatorPort::any_isid("iqn.x"),
        ] {
            let buf = encode_transport_id(&port);
            assert_eq!(buf.len() % 4, 0);
            assert!(buf.len() >= 24);
            let (back, len) = parse(&buf, 0).unwrap();
            assert_eq!(len, buf.len());
            assert_eq!(back, port);
        }
    }

    #[test]
    fn rejects_malformed_with_field_pointers() {
        // Wrong protocol (FC = 0h).
        let mut buf = tid(0, "iqn.x", 20);
        buf[0] = 0;
        assert_eq!(
            pointer(parse(&buf, 24).unwrap_err()),
            FieldPointer::bit(24, 3)
        );
        // Reserved format code 10b.
        let buf = tid(2, "iqn.x", 20);
        assert_eq!(
            pointer(parse(&buf, 0).unwrap_err()),
            FieldPointer::bit(0, 7)
        );
        // Additional length not a multiple of 4, too small, or truncated.
        for (addl, len) in [(21, 25), (16, 20), (24, 20)] {
            let mut buf = tid(0, "iqn.x", addl.max(16));
            buf.truncate(len);
            buf[2..4].copy_from_slice(&(addl as u16).to_be_bytes());
            assert_eq!(pointer(parse(&buf, 0).unwrap_err()), FieldPointer::byte(2));
        }
        // No null terminator.
        let buf = tid(0, &"a".repeat(20), 20);
        assert_eq!(pointer(parse(&buf, 0).unwrap_err()), FieldPointer::byte(4));
        // Empty name; port format without ISID; short ISID.
        for (f, t) in [(0, ""), (1, "iqn.x"), (1, "iqn.x,i,0x1234")] {
            assert!(parse(&tid(f, t, 32), 0).is_err(), "{t}");
        }
        // Too short to hold a header.
        assert!(parse(&[0x05, 0], 0).is_err());
    }
}
