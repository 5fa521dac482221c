//! INQUIRY: standard data (SPC-4) and the VPD pages (SPC-4, SBC-4).

use crate::cdb::Cdb;
use crate::limits;
use crate::lun::Lun;
use crate::nexus::TargetPort;
use crate::sense::{FieldPointer, SenseReason};

const VENDOR: &[u8; 8] = b"RESERVOR";
const PRODUCT: &[u8; 16] = b"Reservoir volume";
const REVISION: &[u8; 4] = b"0001";
/// Direct access block device (SBC).
const DEVICE_TYPE_DISK: u8 = 0x00;
/// PERIPHERAL QUALIFIER 011b, DEVICE TYPE 1Fh: no logical unit here.
const NO_LUN: u8 = 0x7F;
/// Version descriptors (SPC-4, standard INQUIRY data): SAM-5, SPC-4, SBC-3.
const VERSION_DESCRIPTORS: [u16; 3] = [0x00A0, 0x0460, 0x04C0];
const STANDARD_LEN: usize = 96;

const VPD_SUPPORTED: u8 = 0x00;
const VPD_SERIAL: u8 = 0x80;
const VPD_DEVICE_ID: u8 = 0x83;
const VPD_BLOCK_LIMITS: u8 = 0xB0;
const VPD_CHARACTERISTICS: u8 = 0xB1;
const VPD_PROVISIONING: u8 = 0xB2;
const VPD_PAGES: [u8; 6] = [
    VPD_SUPPORTED,
    VPD_SERIAL,
    VPD_DEVICE_ID,
    VPD_BLOCK_LIMITS,
    VPD_CHARACTERISTICS,
    VPD_PROVISIONING,
];

fn standard(peripheral: u8) -> Vec<u8> {
    let mut d = vec![0u8; STANDARD_LEN];
    d[0] = peripheral;
    d[2] = 0x06; // VERSION: SPC-4
    d[3] = 0x10 | 0x02; // HISUP, RESPONSE DATA FORMAT 2
    d[4] = (STANDARD_LEN - 5) as u8;
    d[7] = 0x02; // CMDQUE
    d[8..16].copy_from_slice(VENDOR);
    d[16..32].copy_from_slice(PRODUCT);
    d[32..36].copy_from_slice(REVISION);
    for (i, v) in VERSION_DESCRIPTORS.iter().enumerate() {
        d[58 + 2 * i..60 + 2 * i].copy_from_slice(&v.to_be_bytes());
    }
    d
}

/// INQUIRY addressed to a LUN that does not exist (SPC-4, standard INQUIRY data).
pub(crate) fn no_lun(cdb: &Cdb) -> Result<Vec<u8>, SenseReason> {
    match cdb {
        Cdb::Inquiry { evpd: false, .. } => Ok(standard(NO_LUN)),
        _ => Err(SenseReason::LunNotSupported),
    }
}

pub(crate) fn inquiry(
    lun: &Lun,
    port: &TargetPort,
    evpd: bool,
    page: u8,
) -> Result<Vec<u8>, SenseReason> {
    if !evpd {
        return Ok(standard(DEVICE_TYPE_DISK));
    }
    let body = match page {
        VPD_SUPPORTED => VPD_PAGES.to_vec(),
        VPD_SERIAL => lun.options().identity.serial.as_bytes().to_vec(),
        VPD_DEVICE_ID => device_identification(lun, port),
        VPD_BLOCK_LIMITS => block_limits(lun),
        VPD_CHARACTERISTICS => {
            let mut b = vec![0u8; 0x3C];
            b[1] = 0x01; // MEDIUM ROTATION RATE 0001h: non-rotating
            b
        }
        VPD_PROVISIONING => provisioning(lun),
        _ => return Err(SenseReason::InvalidFieldInCdb(FieldPointer::byte(2))),
    };
    let mut d = vec![DEVICE_TYPE_DISK, page];
    d.extend_from_slice(&(body.len() as u16).to_be_bytes());
    d.extend_from_slice(&body);
    Ok(d)
}

/// Designation descriptor header (SPC-4, Device Identification VPD page).
fn designator(out: &mut Vec<u8>, code_set: u8, association: u8, kind: u8, id: &[u8]) {
    out.push(code_set);
    out.push(((association & 0x3) << 4) | (kind & 0x0F));
    out.push(0);
    out.push(id.len() as u8);
    out.extend_from_slice(id);
}

fn device_identification(lun: &Lun, port: &TargetPort) -> Vec<u8> {
    const BINARY: u8 = 1;
    const UTF8: u8 = 3;
    const LU: u8 = 0;
    const TARGET_PORT: u8 = 1;
    const NAA: u8 = 3;
    const RELATIVE_PORT: u8 = 4;
    const SCSI_NAME: u8 = 8;
    let mut out = Vec::new();
    designator(&mut out, BINARY, LU, NAA, &lun.options().identity.naa);
    // SCSI name string: null-terminated, padded to a multiple of four
    // (SPC-4, SCSI name string designator), at most 255 bytes.
    let mut name: Vec<u8> = port.name.bytes().take(251).collect();
    name.push(0);
    name.resize(name.len().next_multiple_of(4), 0);
    designator(&mut out, UTF8, TARGET_PORT, SCSI_NAME, &name);
    let mut rel = [0u8; 4];
    rel[2..].copy_from_slice(&port.relative_id.to_be_bytes());
    designator(&mut out, BINARY, TARGET_PORT, RELATIVE_PORT, &rel);
    out
}

fn block_limits(lun: &Lun) -> Vec<u8> {
    let geometry = lun.geometry();
    let bs = geometry.block_size.bytes();
    let mut b = vec![0u8; 0x3C];
    // Byte offsets below are of the page; the body starts at page byte 4.
    let mut put = |page_offset: usize, bytes: &[u8]| {
        b[page_offset - 4..page_offset - 4 + bytes.len()].copy_from_slice(bytes);
    };
    // WSNZ=0: WRITE SAME of zero blocks writes to the end of the medium.
    // MAXIMUM WRITE SAME LENGTH (byte 36) stays 0, no limit: zero patterns
    // become Bdev::write_zeroes, a metadata operation on every backend.
    put(5, &[limits::MAX_COMPARE_AND_WRITE_BLOCKS]);
    put(6, &1u16.to_be_bytes()); // OPTIMAL TRANSFER LENGTH GRANULARITY
    put(8, &(limits::max_transfer_blocks(bs) as u32).to_be_bytes());
    put(
        12,
        &(limits::optimal_transfer_blocks(bs) as u32).to_be_bytes(),
    );
    if geometry.thin_provisioned {
        put(20, &limits::MAX_UNMAP_LBA_COUNT.to_be_bytes());
        put(24, &limits::MAX_UNMAP_DESCRIPTORS.to_be_bytes());
        put(28, &1u32.to_be_bytes()); // OPTIMAL UNMAP GRANULARITY
    }
    b
}

fn provisioning(lun: &Lun) -> Vec<u8> {
    let mut b = vec![0u8; 4];
    if lun.geometry().thin_provisioned {
        // LBPU, LBPWS, LBPWS10, LBPRZ=001b (SBC-4, Logical Block Provisioning VPD page).
        b[1] = 0x80 | 0x40 | 0x20 | 0x04;
        b[2] = 0x02; // PROVISIONING TYPE: thin
    }
    b
}
