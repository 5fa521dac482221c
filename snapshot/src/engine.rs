//! The per-volume snapshot engine: state, the copy-on-write step, and the
//! management operations.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reservoir_bdev::{Bdev, BdevError, ErrorKind, Lba};

use crate::atomics::{Bitmap, ChunkMap, DiffExtent};
use crate::changed::{compared_runs, to_extents, tracked_runs};
use crate::diffarea::DiffArea;
use crate::gate::WriteGate;
use crate::journal::{self, Journal, Record};
use crate::origin::SnapshotOrigin;
use crate::tracking;
use crate::view::SnapshotView;
use crate::{
    ChangeMethod, ChangedSet, ChunkSize, DiffAreaUsage, InvalidReason, OpenReport, SnapshotError,
    SnapshotId, SnapshotInfo, SnapshotName, SnapshotOptions, TrackingState,
};

/// Stripes of the copy-on-write lock: writers that must copy the same
/// chunk are serialised; a chunk already copied never takes it.
const COW_STRIPES: usize = 1024;

/// One snapshot, shared by the engine and every view exporting it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub id: SnapshotId,
    pub name: SnapshotName,
    pub created: SystemTime,
    pub block_count: u64,
    pub map: ChunkMap,
    pub copied: AtomicU64,
    pub invalid: OnceLock<InvalidReason>,
    pub deleted: AtomicBool,
    /// Chunks written after this snapshot and before the next one (for the
    /// newest: until now). Deleting a snapshot ORs its bitmap into its
    /// predecessor's, so the intervals always tile the history.
    pub changes: Bitmap,
    pub changes_trusted: AtomicBool,
}

impl std::fmt::Debug for ChunkMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ChunkMap({} chunks)", self.len())
    }
}

impl std::fmt::Debug for Bitmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bitmap({} words)", self.words().len())
    }
}

impl Snapshot {
    fn new(
        id: SnapshotId,
        name: SnapshotName,
        created: SystemTime,
        block_count: u64,
        chunks: u64,
    ) -> Self {
        Snapshot {
            id,
            name,
            created,
            block_count,
            map: ChunkMap::new(chunks),
            copied: AtomicU64::new(0),
            invalid: OnceLock::new(),
            deleted: AtomicBool::new(false),
            changes: Bitmap::new(chunks),
            changes_trusted: AtomicBool::new(true),
        }
    }

    pub fn is_valid(&self) -> bool {
        self.invalid.get().is_none()
    }

    /// Fails once the snapshot can no longer be read. Checked after the data
    /// was read: an invalidation or deletion that raced with the read is
    /// seen here, because the writer published it before the origin write
    /// (or extent reuse) whose data the read may have picked up.
    pub fn check_readable(&self) -> Result<(), SnapshotError> {
        if self.deleted.load(Ordering::Acquire) {
            return Err(SnapshotError::Deleted {
                name: self.name.to_string(),
            });
        }
        match self.invalid.get() {
            None => Ok(()),
            Some(reason) => Err(SnapshotError::SnapshotInvalid {
                name: self.name.to_string(),
                reason: reason.to_string(),
            }),
        }
    }
}

/// What the write gate protects: changed only while no write is in flight.
#[derive(Debug)]
pub(crate) struct State {
    /// Live snapshots, oldest first (ascending id).
    pub snapshots: Vec<Arc<Snapshot>>,
    pub block_count: u64,
    pub chunks: u64,
    pub closed: bool,
    pub next_id: u64,
}

/// The snapshot engine of one volume. See the crate documentation.
pub struct SnapshotEngine {
    volume: String,
    pub(crate) base: Arc<dyn Bdev>,
    dir: PathBuf,
    chunk: ChunkSize,
    pub(crate) block_size: u64,
    pub(crate) gate: WriteGate<State>,
    cow_locks: Box<[Mutex<()>]>,
    pub(crate) diff: DiffArea,
    journal: Mutex<Journal>,
    /// Serialises create, delete and close with each other.
    admin: Mutex<()>,
}

impl std::fmt::Debug for SnapshotEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotEngine")
            .field("volume", &self.volume)
            .field("dir", &self.dir)
            .field("chunk", &self.chunk)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn unix_ns(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Which image of the volume a read or compare addresses.
#[derive(Clone, Copy)]
enum Image<'a> {
    Snapshot(&'a Snapshot),
    Live,
}

impl SnapshotEngine {
    /// Opens (or starts) the snapshot metadata of `volume` under `dir`,
    /// replaying the journal. Returns the engine and what was found.
    pub fn open(
        volume: &str,
        base: Arc<dyn Bdev>,
        dir: &Path,
        options: SnapshotOptions,
    ) -> Result<(Arc<SnapshotEngine>, OpenReport), SnapshotError> {
        std::fs::create_dir_all(dir).map_err(SnapshotError::io("create directory", dir))?;
        let geometry = base.geometry();
        let block_size = geometry.block_size.bytes();
        let block_count = geometry.block_count.0;
        let (bytes, path) = Journal::read(dir)?;
        let replayed = journal::replay(&bytes, &path)?;
        let corrupt = |why: String| SnapshotError::Corrupt {
            path: path.display().to_string(),
            why,
        };
        let mismatch = |why: String| SnapshotError::Mismatch {
            volume: volume.to_owned(),
            why,
        };
        let mut records = replayed.records.into_iter();
        let (chunk, mut next_id) = match records.next() {
            None => (options.chunk_size, 1),
            Some(Record::Volume {
                chunk_size,
                block_size: stored,
                next_id,
            }) => {
                if stored != block_size {
                    return Err(mismatch(format!(
                        "snapshots were taken with {stored}-byte blocks, the volume now has {block_size}"
                    )));
                }
                (
                    ChunkSize::new(chunk_size).map_err(|e| corrupt(e.to_string()))?,
                    next_id,
                )
            }
            Some(other) => {
                return Err(corrupt(format!(
                    "first record is {other:?}, not the volume header"
                )))
            }
        };
        if chunk.bytes() < block_size {
            return Err(SnapshotError::InvalidArgument {
                what: "chunk size",
                why: format!(
                    "{} bytes is smaller than the volume's {block_size}-byte blocks",
                    chunk.bytes()
                ),
            });
        }
        let chunk_bytes = u64::from(chunk.bytes());
        let chunks = (block_count * u64::from(block_size)).div_ceil(chunk_bytes);

        let mut snapshots: Vec<Snapshot> = Vec::new();
        for record in records {
            match record {
                Record::Volume { .. } => return Err(corrupt("a second volume header".into())),
                Record::Create {
                    id,
                    created_unix_ns,
                    block_count: taken,
                    name,
                } => {
                    if taken != block_count {
                        return Err(mismatch(format!(
                            "snapshot {name:?} has {taken} blocks, the volume {block_count}; it was resized outside Reservoir"
                        )));
                    }
                    let name = SnapshotName::new(&name).map_err(|e| corrupt(e.to_string()))?;
                    let created = UNIX_EPOCH + Duration::from_nanos(created_unix_ns);
                    next_id = next_id.max(id.0 + 1);
                    snapshots.push(Snapshot::new(id, name, created, block_count, chunks));
                }
                Record::Copy {
                    chunk: c,
                    extent,
                    ids,
                } => {
                    if c >= chunks {
                        return Err(corrupt(format!(
                            "copy of chunk {c} beyond the volume's {chunks}"
                        )));
                    }
                    for s in snapshots.iter().filter(|s| ids.contains(&s.id)) {
                        if s.map.get(c).is_none() {
                            s.map.set(c, extent);
                            s.copied.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                Record::Delete { id } => snapshots.retain(|s| s.id != id),
                Record::Invalidate { id, full, detail } => {
                    if let Some(s) = snapshots.iter().find(|s| s.id == id) {
                        let _ = s.invalid.set(if full {
                            InvalidReason::DiffAreaFull
                        } else {
                            InvalidReason::DiffAreaFailed(detail)
                        });
                    }
                }
            }
        }

        // Extent reference counts follow from the live maps.
        let mut refs: Vec<u32> = Vec::new();
        for s in &snapshots {
            for (_, e) in s.map.iter() {
                let i = e.0 as usize;
                if refs.len() <= i {
                    refs.resize(i + 1, 0);
                }
                refs[i] += 1;
            }
        }
        let diff = DiffArea::open(
            dir,
            options.diff_area_device.as_deref(),
            chunk.bytes(),
            options.diff_area_capacity,
        )?;
        diff.set_refs(refs);

        let tracking = Self::load_tracking(dir, chunks, &snapshots)?;

        // Compact: the journal now says exactly what is live.
        let mut compact = vec![Record::Volume {
            chunk_size: chunk.bytes(),
            block_size,
            next_id,
        }];
        for s in &snapshots {
            compact.push(Record::Create {
                id: s.id,
                created_unix_ns: unix_ns(s.created),
                block_count: s.block_count,
                name: s.name.to_string(),
            });
            if let Some(reason) = s.invalid.get() {
                compact.push(Record::Invalidate {
                    id: s.id,
                    full: *reason == InvalidReason::DiffAreaFull,
                    detail: reason.to_string(),
                });
            }
        }
        let mut copies: std::collections::BTreeMap<(u64, DiffExtent), Vec<SnapshotId>> =
            std::collections::BTreeMap::new();
        for s in &snapshots {
            for (c, e) in s.map.iter() {
                copies.entry((c, e)).or_default().push(s.id);
            }
        }
        compact.extend(
            copies
                .into_iter()
                .map(|((chunk, extent), ids)| Record::Copy { chunk, extent, ids }),
        );
        let journal = Journal::rewrite(path, &compact)?;

        let report = OpenReport {
            snapshots: snapshots.len(),
            tracking,
            discarded_journal_bytes: replayed.discarded_bytes,
        };
        let engine = SnapshotEngine {
            volume: volume.to_owned(),
            base,
            dir: dir.to_owned(),
            chunk,
            block_size: u64::from(block_size),
            gate: WriteGate::new(State {
                snapshots: snapshots.into_iter().map(Arc::new).collect(),
                block_count,
                chunks,
                closed: false,
                next_id,
            }),
            cow_locks: (0..COW_STRIPES).map(|_| Mutex::new(())).collect(),
            diff,
            journal: Mutex::new(journal),
            admin: Mutex::new(()),
        };
        Ok((Arc::new(engine), report))
    }

    /// Loads the bitmaps a clean close left, then marks the file unclean
    /// before any write can happen.
    fn load_tracking(
        dir: &Path,
        chunks: u64,
        snapshots: &[Snapshot],
    ) -> Result<TrackingState, SnapshotError> {
        let path = dir.join(tracking::FILE);
        let image = match std::fs::read(&path) {
            Ok(bytes) => Ok(tracking::decode(&bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err("no tracking file"),
            Err(e) => return Err(SnapshotError::io("read", &path)(e)),
        };
        let why_not = match &image {
            Err(why) => Some(*why),
            Ok(None) => Some("the tracking file is damaged"),
            Ok(Some(i)) if !i.clean => Some("the volume was not shut down cleanly"),
            Ok(Some(i)) if i.chunks != chunks => {
                Some("the tracking file is for another volume size")
            }
            Ok(Some(_)) => None,
        };
        let mut untrusted = Vec::new();
        for s in snapshots {
            let stored = match (&image, why_not) {
                (Ok(Some(i)), None) => i.generations.iter().find(|g| g.0 == s.id && g.1),
                _ => None,
            };
            match stored {
                Some((_, _, words)) => {
                    for (i, &w) in words.iter().enumerate() {
                        s.changes.or_word(i, w);
                    }
                }
                None => {
                    s.changes_trusted.store(false, Ordering::Relaxed);
                    untrusted.push(s.name.to_string());
                }
            }
        }
        journal::replace_file(&path, &tracking::encode(false, chunks, &[]))?;
        Ok(if untrusted.is_empty() {
            TrackingState::Trusted
        } else {
            TrackingState::Untrusted {
                reason: format!(
                    "{} (snapshots {}); changed sets from them are computed by full compare",
                    why_not.unwrap_or("their tracking was lost"),
                    untrusted.join(", ")
                ),
            }
        })
    }

    pub fn volume(&self) -> &str {
        &self.volume
    }

    pub fn chunk_size(&self) -> ChunkSize {
        self.chunk
    }

    /// The bdev to put under the volume's LUN instead of the base bdev.
    pub fn origin(self: &Arc<Self>) -> Arc<dyn Bdev> {
        Arc::new(SnapshotOrigin::new(self.clone()))
    }

    fn find<'a>(&self, state: &'a State, name: &str) -> Result<&'a Arc<Snapshot>, SnapshotError> {
        state
            .snapshots
            .iter()
            .find(|s| s.name.as_str() == name)
            .ok_or_else(|| SnapshotError::NotFound {
                volume: self.volume.clone(),
                name: name.to_owned(),
            })
    }

    fn info(&self, s: &Snapshot) -> SnapshotInfo {
        let copied = s.copied.load(Ordering::Relaxed);
        SnapshotInfo {
            name: s.name.clone(),
            id: s.id,
            created: s.created,
            chunk_size: self.chunk,
            size_bytes: s.block_count * self.block_size,
            copied_chunks: copied,
            diff_bytes: copied * u64::from(self.chunk.bytes()),
            invalid: s.invalid.get().cloned(),
        }
    }

    /// Takes a snapshot: metadata only. In-flight writes are drained and
    /// later ones wait for the journal record of the snapshot to be durable.
    pub fn create(&self, name: &str) -> Result<SnapshotInfo, SnapshotError> {
        let name = SnapshotName::new(name)?;
        let _admin = lock(&self.admin);
        let (id, chunks, block_count) = {
            let st = self.gate.shared();
            if st.snapshots.iter().any(|s| s.name == name) {
                return Err(SnapshotError::AlreadyExists {
                    volume: self.volume.clone(),
                    name: name.to_string(),
                });
            }
            (SnapshotId(st.next_id), st.chunks, st.block_count)
        };
        let created = SystemTime::now();
        let snapshot = Arc::new(Snapshot::new(id, name, created, block_count, chunks));
        let mut st = self.gate.exclusive();
        if st.closed {
            return Err(SnapshotError::Closed {
                volume: self.volume.clone(),
            });
        }
        lock(&self.journal).append(&Record::Create {
            id,
            created_unix_ns: unix_ns(created),
            block_count,
            name: snapshot.name.to_string(),
        })?;
        st.next_id += 1;
        st.snapshots.push(snapshot.clone());
        drop(st);
        Ok(self.info(&snapshot))
    }

    /// Deletes a snapshot; every other snapshot keeps its content (chunks
    /// it shares stay referenced). Views of it fail from now on.
    pub fn delete(&self, name: &str) -> Result<(), SnapshotError> {
        let _admin = lock(&self.admin);
        let snapshot = {
            let mut st = self.gate.exclusive();
            let index = st
                .snapshots
                .iter()
                .position(|s| s.name.as_str() == name)
                .ok_or_else(|| SnapshotError::NotFound {
                    volume: self.volume.clone(),
                    name: name.to_owned(),
                })?;
            let id = st.snapshots[index].id;
            lock(&self.journal).append(&Record::Delete { id })?;
            let snapshot = st.snapshots.remove(index);
            if let Some(prev) = index.checked_sub(1).map(|i| &st.snapshots[i]) {
                for i in 0..snapshot.changes.words().len() {
                    prev.changes.or_word(i, snapshot.changes.word(i));
                }
                if !snapshot.changes_trusted.load(Ordering::Relaxed) {
                    prev.changes_trusted.store(false, Ordering::Relaxed);
                }
            }
            snapshot.deleted.store(true, Ordering::Release);
            snapshot
        };
        // The deletion is durable, so its extents may be reused.
        for (_, extent) in snapshot.map.iter() {
            self.diff.release(extent);
        }
        Ok(())
    }

    /// Every live snapshot, oldest first.
    pub fn list(&self) -> Vec<SnapshotInfo> {
        let st = self.gate.shared();
        st.snapshots.iter().map(|s| self.info(s)).collect()
    }

    /// One snapshot by name.
    pub fn get(&self, name: &str) -> Result<SnapshotInfo, SnapshotError> {
        let st = self.gate.shared();
        self.find(&st, name).map(|s| self.info(s))
    }

    /// A read-only bdev of the snapshot, for exporting as a LUN.
    pub fn view(self: &Arc<Self>, name: &str) -> Result<Arc<dyn Bdev>, SnapshotError> {
        let snapshot = {
            let st = self.gate.shared();
            self.find(&st, name)?.clone()
        };
        snapshot.check_readable()?;
        Ok(Arc::new(SnapshotView::new(self.clone(), snapshot)))
    }

    pub fn diff_area_usage(&self) -> DiffAreaUsage {
        let invalid_snapshots = self
            .gate
            .shared()
            .snapshots
            .iter()
            .filter(|s| !s.is_valid())
            .count();
        DiffAreaUsage {
            used_bytes: self.diff.used_extents() * u64::from(self.chunk.bytes()),
            capacity_bytes: self.diff.capacity_bytes(),
            chunk_size: self.chunk,
            invalid_snapshots,
        }
    }

    /// Changed chunks between snapshot `from` and snapshot `to` (taken
    /// later), or the live volume when `to` is `None`.
    pub fn changed(&self, from: &str, to: Option<&str>) -> Result<ChangedSet, SnapshotError> {
        let (from, to) = {
            let st = self.gate.shared();
            let from = self.find(&st, from)?.id;
            let to = to.map(|t| self.find(&st, t).map(|s| s.id)).transpose()?;
            (from, to)
        };
        self.changed_chunks(from, to)
    }

    /// [`SnapshotEngine::changed`] by snapshot id.
    pub fn changed_chunks(
        &self,
        from: SnapshotId,
        to: Option<SnapshotId>,
    ) -> Result<ChangedSet, SnapshotError> {
        let not_found = |id: SnapshotId| SnapshotError::NotFound {
            volume: self.volume.clone(),
            name: format!("#{id}"),
        };
        let (interval, to_snapshot, chunks, volume_bytes) = {
            let st = self.gate.shared();
            let i = st
                .snapshots
                .iter()
                .position(|s| s.id == from)
                .ok_or_else(|| not_found(from))?;
            let j = match to {
                None => st.snapshots.len(),
                Some(to) => st
                    .snapshots
                    .iter()
                    .position(|s| s.id == to)
                    .ok_or_else(|| not_found(to))?,
            };
            if j < i {
                return Err(SnapshotError::InvalidArgument {
                    what: "changed-block range",
                    why: format!(
                        "snapshot #{} was taken before #{}; swap FROM and TO",
                        st.snapshots[j].id, from
                    ),
                });
            }
            (
                st.snapshots[i..j].to_vec(),
                to.map(|_| st.snapshots[j].clone()),
                st.chunks,
                st.block_count * self.block_size,
            )
        };
        let from_snapshot = interval
            .first()
            .cloned()
            .or_else(|| to_snapshot.clone())
            .ok_or_else(|| not_found(from))?;
        from_snapshot.check_readable()?;
        if let Some(t) = &to_snapshot {
            t.check_readable()?;
        }
        let chunk = u64::from(self.chunk.bytes());
        let trusted = interval
            .iter()
            .all(|s| s.changes_trusted.load(Ordering::Relaxed));
        let (runs, method) = if trusted {
            let gens: Vec<&Bitmap> = interval.iter().map(|s| &s.changes).collect();
            (tracked_runs(&gens, chunks), ChangeMethod::Tracked)
        } else {
            let a = Image::Snapshot(&from_snapshot);
            let b = to_snapshot.as_deref().map_or(Image::Live, Image::Snapshot);
            let runs = compared_runs(
                chunks,
                || (vec![0u8; chunk as usize], vec![0u8; chunk as usize]),
                |(x, y), c| {
                    let len = (chunk.min(volume_bytes - c * chunk)) as usize;
                    self.read_image(a, c * chunk, &mut x[..len])?;
                    self.read_image(b, c * chunk, &mut y[..len])?;
                    Ok::<_, SnapshotError>(crc32c::crc32c(&x[..len]) != crc32c::crc32c(&y[..len]))
                },
            )?;
            (runs, ChangeMethod::FullCompare)
        };
        let extents = to_extents(&runs, chunk, volume_bytes);
        Ok(ChangedSet {
            total_bytes: extents.iter().map(|e| e.len).sum(),
            extents,
            chunk_size: self.chunk,
            method,
        })
    }

    fn read_image(
        &self,
        image: Image<'_>,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), SnapshotError> {
        match image {
            Image::Snapshot(s) => self.read_snapshot(s, offset, buf),
            Image::Live => self
                .base
                .read(Lba(offset / self.block_size), buf)
                .map_err(|source| SnapshotError::Bdev {
                    op: "read",
                    volume: self.volume.clone(),
                    source,
                }),
        }
    }

    /// Reads a snapshot's frozen content; `offset` and `buf` are block
    /// aligned and in range. The read protocol takes no lock a writer
    /// takes: map, else origin then map again (a copy may have been made
    /// meanwhile, in which case the origin bytes may be newer).
    pub(crate) fn read_snapshot(
        &self,
        s: &Snapshot,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), SnapshotError> {
        s.check_readable()?;
        let chunk = u64::from(self.chunk.bytes());
        let mut done = 0usize;
        while done < buf.len() {
            let at = offset + done as u64;
            let c = at / chunk;
            let within = at % chunk;
            let n = ((chunk - within) as usize).min(buf.len() - done);
            let piece = &mut buf[done..done + n];
            match s.map.get(c) {
                Some(extent) => self.diff.load(extent, within, piece)?,
                None => {
                    self.base
                        .read(Lba(at / self.block_size), piece)
                        .map_err(|source| SnapshotError::Bdev {
                            op: "read snapshot origin",
                            volume: self.volume.clone(),
                            source,
                        })?;
                    if let Some(extent) = s.map.get(c) {
                        self.diff.load(extent, within, piece)?;
                    }
                }
            }
            s.check_readable()?;
            done += n;
        }
        Ok(())
    }

    /// Before a write, unmap or write-zeroes of bytes `[offset, offset+len)`
    /// (validated, in range): marks the chunks changed and preserves every
    /// chunk a valid snapshot still reads from the origin. The caller holds
    /// the write gate shared for this and the write that follows.
    pub(crate) fn before_write(&self, st: &State, offset: u64, len: u64) -> Result<(), BdevError> {
        let Some(newest) = st.snapshots.last() else {
            return Ok(());
        };
        if len == 0 {
            return Ok(());
        }
        let chunk = u64::from(self.chunk.bytes());
        for c in offset / chunk..=(offset + len - 1) / chunk {
            newest.changes.set(c);
            // Snapshots lacking a copy of a chunk are always the newest ones
            // (a write copies for all that lack it), so the newest valid
            // snapshot decides whether anything must be copied.
            let Some(top) = st.snapshots.iter().rev().find(|s| s.is_valid()) else {
                return Ok(());
            };
            if top.map.get(c).is_none() {
                self.copy_chunk(st, c)?;
            }
        }
        Ok(())
    }

    fn copy_chunk(&self, st: &State, c: u64) -> Result<(), BdevError> {
        let _cow = lock(&self.cow_locks[c as usize % COW_STRIPES]);
        let lacking: Vec<&Arc<Snapshot>> = st
            .snapshots
            .iter()
            .rev()
            .filter(|s| s.is_valid())
            .take_while(|s| s.map.get(c).is_none())
            .collect();
        if lacking.is_empty() {
            return Ok(());
        }
        let chunk = u64::from(self.chunk.bytes());
        let start = c * chunk;
        let len = chunk.min(st.block_count * self.block_size - start) as usize;
        let mut old = vec![0u8; len];
        self.base.read(Lba(start / self.block_size), &mut old)?;
        let Some(extent) = self.diff.allocate() else {
            return self.invalidate(&lacking, InvalidReason::DiffAreaFull);
        };
        if let Err(reason) = self.diff.store(extent, &old) {
            self.diff.abandon(extent);
            return self.invalidate(&lacking, reason);
        }
        let record = Record::Copy {
            chunk: c,
            extent,
            ids: lacking.iter().map(|s| s.id).collect(),
        };
        if let Err(e) = lock(&self.journal).append(&record) {
            self.diff.abandon(extent);
            return self.invalidate(&lacking, InvalidReason::DiffAreaFailed(e.to_string()));
        }
        self.diff.commit(extent, lacking.len() as u32);
        for s in lacking {
            s.map.set(c, extent);
            s.copied.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Marks snapshots that lost a chunk invalid, durably, before the origin
    /// write proceeds. If even that cannot be journaled the write fails:
    /// a snapshot that reads wrong after a restart is the one outcome
    /// worse than a failed write.
    fn invalidate(
        &self,
        snapshots: &[&Arc<Snapshot>],
        reason: InvalidReason,
    ) -> Result<(), BdevError> {
        for s in snapshots {
            if s.invalid.set(reason.clone()).is_ok() {
                let record = Record::Invalidate {
                    id: s.id,
                    full: reason == InvalidReason::DiffAreaFull,
                    detail: reason.to_string(),
                };
                lock(&self.journal)
                    .append(&record)
                    .map_err(|e| e.into_bdev("invalidate snapshot", ErrorKind::WriteFailed))?;
                // The operator learns it here, and from `snapshot list`.
                tracing::warn!(
                    volume = %self.volume,
                    snapshot = %s.name.as_str(),
                    "snapshot invalidated: {reason}; the volume keeps working, \
                     delete the snapshot to free its differential area"
                );
            }
        }
        Ok(())
    }

    /// Shuts down cleanly: persists the change tracking so the next open
    /// trusts it. Writes through the origin fail afterwards.
    pub fn close(&self) -> Result<(), SnapshotError> {
        let _admin = lock(&self.admin);
        let mut st = self.gate.exclusive();
        if st.closed {
            return Ok(());
        }
        self.base.flush().map_err(|source| SnapshotError::Bdev {
            op: "flush",
            volume: self.volume.clone(),
            source,
        })?;
        let gens: Vec<_> = st
            .snapshots
            .iter()
            .map(|s| {
                let words = (0..s.changes.words().len())
                    .map(|i| s.changes.word(i))
                    .collect();
                (s.id, s.changes_trusted.load(Ordering::Relaxed), words)
            })
            .collect();
        journal::replace_file(
            &self.dir.join(tracking::FILE),
            &tracking::encode(true, st.chunks, &gens),
        )?;
        st.closed = true;
        Ok(())
    }

    pub(crate) fn closed_error(&self) -> BdevError {
        SnapshotError::Closed {
            volume: self.volume.clone(),
        }
        .into_bdev("write", ErrorKind::WriteFailed)
    }
}
