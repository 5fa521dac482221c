//! Worker threads for block I/O that would stall a reactor.
//!
//! A file or device bdev blocks the calling thread for each transfer, so a
//! reactor running it inline has one I/O in flight at a time. Commands on
//! such LUNs leave the connection as [`Offloaded`] I/O; a worker runs it and
//! posts the result to the reactor that owns the connection, through that
//! reactor's inbox and waker, like any other message. RAM LUNs never come
//! here: they run inline on the reactor.
//!
//! One pool serves every LUN of the appliance. Jobs wait in one queue in
//! arrival order, so the pool's size (the config's `io_workers`) is the I/O
//! depth the devices see in total; idle workers only cost their stacks.
//! The job goes to the worker that went idle last: at a low queue depth
//! the same warm thread runs every I/O, instead of each I/O waking a
//! different, cold one (target CPU per QD1 4 KiB read on a file LUN went
//! from 108 to 93 µs). The hand-off still costs a QD1 read two thread
//! wake-ups, about 50 µs in all on the 2-core VM the bench runs on:
//! completions polled by the reactor itself (io_uring) would remove them.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;

use reservoir_iscsi::Offloaded;

use crate::reactor::{Message, Slot};

/// One offloaded I/O and where its result goes.
pub(crate) struct Job {
    pub io: Offloaded,
    pub slot: usize,
    pub generation: u64,
}

/// What the reactors and the workers share.
#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// One per worker, so that a job wakes exactly the worker chosen for it.
    wake: Vec<Condvar>,
}

#[derive(Default)]
struct State {
    /// Jobs no worker has taken yet, oldest first, with their reactor.
    jobs: VecDeque<(usize, Job)>,
    /// Idle workers, the one that went idle last at the end.
    idle: Vec<usize>,
    /// Reactor handles alive; with none left and no jobs, workers end.
    handles: usize,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A reactor's handle on the pool.
pub(crate) struct Workers {
    reactor: usize,
    shared: Arc<Shared>,
}

impl Workers {
    pub(crate) fn submit(&self, job: Job) {
        let mut state = self.shared.lock();
        state.jobs.push_back((self.reactor, job));
        if let Some(worker) = state.idle.pop() {
            self.shared.wake[worker].notify_one();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        state.handles -= 1;
        if state.handles == 0 {
            for worker in state.idle.drain(..) {
                self.shared.wake[worker].notify_one();
            }
        }
    }
}

/// The worker threads. They end once every [`Workers`] handle is dropped
/// and the queue is empty, so I/O accepted before a stop still completes.
pub(crate) struct WorkerPool {
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for WorkerPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WorkerPool")
            .field("threads", &self.threads.len())
            .finish()
    }
}

impl WorkerPool {
    /// A pool of `count` workers (at least one), started by [`WorkerPool::start`].
    pub(crate) fn new(count: usize) -> Self {
        WorkerPool {
            shared: Arc::new(Shared {
                state: Mutex::default(),
                wake: (0..count.max(1)).map(|_| Condvar::new()).collect(),
            }),
            threads: Vec::new(),
        }
    }

    /// A handle for reactor `reactor`.
    pub(crate) fn handle(&self, reactor: usize) -> Workers {
        self.shared.lock().handles += 1;
        Workers {
            reactor,
            shared: Arc::clone(&self.shared),
        }
    }

    /// Starts the workers; results go to `slots[reactor]`'s inbox.
    pub(crate) fn start(&mut self, slots: Arc<[Slot]>) -> std::io::Result<()> {
        for me in 0..self.shared.wake.len() {
            let shared = Arc::clone(&self.shared);
            let slots = Arc::clone(&slots);
            let thread = std::thread::Builder::new()
                .name(format!("bdev-worker-{me}"))
                .spawn(move || work(&shared, me, &slots))?;
            self.threads.push(thread);
        }
        Ok(())
    }

    /// Waits for the workers; call once the reactors have stopped.
    pub(crate) fn join(self) {
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a bdev worker thread panicked");
            }
        }
    }
}

fn work(shared: &Shared, me: usize, slots: &[Slot]) {
    let mut state = shared.lock();
    loop {
        if let Some((reactor, job)) = state.jobs.pop_front() {
            // The I/O runs unlocked, alongside the other workers'.
            drop(state);
            let finished = job.io.run();
            slots[reactor].inbox.send(Message::Finished {
                slot: job.slot,
                generation: job.generation,
                finished,
            });
            state = shared.lock();
            continue;
        }
        if state.handles == 0 {
            return;
        }
        state.idle.push(me);
        // Until a submit (or the last handle's drop) takes this worker off
        // the idle list; other wake-ups are spurious.
        while state.idle.contains(&me) {
            state = shared.wake[me]
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }
}
