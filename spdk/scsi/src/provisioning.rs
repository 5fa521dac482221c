//! Logical block provisioning (SBC-4): UNMAP, WRITE SAME, GET LBA STATUS.

use reservoir_bdev::{BlockCount, Durability, Lba, Provisioning};

use crate::block::{check_range, check_writable, data_out, medium_error};
use crate::cdb::{Extent, WriteSame};
use crate::limits;
use crate::lun::Lun;
use crate::sense::{FieldPointer, SenseReason};

const UNMAP_HEADER: usize = 8;
const UNMAP_DESCRIPTOR: usize = 16;
const LBA_STATUS_HEADER: usize = 8;
const LBA_STATUS_DESCRIPTOR: usize = 16;
/// Descriptors returned by one GET LBA STATUS at most.
const MAX_LBA_STATUS_DESCRIPTORS: usize = 64;

fn be(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0, |acc, &b| (acc << 8) | u64::from(b))
}

/// UNMAP (SBC-4). Every descriptor is validated before any block is
/// deallocated, so a bad list changes nothing.
pub(crate) fn unmap(lun: &Lun, param_len: u32, data: &[u8]) -> Result<(), SenseReason> {
    if !lun.geometry().thin_provisioned {
        // LBPU=0 (SBC-4, Logical Block Provisioning VPD page): the command is not supported on this LUN.
        return Err(SenseReason::InvalidOpcode);
    }
    check_writable(lun)?;
    let len = param_len as usize;
    if len == 0 {
        return Ok(());
    }
    if len < UNMAP_HEADER {
        return Err(SenseReason::ParameterListLengthError);
    }
    let data = data_out(data, len)?;
    let declared = be(&data[2..4]) as usize;
    // A partial trailing descriptor is ignored.
    let count = declared.min(len - UNMAP_HEADER) / UNMAP_DESCRIPTOR;
    if count > limits::MAX_UNMAP_DESCRIPTORS as usize {
        return Err(SenseReason::InvalidFieldInParameterList(
            FieldPointer::byte(2),
        ));
    }
    let mut extents = Vec::with_capacity(count);
    let mut total: u64 = 0;
    for i in 0..count {
        let at = UNMAP_HEADER + i * UNMAP_DESCRIPTOR;
        let d = &data[at..at + UNMAP_DESCRIPTOR];
        let extent = Extent {
            lba: Lba(be(&d[0..8])),
            blocks: be(&d[8..12]),
        };
        if extent.blocks == 0 {
            continue;
        }
        check_range(lun, extent)?;
        total += extent.blocks;
        if total > u64::from(limits::MAX_UNMAP_LBA_COUNT) {
            return Err(SenseReason::InvalidFieldInParameterList(
                FieldPointer::byte((at + 8) as u16),
            ));
        }
        extents.push(extent);
    }
    for extent in extents {
        let _guard = lun.range_lock.shared(extent);
        lun.bdev()
            .unmap(extent.lba, BlockCount(extent.blocks))
            .map_err(|e| medium_error(&e, false))?;
    }
    Ok(())
}

/// WRITE SAME (SBC-4, WRITE SAME(10) and (16)). With UNMAP set on a thin LUN, a block of
/// zeroes (or NDOB) deallocates instead: LBPRZ=1 makes that read back the
/// same. Any other block is written.
pub(crate) fn write_same(lun: &Lun, mut ws: WriteSame, data: &[u8]) -> Result<(), SenseReason> {
    check_writable(lun)?;
    if ws.extent.blocks == 0 {
        let capacity = lun.geometry().block_count.0;
        if ws.extent.lba.0 >= capacity {
            return Err(SenseReason::LbaOutOfRange);
        }
        ws.extent.blocks = capacity - ws.extent.lba.0;
    }
    check_range(lun, ws.extent)?;
    let bs = lun.block_size() as usize;
    let zero_block;
    let block = if ws.ndob {
        zero_block = vec![0u8; bs];
        &zero_block[..]
    } else {
        data_out(data, bs)?
    };
    let _guard = lun.range_lock.shared(ws.extent);
    let count = BlockCount(ws.extent.blocks);
    // SBC-4 WRITE SAME, UNMAP bit on a thin LU: the blocks are deallocated
    // whatever the pattern, and read back as zeroes (LBPRZ=1) — what
    // initiators that discard through WRITE SAME rely on.
    if ws.unmap && lun.geometry().thin_provisioned {
        return lun
            .bdev()
            .unmap(ws.extent.lba, count)
            .map_err(|e| medium_error(&e, false));
    }
    if block.iter().all(|&b| b == 0) {
        return lun
            .bdev()
            .write_zeroes(ws.extent.lba, count)
            .and_then(|()| {
                // Write-through (WCE=0): zeroes reach the medium before GOOD.
                match lun.durability(false) {
                    Durability::Fua => lun.bdev().flush(),
                    Durability::Cached => Ok(()),
                }
            })
            .map_err(|e| medium_error(&e, false));
    }
    let chunk_blocks =
        (limits::WRITE_SAME_CHUNK_BYTES as usize / bs).min(ws.extent.blocks as usize);
    let chunk = block.repeat(chunk_blocks);
    let durability = lun.durability(false);
    let mut lba = ws.extent.lba.0;
    let end = lba + ws.extent.blocks;
    while lba < end {
        let n = (end - lba).min(chunk_blocks as u64) as usize;
        lun.bdev()
            .write(Lba(lba), &chunk[..n * bs], durability)
            .map_err(|e| medium_error(&e, false))?;
        lba += n as u64;
    }
    Ok(())
}

/// GET LBA STATUS (SBC-4): descriptors from `lba` onwards, as many as
/// the allocation length holds (at least one, at most a bounded number).
pub(crate) fn get_lba_status(lun: &Lun, lba: Lba, alloc: u32) -> Result<Vec<u8>, SenseReason> {
    let capacity = lun.geometry().block_count.0;
    if lba.0 >= capacity {
        return Err(SenseReason::LbaOutOfRange);
    }
    let room = (alloc as usize).saturating_sub(LBA_STATUS_HEADER) / LBA_STATUS_DESCRIPTOR;
    let wanted = room.clamp(1, MAX_LBA_STATUS_DESCRIPTORS);
    let mut out = vec![0u8; LBA_STATUS_HEADER];
    let mut at = lba.0;
    while at < capacity && (out.len() - LBA_STATUS_HEADER) / LBA_STATUS_DESCRIPTOR < wanted {
        let (state, run) = lun
            .bdev()
            .provisioning(Lba(at))
            .map_err(|e| medium_error(&e, true))?;
        let run = run.0.clamp(1, capacity - at).min(u64::from(u32::MAX));
        out.extend_from_slice(&at.to_be_bytes());
        out.extend_from_slice(&(run as u32).to_be_bytes());
        out.push(match state {
            Provisioning::Mapped => 0,
            Provisioning::Deallocated => 1,
        });
        out.extend_from_slice(&[0; 3]);
        at += run;
    }
    let len = (out.len() - 4) as u32;
    out[0..4].copy_from_slice(&len.to_be_bytes());
    Ok(out)
}
