//! The differential area: a file of chunk-sized extents holding the
//! pre-write content of chunks that snapshots still need.
//!
//! Extent `e` lives at byte `e * chunk_size`. Which extents are in use is
//! not stored here: it follows from the journal (an extent is in use while
//! a live snapshot's map points at it), so a crash between writing an
//! extent and journaling it leaves nothing to clean up — the extent is
//! simply free again after replay.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use crate::atomics::DiffExtent;
use crate::{InvalidReason, SnapshotError};

#[derive(Debug, Default)]
struct Allocation {
    /// Snapshots referencing each extent; the vector's length is the high
    /// water mark of the file.
    refs: Vec<u32>,
    /// Extents below the high water mark with no reference, reused first.
    free: Vec<u32>,
    /// Extents handed out and not yet committed or abandoned.
    reserved: u64,
}

#[derive(Debug)]
pub(crate) struct DiffArea {
    file: File,
    path: PathBuf,
    chunk: u64,
    capacity_extents: Option<u64>,
    alloc: Mutex<Allocation>,
}

impl DiffArea {
    pub const FILE: &'static str = "diff.area";

    /// Opens `device` if given (it must exist; its size bounds the area),
    /// else `diff.area` in `dir`, created if missing.
    pub fn open(
        dir: &Path,
        device: Option<&Path>,
        chunk: u32,
        capacity: Option<u64>,
    ) -> Result<Self, SnapshotError> {
        let path = device.map_or_else(|| dir.join(Self::FILE), Path::to_owned);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(device.is_none())
            .truncate(false)
            .open(&path)
            .map_err(SnapshotError::io("open differential area", &path))?;
        let chunk = u64::from(chunk);
        let device_extents = match device {
            // Seeking to the end gives a block device's size as well.
            Some(_) => Some(
                (&file)
                    .seek(SeekFrom::End(0))
                    .map_err(SnapshotError::io("size differential area device", &path))?
                    / chunk,
            ),
            None => None,
        };
        let configured = capacity.map(|c| c / chunk);
        Ok(DiffArea {
            file,
            path,
            chunk,
            capacity_extents: match (configured, device_extents) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            alloc: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Allocation> {
        self.alloc.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Installs the reference counts rebuilt from the journal at open.
    pub fn set_refs(&self, refs: Vec<u32>) {
        let mut a = self.lock();
        a.free = (0..refs.len() as u32)
            .rev()
            .filter(|&e| refs[e as usize] == 0)
            .collect();
        a.refs = refs;
        a.reserved = 0;
    }

    /// An extent to copy into, or `None` when the capacity is reached.
    pub fn allocate(&self) -> Option<DiffExtent> {
        let mut a = self.lock();
        let in_use = a.refs.len() as u64 - a.free.len() as u64;
        if self.capacity_extents.is_some_and(|cap| in_use >= cap) {
            return None;
        }
        a.reserved += 1;
        if let Some(e) = a.free.pop() {
            return Some(DiffExtent(e));
        }
        let e = u32::try_from(a.refs.len())
            .ok()
            .filter(|&e| e < u32::MAX - 1)?;
        a.refs.push(0);
        Some(DiffExtent(e))
    }

    /// The copy in `extent` is journaled and used by `users` snapshots.
    pub fn commit(&self, extent: DiffExtent, users: u32) {
        let mut a = self.lock();
        a.reserved -= 1;
        a.refs[extent.0 as usize] = users;
    }

    /// The copy into `extent` failed; it is free again.
    pub fn abandon(&self, extent: DiffExtent) {
        let mut a = self.lock();
        a.reserved -= 1;
        a.free.push(extent.0);
    }

    /// A snapshot using `extent` was deleted (its deletion is durable).
    pub fn release(&self, extent: DiffExtent) {
        let mut a = self.lock();
        let r = &mut a.refs[extent.0 as usize];
        *r -= 1;
        if *r == 0 {
            a.free.push(extent.0);
        }
    }

    /// Extents holding a chunk some snapshot uses.
    pub fn used_extents(&self) -> u64 {
        let a = self.lock();
        a.refs.len() as u64 - a.free.len() as u64 - a.reserved
    }

    pub fn capacity_bytes(&self) -> Option<u64> {
        self.capacity_extents.map(|e| e * self.chunk)
    }

    /// Writes a chunk's old content and makes it durable.
    pub fn store(&self, extent: DiffExtent, data: &[u8]) -> Result<(), InvalidReason> {
        let fail = |e: std::io::Error| {
            if e.raw_os_error() == Some(libc_enospc())
                || e.kind() == std::io::ErrorKind::StorageFull
            {
                InvalidReason::DiffAreaFull
            } else {
                InvalidReason::DiffAreaFailed(format!("{}: {e}", self.path.display()))
            }
        };
        self.file
            .write_all_at(data, u64::from(extent.0) * self.chunk)
            .map_err(fail)?;
        self.file.sync_data().map_err(fail)
    }

    /// Reads `buf.len()` bytes at `offset` within `extent`.
    pub fn load(
        &self,
        extent: DiffExtent,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<(), SnapshotError> {
        let at = u64::from(extent.0) * self.chunk + offset;
        // A chunk at the end of a volume that is not a whole number of
        // chunks was stored short; the rest of its extent reads as zeroes
        // but is never asked for.
        self.file
            .read_exact_at(buf, at)
            .map_err(SnapshotError::io("read differential area", &self.path))
    }
}

/// ENOSPC on Linux (asm-generic/errno-base.h).
const fn libc_enospc() -> i32 {
    28
}
