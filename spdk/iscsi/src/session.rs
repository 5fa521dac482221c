//! A session in full feature phase (RFC 7143 §4.2, §11): CmdSN ordering,
//! SCSI commands with their data, NOP, Text, Logout. Task management is in
//! `tmf.rs`. With MaxConnections=1 a session has exactly one connection, so
//! this state lives in that connection.

use std::collections::HashMap;
use std::sync::Arc;

use std::net::SocketAddr;

use std::collections::VecDeque;

use reservoir_scsi::{Completion, DataDirection, Nexus, Started, Status};

use crate::connection::PortalContext;
use crate::discovery;
use crate::login::{keys, Established, KeyAnswer, Params, SessionType, OUR_MAX_RECV_DATA_SEGMENT};
use crate::offload::{Finished, InFlight, Offloaded, PendingTmf};
use crate::pdu::{
    Frame, Itt, LogoutReason, LogoutRequest, NopOut, Pdu, Residual, ScsiCommand, TargetPdu,
    TextRequest, Ttt, BHS_LEN, RESERVED_TAG,
};
use crate::registry::SessionHandle;
use crate::serial::CmdSn;
use crate::target::TargetNode;
use crate::task::{residual, Task};
use crate::tx::{reject, Closing, Source, Tx, CMD_WINDOW};

/// Task attributes up to this are untagged (0) or SIMPLE (1); ORDERED,
/// HEAD OF QUEUE and ACA follow (RFC 7143 §11.3.1.2, SAM-5 8.6).
const TASK_ATTR_SIMPLE: u8 = 1;

/// Bounds a Text request reassembled from C-bit PDUs.
const MAX_TEXT: usize = 64 * 1024;

/// A non-SCSI request waiting for its CmdSN turn, with its own copy of
/// its data segment.
#[derive(Debug)]
pub(crate) struct Request {
    pub header: [u8; BHS_LEN],
    pub pdu: Pdu,
    pub data: Vec<u8>,
}

/// What waits for its CmdSN turn (§4.2.2.1: delivered in CmdSN order).
#[derive(Debug)]
pub(crate) enum Held {
    /// A non-SCSI request, processed at its turn.
    Request(Box<Request>),
    /// A SCSI command whose task already exists (so its Data-Out can
    /// arrive early); at its turn it may solicit data and execute.
    Task(Itt),
    /// A CmdSN considered received without a command (rejected, or named
    /// by an ABORT TASK before it arrived, §11.5.1).
    Skip,
}

#[derive(Debug)]
pub(crate) struct Session {
    pub kind: SessionType,
    pub initiator: String,
    pub cid: u16,
    /// The portal this connection reached.
    pub local: SocketAddr,
    pub target: Option<Arc<TargetNode>>,
    pub nexus: Option<Nexus>,
    pub params: Params,
    pub handle: SessionHandle,
    pub held: Vec<(CmdSn, Held)>,
    /// Reserved for a full command window up front, so that taking on
    /// commands does not allocate.
    pub tasks: HashMap<Itt, Task>,
    /// Tasks whose block I/O runs on a worker, by ITT (which stays taken
    /// until the I/O ends, even for an aborted task).
    pub in_flight: HashMap<Itt, InFlight>,
    /// I/O the reactor has not handed to a worker yet.
    offloaded: VecDeque<Offloaded>,
    /// Task management responses waiting for aborted I/O to end, oldest first.
    pub pending_tmfs: Vec<PendingTmf>,
    text_partial: Vec<u8>,
    /// A Text response still to be sent in pieces: (ITT, TTT, rest).
    text_pending: Option<(Itt, Ttt, Vec<u8>)>,
}

impl Session {
    pub fn new(
        est: Established,
        cid: u16,
        local: SocketAddr,
        nexus: Option<Nexus>,
        handle: SessionHandle,
    ) -> Session {
        Session {
            kind: est.session_type,
            initiator: est.initiator,
            cid,
            local,
            target: est.target,
            nexus,
            params: est.params,
            handle,
            held: Vec::with_capacity(CMD_WINDOW as usize),
            tasks: HashMap::with_capacity(CMD_WINDOW as usize),
            in_flight: HashMap::with_capacity(CMD_WINDOW as usize),
            offloaded: VecDeque::with_capacity(CMD_WINDOW as usize),
            pending_tmfs: Vec::new(),
            text_partial: Vec::new(),
            text_pending: None,
        }
    }

    /// One framed PDU in full feature phase.
    pub fn on_frame(&mut self, tx: &mut Tx, ctx: &PortalContext, frame: Frame<'_>) {
        let pdu = match frame.pdu {
            Ok(p) => p,
            Err(e) => {
                tracing::debug!(error = %e, "malformed PDU");
                tx.reject(reject::INVALID_PDU_FIELD, &frame.header);
                return;
            }
        };
        if !frame.data_digest_ok {
            // §7.8: the PDU is discarded and rejected; nothing executes.
            tx.reject(reject::DATA_DIGEST_ERROR, &frame.header);
            match &pdu {
                // ERL 0 cannot re-request the lost data: the task ends
                // here and the initiator's timeout escalates.
                Pdu::DataOut(d) => self.drop_task(d.itt),
                // The CmdSN is used up so that the window keeps moving.
                p => self.skip_cmd_sn(tx, ctx, p),
            }
            return;
        }
        if let Some(sn) = exp_stat_sn(&pdu) {
            tx.acknowledge(sn);
        }
        let discovery_allowed = matches!(pdu, Pdu::NopOut(_) | Pdu::Text(_) | Pdu::Logout(_));
        if self.kind == SessionType::Discovery && !discovery_allowed {
            // §4.3: a discovery session carries Text, NOP and Logout only.
            tx.reject(reject::PROTOCOL_ERROR, &frame.header);
            self.skip_cmd_sn(tx, ctx, &pdu);
            return;
        }
        match pdu {
            Pdu::DataOut(d) => {
                let Some(task) = self.tasks.get_mut(&d.itt) else {
                    // Data for a command already answered or aborted.
                    tracing::debug!(itt = d.itt.0, "Data-Out for no task, dropped");
                    return;
                };
                match task.data_out(&d, frame.data) {
                    Ok(()) => self.progress(tx, d.itt),
                    Err(e) => {
                        tracing::info!(itt = d.itt.0, error = %e, "Data-Out refused");
                        tx.reject(reject::PROTOCOL_ERROR, &frame.header);
                        self.drop_task(d.itt);
                    }
                }
            }
            Pdu::ScsiCommand(c) => self.on_command(tx, ctx, c, &frame.header, frame.data),
            // §11.18: a NOP-Out that wants no answer is immediate; one
            // sent without the I bit is taken as such rather than refused.
            Pdu::NopOut(ref n) if n.immediate || n.itt.0 == RESERVED_TAG => {
                self.dispatch(tx, ctx, pdu, frame.data, &frame.header)
            }
            Pdu::NopOut(NopOut { cmd_sn, .. })
            | Pdu::Text(TextRequest { cmd_sn, .. })
            | Pdu::Logout(LogoutRequest { cmd_sn, .. }) => {
                self.order_request(tx, ctx, cmd_sn, pdu, &frame.header, frame.data)
            }
            Pdu::TaskManagement(ref t) => {
                let cmd_sn = t.cmd_sn;
                self.order_request(tx, ctx, cmd_sn, pdu, &frame.header, frame.data)
            }
            Pdu::Login(_) | Pdu::Snack { .. } => {
                // A Login in full feature phase is a protocol error; SNACK
                // needs ErrorRecoveryLevel > 0 (§11.16).
                tx.reject(reject::PROTOCOL_ERROR, &frame.header);
            }
            Pdu::Unknown { .. } => tx.reject(reject::COMMAND_NOT_SUPPORTED, &frame.header),
        }
    }

    fn order_request(
        &mut self,
        tx: &mut Tx,
        ctx: &PortalContext,
        cmd_sn: CmdSn,
        pdu: Pdu,
        header: &[u8; BHS_LEN],
        data: &[u8],
    ) {
        if immediate(&pdu) {
            self.dispatch(tx, ctx, pdu, data, header);
        } else {
            let request = Request {
                header: *header,
                pdu,
                data: data.to_vec(),
            };
            self.order(tx, ctx, cmd_sn, Held::Request(Box::new(request)));
        }
    }

    /// §4.2.2.1: a non-immediate request outside [ExpCmdSN, MaxCmdSN] is
    /// dropped silently; one ahead of ExpCmdSN waits for the gap to fill.
    fn order(&mut self, tx: &mut Tx, ctx: &PortalContext, cmd_sn: CmdSn, held: Held) {
        if !self.admissible(tx, cmd_sn) {
            if let Held::Task(itt) = held {
                self.tasks.remove(&itt);
            }
            return;
        }
        self.held.push((cmd_sn, held));
        while let Some(i) = self.held.iter().position(|(sn, _)| *sn == tx.exp_cmd_sn) {
            let (_, held) = self.held.swap_remove(i);
            tx.exp_cmd_sn = tx.exp_cmd_sn.next();
            match held {
                Held::Request(r) => self.dispatch(tx, ctx, r.pdu, &r.data, &r.header),
                Held::Task(itt) => {
                    if let Some(task) = self.tasks.get_mut(&itt) {
                        task.delivered = true;
                        self.progress(tx, itt);
                    }
                }
                Held::Skip => {}
            }
            if tx.closing != Closing::Open {
                break;
            }
        }
    }

    /// In the window and not a duplicate of a request already waiting.
    fn admissible(&self, tx: &mut Tx, cmd_sn: CmdSn) -> bool {
        let ok = cmd_sn.in_window(tx.exp_cmd_sn, tx.max_cmd_sn())
            && self.held.iter().all(|(sn, _)| *sn != cmd_sn);
        if !ok {
            tracing::debug!(
                cmd_sn = cmd_sn.0,
                exp = tx.exp_cmd_sn.0,
                "CmdSN outside window, dropped"
            );
        }
        ok
    }

    /// Uses up the CmdSN of a request that will not be processed.
    fn skip_cmd_sn(&mut self, tx: &mut Tx, ctx: &PortalContext, pdu: &Pdu) {
        if let Some(sn) = cmd_sn(pdu) {
            self.order(tx, ctx, sn, Held::Skip);
        }
    }

    fn drop_task(&mut self, itt: Itt) {
        if self.tasks.remove(&itt).is_some() {
            for (_, h) in self.held.iter_mut() {
                if matches!(h, Held::Task(i) if *i == itt) {
                    *h = Held::Skip;
                }
            }
        }
    }

    /// Processes a request at its CmdSN turn (or at once if immediate).
    fn dispatch(
        &mut self,
        tx: &mut Tx,
        ctx: &PortalContext,
        pdu: Pdu,
        data: &[u8],
        header: &[u8; BHS_LEN],
    ) {
        match pdu {
            Pdu::NopOut(n) => self.on_nop_out(tx, n, data),
            Pdu::Text(t) => self.on_text(tx, ctx, t, data, header),
            Pdu::Logout(l) => self.on_logout(tx, l, header),
            Pdu::TaskManagement(t) => self.on_task_management(tx, t),
            _ => {}
        }
    }

    fn on_command(
        &mut self,
        tx: &mut Tx,
        ctx: &PortalContext,
        c: ScsiCommand,
        header: &[u8; BHS_LEN],
        data: &[u8],
    ) {
        // Out-of-window commands are dropped before anything else is checked.
        if !c.immediate && !self.admissible(tx, c.cmd_sn) {
            return;
        }
        let refuse = |reason: u8| Some(reason);
        let problem = if c.read && c.write {
            // Bidirectional commands are not supported by the SCSI layer.
            refuse(reject::COMMAND_NOT_SUPPORTED)
        } else if self.tasks.contains_key(&c.itt) || self.in_flight.contains_key(&c.itt) {
            refuse(reject::TASK_IN_PROGRESS)
        } else if !data.is_empty()
            && (!self.params.immediate_data
                || !c.write
                || data.len() as u64 > u64::from(self.params.first_burst.min(c.expected_len)))
        {
            // §4.7.2: immediate data only when negotiated, only for a write,
            // at most FirstBurstLength and EDTL.
            refuse(reject::PROTOCOL_ERROR)
        } else {
            None
        };
        if let Some(reason) = problem {
            tx.reject(reason, header);
            if !c.immediate {
                self.order(tx, ctx, c.cmd_sn, Held::Skip);
            }
            return;
        }
        let Some(target) = &self.target else { return };
        let parsed = target.device.parse(c.lun, &c.cdb);
        // §4.7.3: unsolicited Data-Out follows unless F is set or InitialR2T=Yes.
        let unsolicited = (c.write && !c.final_ && !self.params.initial_r2t)
            .then(|| self.params.first_burst.min(c.expected_len));
        let mut task = Task::new(
            c.itt,
            c.lun,
            parsed,
            c.expected_len,
            data,
            unsolicited,
            &mut tx.buffers,
        );
        if let Some(nexus) = &self.nexus {
            task.abort_epoch = nexus.abort_epoch(c.lun);
        }
        task.simple = c.attr <= TASK_ATTR_SIMPLE;
        self.tasks.insert(c.itt, task);
        if c.immediate {
            if let Some(t) = self.tasks.get_mut(&c.itt) {
                t.delivered = true;
            }
            self.progress(tx, c.itt);
        } else {
            self.order(tx, ctx, c.cmd_sn, Held::Task(c.itt));
        }
    }

    /// Solicits data a delivered task still needs, and runs it once complete.
    fn progress(&mut self, tx: &mut Tx, itt: Itt) {
        let (max_burst, max_r2t) = (self.params.max_burst, self.params.max_outstanding_r2t);
        let Some(task) = self.tasks.get_mut(&itt) else {
            return;
        };
        while let Some(r2t) = task.next_r2t(max_burst, max_r2t, || tx.new_ttt()) {
            let pdu = TargetPdu::R2t {
                lun: task.lun,
                itt,
                ttt: r2t.ttt,
                stat_sn: tx.stat_sn,
                exp_cmd_sn: tx.exp_cmd_sn,
                max_cmd_sn: tx.max_cmd_sn(),
                r2t_sn: r2t.r2t_sn,
                buffer_offset: r2t.offset,
                desired_len: r2t.len,
            };
            tx.send(&pdu, &[]);
        }
        if task.delivered && task.data_complete() {
            if let Some(task) = self.tasks.remove(&itt) {
                self.execute(tx, task);
            }
        }
    }

    fn execute(&mut self, tx: &mut Tx, mut task: Task) {
        // An ORDERED (or HEAD OF QUEUE, ACA) task runs after every earlier
        // one has ended (SAM-5 8.6): reads whose data is still lent end
        // now, before it can write.
        if !task.simple {
            if let Err(reason) = tx.fix_lent_data() {
                tracing::warn!(?reason, "a lent read failed; closing the connection");
                tx.close(Closing::Now);
                return;
            }
        }
        let mut data_in = tx.buffers.take(data_in_capacity(&task));
        let completion = match (&task.command, &self.target, &mut self.nexus) {
            // Aborted by another nexus's PREEMPT AND ABORT while it waited
            // for data or its turn: TASK ABORTED, since the Control mode
            // page says TAS = 1 (SAM-5, SPC-4 5.13.11.5).
            (Ok(_), Some(_), Some(nexus)) if nexus.abort_epoch(task.lun) != task.abort_epoch => {
                Completion::task_aborted()
            }
            (Ok(cmd), Some(target), Some(nexus)) => {
                // Everything that arrived: the SCSI layer uses what the CDB
                // asks for, and commands that must match the initiator's
                // buffer exactly (COMPARE AND WRITE) can tell when it does not.
                match target.device.start(nexus, cmd, &task.data, &mut data_in) {
                    Started::Done(completion) => completion,
                    // Data digests cover the data as it is sent, so a lent
                    // read is copied now when they are on.
                    Started::Lent(read) if tx.digests.data => read.copy_into(&mut data_in),
                    Started::Lent(read) => {
                        tx.buffers.give(data_in);
                        self.respond(tx, task, Completion::good(), Source::Lent(read));
                        return;
                    }
                    Started::Io(io) => {
                        let data_out = std::mem::take(&mut task.data);
                        self.offloaded.push_back(Offloaded {
                            itt: task.itt,
                            io,
                            data_out,
                            data_in,
                        });
                        let flight = InFlight {
                            task,
                            aborted: false,
                        };
                        self.in_flight.insert(flight.task.itt, flight);
                        tx.in_flight += 1;
                        return;
                    }
                }
            }
            (Err(failed), _, _) => *failed,
            // A normal session always has a target and a nexus.
            _ => {
                tx.buffers.give(task.data);
                tx.buffers.give(data_in);
                return;
            }
        };
        self.respond(tx, task, completion, Source::Buffer(data_in));
    }

    /// An offloaded task's I/O has ended: its response goes out as if it
    /// had run inline, unless task management aborted it meanwhile.
    pub fn complete(&mut self, tx: &mut Tx, finished: Finished) {
        let Finished {
            itt,
            completion,
            data_out,
            mut data_in,
        } = finished;
        let Some(InFlight { mut task, aborted }) = self.in_flight.remove(&itt) else {
            // Its session was logged out meanwhile.
            tx.buffers.give(data_out);
            tx.buffers.give(data_in);
            return;
        };
        tx.in_flight = tx.in_flight.saturating_sub(1);
        task.data = data_out;
        if aborted {
            tx.buffers.give(task.data);
            tx.buffers.give(data_in);
            self.settle_tmfs(tx, itt);
            return;
        }
        // A PREEMPT AND ABORT while the I/O ran (SPC-4 5.13.11.5).
        let preempted = self
            .nexus
            .as_ref()
            .is_some_and(|nexus| nexus.abort_epoch(task.lun) != task.abort_epoch);
        let completion = if preempted {
            data_in.clear();
            Completion::task_aborted()
        } else {
            completion
        };
        self.respond(tx, task, completion, Source::Buffer(data_in));
    }

    /// The next offloaded I/O to hand to a worker.
    pub fn next_offloaded(&mut self) -> Option<Offloaded> {
        self.offloaded.pop_front()
    }

    /// Data-In and SCSI Response for a task that has run, with residuals
    /// (§11.4.5) and status or sense; the one ending of every command.
    fn respond(&mut self, tx: &mut Tx, task: Task, completion: Completion, mut data_in: Source) {
        let moved = match task.transfer.direction {
            DataDirection::In => data_in.len().min(task.expected_len as usize) as u64,
            DataDirection::Out => (task.data.len() as u64).min(task.transfer.bytes),
            DataDirection::None => 0,
        };
        data_in.truncate(task.expected_len as usize);
        let residual = residual(task.expected_len, &task.transfer, moved);
        let good = completion.status == Status::Good && completion.sense.is_none();
        let read_nothing = data_in.len() == 0;
        let data_sns =
            self.send_data_in(tx, &task, data_in, good.then_some((completion, residual)));
        if read_nothing || !good {
            let exp_data_sn = match task.transfer.direction {
                DataDirection::Out => task.r2t_count(),
                _ => data_sns,
            };
            send_response(tx, task.itt, &completion, residual, exp_data_sn);
        }
        tx.buffers.give(task.data);
    }

    /// Sends read data as Data-In PDUs no larger than the initiator's
    /// MaxRecvDataSegmentLength, in sequences of at most MaxBurstLength
    /// (§11.7). With `status`, the last PDU carries it (S bit, §11.7.5).
    /// The PDUs are sent from `data` itself, which the output queue keeps
    /// until they are written. Returns how many Data-In PDUs were sent.
    fn send_data_in(
        &self,
        tx: &mut Tx,
        task: &Task,
        data: Source,
        status: Option<(Completion, Residual)>,
    ) -> u32 {
        let len = data.len();
        if len == 0 {
            tx.recycle(data);
            return 0;
        }
        tx.push_source(data);
        let seg = self.params.initiator_max_recv.max(512) as usize;
        let burst = self.params.max_burst.max(512) as usize;
        let mut off = 0;
        let mut data_sn = 0u32;
        while off < len {
            let n = seg.min(len - off).min(burst - off % burst);
            let last = off + n == len;
            let end_of_burst = last || (off + n).is_multiple_of(burst);
            let status_here = status.filter(|_| last);
            let pdu = TargetPdu::DataIn {
                final_: end_of_burst,
                status: status_here.map(|(c, _)| c.status.code()),
                residual: status_here.map_or(Residual::None, |(_, r)| r),
                lun: task.lun,
                itt: task.itt,
                stat_sn: if status_here.is_some() {
                    tx.take_stat_sn()
                } else {
                    0
                },
                exp_cmd_sn: tx.exp_cmd_sn,
                max_cmd_sn: tx.max_cmd_sn(),
                data_sn,
                buffer_offset: off as u32,
            };
            tx.send_from_source(&pdu, off..off + n, last);
            data_sn += 1;
            off += n;
        }
        data_sn
    }

    fn on_nop_out(&mut self, tx: &mut Tx, n: NopOut, data: &[u8]) {
        if n.itt.0 == RESERVED_TAG {
            // The answer to our ping (or a no-op): nothing to send.
            return;
        }
        // §11.18: the ping data comes back, within the initiator's limit.
        let len = data.len().min(self.params.initiator_max_recv as usize);
        let pdu = TargetPdu::NopIn {
            lun: n.lun,
            itt: n.itt,
            ttt: Ttt::RESERVED,
            stat_sn: tx.take_stat_sn(),
            exp_cmd_sn: tx.exp_cmd_sn,
            max_cmd_sn: tx.max_cmd_sn(),
        };
        tx.send(&pdu, &data[..len]);
    }

    fn on_text(
        &mut self,
        tx: &mut Tx,
        ctx: &PortalContext,
        t: TextRequest,
        data: &[u8],
        header: &[u8; BHS_LEN],
    ) {
        if t.ttt.0 != RESERVED_TAG {
            // §11.10.4: the initiator asks for the rest of a long response.
            match self.text_pending.take() {
                Some((itt, ttt, rest)) if itt == t.itt && ttt == t.ttt => {
                    self.send_text(tx, itt, rest)
                }
                _ => tx.reject(reject::INVALID_PDU_FIELD, header),
            }
            return;
        }
        self.text_pending = None;
        if self.text_partial.len() + data.len() > MAX_TEXT {
            self.text_partial.clear();
            tx.reject(reject::PROTOCOL_ERROR, header);
            return;
        }
        self.text_partial.extend_from_slice(data);
        if t.continue_ {
            let pdu = TargetPdu::TextResponse {
                final_: false,
                continue_: false,
                itt: t.itt,
                ttt: Ttt::RESERVED,
                stat_sn: tx.take_stat_sn(),
                exp_cmd_sn: tx.exp_cmd_sn,
                max_cmd_sn: tx.max_cmd_sn(),
            };
            tx.send(&pdu, &[]);
            return;
        }
        let text = std::mem::take(&mut self.text_partial);
        let Ok(pairs) = keys::parse(&text) else {
            tx.reject(reject::PROTOCOL_ERROR, header);
            return;
        };
        let mut out = Vec::new();
        for (k, v) in &pairs {
            if k == "SendTargets" {
                // Without configured portals, the one the initiator reached.
                let portals = match ctx.target_portals.is_empty() {
                    true => vec![self.local],
                    false => ctx.target_portals.clone(),
                };
                match discovery::send_targets(
                    v,
                    &self.initiator,
                    &ctx.targets,
                    self.target.as_ref(),
                    &portals,
                    ctx.portal_group_tag,
                ) {
                    Some(list) => out.extend_from_slice(&list),
                    None => keys::push(&mut out, k, "Reject"),
                }
                continue;
            }
            match self.params.offer(k, v, false) {
                KeyAnswer::Value(a) => keys::push(&mut out, k, &a),
                KeyAnswer::Silent => {
                    // A declarative key: declare ours back (§13.12).
                    keys::push(&mut out, k, &OUR_MAX_RECV_DATA_SEGMENT.to_string());
                }
                KeyAnswer::Reject => keys::push(&mut out, k, "Reject"),
                KeyAnswer::NotUnderstood => keys::push(&mut out, k, "NotUnderstood"),
                KeyAnswer::Irrelevant => keys::push(&mut out, k, "Irrelevant"),
            }
        }
        self.send_text(tx, t.itt, out);
    }

    fn send_text(&mut self, tx: &mut Tx, itt: Itt, mut data: Vec<u8>) {
        let max = self.params.initiator_max_recv as usize;
        let (final_, ttt) = if data.len() > max {
            let rest = data.split_off(max);
            let ttt = tx.new_ttt();
            self.text_pending = Some((itt, ttt, rest));
            (false, ttt)
        } else {
            (true, Ttt::RESERVED)
        };
        let pdu = TargetPdu::TextResponse {
            final_,
            continue_: !final_,
            itt,
            ttt,
            stat_sn: tx.take_stat_sn(),
            exp_cmd_sn: tx.exp_cmd_sn,
            max_cmd_sn: tx.max_cmd_sn(),
        };
        tx.send(&pdu, &data);
    }

    fn on_logout(&mut self, tx: &mut Tx, l: LogoutRequest, header: &[u8; BHS_LEN]) {
        // Responses per §11.15.1.
        let response = match l.reason {
            LogoutReason::CloseSession => 0,
            LogoutReason::CloseConnection if l.cid == self.cid => 0,
            LogoutReason::CloseConnection => 1,
            LogoutReason::RemoveForRecovery => 2,
            LogoutReason::Other(_) => {
                tx.reject(reject::INVALID_PDU_FIELD, header);
                return;
            }
        };
        let pdu = TargetPdu::LogoutResponse {
            itt: l.itt,
            response,
            stat_sn: tx.take_stat_sn(),
            exp_cmd_sn: tx.exp_cmd_sn,
            max_cmd_sn: tx.max_cmd_sn(),
            time2wait: 0,
            time2retain: 0,
        };
        tx.send(&pdu, &[]);
        if response == 0 {
            // I/O still on a worker ends there; its completion finds no task.
            self.tasks.clear();
            self.in_flight.clear();
            self.offloaded.clear();
            self.pending_tmfs.clear();
            tx.in_flight = 0;
            tx.close(Closing::AfterFlush);
        }
    }
}

/// Room for what a command returns: the transfer its CDB describes, within
/// what the initiator expects. READ fills it in place; commands that build
/// parameter data replace it with their own (they are not on the I/O path).
fn data_in_capacity(task: &Task) -> usize {
    match task.transfer.direction {
        DataDirection::In => task.transfer.bytes.min(u64::from(task.expected_len)) as usize,
        DataDirection::Out | DataDirection::None => 0,
    }
}

fn immediate(pdu: &Pdu) -> bool {
    match pdu {
        Pdu::NopOut(p) => p.immediate,
        Pdu::ScsiCommand(p) => p.immediate,
        Pdu::TaskManagement(p) => p.immediate,
        Pdu::Text(p) => p.immediate,
        Pdu::Logout(p) => p.immediate,
        _ => true,
    }
}

fn exp_stat_sn(pdu: &Pdu) -> Option<u32> {
    match pdu {
        Pdu::NopOut(p) => Some(p.exp_stat_sn),
        Pdu::ScsiCommand(p) => Some(p.exp_stat_sn),
        Pdu::TaskManagement(p) => Some(p.exp_stat_sn),
        Pdu::Text(p) => Some(p.exp_stat_sn),
        Pdu::DataOut(p) => Some(p.exp_stat_sn),
        Pdu::Logout(p) => Some(p.exp_stat_sn),
        Pdu::Login(_) | Pdu::Snack { .. } | Pdu::Unknown { .. } => None,
    }
}

fn cmd_sn(pdu: &Pdu) -> Option<CmdSn> {
    if immediate(pdu) {
        return None;
    }
    match pdu {
        Pdu::NopOut(p) => Some(p.cmd_sn),
        Pdu::ScsiCommand(p) => Some(p.cmd_sn),
        Pdu::TaskManagement(p) => Some(p.cmd_sn),
        Pdu::Text(p) => Some(p.cmd_sn),
        Pdu::Logout(p) => Some(p.cmd_sn),
        _ => None,
    }
}

/// SCSI Response (§11.4) with sense data as a 2-byte length and the
/// fixed-format sense bytes (§11.4.7).
fn send_response(
    tx: &mut Tx,
    itt: Itt,
    completion: &Completion,
    residual: Residual,
    exp_data_sn: u32,
) {
    let mut data = Vec::new();
    if let Some(sense) = &completion.sense {
        let bytes = sense.to_fixed_bytes();
        data.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        data.extend_from_slice(&bytes);
    }
    let pdu = TargetPdu::ScsiResponse {
        itt,
        status: completion.status.code(),
        residual,
        stat_sn: tx.take_stat_sn(),
        exp_cmd_sn: tx.exp_cmd_sn,
        max_cmd_sn: tx.max_cmd_sn(),
        exp_data_sn,
    };
    tx.send(&pdu, &data);
}
