//! Small crash-safe file helpers: checksummed JSON records written by
//! write-new-then-rename, and the fixed-size chunk index entry.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::BackupError;

pub(crate) fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(BackupError::io("fsync directory", dir))
}

/// `{"crc32c": .., "version": .., "body": ..}`: the CRC covers the body as
/// serialized (a struct with a fixed field order serializes the same way
/// after a round trip), the version is checked before the body is read.
#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    version: u32,
    crc32c: u32,
    body: T,
}

/// Writes `value` to `dir/name` atomically: temp file, fsync, rename, fsync
/// of the directory.
pub(crate) fn write_record<T: Serialize>(
    dir: &Path,
    name: &str,
    version: u32,
    value: &T,
) -> Result<(), BackupError> {
    let body = serde_json::to_vec(value).map_err(|e| BackupError::Io {
        op: "serialize",
        path: name.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let envelope = Envelope {
        version,
        crc32c: crc32c::crc32c(&body),
        body: value,
    };
    let bytes = serde_json::to_vec_pretty(&envelope).map_err(|e| BackupError::Io {
        op: "serialize",
        path: name.to_owned(),
        source: std::io::Error::other(e),
    })?;
    let tmp = dir.join(format!(".{name}.tmp"));
    let path = dir.join(name);
    let mut f = File::create(&tmp).map_err(BackupError::io("create", &tmp))?;
    f.write_all(&bytes)
        .and_then(|()| f.sync_all())
        .map_err(BackupError::io("write", &tmp))?;
    fs::rename(&tmp, &path).map_err(BackupError::io("rename", &tmp))?;
    sync_dir(dir)
}

/// Reads a record written by [`write_record`]; a newer version than
/// `supported` is refused before its body is interpreted.
pub(crate) fn read_record<T: Serialize + DeserializeOwned>(
    path: &Path,
    what: &str,
    supported: u32,
) -> Result<T, BackupError> {
    let bytes = fs::read(path).map_err(BackupError::io("read", path))?;
    let corrupt = |why: String| BackupError::CorruptFile {
        path: path.display().to_string(),
        why,
    };
    let envelope: Envelope<serde_json::Value> =
        serde_json::from_slice(&bytes).map_err(|e| corrupt(format!("not a {what}: {e}")))?;
    if envelope.version > supported {
        return Err(BackupError::Unsupported {
            what: format!("{what} {}", path.display()),
            found: envelope.version,
            supported,
        });
    }
    let value: T =
        serde_json::from_value(envelope.body).map_err(|e| corrupt(format!("not a {what}: {e}")))?;
    let body = serde_json::to_vec(&value).map_err(|e| corrupt(e.to_string()))?;
    let crc = crc32c::crc32c(&body);
    if crc != envelope.crc32c {
        return Err(corrupt(format!(
            "{what} checksum {crc:08x}, recorded {:08x}",
            envelope.crc32c
        )));
    }
    Ok(value)
}

/// One record of a backup as stored in `chunks.idx`: 32 bytes, little
/// endian: offset u64, len u64, kind u8, 3 zero bytes, CRC32C u32 of the
/// payload (0 for ZERO), position of the payload in `chunks.dat` u64.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub offset: u64,
    pub len: u64,
    pub kind: u8,
    pub crc: u32,
    pub pos: u64,
}

pub(crate) const INDEX_ENTRY: usize = 32;

impl IndexEntry {
    pub(crate) fn encode(&self) -> [u8; INDEX_ENTRY] {
        let mut e = [0u8; INDEX_ENTRY];
        e[0..8].copy_from_slice(&self.offset.to_le_bytes());
        e[8..16].copy_from_slice(&self.len.to_le_bytes());
        e[16] = self.kind;
        e[20..24].copy_from_slice(&self.crc.to_le_bytes());
        e[24..32].copy_from_slice(&self.pos.to_le_bytes());
        e
    }

    pub(crate) fn decode(e: &[u8; INDEX_ENTRY]) -> Self {
        let u64_at = |i: usize| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&e[i..i + 8]);
            u64::from_le_bytes(a)
        };
        let mut c = [0u8; 4];
        c.copy_from_slice(&e[20..24]);
        IndexEntry {
            offset: u64_at(0),
            len: u64_at(8),
            kind: e[16],
            crc: u32::from_le_bytes(c),
            pos: u64_at(24),
        }
    }
}

/// Reads `chunks.idx`; returns the entries and the file's CRC32C.
pub(crate) fn read_index(path: &Path) -> Result<(Vec<IndexEntry>, u32), BackupError> {
    let bytes = fs::read(path).map_err(BackupError::io("read", path))?;
    if !bytes.len().is_multiple_of(INDEX_ENTRY) {
        return Err(BackupError::CorruptFile {
            path: path.display().to_string(),
            why: format!(
                "{} bytes is not a whole number of {INDEX_ENTRY}-byte entries",
                bytes.len()
            ),
        });
    }
    let entries = bytes
        .chunks_exact(INDEX_ENTRY)
        .map(|c| {
            let mut e = [0u8; INDEX_ENTRY];
            e.copy_from_slice(c);
            IndexEntry::decode(&e)
        })
        .collect();
    Ok((entries, crc32c::crc32c(&bytes)))
}
