//! The sending half of a connection: output, StatSN, and the CmdSN window
//! the target advertises (RFC 7143 §4.2.2).
//!
//! Output is a gather list, written with one `writev` per turn: encoded
//! bytes (headers, digests, padding, small data segments) in one buffer,
//! and Data-In payloads sent straight from the buffer the SCSI layer read
//! them into, which returns to the pool once written.
//!
//! ```text
//! bytes:    [hdr A][hdr B|pad B][hdr C ...
//! payloads:        ^at B         ^at C        (each: a range of a source)
//! wire:     hdr A, hdr B, data B, pad B, hdr C, data C, ...
//! ```

use std::collections::VecDeque;
use std::io::IoSlice;
use std::ops::Range;

use reservoir_scsi::AlignedBuf;

use crate::buffers::BufferPool;
use crate::pdu::{
    encode, encode_header, encode_trailer, Digests, TargetPdu, Ttt, BHS_LEN, RESERVED_TAG,
};
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

/// A data segment sent from a source buffer rather than from `bytes`.
#[derive(Debug)]
struct Payload {
    /// It goes out once `bytes[..at]` has.
    at: usize,
    /// The part of its source not written yet.
    range: Range<usize>,
    /// No later payload comes from the same source: once this one is
    /// written, the source goes back to the pool.
    last: bool,
}

#[derive(Debug)]
pub(crate) struct Tx {
    /// Encoded output; `bytes[..pos]` is written.
    bytes: Vec<u8>,
    pos: usize,
    payloads: VecDeque<Payload>,
    /// The buffers payloads are sent from, oldest first; the front payload
    /// always comes from the front source.
    sources: VecDeque<AlignedBuf>,
    /// Bytes of `payloads` not written yet.
    payload_len: usize,
    pub stat_sn: u32,
    /// The initiator's ExpStatSN: statuses up to here were received.
    acked_stat_sn: u32,
    pub exp_cmd_sn: CmdSn,
    /// The largest MaxCmdSN handed out so far.
    advertised_max: CmdSn,
    /// Commands whose block I/O runs on a worker thread.
    pub in_flight: u32,
    pub digests: Digests,
    pub closing: Closing,
    next_ttt: u32,
    /// Payload buffers for Data-Out and Data-In, recycled.
    pub buffers: BufferPool,
}

impl Tx {
    pub fn new() -> Tx {
        Tx {
            bytes: Vec::new(),
            pos: 0,
            payloads: VecDeque::new(),
            sources: VecDeque::new(),
            payload_len: 0,
            stat_sn: 0,
            acked_stat_sn: 0,
            exp_cmd_sn: CmdSn(0),
            advertised_max: CmdSn(0),
            in_flight: 0,
            digests: Digests::default(),
            closing: Closing::Open,
            next_ttt: 0,
            buffers: BufferPool::default(),
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending_len(&self) -> usize {
        self.bytes.len() - self.pos + self.payload_len
    }

    /// Fills `slices` with the output to write next, in order; returns how
    /// many it filled (fewer than all when `slices` is too short).
    pub fn output_slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        let mut push = |slice: &'a [u8]| {
            if filled < slices.len() && !slice.is_empty() {
                slices[filled] = IoSlice::new(slice);
                filled += 1;
            }
            filled < slices.len()
        };
        let mut pos = self.pos;
        let mut sources = self.sources.iter();
        let mut source = sources.next();
        for payload in &self.payloads {
            let Some(buffer) = source else { break };
            if !push(&self.bytes[pos..payload.at]) || !push(&buffer[payload.range.clone()]) {
                return filled;
            }
            pos = payload.at;
            if payload.last {
                source = sources.next();
            }
        }
        push(&self.bytes[pos..]);
        filled
    }

    /// `n` bytes of the output were written.
    pub fn consume(&mut self, mut n: usize) {
        while n > 0 {
            let Some(front) = self.payloads.front_mut() else {
                self.pos = (self.pos + n).min(self.bytes.len());
                break;
            };
            if self.pos < front.at {
                let k = n.min(front.at - self.pos);
                self.pos += k;
                n -= k;
                continue;
            }
            let k = n.min(front.range.len());
            front.range.start += k;
            self.payload_len -= k;
            n -= k;
            if front.range.is_empty() {
                let last = front.last;
                self.payloads.pop_front();
                if last {
                    if let Some(source) = self.sources.pop_front() {
                        self.buffers.give(source);
                    }
                }
            }
        }
        if self.pos == self.bytes.len() && self.payloads.is_empty() {
            self.bytes.clear();
            self.pos = 0;
        } else if self.pos > 64 * 1024 && self.pos * 2 > self.bytes.len() {
            self.bytes.drain(..self.pos);
            for payload in &mut self.payloads {
                payload.at -= self.pos;
            }
            self.pos = 0;
        }
    }

    pub fn close(&mut self, how: Closing) {
        if how == Closing::Now {
            self.bytes.clear();
            self.pos = 0;
            self.payloads.clear();
            self.payload_len = 0;
            while let Some(source) = self.sources.pop_front() {
                self.buffers.give(source);
            }
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

    /// The session's first CmdSN is the login's (§4.2.2.1).
    pub fn start_cmd_sn(&mut self, cmd_sn: CmdSn) {
        self.exp_cmd_sn = cmd_sn;
        self.advertised_max = cmd_sn.advanced_by(CMD_WINDOW - 1);
    }

    /// MaxCmdSN (§4.2.2.1): the window is [`CMD_WINDOW`] commands, less
    /// those still running on a worker, so commands accepted and not yet
    /// answered stay bounded. It never moves back: an initiator ignores a
    /// smaller value and may already use the room it was given.
    pub fn max_cmd_sn(&mut self) -> CmdSn {
        let room = (CMD_WINDOW - 1).saturating_sub(self.in_flight);
        let max = self.exp_cmd_sn.advanced_by(room);
        if max > self.advertised_max {
            self.advertised_max = max;
        }
        self.advertised_max
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
        encode(pdu, data, self.digests, &mut self.bytes);
    }

    /// Makes `buffer` the source that [`Tx::send_from_source`] sends from.
    pub fn push_source(&mut self, buffer: AlignedBuf) {
        if self.closing == Closing::Now {
            self.buffers.give(buffer);
            return;
        }
        self.sources.push_back(buffer);
    }

    /// Sends `pdu` with `range` of the newest source as its data segment,
    /// without copying it. `last` says no further PDU uses that source.
    pub fn send_from_source(&mut self, pdu: &TargetPdu, range: Range<usize>, last: bool) {
        if self.closing == Closing::Now {
            return;
        }
        let source = self.sources.back().expect("a source was pushed");
        debug_assert!(!range.is_empty() && range.end <= source.len());
        encode_header(pdu, range.len(), self.digests, &mut self.bytes);
        self.payloads.push_back(Payload {
            at: self.bytes.len(),
            range: range.clone(),
            last,
        });
        self.payload_len += range.len();
        encode_trailer(&source[range], self.digests, &mut self.bytes);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reject(tx: &mut Tx, byte: u8) {
        tx.reject(reject::PROTOCOL_ERROR, &[byte; BHS_LEN]);
    }

    fn data_in(tx: &mut Tx, range: Range<usize>, last: bool) {
        let pdu = TargetPdu::DataIn {
            final_: last,
            status: None,
            residual: crate::pdu::Residual::None,
            lun: 0,
            itt: crate::pdu::Itt(1),
            stat_sn: 0,
            exp_cmd_sn: CmdSn(1),
            max_cmd_sn: CmdSn(2),
            data_sn: 0,
            buffer_offset: range.start as u32,
        };
        tx.send_from_source(&pdu, range, last);
    }

    /// Everything the output slices yield, as `writev` would send it.
    fn gathered(tx: &Tx) -> Vec<u8> {
        let mut slices = [IoSlice::new(&[]); 3];
        let n = tx.output_slices(&mut slices);
        slices[..n].iter().flat_map(|s| s.iter().copied()).collect()
    }

    fn queue(digests: Digests) -> Tx {
        let mut tx = Tx::new();
        tx.digests = digests;
        reject(&mut tx, 1);
        tx.push_source(AlignedBuf::from(&(0..10u8).collect::<Vec<_>>()[..]));
        data_in(&mut tx, 0..6, false);
        data_in(&mut tx, 6..10, true);
        reject(&mut tx, 2);
        tx.push_source(AlignedBuf::from(&[0xee; 3][..]));
        data_in(&mut tx, 0..3, true);
        tx
    }

    /// The whole stream, taken a few slices and a few bytes at a time.
    fn drain(mut tx: Tx, step: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while tx.pending_len() > 0 {
            let chunk = gathered(&tx);
            let n = chunk.len().min(step);
            wire.extend_from_slice(&chunk[..n]);
            tx.consume(n);
        }
        assert!(tx.sources.is_empty() && tx.bytes.is_empty());
        wire
    }

    #[test]
    fn gathered_output_is_the_copied_stream() {
        for digests in [
            Digests::default(),
            Digests {
                header: true,
                data: true,
            },
        ] {
            // The same PDUs with their data copied into the byte stream.
            let mut copied = Tx::new();
            copied.digests = digests;
            reject(&mut copied, 1);
            let pdu = |offset: u32, last: bool| TargetPdu::DataIn {
                final_: last,
                status: None,
                residual: crate::pdu::Residual::None,
                lun: 0,
                itt: crate::pdu::Itt(1),
                stat_sn: 0,
                exp_cmd_sn: CmdSn(1),
                max_cmd_sn: CmdSn(2),
                data_sn: 0,
                buffer_offset: offset,
            };
            copied.send(&pdu(0, false), &[0, 1, 2, 3, 4, 5]);
            copied.send(&pdu(6, true), &[6, 7, 8, 9]);
            reject(&mut copied, 2);
            copied.send(&pdu(0, true), &[0xee; 3]);
            let expected = drain(copied, usize::MAX);
            assert_eq!(queue(digests).pending_len(), expected.len());
            for step in [1, 5, 48, 53, usize::MAX] {
                assert_eq!(drain(queue(digests), step), expected, "step {step}");
            }
        }
    }

    #[test]
    fn sources_return_to_the_pool_once_written_or_dropped() {
        let sources =
            |tx: &Tx| -> Vec<*const u8> { tx.sources.iter().map(|s| s.as_ptr()).collect() };
        let pooled = |tx: &mut Tx| -> Vec<*const u8> {
            let (a, b) = (tx.buffers.take(3), tx.buffers.take(3));
            let mut ptrs = vec![a.as_ptr(), b.as_ptr()];
            ptrs.sort();
            ptrs
        };
        let mut tx = queue(Digests::default());
        let mut before = sources(&tx);
        before.sort();
        let all = tx.pending_len();
        tx.consume(all);
        assert_eq!(pooled(&mut tx), before, "both sources back in the pool");
        let mut tx = queue(Digests::default());
        let mut before = sources(&tx);
        before.sort();
        tx.close(Closing::Now);
        assert_eq!(tx.pending_len(), 0);
        assert!(tx.sources.is_empty());
        assert_eq!(pooled(&mut tx), before, "both sources back in the pool");
    }
}
