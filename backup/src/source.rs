//! The one place that knows the snapshot engine's types: what a backup
//! reads is a list of chunk-aligned byte ranges of a snapshot's view.

use std::ops::Range;

use reservoir_snapshot::{ChangeMethod, ChangedSet};

use crate::stream::ChangeSource;
use crate::types::ChunkBytes;
use crate::BackupError;

/// The chunks a backup carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedChunks {
    pub(crate) chunk: ChunkBytes,
    /// Ascending, non-overlapping byte ranges.
    pub(crate) ranges: Vec<Range<u64>>,
    pub(crate) source: ChangeSource,
}

impl ChangedChunks {
    /// Every chunk of a `volume_size`-byte volume: a full backup.
    pub fn full(volume_size: u64, chunk: ChunkBytes) -> ChangedChunks {
        ChangedChunks {
            chunk,
            ranges: std::iter::once(0..volume_size).collect(),
            source: ChangeSource::Full,
        }
    }

    /// The chunks that changed between the last backed-up snapshot and the
    /// new one, as the snapshot engine reports them.
    pub fn from_changed_set(set: &ChangedSet) -> Result<ChangedChunks, BackupError> {
        let chunk = ChunkBytes::new(set.chunk_size.bytes())?;
        let mut ranges: Vec<Range<u64>> = Vec::with_capacity(set.extents.len());
        for e in &set.extents {
            let end = e
                .offset
                .checked_add(e.len)
                .ok_or_else(|| BackupError::InvalidArgument {
                    what: "changed set",
                    why: format!("extent {}+{} overflows", e.offset, e.len),
                })?;
            if ranges.last().is_some_and(|last| last.end > e.offset) {
                return Err(BackupError::InvalidArgument {
                    what: "changed set",
                    why: format!("extent at {} is out of order", e.offset),
                });
            }
            ranges.push(e.offset..end);
        }
        Ok(ChangedChunks {
            chunk,
            ranges,
            source: match set.method {
                ChangeMethod::Tracked => ChangeSource::Tracked,
                ChangeMethod::FullCompare => ChangeSource::FullCompare,
            },
        })
    }

    pub fn chunk_size(&self) -> ChunkBytes {
        self.chunk
    }

    /// Chunk `(offset, len)` pairs inside a `volume_size`-byte volume,
    /// starting at `from` (a resume point).
    pub(crate) fn chunks(&self, volume_size: u64, from: u64) -> Vec<(u64, u64)> {
        let c = self.chunk.u64();
        let mut out = Vec::new();
        for r in &self.ranges {
            let start = (r.start / c * c).max(from.div_ceil(c) * c);
            let end = r.end.min(volume_size);
            let mut at = start;
            while at < end {
                let len = c.min(volume_size - at);
                if out.last().is_none_or(|&(o, _)| o < at) {
                    out.push((at, len));
                }
                at += c;
            }
        }
        out
    }
}
