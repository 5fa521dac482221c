//! The sender: reads a snapshot's changed chunks in parallel and streams
//! them in order.
//!
//! ```text
//!   reader thread: batch of chunks ──rayon──▶ read, CRC32C, all-zero?
//!        │ (bounded channel, 2 batches ahead)
//!   this thread:   DATA / coalesced ZERO records ──▶ socket ──▶ END
//! ```
//!
//! The records are a pure function of the snapshot and the changed set, so
//! a run that resumes at the server's acknowledged offset produces the same
//! records as an uninterrupted one would have after that offset.

use std::io::Write;
use std::sync::mpsc::sync_channel;
use std::sync::Arc;

use rayon::prelude::*;
use reservoir_bdev::{Bdev, Lba};

use crate::conn::Client;
use crate::progress::{Meter, Progress};
use crate::repo::BackupInfo;
use crate::source::ChangedChunks;
use crate::stream::{ChangeSource, StreamHeader, KIND_DATA, KIND_ZERO};
use crate::types::{BackupId, VolumeIdentity};
use crate::wire::{self, Frame, Reply, Request};
use crate::BackupError;

/// Bytes read ahead per batch: enough to keep both cores busy on CRC32C
/// while the previous batch is on the wire.
const BATCH_BYTES: u64 = 16 << 20;

/// What to back up.
#[derive(Debug, Clone)]
pub struct BackupSource {
    pub volume: VolumeIdentity,
    /// The snapshot being backed up (its name goes into the manifest).
    pub snapshot: String,
    /// A read-only view of that snapshot.
    pub view: Arc<dyn Bdev>,
    /// The backup of the previous snapshot; `None` for a full backup.
    pub parent: Option<BackupId>,
    pub changes: ChangedChunks,
}

impl BackupSource {
    /// The header this source streams under; a resumed run must present
    /// the same one.
    pub fn header(&self) -> Result<StreamHeader, BackupError> {
        let volume_size = self.view.geometry().size_bytes();
        let planned_bytes = self
            .changes
            .chunks(volume_size, 0)
            .iter()
            .map(|&(_, l)| l)
            .sum();
        let header = StreamHeader {
            stream_version: wire::VERSION,
            volume: self.volume.clone(),
            snapshot: self.snapshot.clone(),
            parent: self.parent,
            chunk_size: self.changes.chunk,
            volume_size,
            source: if self.parent.is_none() {
                ChangeSource::Full
            } else {
                self.changes.source
            },
            planned_bytes,
        };
        header.validate()?;
        Ok(header)
    }
}

struct Chunk {
    offset: u64,
    len: u64,
    /// `None` when the chunk is all zero.
    data: Option<(u32, Vec<u8>)>,
}

fn is_zero(buf: &[u8]) -> bool {
    let (words, rest) = buf.split_at(buf.len() / 16 * 16);
    words
        .chunks_exact(16)
        .all(|w| u128::from_ne_bytes(w.try_into().expect("16-byte chunk")) == 0)
        && rest.iter().all(|&b| b == 0)
}

fn read_chunk(view: &dyn Bdev, block: u64, offset: u64, len: u64) -> Result<Chunk, BackupError> {
    let mut buf = vec![0u8; len as usize];
    view.read(Lba(offset / block), &mut buf)
        .map_err(|source| BackupError::Bdev {
            op: "read snapshot",
            volume: view.name().to_owned(),
            source,
        })?;
    let data = (!is_zero(&buf)).then(|| (crc32c::crc32c(&buf), buf));
    Ok(Chunk { offset, len, data })
}

/// After a failed send: the server's own account of why, if it sent one
/// before closing (a refused record, a pruned parent).
fn server_reason(conn: &mut crate::conn::Conn) -> Option<BackupError> {
    conn.reader
        .get_ref()
        .set_read_timeout(Some(std::time::Duration::from_secs(2)))
        .ok()?;
    loop {
        match conn.frame("backup") {
            Ok(Frame::Ack { .. }) => {}
            Err(e @ BackupError::Remote { .. }) => return Some(e),
            _ => return None,
        }
    }
}

/// Sends one backup and returns it as stored. If the server holds a
/// partial backup with the same header, only what it has not acknowledged
/// is sent; if it holds the complete backup already, nothing is.
pub fn send_backup(
    client: &Client,
    source: &BackupSource,
    progress: &mut dyn FnMut(&Progress),
) -> Result<BackupInfo, BackupError> {
    let header = source.header()?;
    let mut conn = client.connect()?;
    conn.send(&Request::Backup {
        header: header.clone(),
    })?;
    let resume = match conn.reply("backup")? {
        Reply::Accept { resume, .. } => resume,
        Reply::AlreadyComplete { info } => return Ok(info),
        r => {
            return Err(BackupError::protocol(format!(
                "unexpected reply to backup: {r:?}"
            )))
        }
    };
    let volume_size = header.volume_size;
    let all = source.changes.chunks(volume_size, 0);
    let start = all.partition_point(|&(o, _)| o < resume.next_offset);
    let already: u64 = all[..start].iter().map(|&(_, l)| l).sum();
    let todo = &all[start..];
    let block = u64::from(source.volume.block_size);
    let mut totals = resume.totals;
    let mut meter = Meter::new(already, header.planned_bytes);
    let mut done = already;
    let mut wire_bytes = 0u64;
    let mut pending_zero: Option<(u64, u64)> = None;
    let out = BackupError::disconnected;
    let sent = (|| -> Result<(), BackupError> {
        let w = &mut conn.writer;

        std::thread::scope(|scope| -> Result<(), BackupError> {
            let (tx, rx) = sync_channel::<Result<Vec<Chunk>, BackupError>>(2);
            let view = &*source.view;
            scope.spawn(move || {
                let per_batch = (BATCH_BYTES / source.changes.chunk.u64()).max(1) as usize;
                for batch in todo.chunks(per_batch) {
                    let read: Result<Vec<Chunk>, BackupError> = batch
                        .par_iter()
                        .map(|&(offset, len)| read_chunk(view, block, offset, len))
                        .collect();
                    let failed = read.is_err();
                    if tx.send(read).is_err() || failed {
                        return;
                    }
                }
            });
            for batch in rx {
                for chunk in batch? {
                    match chunk.data {
                        None => match &mut pending_zero {
                            Some((_, end)) if *end == chunk.offset => *end += chunk.len,
                            _ => {
                                if let Some((o, e)) = pending_zero.take() {
                                    wire::write_zero(w, o, e - o).map_err(out("send"))?;
                                    totals.add(KIND_ZERO, o, e - o, 0);
                                    wire_bytes += wire::ZERO_FRAME_LEN;
                                }
                                pending_zero = Some((chunk.offset, chunk.offset + chunk.len));
                            }
                        },
                        Some((crc, payload)) => {
                            if let Some((o, e)) = pending_zero.take() {
                                wire::write_zero(w, o, e - o).map_err(out("send"))?;
                                totals.add(KIND_ZERO, o, e - o, 0);
                                wire_bytes += wire::ZERO_FRAME_LEN;
                            }
                            wire::write_data(w, chunk.offset, crc, &payload)
                                .map_err(out("send"))?;
                            totals.add(KIND_DATA, chunk.offset, chunk.len, crc);
                            wire_bytes += wire::data_frame_len(payload.len());
                        }
                    }
                    done += chunk.len;
                    if let Some(p) = meter.tick(done, wire_bytes, false) {
                        progress(&p);
                    }
                }
            }
            Ok(())
        })?;
        if let Some((o, e)) = pending_zero.take() {
            wire::write_zero(w, o, e - o).map_err(out("send"))?;
            totals.add(KIND_ZERO, o, e - o, 0);
        }
        wire::write_end(w, &totals)
            .and_then(|()| w.flush())
            .map_err(out("send"))
    })();
    if let Err(e) = sent {
        return Err(server_reason(&mut conn).unwrap_or(e));
    }
    loop {
        match conn.frame("backup commit")? {
            Frame::Ack { .. } => {}
            Frame::Reply(Reply::Committed { info }) => {
                if let Some(p) = meter.tick(header.planned_bytes, wire_bytes, true) {
                    progress(&p);
                }
                return Ok(info);
            }
            other => {
                return Err(BackupError::protocol(format!(
                    "expected COMMITTED, got {}",
                    crate::stream::frame_name(&other)
                )))
            }
        }
    }
}
