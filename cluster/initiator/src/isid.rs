//! The Initiator Session ID (RFC 7143 §10.12.5), validated once.
//!
//! Together with the initiator name the ISID names the I_T nexus a target
//! keys persistent reservations on (SPC-4 §5.14), so an agent that must keep
//! its registrations across reconnects has to present the same ISID every
//! time. libiscsi 1.19 can only set an ISID through its four format-specific
//! setters; [`Isid::setter`] picks the one that reproduces these six bytes.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

/// A six-byte ISID: `T(2 bits) A(6) | B(16) | C(8) | D(16)`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Isid([u8; 6]);

/// Which libiscsi setter reproduces an [`Isid`], with its arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IsidSetter {
    /// T=00: A+B hold a 22-bit OUI, C+D a 24-bit qualifier.
    Oui { oui: u32, qualifier: u32 },
    /// T=01: A reserved, B+C a 24-bit IANA enterprise number, D a qualifier.
    EnterpriseNumber { en: u32, qualifier: u32 },
    /// T=10: A reserved, B+C 24 random bits, D a qualifier.
    Random { random: u32, qualifier: u32 },
}

impl Isid {
    /// Accepts every ISID format RFC 7143 §10.12.5 defines; rejects T=11
    /// (reserved) and a non-zero A field where the format reserves it.
    pub fn new(bytes: [u8; 6]) -> Result<Self, Error> {
        let t = bytes[0] >> 6;
        let a = bytes[0] & 0x3f;
        match t {
            0b11 => Err(Error::InvalidArgument(
                "ISID type 11b is reserved (RFC 7143 §10.12.5)".into(),
            )),
            0b01 | 0b10 if a != 0 => Err(Error::InvalidArgument(
                "ISID A field is reserved (must be 0) for the EN and Random formats".into(),
            )),
            _ => Ok(Isid(bytes)),
        }
    }

    pub fn bytes(&self) -> [u8; 6] {
        self.0
    }

    pub(crate) fn setter(&self) -> IsidSetter {
        let b = self.0.map(u32::from);
        let b123 = (b[1] << 16) | (b[2] << 8) | b[3];
        let d = (b[4] << 8) | b[5];
        match b[0] >> 6 {
            0b00 => IsidSetter::Oui {
                oui: ((b[0] & 0x3f) << 16) | (b[1] << 8) | b[2],
                qualifier: (b[3] << 16) | d,
            },
            0b01 => IsidSetter::EnterpriseNumber {
                en: b123,
                qualifier: d,
            },
            _ => IsidSetter::Random {
                random: b123,
                qualifier: d,
            },
        }
    }
}

impl fmt::Debug for Isid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Isid({self})")
    }
}

impl fmt::Display for Isid {
    /// Twelve lowercase hex digits, the form `FromStr` accepts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
    }
}

impl FromStr for Isid {
    type Err = Error;

    /// Twelve hex digits, optionally prefixed by `0x`.
    fn from_str(s: &str) -> Result<Self, Error> {
        let hex = s.strip_prefix("0x").unwrap_or(s);
        if hex.len() != 12 || !hex.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(Error::InvalidArgument(format!(
                "ISID {s:?} is not 12 hex digits"
            )));
        }
        let mut bytes = [0u8; 6];
        for (i, b) in bytes.iter_mut().enumerate() {
            *b = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("checked hex digits");
        }
        Isid::new(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What libiscsi's setters write into the context (lib/init.c), modelled
    /// so the mapping can be checked without reaching into the private struct.
    fn apply(setter: IsidSetter) -> [u8; 6] {
        let be = |v: u32| v.to_be_bytes();
        match setter {
            IsidSetter::Oui { oui, qualifier } => {
                let (o, q) = (be(oui), be(qualifier));
                [o[1] & 0x3f, o[2], o[3], q[1], q[2], q[3]]
            }
            IsidSetter::EnterpriseNumber { en: v, qualifier }
            | IsidSetter::Random {
                random: v,
                qualifier,
            } => {
                let t = if matches!(setter, IsidSetter::EnterpriseNumber { .. }) {
                    0x40
                } else {
                    0x80
                };
                let (v, q) = (be(v), be(qualifier));
                [t, v[1], v[2], v[3], q[2], q[3]]
            }
        }
    }

    #[test]
    fn every_valid_format_round_trips_through_its_setter() {
        for bytes in [
            [0x00, 0x00, 0x00, 0x00, 0x00, 0x00],
            [0x3f, 0xff, 0xff, 0xff, 0xff, 0xff],
            [0x23, 0x45, 0x67, 0x89, 0xab, 0xcd],
            [0x40, 0x00, 0x01, 0x37, 0x00, 0x01],
            [0x40, 0xff, 0xff, 0xff, 0xff, 0xff],
            [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a],
            [0x80, 0xff, 0x00, 0xff, 0x00, 0xff],
        ] {
            let isid = Isid::new(bytes).unwrap();
            assert_eq!(apply(isid.setter()), bytes, "{isid}");
        }
    }

    #[test]
    fn rejects_reserved_encodings() {
        assert!(Isid::new([0xc0, 0, 0, 0, 0, 0]).is_err());
        assert!(Isid::new([0x41, 0, 0, 0, 0, 0]).is_err());
        assert!(Isid::new([0x81, 0, 0, 0, 0, 0]).is_err());
    }

    #[test]
    fn parses_and_prints_hex() {
        let isid: Isid = "0x80123456789a".parse().unwrap();
        assert_eq!(isid.bytes(), [0x80, 0x12, 0x34, 0x56, 0x78, 0x9a]);
        assert_eq!(isid.to_string(), "80123456789a");
        assert_eq!("80123456789A".parse::<Isid>().unwrap(), isid);
        assert!("80123456789".parse::<Isid>().is_err());
        assert!("80123456789g".parse::<Isid>().is_err());
        assert!("c00000000000".parse::<Isid>().is_err());
    }
}
