//! SPC-4 persistent reservations (SPC-4 5.13, 6.15, 6.16) as a pure state
//! machine: one [`ReservationTable`] per logical unit.
//!
//! The SCSI layer
//! 1. asks [`ReservationTable::check`] before every command (the
//!    "reservation gate"), mapping the command onto an [`Access`] class;
//! 2. parses PERSISTENT RESERVE OUT with [`ProutCommand::parse`] and runs it
//!    with [`ReservationTable::execute_out`], then delivers the returned
//!    [`Effects`] (unit attentions, task aborts, APTPL persistence);
//! 3. parses PERSISTENT RESERVE IN with [`PrinCommand::parse`] and answers
//!    it with [`ReservationTable::execute_in`].
//!
//! No I/O happens here: persistence is [`ReservationTable::encode`] /
//! [`ReservationTable::decode`], written crash-atomically by the appliance.

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
