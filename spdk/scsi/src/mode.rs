//! MODE SENSE and MODE SELECT (SPC-4, mode parameters) with the Caching (08h,
//! SBC-4), Control (0Ah, SPC-4) and Informational Exceptions Control
//! (1Ch, SPC-4) pages. Nothing is saved: the only changeable
//! parameter is WCE, and only when the bdev has a volatile cache.

use crate::cdb::{ModeSelect, ModeSense, PageControl};
use crate::lun::Lun;
use crate::sense::{FieldPointer, SenseReason};

const CACHING: u8 = 0x08;
const CONTROL: u8 = 0x0A;
const INFORMATIONAL_EXCEPTIONS: u8 = 0x1C;
const ALL_PAGES: u8 = 0x3F;
const ALL_SUBPAGES: u8 = 0xFF;
const PAGES: [u8; 3] = [CACHING, CONTROL, INFORMATIONAL_EXCEPTIONS];
const WCE: u8 = 0x04;

/// The page as `pc` asks for it: page code, page length, parameters.
fn page(lun: &Lun, code: u8, pc: PageControl) -> Vec<u8> {
    let mut p = match code {
        CACHING => vec![0u8; 0x14],
        CONTROL => vec![0u8; 0x0C],
        _ => vec![0u8; 0x0C],
    };
    p[0] = code;
    p[1] = (p.len() - 2) as u8;
    match (code, pc) {
        (CACHING, PageControl::Changeable) => {
            if lun.write_cache_changeable() {
                p[2] = WCE;
            }
        }
        (CACHING, PageControl::Default) => {
            if lun.geometry().volatile_cache {
                p[2] = WCE;
            }
        }
        (CACHING, _) => {
            if lun.write_cache_enabled() {
                p[2] = WCE;
            }
        }
        (CONTROL, PageControl::Changeable) => {}
        (CONTROL, _) => {
            p[3] = 0x10; // QUEUE ALGORITHM MODIFIER 1: unrestricted reordering
                         // TAS: a task aborted by another nexus (PREEMPT AND ABORT)
                         // ends with TASK ABORTED status rather than silently (SAM-5).
            p[5] = 0x40;
        }
        (_, PageControl::Changeable) => {}
        _ => {
            p[2] = 0x08; // DEXCPT: no informational exception reporting
        }
    }
    p
}

pub(crate) fn sense(lun: &Lun, ms: &ModeSense) -> Result<Vec<u8>, SenseReason> {
    if ms.pc == PageControl::Saved {
        return Err(SenseReason::SavingParametersNotSupported);
    }
    let bad_page = SenseReason::InvalidFieldInCdb(FieldPointer::bit(2, 5));
    let bad_subpage = SenseReason::InvalidFieldInCdb(FieldPointer::byte(3));
    let codes: &[u8] = match ms.page {
        ALL_PAGES => &PAGES,
        code => {
            let i = PAGES.iter().position(|&c| c == code).ok_or(bad_page)?;
            &PAGES[i..=i]
        }
    };
    if ms.subpage != 0 && ms.subpage != ALL_SUBPAGES {
        return Err(bad_subpage);
    }
    let geometry = lun.geometry();
    let bs = geometry.block_size.bytes();
    let blocks = geometry.block_count.0;
    let descriptor: Vec<u8> = match (ms.dbd, ms.llbaa) {
        (true, _) => Vec::new(),
        (false, false) => {
            // Short descriptor: NUMBER OF BLOCKS saturates (SPC-4, short LBA mode parameter block descriptor).
            let mut d = vec![0u8; 8];
            d[0..4].copy_from_slice(&u32::try_from(blocks).unwrap_or(u32::MAX).to_be_bytes());
            d[5..8].copy_from_slice(&bs.to_be_bytes()[1..]);
            d
        }
        (false, true) => {
            let mut d = vec![0u8; 16];
            d[0..8].copy_from_slice(&blocks.to_be_bytes());
            d[12..16].copy_from_slice(&bs.to_be_bytes());
            d
        }
    };
    // DEVICE-SPECIFIC PARAMETER: WP and DPOFUA (SBC-4, mode parameter header).
    let device_specific = if lun.read_only() { 0x80 } else { 0 } | 0x10;
    let mut out = if ms.ten {
        let mut h = vec![0u8; 8];
        h[3] = device_specific;
        if ms.llbaa && !ms.dbd {
            h[4] = 0x01; // LONGLBA
        }
        h[6..8].copy_from_slice(&(descriptor.len() as u16).to_be_bytes());
        h
    } else {
        vec![0, 0, device_specific, descriptor.len() as u8]
    };
    out.extend_from_slice(&descriptor);
    for &code in codes {
        out.extend_from_slice(&page(lun, code, ms.pc));
    }
    // MODE DATA LENGTH excludes itself.
    if ms.ten {
        let len = (out.len() - 2) as u16;
        out[0..2].copy_from_slice(&len.to_be_bytes());
    } else {
        out[0] = (out.len() - 1) as u8;
    }
    Ok(out)
}

/// Applies a MODE SELECT parameter list; returns whether a parameter changed.
pub(crate) fn select(lun: &Lun, ms: &ModeSelect, data: &[u8]) -> Result<bool, SenseReason> {
    let len = ms.param_len as usize;
    if len == 0 {
        return Ok(false);
    }
    let data = data
        .get(..len)
        .ok_or(SenseReason::ParameterListLengthError)?;
    let field = |byte: usize, bit: Option<u8>| {
        SenseReason::InvalidFieldInParameterList(FieldPointer {
            byte: byte.min(usize::from(u16::MAX)) as u16,
            bit,
        })
    };
    let header_len = if ms.ten { 8 } else { 4 };
    if data.len() < header_len {
        return Err(SenseReason::ParameterListLengthError);
    }
    let (bd_len, long_lba, medium_type) = if ms.ten {
        (
            usize::from(u16::from_be_bytes([data[6], data[7]])),
            data[4] & 0x01 != 0,
            data[2],
        )
    } else {
        (usize::from(data[3]), false, data[1])
    };
    if medium_type != 0 {
        return Err(field(if ms.ten { 2 } else { 1 }, None));
    }
    let bd_field = if ms.ten { 6 } else { 3 };
    let descriptor_len = if long_lba { 16 } else { 8 };
    if bd_len != 0 && bd_len != descriptor_len {
        return Err(field(bd_field, None));
    }
    if header_len + bd_len > data.len() {
        return Err(SenseReason::ParameterListLengthError);
    }
    if bd_len != 0 {
        // Only the current block size is accepted; the block count is not
        // changeable through MODE SELECT.
        let d = &data[header_len..header_len + bd_len];
        let (block_len, at) = if long_lba {
            (u32::from_be_bytes([d[12], d[13], d[14], d[15]]), 12)
        } else {
            (u32::from_be_bytes([0, d[5], d[6], d[7]]), 5)
        };
        if block_len != lun.block_size() {
            return Err(field(header_len + at, None));
        }
    }
    let mut offset = header_len + bd_len;
    if offset < data.len() && !ms.pf {
        // Vendor-specific (PF=0) page formats are not supported (SPC-4, MODE SELECT).
        return Err(SenseReason::InvalidFieldInCdb(FieldPointer::bit(1, 4)));
    }
    let mut write_cache = None;
    while offset < data.len() {
        let code = data[offset] & 0x3F;
        if data[offset] & 0x40 != 0 {
            return Err(field(offset, Some(6)));
        }
        if !PAGES.contains(&code) {
            return Err(field(offset, Some(5)));
        }
        let current = page(lun, code, PageControl::Current);
        let changeable = page(lun, code, PageControl::Changeable);
        let page_len = *data
            .get(offset + 1)
            .ok_or(SenseReason::ParameterListLengthError)?;
        if usize::from(page_len) != current.len() - 2 {
            return Err(field(offset + 1, None));
        }
        let new = data
            .get(offset..offset + current.len())
            .ok_or(SenseReason::ParameterListLengthError)?;
        for i in 2..current.len() {
            let bad = (new[i] ^ current[i]) & !changeable[i];
            if bad != 0 {
                let bit = 7 - bad.leading_zeros() as u8;
                return Err(field(offset + i, Some(bit)));
            }
        }
        if code == CACHING {
            write_cache = Some(new[2] & WCE != 0);
        }
        offset += current.len();
    }
    Ok(write_cache.is_some_and(|wce| lun.set_write_cache(wce)))
}
