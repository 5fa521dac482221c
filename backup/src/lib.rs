//! Incremental backup of Reservoir volumes: the backup stream, the sender
//! that runs inside the appliance, the backup server with its repository,
//! restore of any point, verify and prune.
//!
//! ```text
//!   appliance                                   reservoir backup-server
//!   snapshot view ─▶ send_backup ──TCP, token──▶ BackupServer ─▶ Repository
//!   (ChangedChunks)   rayon reads, CRC32C        partial-<id> ─rename─▶ b<id>-g1
//!                                                       ▲
//!   restore ◀── N connections, Fetch(segment) ──────────┘
//! ```
//!
//! The wire format and the repository layout are in `FORMAT.md`.
//!
//! # Crash behaviour
//!
//! The server acknowledges a point of a stream only after the records
//! before it are fsynced and the point is recorded; a new run of the same
//! backup (same volume, snapshot, parent) continues from there. A backup
//! is listed and restorable only after its manifest is written and its
//! directory renamed into place; prune rewrites a kept backup under a new
//! generation before deleting what it replaced.

mod conn;
mod error;
mod files;
mod image;
mod ingest;
mod maintain;
mod progress;
mod repo;
mod restore;
mod sender;
mod server;
mod source;
mod stream;
mod types;
mod wire;

pub use conn::Client;
pub use error::{BackupError, BackupErrorKind};
pub use maintain::{BackupVerdict, PruneReport, VerifyReport};
pub use progress::Progress;
pub use repo::{BackupInfo, Repository, VolumeChain};
pub use restore::{restore, RestoreOptions, RestoreSummary, RestoreTarget};
pub use sender::{send_backup, BackupSource};
pub use server::{BackupServer, ServerHandle, ServerOptions};
pub use source::ChangedChunks;
pub use stream::{decode_stream, ChangeSource, StreamHeader, Totals};
pub use types::{BackupId, ChunkBytes, Token, VolumeIdentity};
pub use wire::VERSION as STREAM_VERSION;
