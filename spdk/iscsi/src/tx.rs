//! The sending half of a connection: output, StatSN, and the CmdSN window
//! the target advertises (RFC 7143 §4.2.2).
//!
//! Output is a gather list, written with one `writev` per turn: encoded
//! bytes (headers, digests, padding, small data segments) in one buffer,
//! and Data-In payloads sent straight from the buffer the SCSI layer read
//! them into, which returns to the pool once written, or straight from a
//! RAM volume's memory ([`LentRead`]): that source is written with a
//! `writev` of its own, under the volume's read lock.
//!
//! ```text
//! bytes:    [hdr A][hdr B|pad B][hdr C ...
//! payloads:        ^at B         ^at C        (each: a range of a source)
//! wire:     hdr A, hdr B, data B, pad B, hdr C, data C, ...
//! ```

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::ops::Range;

use reservoir_scsi::{AlignedBuf, Lent, LentRead};

use crate::buffers::BufferPool;
use crate::pdu::{
    encode, encode_header, encode_padding, encode_trailer, Digests, TargetPdu, Ttt, BHS_LEN,
    RESERVED_TAG,
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

/// Slices per `writev`: headers and payloads of about 60 PDUs, so a full
/// command window's responses take a call or two (IOV_MAX is 1024).
const WRITE_SLICES: usize = 128;

/// Lent reads one `writev` may send from: two slices each (header, data).
const MAX_LENT: usize = WRITE_SLICES / 2;

/// Where a command's read data is sent from.
#[derive(Debug)]
pub(crate) enum Source {
    /// A buffer the data was read into; back to the pool once written.
    Buffer(AlignedBuf),
    /// The volume's memory, lent while it is written.
    Lent(LentRead),
}

impl Source {
    pub fn len(&self) -> usize {
        match self {
            Source::Buffer(buffer) => buffer.len(),
            Source::Lent(read) => read.len(),
        }
    }

    /// Sends at most `len` bytes.
    pub fn truncate(&mut self, len: usize) {
        match self {
            Source::Buffer(buffer) => buffer.truncate(len),
            Source::Lent(read) => read.truncate(len),
        }
    }
}

/// A data segment sent from a source rather than from `bytes`.
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
    /// What payloads are sent from, oldest first; the front payload
    /// always comes from the front source.
    sources: VecDeque<Source>,
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

    /// Writes pending output with one call of `write` (a `writev`) and
    /// returns how many bytes it took. Lent sources are written straight
    /// from the volume, under its read locks: the first one the call
    /// reaches waits for writers, later ones go into the same call only if
    /// no writer holds or waits for them (so the reactor never waits for a
    /// writer that waits for it). A lent source the socket takes only part
    /// of has its rest copied into a buffer before the locks are released,
    /// so its data stays what it was when its first byte went out. Fails
    /// when `write` does, or when the volume shrank below a lent read
    /// (the connection must end: the read's header is out).
    pub fn write_out(
        &mut self,
        write: &mut dyn FnMut(&[IoSlice<'_>]) -> io::Result<usize>,
    ) -> io::Result<usize> {
        let reads: [Option<LentRead>; MAX_LENT] = {
            let mut lent = self.sources.iter().filter_map(|source| match source {
                Source::Lent(read) => Some(read.clone()),
                Source::Buffer(_) => None,
            });
            std::array::from_fn(|_| lent.next())
        };
        let mut loans: [Option<Lent<'_>>; MAX_LENT] = std::array::from_fn(|_| None);
        for (i, read) in reads.iter().enumerate() {
            let Some(read) = read else { break };
            let loan = if i == 0 {
                Some(read.lend())
            } else {
                read.try_lend().transpose()
            };
            match loan {
                Some(Ok(lent)) => loans[i] = Some(lent),
                Some(Err(reason)) => {
                    return Err(io::Error::other(format!("lent read failed: {reason:?}")))
                }
                None => break,
            }
        }
        let lent_before = self.lent_count();
        let written = {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let n = self.gather(&loans, &mut slices);
            write(&slices[..n])?
        };
        self.consume(written);
        // The source now in front was cut short if it is lent and was
        // gathered: keep the rest of it as it is now.
        let done = lent_before - self.lent_count();
        if let (Some(Source::Lent(_)), Some(Some(lent))) = (self.sources.front(), loans.get(done)) {
            self.keep_unwritten(lent);
        }
        Ok(written)
    }

    fn lent_count(&self) -> usize {
        self.sources
            .iter()
            .filter(|source| matches!(source, Source::Lent(_)))
            .count()
    }

    /// Fills `slices` with the output to write next, in order, and returns
    /// how many it filled, stopping at the data of the first lent source
    /// without a loan in `loans` (the lent sources' data, in order).
    fn gather<'a>(&'a self, loans: &'a [Option<Lent<'_>>], slices: &mut [IoSlice<'a>]) -> usize {
        let mut filled = 0;
        let mut push = |slice: &'a [u8]| {
            if filled < slices.len() && !slice.is_empty() {
                slices[filled] = IoSlice::new(slice);
                filled += 1;
            }
            filled < slices.len()
        };
        let mut pos = self.pos;
        let mut loans = loans.iter();
        let mut sources = self.sources.iter();
        let mut source = match sources.next() {
            Some(Source::Lent(_)) => loans.next().and_then(Option::as_deref),
            Some(Source::Buffer(buffer)) => Some(&buffer[..]),
            None => None,
        };
        for payload in &self.payloads {
            let Some(data) = source else {
                // A lent source without a loan: its header may go, not its data.
                push(&self.bytes[pos..payload.at]);
                return filled;
            };
            if !push(&self.bytes[pos..payload.at]) || !push(&data[payload.range.clone()]) {
                return filled;
            }
            pos = payload.at;
            if payload.last {
                source = match sources.next() {
                    Some(Source::Lent(_)) => loans.next().and_then(Option::as_deref),
                    Some(Source::Buffer(buffer)) => Some(&buffer[..]),
                    None => None,
                };
            }
        }
        push(&self.bytes[pos..]);
        filled
    }

    /// The front source is lent and only partly written: its unwritten
    /// rest moves into a buffer (at the same offsets), copied from `data`
    /// while the volume is still locked.
    fn keep_unwritten(&mut self, data: &[u8]) {
        let from = self.payloads.front().map_or(data.len(), |p| p.range.start);
        let mut buffer = self.buffers.take(data.len());
        buffer.resize_to_overwrite(data.len());
        buffer[from..].copy_from_slice(&data[from..]);
        self.sources[0] = Source::Buffer(buffer);
    }

    /// Copies the data of every lent source into a buffer now, so that
    /// no command that runs from here on can change what they send.
    pub fn fix_lent_data(&mut self) -> Result<(), reservoir_scsi::SenseReason> {
        for i in 0..self.sources.len() {
            let Source::Lent(read) = &self.sources[i] else {
                continue;
            };
            let mut buffer = self.buffers.take(read.len());
            buffer.extend_from_slice(&read.lend()?);
            self.sources[i] = Source::Buffer(buffer);
        }
        Ok(())
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
                        self.recycle(source);
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
                self.recycle(source);
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

    /// Makes `source` the one [`Tx::send_from_source`] sends from.
    pub fn push_source(&mut self, source: Source) {
        if self.closing == Closing::Now {
            self.recycle(source);
            return;
        }
        self.sources.push_back(source);
    }

    /// A source that is done with: its buffer goes back to the pool.
    pub fn recycle(&mut self, source: Source) {
        if let Source::Buffer(buffer) = source {
            self.buffers.give(buffer);
        }
    }

    /// Sends `pdu` with `range` of the newest source as its data segment,
    /// without copying it. `last` says no further PDU uses that source.
    /// Data digests cover data, so a lent source cannot be sent with them.
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
        match source {
            Source::Buffer(buffer) => encode_trailer(&buffer[range], self.digests, &mut self.bytes),
            Source::Lent(_) => {
                assert!(!self.digests.data, "lent data cannot carry a data digest");
                encode_padding(range.len(), &mut self.bytes);
            }
        }
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

    fn queue(digests: Digests) -> Tx {
        let mut tx = Tx::new();
        tx.digests = digests;
        reject(&mut tx, 1);
        tx.push_source(Source::Buffer(AlignedBuf::from(
            &(0..10u8).collect::<Vec<_>>()[..],
        )));
        data_in(&mut tx, 0..6, false);
        data_in(&mut tx, 6..10, true);
        reject(&mut tx, 2);
        tx.push_source(Source::Buffer(AlignedBuf::from(&[0xee; 3][..])));
        data_in(&mut tx, 0..3, true);
        tx
    }

    /// The whole stream, as a socket that takes at most `step` bytes per
    /// `writev` receives it.
    fn drain(mut tx: Tx, step: usize) -> Vec<u8> {
        let mut wire = Vec::new();
        while tx.pending_len() > 0 {
            tx.write_out(&mut |slices| {
                let before = wire.len();
                for slice in slices {
                    let room = step - (wire.len() - before);
                    wire.extend_from_slice(&slice[..slice.len().min(room)]);
                }
                Ok(wire.len() - before)
            })
            .unwrap();
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
        let sources = |tx: &Tx| -> Vec<*const u8> {
            tx.sources
                .iter()
                .map(|s| match s {
                    Source::Buffer(buffer) => buffer.as_ptr(),
                    Source::Lent(_) => panic!("no lent sources here"),
                })
                .collect()
        };
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
