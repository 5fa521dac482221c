//! SPC-4 persistent reservations of one LUN: the [`ReservationTable`] of
//! reservoir-pr, published for a gate that takes no lock, and the
//! PERSISTENT RESERVE IN / OUT commands that read and change it.
//!
//! ```text
//!  gate (every command, any reactor):  registered? ──no──▶ allowed
//!                                          │yes
//!                                          ▼
//!                            table.load().check(nexus, access)   (no lock)
//!
//!  PR OUT:  writer lock ─▶ clone ─▶ execute_out ─▶ save (APTPL) ─▶ store
//!                                     │ error            │ error
//!                                     ▼                  ▼
//!                                 table untouched   table untouched
//! ```
//! The writer lock serialises reservation changes only; readers never wait
//! for it. A change becomes visible to the gate when the new table is
//! stored, after it was made durable when APTPL asks for that (SPC-4 5.13.5).

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock, RwLockReadGuard, Weak};

use arc_swap::ArcSwap;
use reservoir_pr::{
    Access, DecodeError, Effects, IllegalRequest, Nexus as PrNexus, PrError, PrinAction,
    PrinCommand, ProutCommand, ReservationTable, TargetPortId, UnitAttention, Verdict,
};

use crate::sense::{Completion, FieldPointer, SenseReason};
use crate::ua::{names, Audience, EventLog};

/// Where a LUN's reservation table is kept across restarts when an
/// initiator asks for APTPL (SPC-4 5.13.5). The SCSI layer calls
/// [`ReservationStore::save`] before a PERSISTENT RESERVE OUT that changed
/// persisted state completes, and [`ReservationStore::load`] when the LUN
/// is opened.
pub trait ReservationStore: Send + Sync + fmt::Debug {
    /// The last record saved, or `None` when there is none.
    fn load(&self) -> io::Result<Option<Vec<u8>>>;
    /// Replaces the record durably: after `Ok`, a crash at any moment
    /// leaves exactly this record or (before the call) the previous one.
    fn save(&self, record: &[u8]) -> io::Result<()>;
}

/// Why a LUN's saved reservation state could not be restored.
#[derive(Debug, thiserror::Error)]
pub enum ReservationLoadError {
    /// The store could not be read.
    #[error("cannot read the saved reservation state: {0}")]
    Read(#[source] io::Error),
    /// The record is damaged or from an unknown version.
    #[error("the saved reservation state is unusable: {0}")]
    Decode(#[source] DecodeError),
}

/// The registrations and reservation of one LUN, as the control plane
/// sees them.
pub type ReservationSnapshot = Arc<ReservationTable>;

/// Per-LUN persistent reservation state.
pub(crate) struct Persistent {
    table: ArcSwap<ReservationTable>,
    /// Mirrors `table.has_registrations()`: the gate's fast path while the
    /// LUN has no registration (SPC-4 5.13.1: without one nothing conflicts).
    registered: AtomicBool,
    /// Serialises PERSISTENT RESERVE OUT and administrative changes.
    writer: Mutex<()>,
    store: Option<Arc<dyn ReservationStore>>,
    /// Abort epochs of the nexuses that see this LUN, for PREEMPT AND
    /// ABORT; entries of ended nexuses are pruned when the list is walked.
    nexuses: Mutex<Vec<(PrNexus, Weak<AtomicU64>)>>,
    /// Held shared by each transfer that runs on a worker thread, from its
    /// abort check to its end. PREEMPT AND ABORT takes it exclusive once the
    /// victims' epochs have moved, so it completes only after every
    /// transfer that passed the check before the move has ended: no write
    /// of a preempted nexus lands after the preemption (SPC-4 5.13.11.5).
    transfers: RwLock<()>,
}

impl fmt::Debug for Persistent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Persistent")
            .field("table", &self.table.load())
            .field("store", &self.store)
            .finish_non_exhaustive()
    }
}

fn field_pointer(p: reservoir_pr::FieldPointer) -> FieldPointer {
    FieldPointer {
        byte: p.byte,
        bit: p.bit,
    }
}

/// A reservoir-pr error as this crate's completion.
fn pr_error(e: PrError) -> Completion {
    match e {
        PrError::Conflict => Completion::reservation_conflict(),
        PrError::IllegalRequest(r) => Completion::check(match r {
            IllegalRequest::InvalidFieldInCdb(p) => {
                SenseReason::InvalidFieldInCdb(field_pointer(p))
            }
            IllegalRequest::InvalidFieldInParameterList(p) => {
                SenseReason::InvalidFieldInParameterList(field_pointer(p))
            }
            IllegalRequest::ParameterListLengthError => SenseReason::ParameterListLengthError,
            IllegalRequest::InvalidReleaseOfPersistentReservation => {
                SenseReason::InvalidReleaseOfPersistentReservation
            }
            IllegalRequest::InsufficientRegistrationResources => {
                SenseReason::InsufficientRegistrationResources
            }
        }),
    }
}

/// Parses a PERSISTENT RESERVE IN CDB at the edge.
pub(crate) fn parse_in(cdb: &[u8]) -> Result<PrinCommand, SenseReason> {
    PrinCommand::parse(cdb).map_err(|e| match pr_error(e).sense {
        Some(sense) => sense.reason(),
        None => SenseReason::InvalidOpcode,
    })
}

fn ua_reason(ua: UnitAttention) -> SenseReason {
    match ua {
        UnitAttention::ReservationsPreempted => SenseReason::ReservationsPreempted,
        UnitAttention::ReservationsReleased => SenseReason::ReservationsReleased,
        UnitAttention::RegistrationsPreempted => SenseReason::RegistrationsPreempted,
    }
}

/// REPORT CAPABILITIES byte 2 bit 0: PTPL_C, persistence through power loss capable.
const PTPL_C: u8 = 0x01;

impl Persistent {
    /// Restores the table from `store`, or starts empty.
    pub(crate) fn open(
        store: Option<Arc<dyn ReservationStore>>,
    ) -> Result<Persistent, ReservationLoadError> {
        let table = match &store {
            Some(s) => match s.load().map_err(ReservationLoadError::Read)? {
                Some(record) => {
                    ReservationTable::decode(&record).map_err(ReservationLoadError::Decode)?
                }
                None => ReservationTable::new([]),
            },
            None => ReservationTable::new([]),
        };
        Ok(Persistent {
            registered: AtomicBool::new(table.has_registrations()),
            table: ArcSwap::from_pointee(table),
            writer: Mutex::new(()),
            store,
            nexuses: Mutex::new(Vec::new()),
            transfers: RwLock::new(()),
        })
    }

    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writer.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn publish(&self, table: ReservationTable) {
        let registered = table.has_registrations();
        self.table.store(Arc::new(table));
        self.registered.store(registered, Ordering::Release);
    }

    /// Adds a target port the LUN is reachable through (ALL_TG_PT and
    /// REGISTER AND MOVE name ports from this set).
    pub(crate) fn add_target_port(&self, port: u16) {
        let _w = self.write_lock();
        let mut next = ReservationTable::clone(&self.table.load());
        let ports = next
            .registrations()
            .iter()
            .map(|r| r.nexus.target_port)
            .chain([TargetPortId(port)])
            .collect::<Vec<_>>();
        // Ports of restored registrations stay known, or the table would
        // refuse them as unknown after a configuration change.
        next.set_target_ports(ports);
        self.publish(next);
    }

    /// Remembers a nexus's abort epoch for PREEMPT AND ABORT.
    pub(crate) fn attach(&self, identity: PrNexus, epoch: Weak<AtomicU64>) {
        let mut list = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|(_, e)| e.strong_count() > 0);
        list.push((identity, epoch));
    }

    /// The gate: may `nexus` run a command of class `access`?
    pub(crate) fn allows(&self, nexus: &PrNexus, access: Access) -> bool {
        if !self.registered.load(Ordering::Acquire) {
            return true;
        }
        self.table.load().check(nexus, access) == Verdict::Allowed
    }

    /// The current table.
    pub(crate) fn snapshot(&self) -> ReservationSnapshot {
        self.table.load_full()
    }

    /// PERSISTENT RESERVE IN (SPC-4 6.15): parameter data already truncated
    /// to the ALLOCATION LENGTH.
    pub(crate) fn execute_in(&self, cmd: &PrinCommand) -> Vec<u8> {
        let full = PrinCommand {
            allocation_length: u16::MAX,
            ..*cmd
        };
        let mut data = self.table.load().execute_in(&full);
        if cmd.action == PrinAction::ReportCapabilities && self.store.is_none() {
            // Without a store APTPL cannot be honoured: say so (SPC-4 6.15.4).
            if let Some(b) = data.get_mut(2) {
                *b &= !PTPL_C;
            }
        }
        data.truncate(usize::from(cmd.allocation_length));
        data
    }

    /// PERSISTENT RESERVE OUT (SPC-4 6.16) received on `nexus`.
    pub(crate) fn execute_out(
        &self,
        events: &EventLog,
        nexus: &PrNexus,
        cdb: &[u8],
        data: &[u8],
    ) -> Completion {
        let cmd = match ProutCommand::parse(cdb, data) {
            Ok(cmd) => cmd,
            Err(e) => return pr_error(e),
        };
        let _w = self.write_lock();
        let mut next = ReservationTable::clone(&self.table.load());
        let fx = match next.execute_out(nexus, &cmd) {
            Ok(fx) => fx,
            Err(e) => return pr_error(e),
        };
        if let Err(reason) = self.persist(&next, &fx, &cmd) {
            return Completion::check(reason);
        }
        self.publish(next);
        self.deliver(events, &fx);
        Completion::good()
    }

    /// Administrator recovery: every registration and the reservation go,
    /// APTPL is cleared, former registrants get RESERVATIONS PREEMPTED.
    pub(crate) fn clear_all(&self, events: &EventLog) -> io::Result<()> {
        let _w = self.write_lock();
        let mut next = ReservationTable::clone(&self.table.load());
        let fx = next.clear_all();
        if fx.persist {
            if let Some(store) = &self.store {
                store.save(&next.encode())?;
            }
        }
        self.publish(next);
        self.deliver(events, &fx);
        Ok(())
    }

    /// Makes `next` durable when the effects ask for it, before anything
    /// is visible (SPC-4 5.13.5); on failure the command fails and the
    /// table stays as it was.
    fn persist(
        &self,
        next: &ReservationTable,
        fx: &Effects,
        cmd: &ProutCommand,
    ) -> Result<(), SenseReason> {
        if !fx.persist {
            return Ok(());
        }
        match &self.store {
            Some(store) => store
                .save(&next.encode())
                .map_err(|_| SenseReason::InternalTargetFailure),
            // PTPL_C = 0 for this LUN: APTPL = 1 is an invalid field
            // (SPC-4 6.16.3).
            None => Err(SenseReason::InvalidFieldInParameterList(match cmd {
                ProutCommand::RegisterAndMove { .. } => FieldPointer::bit(17, 0),
                _ => FieldPointer::bit(20, 0),
            })),
        }
    }

    /// Unit attentions to the nexuses named, tasks aborted (SPC-4 5.13.11).
    fn deliver(&self, events: &EventLog, fx: &Effects) {
        let mut by_reason: BTreeMap<u8, (SenseReason, Vec<PrNexus>)> = BTreeMap::new();
        for (nexus, ua) in &fx.unit_attentions {
            let (_, ascq) = ua.asc_ascq();
            by_reason
                .entry(ascq)
                .or_insert_with(|| (ua_reason(*ua), Vec::new()))
                .1
                .push(nexus.clone());
        }
        for (reason, audience) in by_reason.into_values() {
            events.publish(reason, Audience::Named(audience));
        }
        if !fx.abort_tasks_of.is_empty() {
            self.abort_tasks(|identity| fx.abort_tasks_of.iter().any(|n| names(n, identity)));
        }
    }

    /// Aborts the tasks of every nexus `of` picks: their commands that have
    /// not reached the medium end with TASK ABORTED (TAS = 1), and this
    /// returns once the transfers already running have ended, so nothing
    /// of theirs lands afterwards.
    pub(crate) fn abort_tasks(&self, of: impl Fn(&PrNexus) -> bool) {
        let mut list = self.nexuses.lock().unwrap_or_else(|e| e.into_inner());
        list.retain(|(_, e)| e.strong_count() > 0);
        for (identity, epoch) in list.iter() {
            if of(identity) {
                if let Some(epoch) = epoch.upgrade() {
                    epoch.fetch_add(1, Ordering::AcqRel);
                }
            }
        }
        drop(list);
        drop(self.transfers.write().unwrap_or_else(|e| e.into_inner()));
    }

    /// Entered by a transfer running on a worker thread; see `transfers`.
    pub(crate) fn transfer(&self) -> RwLockReadGuard<'_, ()> {
        self.transfers.read().unwrap_or_else(|e| e.into_inner())
    }
}
