//! The write gate: writes run concurrently, snapshot creation and deletion
//! briefly stop them.
//!
//! It is a reader-writer lock whose shared side is sharded: a writer bumps
//! the in-flight counter of its own shard (one cache line per shard, threads
//! spread over shards), then checks that no exclusive holder is closing the
//! gate. With many reactors writing and no snapshot being created, no two
//! reactors touch the same cache line and nobody waits — the common case
//! costs two uncontended atomic operations on a line the reactor already
//! owns. The exclusive side sets `closing`, waits for every shard to drain,
//! and holds the gate for the instant of its metadata change.
//!
//! The handshake is Dekker's: the writer does increment-then-load, the
//! closer store-then-load, all SeqCst, so at least one of them sees the
//! other; a writer that sees `closing` backs out and waits.

use std::cell::UnsafeCell;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

const SHARDS: usize = 16;

#[repr(align(128))]
#[derive(Default)]
struct Padded(AtomicUsize);

pub(crate) struct WriteGate<T> {
    shards: [Padded; SHARDS],
    closing: AtomicBool,
    exclusive: Mutex<()>,
    wake: Mutex<()>,
    cv: Condvar,
    value: UnsafeCell<T>,
}

// SAFETY: shared access to `value` (&T) is only handed out while the shard
// counter holds the exclusive side off, and &mut T only while every shard
// is drained and `closing` keeps new writers out: the gate is a RwLock.
unsafe impl<T: Send + Sync> Sync for WriteGate<T> {}
// SAFETY: the gate owns its T.
unsafe impl<T: Send> Send for WriteGate<T> {}

fn shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, SeqCst) % SHARDS;
    }
    SHARD.with(|s| *s)
}

impl<T> WriteGate<T> {
    pub fn new(value: T) -> Self {
        WriteGate {
            shards: Default::default(),
            closing: AtomicBool::new(false),
            exclusive: Mutex::new(()),
            wake: Mutex::new(()),
            cv: Condvar::new(),
            value: UnsafeCell::new(value),
        }
    }

    fn lock_wake(&self) -> MutexGuard<'_, ()> {
        self.wake.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Enters as one of many concurrent writers.
    pub fn shared(&self) -> Shared<'_, T> {
        let shard = shard();
        loop {
            self.shards[shard].0.fetch_add(1, SeqCst);
            if !self.closing.load(SeqCst) {
                return Shared { gate: self, shard };
            }
            self.leave(shard);
            let mut wake = self.lock_wake();
            while self.closing.load(SeqCst) {
                wake = self.cv.wait(wake).unwrap_or_else(PoisonError::into_inner);
            }
        }
    }

    fn leave(&self, shard: usize) {
        self.shards[shard].0.fetch_sub(1, SeqCst);
        if self.closing.load(SeqCst) {
            let _wake = self.lock_wake();
            self.cv.notify_all();
        }
    }

    /// Drains every writer in flight and keeps new ones waiting until the
    /// guard is dropped.
    pub fn exclusive(&self) -> Exclusive<'_, T> {
        let held = self
            .exclusive
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        self.closing.store(true, SeqCst);
        let mut wake = self.lock_wake();
        while self.shards.iter().any(|s| s.0.load(SeqCst) != 0) {
            // The timeout covers a writer that decremented between our
            // check and our wait without seeing us wait.
            wake = self
                .cv
                .wait_timeout(wake, Duration::from_millis(1))
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        drop(wake);
        Exclusive {
            gate: self,
            _held: held,
        }
    }
}

pub(crate) struct Shared<'a, T> {
    gate: &'a WriteGate<T>,
    shard: usize,
}

impl<T> Deref for Shared<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: see the Sync impl; this guard keeps exclusive holders out.
        unsafe { &*self.gate.value.get() }
    }
}

impl<T> Drop for Shared<'_, T> {
    fn drop(&mut self) {
        self.gate.leave(self.shard);
    }
}

pub(crate) struct Exclusive<'a, T> {
    gate: &'a WriteGate<T>,
    _held: MutexGuard<'a, ()>,
}

impl<T> Deref for Exclusive<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: no shared guard exists while this one does.
        unsafe { &*self.gate.value.get() }
    }
}

impl<T> DerefMut for Exclusive<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: no other guard of either kind exists while this one does.
        unsafe { &mut *self.gate.value.get() }
    }
}

impl<T> Drop for Exclusive<'_, T> {
    fn drop(&mut self) {
        self.gate.closing.store(false, SeqCst);
        let _wake = self.gate.lock_wake();
        self.gate.cv.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn exclusive_sees_every_shared_update_and_excludes_writers() {
        let gate = Arc::new(WriteGate::new((0u64, 0u64)));
        let inside = Arc::new(AtomicUsize::new(0));
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let (gate, inside) = (gate.clone(), inside.clone());
                std::thread::spawn(move || {
                    for _ in 0..2000 {
                        let g = gate.shared();
                        inside.fetch_add(1, SeqCst);
                        let _ = g.0;
                        inside.fetch_sub(1, SeqCst);
                    }
                })
            })
            .collect();
        for _ in 0..200 {
            let mut g = gate.exclusive();
            assert_eq!(inside.load(SeqCst), 0);
            g.0 += 1;
        }
        for t in threads {
            t.join().unwrap();
        }
        assert_eq!(gate.shared().0, 200);
    }
}
