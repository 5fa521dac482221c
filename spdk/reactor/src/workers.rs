//! Worker threads for block I/O that would stall a reactor.
//!
//! A file or device bdev blocks the calling thread for each transfer, so a
//! reactor running it inline has one I/O in flight at a time. Commands on
//! such LUNs leave the connection as [`Offloaded`] I/O; a worker runs it and
//! posts the result to the reactor that owns the connection, through that
//! reactor's inbox and waker, like any other message. RAM LUNs never come
//! here: they run inline on the reactor.
//!
//! One pool serves every LUN of the appliance. Workers take jobs from one
//! queue in arrival order, so the pool's size (the config's `io_workers`)
//! is the I/O depth the devices see in total; idle workers only cost their
//! stacks.

use std::sync::{mpsc, Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use reservoir_iscsi::Offloaded;

use crate::reactor::{Message, Slot};

/// One offloaded I/O and where its result goes.
pub(crate) struct Job {
    pub io: Offloaded,
    pub slot: usize,
    pub generation: u64,
}

/// A reactor's handle on the pool.
pub(crate) struct Workers {
    reactor: usize,
    queue: mpsc::Sender<(usize, Job)>,
}

impl Workers {
    pub(crate) fn submit(&self, job: Job) {
        // The pool outlives every reactor (it stops after them), so the
        // queue is open whenever a reactor submits.
        let _ = self.queue.send((self.reactor, job));
    }
}

/// The worker threads. They end once every [`Workers`] handle is dropped
/// and the queue is empty, so I/O accepted before a stop still completes.
pub(crate) struct WorkerPool {
    queue: Option<mpsc::Sender<(usize, Job)>>,
    receiver: Arc<Mutex<mpsc::Receiver<(usize, Job)>>>,
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
    pub(crate) fn new() -> Self {
        let (queue, receiver) = mpsc::channel();
        WorkerPool {
            queue: Some(queue),
            receiver: Arc::new(Mutex::new(receiver)),
            threads: Vec::new(),
        }
    }

    /// A handle for reactor `reactor`.
    pub(crate) fn handle(&self, reactor: usize) -> Workers {
        Workers {
            reactor,
            queue: self.queue.clone().expect("handles are made before start"),
        }
    }

    /// Starts the workers; results go to `slots[reactor]`'s inbox.
    pub(crate) fn start(&mut self, count: usize, slots: Arc<[Slot]>) -> std::io::Result<()> {
        // Only the reactors' handles keep the queue open from here on.
        self.queue = None;
        for i in 0..count {
            let receiver = Arc::clone(&self.receiver);
            let slots = Arc::clone(&slots);
            let thread = std::thread::Builder::new()
                .name(format!("bdev-worker-{i}"))
                .spawn(move || work(&receiver, &slots))?;
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

fn work(receiver: &Mutex<mpsc::Receiver<(usize, Job)>>, slots: &[Slot]) {
    loop {
        // The lock is held only while waiting for the next job: the I/O
        // itself runs unlocked, alongside the other workers'.
        let next = receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .recv();
        let Ok((reactor, job)) = next else { return };
        let finished = job.io.run();
        slots[reactor].inbox.send(Message::Finished {
            slot: job.slot,
            generation: job.generation,
            finished,
        });
    }
}
