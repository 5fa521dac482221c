//! `reservoir backup-server`: a thread per connection over std TCP.
//!
//! Per connection: HELLO (magic, version, token) → WELCOME, then any
//! number of requests. A backup request is followed by the client's
//! records and END; the server answers with ACKs after each checkpoint and
//! COMMITTED. Any error is answered with an ERROR reply and the connection
//! is closed, so a stream is never interpreted past the first fault.

use std::collections::HashMap;
use std::io::{BufReader, BufWriter, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::conn::IO_TIMEOUT;
use crate::image::{Image, Piece};
use crate::ingest::{Begin, Ingest};
use crate::repo::Repository;
use crate::stream::{frame_name, Totals, KIND_DATA, KIND_ZERO};
use crate::types::Token;
use crate::wire::{self, Frame, Reply, Request};
use crate::BackupError;

/// Connections served at once; more wait in the listen queue.
const MAX_CONNECTIONS: usize = 64;

/// How the server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerOptions {
    /// Payload bytes between checkpoints (fsync of data and index, then an
    /// ACK). A resume repeats at most this much; 64 MiB costs one fsync
    /// per 64 MiB written, little next to writing them.
    pub checkpoint_bytes: u64,
}

impl Default for ServerOptions {
    fn default() -> Self {
        ServerOptions {
            checkpoint_bytes: 64 << 20,
        }
    }
}

/// The backup server.
#[derive(Debug)]
pub struct BackupServer {
    repo: Repository,
    token: Token,
    options: ServerOptions,
    conns: Mutex<HashMap<u64, TcpStream>>,
    /// Which connection is receiving each partial backup.
    writers: Mutex<HashMap<crate::BackupId, u64>>,
    next_conn: AtomicU64,
    stopping: AtomicBool,
}

/// A server running on a background thread (tests, the appliance's own
/// loopback use).
#[derive(Debug)]
pub struct ServerHandle {
    server: Arc<BackupServer>,
    addr: SocketAddr,
    thread: Option<JoinHandle<()>>,
}

impl ServerHandle {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and cuts every connection at once, mid-stream or
    /// not: what a crash looks like to clients (data already acknowledged
    /// is durable; the rest is discarded on resume).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.server.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let conns = self
            .server
            .conns
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for c in conns.values() {
            let _ = c.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

impl BackupServer {
    /// Opens the repository (recovering what a crash left) for serving.
    pub fn new(
        repo: &Path,
        token: Token,
        options: ServerOptions,
    ) -> Result<Arc<BackupServer>, BackupError> {
        Ok(Arc::new(BackupServer {
            repo: Repository::open(repo)?,
            token,
            options,
            conns: Mutex::new(HashMap::new()),
            writers: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
        }))
    }

    /// Serves `listener` until the process ends.
    pub fn serve(
        listener: TcpListener,
        repo: &Path,
        token: Token,
        options: ServerOptions,
    ) -> Result<(), BackupError> {
        BackupServer::new(repo, token, options)?.run(listener);
        Ok(())
    }

    /// Serves `listener` on a background thread.
    pub fn spawn(
        listener: TcpListener,
        repo: &Path,
        token: Token,
        options: ServerOptions,
    ) -> Result<ServerHandle, BackupError> {
        let addr = listener
            .local_addr()
            .map_err(BackupError::io("listener address", repo))?;
        let server = BackupServer::new(repo, token, options)?;
        let s = server.clone();
        let thread = thread::Builder::new()
            .name("backup-server".into())
            .spawn(move || s.run(listener))
            .map_err(BackupError::io("spawn server thread", repo))?;
        Ok(ServerHandle {
            server,
            addr,
            thread: Some(thread),
        })
    }

    fn run(self: Arc<Self>, listener: TcpListener) {
        for stream in listener.incoming() {
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let Ok(stream) = stream else { continue };
            let live = self
                .conns
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .len();
            if live >= MAX_CONNECTIONS {
                let mut w = BufWriter::new(&stream);
                let _ = refuse(&mut w, &BackupError::Busy(crate::BackupId(0)));
                continue;
            }
            let id = self.next_conn.fetch_add(1, Ordering::Relaxed);
            if let Ok(c) = stream.try_clone() {
                self.conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(id, c);
            }
            let s = self.clone();
            let spawned = thread::Builder::new()
                .name("backup-conn".into())
                .spawn(move || {
                    s.connection(id, stream);
                    s.conns
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .remove(&id);
                });
            if spawned.is_err() {
                self.conns
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(&id);
            }
        }
    }

    fn connection(&self, conn: u64, stream: TcpStream) {
        let setup = |s: &TcpStream| {
            s.set_nodelay(true)?;
            s.set_read_timeout(Some(IO_TIMEOUT))?;
            s.set_write_timeout(Some(IO_TIMEOUT))?;
            s.try_clone()
        };
        let Ok(read_half) = setup(&stream) else {
            return;
        };
        let mut r = BufReader::with_capacity(1 << 20, read_half);
        let mut w = BufWriter::with_capacity(1 << 20, stream);
        if let Err(e) = self.session(conn, &mut r, &mut w) {
            let _ = refuse(&mut w, &e);
        }
    }

    fn session(
        &self,
        conn: u64,
        r: &mut BufReader<TcpStream>,
        w: &mut BufWriter<TcpStream>,
    ) -> Result<(), BackupError> {
        match next(r)? {
            Some(Frame::Hello { version, token }) => {
                if version != wire::VERSION {
                    return Err(BackupError::Unsupported {
                        what: "client protocol".into(),
                        found: u32::from(version),
                        supported: u32::from(wire::VERSION),
                    });
                }
                if !self.token.matches(&token) {
                    return Err(BackupError::Auth);
                }
            }
            Some(other) => {
                return Err(BackupError::protocol(format!(
                    "a connection starts with HELLO, not {}",
                    frame_name(&other)
                )))
            }
            None => return Ok(()),
        }
        send(w, &Reply::Welcome)?;
        let mut image: Option<Image> = None;
        while let Some(frame) = next(r)? {
            let request = match frame {
                Frame::Request(req) => req,
                other => {
                    return Err(BackupError::protocol(format!(
                        "expected a request, got {}",
                        frame_name(&other)
                    )))
                }
            };
            match request {
                Request::Backup { header } => match self.begin(header)? {
                    Begin::AlreadyComplete(info) => send(w, &Reply::AlreadyComplete { info })?,
                    Begin::Receive(ingest) => {
                        let id = ingest.id();
                        self.writers
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .insert(id, conn);
                        let result = receive(*ingest, r, w);
                        self.writers
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .remove(&id);
                        result?
                    }
                },
                Request::Describe { backup } => {
                    let info = self.repo.describe(backup)?;
                    send(w, &Reply::Described { info })?;
                }
                Request::Fetch {
                    backup,
                    offset,
                    len,
                } => {
                    if image.as_ref().is_none_or(|i| i.id != backup) {
                        image = Some(Image::open(&self.repo, backup)?);
                    }
                    let image = image.as_ref().expect("set just above");
                    fetch(image, offset, len, w)?;
                }
                Request::List => {
                    let volumes = self.repo.list()?;
                    send(w, &Reply::Listing { volumes })?;
                }
                Request::Verify { backup } => {
                    let report = self.repo.verify(backup)?;
                    send(w, &Reply::Verified { report })?;
                }
                Request::Prune { keep } => {
                    let report = self.repo.prune(keep)?;
                    send(w, &Reply::Pruned { report })?;
                }
            }
        }
        Ok(())
    }
}

impl BackupServer {
    /// A sender that resumes a backup another connection still holds is
    /// the same sender after a network fault. The old connection usually
    /// has seen the end of its stream and is still storing what it had
    /// received: it gets a grace period to finish (and checkpoint) that.
    /// One that stays silent past it is half-open (it could wait for its
    /// timeout): the new connection takes over and the old one is cut.
    fn begin(&self, header: crate::StreamHeader) -> Result<Begin, BackupError> {
        const GRACE: Duration = Duration::from_secs(2);
        const TAKEOVER: Duration = Duration::from_secs(10);
        let start = Instant::now();
        loop {
            match self
                .repo
                .begin(header.clone(), self.options.checkpoint_bytes)
            {
                Err(BackupError::Busy(_)) if start.elapsed() < GRACE => {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(BackupError::Busy(id)) if start.elapsed() < TAKEOVER => {
                    let holder = self
                        .writers
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .get(&id)
                        .copied();
                    if let Some(holder) = holder {
                        let conns = self.conns.lock().unwrap_or_else(PoisonError::into_inner);
                        if let Some(c) = conns.get(&holder) {
                            let _ = c.shutdown(Shutdown::Both);
                        }
                    }
                    thread::sleep(Duration::from_millis(20));
                }
                r => return r,
            }
        }
    }
}

fn next(r: &mut impl std::io::Read) -> Result<Option<Frame>, BackupError> {
    wire::read_frame(r)
        .map_err(BackupError::disconnected("receive"))?
        .transpose()
}

fn send(w: &mut BufWriter<TcpStream>, reply: &Reply) -> Result<(), BackupError> {
    wire::write_reply(w, reply)
        .and_then(|()| w.flush())
        .map_err(BackupError::disconnected("reply"))
}

/// Tells the client why its connection ends: the message with its causes.
fn refuse(w: &mut impl Write, e: &BackupError) -> std::io::Result<()> {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    wire::write_reply(
        w,
        &Reply::Error {
            kind: e.kind(),
            message,
        },
    )?;
    w.flush()
}

fn receive(
    mut ingest: Ingest,
    r: &mut BufReader<TcpStream>,
    w: &mut BufWriter<TcpStream>,
) -> Result<(), BackupError> {
    send(
        w,
        &Reply::Accept {
            backup: ingest.id(),
            resume: ingest.resume_point(),
        },
    )?;
    loop {
        let ack =
            match next(r)? {
                Some(Frame::Data {
                    offset,
                    crc,
                    payload,
                }) => ingest.data(offset, crc, &payload)?,
                Some(Frame::Zero { offset, len }) => ingest.zero(offset, len)?,
                Some(Frame::End(totals)) => {
                    let info = ingest.commit(totals)?;
                    return send(w, &Reply::Committed { info });
                }
                Some(other) => {
                    return Err(BackupError::protocol(format!(
                        "{} inside a backup stream",
                        frame_name(&other)
                    )))
                }
                None => return Err(BackupError::protocol(
                    "stream ends without END (truncated); the partial backup is kept for resume",
                )),
            };
        if let Some(point) = ack {
            wire::write_ack(w, point.next_offset, point.totals.records)
                .and_then(|()| w.flush())
                .map_err(BackupError::disconnected("acknowledge"))?;
        }
    }
}

fn fetch(
    image: &Image,
    offset: u64,
    len: u64,
    w: &mut BufWriter<TcpStream>,
) -> Result<(), BackupError> {
    let c = image.chunk.u64();
    let end = offset.saturating_add(len).min(image.volume_size);
    if !offset.is_multiple_of(c) || offset >= end {
        return Err(BackupError::InvalidArgument {
            what: "fetch range",
            why: format!(
                "{offset}+{len} is not a chunk-aligned range inside the {}-byte volume",
                image.volume_size
            ),
        });
    }
    let mut totals = Totals::default();
    let mut buf = Vec::new();
    let out = |e| BackupError::disconnected("send chunks")(e);
    image.pieces(offset..end, &mut buf, |piece| match piece {
        Piece::Data {
            offset,
            crc,
            payload,
        } => {
            totals.add(KIND_DATA, offset, payload.len() as u64, crc);
            wire::write_data(w, offset, crc, payload).map_err(out)
        }
        Piece::Zero { offset, len } => {
            totals.add(KIND_ZERO, offset, len, 0);
            wire::write_zero(w, offset, len).map_err(out)
        }
    })?;
    wire::write_end(w, &totals)
        .and_then(|()| w.flush())
        .map_err(out)
}
