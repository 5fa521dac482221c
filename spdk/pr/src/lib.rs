//! SPC-4 persistent reservations (SPC-4 5.13, 6.15, 6.16) as a pure state
//! machine: one [`ReservationTable`] per logical unit. No I/O, no threads,
//! no knowledge of iSCSI or of the SCSI crate.
//!
//! How the SCSI layer drives it:
//! 1. **Gate.** Before every command, [`ReservationTable::check`] with the
//!    command's [`Access`] class (see its variants for the mapping taken
//!    from the SPC-4/SBC-4 tables); [`Verdict::Conflict`] ends the command
//!    with RESERVATION CONFLICT. RESERVE/RELEASE(6/10) map to
//!    [`Access::LegacyReserveRelease`] (SPC-4 5.13.3, CRH = 0); the SCSI
//!    layer still arbitrates SPC-2 reservations among themselves and
//!    refuses PERSISTENT RESERVE OUT while another nexus holds one.
//! 2. **PERSISTENT RESERVE OUT.** [`ProutCommand::parse`] (CDB + parameter
//!    list), then [`ReservationTable::execute_out`] with the I_T nexus the
//!    command came through. On success, deliver [`Effects`]: establish the
//!    unit attentions, abort the listed nexuses' tasks (PREEMPT AND ABORT),
//!    and when `persist` is set write [`ReservationTable::encode`] durably
//!    *before* returning GOOD. On error nothing changed; [`PrError`] says
//!    which status and sense data to send.
//! 3. **PERSISTENT RESERVE IN.** [`PrinCommand::parse`], then
//!    [`ReservationTable::execute_in`] returns the data already truncated to
//!    the ALLOCATION LENGTH.
//! 4. **Start-up.** [`ReservationTable::decode`] of the last record written;
//!    a record whose APTPL was clear yields an empty table.
//!
//! Decisions where implementations differ, and what this crate does:
//! - PRgeneration counts every successful REGISTER / REGISTER AND IGNORE
//!   EXISTING KEY, including one that registers nothing (SA key zero from an
//!   unregistered nexus), as SPC-4 6.15.2 words it; LIO skips that case.
//! - A name-only TransportID (FORMAT CODE 00b) registers every ISID of the
//!   name: registration nexuses may have no ISID, and then cover each
//!   session of that initiator (see [`InitiatorPort`]).
//! - ALL_TG_PT registrations of one initiator port change key and go away
//!   together, whichever target port the REGISTER came through.

mod access;
mod error;
mod ids;
mod persist;
mod prin;
mod prout;
mod table;
mod transport_id;

pub use access::{Access, Verdict};
pub use error::{FieldPointer, IllegalRequest, PrError};
pub use ids::{
    Generation, InitiatorPort, Isid, Nexus, ReservationKey, ReservationType, TargetPortId,
};
pub use persist::DecodeError;
pub use prin::{PrinAction, PrinCommand};
pub use prout::{ProutCommand, RegisterParams};
pub use table::{
    Effects, Registration, ReservationTable, ReservationView, UnitAttention,
    DEFAULT_MAX_REGISTRATIONS,
};
pub use transport_id::{encode_transport_id, parse_transport_id};
