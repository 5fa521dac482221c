//! Copy-on-write snapshots of a volume, with a differential area and
//! changed-block tracking.
//!
//! The engine stacks on a volume's bdev the way SPDK stacks virtual bdevs:
//! the LUN is put on [`SnapshotEngine::origin`] instead of the base bdev,
//! and each snapshot is exported read-only through [`SnapshotEngine::view`].
//!
//! ```text
//!   LUN (read-write)              LUN(s) (read-only, passive nodes)
//!        │                               │
//!   ┌────▼─────────┐   maps, gate   ┌────▼─────────┐
//!   │ origin       │◀──────────────▶│ view @snap   │ map → diff area
//!   │ COW + CBT    │                │ else origin, │ then map again
//!   └────┬─────┬───┘                └──────────────┘
//!        │     └──── copy old chunk ─▶ diff.area (extents) + journal
//!   base bdev (malloc | file | device)
//! ```
//!
//! # Who owns a copied chunk
//!
//! Snapshots S1 < S2 < S3 (creation order). A chunk that has not been
//! written since S1 is still the origin's for all three. The first write to
//! it copies the old content once, into one extent, and every snapshot that
//! still read the origin's version gets a map entry to that extent; the
//! extent carries a reference count:
//!
//! ```text
//!   chunk 7:  S1 ─┐
//!             S2 ─┼──▶ extent 12 (refs 3)     write after S3 copied once
//!             S3 ─┘
//!   chunk 9:  S1 ────▶ extent 4  (refs 1)     written between S1 and S2
//!             S2 ─┐
//!             S3 ─┴──▶ extent 15 (refs 2)     written again after S3
//!   chunk 2:  S1, S2 ─▶ extent 8 (refs 2)     written between S2 and S3;
//!             S3 ───▶ origin                  S3 still reads the origin
//! ```
//!
//! The snapshots lacking a copy of a chunk are therefore always the newest
//! ones, so a writer looks only at the newest valid snapshot's map to know
//! whether a copy is needed. Deleting a snapshot drops its references; an
//! extent is reused when none is left, and never before the deletion is
//! durable in the journal.
//!
//! # Read protocol (no lock a writer takes)
//!
//! A map slot goes from "origin" to an extent once, with Release, after the
//! copy is durable and before the origin write. A reader loads the slot
//! (Acquire); if empty it reads the origin, then loads the slot again, and
//! reads the extent if a copy appeared meanwhile (the origin bytes it got
//! may be newer). It finally checks that the snapshot was not invalidated
//! or deleted meanwhile; both are published before the origin write or the
//! extent reuse they permit. If a read observed a writer's data, the
//! bdev's own synchronisation orders that write after the writer's
//! publication, so the second look sees it.
//!
//! # Consistent point
//!
//! Writes pass a sharded write gate (see `gate.rs`): uncontended, no shared
//! cache line between reactors. Creation drains in-flight writes, appends
//! the snapshot's journal record (fsync) and installs it; writes wait only
//! for that instant. Creation allocates a zeroed map and bitmap (lazily
//! mapped pages), so its cost does not grow with the volume.
//!
//! # Persistence (under the directory given to [`SnapshotEngine::open`])
//!
//! - `journal`: CRC32C'ed, versioned records (volume header, create, copy,
//!   delete, invalidate), each fdatasync'ed before what it describes is
//!   acknowledged; a chunk's copy is durable in `diff.area` and journaled
//!   before the origin write overwrites it. Compacted at every open.
//! - `diff.area`: chunk-sized extents; which are in use follows from the
//!   journal, so a crash mid-copy leaks nothing.
//! - `tracking`: change-tracking bitmaps, one per snapshot interval (chunks
//!   written after that snapshot and before the next). Written at
//!   [`SnapshotEngine::close`] marked clean; at open replaced by an unclean
//!   marker. After an unclean stop, intervals are untrusted and changed sets
//!   that touch them come from a parallel full compare, which the result
//!   says ([`ChangeMethod`]).
//!
//! # Running out of differential area
//!
//! When a chunk cannot be preserved (capacity reached, file system full or
//! failing), the snapshots that needed it are marked invalid (journaled),
//! reads of them fail, and the origin write proceeds.
//! [`SnapshotEngine::diff_area_usage`] and [`SnapshotEngine::list`] report it.

mod atomics;
mod changed;
mod diffarea;
mod engine;
mod error;
mod gate;
mod journal;
mod origin;
mod tracking;
mod types;
mod view;

pub use engine::SnapshotEngine;
pub use error::{SnapshotError, SnapshotErrorKind};
pub use types::{
    ChangeMethod, ChangedExtent, ChangedSet, ChunkSize, DiffAreaUsage, InvalidReason, OpenReport,
    SnapshotId, SnapshotInfo, SnapshotName, SnapshotOptions, TrackingState,
};
