//! The backup stream: its header, the rules records obey, and the running
//! totals both ends compute. Pure: no I/O, so the server's receive path,
//! restore's fetch path and the fuzz entry share one validator.

use std::ops::Range;

use serde::{Deserialize, Serialize};

use crate::types::{BackupId, ChunkBytes, VolumeIdentity};
use crate::wire::{self, Frame, Request};
use crate::BackupError;

/// How the sender chose the chunks of a backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSource {
    /// Every chunk of the volume (a first backup, or a new base).
    Full,
    /// The snapshot engine's change-tracking bitmaps.
    Tracked,
    /// A parallel compare of the two snapshots (tracking was untrusted).
    FullCompare,
}

/// What a backup is, sent once before its records. Two headers that are
/// equal describe the same backup, which is how a resumed run finds the
/// partial one it continues.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHeader {
    pub stream_version: u16,
    pub volume: VolumeIdentity,
    pub snapshot: String,
    /// The backup this one is an increment of; `None` for a full backup.
    pub parent: Option<BackupId>,
    pub chunk_size: ChunkBytes,
    pub volume_size: u64,
    pub source: ChangeSource,
    /// Bytes the changed set covers (for progress; records may cover less
    /// when the set is sparse).
    pub planned_bytes: u64,
}

impl StreamHeader {
    pub(crate) fn validate(&self) -> Result<(), BackupError> {
        if self.stream_version != wire::VERSION {
            return Err(BackupError::Unsupported {
                what: "backup stream".into(),
                found: u32::from(self.stream_version),
                supported: u32::from(wire::VERSION),
            });
        }
        self.volume.validate()?;
        let bad = |why: String| BackupError::protocol(format!("stream header: {why}"));
        if self.snapshot.is_empty() || self.snapshot.len() > 64 {
            return Err(bad(format!(
                "snapshot name {:?} must be 1 to 64 bytes",
                self.snapshot
            )));
        }
        if self.volume_size == 0
            || !self
                .volume_size
                .is_multiple_of(u64::from(self.volume.block_size))
        {
            return Err(bad(format!(
                "volume size {} is not a positive multiple of the {}-byte block",
                self.volume_size, self.volume.block_size
            )));
        }
        if (self.parent.is_none()) != (self.source == ChangeSource::Full) {
            return Err(bad(
                "a backup without a parent must be full, and a full one has no parent".into(),
            ));
        }
        Ok(())
    }
}

/// Running totals of a stream, carried by END and by acknowledgements.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Totals {
    pub records: u64,
    /// Payload bytes of DATA records.
    pub data_bytes: u64,
    /// Bytes covered by ZERO records.
    pub zero_bytes: u64,
    /// CRC32C over every record's `kind, offset, len, payload CRC` in
    /// order: covers the whole stream through the per-chunk CRCs, and can
    /// be carried across a resume (CRC32C extends from a prefix's value).
    pub digest: u32,
}

pub(crate) const KIND_DATA: u8 = 1;
pub(crate) const KIND_ZERO: u8 = 2;

impl Totals {
    pub(crate) fn add(&mut self, kind: u8, offset: u64, len: u64, crc: u32) {
        let mut e = [0u8; 21];
        e[0] = kind;
        e[1..9].copy_from_slice(&offset.to_le_bytes());
        e[9..17].copy_from_slice(&len.to_le_bytes());
        e[17..].copy_from_slice(&crc.to_le_bytes());
        self.digest = crc32c::crc32c_append(self.digest, &e);
        self.records += 1;
        match kind {
            KIND_DATA => self.data_bytes += len,
            _ => self.zero_bytes += len,
        }
    }
}

/// Checks records against a header, in order. Rules (FORMAT.md):
/// chunk-aligned offsets, strictly ascending and non-overlapping, inside
/// `range`; a DATA record is exactly one chunk (shorter only where the
/// volume ends) with a matching CRC32C; a ZERO record covers whole chunks
/// (or runs to the volume's end).
#[derive(Debug)]
pub(crate) struct RecordCheck {
    chunk: u64,
    block: u64,
    volume_size: u64,
    range: Range<u64>,
    next: u64,
    totals: Totals,
}

impl RecordCheck {
    /// Checks records of `range` (the whole volume for a backup), starting
    /// after `resume` (records before it were checked by an earlier run).
    pub(crate) fn new(
        chunk: ChunkBytes,
        block_size: u32,
        volume_size: u64,
        range: Range<u64>,
        next: u64,
        totals: Totals,
    ) -> Self {
        RecordCheck {
            chunk: chunk.u64(),
            block: u64::from(block_size),
            volume_size,
            range,
            next,
            totals,
        }
    }

    pub(crate) fn totals(&self) -> Totals {
        self.totals
    }

    /// End of the last record accepted: where a resumed stream continues.
    pub(crate) fn next_offset(&self) -> u64 {
        self.next
    }

    fn place(&self, what: &str, offset: u64, len: u64) -> Result<(), BackupError> {
        let bad = |why: String| {
            Err(BackupError::protocol(format!(
                "{what} record at offset {offset} length {len}: {why}"
            )))
        };
        if len == 0 {
            return bad("empty".into());
        }
        if !offset.is_multiple_of(self.chunk) {
            return bad(format!("not aligned to the {}-byte chunk", self.chunk));
        }
        if offset < self.next {
            return bad(format!(
                "out of order (the previous record ended at {})",
                self.next
            ));
        }
        let Some(end) = offset.checked_add(len) else {
            return bad("overflows".into());
        };
        if offset < self.range.start || end > self.range.end {
            return bad(format!("outside {}..{}", self.range.start, self.range.end));
        }
        if !end.is_multiple_of(self.chunk) && end != self.volume_size {
            return bad("does not end on a chunk boundary or the volume's end".into());
        }
        if !len.is_multiple_of(self.block) {
            return bad(format!("not a whole number of {}-byte blocks", self.block));
        }
        Ok(())
    }

    pub(crate) fn data(
        &mut self,
        offset: u64,
        crc: u32,
        payload: &[u8],
    ) -> Result<(), BackupError> {
        let len = payload.len() as u64;
        self.place("DATA", offset, len)?;
        if len > self.chunk {
            return Err(BackupError::protocol(format!(
                "DATA record at offset {offset} carries {len} bytes, more than one {}-byte chunk",
                self.chunk
            )));
        }
        let actual = crc32c::crc32c(payload);
        if actual != crc {
            return Err(BackupError::protocol(format!(
                "DATA record at offset {offset}: CRC32C {actual:08x} of the payload, {crc:08x} in the record"
            )));
        }
        self.next = offset + len;
        self.totals.add(KIND_DATA, offset, len, crc);
        Ok(())
    }

    pub(crate) fn zero(&mut self, offset: u64, len: u64) -> Result<(), BackupError> {
        self.place("ZERO", offset, len)?;
        self.next = offset + len;
        self.totals.add(KIND_ZERO, offset, len, 0);
        Ok(())
    }

    pub(crate) fn end(&self, theirs: &Totals) -> Result<(), BackupError> {
        if *theirs != self.totals {
            return Err(BackupError::protocol(format!(
                "END says {} records, {} data bytes, {} zero bytes, digest {:08x}; received {} records, {} data bytes, {} zero bytes, digest {:08x}",
                theirs.records,
                theirs.data_bytes,
                theirs.zero_bytes,
                theirs.digest,
                self.totals.records,
                self.totals.data_bytes,
                self.totals.zero_bytes,
                self.totals.digest
            )));
        }
        Ok(())
    }
}

/// Decodes and validates a complete backup stream as a client sends it
/// after HELLO: a `Backup` request carrying the header, DATA and ZERO
/// records, END. The fuzz entry point; never panics.
pub fn decode_stream(bytes: &[u8]) -> Result<(StreamHeader, Totals), BackupError> {
    let frames = wire::decode_frames(bytes)?;
    let mut frames = frames.into_iter();
    let header = match frames.next() {
        Some(Frame::Request(Request::Backup { header })) => header,
        Some(other) => {
            return Err(BackupError::protocol(format!(
                "a stream starts with its header, not {}",
                frame_name(&other)
            )))
        }
        None => return Err(BackupError::protocol("empty stream")),
    };
    header.validate()?;
    let mut check = RecordCheck::new(
        header.chunk_size,
        header.volume.block_size,
        header.volume_size,
        0..header.volume_size,
        0,
        Totals::default(),
    );
    for frame in frames.by_ref() {
        match frame {
            Frame::Data {
                offset,
                crc,
                payload,
            } => check.data(offset, crc, &payload)?,
            Frame::Zero { offset, len } => check.zero(offset, len)?,
            Frame::End(t) => {
                check.end(&t)?;
                return match frames.next() {
                    None => Ok((header, t)),
                    Some(f) => Err(BackupError::protocol(format!(
                        "{} after END",
                        frame_name(&f)
                    ))),
                };
            }
            other => {
                return Err(BackupError::protocol(format!(
                    "{} inside a backup stream",
                    frame_name(&other)
                )))
            }
        }
    }
    Err(BackupError::protocol("stream ends without END (truncated)"))
}

pub(crate) fn frame_name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello { .. } => "HELLO",
        Frame::Request(_) => "REQUEST",
        Frame::Reply(_) => "REPLY",
        Frame::Data { .. } => "DATA",
        Frame::Zero { .. } => "ZERO",
        Frame::End(_) => "END",
        Frame::Ack { .. } => "ACK",
    }
}
