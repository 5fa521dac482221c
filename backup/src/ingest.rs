//! Receiving one backup into the repository: a partial directory that
//! grows record by record, checkpoints (the acknowledged, resumable point)
//! and one commit.
//!
//! ```text
//!   begin ──▶ fresh partial-<id> ─┐
//!         └─▶ resume partial-<id> ┴▶ records … checkpoint(ACK) … END ─▶ commit
//!              (files truncated to          (fsync data, index,       (manifest,
//!               the last checkpoint)          progress)                rename)
//! ```

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::PathBuf;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::files::{self, sync_dir, IndexEntry, INDEX_ENTRY};
use crate::repo::{
    now_ms, BackupInfo, Manifest, Repository, DATA, INDEX, MANIFEST, MANIFEST_VERSION,
};
use crate::stream::{RecordCheck, StreamHeader, Totals, KIND_DATA, KIND_ZERO};
use crate::types::BackupId;
use crate::wire::{self, ResumePoint};
use crate::BackupError;

/// A checkpoint after this many records even when they carry few payload
/// bytes (ZERO records carry none).
const ACK_RECORDS: u64 = 16_384;
const PROGRESS: &str = "progress";
const HEADER: &str = "header.json";
const PROGRESS_VERSION: u32 = 1;

#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Progress {
    resume: ResumePoint,
    data_len: u64,
    index_entries: u64,
    bytes_sent: u64,
    duration_ms: u64,
    created_unix_ms: u64,
}

/// What [`Repository::begin`] decided.
#[derive(Debug)]
pub(crate) enum Begin {
    Receive(Box<Ingest>),
    AlreadyComplete(BackupInfo),
}

#[derive(Debug)]
pub(crate) struct Ingest {
    repo: Repository,
    id: BackupId,
    dir: PathBuf,
    header: StreamHeader,
    _lock: File,
    data: BufWriter<File>,
    index: BufWriter<File>,
    check: RecordCheck,
    saved: Progress,
    data_len: u64,
    index_entries: u64,
    bytes_sent: u64,
    session: Instant,
    session_base_ms: u64,
    since_ack_bytes: u64,
    since_ack_records: u64,
    checkpoint_bytes: u64,
}

fn header_frame_len(header: &StreamHeader) -> u64 {
    let mut v = Vec::new();
    let _ = wire::write_request(
        &mut v,
        &wire::Request::Backup {
            header: header.clone(),
        },
    );
    v.len() as u64
}

impl Repository {
    /// Starts receiving the backup `header` describes, resuming a partial
    /// one with the same header if there is one.
    pub(crate) fn begin(
        &self,
        header: StreamHeader,
        checkpoint_bytes: u64,
    ) -> Result<Begin, BackupError> {
        header.validate()?;
        let lock = self.lock()?;
        let scan = self.scan()?;
        if let Some(parent) = header.parent {
            let Some(p) = scan.backups.get(&parent) else {
                return Err(BackupError::NotFound(parent));
            };
            let m = &p.manifest;
            if m.volume != header.volume || m.chunk_size != header.chunk_size {
                return Err(BackupError::InvalidArgument {
                    what: "parent backup",
                    why: format!(
                        "backup {parent} is of volume {} with {}-byte chunks; this stream is of {} with {}-byte chunks; send a full backup",
                        m.volume.name,
                        m.chunk_size.get(),
                        header.volume.name,
                        header.chunk_size.get()
                    ),
                });
            }
        }
        if let Some(done) = scan.backups.values().find(|s| {
            let m = &s.manifest;
            m.volume == header.volume
                && m.snapshot == header.snapshot
                && m.parent == header.parent
                && m.chunk_size == header.chunk_size
                && m.volume_size == header.volume_size
                && m.merged_from.is_empty()
        }) {
            return Ok(Begin::AlreadyComplete(done.manifest.info()));
        }
        for (id, dir) in &scan.partials {
            let Ok(theirs) =
                files::read_record::<StreamHeader>(&dir.join(HEADER), "stream header", 1)
            else {
                continue;
            };
            if theirs == header {
                let ingest =
                    Ingest::resume(self.clone(), *id, dir.clone(), header, checkpoint_bytes)?;
                return Ok(Begin::Receive(Box::new(ingest)));
            }
        }
        let id = BackupId(scan.max_id + 1);
        let dir = self.partial_dir(id);
        fs::create_dir(&dir).map_err(BackupError::io("create", &dir))?;
        files::write_record(&dir, HEADER, 1, &header)?;
        let progress = Progress {
            created_unix_ms: now_ms(),
            bytes_sent: header_frame_len(&header),
            ..Progress::default()
        };
        files::write_record(&dir, PROGRESS, PROGRESS_VERSION, &progress)?;
        sync_dir(self.root())?;
        drop(lock);
        let ingest = Ingest::resume(self.clone(), id, dir, header, checkpoint_bytes)?;
        Ok(Begin::Receive(Box::new(ingest)))
    }
}

impl Ingest {
    fn resume(
        repo: Repository,
        id: BackupId,
        dir: PathBuf,
        header: StreamHeader,
        checkpoint_bytes: u64,
    ) -> Result<Ingest, BackupError> {
        let lock_path = dir.join("lock");
        let lock = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(BackupError::io("open", &lock_path))?;
        if lock.try_lock().is_err() {
            return Err(BackupError::Busy(id));
        }
        // An unreadable progress record means nothing in the partial can
        // be trusted: start it over.
        let saved =
            files::read_record::<Progress>(&dir.join(PROGRESS), "progress", PROGRESS_VERSION)
                .unwrap_or_else(|_| Progress {
                    created_unix_ms: now_ms(),
                    bytes_sent: header_frame_len(&header),
                    ..Progress::default()
                });
        let open = |name: &str, len: u64| -> Result<BufWriter<File>, BackupError> {
            let path = dir.join(name);
            let f = File::options()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&path)
                .map_err(BackupError::io("open", &path))?;
            // Bytes past the checkpoint were never acknowledged.
            f.set_len(len).map_err(BackupError::io("truncate", &path))?;
            f.sync_all().map_err(BackupError::io("fsync", &path))?;
            let mut f = f;
            std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(len))
                .map_err(BackupError::io("seek", &path))?;
            Ok(BufWriter::with_capacity(1 << 20, f))
        };
        let data = open(DATA, saved.data_len)?;
        let index = open(INDEX, saved.index_entries * INDEX_ENTRY as u64)?;
        let check = RecordCheck::new(
            header.chunk_size,
            header.volume.block_size,
            header.volume_size,
            0..header.volume_size,
            saved.resume.next_offset,
            saved.resume.totals,
        );
        Ok(Ingest {
            repo,
            id,
            dir,
            _lock: lock,
            data,
            index,
            check,
            data_len: saved.data_len,
            index_entries: saved.index_entries,
            bytes_sent: saved.bytes_sent,
            session: Instant::now(),
            session_base_ms: saved.duration_ms,
            since_ack_bytes: 0,
            since_ack_records: 0,
            checkpoint_bytes: checkpoint_bytes.max(1),
            saved,
            header,
        })
    }

    pub(crate) fn id(&self) -> BackupId {
        self.id
    }

    /// The acknowledged point the sender continues from.
    pub(crate) fn resume_point(&self) -> ResumePoint {
        self.saved.resume
    }

    fn append(
        &mut self,
        entry: IndexEntry,
        payload: &[u8],
    ) -> Result<Option<ResumePoint>, BackupError> {
        let io = |op| BackupError::io(op, &self.dir);
        self.data
            .write_all(payload)
            .map_err(io("write chunks.dat in"))?;
        self.index
            .write_all(&entry.encode())
            .map_err(BackupError::io("write chunks.idx in", &self.dir))?;
        self.data_len += payload.len() as u64;
        self.index_entries += 1;
        self.since_ack_bytes += payload.len() as u64;
        self.since_ack_records += 1;
        if self.since_ack_bytes >= self.checkpoint_bytes || self.since_ack_records >= ACK_RECORDS {
            return self.checkpoint().map(Some);
        }
        Ok(None)
    }

    /// Stores a DATA record; returns an acknowledgement when it made a
    /// checkpoint.
    pub(crate) fn data(
        &mut self,
        offset: u64,
        crc: u32,
        payload: &[u8],
    ) -> Result<Option<ResumePoint>, BackupError> {
        self.check.data(offset, crc, payload)?;
        self.bytes_sent += wire::data_frame_len(payload.len());
        let entry = IndexEntry {
            offset,
            len: payload.len() as u64,
            kind: KIND_DATA,
            crc,
            pos: self.data_len,
        };
        self.append(entry, payload)
    }

    pub(crate) fn zero(
        &mut self,
        offset: u64,
        len: u64,
    ) -> Result<Option<ResumePoint>, BackupError> {
        self.check.zero(offset, len)?;
        self.bytes_sent += wire::ZERO_FRAME_LEN;
        let entry = IndexEntry {
            offset,
            len,
            kind: KIND_ZERO,
            crc: 0,
            pos: self.data_len,
        };
        self.append(entry, &[])
    }

    fn sync(&mut self) -> Result<(), BackupError> {
        let dir = self.dir.clone();
        for w in [&mut self.data, &mut self.index] {
            w.flush()
                .and_then(|()| w.get_ref().sync_data())
                .map_err(BackupError::io("fsync", &dir))?;
        }
        Ok(())
    }

    fn elapsed_ms(&self) -> u64 {
        self.session_base_ms + self.session.elapsed().as_millis() as u64
    }

    /// Makes every record so far durable and records the point.
    pub(crate) fn checkpoint(&mut self) -> Result<ResumePoint, BackupError> {
        self.sync()?;
        let progress = Progress {
            resume: ResumePoint {
                next_offset: self.check.next_offset(),
                totals: self.check.totals(),
            },
            data_len: self.data_len,
            index_entries: self.index_entries,
            bytes_sent: self.bytes_sent,
            duration_ms: self.elapsed_ms(),
            created_unix_ms: self.saved.created_unix_ms,
        };
        files::write_record(&self.dir, PROGRESS, PROGRESS_VERSION, &progress)?;
        self.saved = progress;
        self.since_ack_bytes = 0;
        self.since_ack_records = 0;
        Ok(progress.resume)
    }

    /// Checks END against what was received and makes the backup visible.
    pub(crate) fn commit(mut self, end: Totals) -> Result<BackupInfo, BackupError> {
        self.check.end(&end)?;
        self.bytes_sent += 33; // the END frame
        self.sync()?;
        let (entries, index_crc) = files::read_index(&self.dir.join(INDEX))?;
        let manifest = Manifest {
            id: self.id,
            generation: 1,
            volume: self.header.volume.clone(),
            snapshot: self.header.snapshot.clone(),
            parent: self.header.parent,
            chunk_size: self.header.chunk_size,
            volume_size: self.header.volume_size,
            source: self.header.source,
            created_unix_ms: self.saved.created_unix_ms,
            duration_ms: self.elapsed_ms(),
            bytes_sent: self.bytes_sent,
            totals: end,
            index_entries: entries.len() as u64,
            index_crc32c: index_crc,
            data_len: self.data_len,
            merged_from: Vec::new(),
        };
        let _lock = self.repo.lock()?;
        if let Some(parent) = self.header.parent {
            if !self.repo.scan()?.backups.contains_key(&parent) {
                return Err(BackupError::InvalidArgument {
                    what: "parent backup",
                    why: format!(
                        "backup {parent} was pruned while this one was sent; send a full backup"
                    ),
                });
            }
        }
        files::write_record(&self.dir, MANIFEST, MANIFEST_VERSION, &manifest)?;
        self.repo.publish(&self.dir, self.id, 1)?;
        Ok(manifest.info())
    }
}
