//! The node agent at run time: [`NodeCore`] on the real clock, heartbeats
//! over UDP, one thread per LUN for its iSCSI session, and a control socket
//! for `reservoir node status` and `reservoir node move`.
//!
//! ```text
//!   UDP socket ──Message──┐
//!   LUN threads ──Reply───┼──► one channel ──► core thread ──► NodeCore::apply
//!   control socket ──Rpc──┘        ▲ tick            │ effects: commands to LUN
//!                                  └─────────────────┘ threads, heartbeats, flag
//! ```
//!
//! Every decision is the core's; this module only moves bytes and keeps
//! what the LUNs last answered for the status.
//!
//! The control socket is a Unix socket at `state_dir/agent.sock` speaking
//! one JSON request per line and one JSON answer per line
//! ([`Request`], [`Response`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::UdpSocket;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use reservoir_initiator::ConnectOptions;
use serde::{Deserialize, Serialize};

use crate::config::{
    load_last_surviving, next_generation, store_last_surviving, LunRef, NodeConfig,
};
use crate::core::{CoreConfig, CoreEffect, CoreInput, CoreStatus, Lun, NodeCore};
use crate::disk::{DiskOp, DiskReply, DiskResult, SharedDisk};
use crate::error::Error;
use crate::io::{node_isid, IscsiDisk};
use crate::keys::{ClusterKey, ClusterSignature, Generation, KeyRole, NodeId};
use crate::membership::Heartbeat;
use crate::ownership::challenge_wait;
use crate::time::Millis;
use crate::wire::{Opener, Rejected, Sealer};

/// What travels between agents over UDP, one datagram each (`wire`).
#[derive(Clone, Debug, Serialize, Deserialize)]
enum Message {
    Heartbeat(Heartbeat),
    /// The owner of `volume` asks the receiver to take it over.
    TakeOver {
        volume: String,
    },
    /// Someone asked for `volume` to move to `to`; its owner acts.
    Move {
        volume: String,
        to: NodeId,
    },
}

/// A control-socket request.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Request {
    Status,
    Move { volume: String, to: NodeId },
}

/// A control-socket answer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Response {
    Status(Box<Status>),
    /// The move was passed to the volume's owner.
    MoveRequested,
    Error(String),
}

/// A registration as this node last read it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyView {
    /// The raw key, in hex.
    pub key: String,
    /// `None` for a key that is not this cluster's.
    pub node: Option<NodeId>,
    pub role: Option<KeyRole>,
    pub generation: Option<Generation>,
}

/// One LUN as this node last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LunView {
    pub name: String,
    pub url: String,
    /// Registrations from the last READ KEYS.
    pub keys: Vec<KeyView>,
    /// The reservation holder from the last READ RESERVATION.
    pub holder: Option<KeyView>,
    /// The last command failed on the transport.
    pub unavailable: bool,
}

/// `reservoir node status`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub cluster: String,
    pub core: CoreStatus,
    pub replicas: Vec<LunView>,
    pub volumes: Vec<LunView>,
}

impl Status {
    /// The node holding volume `name`'s reservation, as this node saw it.
    pub fn volume_owner(&self, name: &str) -> Option<NodeId> {
        self.volumes
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.holder.as_ref())
            .and_then(|h| h.node)
    }
}

enum Event {
    Message(Message),
    Reply { lun: Lun, result: DiskResult },
    Rpc(Request, Sender<Response>),
}

/// A running agent. Dropping it stops its threads without releasing
/// anything, as a crash would: its registrations stay on the LUNs until
/// the other nodes remove them.
#[derive(Debug)]
pub struct Node {
    stop: Arc<AtomicBool>,
    events: Sender<Event>,
    threads: Vec<JoinHandle<()>>,
    core: Option<JoinHandle<Result<(), Error>>>,
}

/// Runs the agent of `config_path` until it fails.
pub fn run(config_path: &Path) -> Result<(), Error> {
    let config = NodeConfig::load(config_path)?;
    let mut node = Node::start(config)?;
    node.wait()
}

/// Asks the agent of `config_path` for its status.
pub fn status(config_path: &Path) -> Result<Status, Error> {
    let config = NodeConfig::load(config_path)?;
    match request(&config.socket_path(), &Request::Status)? {
        Response::Status(status) => Ok(*status),
        other => Err(Error::Agent(format!("unexpected answer {other:?}"))),
    }
}

/// Moves `volume` to node `to` and waits until the agent of `config_path`
/// sees `to` holding its reservation.
pub fn move_volume(config_path: &Path, volume: &str, to: NodeId) -> Result<(), Error> {
    let config = NodeConfig::load(config_path)?;
    let socket = config.socket_path();
    let ask = Request::Move {
        volume: volume.to_owned(),
        to,
    };
    match request(&socket, &ask)? {
        Response::MoveRequested => {}
        Response::Error(e) => return Err(Error::Agent(e)),
        other => return Err(Error::Agent(format!("unexpected answer {other:?}"))),
    }
    // The owner releases once `to` challenges; `to` polls four times an
    // interval; this node reads the holder every interval.
    let deadline = Instant::now() + Duration::from_millis(2 * challenge_wait(config.defense_ms));
    while Instant::now() < deadline {
        if let Response::Status(s) = request(&socket, &Request::Status)? {
            if s.volume_owner(volume) == Some(to) {
                return Ok(());
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    Err(Error::Agent(format!(
        "{volume} did not move to {to} in time; see `reservoir node status`"
    )))
}

/// One request on the control socket at `socket`.
pub fn request(socket: &Path, request: &Request) -> Result<Response, Error> {
    let io = |what: &str| {
        let what = format!("{what} the node agent at {}", socket.display());
        move |source| Error::Io { what, source }
    };
    let mut stream = UnixStream::connect(socket).map_err(io("connect to"))?;
    let mut line = serde_json::to_string(request).expect("requests serialize");
    line.push('\n');
    stream.write_all(line.as_bytes()).map_err(io("write to"))?;
    let mut answer = String::new();
    BufReader::new(stream)
        .read_line(&mut answer)
        .map_err(io("read from"))?;
    serde_json::from_str(&answer).map_err(|e| Error::Agent(format!("unreadable answer: {e}")))
}

impl Node {
    /// Starts a new life of the node: bumps its generation, binds its
    /// heartbeat port and control socket, and starts the threads.
    pub fn start(config: NodeConfig) -> Result<Node, Error> {
        let secret = config.load_secret()?;
        let generation = next_generation(&config.state_dir)?;
        let last_surviving = load_last_surviving(&config.state_dir)?;
        let io = |what: String| move |source| Error::Io { what, source };
        let udp = UdpSocket::bind(config.address())
            .map_err(io(format!("bind heartbeat port {}", config.address())))?;
        udp.set_read_timeout(Some(Duration::from_millis(100)))
            .map_err(io("set a socket timeout".into()))?;
        let socket_path = config.socket_path();
        let _ = std::fs::remove_file(&socket_path);
        let listener = UnixListener::bind(&socket_path)
            .map_err(io(format!("bind {}", socket_path.display())))?;
        listener
            .set_nonblocking(true)
            .map_err(io("set the control socket non-blocking".into()))?;

        let stop = Arc::new(AtomicBool::new(false));
        let (events, inbox) = mpsc::channel();
        let mut threads = Vec::new();

        let luns: Vec<(Lun, &LunRef)> = config
            .quorum
            .iter()
            .enumerate()
            .map(|(i, l)| (Lun::Replica(i), l))
            .chain(
                config
                    .volumes
                    .iter()
                    .enumerate()
                    .map(|(i, l)| (Lun::Volume(i), l)),
            )
            .collect();
        let mut disks = BTreeMap::new();
        for (lun, lun_ref) in &luns {
            let mut options = ConnectOptions::new(config.initiator_name.clone());
            options.isid = Some(node_isid(config.me, lun_ref.lun));
            options.timeout = Duration::from_millis(config.defense_ms.max(1000));
            let (tx, rx) = mpsc::channel::<DiskOp>();
            let disk = IscsiDisk::new(lun_ref.url(), options);
            let events = events.clone();
            let lun = *lun;
            threads.push(thread::spawn(move || lun_thread(lun, disk, rx, events)));
            disks.insert(lun, tx);
        }

        {
            let (udp, events, stop) = (
                udp.try_clone().map_err(io("clone the UDP socket".into()))?,
                events.clone(),
                stop.clone(),
            );
            let opener = Opener::new(
                &config.cluster,
                config.peers().map(|p| p.id),
                secret.clone(),
            );
            threads.push(thread::spawn(move || {
                receive_thread(udp, opener, events, stop)
            }));
        }
        {
            let (events, stop) = (events.clone(), stop.clone());
            threads.push(thread::spawn(move || {
                control_thread(listener, events, stop)
            }));
        }

        let core = NodeCore::new(CoreConfig {
            signature: config.signature(),
            me: config.me,
            generation,
            peers: config.peers().map(|p| p.id).collect(),
            replicas: config.quorum.len(),
            volumes: config.volumes.len(),
            defense_ms: config.defense_ms,
            last_surviving,
        });
        let runtime = Runtime {
            lun_views: luns
                .iter()
                .map(|(lun, lun_ref)| {
                    (
                        *lun,
                        LunView {
                            name: lun_ref.name.clone(),
                            url: lun_ref.url(),
                            ..LunView::default()
                        },
                    )
                })
                .collect(),
            sealer: Sealer::new(&config.cluster, config.me, generation, secret),
            config,
            core,
            udp,
            disks,
            started: Instant::now(),
            stop: stop.clone(),
        };
        let core = thread::spawn(move || runtime.run(inbox));
        Ok(Node {
            stop,
            events,
            threads,
            core: Some(core),
        })
    }

    /// The current status, from the core thread.
    pub fn status(&self) -> Result<Status, Error> {
        let (tx, rx) = mpsc::channel();
        self.events
            .send(Event::Rpc(Request::Status, tx))
            .map_err(|_| Error::Agent("the agent has stopped".into()))?;
        match rx.recv() {
            Ok(Response::Status(s)) => Ok(*s),
            _ => Err(Error::Agent("the agent has stopped".into())),
        }
    }

    /// Blocks until the core thread ends (only on a failure to persist
    /// state) and returns its error.
    pub fn wait(&mut self) -> Result<(), Error> {
        match self.core.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(Error::Agent("the core thread panicked".into())),
            None => Ok(()),
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // The LUN threads end when the core thread drops their channels; a
        // thread blocked in an iSCSI command finishes it first.
        if let Some(core) = self.core.take() {
            let _ = core.join();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn lun_thread(lun: Lun, mut disk: IscsiDisk, ops: Receiver<DiskOp>, events: Sender<Event>) {
    for op in ops {
        let result = disk.execute(&op);
        if events.send(Event::Reply { lun, result }).is_err() {
            return;
        }
    }
}

fn receive_thread(
    udp: UdpSocket,
    mut opener: Opener,
    events: Sender<Event>,
    stop: Arc<AtomicBool>,
) {
    let mut buf = [0u8; 2048];
    let mut warned = false;
    while !stop.load(Ordering::SeqCst) {
        let Ok((n, from)) = udp.recv_from(&mut buf) else {
            continue;
        };
        match opener.open::<Message>(&buf[..n]) {
            Ok((_, message)) => {
                if events.send(Event::Message(message)).is_err() {
                    return;
                }
            }
            // Stale datagrams are ordinary reordering; anything else is
            // worth one line, not one per datagram.
            Err(Rejected::Stale) => {}
            Err(why) if !warned => {
                warned = true;
                eprintln!("reservoir node: dropping a datagram from {from}: {why} (further ones dropped silently)");
            }
            Err(_) => {}
        }
    }
}

fn control_thread(listener: UnixListener, events: Sender<Event>, stop: Arc<AtomicBool>) {
    while !stop.load(Ordering::SeqCst) {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        let _ = stream.set_nonblocking(false);
        let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
        let mut reader = BufReader::new(&stream);
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() {
            continue;
        }
        let answer = match serde_json::from_str::<Request>(&line) {
            Ok(request) => {
                let (tx, rx) = mpsc::channel();
                if events.send(Event::Rpc(request, tx)).is_err() {
                    return;
                }
                rx.recv_timeout(Duration::from_secs(5))
                    .unwrap_or_else(|_| Response::Error("the agent did not answer".into()))
            }
            Err(e) => Response::Error(format!("bad request: {e}")),
        };
        let mut out = serde_json::to_string(&answer).expect("answers serialize");
        out.push('\n');
        let _ = (&stream).write_all(out.as_bytes());
    }
}

/// The core thread's state.
struct Runtime {
    config: NodeConfig,
    core: NodeCore,
    udp: UdpSocket,
    sealer: Sealer,
    disks: BTreeMap<Lun, Sender<DiskOp>>,
    lun_views: BTreeMap<Lun, LunView>,
    started: Instant,
    stop: Arc<AtomicBool>,
}

/// How often the core is ticked when nothing else happens.
const TICK: Duration = Duration::from_millis(20);

impl Runtime {
    fn now(&self) -> Millis {
        Millis(self.started.elapsed().as_millis() as u64)
    }

    fn run(mut self, inbox: Receiver<Event>) -> Result<(), Error> {
        let mut pending: BTreeMap<Lun, DiskOp> = BTreeMap::new();
        while !self.stop.load(Ordering::SeqCst) {
            let input = match inbox.recv_timeout(TICK) {
                Ok(Event::Message(Message::Heartbeat(hb))) => CoreInput::Heartbeat(hb),
                Ok(Event::Message(Message::TakeOver { volume })) => match self.volume(&volume) {
                    Some(volume) => CoreInput::TakeOver { volume },
                    None => continue,
                },
                Ok(Event::Message(Message::Move { volume, to })) => match self.volume(&volume) {
                    // Only the owner acts on a forwarded move: anyone else
                    // forwarding it again would loop.
                    Some(volume) if self.core.owns(volume) => CoreInput::Move { volume, to },
                    _ => continue,
                },
                Ok(Event::Reply { lun, result }) => {
                    if let Some(op) = pending.remove(&lun) {
                        self.observe(lun, &op, &result);
                    }
                    CoreInput::Reply { lun, result }
                }
                Ok(Event::Rpc(request, answer)) => {
                    let (input, response) = self.rpc(request);
                    let _ = answer.send(response);
                    match input {
                        Some(input) => input,
                        None => continue,
                    }
                }
                Err(RecvTimeoutError::Timeout) => CoreInput::Tick,
                Err(RecvTimeoutError::Disconnected) => return Ok(()),
            };
            let now = self.now();
            for effect in self.core.apply(now, input) {
                self.effect(effect, &mut pending)?;
            }
        }
        Ok(())
    }

    fn volume(&self, name: &str) -> Option<usize> {
        self.config.volumes.iter().position(|v| v.name == name)
    }

    fn rpc(&self, request: Request) -> (Option<CoreInput>, Response) {
        match request {
            Request::Status => (None, Response::Status(Box::new(self.status()))),
            Request::Move { volume, to } => {
                let Some(index) = self.volume(&volume) else {
                    return (
                        None,
                        Response::Error(format!("no shared volume `{volume}`")),
                    );
                };
                if !self.config.nodes.iter().any(|n| n.id == to) {
                    return (None, Response::Error(format!("{to} is not configured")));
                }
                (
                    Some(CoreInput::Move { volume: index, to }),
                    Response::MoveRequested,
                )
            }
        }
    }

    fn status(&self) -> Status {
        let views = |f: fn(&Lun) -> bool| {
            self.lun_views
                .iter()
                .filter(|(l, _)| f(l))
                .map(|(_, v)| v.clone())
                .collect()
        };
        Status {
            cluster: self.config.cluster.clone(),
            core: self.core.status(),
            replicas: views(|l| matches!(l, Lun::Replica(_))),
            volumes: views(|l| matches!(l, Lun::Volume(_))),
        }
    }

    /// Keeps what a LUN answered for the status.
    fn observe(&mut self, lun: Lun, op: &DiskOp, result: &DiskResult) {
        let signature = self.config.signature();
        let Some(view) = self.lun_views.get_mut(&lun) else {
            return;
        };
        view.unavailable = result == &Err(crate::disk::DiskFault::Unavailable);
        match (op, result) {
            (DiskOp::ReadKeys, Ok(DiskReply::Keys(keys))) => {
                view.keys = keys.iter().map(|&k| key_view(k, signature)).collect();
            }
            (DiskOp::ReadReservation, Ok(DiskReply::Reservation(holder))) => {
                view.holder = holder.map(|k| key_view(k, signature));
            }
            _ => {}
        }
    }

    fn effect(
        &mut self,
        effect: CoreEffect,
        pending: &mut BTreeMap<Lun, DiskOp>,
    ) -> Result<(), Error> {
        match effect {
            CoreEffect::Issue { lun, op } => {
                pending.insert(lun, op.clone());
                if let Some(tx) = self.disks.get(&lun) {
                    let _ = tx.send(op);
                }
            }
            CoreEffect::Heartbeat(hb) => self.broadcast(Message::Heartbeat(hb)),
            CoreEffect::AskToTakeOver { volume, node } => {
                let volume = self.config.volumes[volume].name.clone();
                let peer = self.config.nodes.iter().find(|n| n.id == node);
                if let Some(address) = peer.map(|p| p.address) {
                    self.send(address, &Message::TakeOver { volume });
                }
            }
            CoreEffect::ForwardMove { volume, to } => {
                let volume = self.config.volumes[volume].name.clone();
                self.broadcast(Message::Move { volume, to });
            }
            // Persisted before anything else happens: a survivor that
            // carries on alone must find its flag set after a crash.
            CoreEffect::PersistLastSurviving(flag) => {
                store_last_surviving(&self.config.state_dir, flag)?
            }
            CoreEffect::Quorate(_) | CoreEffect::Record(_) | CoreEffect::VolumeOwner { .. } => {}
        }
        Ok(())
    }

    fn broadcast(&mut self, message: Message) {
        let peers: Vec<_> = self.config.peers().map(|p| p.address).collect();
        for peer in peers {
            self.send(peer, &message);
        }
    }

    fn send(&mut self, to: std::net::SocketAddr, message: &Message) {
        let bytes = self.sealer.seal(message);
        // A lost heartbeat is what the failure detector is for.
        let _ = self.udp.send_to(&bytes, to);
    }
}

fn key_view(raw: u64, signature: ClusterSignature) -> KeyView {
    let key = ClusterKey::decode(raw, signature);
    KeyView {
        key: format!("0x{raw:016x}"),
        node: key.map(|k| k.node),
        role: key.map(|k| k.role),
        generation: key.map(|k| k.generation),
    }
}
