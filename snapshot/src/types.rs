//! Public value types: identifiers, options, and what the engine reports.

use std::fmt;
use std::time::SystemTime;

use crate::SnapshotError;

/// A snapshot's identity, unique for the life of a volume (never reused,
/// even after the snapshot is deleted) and increasing in creation order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SnapshotId(pub u64);

impl fmt::Display for SnapshotId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A snapshot name: 1 to 64 characters from `[A-Za-z0-9._-]`, not starting
/// with `.` or `-` (it appears in file names, LUN names and command lines).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SnapshotName(String);

impl SnapshotName {
    pub const MAX_LEN: usize = 64;

    pub fn new(name: &str) -> Result<Self, SnapshotError> {
        let bad = |why: &str| SnapshotError::InvalidArgument {
            what: "snapshot name",
            why: format!("{name:?} {why}"),
        };
        if name.is_empty() || name.len() > Self::MAX_LEN {
            return Err(bad("must be 1 to 64 characters long"));
        }
        if name.starts_with(['.', '-']) {
            return Err(bad("must not start with '.' or '-'"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad("may only contain letters, digits, '.', '_' and '-'"));
        }
        Ok(SnapshotName(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The copy-on-write unit in bytes: a power of two from 4 KiB to 16 MiB.
/// Smaller chunks copy less per first write but cost more map memory
/// (4 bytes per chunk per snapshot) and more journal records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ChunkSize(u32);

impl ChunkSize {
    pub const MIN: u32 = 4096;
    pub const MAX: u32 = 16 << 20;
    pub const DEFAULT: ChunkSize = ChunkSize(64 << 10);

    pub fn new(bytes: u32) -> Result<Self, SnapshotError> {
        if !bytes.is_power_of_two() || !(Self::MIN..=Self::MAX).contains(&bytes) {
            return Err(SnapshotError::InvalidArgument {
                what: "chunk size",
                why: format!("{bytes} bytes is not a power of two from 4 KiB to 16 MiB"),
            });
        }
        Ok(ChunkSize(bytes))
    }

    pub fn bytes(self) -> u32 {
        self.0
    }
}

impl Default for ChunkSize {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// How a volume's snapshot engine is set up. Chunk size applies when the
/// volume gets its first snapshot metadata; an existing volume keeps the
/// chunk size it was created with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotOptions {
    pub chunk_size: ChunkSize,
    /// Upper bound of the differential area in bytes; `None` lets it grow
    /// until its file system is full. Either way, running out invalidates
    /// the snapshots that needed the space, never the origin write.
    pub diff_area_capacity: Option<u64>,
    /// A block device (or preallocated file) to hold the differential area
    /// instead of `diff.area` in the snapshot directory; its size bounds
    /// the area. Its previous content is overwritten.
    pub diff_area_device: Option<std::path::PathBuf>,
}

/// Why a snapshot stopped being readable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InvalidReason {
    /// A chunk it needed could not be preserved: the differential area
    /// reached its capacity (or its file system is full).
    DiffAreaFull,
    /// Writing the differential area or the journal failed.
    DiffAreaFailed(String),
}

impl fmt::Display for InvalidReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidReason::DiffAreaFull => f.write_str(
                "the differential area ran out of space while the volume was being written",
            ),
            InvalidReason::DiffAreaFailed(e) => write!(f, "the differential area failed: {e}"),
        }
    }
}

/// One snapshot as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    pub name: SnapshotName,
    pub id: SnapshotId,
    pub created: SystemTime,
    pub chunk_size: ChunkSize,
    /// Size of the volume when the snapshot was taken.
    pub size_bytes: u64,
    /// Chunks preserved in the differential area for this snapshot
    /// (shared chunks count for each snapshot that uses them).
    pub copied_chunks: u64,
    /// `copied_chunks` in bytes.
    pub diff_bytes: u64,
    /// `None` while the snapshot is readable.
    pub invalid: Option<InvalidReason>,
}

/// Space of one volume's differential area.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiffAreaUsage {
    /// Bytes of preserved chunks referenced by at least one snapshot.
    pub used_bytes: u64,
    pub capacity_bytes: Option<u64>,
    pub chunk_size: ChunkSize,
    /// Snapshots invalidated because the area ran out or failed.
    pub invalid_snapshots: usize,
}

/// How a [`ChangedSet`] was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeMethod {
    /// From the change-tracking bitmaps: every chunk written in the interval
    /// (a chunk rewritten with identical bytes is included).
    Tracked,
    /// Tracking was not trustworthy for the interval (unclean stop), so both
    /// images were read and compared chunk by chunk (CRC32C): exactly the
    /// chunks whose content differs.
    FullCompare,
}

/// A run of changed bytes; chunk aligned except where the volume ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChangedExtent {
    pub offset: u64,
    pub len: u64,
}

/// The chunks that changed between two points of a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangedSet {
    /// Ascending, non-overlapping, non-adjacent.
    pub extents: Vec<ChangedExtent>,
    pub chunk_size: ChunkSize,
    pub total_bytes: u64,
    pub method: ChangeMethod,
}

/// Whether change tracking survived the last stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrackingState {
    /// Clean shutdown (or no snapshots): changed sets come from the bitmaps.
    Trusted,
    /// The bitmaps of the listed snapshots' intervals cannot be trusted;
    /// changed sets touching them are computed by full compare.
    Untrusted { reason: String },
}

/// What [`crate::SnapshotEngine::open`] found, for the appliance's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenReport {
    pub snapshots: usize,
    pub tracking: TrackingState,
    /// Bytes of an incomplete last journal record that were discarded (a
    /// crash during an operation that therefore never completed).
    pub discarded_journal_bytes: u64,
}
