//! Block commands (SBC-4): READ, WRITE, WRITE AND VERIFY, VERIFY, ORWRITE,
//! COMPARE AND WRITE, SYNCHRONIZE CACHE, PRE-FETCH, READ CAPACITY.

use reservoir_bdev::{AlignedBuf, BdevError, Durability, ErrorKind, Lba};

use crate::cdb::{ByteCheck, Extent};
use crate::lun::Lun;
use crate::sense::SenseReason;

/// Maps a bdev failure to sense data (SBC-4, medium errors).
pub(crate) fn medium_error(e: &BdevError, reading: bool) -> SenseReason {
    match e.kind() {
        ErrorKind::OutOfRange => SenseReason::LbaOutOfRange,
        ErrorKind::ReadFailed => SenseReason::UnrecoveredReadError,
        ErrorKind::WriteFailed => SenseReason::WriteError,
        ErrorKind::Misaligned | ErrorKind::Setup | ErrorKind::Unsupported => {
            if reading {
                SenseReason::UnrecoveredReadError
            } else {
                SenseReason::InternalTargetFailure
            }
        }
    }
}

/// SBC-4: an LBA past the last one, or a range reaching past it, is
/// LOGICAL BLOCK ADDRESS OUT OF RANGE, also for a transfer of zero blocks.
pub(crate) fn check_range(lun: &Lun, extent: Extent) -> Result<(), SenseReason> {
    let capacity = lun.geometry().block_count.0;
    match extent.lba.0.checked_add(extent.blocks) {
        Some(end) if extent.lba.0 < capacity && end <= capacity => Ok(()),
        _ => Err(SenseReason::LbaOutOfRange),
    }
}

pub(crate) fn check_writable(lun: &Lun) -> Result<(), SenseReason> {
    if lun.read_only() {
        return Err(SenseReason::WriteProtected);
    }
    Ok(())
}

fn block_size(lun: &Lun) -> usize {
    lun.block_size() as usize
}

pub(crate) fn bytes_of(lun: &Lun, extent: Extent) -> usize {
    extent.blocks as usize * block_size(lun)
}

/// The first `bytes` of data-out, or CHECK CONDITION when fewer arrived.
pub(crate) fn data_out(data: &[u8], bytes: usize) -> Result<&[u8], SenseReason> {
    data.get(..bytes).ok_or(SenseReason::DataLengthMismatch)
}

/// The part of a write's extent that data-out covers. When the transport's
/// expected data transfer length is below the CDB's, only the whole blocks
/// that arrived are written and the command succeeds; the transport reports
/// the rest as residual overflow (RFC 7143, Residual Count; libiscsi's
/// WRITE residuals tests expect exactly this).
fn received(lun: &Lun, extent: Extent, data: &[u8]) -> (Extent, usize) {
    let bs = block_size(lun);
    let blocks = extent.blocks.min((data.len() / bs) as u64);
    (Extent { blocks, ..extent }, blocks as usize * bs)
}

/// The checks every write-class command makes first: the LUN is writable,
/// the extent is on the medium, and the whole blocks that arrived. `None`
/// when there is nothing to write.
fn writable_blocks<'a>(
    lun: &Lun,
    extent: Extent,
    data: &'a [u8],
) -> Result<Option<(Extent, &'a [u8])>, SenseReason> {
    check_writable(lun)?;
    check_range(lun, extent)?;
    let (extent, bytes) = received(lun, extent, data);
    Ok((extent.blocks > 0).then(|| (extent, &data[..bytes])))
}

fn read_into(lun: &Lun, lba: Lba, buf: &mut [u8]) -> Result<(), SenseReason> {
    lun.bdev()
        .read(lba, buf)
        .map_err(|e| medium_error(&e, true))
}

fn write_from(lun: &Lun, lba: Lba, buf: &[u8], durability: Durability) -> Result<(), SenseReason> {
    lun.bdev()
        .write(lba, buf, durability)
        .map_err(|e| medium_error(&e, false))
}

fn first_mismatch(a: &[u8], b: &[u8]) -> Option<usize> {
    a.iter().zip(b).position(|(x, y)| x != y)
}

pub(crate) fn read(lun: &Lun, extent: Extent, data_in: &mut AlignedBuf) -> Result<(), SenseReason> {
    check_range(lun, extent)?;
    if extent.blocks == 0 {
        return Ok(());
    }
    // The bdev fills it all, or the command fails and data-in is dropped.
    data_in.resize_to_overwrite(bytes_of(lun, extent));
    read_into(lun, extent.lba, data_in)
}

pub(crate) fn write(lun: &Lun, extent: Extent, fua: bool, data: &[u8]) -> Result<(), SenseReason> {
    let Some((extent, data)) = writable_blocks(lun, extent, data)? else {
        return Ok(());
    };
    let _guard = lun.range_lock.shared(extent);
    write_from(lun, extent.lba, data, lun.durability(fua))
}

pub(crate) fn write_and_verify(
    lun: &Lun,
    extent: Extent,
    check: ByteCheck,
    data: &[u8],
) -> Result<(), SenseReason> {
    let Some((extent, data)) = writable_blocks(lun, extent, data)? else {
        return Ok(());
    };
    let _guard = lun.range_lock.shared(extent);
    // Verification is of the medium, so the write must reach it (SBC-4, WRITE AND VERIFY).
    write_from(lun, extent.lba, data, Durability::Fua)?;
    let mut back = vec![0u8; data.len()];
    read_into(lun, extent.lba, &mut back)?;
    if check == ByteCheck::Full {
        if let Some(offset) = first_mismatch(data, &back) {
            return Err(SenseReason::Miscompare {
                offset: offset as u64,
            });
        }
    }
    Ok(())
}

pub(crate) fn verify(
    lun: &Lun,
    extent: Extent,
    check: ByteCheck,
    data: &[u8],
) -> Result<(), SenseReason> {
    check_range(lun, extent)?;
    if extent.blocks == 0 {
        return Ok(());
    }
    let mut medium = vec![0u8; bytes_of(lun, extent)];
    read_into(lun, extent.lba, &mut medium)?;
    let bs = block_size(lun);
    let mismatch = match check {
        ByteCheck::None => None,
        ByteCheck::Full => first_mismatch(data_out(data, medium.len())?, &medium),
        ByteCheck::OneBlock => {
            let pattern = data_out(data, bs)?;
            medium
                .chunks(bs)
                .enumerate()
                .find_map(|(i, block)| first_mismatch(pattern, block).map(|o| i * bs + o))
        }
    };
    match mismatch {
        Some(offset) => Err(SenseReason::Miscompare {
            offset: offset as u64,
        }),
        None => Ok(()),
    }
}

pub(crate) fn or_write(
    lun: &Lun,
    extent: Extent,
    fua: bool,
    data: &[u8],
) -> Result<(), SenseReason> {
    let Some((extent, data)) = writable_blocks(lun, extent, data)? else {
        return Ok(());
    };
    // Read-modify-write: exclusive, like COMPARE AND WRITE.
    let _guard = lun.range_lock.exclusive(extent);
    let mut medium = vec![0u8; data.len()];
    read_into(lun, extent.lba, &mut medium)?;
    medium.iter_mut().zip(data).for_each(|(m, d)| *m |= d);
    write_from(lun, extent.lba, &medium, lun.durability(fua))
}

/// SBC-4 5.3: compare the first half of data-out with the medium and, only
/// if equal, write the second half; atomic against every other writer.
pub(crate) fn compare_and_write(
    lun: &Lun,
    extent: Extent,
    fua: bool,
    data: &[u8],
) -> Result<(), SenseReason> {
    check_writable(lun)?;
    check_range(lun, extent)?;
    let half = bytes_of(lun, extent);
    // Both halves, exactly: a different data-out length means the
    // initiator and the CDB disagree about what is compared. Checked before
    // the zero-block case, because an initiator that asked for 256 blocks
    // wraps the one-byte field to 0 and must hear about it.
    if data.len() != 2 * half {
        return Err(SenseReason::DataLengthMismatch);
    }
    if extent.blocks == 0 {
        return Ok(());
    }
    let (compare, write) = data.split_at(half);
    let _guard = lun.range_lock.exclusive(extent);
    let mut medium = vec![0u8; half];
    read_into(lun, extent.lba, &mut medium)?;
    if let Some(offset) = first_mismatch(compare, &medium) {
        return Err(SenseReason::Miscompare {
            offset: offset as u64,
        });
    }
    write_from(lun, extent.lba, write, lun.durability(fua))
}

/// SYNCHRONIZE CACHE and PRE-FETCH: NUMBER OF LOGICAL BLOCKS 0 means "to the
/// end of the medium" (SBC-4, SYNCHRONIZE CACHE and PRE-FETCH).
fn check_range_to_end(lun: &Lun, extent: Extent) -> Result<(), SenseReason> {
    if extent.blocks == 0 {
        if extent.lba.0 < lun.geometry().block_count.0 {
            return Ok(());
        }
        return Err(SenseReason::LbaOutOfRange);
    }
    check_range(lun, extent)
}

pub(crate) fn synchronize_cache(lun: &Lun, extent: Extent) -> Result<(), SenseReason> {
    check_range_to_end(lun, extent)?;
    lun.bdev().flush().map_err(|e| medium_error(&e, false))
}

/// PRE-FETCH: nothing to stage, the bdev has no separate read cache; GOOD
/// rather than CONDITION MET tells the initiator so (SBC-4, PRE-FETCH).
pub(crate) fn pre_fetch(lun: &Lun, extent: Extent) -> Result<(), SenseReason> {
    check_range_to_end(lun, extent)
}

pub(crate) fn read_capacity_10(lun: &Lun) -> Vec<u8> {
    let g = lun.geometry();
    let last = g.block_count.0.saturating_sub(1);
    // 0xFFFFFFFF tells the initiator to use READ CAPACITY(16) (SBC-4, READ CAPACITY(10)).
    let last = u32::try_from(last).unwrap_or(u32::MAX);
    let mut d = last.to_be_bytes().to_vec();
    d.extend_from_slice(&g.block_size.bytes().to_be_bytes());
    d
}

pub(crate) fn read_capacity_16(lun: &Lun) -> Vec<u8> {
    let g = lun.geometry();
    let mut d = vec![0u8; 32];
    d[0..8].copy_from_slice(&g.block_count.0.saturating_sub(1).to_be_bytes());
    d[8..12].copy_from_slice(&g.block_size.bytes().to_be_bytes());
    if g.thin_provisioned {
        d[14] = 0x80 | 0x40; // LBPME, LBPRZ
    }
    d
}
