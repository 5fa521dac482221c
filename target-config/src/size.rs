//! Byte sizes (`"8GiB"`) and the logical block sizes a volume may use.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A size in bytes.
///
/// Parsed from a plain integer (bytes) or a number with a binary unit:
/// `K`, `M`, `G`, `T`, `P`, `E`, each optionally followed by `iB` or `B`
/// (`"1G"`, `"1GB"` and `"1GiB"` all mean 2^30 bytes; storage people mean
/// binary units when they size a volume). Case and a space before the unit
/// do not matter. A fraction is accepted only when it comes out to whole
/// bytes (`"1.5GiB"` yes, `"1.1B"` no). Display prints the largest unit
/// that divides the size exactly, so `parse(display(x)) == x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(u64);

/// Binary units, largest first, as Display picks them.
const UNITS: [(&str, u32); 6] = [
    ("EiB", 60),
    ("PiB", 50),
    ("TiB", 40),
    ("GiB", 30),
    ("MiB", 20),
    ("KiB", 10),
];

/// More decimal places than this cannot be integral for any unit up to
/// 2^60 unless they are zeros, and the bound keeps the arithmetic in `u128`.
const MAX_FRACTION_DIGITS: usize = 20;

impl ByteSize {
    pub const fn from_bytes(bytes: u64) -> Self {
        ByteSize(bytes)
    }

    pub const fn kib(n: u64) -> Self {
        ByteSize(n << 10)
    }

    pub const fn mib(n: u64) -> Self {
        ByteSize(n << 20)
    }

    pub const fn gib(n: u64) -> Self {
        ByteSize(n << 30)
    }

    pub const fn bytes(self) -> u64 {
        self.0
    }
}

impl From<u64> for ByteSize {
    fn from(bytes: u64) -> Self {
        ByteSize(bytes)
    }
}

/// Why a size string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ByteSizeError {
    #[error("empty size; write e.g. \"1GiB\" or a number of bytes")]
    Empty,
    #[error("sizes cannot be negative")]
    Negative,
    #[error("{0:?} is not a size; write a number with an optional unit K, M, G, T, P or E (binary), e.g. \"512MiB\"")]
    Malformed(String),
    #[error("unknown unit {0:?}; use K, M, G, T, P or E, optionally followed by \"iB\" (binary multiples)")]
    UnknownUnit(String),
    #[error("{0:?} is not a whole number of bytes; use a smaller unit")]
    NotIntegral(String),
    #[error("{0:?} does not fit in 64 bits (16 EiB)")]
    Overflow(String),
}

fn unit_shift(unit: &str) -> Option<u32> {
    let lower = unit.to_ascii_lowercase();
    let (prefix, rest) = match lower.char_indices().nth(1) {
        Some((i, _)) => lower.split_at(i),
        None => (lower.as_str(), ""),
    };
    let shift = match prefix {
        "" => return Some(0),
        "b" if rest.is_empty() => return Some(0),
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        "p" => 50,
        "e" => 60,
        _ => return None,
    };
    matches!(rest, "" | "b" | "ib").then_some(shift)
}

impl FromStr for ByteSize {
    type Err = ByteSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if text.is_empty() {
            return Err(ByteSizeError::Empty);
        }
        if text.starts_with('-') {
            return Err(ByteSizeError::Negative);
        }
        let number_end = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(number_end);
        let shift = unit_shift(unit.trim_start())
            .ok_or_else(|| ByteSizeError::UnknownUnit(unit.trim_start().to_owned()))?;
        let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
        let malformed = || ByteSizeError::Malformed(s.to_owned());
        if int_part.is_empty() || frac_part.contains('.') {
            return Err(malformed());
        }
        if number.contains('.') && frac_part.is_empty() {
            return Err(malformed());
        }
        let overflow = || ByteSizeError::Overflow(s.to_owned());
        let whole = int_part
            .parse::<u64>()
            .map_err(|_| overflow())
            .and_then(|n| n.checked_mul(1u64 << shift).ok_or_else(overflow))?;
        let frac_digits = frac_part.trim_end_matches('0');
        if frac_digits.is_empty() {
            return Ok(ByteSize(whole));
        }
        if frac_digits.len() > MAX_FRACTION_DIGITS {
            return Err(ByteSizeError::NotIntegral(s.to_owned()));
        }
        // value = whole + frac / 10^digits * 2^shift, exact in u128.
        let frac: u128 = frac_digits.parse().map_err(|_| malformed())?;
        let denominator = 10u128.pow(frac_digits.len() as u32);
        let scaled = frac << shift;
        if !scaled.is_multiple_of(denominator) {
            return Err(ByteSizeError::NotIntegral(s.to_owned()));
        }
        let extra = u64::try_from(scaled / denominator).map_err(|_| overflow())?;
        whole.checked_add(extra).map(ByteSize).ok_or_else(overflow)
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 != 0 {
            for (name, shift) in UNITS {
                if self.0.trailing_zeros() >= shift {
                    return write!(f, "{}{name}", self.0 >> shift);
                }
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct SizeVisitor;
        impl Visitor<'_> for SizeVisitor {
            type Value = ByteSize;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a size such as \"8GiB\" or a number of bytes")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<ByteSize, E> {
                Ok(ByteSize(v))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<ByteSize, E> {
                u64::try_from(v)
                    .map(ByteSize)
                    .map_err(|_| E::custom(ByteSizeError::Negative))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<ByteSize, E> {
                v.parse().map_err(E::custom)
            }
        }
        deserializer.deserialize_any(SizeVisitor)
    }
}

/// The logical block size a volume presents to initiators (SBC-4 READ
/// CAPACITY). 512 is what every initiator handles; 4096 suits 4Kn disks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum BlockSizeConfig {
    #[default]
    B512,
    B4096,
}

impl BlockSizeConfig {
    pub const fn bytes(self) -> u32 {
        match self {
            BlockSizeConfig::B512 => 512,
            BlockSizeConfig::B4096 => 4096,
        }
    }
}

impl TryFrom<u64> for BlockSizeConfig {
    type Error = BlockSizeError;

    fn try_from(bytes: u64) -> Result<Self, Self::Error> {
        match bytes {
            512 => Ok(BlockSizeConfig::B512),
            4096 => Ok(BlockSizeConfig::B4096),
            other => Err(BlockSizeError(other)),
        }
    }
}

/// A block size other than 512 or 4096.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block size {0} is not supported; use 512 or 4096")]
pub struct BlockSizeError(pub u64);

impl fmt::Display for BlockSizeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

impl FromStr for BlockSizeConfig {
    type Err = BlockSizeError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let size: ByteSize = s.parse().map_err(|_| BlockSizeError(0))?;
        BlockSizeConfig::try_from(size.bytes())
    }
}

impl Serialize for BlockSizeConfig {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u32(self.bytes())
    }
}

impl<'de> Deserialize<'de> for BlockSizeConfig {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        // Accept "4KiB" as well as 4096: both appear in operators' notes.
        let size = ByteSize::deserialize(deserializer)?;
        BlockSizeConfig::try_from(size.bytes()).map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(s: &str) -> Result<u64, ByteSizeError> {
        s.parse::<ByteSize>().map(ByteSize::bytes)
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse("4096"), Ok(4096));
        assert_eq!(parse("1GiB"), Ok(1 << 30));
        assert_eq!(parse("512MiB"), Ok(512 << 20));
        assert_eq!(parse("8 GiB"), Ok(8 << 30));
        assert_eq!(parse("1TiB"), Ok(1 << 40));
        assert_eq!(parse("1G"), Ok(1 << 30));
        assert_eq!(parse("1gb"), Ok(1 << 30));
        assert_eq!(parse("2K"), Ok(2048));
        assert_eq!(parse("3PiB"), Ok(3 << 50));
        assert_eq!(parse("100B"), Ok(100));
        assert_eq!(parse("0"), Ok(0));
        assert_eq!(parse("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse("0.5K"), Ok(512));
        assert_eq!(parse("2.000MiB"), Ok(2 << 20));
        assert_eq!(parse("15EiB"), Ok(15 << 60));
    }

    #[test]
    fn rejects_bad_sizes() {
        assert_eq!(parse(""), Err(ByteSizeError::Empty));
        assert_eq!(parse("-1GiB"), Err(ByteSizeError::Negative));
        assert!(matches!(parse("1.1B"), Err(ByteSizeError::NotIntegral(_))));
        assert!(matches!(parse("1.3K"), Err(ByteSizeError::NotIntegral(_))));
        assert!(matches!(parse("16EiB"), Err(ByteSizeError::Overflow(_))));
        assert!(matches!(
            parse("99999999999999999999999"),
            Err(ByteSizeError::Overflow(_))
        ));
        assert!(matches!(parse("1XiB"), Err(ByteSizeError::UnknownUnit(_))));
        assert!(matches!(parse("1GiBs"), Err(ByteSizeError::UnknownUnit(_))));
        assert!(matches!(parse("1iB"), Err(ByteSizeError::UnknownUnit(_))));
        assert!(matches!(parse("GiB"), Err(ByteSizeError::Malformed(_))));
        assert!(matches!(parse("1..2G"), Err(ByteSizeError::Malformed(_))));
        assert!(matches!(parse("1.G"), Err(ByteSizeError::Malformed(_))));
        assert!(matches!(parse(".5G"), Err(ByteSizeError::Malformed(_))));
    }

    #[test]
    fn displays_largest_exact_unit() {
        assert_eq!(ByteSize::gib(1).to_string(), "1GiB");
        assert_eq!(ByteSize::mib(1536).to_string(), "1536MiB");
        assert_eq!(ByteSize::from_bytes(4096).to_string(), "4KiB");
        assert_eq!(ByteSize::from_bytes(1000).to_string(), "1000B");
        assert_eq!(ByteSize::from_bytes(0).to_string(), "0B");
        assert_eq!(ByteSize::from_bytes(1 << 40).to_string(), "1TiB");
        assert_eq!(
            ByteSize::from_bytes(u64::MAX).to_string(),
            format!("{}B", u64::MAX)
        );
    }

    #[test]
    fn block_sizes() {
        assert_eq!("512".parse(), Ok(BlockSizeConfig::B512));
        assert_eq!("4KiB".parse(), Ok(BlockSizeConfig::B4096));
        assert_eq!("1024".parse::<BlockSizeConfig>(), Err(BlockSizeError(1024)));
        assert_eq!(BlockSizeConfig::default().bytes(), 512);
    }

    proptest! {
        #[test]
        fn display_then_parse_is_identity(bytes in any::<u64>()) {
            let size = ByteSize::from_bytes(bytes);
            prop_assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size));
        }

        #[test]
        fn unit_multiples_round_trip(n in 0u64..1 << 20, unit in 0usize..UNITS.len()) {
            let (_, shift) = UNITS[unit];
            // High bits shifted out are fine: any u64 must round-trip.
            let size = ByteSize::from_bytes(n << shift);
            prop_assert_eq!(size.to_string().parse::<ByteSize>(), Ok(size));
        }

        #[test]
        fn parser_never_panics(s in ".{0,40}") {
            let _ = s.parse::<ByteSize>();
        }
    }
}
