//! iSCSI TransportIDs (SPC-4 §7.6.4.6): how PERSISTENT RESERVE commands name
//! an initiator port.
//!
//! ```text
//! byte 0      FORMAT CODE (7..6) | PROTOCOL IDENTIFIER (3..0) = 5h (iSCSI)
//! byte 1      reserved
//! bytes 2..3  ADDITIONAL LENGTH: a multiple of 4, at least 20
//! bytes 4..   00b: "<iSCSI name>"                  null-terminated, null-padded
//!             01b: "<iSCSI name>,i,0x<ISID hex>"   null-terminated, null-padded
//! ```

use std::fmt;

use reservoir_pr::InitiatorPort;

use crate::error::Error;
use crate::isid::Isid;

/// SPC-4 §7.6.4.6: ADDITIONAL LENGTH is at least 20.
#[cfg(test)]
const MIN_ADDITIONAL_LENGTH: usize = 20;
/// RFC 7143 §6.1: an iSCSI name is at most 223 bytes.
const MAX_NAME_LEN: usize = 223;
const SEPARATOR: &str = ",i,0x";

/// An iSCSI initiator as a TransportID names it: with an ISID, one initiator
/// port (the I_T nexus a session logged in with); without, any port of that
/// initiator.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportId {
    name: String,
    isid: Option<Isid>,
}

impl TransportId {
    /// Checks `name` is an encodable iSCSI name: 1 to 223 bytes, without the
    /// NUL terminator or the `,` that separates the ISID part.
    pub fn new(name: impl Into<String>, isid: Option<Isid>) -> Result<Self, Error> {
        let name = name.into();
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(Error::InvalidArgument(format!(
                "iSCSI name of {} bytes; RFC 7143 §6.1 allows 1 to {MAX_NAME_LEN}",
                name.len()
            )));
        }
        if name.contains(['\0', ',']) {
            return Err(Error::InvalidArgument(format!(
                "iSCSI name {name:?} contains a NUL or ','"
            )));
        }
        Ok(TransportId { name, isid })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn isid(&self) -> Option<Isid> {
        self.isid
    }

    /// The wire form (SPC-4 §7.6.4.6), FORMAT CODE 01b when an ISID is given.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let port = match self.isid {
            Some(isid) => InitiatorPort::new(&self.name, isid.bytes()),
            None => InitiatorPort::any_isid(&self.name),
        };
        reservoir_pr::encode_transport_id(&port)
    }

    /// Parses one iSCSI TransportID (as READ FULL STATUS returns them);
    /// `None` if it is not a well-formed iSCSI one.
    pub(crate) fn decode(buf: &[u8]) -> Option<TransportId> {
        let (port, _) = reservoir_pr::parse_transport_id(buf).ok()?;
        let isid = port.isid.map(Isid::new).transpose().ok()?;
        TransportId::new(port.name, isid).ok()
    }
}

impl fmt::Display for TransportId {
    /// The TransportID's own text form: `name` or `name,i,0x<ISID>`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.isid {
            Some(isid) => write!(f, "{}{SEPARATOR}{isid}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = "iqn.2026-11.io.reservoir.test:initiator-2";

    #[test]
    fn port_format_carries_the_isid() {
        let isid: Isid = "800000000002".parse().unwrap();
        let tid = TransportId::new(NAME, Some(isid)).unwrap();
        let wire = tid.encode();
        assert_eq!(wire[0], 0x45, "FORMAT CODE 01b, iSCSI");
        let additional = usize::from(u16::from_be_bytes([wire[2], wire[3]]));
        assert_eq!(wire.len(), 4 + additional);
        assert_eq!(additional % 4, 0);
        let text = format!("{NAME},i,0x800000000002");
        assert_eq!(&wire[4..4 + text.len()], text.as_bytes());
        assert!(wire[4 + text.len()..].iter().all(|&b| b == 0));
        assert!(additional > text.len(), "room for the NUL terminator");
        assert_eq!(TransportId::decode(&wire), Some(tid.clone()));
        assert_eq!(tid.to_string(), text);
    }

    #[test]
    fn name_format_and_minimum_length() {
        let tid = TransportId::new("iqn.a", None).unwrap();
        let wire = tid.encode();
        assert_eq!(wire[0], 0x05, "FORMAT CODE 00b, iSCSI");
        assert_eq!(wire.len(), 4 + MIN_ADDITIONAL_LENGTH);
        assert_eq!(TransportId::decode(&wire), Some(tid));
        // A 19-byte name needs 20 bytes with its NUL; 20 bytes need 24.
        for (len, additional) in [(19, 20), (20, 24)] {
            let wire = TransportId::new("n".repeat(len), None).unwrap().encode();
            assert_eq!(
                usize::from(u16::from_be_bytes([wire[2], wire[3]])),
                additional
            );
        }
    }

    #[test]
    fn rejects_unencodable_names() {
        assert!(TransportId::new("", None).is_err());
        assert!(TransportId::new("n".repeat(224), None).is_err());
        assert!(TransportId::new("n".repeat(223), None).is_ok());
        assert!(TransportId::new("iqn.a,i,0x1", None).is_err());
        assert!(TransportId::new("iqn.a\0", None).is_err());
    }

    #[test]
    fn decode_is_defensive() {
        let wire = TransportId::new(NAME, Some("800000000002".parse().unwrap()))
            .unwrap()
            .encode();
        assert_eq!(
            TransportId::decode(&wire[..wire.len() - 1]),
            None,
            "truncated"
        );
        assert_eq!(TransportId::decode(&wire[..3]), None);
        let mut fc = wire.clone();
        fc[0] = 0x01; // Fibre Channel
        assert_eq!(TransportId::decode(&fc), None);
        let mut reserved = wire.clone();
        reserved[0] = 0x85; // FORMAT CODE 10b
        assert_eq!(TransportId::decode(&reserved), None);
        let mut no_nul = wire;
        let n = no_nul.len();
        no_nul[4..n].fill(b'x');
        assert_eq!(TransportId::decode(&no_nul), None);
    }
}
