//! SCSI logical units in SPDK's model (SPC-4, SBC-4), transport-agnostic.
//!
//! A [`Device`] holds the [`Lun`]s behind one target. A transport turns each
//! command into [`Device::parse`] (bytes become a typed CDB, once) and
//! [`Device::execute`], which runs `unit attention check → reservation gate
//! → command` for the I_T [`Nexus`] the transport owns, and returns a
//! [`Completion`] with typed [`Sense`] data. [`Device::start`] does the
//! same but hands the block data transfer of a slow LUN back as a `Send`
//! [`BlockIo`], to be run on a worker thread.
//!
//! Persistent reservations (SPC-4 5.13) are decided by reservoir-pr's
//! table, one per [`Lun`]; [`ReservationStore`] keeps it across restarts.

mod block;
mod cdb;
mod device;
mod error;
mod inquiry;
mod io;
mod limits;
mod lun;
mod mode;
mod nexus;
mod opcodes;
mod persistent;
mod provisioning;
mod range_lock;
mod reservation;
mod sense;
mod ua;

pub use cdb::{Command, DataDirection, Transfer};
pub use device::{decode_lun, encode_lun, Device};
pub use error::TmfError;
pub use io::{BlockIo, LentRead, Started};
pub use lun::{Lun, LunIdentity, LunOptions};
pub use nexus::{InitiatorPort, Nexus, TargetPort};
pub use persistent::{ReservationLoadError, ReservationSnapshot, ReservationStore};
/// The buffer type of data-in (and, in the transport, data-out): page
/// aligned, so a file LUN reads and writes it with O_DIRECT as it is.
pub use reservoir_bdev::{AlignedBuf, Lent};
pub use sense::{Completion, FieldPointer, Sense, SenseKey, SenseReason, Status, FIXED_SENSE_LEN};
