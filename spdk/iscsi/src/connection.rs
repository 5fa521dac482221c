//! One TCP connection, sans I/O: the reactor feeds received bytes in and
//! writes its output (`write_output`) out. Login, then full feature phase; timers via `tick`.
//!
//! ```text
//!  new ──Login PDUs──▶ Login ──final response──▶ FullFeature ──Logout──▶ closed
//!            │ failure / timeout                      │ dead peer, reinstated,
//!            └────────────────────────────────────────┴─ fatal framing error ─▶ closed
//! ```

use std::io::{self, IoSlice};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reservoir_scsi::InitiatorPort;

use crate::login::{
    Established, Login, LoginContext, LoginStatus, LoginStep, SessionType,
    DEFAULT_MAX_RECV_DATA_SEGMENT,
};
use crate::offload::{Finished, Offloaded};
use crate::pdu::{
    decode_frame, Digests, Frame, FrameError, FrameLimits, LoginRequest, Pdu, Stage, TargetPdu, Ttt,
};
use crate::registry::{Isid, SessionInfo, Sessions};
use crate::session::Session;
use crate::target::{Access, Targets};
use crate::tx::{reject, Closing, Tx};

/// A login must finish within this time (a half-open login holds a socket).
const LOGIN_TIMEOUT: Duration = Duration::from_secs(30);
/// After this long without traffic the target pings (§11.19 NOP-In with a TTT).
const NOP_INTERVAL: Duration = Duration::from_secs(10);
/// A ping unanswered for this long means the peer is gone.
const NOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Above this much unwritten output, stop reading until the peer catches up.
const OUTPUT_HIGH_WATER: usize = 4 * 1024 * 1024;

/// What one portal (listening address group) serves.
#[derive(Debug)]
pub struct PortalContext {
    pub targets: Arc<Targets>,
    pub sessions: Arc<Sessions>,
    pub portal_group_tag: u16,
    /// Addresses SendTargets advertises (TargetAddress); empty means the
    /// address the initiator connected to.
    pub target_portals: Vec<SocketAddr>,
    /// Who may open discovery sessions, and whether they need CHAP.
    pub discovery: Access,
}

impl PortalContext {
    /// A portal whose discovery sessions are open to every initiator.
    pub fn new(
        targets: Arc<Targets>,
        sessions: Arc<Sessions>,
        portal_group_tag: u16,
        target_portals: Vec<SocketAddr>,
    ) -> PortalContext {
        PortalContext {
            targets,
            sessions,
            portal_group_tag,
            target_portals,
            discovery: Access::default(),
        }
    }
}

#[derive(Debug)]
enum Phase {
    Login(Box<LoginPhase>),
    FullFeature(Box<Session>),
}

#[derive(Debug)]
struct LoginPhase {
    login: Login,
    /// The first request's identity fields, which later ones must repeat.
    first: Option<LoginRequest>,
}

/// One initiator connection.
#[derive(Debug)]
pub struct Connection {
    ctx: Arc<PortalContext>,
    local: SocketAddr,
    peer: SocketAddr,
    /// Received bytes, `input[..filled]`, not yet framed; the rest is
    /// room for the next read.
    input: Vec<u8>,
    filled: usize,
    tx: Tx,
    phase: Phase,
    started: Instant,
    last_rx: Instant,
    rx_since_tick: bool,
    /// Our outstanding NOP-In ping.
    ping: Option<(Ttt, Instant)>,
}

impl Connection {
    pub fn new(
        ctx: Arc<PortalContext>,
        local: SocketAddr,
        peer: SocketAddr,
        now: Instant,
    ) -> Connection {
        Connection {
            ctx,
            local,
            peer,
            input: Vec::new(),
            filled: 0,
            tx: Tx::new(),
            phase: Phase::Login(Box::new(LoginPhase {
                login: Login::new(),
                first: None,
            })),
            started: now,
            last_rx: now,
            rx_since_tick: false,
            ping: None,
        }
    }

    /// Feeds bytes read from the socket, split anywhere.
    pub fn receive(&mut self, bytes: &[u8]) {
        if self.is_closed() {
            return;
        }
        self.receive_buffer(bytes.len())[..bytes.len()].copy_from_slice(bytes);
        self.received(bytes.len());
    }

    /// Where the reactor reads socket bytes to: at least `min` bytes after
    /// those received and not yet framed. Reading here rather than into a
    /// buffer of its own spares copying every byte once more.
    pub fn receive_buffer(&mut self, min: usize) -> &mut [u8] {
        let wanted = self.filled + min;
        if self.input.len() < wanted {
            self.input.resize(wanted, 0);
        }
        &mut self.input[self.filled..]
    }

    /// `n` bytes were written into [`Connection::receive_buffer`]: frames
    /// and handles every complete PDU among what has arrived.
    pub fn received(&mut self, n: usize) {
        if self.is_closed() {
            return;
        }
        self.rx_since_tick = true;
        self.filled = (self.filled + n).min(self.input.len());
        // Frames borrow the input; it is put back once they are handled.
        let input = std::mem::take(&mut self.input);
        let mut used = 0;
        while !self.is_closed() {
            match decode_frame(&input[used..self.filled], self.limits()) {
                Ok(Some((frame, n))) => {
                    used += n;
                    self.on_frame(frame);
                }
                Ok(None) => break,
                Err(FrameError::Oversized { len, max, header }) => {
                    tracing::info!(peer = %self.peer, len, max, "data segment too long");
                    self.tx.reject(reject::PROTOCOL_ERROR, &header);
                    self.tx.close(Closing::AfterFlush);
                }
                Err(FrameError::HeaderDigest) => {
                    // §7.8: the header cannot be trusted, so neither can the
                    // framing of anything after it.
                    tracing::info!(peer = %self.peer, "header digest error");
                    self.tx.close(Closing::Now);
                }
            }
        }
        if self.is_closed() {
            self.filled = 0;
            return;
        }
        self.input = input;
        // The start of a PDU still arriving moves to the front.
        self.input.copy_within(used..self.filled, 0);
        self.filled -= used;
    }

    /// Bytes still to arrive of the PDU the received input ends inside
    /// (0 at a PDU boundary).
    pub fn receiving_pdu(&self) -> usize {
        crate::pdu::missing_bytes(&self.input[..self.filled], self.limits().digests)
    }

    /// How many bytes are waiting to be written.
    pub fn output_len(&self) -> usize {
        self.tx.pending_len()
    }

    /// Writes pending output with one call of `write` (a `writev` of the
    /// slices it is given) and returns how many bytes it took. Data-In
    /// payloads are sent from the buffers they were read into, or from a
    /// RAM volume's own memory, never copied into the output first. An
    /// error ends the connection.
    pub fn write_output(
        &mut self,
        write: &mut dyn FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        self.tx.write_out(write)
    }

    /// Appends all pending output to `out` (for transports without
    /// vectored writes, and for tests).
    pub fn take_output(&mut self, out: &mut Vec<u8>) -> io::Result<()> {
        while self.output_len() > 0 {
            self.write_output(&mut |slices| {
                let before = out.len();
                slices.iter().for_each(|s| out.extend_from_slice(s));
                Ok(out.len() - before)
            })?;
        }
        Ok(())
    }

    /// Timers: login timeout, pinging idle connections, dropping dead ones,
    /// closing a reinstated session.
    pub fn tick(&mut self, now: Instant) {
        if self.is_closed() {
            return;
        }
        if std::mem::take(&mut self.rx_since_tick) {
            self.last_rx = now;
            self.ping = None;
        }
        match &self.phase {
            Phase::Login(_) => {
                if now.duration_since(self.started) > LOGIN_TIMEOUT {
                    tracing::info!(peer = %self.peer, "login timed out");
                    self.tx.close(Closing::Now);
                }
            }
            Phase::FullFeature(session) => {
                if session.handle.told_to_close() {
                    self.tx.close(Closing::Now);
                    return;
                }
                match self.ping {
                    Some((_, sent)) if now.duration_since(sent) > NOP_TIMEOUT => {
                        tracing::info!(peer = %self.peer, "no answer to NOP-In, closing");
                        self.tx.close(Closing::Now);
                    }
                    Some(_) => {}
                    None if now.duration_since(self.last_rx) > NOP_INTERVAL => {
                        let ttt = self.tx.new_ttt();
                        // §11.19: a ping carries a TTT and the current StatSN,
                        // which it does not advance.
                        let pdu = TargetPdu::NopIn {
                            lun: 0,
                            itt: crate::pdu::Itt(crate::pdu::RESERVED_TAG),
                            ttt,
                            stat_sn: self.tx.stat_sn,
                            exp_cmd_sn: self.tx.exp_cmd_sn,
                            max_cmd_sn: self.tx.max_cmd_sn(),
                        };
                        self.tx.send(&pdu, &[]);
                        self.ping = Some((ttt, now));
                    }
                    None => {}
                }
            }
        }
    }

    /// The next command whose block I/O should run on a worker thread
    /// ([`Offloaded::run`]); the reactor asks after feeding input.
    pub fn next_offloaded(&mut self) -> Option<Offloaded> {
        match &mut self.phase {
            Phase::FullFeature(session) if self.tx.closing == Closing::Open => {
                session.next_offloaded()
            }
            _ => None,
        }
    }

    /// An offloaded I/O has ended: queues its Data-In and SCSI Response
    /// (or, for a task aborted meanwhile, the task management response
    /// that waited for it). Harmless on a closed connection.
    pub fn complete(&mut self, finished: Finished) {
        if let Phase::FullFeature(session) = &mut self.phase {
            session.complete(&mut self.tx, finished);
        }
    }

    /// Commands whose I/O was offloaded and has not completed.
    pub fn in_flight(&self) -> usize {
        match &self.phase {
            Phase::FullFeature(session) => session.in_flight.len(),
            Phase::Login(_) => 0,
        }
    }

    /// The reactor closes the socket once this is true and no output is
    /// left (output is dropped when closing for an error).
    pub fn is_closed(&self) -> bool {
        self.tx.closing != Closing::Open
    }

    /// False while too much output is waiting: stop reading (backpressure).
    pub fn wants_read(&self) -> bool {
        // Not gated on unacknowledged StatSNs: acknowledgements arrive in
        // the very PDUs we would stop reading.
        !self.is_closed() && self.tx.pending_len() < OUTPUT_HIGH_WATER
    }

    /// The session's TSIH once logged in.
    pub fn tsih(&self) -> Option<u16> {
        match &self.phase {
            Phase::FullFeature(s) => Some(s.handle.tsih()),
            Phase::Login(_) => None,
        }
    }

    fn limits(&self) -> FrameLimits {
        match &self.phase {
            Phase::Login(_) => FrameLimits {
                max_data: DEFAULT_MAX_RECV_DATA_SEGMENT as usize,
                digests: Digests::default(),
            },
            Phase::FullFeature(s) => FrameLimits {
                max_data: s.params.target_max_recv as usize,
                digests: self.tx.digests,
            },
        }
    }

    fn on_frame(&mut self, frame: Frame<'_>) {
        match &mut self.phase {
            Phase::FullFeature(session) => session.on_frame(&mut self.tx, &self.ctx, frame),
            Phase::Login(_) => self.on_login_frame(frame),
        }
    }

    fn on_login_frame(&mut self, frame: Frame<'_>) {
        let Ok(Pdu::Login(req)) = frame.pdu else {
            // §6.3: only Login requests until the login completes.
            tracing::info!(peer = %self.peer, "non-login PDU during login");
            self.tx.close(Closing::Now);
            return;
        };
        let Phase::Login(lp) = &mut self.phase else {
            return;
        };
        let first = match &lp.first {
            None => {
                // The target picks StatSN; continuing the initiator's
                // ExpStatSN keeps both sides in step (§4.2.2.2).
                self.tx.start_stat_sn(req.exp_stat_sn);
                self.tx.start_cmd_sn(req.cmd_sn);
                lp.first = Some(req.clone());
                req.clone()
            }
            Some(f) => f.clone(),
        };
        // The ITT may change from one Login request to the next (libiscsi
        // numbers each PDU); the session identity may not.
        if req.isid != first.isid || req.tsih != first.tsih || req.cid != first.cid {
            return self.login_fail(&req, LoginStatus::INITIATOR_ERROR);
        }
        if req.tsih != 0 {
            // Adding a connection to a session: MaxConnections is 1 (§6.3.1).
            let status = match self.ctx.sessions.contains(req.tsih) {
                true => LoginStatus::TOO_MANY_CONNECTIONS,
                false => LoginStatus::SESSION_DOES_NOT_EXIST,
            };
            return self.login_fail(&req, status);
        }
        let ctx = LoginContext {
            targets: &self.ctx.targets,
            portal_group_tag: self.ctx.portal_group_tag,
            discovery: &self.ctx.discovery,
        };
        match lp.login.on_request(&req, frame.data, &ctx) {
            LoginStep::Reply {
                transit,
                csg,
                nsg,
                data,
            } => {
                self.login_response(&req, transit, csg, nsg, 0, LoginStatus(0, 0), &data);
            }
            LoginStep::Fail(status) => self.login_fail(&req, status),
            LoginStep::Complete { csg, data, session } => self.establish(&req, csg, &data, session),
        }
    }

    fn establish(&mut self, req: &LoginRequest, csg: Stage, data: &[u8], est: Established) {
        let info = SessionInfo {
            initiator: est.initiator.clone(),
            isid: Isid(req.isid),
            tsih: 0,
            target: est.target.as_ref().map(|t| t.iqn.clone()),
            portal: self.local,
            peer: self.peer,
            params: est.params.keys(),
            connected_at: SystemTime::now(),
        };
        let Some(handle) = self.ctx.sessions.register(info) else {
            return self.login_fail(req, LoginStatus::OUT_OF_RESOURCES);
        };
        let tsih = handle.tsih();
        let nexus = est.target.as_ref().map(|t| {
            t.device.new_nexus(InitiatorPort {
                name: est.initiator.clone(),
                isid: req.isid,
            })
        });
        tracing::info!(
            peer = %self.peer,
            initiator = %est.initiator,
            target = ?est.target.as_ref().map(|t| &t.iqn),
            tsih,
            "login complete"
        );
        self.login_response(
            req,
            true,
            csg,
            Stage::FullFeature,
            tsih,
            LoginStatus(0, 0),
            data,
        );
        // Digests start with the first PDU after the final Login response.
        self.tx.digests = Digests {
            header: est.params.header_digest,
            data: est.params.data_digest,
        };
        debug_assert!(est.session_type == SessionType::Discovery || est.target.is_some());
        self.phase = Phase::FullFeature(Box::new(Session::new(
            est, req.cid, self.local, nexus, handle,
        )));
    }

    fn login_fail(&mut self, req: &LoginRequest, status: LoginStatus) {
        tracing::info!(peer = %self.peer, class = status.0, detail = status.1, "login failed");
        self.login_response(req, false, req.csg, req.csg, 0, status, &[]);
        self.tx.close(Closing::AfterFlush);
    }

    #[allow(clippy::too_many_arguments)]
    fn login_response(
        &mut self,
        req: &LoginRequest,
        transit: bool,
        csg: Stage,
        nsg: Stage,
        tsih: u16,
        status: LoginStatus,
        data: &[u8],
    ) {
        let pdu = TargetPdu::LoginResponse {
            transit,
            continue_: false,
            csg,
            nsg,
            isid: req.isid,
            tsih,
            itt: req.itt,
            stat_sn: self.tx.take_stat_sn(),
            exp_cmd_sn: self.tx.exp_cmd_sn,
            max_cmd_sn: self.tx.max_cmd_sn(),
            status_class: status.0,
            status_detail: status.1,
        };
        self.tx.send(&pdu, data);
    }
}

impl Drop for Connection {
    /// Dropping the session unregisters it and ends its I_T nexus (the SCSI
    /// layer keeps what SPC says survives a lost nexus).
    fn drop(&mut self) {
        if let Phase::FullFeature(s) = &self.phase {
            tracing::debug!(peer = %self.peer, tsih = s.handle.tsih(), "connection ended");
        }
    }
}
