//! Per-command state: collecting Data-Out (immediate, unsolicited, then
//! solicited by R2T) until the command can execute (RFC 7143 §4.7, §11.7,
//! §11.8), and residual computation (§11.4.5).
//!
//! Data-Out must arrive in offset order: we negotiate DataPDUInOrder=Yes
//! and DataSequenceInOrder=Yes, so one `received` cursor validates it all.
//! R2Ts are issued once the unsolicited burst is over, from the cursor on.

use reservoir_scsi::{AlignedBuf, Command, Completion, DataDirection, Transfer};

use crate::buffers::BufferPool;
use crate::login::OUR_MAX_OUTSTANDING_R2T;
use crate::pdu::{DataOut, Itt, Residual, Ttt, RESERVED_TAG};

/// A task's Data-Out buffer is sized for its whole transfer up to this
/// much; beyond it the buffer grows as data arrives, so that a command
/// announcing a huge transfer cannot make us reserve memory for it.
const PREALLOCATE_MAX: usize = 1 << 20;

/// An R2T we sent and whose data is not complete yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Solicited {
    pub ttt: Ttt,
    pub offset: u32,
    pub len: u32,
    pub next_data_sn: u32,
}

/// An R2T to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct R2tOut {
    pub ttt: Ttt,
    pub r2t_sn: u32,
    pub offset: u32,
    pub len: u32,
}

/// The R2Ts in flight, oldest first. Negotiation caps MaxOutstandingR2T at
/// [`OUR_MAX_OUTSTANDING_R2T`], so they fit inline and a task that solicits
/// data allocates nothing for it.
#[derive(Debug)]
struct Outstanding {
    r2ts: [Solicited; OUR_MAX_OUTSTANDING_R2T as usize],
    len: usize,
}

impl Default for Outstanding {
    fn default() -> Self {
        let unused = Solicited {
            ttt: Ttt::RESERVED,
            offset: 0,
            len: 0,
            next_data_sn: 0,
        };
        Outstanding {
            r2ts: [unused; OUR_MAX_OUTSTANDING_R2T as usize],
            len: 0,
        }
    }
}

impl Outstanding {
    fn as_slice(&self) -> &[Solicited] {
        &self.r2ts[..self.len]
    }

    fn len(&self) -> u32 {
        self.len as u32
    }

    fn is_full(&self) -> bool {
        self.len == self.r2ts.len()
    }

    fn push(&mut self, r2t: Solicited) {
        self.r2ts[self.len] = r2t;
        self.len += 1;
    }

    fn remove(&mut self, i: usize) {
        self.r2ts[i..self.len].rotate_left(1);
        self.len -= 1;
    }
}

/// Why a Data-Out cannot be accepted: a protocol error (§11.17.1 reason 04h).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DataOutError {
    #[error("unsolicited Data-Out was not allowed or exceeds FirstBurstLength")]
    Unsolicited,
    #[error("Data-Out names a target transfer tag we did not issue")]
    UnknownTtt,
    #[error("DataSN {got} where {expected} was due")]
    DataSn { expected: u32, got: u32 },
    #[error("buffer offset {got} where {expected} was due")]
    Offset { expected: u32, got: u32 },
    #[error("Data-Out reaches past the range requested")]
    Overrun,
    #[error("final Data-Out before the requested range was complete")]
    ShortSequence,
}

#[derive(Debug)]
pub(crate) struct Task {
    pub itt: Itt,
    pub lun: u64,
    /// The parsed CDB, or the completion its parse failed with.
    pub command: Result<Command, Completion>,
    pub transfer: Transfer,
    pub expected_len: u32,
    /// The command's CmdSN turn has come (§4.2.2.1 ordering).
    pub delivered: bool,
    /// The nexus's abort epoch for the LUN when the command arrived; a
    /// PREEMPT AND ABORT from another nexus moves it (SPC-4 5.13.11.5).
    pub abort_epoch: u64,
    /// Untagged or SIMPLE (SAM-5 8.6): it may run in any order relative
    /// to other such tasks; ORDERED and the rest wait for earlier tasks.
    pub simple: bool,
    /// Data-Out received so far, from offset 0.
    pub data: AlignedBuf,
    /// Bytes to solicit: min(EDTL, CDB transfer length).
    wanted: u32,
    /// End of the unsolicited burst while it is still open.
    unsolicited_end: Option<u32>,
    unsolicited_data_sn: u32,
    solicited: Outstanding,
    next_r2t_sn: u32,
}

impl Task {
    /// A task for a command whose immediate data is `immediate`; its data
    /// buffer comes from `buffers`. `unsolicited_limit` is where
    /// unsolicited Data-Out must stop, or None when none will follow (F bit
    /// set, or InitialR2T=Yes).
    pub fn new(
        itt: Itt,
        lun: u64,
        command: Result<Command, Completion>,
        expected_len: u32,
        immediate: &[u8],
        unsolicited_limit: Option<u32>,
        buffers: &mut BufferPool,
    ) -> Task {
        // A command that failed to parse moves no data.
        let transfer = command.as_ref().map_or(
            Transfer {
                direction: DataDirection::None,
                bytes: 0,
            },
            |c| c.transfer(),
        );
        let wanted = match transfer.direction {
            DataDirection::Out => u32::try_from(transfer.bytes)
                .unwrap_or(u32::MAX)
                .min(expected_len),
            DataDirection::In | DataDirection::None => 0,
        };
        let mut data = buffers.take((wanted as usize).min(PREALLOCATE_MAX).max(immediate.len()));
        data.extend_from_slice(immediate);
        let received = immediate.len() as u32;
        Task {
            itt,
            lun,
            command,
            transfer,
            expected_len,
            delivered: false,
            abort_epoch: 0,
            simple: true,
            data,
            wanted,
            unsolicited_end: unsolicited_limit.filter(|end| *end > received),
            unsolicited_data_sn: 0,
            solicited: Outstanding::default(),
            next_r2t_sn: 0,
        }
    }

    fn received(&self) -> u32 {
        self.data.len() as u32
    }

    /// All Data-Out is in: the command can run once delivered.
    pub fn data_complete(&self) -> bool {
        self.unsolicited_end.is_none()
            && self.solicited.len() == 0
            && self.received() >= self.wanted
    }

    /// Accepts one Data-Out PDU (§11.7).
    pub fn data_out(&mut self, pdu: &DataOut, data: &[u8]) -> Result<(), DataOutError> {
        let len = data.len() as u32;
        let expect_offset = |got: u32, expected: u32| match got == expected {
            true => Ok(()),
            false => Err(DataOutError::Offset { expected, got }),
        };
        let expect_sn = |got: u32, expected: u32| match got == expected {
            true => Ok(()),
            false => Err(DataOutError::DataSn { expected, got }),
        };
        if pdu.ttt.0 == RESERVED_TAG {
            let end = self.unsolicited_end.ok_or(DataOutError::Unsolicited)?;
            expect_sn(pdu.data_sn, self.unsolicited_data_sn)?;
            expect_offset(pdu.buffer_offset, self.received())?;
            let new_end = self
                .received()
                .checked_add(len)
                .ok_or(DataOutError::Unsolicited)?;
            if new_end > end {
                return Err(DataOutError::Unsolicited);
            }
            self.data.extend_from_slice(data);
            self.unsolicited_data_sn += 1;
            if pdu.final_ || new_end == end {
                self.unsolicited_end = None;
            }
            return Ok(());
        }
        let received = self.received();
        let i = self
            .solicited
            .as_slice()
            .iter()
            .position(|s| s.ttt == pdu.ttt)
            .ok_or(DataOutError::UnknownTtt)?;
        let s = &mut self.solicited.r2ts[i];
        expect_sn(pdu.data_sn, s.next_data_sn)?;
        expect_offset(pdu.buffer_offset, received)?;
        let r2t_end = s.offset + s.len;
        let new_end = received.checked_add(len).ok_or(DataOutError::Overrun)?;
        if new_end > r2t_end {
            return Err(DataOutError::Overrun);
        }
        if pdu.final_ && new_end != r2t_end {
            return Err(DataOutError::ShortSequence);
        }
        s.next_data_sn += 1;
        self.data.extend_from_slice(data);
        if new_end == r2t_end {
            self.solicited.remove(i);
        }
        Ok(())
    }

    /// The next R2T to send now, if any: from the cursor, at most
    /// `max_burst` long, keeping at most `max_outstanding` open (§11.8).
    /// Nothing while the unsolicited burst is open or before the task's
    /// CmdSN turn. `new_ttt` is called only for an R2T that is returned.
    pub fn next_r2t(
        &mut self,
        max_burst: u32,
        max_outstanding: u32,
        new_ttt: impl FnOnce() -> Ttt,
    ) -> Option<R2tOut> {
        if !self.delivered || self.unsolicited_end.is_some() {
            return None;
        }
        let next = self
            .solicited
            .as_slice()
            .last()
            .map_or(self.received(), |s| s.offset + s.len);
        if next >= self.wanted
            || self.solicited.len() >= max_outstanding
            || self.solicited.is_full()
        {
            return None;
        }
        let len = (self.wanted - next).min(max_burst);
        let r2t = R2tOut {
            ttt: new_ttt(),
            r2t_sn: self.next_r2t_sn,
            offset: next,
            len,
        };
        self.next_r2t_sn += 1;
        self.solicited.push(Solicited {
            ttt: r2t.ttt,
            offset: next,
            len,
            next_data_sn: 0,
        });
        Some(r2t)
    }

    /// The R2TSN to number the next R2T with; also the ExpDataSN a write's
    /// SCSI Response carries (§11.4.8: R2Ts count for writes).
    pub fn r2t_count(&self) -> u32 {
        self.next_r2t_sn
    }
}

/// Residual for a command (§11.4.5.1): overflow when the CDB asks for more
/// than the initiator expected, underflow when fewer bytes than expected moved.
pub(crate) fn residual(expected_len: u32, transfer: &Transfer, moved: u64) -> Residual {
    let expected = u64::from(expected_len);
    let sat = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
    if transfer.bytes > expected {
        Residual::Overflow(sat(transfer.bytes - expected))
    } else if moved < expected {
        Residual::Underflow(sat(expected - moved))
    } else {
        Residual::None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(bytes: u64) -> Transfer {
        Transfer {
            direction: DataDirection::In,
            bytes,
        }
    }

    #[test]
    fn residuals() {
        assert_eq!(residual(512, &t(512), 512), Residual::None);
        assert_eq!(residual(200, &t(512), 200), Residual::Overflow(312));
        assert_eq!(residual(0, &t(512), 0), Residual::Overflow(512));
        assert_eq!(residual(10000, &t(512), 512), Residual::Underflow(9488));
        // INQUIRY returning 36 of 255 allocated bytes.
        assert_eq!(residual(255, &t(255), 36), Residual::Underflow(219));
        assert_eq!(residual(4096, &t(0), 0), Residual::Underflow(4096));
    }
}
