//! Crash-atomic files under the data directory.
//!
//! Every record is written as `<name>.tmp`, fsynced, renamed over `<name>`,
//! and the directory fsynced, so after `kill -9` or power loss a reader
//! finds either the old record or the new one, never a torn mix. A record
//! carries a version and a CRC32C of its body so a damaged file is named,
//! not trusted.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::{de::DeserializeOwned, Serialize};

const FORMAT_VERSION: u32 = 1;

#[derive(serde::Serialize, serde::Deserialize)]
struct Envelope {
    version: u32,
    crc32c: u32,
    body: String,
}

/// Writes `value` to `path` crash-atomically.
pub fn write_record<T: Serialize>(path: &Path, value: &T) -> Result<()> {
    let body = serde_json::to_string_pretty(value)?;
    let envelope = Envelope {
        version: FORMAT_VERSION,
        crc32c: crc32c::crc32c(body.as_bytes()),
        body,
    };
    let bytes = serde_json::to_vec_pretty(&envelope)?;
    write_bytes(path, &bytes)
}

/// Writes `bytes` to `path` crash-atomically, as they are: for records
/// that carry their own version and checksum (reservation tables).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .with_context(|| format!("{} has no parent directory", path.display()))?;
    let tmp = path.with_extension("tmp");
    let mut file =
        File::create(&tmp).with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("cannot write {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("cannot replace {}", path.display()))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync directory {}", dir.display()))?;
    Ok(())
}

/// Reads a record written by [`write_record`]; `Ok(None)` if it does not exist.
pub fn read_record<T: DeserializeOwned>(path: &Path) -> Result<Option<T>> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let envelope: Envelope = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a Reservoir record", path.display()))?;
    if envelope.version != FORMAT_VERSION {
        bail!(
            "{} has format version {}, this build reads {FORMAT_VERSION}",
            path.display(),
            envelope.version
        );
    }
    if crc32c::crc32c(envelope.body.as_bytes()) != envelope.crc32c {
        bail!("{} is damaged (checksum mismatch)", path.display());
    }
    let value = serde_json::from_str(&envelope.body)
        .with_context(|| format!("{} has an unexpected layout", path.display()))?;
    Ok(Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        assert!(read_record::<Vec<u32>>(&path).unwrap().is_none());
        write_record(&path, &vec![1u32, 2, 3]).unwrap();
        assert_eq!(read_record::<Vec<u32>>(&path).unwrap(), Some(vec![1, 2, 3]));
        assert!(!path.with_extension("tmp").exists());
    }

    #[test]
    fn damage_is_detected() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        write_record(&path, &"hello").unwrap();
        let text = fs::read_to_string(&path).unwrap().replace("hello", "jello");
        fs::write(&path, text).unwrap();
        let error = read_record::<String>(&path).unwrap_err().to_string();
        assert!(error.contains("damaged"), "{error}");
    }
}
