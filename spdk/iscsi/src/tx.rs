//! The sending half of a connection: output bytes, StatSN, and the CmdSN
//! window the target advertises (RFC 7143 §4.2.2).

use crate::buffers::BufferPool;
use crate::pdu::{encode, Digests, TargetPdu, Ttt, BHS_LEN, RESERVED_TAG};
use crate::serial::CmdSn;

/// Commands the target accepts ahead of ExpCmdSN (MaxCmdSN - ExpCmdSN + 1).
/// Bounds the reorder queue and the commands an initiator can pile up.
pub(crate) const CMD_WINDOW: u32 = 128;

/// Reject reasons (RFC 7143 §11.17.1).
pub(crate) mod reject {
    pub const DATA_DIGEST_ERROR: u8 = 0x02;
    pub const PROTOCOL_ERROR: u8 = 0x04;
    pub const COMMAND_NOT_SUPPORTED: u8 = 0x05;
    pub const TASK_IN_PROGRESS: u8 = 0x07;
    pub const INVALID_PDU_FIELD: u8 = 0x09;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Closing {
    Open,
    /// Close once the pending output is written (after a Logout or a
    /// failed login, whose response must reach the initiator).
    AfterFlush,
    /// Close now; pending output is discarded.
    Now,
}

#[derive(Debug)]
pub(crate) struct Tx {
    buf: Vec<u8>,
    pos: usize,
    pub stat_sn: u32,
    /// The initiator's ExpStatSN: statuses up to here were received.
    acked_stat_sn: u32,
    pub exp_cmd_sn: CmdSn,
    pub digests: Digests,
    pub closing: Closing,
    next_ttt: u32,
    /// Payload buffers for Data-Out and Data-In, recycled.
    pub buffers: BufferPool,
}

impl Tx {
    pub fn new() -> Tx {
        Tx {
            buf: Vec::new(),
            pos: 0,
            stat_sn: 0,
            acked_stat_sn: 0,
            exp_cmd_sn: CmdSn(0),
            digests: Digests::default(),
            closing: Closing::Open,
            next_ttt: 0,
            buffers: BufferPool::default(),
        }
    }

    pub fn pending(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.buf.len() {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
    }

    pub fn close(&mut self, how: Closing) {
        if how == Closing::Now {
            self.buf.clear();
            self.pos = 0;
        }
        if self.closing != Closing::Now {
            self.closing = how;
        }
    }

    /// Starts StatSN numbering (at the first Login request's ExpStatSN).
    pub fn start_stat_sn(&mut self, stat_sn: u32) {
        self.stat_sn = stat_sn;
        self.acked_stat_sn = stat_sn;
    }

    /// Records an initiator's ExpStatSN (§4.2.2.2). One beyond the next
    /// StatSN acknowledges status never sent: logged, as the initiator is
    /// confused. Stale values (behind the last one) are ignored.
    pub fn acknowledge(&mut self, exp_stat_sn: u32) {
        let new = CmdSn(exp_stat_sn);
        if new > CmdSn(self.stat_sn) {
            tracing::debug!(
                exp_stat_sn,
                stat_sn = self.stat_sn,
                "ExpStatSN ahead of StatSN"
            );
        } else if new > CmdSn(self.acked_stat_sn) {
            self.acked_stat_sn = exp_stat_sn;
        }
    }

    pub fn max_cmd_sn(&self) -> CmdSn {
        self.exp_cmd_sn.advanced_by(CMD_WINDOW - 1)
    }

    /// StatSN for a status-carrying PDU; advances it (§4.2.2.2).
    pub fn take_stat_sn(&mut self) -> u32 {
        let s = self.stat_sn;
        self.stat_sn = self.stat_sn.wrapping_add(1);
        s
    }

    pub fn new_ttt(&mut self) -> Ttt {
        if self.next_ttt == RESERVED_TAG {
            self.next_ttt = 0;
        }
        let t = Ttt(self.next_ttt);
        self.next_ttt += 1;
        t
    }

    pub fn send(&mut self, pdu: &TargetPdu, data: &[u8]) {
        if self.closing == Closing::Now {
            return;
        }
        encode(pdu, data, self.digests, &mut self.buf);
    }

    /// Rejects a PDU, returning its header to the initiator (§11.17).
    pub fn reject(&mut self, reason: u8, header: &[u8; BHS_LEN]) {
        tracing::debug!(reason, opcode = header[0] & 0x3f, "reject");
        let pdu = TargetPdu::Reject {
            reason,
            stat_sn: self.take_stat_sn(),
            exp_cmd_sn: self.exp_cmd_sn,
            max_cmd_sn: self.max_cmd_sn(),
            data_sn: 0,
        };
        self.send(&pdu, header);
    }
}
