//! The metadata journal: an append-only log of snapshot events.
//!
//! # Record layout (little endian)
//!
//! ```text
//!  0      4        6       8        12       16
//!  +------+--------+-------+--------+--------+----------------+
//!  | magic| version| kind  | length | crc32c | payload ...    |
//!  +------+--------+-------+--------+--------+----------------+
//! ```
//!
//! The CRC covers version, kind, length and payload, so a torn or stale
//! record never decodes. Every record is appended and fdatasync'ed before
//! the operation it describes is acknowledged (or, for a copy, before the
//! origin write that needs it proceeds), so only the last record can be
//! incomplete after a crash: replay discards an incomplete tail, but refuses
//! to open (rather than silently drop later records) when a damaged record
//! is followed by an intact one.
//!
//! At open the log is compacted: the state it describes is written to a new
//! file, fsync'ed, renamed over the old one and the directory fsync'ed.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use crate::atomics::DiffExtent;
use crate::{SnapshotError, SnapshotId};

const MAGIC: u32 = u32::from_le_bytes(*b"RSNJ");
const VERSION: u16 = 1;
const HEADER: usize = 16;
/// Bounds a record so a damaged length cannot make replay allocate wildly.
const MAX_PAYLOAD: u32 = 1 << 20;

/// One journal event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Record {
    /// First record of every journal: the volume's fixed parameters.
    Volume {
        chunk_size: u32,
        block_size: u32,
        next_id: u64,
    },
    Create {
        id: SnapshotId,
        created_unix_ns: u64,
        block_count: u64,
        name: String,
    },
    /// `chunk`'s content before the write is in `extent`, shared by `ids`.
    Copy {
        chunk: u64,
        extent: DiffExtent,
        ids: Vec<SnapshotId>,
    },
    Delete {
        id: SnapshotId,
    },
    Invalidate {
        id: SnapshotId,
        full: bool,
        detail: String,
    },
}

const K_VOLUME: u16 = 1;
const K_CREATE: u16 = 2;
const K_COPY: u16 = 3;
const K_DELETE: u16 = 4;
const K_INVALIDATE: u16 = 5;

pub(crate) fn encode(record: &Record) -> Vec<u8> {
    let mut p = Vec::new();
    let kind = match record {
        Record::Volume {
            chunk_size,
            block_size,
            next_id,
        } => {
            p.extend_from_slice(&chunk_size.to_le_bytes());
            p.extend_from_slice(&block_size.to_le_bytes());
            p.extend_from_slice(&next_id.to_le_bytes());
            K_VOLUME
        }
        Record::Create {
            id,
            created_unix_ns,
            block_count,
            name,
        } => {
            p.extend_from_slice(&id.0.to_le_bytes());
            p.extend_from_slice(&created_unix_ns.to_le_bytes());
            p.extend_from_slice(&block_count.to_le_bytes());
            p.extend_from_slice(name.as_bytes());
            K_CREATE
        }
        Record::Copy { chunk, extent, ids } => {
            p.extend_from_slice(&chunk.to_le_bytes());
            p.extend_from_slice(&extent.0.to_le_bytes());
            for id in ids {
                p.extend_from_slice(&id.0.to_le_bytes());
            }
            K_COPY
        }
        Record::Delete { id } => {
            p.extend_from_slice(&id.0.to_le_bytes());
            K_DELETE
        }
        Record::Invalidate { id, full, detail } => {
            p.extend_from_slice(&id.0.to_le_bytes());
            p.push(u8::from(*full));
            p.extend_from_slice(detail.as_bytes());
            K_INVALIDATE
        }
    };
    let mut out = Vec::with_capacity(HEADER + p.len());
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&kind.to_le_bytes());
    out.extend_from_slice(&(p.len() as u32).to_le_bytes());
    let crc = crc32c::crc32c_append(crc32c::crc32c(&out[4..12]), &p);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&p);
    out
}

/// The result of decoding at one position.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decoded {
    Record(Record, usize),
    /// Not a whole intact record (torn, damaged or garbage).
    Bad,
    /// Intact, but of a version or kind this build does not know.
    Unknown {
        version: u16,
        kind: u16,
    },
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
    fn u64(&mut self) -> Option<u64> {
        self.take::<8>().map(u64::from_le_bytes)
    }
    fn u32(&mut self) -> Option<u32> {
        self.take::<4>().map(u32::from_le_bytes)
    }
    fn string(&mut self) -> Option<String> {
        let s = String::from_utf8(self.0.to_vec()).ok()?;
        self.0 = &[];
        Some(s)
    }
}

pub(crate) fn decode(buf: &[u8]) -> Decoded {
    let Some(head) = buf.get(..HEADER) else {
        return Decoded::Bad;
    };
    let word = |i: usize| u32::from_le_bytes(head[i..i + 4].try_into().expect("4 bytes"));
    let version = u16::from_le_bytes([head[4], head[5]]);
    let kind = u16::from_le_bytes([head[6], head[7]]);
    let len = word(8);
    if word(0) != MAGIC || len > MAX_PAYLOAD {
        return Decoded::Bad;
    }
    let Some(payload) = buf.get(HEADER..HEADER + len as usize) else {
        return Decoded::Bad;
    };
    if crc32c::crc32c_append(crc32c::crc32c(&head[4..12]), payload) != word(12) {
        return Decoded::Bad;
    }
    if version != VERSION {
        return Decoded::Unknown { version, kind };
    }
    let mut r = Reader(payload);
    let record = match kind {
        K_VOLUME => (|| {
            Some(Record::Volume {
                chunk_size: r.u32()?,
                block_size: r.u32()?,
                next_id: r.u64()?,
            })
        })(),
        K_CREATE => (|| {
            Some(Record::Create {
                id: SnapshotId(r.u64()?),
                created_unix_ns: r.u64()?,
                block_count: r.u64()?,
                name: r.string()?,
            })
        })(),
        K_COPY => (|| {
            let chunk = r.u64()?;
            let extent = DiffExtent(r.u32()?);
            let mut ids = Vec::new();
            while !r.0.is_empty() {
                ids.push(SnapshotId(r.u64()?));
            }
            Some(Record::Copy { chunk, extent, ids })
        })(),
        K_DELETE => (|| {
            Some(Record::Delete {
                id: SnapshotId(r.u64()?),
            })
        })(),
        K_INVALIDATE => (|| {
            Some(Record::Invalidate {
                id: SnapshotId(r.u64()?),
                full: r.take::<1>()?[0] != 0,
                detail: r.string()?,
            })
        })(),
        _ => return Decoded::Unknown { version, kind },
    };
    match record {
        Some(record) if r.0.is_empty() => Decoded::Record(record, HEADER + len as usize),
        _ => Decoded::Bad,
    }
}

/// What replay found in a journal file.
#[derive(Debug)]
pub(crate) struct Replayed {
    pub records: Vec<Record>,
    pub discarded_bytes: u64,
}

/// Decodes a whole journal image; see the module docs for the tail rule.
pub(crate) fn replay(bytes: &[u8], path: &Path) -> Result<Replayed, SnapshotError> {
    let corrupt = |why: String| SnapshotError::Corrupt {
        path: path.display().to_string(),
        why,
    };
    let mut records = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        match decode(&bytes[at..]) {
            Decoded::Record(r, used) => {
                records.push(r);
                at += used;
            }
            Decoded::Unknown { version, kind } => {
                return Err(corrupt(format!(
                    "record at byte {at} has version {version} kind {kind}, unknown to this build \
                     (written by a newer Reservoir?)"
                )))
            }
            Decoded::Bad => {
                let later = (at + 1..bytes.len())
                    .find(|&i| matches!(decode(&bytes[i..]), Decoded::Record(..)));
                if let Some(i) = later {
                    return Err(corrupt(format!(
                        "record at byte {at} is damaged but an intact record follows at byte {i}"
                    )));
                }
                break;
            }
        }
    }
    Ok(Replayed {
        records,
        discarded_bytes: (bytes.len() - at) as u64,
    })
}

/// The open journal, appended under the engine's journal mutex.
#[derive(Debug)]
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
}

pub(crate) fn sync_dir(dir: &Path) -> Result<(), SnapshotError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(SnapshotError::io("fsync directory", dir))
}

/// Writes `bytes` to `path` crash-atomically: a new file, fsync'ed, renamed
/// over the old one, directory fsync'ed.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
    let tmp = path.with_extension("new");
    let mut f = File::create(&tmp).map_err(SnapshotError::io("create", &tmp))?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .map_err(SnapshotError::io("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(SnapshotError::io("rename", &tmp))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

impl Journal {
    pub const FILE: &'static str = "journal";

    /// Reads the journal under `dir` (empty when there is none).
    pub fn read(dir: &Path) -> Result<(Vec<u8>, PathBuf), SnapshotError> {
        let path = dir.join(Self::FILE);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => {
                f.read_to_end(&mut bytes)
                    .map_err(SnapshotError::io("read", &path))?;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(SnapshotError::io("open", &path)(e)),
        }
        Ok((bytes, path))
    }

    /// Replaces the journal with `records` (compaction) and opens it for
    /// appending.
    pub fn rewrite(path: PathBuf, records: &[Record]) -> Result<Self, SnapshotError> {
        let bytes: Vec<u8> = records.iter().flat_map(encode).collect();
        replace_file(&path, &bytes)?;
        let file = OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(SnapshotError::io("open", &path))?;
        Ok(Journal { file, path })
    }

    /// Appends one record and makes it durable.
    pub fn append(&mut self, record: &Record) -> Result<(), SnapshotError> {
        self.file
            .write_all(&encode(record))
            .and_then(|()| self.file.sync_data())
            .map_err(SnapshotError::io("append to", &self.path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record() -> impl Strategy<Value = Record> {
        prop_oneof![
            (any::<u32>(), any::<u32>(), any::<u64>()).prop_map(|(c, b, n)| Record::Volume {
                chunk_size: c,
                block_size: b,
                next_id: n
            }),
            (
                any::<u64>(),
                any::<u64>(),
                any::<u64>(),
                "[a-z0-9._-]{0,64}"
            )
                .prop_map(|(i, t, b, n)| Record::Create {
                    id: SnapshotId(i),
                    created_unix_ns: t,
                    block_count: b,
                    name: n
                }),
            (
                any::<u64>(),
                any::<u32>(),
                prop::collection::vec(any::<u64>(), 0..8)
            )
                .prop_map(|(c, e, ids)| Record::Copy {
                    chunk: c,
                    extent: DiffExtent(e),
                    ids: ids.into_iter().map(SnapshotId).collect()
                }),
            any::<u64>().prop_map(|i| Record::Delete { id: SnapshotId(i) }),
            (any::<u64>(), any::<bool>(), ".{0,40}").prop_map(|(i, f, d)| Record::Invalidate {
                id: SnapshotId(i),
                full: f,
                detail: d
            }),
        ]
    }

    proptest! {
        #[test]
        fn records_round_trip(rs in prop::collection::vec(record(), 0..10)) {
            let bytes: Vec<u8> = rs.iter().flat_map(encode).collect();
            let replayed = replay(&bytes, Path::new("j")).unwrap();
            prop_assert_eq!(replayed.records, rs);
            prop_assert_eq!(replayed.discarded_bytes, 0);
        }

        #[test]
        fn a_torn_tail_is_discarded(rs in prop::collection::vec(record(), 1..10), cut in any::<prop::sample::Index>()) {
            let bytes: Vec<u8> = rs.iter().flat_map(encode).collect();
            let last = encode(rs.last().unwrap()).len();
            let keep = bytes.len() - last + cut.index(last);
            let replayed = replay(&bytes[..keep], Path::new("j")).unwrap();
            prop_assert_eq!(&replayed.records[..], &rs[..rs.len() - 1]);
        }

        #[test]
        fn garbage_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..200)) {
            let _ = replay(&bytes, Path::new("j"));
        }
    }

    #[test]
    fn damage_before_an_intact_record_refuses_to_open() {
        let a = encode(&Record::Delete { id: SnapshotId(1) });
        let b = encode(&Record::Delete { id: SnapshotId(2) });
        let mut bytes = [a, b].concat();
        bytes[HEADER] ^= 1;
        let e = replay(&bytes, Path::new("j")).unwrap_err();
        assert_eq!(e.kind(), crate::SnapshotErrorKind::Corrupt);
    }
}
