//! Identifiers and value types shared by the sender, the server and restore.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::BackupError;

/// A backup's identity in one repository: allocated by the server,
/// increasing in creation order, never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct BackupId(pub u64);

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl FromStr for BackupId {
    type Err = BackupError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.parse::<u64>()
            .map(BackupId)
            .map_err(|_| BackupError::InvalidArgument {
                what: "backup id",
                why: format!("{s:?} is not a number; `reservoir backup list` shows the ids"),
            })
    }
}

/// Which volume a backup is of. The name groups chains in a repository; the
/// block size must match on restore.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VolumeIdentity {
    pub name: String,
    pub block_size: u32,
}

impl VolumeIdentity {
    pub const MAX_NAME: usize = 128;

    pub fn new(name: &str, block_size: u32) -> Result<Self, BackupError> {
        let id = VolumeIdentity {
            name: name.to_owned(),
            block_size,
        };
        id.validate()?;
        Ok(id)
    }

    pub(crate) fn validate(&self) -> Result<(), BackupError> {
        let bad = |why: String| BackupError::InvalidArgument {
            what: "volume identity",
            why,
        };
        if self.name.is_empty() || self.name.len() > Self::MAX_NAME {
            return Err(bad(format!(
                "volume name {:?} must be 1 to {} bytes",
                self.name,
                Self::MAX_NAME
            )));
        }
        if !matches!(self.block_size, 512 | 4096) {
            return Err(bad(format!(
                "block size {} is neither 512 nor 4096",
                self.block_size
            )));
        }
        Ok(())
    }
}

/// The unit of change tracking and of backup records, in bytes: a power of
/// two from 4 KiB to 16 MiB (the snapshot engine's range).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct ChunkBytes(u32);

impl ChunkBytes {
    pub const MIN: u32 = 4096;
    pub const MAX: u32 = 16 << 20;

    pub fn new(bytes: u32) -> Result<Self, BackupError> {
        if !bytes.is_power_of_two() || !(Self::MIN..=Self::MAX).contains(&bytes) {
            return Err(BackupError::InvalidArgument {
                what: "chunk size",
                why: format!("{bytes} bytes is not a power of two from 4 KiB to 16 MiB"),
            });
        }
        Ok(ChunkBytes(bytes))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    pub(crate) fn u64(self) -> u64 {
        u64::from(self.0)
    }
}

impl TryFrom<u32> for ChunkBytes {
    type Error = BackupError;
    fn try_from(v: u32) -> Result<Self, Self::Error> {
        ChunkBytes::new(v)
    }
}

impl From<ChunkBytes> for u32 {
    fn from(c: ChunkBytes) -> u32 {
        c.0
    }
}

/// The per-appliance shared secret. Never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(Vec<u8>);

impl Token {
    /// Shorter secrets are refused: 16 bytes from a password manager or
    /// `head -c 24 /dev/urandom | base64` are both fine.
    pub const MIN_LEN: usize = 16;
    pub const MAX_LEN: usize = 1024;

    pub fn new(secret: &[u8]) -> Result<Self, BackupError> {
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&secret.len()) {
            return Err(BackupError::InvalidArgument {
                what: "backup token",
                why: format!(
                    "{} bytes; a token must be {} to {} bytes",
                    secret.len(),
                    Self::MIN_LEN,
                    Self::MAX_LEN
                ),
            });
        }
        Ok(Token(secret.to_vec()))
    }

    /// Reads a token file; surrounding whitespace (a trailing newline) is
    /// not part of the secret.
    pub fn from_file(path: &Path) -> Result<Self, BackupError> {
        let bytes = std::fs::read(path).map_err(BackupError::io("read token file", path))?;
        Token::new(bytes.trim_ascii())
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Compares in time independent of where the secrets differ (the
    /// length is not secret: it is bounded and visible on the wire anyway).
    pub(crate) fn matches(&self, presented: &[u8]) -> bool {
        let mut diff = u8::from(self.0.len() != presented.len());
        for (i, a) in self.0.iter().enumerate() {
            diff |= a ^ presented.get(i).copied().unwrap_or(!a);
        }
        std::hint::black_box(diff) == 0
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes>)", self.0.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_compare() {
        let t = Token::new(b"0123456789abcdef").unwrap();
        assert!(t.matches(b"0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcde"));
        assert!(!t.matches(b"0123456789abcdef0"));
        assert!(!t.matches(b""));
        assert!(Token::new(b"short").is_err());
        assert_eq!(format!("{t:?}"), "Token(<16 bytes>)");
    }
}
