//! Task management (RFC 7143 §11.5, §11.6). A function finds tasks still
//! collecting Data-Out or waiting for their CmdSN turn, which it removes at
//! once, and tasks whose block I/O is on a worker, which cannot be called
//! back: those are marked aborted, and the function's response waits until
//! their I/O has ended (their own responses are discarded).

use crate::offload::PendingTmf;
use crate::pdu::{Itt, Pdu, TargetPdu, TaskManagementRequest, TmfFunction};
use crate::serial::CmdSn;
use crate::session::{Held, Session};
use crate::tx::{Closing, Tx};

/// TMF response codes (§11.6.1).
mod response {
    pub const FUNCTION_COMPLETE: u8 = 0;
    pub const TASK_DOES_NOT_EXIST: u8 = 1;
    pub const LUN_DOES_NOT_EXIST: u8 = 2;
    pub const REASSIGNMENT_NOT_SUPPORTED: u8 = 4;
    pub const FUNCTION_NOT_SUPPORTED: u8 = 5;
}

impl Session {
    pub(crate) fn on_task_management(&mut self, tx: &mut Tx, t: TaskManagementRequest) {
        let mut close = false;
        let mut waiting = Vec::new();
        let code = match t.function {
            TmfFunction::AbortTask => self.abort_task(tx, &t, &mut waiting),
            TmfFunction::AbortTaskSet | TmfFunction::ClearTaskSet => {
                if self.lun_exists(t.lun) {
                    // Other nexuses' tasks are not ours to abort here.
                    waiting = self.abort_where(|lun, _| lun == t.lun);
                    response::FUNCTION_COMPLETE
                } else {
                    response::LUN_DOES_NOT_EXIST
                }
            }
            TmfFunction::LogicalUnitReset => match &self.target {
                Some(target) if self.lun_exists(t.lun) => match target.device.lun_reset(t.lun) {
                    Ok(()) => {
                        waiting = self.abort_where(|lun, _| lun == t.lun);
                        response::FUNCTION_COMPLETE
                    }
                    Err(e) => {
                        tracing::info!(lun = t.lun, error = ?e, "LUN reset failed");
                        response::LUN_DOES_NOT_EXIST
                    }
                },
                _ => response::LUN_DOES_NOT_EXIST,
            },
            TmfFunction::TargetWarmReset | TmfFunction::TargetColdReset => {
                if let Some(target) = &self.target {
                    target.device.target_reset();
                }
                waiting = self.abort_where(|_, _| true);
                // §11.5.1: a cold reset also drops the connection, after
                // the response.
                close = t.function == TmfFunction::TargetColdReset;
                response::FUNCTION_COMPLETE
            }
            // Allegiance reassignment needs ErrorRecoveryLevel 2 (§11.5.1).
            TmfFunction::TaskReassign => response::REASSIGNMENT_NOT_SUPPORTED,
            TmfFunction::ClearAca | TmfFunction::Other(_) => response::FUNCTION_NOT_SUPPORTED,
        };
        let pending = PendingTmf {
            itt: t.itt,
            response: code,
            close,
            waiting,
        };
        if pending.waiting.is_empty() {
            send_tmf_response(tx, &pending);
        } else {
            self.pending_tmfs.push(pending);
        }
    }

    /// An aborted task's I/O has ended: answers the functions that waited
    /// for it and nothing else.
    pub(crate) fn settle_tmfs(&mut self, tx: &mut Tx, ended: Itt) {
        for pending in &mut self.pending_tmfs {
            pending.waiting.retain(|itt| *itt != ended);
        }
        while let Some(i) = self.pending_tmfs.iter().position(|p| p.waiting.is_empty()) {
            let pending = self.pending_tmfs.remove(i);
            send_tmf_response(tx, &pending);
        }
    }

    fn lun_exists(&self, lun: u64) -> bool {
        self.target
            .as_ref()
            .is_some_and(|t| t.device.lun_ids().contains(&lun))
    }

    /// ABORT TASK (§11.5.1): the referenced task is removed without a
    /// response of its own.
    fn abort_task(&mut self, tx: &mut Tx, t: &TaskManagementRequest, waiting: &mut Vec<Itt>) -> u8 {
        let rtt = t.referenced_task;
        if self.tasks.contains_key(&rtt) || self.in_flight.contains_key(&rtt) {
            *waiting = self.abort_where(|_, itt| itt == rtt);
            return response::FUNCTION_COMPLETE;
        }
        // A request still waiting for its CmdSN turn.
        let held = self.held.iter_mut().find(|(_, h)| match h {
            Held::Request(r) => r.pdu.itt() == rtt && !matches!(r.pdu, Pdu::TaskManagement(_)),
            _ => false,
        });
        if let Some((_, h)) = held {
            *h = Held::Skip;
            return response::FUNCTION_COMPLETE;
        }
        // §11.5.1 c): not received yet but within the window and before
        // this request: consider it received, so it never executes.
        let before_us = t.immediate || t.ref_cmd_sn < t.cmd_sn;
        let ref_sn: CmdSn = t.ref_cmd_sn;
        let in_window = ref_sn.in_window(tx.exp_cmd_sn, tx.max_cmd_sn());
        if before_us && in_window && !self.held.iter().any(|(sn, _)| *sn == ref_sn) {
            self.held.push((ref_sn, Held::Skip));
            return response::FUNCTION_COMPLETE;
        }
        response::TASK_DOES_NOT_EXIST
    }

    /// Removes matching tasks (their CmdSNs stay accounted for) and marks
    /// matching in-flight ones aborted; returns those, whose I/O the
    /// function's response waits for.
    fn abort_where(&mut self, matches: impl Fn(u64, Itt) -> bool) -> Vec<Itt> {
        let doomed: Vec<Itt> = self
            .tasks
            .values()
            .filter(|task| matches(task.lun, task.itt))
            .map(|task| task.itt)
            .collect();
        for itt in doomed {
            tracing::debug!(itt = itt.0, "task aborted");
            self.tasks.remove(&itt);
            for (_, h) in self.held.iter_mut() {
                if matches!(h, Held::Task(i) if *i == itt) {
                    *h = Held::Skip;
                }
            }
        }
        let mut running = Vec::new();
        for flight in self.in_flight.values_mut() {
            if matches(flight.task.lun, flight.task.itt) {
                tracing::debug!(itt = flight.task.itt.0, "in-flight task aborted");
                flight.aborted = true;
                running.push(flight.task.itt);
            }
        }
        running
    }
}

fn send_tmf_response(tx: &mut Tx, pending: &PendingTmf) {
    let pdu = TargetPdu::TaskManagementResponse {
        itt: pending.itt,
        response: pending.response,
        stat_sn: tx.take_stat_sn(),
        exp_cmd_sn: tx.exp_cmd_sn,
        max_cmd_sn: tx.max_cmd_sn(),
    };
    tx.send(&pdu, &[]);
    if pending.close {
        tx.close(Closing::AfterFlush);
    }
}
