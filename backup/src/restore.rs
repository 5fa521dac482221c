//! Restore: rebuild the image at one backup into a file or a bdev,
//! fetching segments in parallel (several connections to the server, or
//! several threads on a local repository).

use std::fs::{self, File};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use reservoir_bdev::{Bdev, BlockCount, Lba};

use crate::conn::Client;
use crate::image::{Image, Piece};
use crate::progress::{Meter, Progress};
use crate::repo::{BackupInfo, Repository};
use crate::stream::{frame_name, RecordCheck, Totals};
use crate::types::BackupId;
use crate::wire::{Frame, Request};
use crate::BackupError;

/// Where a restore writes.
#[derive(Debug, Clone)]
pub enum RestoreTarget {
    /// An image file, created or replaced. It is written as `<path>.part`
    /// and renamed when complete, so a failed restore leaves no image.
    File(PathBuf),
    /// A volume's bdev, at least as large as the backup's volume, with the
    /// same block size. Every block is written, zero ones included. The
    /// caller makes sure no initiator uses it (or the operator forced it).
    Bdev(Arc<dyn Bdev>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RestoreOptions {
    /// Connections (remote) or threads (local) fetching at once.
    pub parallel: usize,
    /// Bytes per fetch request; rounded to whole chunks.
    pub segment_bytes: u64,
}

impl Default for RestoreOptions {
    fn default() -> Self {
        RestoreOptions {
            parallel: 4,
            segment_bytes: 64 << 20,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct RestoreSummary {
    pub backup: BackupId,
    pub volume_bytes: u64,
    /// Bytes of non-zero chunks transferred.
    pub data_bytes: u64,
    pub elapsed: Duration,
    pub parallel: usize,
}

/// An opened target: writes at byte offsets.
enum Sink {
    File {
        file: File,
        part: PathBuf,
        path: PathBuf,
    },
    Bdev {
        bdev: Arc<dyn Bdev>,
        block: u64,
    },
}

impl Sink {
    fn open(target: &RestoreTarget, info: &BackupInfo) -> Result<Sink, BackupError> {
        match target {
            RestoreTarget::File(path) => {
                let mut part = path.clone().into_os_string();
                part.push(".part");
                let part = PathBuf::from(part);
                let file = File::create(&part).map_err(BackupError::io("create", &part))?;
                file.set_len(info.volume_size)
                    .map_err(BackupError::io("size", &part))?;
                Ok(Sink::File {
                    file,
                    part,
                    path: path.clone(),
                })
            }
            RestoreTarget::Bdev(bdev) => {
                let g = bdev.geometry();
                if g.block_size.bytes() != info.volume.block_size
                    || g.size_bytes() < info.volume_size
                {
                    return Err(BackupError::InvalidArgument {
                        what: "restore target",
                        why: format!(
                            "volume {} has {} bytes in {}-byte blocks; backup {} needs at least {} bytes in {}-byte blocks",
                            bdev.name(),
                            g.size_bytes(),
                            g.block_size.bytes(),
                            info.id,
                            info.volume_size,
                            info.volume.block_size
                        ),
                    });
                }
                Ok(Sink::Bdev {
                    bdev: bdev.clone(),
                    block: u64::from(g.block_size.bytes()),
                })
            }
        }
    }

    fn write(&self, piece: &Piece<'_>) -> Result<(), BackupError> {
        match (self, piece) {
            (
                Sink::File { file, part, .. },
                Piece::Data {
                    offset, payload, ..
                },
            ) => file
                .write_all_at(payload, *offset)
                .map_err(BackupError::io("write", part)),
            // The file was created empty and sized: its holes read as zero.
            (Sink::File { .. }, Piece::Zero { .. }) => Ok(()),
            (
                Sink::Bdev { bdev, block },
                Piece::Data {
                    offset, payload, ..
                },
            ) => bdev
                .write(
                    Lba(offset / block),
                    payload,
                    reservoir_bdev::Durability::Cached,
                )
                .map_err(|source| BackupError::Bdev {
                    op: "restore write",
                    volume: bdev.name().to_owned(),
                    source,
                }),
            (Sink::Bdev { bdev, block }, Piece::Zero { offset, len }) => bdev
                .write_zeroes(Lba(offset / block), BlockCount(len / block))
                .map_err(|source| BackupError::Bdev {
                    op: "restore write zeroes",
                    volume: bdev.name().to_owned(),
                    source,
                }),
        }
    }

    fn finish(self) -> Result<(), BackupError> {
        match self {
            Sink::File { file, part, path } => {
                file.sync_all().map_err(BackupError::io("fsync", &part))?;
                fs::rename(&part, &path).map_err(BackupError::io("rename", &part))
            }
            Sink::Bdev { bdev, .. } => bdev.flush().map_err(|source| BackupError::Bdev {
                op: "restore flush",
                volume: bdev.name().to_owned(),
                source,
            }),
        }
    }

    fn abandon(self) {
        if let Sink::File { part, .. } = self {
            let _ = fs::remove_file(part);
        }
    }
}

/// Runs `work` over every segment of the volume on `parallel` workers;
/// each worker gets its own state from `init` (a connection, a buffer).
fn run_segments<S>(
    info: &BackupInfo,
    opts: RestoreOptions,
    sink: &Sink,
    progress: &mut (dyn FnMut(&Progress) + Send),
    init: impl Fn() -> Result<S, BackupError> + Sync,
    work: impl Fn(
            &mut S,
            u64,
            u64,
            &mut dyn FnMut(&Piece<'_>) -> Result<(), BackupError>,
        ) -> Result<(), BackupError>
        + Sync,
) -> Result<u64, BackupError> {
    let c = info.chunk_size.get() as u64;
    let seg = opts.segment_bytes.div_ceil(c).max(1) * c;
    let segments = info.volume_size.div_ceil(seg);
    let next = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    let data = AtomicU64::new(0);
    let meter = Mutex::new((Meter::new(0, info.volume_size), progress));
    let workers = opts.parallel.clamp(1, 64);
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| -> Result<(), BackupError> {
                    let mut state = init()?;
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= segments {
                            return Ok(());
                        }
                        let offset = i * seg;
                        let len = seg.min(info.volume_size - offset);
                        work(&mut state, offset, len, &mut |piece| {
                            if let Piece::Data { payload, .. } = piece {
                                data.fetch_add(payload.len() as u64, Ordering::Relaxed);
                            }
                            sink.write(piece)
                        })
                        .inspect_err(|_| next.store(segments, Ordering::Relaxed))?;
                        let now = done.fetch_add(len, Ordering::Relaxed) + len;
                        let mut m = meter.lock().unwrap_or_else(PoisonError::into_inner);
                        let wire = data.load(Ordering::Relaxed);
                        if let Some(p) = m.0.tick(now, wire, now == info.volume_size) {
                            (m.1)(&p);
                        }
                    }
                })
            })
            .collect();
        let mut first = Ok(());
        for h in handles {
            let r = h
                .join()
                .unwrap_or_else(|_| Err(BackupError::protocol("a restore worker panicked")));
            if first.is_ok() {
                first = r;
            }
        }
        first
    })?;
    Ok(data.into_inner())
}

fn finish(
    sink: Sink,
    result: Result<u64, BackupError>,
    info: &BackupInfo,
    start: Instant,
    parallel: usize,
) -> Result<RestoreSummary, BackupError> {
    match result {
        Ok(data_bytes) => {
            sink.finish()?;
            Ok(RestoreSummary {
                backup: info.id,
                volume_bytes: info.volume_size,
                data_bytes,
                elapsed: start.elapsed(),
                parallel,
            })
        }
        Err(e) => {
            sink.abandon();
            Err(e)
        }
    }
}

/// Restores backup `id` from a backup server, fetching segments over
/// `opts.parallel` connections. Every record is checked (CRC32C, order,
/// range, END totals) before it is written.
pub fn restore(
    client: &Client,
    id: BackupId,
    target: &RestoreTarget,
    opts: RestoreOptions,
    progress: &mut (dyn FnMut(&Progress) + Send),
) -> Result<RestoreSummary, BackupError> {
    let start = Instant::now();
    let info = client.describe(id)?;
    let sink = Sink::open(target, &info)?;
    let result = run_segments(
        &info,
        opts,
        &sink,
        progress,
        || client.connect(),
        |conn, offset, len, write| {
            conn.send(&Request::Fetch {
                backup: id,
                offset,
                len,
            })?;
            let mut check = RecordCheck::new(
                info.chunk_size,
                info.volume.block_size,
                info.volume_size,
                offset..offset + len,
                offset,
                Totals::default(),
            );
            loop {
                match conn.frame("restore")? {
                    Frame::Data {
                        offset,
                        crc,
                        payload,
                    } => {
                        check.data(offset, crc, &payload)?;
                        write(&Piece::Data {
                            offset,
                            crc,
                            payload: &payload,
                        })?;
                    }
                    Frame::Zero { offset, len } => {
                        check.zero(offset, len)?;
                        write(&Piece::Zero { offset, len })?;
                    }
                    Frame::End(t) => {
                        check.end(&t)?;
                        // Chunks never backed up come as ZERO records, so
                        // the records cover the whole segment.
                        if check.next_offset() != offset + len {
                            return Err(BackupError::protocol(format!(
                                "segment {offset}+{len} ended at {}",
                                check.next_offset()
                            )));
                        }
                        return Ok(());
                    }
                    other => {
                        return Err(BackupError::protocol(format!(
                            "{} inside a restore segment",
                            frame_name(&other)
                        )))
                    }
                }
            }
        },
    );
    finish(sink, result, &info, start, opts.parallel)
}

impl Repository {
    /// Restores backup `id` straight from this repository (`--repo DIR`),
    /// on `opts.parallel` threads.
    pub fn restore(
        &self,
        id: BackupId,
        target: &RestoreTarget,
        opts: RestoreOptions,
        progress: &mut (dyn FnMut(&Progress) + Send),
    ) -> Result<RestoreSummary, BackupError> {
        let start = Instant::now();
        let image = Image::open(self, id)?;
        let info = self.describe(id)?;
        let sink = Sink::open(target, &info)?;
        let result = run_segments(
            &info,
            opts,
            &sink,
            progress,
            || Ok(Vec::new()),
            |buf, offset, len, write| image.pieces(offset..offset + len, buf, |p| write(&p)),
        );
        finish(sink, result, &info, start, opts.parallel)
    }
}
