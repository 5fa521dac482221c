//! Starting, observing and stopping the set of reactors.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use reservoir_iscsi::PortalContext;

use crate::affinity;
use crate::reactor::{Inbox, Message, Reactor, Slot};
use crate::workers::WorkerPool;
use crate::ReactorError;

/// What one reactor is doing, for `reservoir` status commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReactorStats {
    pub core: usize,
    pub connections: usize,
}

/// The running reactors. Dropping it without [`ReactorPool::stop`] detaches
/// the threads; `stop` is the orderly way out.
#[derive(Debug)]
pub struct ReactorPool {
    slots: Arc<[Slot]>,
    cores: Vec<usize>,
    threads: Vec<JoinHandle<()>>,
    workers: WorkerPool,
}

impl ReactorPool {
    /// Binds every portal, then starts one reactor per core (`None`: every
    /// core this process may use) and `io_workers` threads for the block
    /// I/O the reactors offload. Binding first means a busy port is
    /// reported before any thread starts.
    pub fn start(
        cores: Option<&[usize]>,
        io_workers: usize,
        portals: &[SocketAddr],
        context: Arc<PortalContext>,
    ) -> Result<Self, ReactorError> {
        let cores = match cores {
            Some(cores) => cores.to_vec(),
            None => affinity::available_cores(),
        };
        if cores.is_empty() {
            return Err(ReactorError::NoCores);
        }
        let listeners = portals
            .iter()
            .map(|&addr| {
                let listener = TcpListener::bind(addr)
                    .map_err(|source| ReactorError::Listen { addr, source })?;
                listener
                    .set_nonblocking(true)
                    .map_err(|source| ReactorError::Listen { addr, source })?;
                Ok(listener)
            })
            .collect::<Result<Vec<_>, ReactorError>>()?;

        let mut workers = WorkerPool::new(io_workers);
        let mut reactors = Vec::with_capacity(cores.len());
        let mut slots = Vec::with_capacity(cores.len());
        for (index, &core) in cores.iter().enumerate() {
            let (sender, receiver) = mpsc::channel();
            let load = Arc::new(AtomicUsize::new(0));
            let reactor = Reactor::new(
                index,
                receiver,
                load.clone(),
                context.clone(),
                workers.handle(index),
            )
            .map_err(|source| ReactorError::Spawn {
                index,
                core,
                source,
            })?;
            slots.push(Slot {
                inbox: Inbox::new(sender, reactor.waker()),
                load,
            });
            reactors.push(reactor);
        }
        // Reactor 0 accepts; every reactor can hand a new connection to any other.
        let slots: Arc<[Slot]> = slots.into();
        workers
            .start(slots.clone())
            .map_err(|source| ReactorError::Workers { source })?;
        let mut threads = Vec::with_capacity(cores.len());
        let mut listeners = Some(listeners);
        for (index, (mut reactor, &core)) in reactors.into_iter().zip(&cores).enumerate() {
            if let Some(listeners) = listeners.take() {
                reactor
                    .listen(listeners, slots.clone())
                    .map_err(|source| ReactorError::Spawn {
                        index,
                        core,
                        source,
                    })?;
            }
            let thread = std::thread::Builder::new()
                .name(format!("reactor-{index}"))
                .spawn(move || {
                    if !affinity::pin_to_core(core) {
                        tracing::warn!(core, "reactor {index} runs unpinned: core not available");
                    }
                    reactor.run();
                })
                .map_err(|source| ReactorError::Spawn {
                    index,
                    core,
                    source,
                })?;
            threads.push(thread);
        }
        Ok(Self {
            slots,
            cores,
            threads,
            workers,
        })
    }

    pub fn stats(&self) -> Vec<ReactorStats> {
        self.cores
            .iter()
            .zip(self.slots.iter())
            .map(|(&core, slot)| ReactorStats {
                core,
                connections: slot.load.load(Ordering::Relaxed),
            })
            .collect()
    }

    /// Stops accepting, lets every reactor flush what it has queued for its
    /// connections and close them, and waits for all reactor threads, then
    /// for the bdev workers to finish the I/O they were given.
    pub fn stop(self) {
        for slot in self.slots.iter() {
            slot.inbox.send(Message::Stop);
        }
        for thread in self.threads {
            if thread.join().is_err() {
                tracing::error!("a reactor thread panicked while stopping");
            }
        }
        self.workers.join();
    }
}
