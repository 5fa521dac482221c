//! The repository: a directory of backups, no database.
//!
//! ```text
//!   REPO/
//!     repository.json          format marker (version)
//!     lock                     flock: id allocation, commit, prune
//!     b<id>-g<gen>/            a complete backup (generation: prune rewrites)
//!       manifest.json          identity, sizes, totals, index CRC (checksummed)
//!       chunks.idx             32-byte entry per record (offset, len, kind, CRC, pos)
//!       chunks.dat             DATA payloads, in record order
//!     partial-<id>/            a backup being received; never listed
//!       header.json            the stream header it belongs to (resume key)
//!       progress               acknowledged point (checksummed)
//!       lock                   flock of the connection writing it
//!       chunks.idx, chunks.dat as above, possibly longer than `progress`
//!     prune-<id>-g<gen>.tmp/   a prune rewrite in progress; removed at open
//!     trash-*/                 being deleted
//! ```
//!
//! A backup becomes visible by one rename (`partial-<id>` to `b<id>-g1`)
//! after its data, index and manifest are fsynced; prune makes a rewritten
//! backup visible the same way under a higher generation, and only then
//! deletes what it replaced. A crash therefore leaves either the old or
//! the new state plus directories that [`Repository::open`] cleans up.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::files::{self, sync_dir};
use crate::stream::{ChangeSource, Totals};
use crate::types::{BackupId, ChunkBytes, VolumeIdentity};
use crate::BackupError;

const REPO_MARKER: &str = "repository.json";
const REPO_VERSION: u32 = 1;
pub(crate) const MANIFEST: &str = "manifest.json";
pub(crate) const MANIFEST_VERSION: u32 = 1;
pub(crate) const INDEX: &str = "chunks.idx";
pub(crate) const DATA: &str = "chunks.dat";

#[derive(Debug, Serialize, Deserialize)]
struct RepoMarker {
    format: String,
}

/// Everything stored about one complete backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub id: BackupId,
    pub generation: u32,
    pub volume: VolumeIdentity,
    pub snapshot: String,
    pub parent: Option<BackupId>,
    pub chunk_size: ChunkBytes,
    pub volume_size: u64,
    pub source: ChangeSource,
    pub created_unix_ms: u64,
    pub duration_ms: u64,
    pub bytes_sent: u64,
    pub totals: Totals,
    pub index_entries: u64,
    pub index_crc32c: u32,
    pub data_len: u64,
    /// Older backups folded into this one by prune (it has no parent then).
    pub merged_from: Vec<BackupId>,
}

/// One backup as listed (`reservoir backup list --json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupInfo {
    pub id: BackupId,
    pub volume: VolumeIdentity,
    pub snapshot: String,
    pub parent: Option<BackupId>,
    pub created_unix_ms: u64,
    pub duration_ms: u64,
    /// Bytes the sender put on the wire for this backup (all resumed runs).
    pub bytes_sent: u64,
    /// Chunks the backup carries (DATA plus chunks covered by ZERO).
    pub changed_chunks: u64,
    pub data_bytes: u64,
    pub zero_bytes: u64,
    pub volume_size: u64,
    pub chunk_size: ChunkBytes,
    pub source: ChangeSource,
    pub merged_from: Vec<BackupId>,
}

impl Manifest {
    pub(crate) fn info(&self) -> BackupInfo {
        let covered = self.totals.data_bytes + self.totals.zero_bytes;
        BackupInfo {
            id: self.id,
            volume: self.volume.clone(),
            snapshot: self.snapshot.clone(),
            parent: self.parent,
            created_unix_ms: self.created_unix_ms,
            duration_ms: self.duration_ms,
            bytes_sent: self.bytes_sent,
            changed_chunks: covered.div_ceil(self.chunk_size.u64()),
            data_bytes: self.totals.data_bytes,
            zero_bytes: self.totals.zero_bytes,
            volume_size: self.volume_size,
            chunk_size: self.chunk_size,
            source: self.source,
            merged_from: self.merged_from.clone(),
        }
    }
}

/// The chain of one volume, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeChain {
    pub volume: VolumeIdentity,
    pub backups: Vec<BackupInfo>,
}

/// A complete backup found on disk.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

/// What a scan of the repository found.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The highest complete generation of each id.
    pub backups: BTreeMap<BackupId, Stored>,
    /// Backup directories whose manifest cannot be read.
    pub damaged: Vec<(BackupId, PathBuf, String)>,
    /// Lower generations superseded by a prune rewrite.
    pub superseded: Vec<PathBuf>,
    pub partials: Vec<(BackupId, PathBuf)>,
    pub max_id: u64,
}

/// A backup repository directory, for the server and for `--repo DIR`.
#[derive(Debug, Clone)]
pub struct Repository {
    root: PathBuf,
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Exclusive lock of the repository (id allocation, commit, prune); held
/// until dropped. Works across processes (flock) and threads (each holder
/// opens its own file description).
#[derive(Debug)]
pub(crate) struct RepoLock {
    _file: File,
}

impl Repository {
    /// Opens (creating if needed) the repository at `root` and finishes or
    /// removes whatever a crash left behind.
    pub fn open(root: &Path) -> Result<Repository, BackupError> {
        fs::create_dir_all(root).map_err(BackupError::io("create repository", root))?;
        let marker = root.join(REPO_MARKER);
        if marker.exists() {
            let m: RepoMarker = files::read_record(&marker, "repository marker", REPO_VERSION)?;
            if m.format != "reservoir-backup" {
                return Err(BackupError::CorruptFile {
                    path: marker.display().to_string(),
                    why: format!("format {:?} is not a Reservoir backup repository", m.format),
                });
            }
        } else {
            files::write_record(
                root,
                REPO_MARKER,
                REPO_VERSION,
                &RepoMarker {
                    format: "reservoir-backup".into(),
                },
            )?;
        }
        let repo = Repository {
            root: root.to_owned(),
        };
        repo.recover()?;
        Ok(repo)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn lock(&self) -> Result<RepoLock, BackupError> {
        let path = self.root.join("lock");
        let f = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(BackupError::io("open", &path))?;
        f.lock().map_err(BackupError::io("lock", &path))?;
        Ok(RepoLock { _file: f })
    }

    fn recover(&self) -> Result<(), BackupError> {
        let _lock = self.lock()?;
        for entry in self.entries()? {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if name.starts_with("trash-") || (name.starts_with("prune-") && name.ends_with(".tmp"))
            {
                fs::remove_dir_all(&path).map_err(BackupError::io("remove", &path))?;
            }
        }
        // A partial whose manifest is written was committed except for its
        // rename: finish that. (Its lock is free unless a live connection
        // is in `commit`, which holds the repository lock we hold now.)
        for (id, dir) in self.scan()?.partials {
            if dir.join(MANIFEST).exists() {
                let m: Manifest =
                    files::read_record(&dir.join(MANIFEST), "manifest", MANIFEST_VERSION)?;
                self.publish(&dir, id, m.generation)?;
            }
        }
        for dir in self.scan()?.superseded {
            self.trash(&dir)?;
        }
        Ok(())
    }

    fn entries(&self) -> Result<Vec<fs::DirEntry>, BackupError> {
        fs::read_dir(&self.root)
            .and_then(|d| d.collect::<Result<Vec<_>, _>>())
            .map_err(BackupError::io("list repository", &self.root))
    }

    pub(crate) fn backup_dir(&self, id: BackupId, generation: u32) -> PathBuf {
        self.root.join(format!("b{}-g{generation}", id.0))
    }

    pub(crate) fn partial_dir(&self, id: BackupId) -> PathBuf {
        self.root.join(format!("partial-{}", id.0))
    }

    /// Renames a finished directory into place as `b<id>-g<gen>`.
    pub(crate) fn publish(
        &self,
        from: &Path,
        id: BackupId,
        generation: u32,
    ) -> Result<(), BackupError> {
        let to = self.backup_dir(id, generation);
        fs::rename(from, &to).map_err(BackupError::io("rename", from))?;
        sync_dir(&self.root)?;
        // Left-overs of the receive are not part of a complete backup.
        for name in ["progress", "header.json", "lock"] {
            let _ = fs::remove_file(to.join(name));
        }
        Ok(())
    }

    /// Removes a directory so that no crash leaves half of it looking valid:
    /// rename out of the namespace first, then delete.
    pub(crate) fn trash(&self, dir: &Path) -> Result<(), BackupError> {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let to = self.root.join(format!("trash-{name}"));
        fs::rename(dir, &to).map_err(BackupError::io("rename", dir))?;
        sync_dir(&self.root)?;
        fs::remove_dir_all(&to).map_err(BackupError::io("remove", &to))
    }

    pub(crate) fn scan(&self) -> Result<Scan, BackupError> {
        let mut scan = Scan::default();
        let mut found: BTreeMap<BackupId, Vec<(u32, PathBuf)>> = BTreeMap::new();
        for entry in self.entries()? {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(rest) = name.strip_prefix("partial-") {
                if let Ok(id) = rest.parse::<u64>() {
                    scan.max_id = scan.max_id.max(id);
                    scan.partials.push((BackupId(id), entry.path()));
                }
            } else if let Some((id, generation)) = name
                .strip_prefix('b')
                .and_then(|r| r.split_once("-g"))
                .and_then(|(i, g)| Some((i.parse::<u64>().ok()?, g.parse::<u32>().ok()?)))
            {
                scan.max_id = scan.max_id.max(id);
                found
                    .entry(BackupId(id))
                    .or_default()
                    .push((generation, entry.path()));
            } else if let Some(id) = name
                .strip_prefix("prune-")
                .and_then(|r| r.split_once("-g"))
                .and_then(|(i, _)| i.parse::<u64>().ok())
            {
                scan.max_id = scan.max_id.max(id);
            }
        }
        for (id, mut gens) in found {
            gens.sort();
            let (generation, dir) = gens.pop().expect("an id is only recorded with a directory");
            scan.superseded.extend(gens.into_iter().map(|(_, d)| d));
            match files::read_record::<Manifest>(&dir.join(MANIFEST), "manifest", MANIFEST_VERSION)
            {
                Ok(m) if m.id == id && m.generation == generation => {
                    scan.backups.insert(id, Stored { dir, manifest: m });
                }
                Ok(m) => scan.damaged.push((
                    id,
                    dir,
                    format!("manifest names backup {} generation {}", m.id, m.generation),
                )),
                Err(e) => scan.damaged.push((id, dir, e.to_string())),
            }
        }
        Ok(scan)
    }

    pub(crate) fn get(&self, id: BackupId) -> Result<Stored, BackupError> {
        let mut scan = self.scan()?;
        if let Some(s) = scan.backups.remove(&id) {
            return Ok(s);
        }
        match scan.damaged.into_iter().find(|(d, _, _)| *d == id) {
            Some((id, _, why)) => Err(BackupError::Corrupt { id, why }),
            None => Err(BackupError::NotFound(id)),
        }
    }

    /// One backup's summary.
    pub fn describe(&self, id: BackupId) -> Result<BackupInfo, BackupError> {
        Ok(self.get(id)?.manifest.info())
    }

    /// Every complete backup, grouped per volume, oldest first. Partial
    /// backups are never listed.
    pub fn list(&self) -> Result<Vec<VolumeChain>, BackupError> {
        let mut chains: BTreeMap<VolumeIdentity, Vec<BackupInfo>> = BTreeMap::new();
        for stored in self.scan()?.backups.into_values() {
            chains
                .entry(stored.manifest.volume.clone())
                .or_default()
                .push(stored.manifest.info());
        }
        Ok(chains
            .into_iter()
            .map(|(volume, backups)| VolumeChain { volume, backups })
            .collect())
    }

    /// The chain that makes up backup `id`, newest (itself) first.
    pub(crate) fn chain(&self, id: BackupId) -> Result<Vec<Stored>, BackupError> {
        let mut scan = self.scan()?;
        let damaged = |id: BackupId, scan: &Scan| {
            scan.damaged
                .iter()
                .find(|(d, _, _)| *d == id)
                .map(|(id, _, why)| BackupError::Corrupt {
                    id: *id,
                    why: why.clone(),
                })
        };
        let mut chain: Vec<Stored> = Vec::new();
        let mut next = Some(id);
        while let Some(at) = next {
            let Some(stored) = scan.backups.remove(&at) else {
                if let Some(e) = damaged(at, &scan) {
                    return Err(e);
                }
                return Err(match chain.last() {
                    None => BackupError::NotFound(at),
                    Some(child) => BackupError::Corrupt {
                        id: child.manifest.id,
                        why: format!("its parent backup {at} is missing from the repository"),
                    },
                });
            };
            if let Some(child) = chain.last() {
                if stored.manifest.chunk_size != child.manifest.chunk_size
                    || stored.manifest.volume != child.manifest.volume
                {
                    return Err(BackupError::Corrupt {
                        id: child.manifest.id,
                        why: format!("its parent {at} is of another volume or chunk size"),
                    });
                }
            }
            next = stored.manifest.parent;
            chain.push(stored);
        }
        Ok(chain)
    }
}
