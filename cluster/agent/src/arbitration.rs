//! Lamport's fast mutual exclusion (ACM TOCS 5(1), 1987) on disk blocks of
//! a quorum replica, to pick one contender before the reservation step.
//!
//! Shared variables, one block each: `x`, `y` and a flag `b[i]` per node.
//!
//! ```text
//! start: b[i] := 1; x := i
//!        if y ≠ 0 { b[i] := 0; await y = 0; goto start }
//!        y := i
//!        if x ≠ i { b[i] := 0; for each j: await b[j] = 0
//!                   if y ≠ i { await y = 0; goto start } }
//!        -- critical section: challenge / reserve the replica --
//!        y := 0; b[i] := 0
//! ```
//!
//! Without contention a contender gets in with five block accesses. Lamport's
//! algorithm assumes processes do not die inside it; here a contender that
//! waits longer than `stale_ms` on a variable treats its writer as dead
//! (clearing a stale `y`). That can let two contenders in at once after a
//! crash — harmless, because mutual exclusion here only spares contenders a
//! reservation race: the reservation itself is what is exclusive.

use crate::disk::{DiskOp, DiskReply, DiskResult};
use crate::keys::NodeId;
use crate::time::Millis;

/// Block of `x`.
pub const LBA_X: u64 = 1;
/// Block of `y`.
pub const LBA_Y: u64 = 2;
/// Block of `b[1]`; `b[i]` is at `LBA_B + i - 1`.
pub const LBA_B: u64 = 16;

/// A variable as stored: the value (a node id, or 0/1 for flags), then its
/// CRC32C. A block never written reads as zeros, which decodes to 0; a torn
/// or foreign block (bad CRC) also reads as 0 so a contender never waits on
/// garbage.
pub fn encode_var(value: u32, block_size: usize) -> Vec<u8> {
    let mut block = vec![0; block_size];
    block[..4].copy_from_slice(&value.to_be_bytes());
    block[4..8].copy_from_slice(&crc32c::crc32c(&value.to_be_bytes()).to_be_bytes());
    block
}

pub fn decode_var(block: &[u8]) -> u32 {
    let (Some(value), Some(crc)) = (block.get(..4), block.get(4..8)) else {
        return 0;
    };
    if crc32c::crc32c(value).to_be_bytes() != crc {
        return 0;
    }
    u32::from_be_bytes(value.try_into().expect("four bytes"))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MutexInput {
    Tick,
    Reply(DiskResult),
    /// Enter (or keep trying to enter).
    Enter,
    /// Leave the critical section (or give up trying).
    Exit,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MutexEffect {
    Issue(DiskOp),
    /// We are in the critical section.
    Entered,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    Idle,
    SetFlag,
    SetX,
    ReadY1,
    ClearFlagThenWaitY,
    WaitY { since: Millis },
    SetY,
    ReadX,
    ClearFlagThenScan,
    ScanFlag { j: u8, since: Millis },
    ReadY2,
    Inside,
    ExitY,
    ExitFlag,
}

/// One node's side of the algorithm on one replica.
#[derive(Debug, Clone)]
pub struct FastMutex {
    me: NodeId,
    /// Highest node id in the cluster: the `b[j]` to scan.
    max_node: u8,
    block_size: usize,
    stale_ms: u64,
    poll_ms: u64,
    step: Step,
    in_flight: bool,
    next: Millis,
    want: bool,
}

impl FastMutex {
    /// `poll_ms`: pause between reads of a variable we wait on; `stale_ms`:
    /// how long a wait lasts before its writer is presumed dead.
    pub fn new(me: NodeId, max_node: u8, block_size: usize, poll_ms: u64, stale_ms: u64) -> Self {
        FastMutex {
            me,
            max_node,
            block_size,
            stale_ms,
            poll_ms,
            step: Step::Idle,
            in_flight: false,
            next: Millis(0),
            want: false,
        }
    }

    pub fn is_inside(&self) -> bool {
        self.step == Step::Inside
    }

    pub fn is_idle(&self) -> bool {
        self.step == Step::Idle && !self.in_flight
    }

    fn me(&self) -> u32 {
        u32::from(self.me.get())
    }

    fn write(&self, lba: u64, value: u32) -> DiskOp {
        DiskOp::WriteBlock {
            lba,
            data: encode_var(value, self.block_size),
        }
    }

    fn flag(&self, node: u8) -> u64 {
        LBA_B + u64::from(node) - 1
    }

    pub fn apply(&mut self, now: Millis, input: MutexInput) -> Vec<MutexEffect> {
        let mut fx = Vec::new();
        match input {
            MutexInput::Enter => {
                self.want = true;
                if self.step == Step::Idle {
                    self.step = Step::SetFlag;
                    self.next = now;
                }
            }
            MutexInput::Exit => {
                self.want = false;
                if self.step != Step::Idle {
                    self.step = Step::ExitY;
                    self.next = now;
                }
            }
            MutexInput::Tick => {}
            MutexInput::Reply(result) => {
                self.in_flight = false;
                self.on_reply(now, result, &mut fx);
            }
        }
        if !self.in_flight && now >= self.next {
            if let Some(op) = self.op_for_step(now) {
                self.in_flight = true;
                fx.push(MutexEffect::Issue(op));
            }
        }
        fx
    }

    /// The command the current step issues, if any.
    fn op_for_step(&mut self, now: Millis) -> Option<DiskOp> {
        let me = self.me();
        Some(match self.step {
            Step::Idle | Step::Inside => return None,
            Step::SetFlag => self.write(self.flag(self.me.get()), 1),
            Step::SetX => self.write(LBA_X, me),
            Step::ReadY1 | Step::ReadY2 => DiskOp::ReadBlock { lba: LBA_Y },
            Step::ClearFlagThenWaitY | Step::ClearFlagThenScan | Step::ExitFlag => {
                self.write(self.flag(self.me.get()), 0)
            }
            Step::WaitY { since } => {
                if now - since > self.stale_ms {
                    // Whoever set y died inside: clear it for everyone.
                    self.step = Step::WaitY { since: now };
                    self.write(LBA_Y, 0)
                } else {
                    DiskOp::ReadBlock { lba: LBA_Y }
                }
            }
            Step::SetY => self.write(LBA_Y, me),
            Step::ReadX => DiskOp::ReadBlock { lba: LBA_X },
            Step::ScanFlag { j, .. } => DiskOp::ReadBlock { lba: self.flag(j) },
            Step::ExitY => self.write(LBA_Y, 0),
        })
    }

    /// Scan `b[j]` from `j` on, skipping our own flag.
    fn scan_from(&self, j: u8, now: Millis) -> Step {
        let j = if j == self.me.get() { j + 1 } else { j };
        if j > self.max_node {
            Step::ReadY2
        } else {
            Step::ScanFlag { j, since: now }
        }
    }

    fn on_reply(&mut self, now: Millis, result: DiskResult, fx: &mut Vec<MutexEffect>) {
        let value = match &result {
            Ok(DiskReply::Block(block)) => Some(decode_var(block)),
            Ok(_) => None,
            Err(_) => {
                // Retry the same step at the next poll.
                self.next = now + self.poll_ms;
                return;
            }
        };
        let me = self.me();
        self.next = now;
        self.step = match (self.step, value) {
            (Step::SetFlag, _) => Step::SetX,
            (Step::SetX, _) => Step::ReadY1,
            (Step::ReadY1, Some(0)) => Step::SetY,
            (Step::ReadY1, _) => Step::ClearFlagThenWaitY,
            (Step::ClearFlagThenWaitY, _) => Step::WaitY { since: now },
            (Step::WaitY { .. }, Some(0)) | (Step::WaitY { .. }, None) => Step::SetFlag,
            (Step::WaitY { since }, Some(_)) => {
                self.next = now + self.poll_ms;
                Step::WaitY { since }
            }
            (Step::SetY, _) => Step::ReadX,
            (Step::ReadX, Some(x)) if x == me => self.enter(fx),
            (Step::ReadX, _) => Step::ClearFlagThenScan,
            (Step::ClearFlagThenScan, _) => self.scan_from(1, now),
            (Step::ScanFlag { j, since }, Some(flag)) => {
                let stale = now - since > self.stale_ms;
                if flag == 0 || stale {
                    self.scan_from(j.saturating_add(1), now)
                } else {
                    self.next = now + self.poll_ms;
                    Step::ScanFlag { j, since }
                }
            }
            (Step::ReadY2, Some(y)) if y == me => self.enter(fx),
            (Step::ReadY2, _) => Step::WaitY { since: now },
            (Step::ExitY, _) => Step::ExitFlag,
            (Step::ExitFlag, _) => {
                if self.want {
                    Step::SetFlag
                } else {
                    Step::Idle
                }
            }
            (step, _) => step,
        };
    }

    fn enter(&mut self, fx: &mut Vec<MutexEffect>) -> Step {
        fx.push(MutexEffect::Entered);
        Step::Inside
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::{Rng, SimLun, BLOCK};

    fn node(i: u8) -> NodeId {
        NodeId::new(i).unwrap()
    }

    #[test]
    fn variables_round_trip_and_garbage_reads_as_zero() {
        assert_eq!(decode_var(&encode_var(7, 512)), 7);
        assert_eq!(decode_var(&[0; 512]), 0);
        let mut torn = encode_var(7, 512);
        torn[0] ^= 1;
        assert_eq!(decode_var(&torn), 0);
    }

    /// Contenders interleaved at random command granularity: at most one is
    /// inside at a time, and every contender gets in eventually.
    #[test]
    fn contenders_interleaved_at_random_are_excluded_and_all_get_in() {
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let n = rng.range(2, 5) as u8;
            let mut lun = SimLun::new();
            let mut mutexes: Vec<FastMutex> = (1..=n)
                .map(|i| FastMutex::new(node(i), n, BLOCK, 1, 1_000_000))
                .collect();
            let mut pending: Vec<Option<DiskOp>> = vec![None; n as usize];
            let mut entered = vec![0u32; n as usize];
            let mut now = Millis(0);
            let push = |fx: Vec<MutexEffect>, slot: &mut Option<DiskOp>, count: &mut u32| {
                for e in fx {
                    match e {
                        MutexEffect::Issue(op) => *slot = Some(op),
                        MutexEffect::Entered => *count += 1,
                    }
                }
            };
            for i in 0..n as usize {
                let fx = mutexes[i].apply(now, MutexInput::Enter);
                push(fx, &mut pending[i], &mut entered[i]);
            }
            for _ in 0..20_000 {
                now = now + 1;
                let i = rng.range(0, u64::from(n) - 1) as usize;
                let input = match pending[i].take() {
                    Some(op) => MutexInput::Reply(lun.execute(node(i as u8 + 1), &op)),
                    None if mutexes[i].is_inside() => MutexInput::Exit,
                    None if mutexes[i].is_idle() && entered[i] < 3 => MutexInput::Enter,
                    None => MutexInput::Tick,
                };
                let fx = mutexes[i].apply(now, input);
                push(fx, &mut pending[i], &mut entered[i]);
                let inside = mutexes.iter().filter(|m| m.is_inside()).count();
                assert!(inside <= 1, "seed {seed}: {inside} inside");
            }
            assert!(entered.iter().all(|&e| e >= 1), "seed {seed}: {entered:?}");
        }
    }
}
