//! The reservation table of one logical unit: registrations, the
//! persistent reservation, PRgeneration and APTPL (SPC-4 5.13).
//!
//! ```text
//!            REGISTER(sa≠0)            RESERVE
//!  (none) ──────────────▶ registered ─────────▶ holder
//!    ▲   ◀──────────────     │  ▲   ◀─────────   │
//!    │    REGISTER(sa=0)     │  │    RELEASE     │
//!    │    PREEMPT / CLEAR    │  │                │ PREEMPT by another,
//!    └───────────────────────┘  └────────────────┘ CLEAR, unregister
//! ```
//! Every PERSISTENT RESERVE OUT either fails leaving the table untouched,
//! or succeeds and reports its [`Effects`].

use crate::access::{decide, Access, Role, Verdict};
use crate::error::{param_field, FieldPointer, IllegalRequest, PrError};
use crate::ids::{Generation, Nexus, ReservationKey, ReservationType, TargetPortId};
use crate::prout::{scoped_type, ProutCommand, RegisterParams, LU_SCOPE};

/// Registrations one logical unit holds before REGISTER fails with
/// INSUFFICIENT REGISTRATION RESOURCES (SPC-4 6.16.3). A cluster uses one
/// per node and path; 1024 leaves room and bounds READ FULL STATUS.
pub const DEFAULT_MAX_REGISTRATIONS: usize = 1024;

/// Unit attention conditions a reservation change establishes (SPC-4 5.13).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnitAttention {
    /// 2Ah/03h RESERVATIONS PREEMPTED.
    ReservationsPreempted,
    /// 2Ah/04h RESERVATIONS RELEASED.
    ReservationsReleased,
    /// 2Ah/05h REGISTRATIONS PREEMPTED.
    RegistrationsPreempted,
}

impl UnitAttention {
    /// Additional sense code and qualifier.
    pub fn asc_ascq(self) -> (u8, u8) {
        match self {
            Self::ReservationsPreempted => (0x2a, 0x03),
            Self::ReservationsReleased => (0x2a, 0x04),
            Self::RegistrationsPreempted => (0x2a, 0x05),
        }
    }
}

/// What the SCSI layer must do after a successful PERSISTENT RESERVE OUT.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effects {
    /// Unit attentions to establish. A nexus whose ISID is `None` means
    /// every I_T nexus of that initiator name on that target port.
    pub unit_attentions: Vec<(Nexus, UnitAttention)>,
    /// PREEMPT AND ABORT (SPC-4 5.13.11.5): abort every task of these
    /// nexuses, except the PERSISTENT RESERVE OUT command itself.
    pub abort_tasks_of: Vec<Nexus>,
    /// Write [`ReservationTable::encode`] durably before returning GOOD:
    /// the table changed and APTPL is, or just was, set (SPC-4 5.13.5).
    pub persist: bool,
}

/// One registered I_T nexus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Registration {
    /// The registered I_T nexus (ISID `None`: every ISID of the name).
    pub nexus: Nexus,
    /// Its reservation key, never zero.
    pub key: ReservationKey,
    /// Made with ALL_TG_PT = 1: the registrations of this initiator port on
    /// every target port change and go together.
    pub all_tg_pt: bool,
}

/// The persistent reservation, as READ RESERVATION would describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationView {
    /// Its type.
    pub rtype: ReservationType,
    /// The holder; `None` for all-registrants types, where every
    /// registrant holds it.
    pub holder: Option<Nexus>,
    /// The holder's key; zero for all-registrants types (SPC-4 6.15.3).
    pub key: ReservationKey,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Held {
    pub(crate) rtype: ReservationType,
    /// The holder's registration nexus; `None` for all-registrants types.
    pub(crate) holder: Option<Nexus>,
}

/// Persistent reservation state of one logical unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReservationTable {
    pub(crate) target_ports: Vec<TargetPortId>,
    pub(crate) max_registrations: usize,
    pub(crate) generation: Generation,
    pub(crate) aptpl: bool,
    pub(crate) registrations: Vec<Registration>,
    pub(crate) reservation: Option<Held>,
}

impl ReservationTable {
    /// An empty table for a logical unit reachable through `target_ports`
    /// (the ports ALL_TG_PT registers on and REGISTER AND MOVE may name).
    pub fn new(target_ports: impl IntoIterator<Item = TargetPortId>) -> Self {
        let mut table = Self {
            target_ports: Vec::new(),
            max_registrations: DEFAULT_MAX_REGISTRATIONS,
            generation: Generation::default(),
            aptpl: false,
            registrations: Vec::new(),
            reservation: None,
        };
        table.set_target_ports(target_ports);
        table
    }

    /// Caps the number of registrations (INSUFFICIENT REGISTRATION RESOURCES beyond).
    pub fn with_max_registrations(mut self, max: usize) -> Self {
        self.max_registrations = max;
        self
    }

    /// Replaces the known target ports (configuration changed). Existing
    /// registrations stay.
    pub fn set_target_ports(&mut self, ports: impl IntoIterator<Item = TargetPortId>) {
        let mut ports: Vec<_> = ports.into_iter().collect();
        ports.sort_unstable();
        ports.dedup();
        self.target_ports = ports;
    }

    /// Current PRgeneration.
    pub fn generation(&self) -> Generation {
        self.generation
    }

    /// The last APTPL value received (SPC-4 5.13.5).
    pub fn aptpl(&self) -> bool {
        self.aptpl
    }

    /// Registrations in registration order.
    pub fn registrations(&self) -> &[Registration] {
        &self.registrations
    }

    /// The persistent reservation, if any.
    pub fn reservation(&self) -> Option<ReservationView> {
        let held = self.reservation.as_ref()?;
        let key = match &held.holder {
            Some(h) => self
                .registration_of(h)
                .map_or(ReservationKey::ZERO, |r| r.key),
            None => ReservationKey::ZERO,
        };
        Some(ReservationView {
            rtype: held.rtype,
            holder: held.holder.clone(),
            key,
        })
    }

    /// True while any I_T nexus is registered (and so, SPC-4 5.13.3, while
    /// RESERVE/RELEASE(6/10) conflict); a reservation implies a registration.
    pub fn has_registrations(&self) -> bool {
        !self.registrations.is_empty()
    }

    /// The reservation gate: may `nexus` run a command of class `access`?
    pub fn check(&self, nexus: &Nexus, access: Access) -> Verdict {
        let role = match self.find(nexus) {
            Some(i) if self.is_holder(i) => Role::Holder,
            Some(_) => Role::Registrant,
            None => Role::NotRegistered,
        };
        decide(
            self.reservation.as_ref().map(|h| h.rtype),
            role,
            self.has_registrations(),
            access,
        )
    }

    /// Administrator recovery: drop every registration and the
    /// reservation, and clear APTPL. Former registrants get RESERVATIONS
    /// PREEMPTED as after CLEAR (SPC-4 5.13.11.6 by analogy).
    pub fn clear_all(&mut self) -> Effects {
        let before = self.clone();
        let unit_attentions = self
            .registrations
            .drain(..)
            .map(|r| (r.nexus, UnitAttention::ReservationsPreempted))
            .collect();
        self.reservation = None;
        self.aptpl = false;
        if before.has_registrations() {
            self.generation.bump();
        }
        Effects {
            unit_attentions,
            abort_tasks_of: Vec::new(),
            persist: before.aptpl && before != *self,
        }
    }

    /// Runs a PERSISTENT RESERVE OUT received on `nexus`. On error the
    /// table is unchanged (SPC-4 6.16.3: SPEC_I_PT registers all or none).
    pub fn execute_out(&mut self, nexus: &Nexus, cmd: &ProutCommand) -> Result<Effects, PrError> {
        let before = self.clone();
        let mut fx = Effects::default();
        let result = match cmd {
            ProutCommand::Register(r) => self.register(nexus, r, &mut fx),
            ProutCommand::Reserve { key, rtype } => self.reserve(nexus, *key, *rtype),
            ProutCommand::Release {
                key,
                scope,
                type_code,
            } => self.release(nexus, *key, *scope, *type_code, &mut fx),
            ProutCommand::Clear { key } => self.clear(nexus, *key, &mut fx),
            ProutCommand::Preempt {
                key,
                sa_key,
                scope,
                type_code,
                abort,
            } => self.preempt(nexus, *key, *sa_key, (*scope, *type_code), *abort, &mut fx),
            ProutCommand::RegisterAndMove {
                key,
                sa_key,
                aptpl,
                unreg,
                target_port,
                destination,
            } => self.register_and_move(
                nexus,
                *key,
                *sa_key,
                *aptpl,
                *unreg,
                Nexus::new(destination.clone(), *target_port),
            ),
        };
        match result {
            Ok(()) => {
                fx.persist = (before.aptpl || self.aptpl) && before != *self;
                Ok(fx)
            }
            Err(e) => {
                *self = before;
                Err(e)
            }
        }
    }

    // ----- lookups -------------------------------------------------------

    /// Index of the registration covering `nexus`. Registrations never
    /// overlap, so there is at most one.
    pub(crate) fn find(&self, nexus: &Nexus) -> Option<usize> {
        self.registrations
            .iter()
            .position(|r| r.nexus.covers(nexus))
    }

    fn registration_of(&self, reg_nexus: &Nexus) -> Option<&Registration> {
        self.registrations.iter().find(|r| &r.nexus == reg_nexus)
    }

    /// SPC-4 5.13.10: every registrant holds an all-registrants reservation;
    /// otherwise only the nexus that reserved.
    pub(crate) fn is_holder(&self, idx: usize) -> bool {
        match &self.reservation {
            None => false,
            Some(Held { holder: None, .. }) => true,
            Some(Held {
                holder: Some(h), ..
            }) => &self.registrations[idx].nexus == h,
        }
    }

    /// The registrations changed together with `idx`: its ALL_TG_PT
    /// siblings (SPC-4 6.16.3 ALL_TG_PT), or itself.
    fn group(&self, idx: usize) -> Vec<usize> {
        let reg = &self.registrations[idx];
        if !reg.all_tg_pt {
            return vec![idx];
        }
        (0..self.registrations.len())
            .filter(|&i| {
                let r = &self.registrations[i];
                r.all_tg_pt && r.nexus.initiator == reg.nexus.initiator
            })
            .collect()
    }

    /// Registration I_T nexuses other than the one `nexus` uses.
    fn others(&self, nexus: &Nexus) -> Vec<Nexus> {
        self.registrations
            .iter()
            .filter(|r| !r.nexus.covers(nexus))
            .map(|r| r.nexus.clone())
            .collect()
    }

    /// Removes registrations by index; returns their nexuses. Ends a
    /// reservation that loses its holder (SPC-4 5.13.11.3) or, for
    /// all-registrants types, its last registrant (SPC-4 5.13.11.3).
    fn remove(&mut self, mut idx: Vec<usize>) -> Vec<Nexus> {
        idx.sort_unstable();
        idx.dedup();
        // Highest index first so earlier indices stay valid.
        let mut removed: Vec<Nexus> = idx
            .iter()
            .rev()
            .map(|&i| self.registrations.remove(i).nexus)
            .collect();
        removed.reverse();
        let ends = match &self.reservation {
            Some(Held {
                holder: Some(h), ..
            }) => removed.contains(h),
            Some(Held { holder: None, .. }) => self.registrations.is_empty(),
            None => false,
        };
        if ends {
            self.reservation = None;
        }
        removed
    }

    fn capacity(&self, added: usize) -> Result<(), PrError> {
        if self.registrations.len() + added > self.max_registrations {
            return Err(IllegalRequest::InsufficientRegistrationResources.into());
        }
        Ok(())
    }

    /// The requester's registration, checking RESERVATION KEY (SPC-4 6.16.3:
    /// an unregistered nexus or a different key is a RESERVATION CONFLICT).
    fn registered(&self, nexus: &Nexus, key: ReservationKey) -> Result<usize, PrError> {
        match self.find(nexus) {
            Some(i) if self.registrations[i].key == key => Ok(i),
            _ => Err(PrError::Conflict),
        }
    }

    // ----- service actions ----------------------------------------------

    /// REGISTER and REGISTER AND IGNORE EXISTING KEY (SPC-4 5.13.7, tables
    /// "Register behaviors for a REGISTER service action" and "... REGISTER
    /// AND IGNORE EXISTING KEY").
    fn register(
        &mut self,
        nexus: &Nexus,
        r: &RegisterParams,
        fx: &mut Effects,
    ) -> Result<(), PrError> {
        match self.find(nexus) {
            None => {
                // Unregistered nexus: RESERVATION KEY must be zero for REGISTER.
                if !r.ignore_existing && !r.key.is_zero() {
                    return Err(PrError::Conflict);
                }
                // SA key zero: "do nothing except return GOOD".
                if !r.sa_key.is_zero() {
                    self.register_new(nexus, r)?;
                    self.aptpl = r.aptpl;
                }
            }
            Some(idx) => {
                if !r.ignore_existing && self.registrations[idx].key != r.key {
                    return Err(PrError::Conflict);
                }
                // SPC-4 5.13.7: SPEC_I_PT through a registered nexus is refused.
                if r.spec_i_pt.is_some() {
                    return Err(param_field(FieldPointer::bit(20, 3)));
                }
                let group = self.group(idx);
                if r.sa_key.is_zero() {
                    self.unregister(group, fx);
                } else {
                    // Re-registering with a new key keeps any reservation.
                    for i in group {
                        self.registrations[i].key = r.sa_key;
                    }
                }
                self.aptpl = r.aptpl;
            }
        }
        // SPC-4 6.15.2: every successful REGISTER / REGISTER AND IGNORE
        // EXISTING KEY increments PRgeneration.
        self.generation.bump();
        Ok(())
    }

    /// Registers an unregistered nexus, its ALL_TG_PT siblings and the
    /// SPEC_I_PT initiator ports, all or none (SPC-4 6.16.3).
    fn register_new(&mut self, nexus: &Nexus, r: &RegisterParams) -> Result<(), PrError> {
        let ports: Vec<TargetPortId> = if r.all_tg_pt {
            let mut p = self.target_ports.clone();
            if !p.contains(&nexus.target_port) {
                p.push(nexus.target_port);
            }
            p
        } else {
            vec![nexus.target_port]
        };
        let tid_error = || param_field(FieldPointer::byte(28));
        let mut rekey = Vec::new();
        let mut new: Vec<Nexus> = Vec::new();
        for &port in &ports {
            let n = Nexus::new(nexus.initiator.clone(), port);
            match self.registrations.iter().position(|x| x.nexus.overlaps(&n)) {
                None => new.push(n),
                // ALL_TG_PT acts as if the request came through each port
                // (SPC-4 6.16.3): there, REGISTER's zero RESERVATION KEY
                // conflicts, REGISTER AND IGNORE EXISTING KEY replaces the key.
                Some(_) if !r.ignore_existing => return Err(PrError::Conflict),
                Some(i) => rekey.push(i),
            }
        }
        for initiator in r.spec_i_pt.iter().flatten() {
            if *initiator == nexus.initiator {
                // The requesting I_T nexus itself: registered anyway.
                continue;
            }
            for &port in &ports {
                let n = Nexus::new(initiator.clone(), port);
                if new.contains(&n) {
                    continue;
                }
                // SPC-4 5.13.7: a TransportID naming a registered I_T nexus,
                // or overlapping another one, is an invalid field.
                if self.registrations.iter().any(|x| x.nexus.overlaps(&n))
                    || new.iter().any(|x| x.overlaps(&n))
                {
                    return Err(tid_error());
                }
                new.push(n);
            }
        }
        self.capacity(new.len())?;
        for i in rekey {
            self.registrations[i].key = r.sa_key;
            self.registrations[i].all_tg_pt = true;
        }
        self.registrations
            .extend(new.into_iter().map(|nexus| Registration {
                nexus,
                key: r.sa_key,
                all_tg_pt: r.all_tg_pt,
            }));
        Ok(())
    }

    /// Unregisters (SPC-4 5.13.11.3): a holder's reservation of a
    /// non-all-registrants type is released; for WE-RO/EA-RO the remaining
    /// registrants get RESERVATIONS RELEASED. An all-registrants
    /// reservation lasts until its last registrant goes.
    fn unregister(&mut self, group: Vec<usize>, fx: &mut Effects) {
        let held = self.reservation.clone();
        self.remove(group);
        if let (Some(h), None) = (held, &self.reservation) {
            if h.rtype.registrants_have_access() && !h.rtype.is_all_registrants() {
                fx.unit_attentions.extend(
                    self.registrations
                        .iter()
                        .map(|r| (r.nexus.clone(), UnitAttention::ReservationsReleased)),
                );
            }
        }
    }

    /// RESERVE (SPC-4 5.13.9).
    fn reserve(
        &mut self,
        nexus: &Nexus,
        key: ReservationKey,
        rtype: ReservationType,
    ) -> Result<(), PrError> {
        let idx = self.registered(nexus, key)?;
        match &self.reservation {
            None => {
                let holder = if rtype.is_all_registrants() {
                    None
                } else {
                    Some(self.registrations[idx].nexus.clone())
                };
                self.reservation = Some(Held { rtype, holder });
                Ok(())
            }
            // The holder reserving again with the same scope and type: GOOD.
            Some(h) if h.rtype == rtype && self.is_holder(idx) => Ok(()),
            // Another type, or another nexus holds it.
            Some(_) => Err(PrError::Conflict),
        }
    }

    /// RELEASE (SPC-4 5.13.11.2).
    fn release(
        &mut self,
        nexus: &Nexus,
        key: ReservationKey,
        scope: u8,
        type_code: u8,
        fx: &mut Effects,
    ) -> Result<(), PrError> {
        let idx = self.registered(nexus, key)?;
        let Some(held) = self.reservation.clone() else {
            return Ok(()); // No reservation: GOOD, nothing to do.
        };
        if !self.is_holder(idx) {
            return Ok(()); // A non-holder's RELEASE is GOOD and does nothing.
        }
        if scope != LU_SCOPE || type_code != held.rtype.code() {
            return Err(IllegalRequest::InvalidReleaseOfPersistentReservation.into());
        }
        self.reservation = None;
        // SPC-4 5.13.11.2: releasing a RO or AR reservation tells every
        // other registrant.
        if held.rtype.registrants_have_access() {
            fx.unit_attentions.extend(
                self.others(nexus)
                    .into_iter()
                    .map(|n| (n, UnitAttention::ReservationsReleased)),
            );
        }
        Ok(())
    }

    /// CLEAR (SPC-4 5.13.11.6).
    fn clear(
        &mut self,
        nexus: &Nexus,
        key: ReservationKey,
        fx: &mut Effects,
    ) -> Result<(), PrError> {
        self.registered(nexus, key)?;
        fx.unit_attentions.extend(
            self.others(nexus)
                .into_iter()
                .map(|n| (n, UnitAttention::ReservationsPreempted)),
        );
        self.registrations.clear();
        self.reservation = None;
        self.generation.bump();
        Ok(())
    }

    /// PREEMPT and PREEMPT AND ABORT (SPC-4 5.13.11.4, 5.13.11.5).
    fn preempt(
        &mut self,
        nexus: &Nexus,
        key: ReservationKey,
        sa_key: ReservationKey,
        (scope, type_code): (u8, u8),
        abort: bool,
        fx: &mut Effects,
    ) -> Result<(), PrError> {
        let idx = self.registered(nexus, key)?;
        // SCOPE and TYPE matter only when a reservation is preempted.
        let rtype = || scoped_type(scope, type_code);
        let me = self.registrations[idx].nexus.clone();
        let held = self.reservation.clone();
        let holder_key = self.reservation().map(|v| v.key);
        let removed = match held {
            // All-registrants with SA key zero: preempt it, keeping only
            // the requester's registration (SPC-4 5.13.11.4.3).
            Some(h) if h.rtype.is_all_registrants() && sa_key.is_zero() => {
                self.preempt_reservation(&me, h.rtype, rtype()?, |_| true, fx)
            }
            // SA key naming the holder of a single-holder reservation.
            Some(h) if !h.rtype.is_all_registrants() && Some(sa_key) == holder_key => {
                self.preempt_reservation(&me, h.rtype, rtype()?, |r| r.key == sa_key, fx)
            }
            // Otherwise only registrations go (SPC-4 5.13.11.4.4).
            _ => {
                if sa_key.is_zero() {
                    return Err(param_field(FieldPointer::byte(8)));
                }
                let victims: Vec<usize> = (0..self.registrations.len())
                    .filter(|&i| self.registrations[i].key == sa_key)
                    .collect();
                if victims.is_empty() {
                    return Err(PrError::Conflict);
                }
                self.remove(victims)
            }
        };
        fx.unit_attentions.extend(
            removed
                .iter()
                .filter(|n| **n != me)
                .map(|n| (n.clone(), UnitAttention::RegistrationsPreempted)),
        );
        if abort {
            // SPC-4 5.13.11.5: tasks of every nexus the SA key identifies.
            fx.abort_tasks_of = removed;
            if key == sa_key && !fx.abort_tasks_of.contains(&me) {
                fx.abort_tasks_of.push(me);
            }
        }
        self.generation.bump();
        Ok(())
    }

    /// SPC-4 5.13.11.4.3 a)–f): release the held reservation, remove the
    /// matching registrations except the requester's, reserve for the
    /// requester, and tell survivors if scope or type changed.
    fn preempt_reservation(
        &mut self,
        me: &Nexus,
        old: ReservationType,
        new: ReservationType,
        matches: impl Fn(&Registration) -> bool,
        fx: &mut Effects,
    ) -> Vec<Nexus> {
        let victims: Vec<usize> = (0..self.registrations.len())
            .filter(|&i| self.registrations[i].nexus != *me && matches(&self.registrations[i]))
            .collect();
        let removed = self.remove(victims);
        self.reservation = Some(Held {
            rtype: new,
            holder: (!new.is_all_registrants()).then(|| me.clone()),
        });
        if old != new {
            fx.unit_attentions.extend(
                self.registrations
                    .iter()
                    .filter(|r| r.nexus != *me)
                    .map(|r| (r.nexus.clone(), UnitAttention::ReservationsReleased)),
            );
        }
        removed
    }

    /// REGISTER AND MOVE (SPC-4 5.13.8, table "Register behaviors for a
    /// REGISTER AND MOVE service action").
    fn register_and_move(
        &mut self,
        nexus: &Nexus,
        key: ReservationKey,
        sa_key: ReservationKey,
        aptpl: bool,
        unreg: bool,
        dest: Nexus,
    ) -> Result<(), PrError> {
        let idx = self.registered(nexus, key)?;
        // Only the holder of a reservation may move it; all-registrants
        // reservations cannot be moved (SPC-4 5.13.8: RESERVATION CONFLICT).
        let Some(held) = self.reservation.clone() else {
            return Err(PrError::Conflict);
        };
        if held.rtype.is_all_registrants() || !self.is_holder(idx) {
            return Err(PrError::Conflict);
        }
        if sa_key.is_zero() {
            return Err(param_field(FieldPointer::byte(8)));
        }
        if dest.target_port != nexus.target_port && !self.target_ports.contains(&dest.target_port) {
            return Err(param_field(FieldPointer::byte(18)));
        }
        let me = self.registrations[idx].nexus.clone();
        // SPC-4 5.13.8: a TransportID naming the requester's own initiator
        // port (through any target port) is an invalid field.
        if dest.initiator.overlaps(&me.initiator) || dest.initiator.overlaps(&nexus.initiator) {
            return Err(param_field(FieldPointer::byte(24)));
        }
        // c)–e): register the destination with the SA key; it may already be
        // registered, under any key.
        match self
            .registrations
            .iter()
            .position(|r| r.nexus.overlaps(&dest))
        {
            Some(i) if self.registrations[i].nexus == dest => self.registrations[i].key = sa_key,
            Some(_) => return Err(param_field(FieldPointer::byte(24))),
            None => {
                self.capacity(1)?;
                self.registrations.push(Registration {
                    nexus: dest.clone(),
                    key: sa_key,
                    all_tg_pt: false,
                });
            }
        }
        // f)–g): release, then reserve for the destination, same scope and type.
        self.reservation = Some(Held {
            rtype: held.rtype,
            holder: Some(dest),
        });
        // h) UNREG: unregister the requesting I_T nexus.
        if unreg {
            if let Some(i) = self.registrations.iter().position(|r| r.nexus == me) {
                self.registrations.remove(i);
            }
        }
        self.aptpl = aptpl;
        self.generation.bump();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::InitiatorPort;

    #[test]
    fn generation_wraps() {
        let mut t = ReservationTable::new([TargetPortId(1)]);
        t.generation = Generation(u32::MAX);
        let n = Nexus::new(InitiatorPort::new("iqn.a", [1; 6]), TargetPortId(1));
        let cmd = ProutCommand::Register(RegisterParams {
            key: ReservationKey(0),
            sa_key: ReservationKey(1),
            ignore_existing: false,
            all_tg_pt: false,
            aptpl: false,
            spec_i_pt: None,
        });
        t.execute_out(&n, &cmd).unwrap();
        assert_eq!(t.generation(), Generation(0));
    }
}
