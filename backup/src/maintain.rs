//! Verify and prune.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::files::{self, sync_dir, IndexEntry};
use crate::image::{load_index, Image, Piece};
use crate::repo::{Manifest, Repository, Stored, DATA, INDEX, MANIFEST, MANIFEST_VERSION};
use crate::stream::{ChangeSource, Totals, KIND_DATA, KIND_ZERO};
use crate::types::BackupId;
use crate::BackupError;

/// The verdict on one backup.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackupVerdict {
    pub id: BackupId,
    /// `None` when the manifest itself cannot be read.
    pub volume: Option<String>,
    pub chunks_checked: u64,
    pub bytes_checked: u64,
    /// Empty when the backup is intact; otherwise each names what is wrong
    /// (the chunk's offset for a checksum mismatch).
    pub problems: Vec<String>,
}

impl BackupVerdict {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerifyReport {
    pub backups: Vec<BackupVerdict>,
}

impl VerifyReport {
    /// Ids of the backups with at least one problem.
    pub fn damaged(&self) -> Vec<BackupId> {
        self.backups
            .iter()
            .filter(|v| !v.ok())
            .map(|v| v.id)
            .collect()
    }
}

/// What `prune --keep N` did.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PruneReport {
    pub kept: Vec<BackupId>,
    pub removed: Vec<BackupId>,
    /// Kept backups rewritten as full ones because their parents went.
    pub rebased: Vec<BackupId>,
    /// Partial backups that can no longer be resumed (a newer backup of
    /// the volume completed), removed.
    pub removed_partials: Vec<BackupId>,
}

fn verify_one(stored: &Stored, parents: &BTreeSet<BackupId>) -> BackupVerdict {
    let m = &stored.manifest;
    let mut verdict = BackupVerdict {
        id: m.id,
        volume: Some(m.volume.name.clone()),
        chunks_checked: 0,
        bytes_checked: 0,
        problems: Vec::new(),
    };
    if let Some(p) = m.parent {
        if !parents.contains(&p) {
            verdict
                .problems
                .push(format!("parent backup {p} is missing or damaged"));
        }
    }
    let entries = match load_index(stored) {
        Ok(e) => e,
        Err(e) => {
            verdict.problems.push(e.to_string());
            return verdict;
        }
    };
    let mut totals = Totals::default();
    for e in &entries {
        totals.add(e.kind, e.offset, e.len, e.crc);
    }
    if totals != m.totals {
        verdict.problems.push(format!(
            "stream digest over the index is {:08x}, the manifest records {:08x}",
            totals.digest, m.totals.digest
        ));
    }
    let path = stored.dir.join(DATA);
    let data = match File::open(&path) {
        Ok(f) => f,
        Err(e) => {
            verdict.problems.push(format!("chunks.dat: {e}"));
            return verdict;
        }
    };
    let data_entries: Vec<&IndexEntry> = entries.iter().filter(|e| e.kind == KIND_DATA).collect();
    let mut bad: Vec<(u64, String)> = data_entries
        .par_iter()
        .map_init(Vec::new, |buf, e| {
            buf.resize(e.len as usize, 0);
            match data.read_exact_at(buf, e.pos) {
                Err(err) => Some((
                    e.offset,
                    format!("chunk at offset {}: unreadable: {err}", e.offset),
                )),
                Ok(()) => {
                    let actual = crc32c::crc32c(buf);
                    (actual != e.crc).then(|| {
                        (
                            e.offset,
                            format!(
                                "chunk at offset {}: CRC32C {actual:08x}, recorded {:08x}",
                                e.offset, e.crc
                            ),
                        )
                    })
                }
            }
        })
        .flatten()
        .collect();
    bad.sort();
    verdict.problems.extend(bad.into_iter().map(|(_, p)| p));
    verdict.chunks_checked = data_entries.len() as u64;
    verdict.bytes_checked = data_entries.iter().map(|e| e.len).sum();
    verdict
}

impl Repository {
    /// Re-reads every chunk of `backup` (or of every backup) and checks
    /// every checksum; a damaged backup is named, with each damaged chunk.
    pub fn verify(&self, backup: Option<BackupId>) -> Result<VerifyReport, BackupError> {
        let scan = self.scan()?;
        let intact: BTreeSet<BackupId> = scan.backups.keys().copied().collect();
        let mut backups: Vec<BackupVerdict> = Vec::new();
        for (id, _, why) in &scan.damaged {
            if backup.is_none_or(|b| b == *id) {
                backups.push(BackupVerdict {
                    id: *id,
                    volume: None,
                    chunks_checked: 0,
                    bytes_checked: 0,
                    problems: vec![why.clone()],
                });
            }
        }
        for (id, stored) in &scan.backups {
            if backup.is_none_or(|b| b == *id) {
                backups.push(verify_one(stored, &intact));
            }
        }
        if let Some(b) = backup {
            if backups.is_empty() {
                return Err(BackupError::NotFound(b));
            }
        }
        backups.sort_by_key(|v| v.id);
        Ok(VerifyReport { backups })
    }

    /// Keeps the newest `keep` backups of every volume and removes the
    /// rest. A kept backup whose parent goes is first rewritten as a full
    /// backup of the same point (same id, next generation), made visible
    /// by rename before anything it depended on is deleted: a crash at any
    /// moment leaves every kept point restorable.
    pub fn prune(&self, keep: usize) -> Result<PruneReport, BackupError> {
        if keep == 0 {
            return Err(BackupError::InvalidArgument {
                what: "prune --keep",
                why: "must keep at least one backup per volume".into(),
            });
        }
        let _lock = self.lock()?;
        let scan = self.scan()?;
        let mut per_volume: BTreeMap<String, Vec<BackupId>> = BTreeMap::new();
        for (id, s) in &scan.backups {
            per_volume
                .entry(s.manifest.volume.name.clone())
                .or_default()
                .push(*id);
        }
        let mut report = PruneReport::default();
        let mut kept_set = BTreeSet::new();
        for ids in per_volume.values() {
            let cut = ids.len().saturating_sub(keep);
            report.removed.extend(&ids[..cut]);
            kept_set.extend(&ids[cut..]);
        }
        report.kept = kept_set.iter().copied().collect();
        for id in &report.kept {
            let m = &scan.backups[id].manifest;
            if m.parent.is_some_and(|p| !kept_set.contains(&p)) {
                self.rebase(m)?;
                report.rebased.push(*id);
            }
        }
        // Everything kept is self-contained now; the rest can go.
        for id in &report.removed {
            self.trash(&scan.backups[id].dir)?;
        }
        for (id, s) in &scan.backups {
            if report.rebased.contains(id) {
                self.trash(&s.dir)?;
            }
        }
        for dir in &scan.superseded {
            self.trash(dir)?;
        }
        for (id, dir) in &scan.partials {
            if let Ok(header) = files::read_record::<crate::stream::StreamHeader>(
                &dir.join("header.json"),
                "stream header",
                1,
            ) {
                let newer = scan
                    .backups
                    .iter()
                    .any(|(b, s)| b > id && s.manifest.volume == header.volume);
                if newer && lock_free(dir) {
                    self.trash(dir)?;
                    report.removed_partials.push(*id);
                }
            }
        }
        Ok(report)
    }

    /// Writes backup `m.id` as a full backup under the next generation.
    fn rebase(&self, m: &Manifest) -> Result<(), BackupError> {
        let image = Image::open(self, m.id)?;
        let generation = m.generation + 1;
        let tmp = self
            .root()
            .join(format!("prune-{}-g{generation}.tmp", m.id.0));
        if tmp.exists() {
            fs::remove_dir_all(&tmp).map_err(BackupError::io("remove", &tmp))?;
        }
        fs::create_dir(&tmp).map_err(BackupError::io("create", &tmp))?;
        let create = |name: &str| -> Result<BufWriter<File>, BackupError> {
            let p = tmp.join(name);
            File::create(&p)
                .map(|f| BufWriter::with_capacity(1 << 20, f))
                .map_err(BackupError::io("create", &p))
        };
        let mut data = create(DATA)?;
        let mut index = create(INDEX)?;
        let mut totals = Totals::default();
        let mut data_len = 0u64;
        let mut entries = 0u64;
        let mut index_crc = 0u32;
        let mut buf = Vec::new();
        let werr = |p: &Path| BackupError::io("write", p);
        image.pieces(0..image.volume_size, &mut buf, |piece| {
            let entry = match piece {
                Piece::Data {
                    offset,
                    crc,
                    payload,
                } => {
                    data.write_all(payload).map_err(werr(&tmp))?;
                    let e = IndexEntry {
                        offset,
                        len: payload.len() as u64,
                        kind: KIND_DATA,
                        crc,
                        pos: data_len,
                    };
                    data_len += payload.len() as u64;
                    e
                }
                Piece::Zero { offset, len } => IndexEntry {
                    offset,
                    len,
                    kind: KIND_ZERO,
                    crc: 0,
                    pos: data_len,
                },
            };
            totals.add(entry.kind, entry.offset, entry.len, entry.crc);
            let bytes = entry.encode();
            index_crc = crc32c::crc32c_append(index_crc, &bytes);
            entries += 1;
            index.write_all(&bytes).map_err(werr(&tmp))
        })?;
        for w in [&mut data, &mut index] {
            w.flush()
                .and_then(|()| w.get_ref().sync_all())
                .map_err(BackupError::io("fsync", &tmp))?;
        }
        let mut merged_from: Vec<BackupId> = image.chain[1..].to_vec();
        merged_from.extend(&m.merged_from);
        merged_from.sort();
        let manifest = Manifest {
            generation,
            parent: None,
            source: ChangeSource::Full,
            totals,
            index_entries: entries,
            index_crc32c: index_crc,
            data_len,
            merged_from,
            ..m.clone()
        };
        files::write_record(&tmp, MANIFEST, MANIFEST_VERSION, &manifest)?;
        sync_dir(&tmp)?;
        self.publish(&tmp, m.id, generation)
    }
}

fn lock_free(dir: &Path) -> bool {
    File::options()
        .write(true)
        .open(dir.join("lock"))
        .map(|f| f.try_lock().is_ok())
        .unwrap_or(true)
}
