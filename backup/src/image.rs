//! The image of a volume at one backup, resolved through its chain: for
//! every chunk, which backup's `chunks.dat` holds its newest bytes, or
//! that it is zero. Restore, fetch and prune read through this.

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;

use crate::files::{self, IndexEntry};
use crate::repo::{Repository, Stored, DATA, INDEX};
use crate::stream::KIND_DATA;
use crate::types::{BackupId, ChunkBytes};
use crate::BackupError;

/// Where a chunk's bytes live. 16 bytes per chunk: 1 MiB of map for a
/// 4 GiB volume at 64 KiB chunks.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Index into `Image::sources`, or [`ZERO`].
    src: u32,
    crc: u32,
    pos: u64,
    len: u32,
}

const ZERO: u32 = u32::MAX;

#[derive(Debug)]
struct Source {
    id: BackupId,
    data: File,
}

/// One record of the resolved image.
#[derive(Debug)]
pub(crate) enum Piece<'a> {
    Data {
        offset: u64,
        crc: u32,
        payload: &'a [u8],
    },
    Zero {
        offset: u64,
        len: u64,
    },
}

#[derive(Debug)]
pub(crate) struct Image {
    pub id: BackupId,
    pub volume_size: u64,
    pub chunk: ChunkBytes,
    /// The chain, newest first (for prune's `merged_from`).
    pub chain: Vec<BackupId>,
    sources: Vec<Source>,
    slots: Vec<Slot>,
}

fn corrupt(id: BackupId, why: String) -> BackupError {
    BackupError::Corrupt { id, why }
}

impl Image {
    pub(crate) fn open(repo: &Repository, id: BackupId) -> Result<Image, BackupError> {
        let chain = repo.chain(id)?;
        let top = &chain[0].manifest;
        let chunk = top.chunk_size.u64();
        let volume_size = top.volume_size;
        let chunks = usize::try_from(volume_size.div_ceil(chunk)).map_err(|_| {
            corrupt(
                id,
                format!("volume size {volume_size} does not fit this machine"),
            )
        })?;
        let mut slots = vec![
            Slot {
                src: ZERO,
                crc: 0,
                pos: 0,
                len: 0,
            };
            chunks
        ];
        let mut sources = Vec::with_capacity(chain.len());
        for (src, stored) in chain.iter().rev().enumerate() {
            let entries = load_index(stored)?;
            let path = stored.dir.join(DATA);
            let data = File::open(&path).map_err(BackupError::io("open", &path))?;
            sources.push(Source {
                id: stored.manifest.id,
                data,
            });
            for e in entries {
                let first = e.offset / chunk;
                let end = e.offset.saturating_add(e.len).min(volume_size);
                let mut at = first;
                while at * chunk < end {
                    slots[at as usize] = if e.kind == KIND_DATA {
                        Slot {
                            src: src as u32,
                            crc: e.crc,
                            pos: e.pos,
                            len: e.len as u32,
                        }
                    } else {
                        Slot {
                            src: ZERO,
                            crc: 0,
                            pos: 0,
                            len: 0,
                        }
                    };
                    at += 1;
                }
            }
        }
        Ok(Image {
            id,
            volume_size,
            chunk: top.chunk_size,
            chain: chain.iter().map(|s| s.manifest.id).collect(),
            sources,
            slots,
        })
    }

    fn chunk_len(&self, index: u64) -> u64 {
        let c = self.chunk.u64();
        c.min(self.volume_size - index * c)
    }

    /// Calls `f` with the records of `range` (chunk aligned), zero runs
    /// coalesced, every chunk checked against its CRC32C; a mismatch is an
    /// error naming the backup and the chunk.
    pub(crate) fn pieces(
        &self,
        range: Range<u64>,
        buf: &mut Vec<u8>,
        mut f: impl FnMut(Piece<'_>) -> Result<(), BackupError>,
    ) -> Result<(), BackupError> {
        let c = self.chunk.u64();
        let end = range.end.min(self.volume_size);
        let mut zero_from: Option<u64> = None;
        let mut at = range.start / c;
        while at * c < end {
            let offset = at * c;
            let slot = self.slots[at as usize];
            if slot.src == ZERO {
                zero_from.get_or_insert(offset);
                at += 1;
                continue;
            }
            if let Some(from) = zero_from.take() {
                f(Piece::Zero {
                    offset: from,
                    len: offset - from,
                })?;
            }
            let want = self.chunk_len(at) as usize;
            let source = &self.sources[slot.src as usize];
            buf.clear();
            buf.resize(slot.len as usize, 0);
            source.data.read_exact_at(buf, slot.pos).map_err(|e| {
                corrupt(
                    source.id,
                    format!("chunk at offset {offset} cannot be read from chunks.dat: {e}"),
                )
            })?;
            let actual = crc32c::crc32c(buf);
            if actual != slot.crc {
                return Err(corrupt(
                    source.id,
                    format!(
                        "chunk at offset {offset}: CRC32C {actual:08x}, recorded {:08x}",
                        slot.crc
                    ),
                ));
            }
            // The volume was resized between backups: the stored chunk is
            // cut or zero-extended to the chunk's length at this point.
            let crc = if buf.len() == want {
                slot.crc
            } else {
                buf.resize(want, 0);
                crc32c::crc32c(buf)
            };
            f(Piece::Data {
                offset,
                crc,
                payload: buf,
            })?;
            at += 1;
        }
        if let Some(from) = zero_from {
            f(Piece::Zero {
                offset: from,
                len: end - from,
            })?;
        }
        Ok(())
    }
}

/// Reads a backup's index and checks it against its manifest and its data
/// file, so that nothing later trusts a damaged entry.
pub(crate) fn load_index(stored: &Stored) -> Result<Vec<IndexEntry>, BackupError> {
    let m = &stored.manifest;
    let (entries, crc) =
        files::read_index(&stored.dir.join(INDEX)).map_err(|e| corrupt(m.id, e.to_string()))?;
    if crc != m.index_crc32c || entries.len() as u64 != m.index_entries {
        return Err(corrupt(
            m.id,
            format!(
                "chunks.idx has {} entries with CRC32C {crc:08x}; the manifest records {} entries with {:08x}",
                entries.len(),
                m.index_entries,
                m.index_crc32c
            ),
        ));
    }
    let data_len = std::fs::metadata(stored.dir.join(DATA))
        .map_err(|e| corrupt(m.id, format!("chunks.dat: {e}")))?
        .len();
    if data_len != m.data_len {
        return Err(corrupt(
            m.id,
            format!(
                "chunks.dat is {data_len} bytes, the manifest records {}",
                m.data_len
            ),
        ));
    }
    for e in &entries {
        let in_volume = e
            .offset
            .checked_add(e.len)
            .is_some_and(|end| end <= m.volume_size);
        let in_data = e.kind != KIND_DATA
            || (e.len <= m.chunk_size.u64()
                && e.pos
                    .checked_add(e.len)
                    .is_some_and(|end| end <= m.data_len));
        if !in_volume || !in_data || !e.offset.is_multiple_of(m.chunk_size.u64()) {
            return Err(corrupt(
                m.id,
                format!(
                    "index entry at offset {} length {} is out of range",
                    e.offset, e.len
                ),
            ));
        }
    }
    Ok(entries)
}
