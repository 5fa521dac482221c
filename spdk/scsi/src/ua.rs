//! Unit attentions (SAM-5) without a lock on the I/O path.
//!
//! LUN-wide events are appended to the LUN's [`EventLog`] and announced by
//! bumping an `AtomicU64` generation. Each [`NexusUa`] (owned by one
//! session, never shared) remembers the generation it has seen: a command
//! costs one atomic load; only when the generation moved does the nexus take
//! the log's lock to copy the events addressed to it into its own queue.
//!
//! ```text
//!   publisher ──lock──▶ log.push(event{gen+1}) ──store(gen+1)──▶ generation
//!   nexus: load(generation) == seen ? done : lock, pull events > seen
//! ```

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use reservoir_pr::Nexus as PrNexus;

use crate::nexus::NexusId;
use crate::sense::SenseReason;

/// How many events the log retains. A nexus that fell further behind gets
/// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED instead of the events it
/// missed: the unit attention that tells an initiator to re-read everything.
const LOG_CAPACITY: usize = 64;

/// Which I_T nexuses an event is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Audience {
    /// Every nexus.
    All,
    /// Every nexus but the one that caused the event (SPC-4, e.g. MODE
    /// PARAMETERS CHANGED goes to the *other* nexuses).
    AllExcept(NexusId),
    /// The nexuses a reservation change names (SPC-4 5.13.11): by their
    /// persistent-reservation identity, so a nexus that logged in again
    /// with the same ISID is still addressed; an identity without ISID
    /// addresses every ISID of that initiator name.
    Named(Vec<PrNexus>),
}

impl Audience {
    fn includes(&self, id: NexusId, identity: &PrNexus) -> bool {
        match self {
            Audience::All => true,
            Audience::AllExcept(except) => *except != id,
            Audience::Named(list) => list.iter().any(|n| names(n, identity)),
        }
    }
}

/// True when the (possibly ISID-less) identity `named` designates the
/// concrete nexus `nexus`.
pub(crate) fn names(named: &PrNexus, nexus: &PrNexus) -> bool {
    named.target_port == nexus.target_port
        && named
            .initiator
            .name
            .eq_ignore_ascii_case(&nexus.initiator.name)
        && named
            .initiator
            .isid
            .is_none_or(|isid| Some(isid) == nexus.initiator.isid)
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    generation: u64,
    reason: SenseReason,
    audience: Audience,
}

#[derive(Debug, Default)]
pub(crate) struct EventLog {
    generation: AtomicU64,
    events: Mutex<VecDeque<Event>>,
}

impl EventLog {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    pub(crate) fn publish(&self, reason: SenseReason, audience: Audience) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        events.push_back(Event {
            generation,
            reason,
            audience,
        });
        if events.len() > LOG_CAPACITY {
            events.pop_front();
        }
        // Published while the lock is held, so a reader that sees the new
        // generation and then locks finds the event.
        self.generation.store(generation, Ordering::Release);
    }
}

/// One nexus's unit attention queue for one LUN.
#[derive(Debug)]
pub(crate) struct NexusUa {
    seen: u64,
    pending: VecDeque<SenseReason>,
}

impl NexusUa {
    /// A new I_T nexus starts with POWER ON, RESET, OR BUS DEVICE RESET
    /// OCCURRED pending (SAM-5, power on).
    pub(crate) fn new(log: &EventLog) -> Self {
        NexusUa {
            seen: log.generation(),
            pending: VecDeque::from([SenseReason::PowerOnReset]),
        }
    }

    /// Pulls the events published since the last call.
    pub(crate) fn sync(&mut self, log: &EventLog, me: NexusId, identity: &PrNexus) {
        if log.generation() == self.seen {
            return;
        }
        let events = log.events.lock().unwrap_or_else(|e| e.into_inner());
        let oldest = events.front().map_or(u64::MAX, |e| e.generation);
        if oldest > self.seen + 1 {
            self.push(SenseReason::PowerOnReset);
        }
        let seen = self.seen;
        for e in events.iter().filter(|e| e.generation > seen) {
            if e.audience.includes(me, identity) {
                self.push(e.reason);
            }
        }
        self.seen = events.back().map_or(self.seen, |e| e.generation);
    }

    pub(crate) fn push(&mut self, reason: SenseReason) {
        if self.pending.contains(&reason) {
            return;
        }
        // Resets (29h) take precedence over the conditions they subsume
        // (SAM-5: report the highest-precedence condition first).
        if matches!(
            reason,
            SenseReason::PowerOnReset | SenseReason::BusDeviceReset
        ) {
            self.pending.push_front(reason);
        } else {
            self.pending.push_back(reason);
        }
    }

    pub(crate) fn pop(&mut self) -> Option<SenseReason> {
        self.pending.pop_front()
    }

    #[cfg(test)]
    pub(crate) fn pending(&self) -> Vec<SenseReason> {
        self.pending.iter().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reservoir_pr::{InitiatorPort, TargetPortId};

    fn who(isid: u8) -> PrNexus {
        PrNexus::new(InitiatorPort::new("iqn.x", [isid; 6]), TargetPortId(1))
    }

    #[test]
    fn events_reach_other_nexuses_only() {
        let log = EventLog::default();
        let mut a = NexusUa::new(&log);
        let mut b = NexusUa::new(&log);
        a.pop();
        b.pop();
        log.publish(
            SenseReason::ModeParametersChanged,
            Audience::AllExcept(NexusId(1)),
        );
        a.sync(&log, NexusId(1), &who(1));
        b.sync(&log, NexusId(2), &who(2));
        assert_eq!(a.pending(), vec![]);
        assert_eq!(b.pending(), vec![SenseReason::ModeParametersChanged]);
    }

    #[test]
    fn overflow_collapses_to_power_on_reset() {
        let log = EventLog::default();
        let mut a = NexusUa::new(&log);
        a.pop();
        for _ in 0..LOG_CAPACITY + 1 {
            log.publish(SenseReason::CapacityDataChanged, Audience::All);
        }
        a.sync(&log, NexusId(1), &who(1));
        assert_eq!(
            a.pending(),
            vec![SenseReason::PowerOnReset, SenseReason::CapacityDataChanged]
        );
        a.sync(&log, NexusId(1), &who(1));
        assert_eq!(a.pending().len(), 2);
    }

    #[test]
    fn named_events_reach_matching_identities() {
        let log = EventLog::default();
        let mut a = NexusUa::new(&log);
        let mut b = NexusUa::new(&log);
        let mut c = NexusUa::new(&log);
        for q in [&mut a, &mut b, &mut c] {
            q.pop();
        }
        let any_isid = PrNexus::new(InitiatorPort::any_isid("IQN.X"), TargetPortId(1));
        log.publish(
            SenseReason::RegistrationsPreempted,
            Audience::Named(vec![who(1)]),
        );
        log.publish(
            SenseReason::ReservationsReleased,
            Audience::Named(vec![any_isid]),
        );
        a.sync(&log, NexusId(1), &who(1));
        b.sync(&log, NexusId(2), &who(2));
        let other_port = PrNexus::new(InitiatorPort::new("iqn.x", [1; 6]), TargetPortId(2));
        c.sync(&log, NexusId(3), &other_port);
        assert_eq!(
            a.pending(),
            vec![
                SenseReason::RegistrationsPreempted,
                SenseReason::ReservationsReleased
            ]
        );
        assert_eq!(b.pending(), vec![SenseReason::ReservationsReleased]);
        assert_eq!(c.pending(), vec![]);
    }
}
