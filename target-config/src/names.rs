//! Validated identifiers: iSCSI names and volume names.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An iSCSI name (RFC 7143 §4.2.7), stored in its normalized lowercase form.
///
/// Three formats are accepted (RFC 7143 §4.2.7.3–§4.2.7.6, RFC 3980 for
/// `naa.`):
/// - `iqn.yyyy-mm.reversed.domain[:unique-string]`
/// - `eui.` followed by 16 hex digits
/// - `naa.` followed by 16 or 32 hex digits
///
/// iSCSI names compare case-insensitively (RFC 3722 maps them to lowercase),
/// so the name is lowercased once here and compared bytewise after that.
/// Only the ASCII subset of RFC 3722's repertoire is accepted — letters,
/// digits, `-`, `.` and `:` — because every initiator in use can type it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Iqn(String);

/// RFC 7143 §4.2.7.1: an iSCSI name is at most 223 bytes.
pub const MAX_ISCSI_NAME_LEN: usize = 223;

/// Why a string is not an iSCSI name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IqnError {
    #[error("empty iSCSI name; write e.g. \"iqn.2026-11.io.reservoir:vol0\"")]
    Empty,
    #[error("iSCSI name is {0} bytes; the limit is 223 (RFC 7143 §4.2.7.1)")]
    TooLong(usize),
    #[error("iSCSI name contains {0:?}; only letters, digits, '-', '.' and ':' are allowed")]
    BadChar(char),
    #[error("iSCSI name must start with \"iqn.\", \"eui.\" or \"naa.\"")]
    UnknownType,
    #[error("\"iqn.\" must be followed by a date yyyy-mm, e.g. \"iqn.2026-11.io.reservoir\"")]
    BadDate,
    #[error("\"iqn.yyyy-mm.\" must be followed by a reversed domain name, e.g. \"io.reservoir\"")]
    BadAuthority,
    #[error("nothing follows ':'; add a unique string or drop the ':'")]
    EmptySuffix,
    #[error("\"eui.\" must be followed by exactly 16 hex digits")]
    BadEui,
    #[error("\"naa.\" must be followed by exactly 16 or 32 hex digits")]
    BadNaa,
}

impl Iqn {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_hex(s: &str, lengths: &[usize]) -> bool {
    lengths.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn validate_iqn_body(body: &str) -> Result<(), IqnError> {
    // yyyy-mm: the month the naming authority owned the domain.
    let date = body.get(..7).ok_or(IqnError::BadDate)?;
    let bytes = date.as_bytes();
    let digits = |r: std::ops::Range<usize>| bytes[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && bytes[4] == b'-' && digits(5..7)) {
        return Err(IqnError::BadDate);
    }
    let month = (bytes[5] - b'0') * 10 + (bytes[6] - b'0');
    if !(1..=12).contains(&month) {
        return Err(IqnError::BadDate);
    }
    let rest = body[7..].strip_prefix('.').ok_or(IqnError::BadAuthority)?;
    let (authority, suffix) = match rest.split_once(':') {
        Some((authority, suffix)) => (authority, Some(suffix)),
        None => (rest, None),
    };
    let label_ok = |label: &str| {
        !label.is_empty()
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    };
    if !authority.split('.').all(label_ok) {
        return Err(IqnError::BadAuthority);
    }
    if suffix == Some("") {
        return Err(IqnError::EmptySuffix);
    }
    Ok(())
}

impl FromStr for Iqn {
    type Err = IqnError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(IqnError::Empty);
        }
        if s.len() > MAX_ISCSI_NAME_LEN {
            return Err(IqnError::TooLong(s.len()));
        }
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':')))
        {
            return Err(IqnError::BadChar(bad));
        }
        let name = s.to_ascii_lowercase();
        if let Some(body) = name.strip_prefix("iqn.") {
            validate_iqn_body(body)?;
        } else if let Some(hex) = name.strip_prefix("eui.") {
            if !is_hex(hex, &[16]) {
                return Err(IqnError::BadEui);
            }
        } else if let Some(hex) = name.strip_prefix("naa.") {
            if !is_hex(hex, &[16, 32]) {
                return Err(IqnError::BadNaa);
            }
        } else {
            return Err(IqnError::UnknownType);
        }
        Ok(Iqn(name))
    }
}

impl fmt::Display for Iqn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The name of a volume: what targets list as LUNs, what the CLI and the
/// RPC API take, and a file name under the data directory — hence the
/// conservative alphabet and no leading `.` or `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VolumeName(String);

pub const MAX_VOLUME_NAME_LEN: usize = 64;

/// Why a string is not a volume name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VolumeNameError {
    #[error("empty volume name")]
    Empty,
    #[error("volume name is {0} characters; the limit is 64")]
    TooLong(usize),
    #[error("volume name contains {0:?}; use letters, digits, '.', '_' and '-'")]
    BadChar(char),
    #[error("volume name must not start with '.' or '-'")]
    BadStart,
}

impl VolumeName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for VolumeName {
    type Err = VolumeNameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() {
            return Err(VolumeNameError::Empty);
        }
        if let Some(bad) = s
            .chars()
            .find(|&c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            return Err(VolumeNameError::BadChar(bad));
        }
        // All ASCII from here, so bytes == chars.
        if s.len() > MAX_VOLUME_NAME_LEN {
            return Err(VolumeNameError::TooLong(s.len()));
        }
        if s.starts_with(['.', '-']) {
            return Err(VolumeNameError::BadStart);
        }
        Ok(VolumeName(s.to_owned()))
    }
}

impl fmt::Display for VolumeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! string_serde {
    ($ty:ty) => {
        impl Serialize for $ty {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_serde!(Iqn);
string_serde!(VolumeName);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_iscsi_names() {
        for name in [
            "iqn.2026-11.io.reservoir:vol0",
            "iqn.1994-05.com.redhat:5d3fb2a8d5c6",
            "iqn.2001-04.com.example",
            "iqn.2001-04.com.example:storage:diskarrays-sn-a8675309",
            "eui.02004567a425678d",
            "naa.52004567ba64678d",
            "naa.62004567ba64678d0123456789abcdef",
        ] {
            assert_eq!(
                name.parse::<Iqn>().map(|n| n.to_string()),
                Ok(name.to_owned())
            );
        }
    }

    #[test]
    fn lowercases() {
        let iqn: Iqn = "IQN.2026-11.IO.Reservoir:Vol0".parse().unwrap();
        assert_eq!(iqn.as_str(), "iqn.2026-11.io.reservoir:vol0");
        let eui: Iqn = "eui.02004567A425678D".parse().unwrap();
        assert_eq!(eui.as_str(), "eui.02004567a425678d");
    }

    #[test]
    fn rejects_bad_iscsi_names() {
        let cases = [
            ("", IqnError::Empty),
            ("iqn.2026-11.io reservoir", IqnError::BadChar(' ')),
            ("iqn.2026-11.io_reservoir", IqnError::BadChar('_')),
            ("iqn.2026-11.ïo", IqnError::BadChar('ï')),
            ("foo.2026-11.io.reservoir", IqnError::UnknownType),
            ("iqn", IqnError::UnknownType),
            ("iqn.26-11.io.reservoir", IqnError::BadDate),
            ("iqn.2026-13.io.reservoir", IqnError::BadDate),
            ("iqn.2026-00.io.reservoir", IqnError::BadDate),
            ("iqn.2026-1", IqnError::BadDate),
            ("iqn.2026-11", IqnError::BadAuthority),
            ("iqn.2026-11.", IqnError::BadAuthority),
            ("iqn.2026-11:x", IqnError::BadAuthority),
            ("iqn.2026-11.io..reservoir", IqnError::BadAuthority),
            ("iqn.2026-11.io.reservoir.:x", IqnError::BadAuthority),
            ("iqn.2026-11.io.reservoir:", IqnError::EmptySuffix),
            ("eui.02004567a425678", IqnError::BadEui),
            ("eui.02004567a425678g", IqnError::BadEui),
            ("naa.0123", IqnError::BadNaa),
            ("naa.62004567ba64678d0123456789abcde", IqnError::BadNaa),
        ];
        for (name, err) in cases {
            assert_eq!(name.parse::<Iqn>(), Err(err), "{name:?}");
        }
        let long = format!("iqn.2026-11.io.reservoir:{}", "a".repeat(200));
        assert_eq!(long.parse::<Iqn>(), Err(IqnError::TooLong(long.len())));
        let max = format!("iqn.2026-11.io.reservoir:{}", "a".repeat(223 - 25));
        assert_eq!(max.len(), MAX_ISCSI_NAME_LEN);
        assert!(max.parse::<Iqn>().is_ok());
    }

    #[test]
    fn volume_names() {
        for ok in ["vol0", "a", "Vol_1.img", "0", "x-y", &"v".repeat(64)] {
            assert!(ok.parse::<VolumeName>().is_ok(), "{ok:?}");
        }
        assert_eq!("".parse::<VolumeName>(), Err(VolumeNameError::Empty));
        assert_eq!(
            ".hidden".parse::<VolumeName>(),
            Err(VolumeNameError::BadStart)
        );
        assert_eq!("-rf".parse::<VolumeName>(), Err(VolumeNameError::BadStart));
        assert_eq!(
            "a/b".parse::<VolumeName>(),
            Err(VolumeNameError::BadChar('/'))
        );
        assert_eq!(
            "a b".parse::<VolumeName>(),
            Err(VolumeNameError::BadChar(' '))
        );
        assert_eq!(
            "v".repeat(65).parse::<VolumeName>(),
            Err(VolumeNameError::TooLong(65))
        );
    }

    proptest! {
        #[test]
        fn iqn_parser_never_panics(s in "\\PC{0,300}") {
            let _ = s.parse::<Iqn>();
        }

        #[test]
        fn iqn_like_strings_never_panic(s in "(iqn|eui|naa|IQN)\\.[0-9a-fA-F.:-]{0,40}") {
            if let Ok(iqn) = s.parse::<Iqn>() {
                // Normalized form parses to itself.
                prop_assert_eq!(iqn.as_str().parse::<Iqn>(), Ok(iqn.clone()));
                prop_assert_eq!(iqn.as_str(), s.to_ascii_lowercase());
            }
        }

        #[test]
        fn generated_iqns_round_trip(
            year in 1000u32..10000,
            month in 1u32..13,
            domain in "[a-z0-9-]{1,10}(\\.[a-z0-9-]{1,10}){0,3}",
            suffix in proptest::option::of("[a-zA-Z0-9.:-]{1,30}"),
        ) {
            let mut name = format!("iqn.{year}-{month:02}.{domain}");
            if let Some(suffix) = suffix {
                name.push(':');
                name.push_str(&suffix);
            }
            let iqn: Iqn = name.parse().unwrap();
            prop_assert_eq!(iqn.to_string().parse::<Iqn>(), Ok(iqn.clone()));
            prop_assert_eq!(iqn.to_string(), name.to_ascii_lowercase());
        }

        #[test]
        fn volume_name_parser_never_panics(s in "\\PC{0,80}") {
            if let Ok(name) = s.parse::<VolumeName>() {
                prop_assert_eq!(name.to_string(), s);
            }
        }
    }
}
