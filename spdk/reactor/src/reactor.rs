//! One reactor: a poll loop over its connections' sockets, its inbox and,
//! on reactor 0, the portals' listening sockets.

use std::io::{self, Read, Write};
use std::net::TcpListener as StdTcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use reservoir_iscsi::{Connection, Finished, PortalContext};

use crate::workers::{Job, Workers};

/// How often connection timers run (NOP-In pings, login and logout timeouts).
const TICK: Duration = Duration::from_millis(100);
/// How long a stopping reactor keeps trying to flush queued responses.
const STOP_FLUSH_LIMIT: Duration = Duration::from_secs(2);
/// Room offered to each socket read: many small PDUs, or a good part of a
/// large Data-Out, per call. It is per connection (the connection's own
/// receive buffer), so it stays modest.
const READ_SPACE: usize = 64 * 1024;
/// Bytes read from one connection before its responses are written and
/// other connections get their turn: a command window of 4 KiB writes
/// (32 × 4 KiB and headers) in one go, without starving the others.
const READ_BUDGET: usize = 256 * 1024;
/// Responses are held back for a PDU still arriving only when this much or
/// less of it is missing: microseconds of transfer, not a slow upload.
const HOLD_FOR: usize = 16 * 1024;
/// Longest responses are held for such a PDU: if its rest is late (a lost
/// segment waits for a retransmission), the other commands' responses
/// should not wait with it.
const HOLD_LIMIT: Duration = Duration::from_millis(1);

const WAKER: Token = Token(usize::MAX);
/// Listener tokens count down from just below the waker's.
const FIRST_LISTENER: usize = usize::MAX - 1;

pub(crate) enum Message {
    Adopt(TcpStream),
    /// A worker ran an offloaded I/O of the connection in `slot`, if that
    /// is still the connection numbered `generation`.
    Finished {
        slot: usize,
        generation: u64,
        finished: Finished,
    },
    Stop,
}

/// The sending side of a reactor's message ring.
#[derive(Debug, Clone)]
pub(crate) struct Inbox {
    sender: mpsc::Sender<Message>,
    waker: Arc<Waker>,
}

impl Inbox {
    pub(crate) fn new(sender: mpsc::Sender<Message>, waker: Arc<Waker>) -> Self {
        Self { sender, waker }
    }

    pub(crate) fn send(&self, message: Message) {
        // A reactor that has already exited drops its messages: nothing to do.
        if self.sender.send(message).is_ok() {
            let _ = self.waker.wake();
        }
    }
}

/// What the acceptor needs of each reactor: where to send a connection,
/// and how many it already has.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    pub(crate) inbox: Inbox,
    pub(crate) load: Arc<AtomicUsize>,
}

struct Peer {
    /// Tells this connection from a later one in the same slot, so that a
    /// completion for a connection that has ended is dropped.
    generation: u64,
    stream: TcpStream,
    connection: Connection,
    /// The socket may hold bytes we have not read (we stopped on backpressure).
    unread: bool,
    /// Registered for writable events because output is pending.
    writable: bool,
}

pub(crate) struct Reactor {
    index: usize,
    poll: Poll,
    waker: Arc<Waker>,
    inbox: mpsc::Receiver<Message>,
    load: Arc<AtomicUsize>,
    context: Arc<PortalContext>,
    listeners: Vec<TcpListener>,
    pool: Option<Arc<[Slot]>>,
    connections: Vec<Option<Peer>>,
    free_slots: Vec<usize>,
    next_generation: u64,
    /// Where offloaded I/O goes, and how its completion finds its way back.
    workers: Workers,
    /// Connections that received completions in this turn of the loop.
    completed: Vec<usize>,
    /// Connections holding responses back, and until when at most.
    holding: Vec<usize>,
    hold_until: Option<Instant>,
}

impl Reactor {
    pub(crate) fn new(
        index: usize,
        inbox: mpsc::Receiver<Message>,
        load: Arc<AtomicUsize>,
        context: Arc<PortalContext>,
        workers: Workers,
    ) -> io::Result<Self> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        Ok(Self {
            index,
            poll,
            waker,
            inbox,
            load,
            context,
            listeners: Vec::new(),
            pool: None,
            connections: Vec::new(),
            free_slots: Vec::new(),
            next_generation: 0,
            workers,
            completed: Vec::new(),
            holding: Vec::new(),
            hold_until: None,
        })
    }

    pub(crate) fn waker(&self) -> Arc<Waker> {
        self.waker.clone()
    }

    /// Makes this reactor the acceptor for `listeners`, handing each new
    /// connection to the least loaded reactor of `pool`.
    pub(crate) fn listen(
        &mut self,
        listeners: Vec<StdTcpListener>,
        pool: Arc<[Slot]>,
    ) -> io::Result<()> {
        for (i, listener) in listeners.into_iter().enumerate() {
            let mut listener = TcpListener::from_std(listener);
            self.poll.registry().register(
                &mut listener,
                Token(FIRST_LISTENER - i),
                Interest::READABLE,
            )?;
            self.listeners.push(listener);
        }
        self.pool = Some(pool);
        Ok(())
    }

    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut next_tick = Instant::now() + TICK;
        loop {
            let wake_at = self.hold_until.map_or(next_tick, |t| t.min(next_tick));
            let timeout = wake_at.saturating_duration_since(Instant::now());
            if let Err(error) = self.poll.poll(&mut events, Some(timeout)) {
                if error.kind() != io::ErrorKind::Interrupted {
                    tracing::error!(reactor = self.index, %error, "poll failed; reactor stops");
                    break;
                }
            }
            let mut stop = false;
            for event in events.iter() {
                match event.token() {
                    WAKER => stop |= self.drain_inbox(),
                    Token(t)
                        if t > FIRST_LISTENER - self.listeners.len() && t <= FIRST_LISTENER =>
                    {
                        self.accept(FIRST_LISTENER - t)
                    }
                    Token(slot) => {
                        self.service(slot, event.is_readable() || event.is_read_closed(), true)
                    }
                }
            }
            if stop {
                break;
            }
            let now = Instant::now();
            if self.hold_until.is_some_and(|t| now >= t) {
                self.hold_until = None;
                for slot in std::mem::take(&mut self.holding) {
                    self.service(slot, false, false);
                }
            }
            if now >= next_tick {
                next_tick = now + TICK;
                for slot in 0..self.connections.len() {
                    if let Some(peer) = self.connections[slot].as_mut() {
                        peer.connection.tick(now);
                        self.service(slot, false, true);
                    }
                }
            }
        }
        self.shut_down();
    }

    /// Returns true when the pool asked this reactor to stop.
    fn drain_inbox(&mut self) -> bool {
        let mut stop = false;
        while let Ok(message) = self.inbox.try_recv() {
            match message {
                Message::Adopt(stream) => self.adopt(stream),
                Message::Finished {
                    slot,
                    generation,
                    finished,
                } => self.complete(slot, generation, finished),
                Message::Stop => {
                    stop = true;
                    break;
                }
            }
        }
        self.service_completed();
        stop
    }

    /// Hands an I/O's result to its connection; the connection is serviced
    /// once for all the completions that arrived together.
    fn complete(&mut self, slot: usize, generation: u64, finished: Finished) {
        if let Some(peer) = self.connections.get_mut(slot).and_then(Option::as_mut) {
            if peer.generation == generation {
                peer.connection.complete(finished);
                self.completed.push(slot);
            }
        }
    }

    fn service_completed(&mut self) {
        self.completed.sort_unstable();
        self.completed.dedup();
        for i in 0..self.completed.len() {
            self.service(self.completed[i], false, true);
        }
        self.completed.clear();
    }

    fn accept(&mut self, listener: usize) {
        loop {
            match self.listeners[listener].accept() {
                Ok((stream, _)) => {
                    let pool = self.pool.as_ref().expect("acceptor has its pool");
                    let (target, slot) = pool
                        .iter()
                        .enumerate()
                        .min_by_key(|(_, slot)| slot.load.load(Ordering::Relaxed))
                        .expect("pool is never empty");
                    // Counted now, not on arrival, so a burst of accepts spreads out.
                    slot.load.fetch_add(1, Ordering::Relaxed);
                    if target == self.index {
                        self.adopt(stream);
                    } else {
                        slot.inbox.send(Message::Adopt(stream));
                    }
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => {
                    // Out of descriptors and the like: log and retry on the next event.
                    tracing::warn!(%error, "accept failed");
                    return;
                }
            }
        }
    }

    /// Takes ownership of a connection the acceptor has already counted in
    /// this reactor's load.
    fn adopt(&mut self, mut stream: TcpStream) {
        let (local, remote) = match (stream.local_addr(), stream.peer_addr()) {
            (Ok(local), Ok(remote)) => (local, remote),
            _ => {
                self.load.fetch_sub(1, Ordering::Relaxed);
                return;
            }
        };
        // Responses are batched by the reactor; Nagle would only add latency.
        let _ = stream.set_nodelay(true);
        let slot = self.free_slots.pop().unwrap_or_else(|| {
            self.connections.push(None);
            self.connections.len() - 1
        });
        if let Err(error) =
            self.poll
                .registry()
                .register(&mut stream, Token(slot), Interest::READABLE)
        {
            tracing::warn!(%error, %remote, "cannot watch new connection");
            self.free_slots.push(slot);
            self.load.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        tracing::debug!(reactor = self.index, %remote, "connection adopted");
        let connection = Connection::new(self.context.clone(), local, remote, Instant::now());
        self.next_generation += 1;
        self.connections[slot] = Some(Peer {
            generation: self.next_generation,
            stream,
            connection,
            unread: true,
            writable: false,
        });
        self.service(slot, true, true);
    }

    /// Reads what the socket has, feeds it to the connection, writes what the
    /// connection produced, and closes it when it is finished. `may_hold`:
    /// responses may wait (up to [`HOLD_LIMIT`]) for the rest of a PDU.
    fn service(&mut self, slot: usize, readable: bool, may_hold: bool) {
        let Some(peer) = self.connections.get_mut(slot).and_then(Option::as_mut) else {
            return;
        };
        let workers = &self.workers;
        peer.unread |= readable;
        let mut open = true;
        let held = loop {
            let mut progressed = false;
            // Everything the socket holds (up to READ_BUDGET) is handled
            // before the responses go out, so that they leave in as few
            // writes as possible: with 4 KiB writes a command window is
            // more than one READ_SPACE, and a write per read would double
            // the system calls per command.
            let mut budget = READ_BUDGET;
            let mut read_now = false;
            while budget > 0
                && peer.unread
                && peer.connection.wants_read()
                && !peer.connection.is_closed()
            {
                let space = peer.connection.receive_buffer(READ_SPACE);
                let offered = space.len();
                match peer.stream.read(space) {
                    Ok(0) => {
                        open = false;
                        peer.unread = false;
                    }
                    Ok(n) => {
                        peer.connection.received(n);
                        progressed = true;
                        read_now = true;
                        budget = budget.saturating_sub(n);
                        // A short read drained the socket: epoll (edge
                        // triggered) reports the next arrival, so asking
                        // again would only cost a syscall that says EAGAIN.
                        peer.unread = n == offered;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => peer.unread = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => progressed = true,
                    Err(_) => open = false,
                }
                // As soon as it is known, so the I/O starts while more
                // commands are read and the responses go out.
                submit_offloaded(peer, workers, slot);
                if !open {
                    break;
                }
            }
            submit_offloaded(peer, workers, slot);
            // The socket is drained in the middle of a PDU whose small rest
            // is on its way (an initiator that sends a 4 KiB write's header
            // and data segment separately): the responses wait for it and
            // leave with its own, one write instead of one per command.
            // The rest's arrival, or at worst HOLD_LIMIT, flushes them.
            if may_hold
                && open
                && read_now
                && !peer.unread
                && !peer.writable
                && peer.connection.wants_read()
                && (1..=HOLD_FOR).contains(&peer.connection.receiving_pdu())
            {
                break true;
            }
            match flush(peer) {
                Ok(wrote) => progressed |= wrote,
                Err(_) => open = false,
            }
            if !open || !progressed {
                break false;
            }
        };
        let finished = peer.connection.is_closed() && peer.connection.output_len() == 0;
        if !open || finished {
            self.close(slot);
            return;
        }
        if held {
            if !self.holding.contains(&slot) {
                self.holding.push(slot);
            }
            self.hold_until
                .get_or_insert_with(|| Instant::now() + HOLD_LIMIT);
        }
        let want_write = peer.connection.output_len() > 0 && !held;
        if want_write != peer.writable {
            peer.writable = want_write;
            let interest = if want_write {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            if self
                .poll
                .registry()
                .reregister(&mut peer.stream, Token(slot), interest)
                .is_err()
            {
                self.close(slot);
            }
        }
    }

    fn close(&mut self, slot: usize) {
        if let Some(mut peer) = self.connections[slot].take() {
            let _ = self.poll.registry().deregister(&mut peer.stream);
            self.free_slots.push(slot);
            self.load.fetch_sub(1, Ordering::Relaxed);
        }
    }

    /// Offloaded I/O of this reactor's connections not completed yet.
    fn in_flight(&self) -> usize {
        self.connections
            .iter()
            .flatten()
            .map(|peer| peer.connection.in_flight())
            .sum()
    }

    /// Stops accepting, gives queued responses a bounded time to drain, and
    /// closes every connection (commands waiting for data are failed by
    /// dropping them with their connection).
    fn shut_down(mut self) {
        self.listeners.clear();
        let deadline = Instant::now() + STOP_FLUSH_LIMIT;
        // I/O on workers ends on its own; its responses are worth sending.
        while self.in_flight() > 0 && Instant::now() < deadline {
            match self.inbox.recv_timeout(Duration::from_millis(5)) {
                Ok(Message::Finished {
                    slot,
                    generation,
                    finished,
                }) => self.complete(slot, generation, finished),
                Ok(Message::Adopt(_) | Message::Stop) => {}
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        self.completed.clear();
        for slot in 0..self.connections.len() {
            if let Some(peer) = self.connections[slot].as_mut() {
                let _ = peer.stream.set_nodelay(true);
                while peer.connection.output_len() > 0 && Instant::now() < deadline {
                    match flush(peer) {
                        Ok(true) => {}
                        Ok(false) => std::thread::sleep(Duration::from_millis(5)),
                        Err(_) => break,
                    }
                }
            }
            self.close(slot);
        }
    }
}

/// Hands the connection's offloaded I/O to the workers.
fn submit_offloaded(peer: &mut Peer, workers: &Workers, slot: usize) {
    while let Some(io) = peer.connection.next_offloaded() {
        workers.submit(Job {
            io,
            slot,
            generation: peer.generation,
        });
    }
}

/// Writes as much pending output as the socket takes, a `writev` at a
/// time. Ok(true) if anything was written.
fn flush(peer: &mut Peer) -> io::Result<bool> {
    let mut wrote = false;
    let stream = &mut peer.stream;
    while peer.connection.output_len() > 0 {
        match peer
            .connection
            .write_output(&mut |slices| stream.write_vectored(slices))
        {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => wrote = true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(wrote)
}
