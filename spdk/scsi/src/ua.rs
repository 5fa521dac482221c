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

use crate::nexus::NexusId;
use crate::sense::SenseReason;

/// How many events the log retains. A nexus that fell further behind gets
/// POWER ON, RESET, OR BUS DEVICE RESET OCCURRED instead of the events it
/// missed: the unit attention that tells an initiator to re-read everything.
const LOG_CAPACITY: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Event {
    generation: u64,
    reason: SenseReason,
    /// The nexus that caused the event is not told about it (SPC-4,
    /// e.g. MODE PARAMETERS CHANGED goes to the *other* nexuses).
    except: Option<NexusId>,
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

    pub(crate) fn publish(&self, reason: SenseReason, except: Option<NexusId>) {
        let mut events = self.events.lock().unwrap_or_else(|e| e.into_inner());
        let generation = self.generation.load(Ordering::Relaxed) + 1;
        events.push_back(Event {
            generation,
            reason,
            except,
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
    pub(crate) fn sync(&mut self, log: &EventLog, me: NexusId) {
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
            if e.except != Some(me) {
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

    #[test]
    fn events_reach_other_nexuses_only() {
        let log = EventLog::default();
        let mut a = NexusUa::new(&log);
        let mut b = NexusUa::new(&log);
        a.pop();
        b.pop();
        log.publish(SenseReason::ModeParametersChanged, Some(NexusId(1)));
        a.sync(&log, NexusId(1));
        b.sync(&log, NexusId(2));
        assert_eq!(a.pending(), vec![]);
        assert_eq!(b.pending(), vec![SenseReason::ModeParametersChanged]);
    }

    #[test]
    fn overflow_collapses_to_power_on_reset() {
        let log = EventLog::default();
        let mut a = NexusUa::new(&log);
        a.pop();
        for _ in 0..LOG_CAPACITY + 1 {
            log.publish(SenseReason::CapacityDataChanged, None);
        }
        a.sync(&log, NexusId(1));
        assert_eq!(
            a.pending(),
            vec![SenseReason::PowerOnReset, SenseReason::CapacityDataChanged]
        );
        a.sync(&log, NexusId(1));
        assert_eq!(a.pending().len(), 2);
    }
}
