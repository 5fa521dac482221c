//! A SCSI target device: the LUNs behind one target, and the execution
//! pipeline `unit attention check → reservation gate → command`.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use reservoir_bdev::AlignedBuf;

use crate::cdb::{Cdb, Command};
use crate::error::TmfError;
use crate::io::{self, settle, BlockIo, BlockOp, LentRead, Started};
use crate::lun::Lun;
use crate::nexus::{InitiatorPort, Nexus, NexusId, TargetPort};
use crate::reservation::{self, Gate};
use crate::sense::{Completion, Sense, SenseReason};
use crate::ua::Audience;
use crate::{block, inquiry, mode, opcodes, provisioning};

/// What a command's handler left to do.
enum Step {
    Done(Completion),
    Io(BlockOp),
}

/// How far a command got past the gate: done, or a block transfer on a
/// LUN with the command's allocation length.
enum Begun<'a> {
    Done(Completion),
    Io(&'a Arc<Lun>, BlockOp, u64),
}

/// The LUNs of one target (SPDK's `spdk_scsi_dev`).
#[derive(Debug)]
pub struct Device {
    name: String,
    luns: BTreeMap<u64, Arc<Lun>>,
    target_port: TargetPort,
    next_nexus: AtomicU64,
}

/// LUN 0..=255 use peripheral device addressing, larger ones flat space
/// addressing (SAM-5, LUN addressing); LUNs above 16383 cannot be expressed in one level.
pub fn encode_lun(lun: u64) -> [u8; 8] {
    let mut out = [0u8; 8];
    if lun < 256 {
        out[1] = lun as u8;
    } else {
        let lun = (lun & 0x3FFF) as u16;
        out[0..2].copy_from_slice(&(0x4000 | lun).to_be_bytes());
    }
    out
}

/// Inverse of [`encode_lun`] for the single-level formats.
pub fn decode_lun(bytes: [u8; 8]) -> u64 {
    match bytes[0] >> 6 {
        0b00 => u64::from(bytes[1]),
        0b01 => u64::from(u16::from_be_bytes([bytes[0] & 0x3F, bytes[1]])),
        _ => u64::from_be_bytes(bytes),
    }
}

impl Device {
    pub fn new(name: &str, luns: Vec<(u64, Arc<Lun>)>, target_port: TargetPort) -> Device {
        for (_, lun) in &luns {
            lun.persistent.add_target_port(target_port.relative_id);
        }
        Device {
            name: name.to_string(),
            luns: luns.into_iter().collect(),
            target_port,
            next_nexus: AtomicU64::new(1),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn lun_ids(&self) -> Vec<u64> {
        self.luns.keys().copied().collect()
    }

    pub fn lun(&self, lun: u64) -> Option<&Arc<Lun>> {
        self.luns.get(&lun)
    }

    /// A new I_T nexus: POWER ON, RESET, OR BUS DEVICE RESET OCCURRED is
    /// pending for every LUN. Dropping it releases its SPC-2 reservations.
    pub fn new_nexus(&self, initiator: InitiatorPort) -> Nexus {
        let id = NexusId(self.next_nexus.fetch_add(1, Ordering::Relaxed));
        Nexus::new(id, initiator, &self.target_port, &self.luns)
    }

    /// Decodes a CDB for `lun`, once. A CDB this device server does not
    /// execute (unsupported opcode, invalid field) still parses, so that a
    /// pending unit attention or a reservation conflict is reported first;
    /// `Err` is returned only for a LUN that does not exist (except for
    /// INQUIRY, REPORT LUNS and REQUEST SENSE, which work there).
    pub fn parse(&self, lun: u64, cdb: &[u8]) -> Result<Command, Completion> {
        let block_size = self.luns.get(&lun).map(|l| l.block_size());
        let command = Command::decode(lun, cdb, block_size);
        if block_size.is_none() && !crate::cdb::valid_without_lun(command.opcode()) {
            return Err(Completion::check(SenseReason::LunNotSupported));
        }
        Ok(command)
    }

    /// Runs `unit attention check → reservation gate → command`.
    ///
    /// `data_out` is what the initiator sent. Writes use the whole blocks
    /// that arrived when fewer than the CDB describes (the transport reports
    /// the residual); parameter lists and COMPARE AND WRITE fail with CHECK
    /// CONDITION when their data is incomplete. `data_in` is cleared, then
    /// filled with at most `command.transfer().bytes` bytes.
    pub fn execute(
        &self,
        nexus: &mut Nexus,
        command: &Command,
        data_out: &[u8],
        data_in: &mut AlignedBuf,
    ) -> Completion {
        match self.begin(nexus, command, data_out, data_in) {
            Begun::Done(completion) => completion,
            Begun::Io(lun, op, limit) => io::transfer(lun, op, limit, data_out, data_in),
        }
    }

    /// Like [`Device::execute`], but stops short of the block data
    /// transfer (READ, WRITE, WRITE AND VERIFY, SYNCHRONIZE CACHE) of a LUN
    /// whose bdev [prefers to be offloaded](reservoir_bdev::Bdev::prefers_offload):
    /// everything that needs the nexus has run, and the returned
    /// [`BlockIo`] finishes the command on whichever thread runs it. A READ
    /// of a LUN whose bdev lends its memory returns a [`LentRead`] instead
    /// of reading into `data_in`.
    pub fn start(
        &self,
        nexus: &mut Nexus,
        command: &Command,
        data_out: &[u8],
        data_in: &mut AlignedBuf,
    ) -> Started {
        match self.begin(nexus, command, data_out, data_in) {
            Begun::Done(completion) => Started::Done(completion),
            Begun::Io(lun, op, limit) if lun.prefers_offload() => {
                let epoch = nexus.abort_epoch_handle(command.lun());
                Started::Io(BlockIo::new(Arc::clone(lun), op, limit, epoch))
            }
            Begun::Io(lun, BlockOp::Read(extent), limit) if lun.lends_memory() => {
                match LentRead::new(lun, extent, limit) {
                    Ok(read) => Started::Lent(read),
                    Err(completion) => Started::Done(completion),
                }
            }
            Begun::Io(lun, op, limit) => {
                Started::Done(io::transfer(lun, op, limit, data_out, data_in))
            }
        }
    }

    fn begin(
        &self,
        nexus: &mut Nexus,
        command: &Command,
        data_out: &[u8],
        data_in: &mut AlignedBuf,
    ) -> Begun<'_> {
        data_in.clear();
        let cdb = command.cdb();
        let limit = command.transfer().bytes;
        let Some(lun) = self.luns.get(&command.lun()) else {
            let result = self.execute_without_lun(cdb, data_in);
            return Begun::Done(settle(result, limit, data_in));
        };
        match self.execute_on_lun(lun, nexus, command.lun(), cdb, data_out, data_in) {
            Ok(Step::Io(op)) => Begun::Io(lun, op, limit),
            Ok(Step::Done(completion)) => Begun::Done(settle(Ok(completion), limit, data_in)),
            Err(reason) => Begun::Done(settle(Err(reason), limit, data_in)),
        }
    }

    fn execute_without_lun(
        &self,
        cdb: &Cdb,
        data_in: &mut AlignedBuf,
    ) -> Result<Completion, SenseReason> {
        match cdb {
            Cdb::ReportLuns { select, .. } => data_in.extend_from_slice(&self.report_luns(*select)),
            // SPC-4, REQUEST SENSE: sense data LOGICAL UNIT NOT SUPPORTED, status GOOD.
            Cdb::RequestSense { .. } => data_in
                .extend_from_slice(&Sense::new(SenseReason::LunNotSupported).to_fixed_bytes()),
            Cdb::Unknown { reason } => return Err(*reason),
            _ => data_in.extend_from_slice(&inquiry::no_lun(cdb)?),
        }
        Ok(Completion::good())
    }

    fn execute_on_lun(
        &self,
        lun: &Lun,
        nexus: &mut Nexus,
        lun_id: u64,
        cdb: &Cdb,
        data_out: &[u8],
        data_in: &mut AlignedBuf,
    ) -> Result<Step, SenseReason> {
        // 1. Unit attention (SAM-5).
        if let Cdb::RequestSense { .. } = cdb {
            let reason = nexus
                .take_unit_attention(lun_id)
                .unwrap_or(SenseReason::NoSense);
            data_in.extend_from_slice(&Sense::new(reason).to_fixed_bytes());
            return Ok(Step::Done(Completion::good()));
        }
        if !cdb.passes_unit_attention() {
            if let Some(ua) = nexus.take_unit_attention(lun_id) {
                return Err(ua);
            }
        }
        // 2. Reservations.
        if reservation::gate(lun, nexus.id, &nexus.identity, cdb) == Gate::Conflict {
            return Ok(Step::Done(Completion::reservation_conflict()));
        }
        // 3. The command.
        match *cdb {
            Cdb::Unknown { reason } => return Err(reason),
            Cdb::TestUnitReady | Cdb::PreventAllowMediumRemoval { .. } => {}
            // Accepted without a power state: a shared LUN stopped by one
            // host would stall every other host (the LUN is not removable,
            // LOEJ is rejected at parse).
            Cdb::StartStopUnit { .. } => {}
            Cdb::RequestSense { .. } => unreachable!("handled before the gate"),
            Cdb::Inquiry { evpd, page, .. } => {
                data_in.extend_from_slice(&inquiry::inquiry(lun, &self.target_port, evpd, page)?)
            }
            Cdb::ReportLuns { select, .. } => data_in.extend_from_slice(&self.report_luns(select)),
            Cdb::ReadCapacity10 => data_in.extend_from_slice(&block::read_capacity_10(lun)),
            Cdb::ReadCapacity16 { .. } => data_in.extend_from_slice(&block::read_capacity_16(lun)),
            Cdb::GetLbaStatus { lba, alloc } => {
                data_in.extend_from_slice(&provisioning::get_lba_status(lun, lba, alloc)?)
            }
            Cdb::Read { extent, .. } => return Ok(Step::Io(BlockOp::Read(extent))),
            Cdb::Write { extent, fua } => return Ok(Step::Io(BlockOp::Write { extent, fua })),
            Cdb::WriteAndVerify { extent, check } => {
                return Ok(Step::Io(BlockOp::WriteAndVerify { extent, check }))
            }
            Cdb::Verify { extent, check } => block::verify(lun, extent, check, data_out)?,
            Cdb::OrWrite { extent, fua } => block::or_write(lun, extent, fua, data_out)?,
            Cdb::CompareAndWrite { extent, fua } => {
                block::compare_and_write(lun, extent, fua, data_out)?
            }
            Cdb::WriteSame(ws) => provisioning::write_same(lun, ws, data_out)?,
            Cdb::Unmap { param_len } => provisioning::unmap(lun, param_len, data_out)?,
            Cdb::SynchronizeCache { extent } => {
                return Ok(Step::Io(BlockOp::SynchronizeCache(extent)))
            }
            Cdb::PreFetch { extent } => block::pre_fetch(lun, extent)?,
            Cdb::ModeSense(ms) => data_in.extend_from_slice(&mode::sense(lun, &ms)?),
            Cdb::ModeSelect(ms) => {
                if mode::select(lun, &ms, data_out)? {
                    // SPC-4: the other nexuses learn of the change.
                    lun.events.publish(
                        SenseReason::ModeParametersChanged,
                        Audience::AllExcept(nexus.id),
                    );
                }
            }
            Cdb::ReportSupportedOpcodes { query, .. } => data_in.extend_from_slice(
                &opcodes::report_supported_opcodes(query, lun.geometry().thin_provisioned)?,
            ),
            Cdb::ReportSupportedTmfs { repd, .. } => {
                data_in.extend_from_slice(&opcodes::report_supported_tmfs(repd))
            }
            Cdb::Reserve => {
                if !lun.reserve(nexus.id) {
                    return Ok(Step::Done(Completion::reservation_conflict()));
                }
            }
            Cdb::Release => lun.release(nexus.id),
            Cdb::PersistentReserveIn(cmd) => {
                data_in.extend_from_slice(&lun.persistent.execute_in(&cmd))
            }
            Cdb::PersistentReserveOut { cdb } => {
                return Ok(Step::Done(lun.persistent.execute_out(
                    &lun.events,
                    &nexus.identity,
                    &cdb,
                    data_out,
                )))
            }
        }
        Ok(Step::Done(Completion::good()))
    }

    /// REPORT LUNS parameter data (SPC-4). SELECT REPORT 1 asks for
    /// well-known LUNs only, of which there are none.
    fn report_luns(&self, select: u8) -> Vec<u8> {
        let ids: Vec<u64> = if select == 1 {
            Vec::new()
        } else {
            self.lun_ids()
        };
        let mut out = Vec::with_capacity(8 + 8 * ids.len());
        out.extend_from_slice(&((8 * ids.len()) as u32).to_be_bytes());
        out.extend_from_slice(&[0; 4]);
        for id in ids {
            out.extend_from_slice(&encode_lun(id));
        }
        out
    }

    /// LOGICAL UNIT RESET (SAM-5).
    pub fn lun_reset(&self, lun: u64) -> Result<(), TmfError> {
        let l = self.luns.get(&lun).ok_or(TmfError::NoSuchLun { lun })?;
        l.reset();
        Ok(())
    }

    /// TARGET RESET: a logical unit reset of every LUN.
    pub fn target_reset(&self) {
        for lun in self.luns.values() {
            lun.reset();
        }
    }
}
