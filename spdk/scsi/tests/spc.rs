//! Primary commands (SPC-4) and unit attentions, through parse + execute.

mod common;

use common::*;
use reservoir_scsi::{SenseKey, Status};

#[test]
fn inquiry_standard() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (c, d) = f.run(&mut n, 1, &[0x12, 0, 0, 0, 96, 0], &[]);
    assert_good(&c);
    assert_eq!(d.len(), 96);
    assert_eq!(d[0], 0x00);
    assert_eq!(d[2], 0x06);
    assert_eq!(d[3] & 0x1F, 0x12);
    assert_eq!(d[4] as usize, 91);
    assert_eq!(d[7] & 0x02, 0x02);
    assert_eq!(&d[8..16], b"RESERVOR");
    assert_eq!(&d[16..32], b"Reservoir volume");
    // Allocation length truncation.
    let (c, d) = f.run(&mut n, 1, &[0x12, 0, 0, 0, 5, 0], &[]);
    assert_good(&c);
    assert_eq!(d.len(), 5);
}

#[test]
fn inquiry_no_lun_and_invalid_fields() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (c, d) = f.run(&mut n, 0, &[0x12, 0, 0, 0, 36, 0], &[]);
    assert_good(&c);
    assert_eq!(d[0], 0x7F);
    // EVPD=0 with a page code.
    let (c, _) = f.run(&mut n, 1, &[0x12, 0, 0x80, 0, 36, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    let s = c.sense.unwrap().to_fixed_bytes();
    assert_eq!(s[15] & 0xC0, 0xC0);
    assert_eq!(&s[16..18], &[0, 2]);
    // Unsupported VPD page.
    let (c, _) = f.run(&mut n, 1, &[0x12, 1, 0x99, 0, 36, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    // Any other command to a missing LUN.
    let (c, _) = f.run(&mut n, 7, &[0, 0, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x25, 0);
}

#[test]
fn vpd_pages() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let vpd = |n: &mut _, page: u8| f.run(n, 1, &[0x12, 1, page, 0x10, 0, 0], &[]);
    let (c, d) = vpd(&mut n, 0);
    assert_good(&c);
    assert_eq!(&d[4..], &[0x00, 0x80, 0x83, 0xB0, 0xB1, 0xB2]);
    let (_, d) = vpd(&mut n, 0x80);
    assert_eq!(&d[4..], b"SER0001");
    let (_, d) = vpd(&mut n, 0x83);
    // NAA designator first.
    assert_eq!(&d[4..8], &[0x01, 0x03, 0, 16]);
    assert_eq!(d[8], 0x60);
    // SCSI name string, target port association.
    let name_at = 8 + 16;
    assert_eq!(d[name_at] & 0x0F, 3);
    assert_eq!(d[name_at + 1], 0x18);
    let len = d[name_at + 3] as usize;
    assert_eq!(len % 4, 0);
    assert!(d[name_at + 4..].starts_with(b"iqn.2026-01.test:dev,t,0x0001\0"));
    let rel_at = name_at + 4 + len;
    assert_eq!(&d[rel_at..rel_at + 8], &[0x01, 0x14, 0, 4, 0, 0, 0, 1]);
    let (_, d) = vpd(&mut n, 0xB0);
    assert_eq!(d.len(), 64);
    assert_eq!(d[4] & 1, 0, "WSNZ: zero blocks means to the end");
    assert_eq!(&d[36..44], &[0; 8], "no MAXIMUM WRITE SAME LENGTH");
    assert_eq!(u32::from_be_bytes(d[8..12].try_into().unwrap()), 65536);
    assert!(u32::from_be_bytes(d[20..24].try_into().unwrap()) > 0);
    assert!(u32::from_be_bytes(d[24..28].try_into().unwrap()) > 0);
    let (_, d) = vpd(&mut n, 0xB1);
    assert_eq!(&d[4..6], &[0, 1]);
    let (_, d) = vpd(&mut n, 0xB2);
    assert_eq!(d[5] & 0xE0, 0xE0);
    assert_eq!(d[5] & 0x1C, 0x04);
    assert_eq!(d[6] & 0x07, 2);
}

#[test]
fn vpd_thick_lun_has_no_unmap() {
    let f = fixture(Opts {
        thin: false,
        ..Opts::default()
    });
    let mut n = f.nexus("a");
    let (_, d) = f.run(&mut n, 1, &[0x12, 1, 0xB2, 0, 64, 0], &[]);
    assert_eq!(d[5], 0);
    assert_eq!(d[6], 0);
    let (c, _) = f.run(&mut n, 1, &[0x42, 0, 0, 0, 0, 0, 0, 0, 24, 0], &[0; 24]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x20, 0);
}

#[test]
fn report_luns() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    for lun in [0, 1, 5] {
        let (c, d) = f.run(&mut n, lun, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[]);
        assert_good(&c);
        assert_eq!(d, vec![0, 0, 0, 8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
    }
    let (c, d) = f.run(&mut n, 1, &[0xA0, 0, 1, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[]);
    assert_good(&c);
    assert_eq!(d, vec![0; 8]);
    let (c, _) = f.run(&mut n, 1, &[0xA0, 0, 3, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    for lun in [1, 0] {
        let (c, _) = f.run(&mut n, lun, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 15, 0, 0], &[]);
        assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    }
}

#[test]
fn lun_encoding_round_trips() {
    for lun in [0u64, 1, 255, 256, 16383] {
        assert_eq!(
            reservoir_scsi::decode_lun(reservoir_scsi::encode_lun(lun)),
            lun
        );
    }
}

#[test]
fn new_nexus_gets_power_on_ua_but_inquiry_passes() {
    let f = fixture(Opts::default());
    let mut n = f.device.new_nexus(reservoir_scsi::InitiatorPort {
        name: "x".into(),
        isid: [0; 6],
    });
    let (c, _) = f.run(&mut n, 1, &[0x12, 0, 0, 0, 36, 0], &[]);
    assert_good(&c);
    let (c, _) = f.run(&mut n, 1, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 64, 0, 0], &[]);
    assert_good(&c);
    let (c, _) = f.run(&mut n, 1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::UnitAttention, 0x29, 0);
    let (c, _) = f.run(&mut n, 1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_good(&c);
}

#[test]
fn request_sense_reports_and_clears_ua() {
    let f = fixture(Opts::default());
    let mut n = f.device.new_nexus(reservoir_scsi::InitiatorPort {
        name: "x".into(),
        isid: [0; 6],
    });
    let (c, d) = f.run(&mut n, 1, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_good(&c);
    assert_eq!((d[2], d[12], d[13]), (0x06, 0x29, 0x00));
    let (c, d) = f.run(&mut n, 1, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_good(&c);
    assert_eq!((d[2], d[12], d[13]), (0, 0, 0));
    let (c, _) = f.run(&mut n, 1, &[0, 0, 0, 0, 0, 0], &[]);
    assert_good(&c);
    // Missing LUN: GOOD with LOGICAL UNIT NOT SUPPORTED.
    let (c, d) = f.run(&mut n, 9, &[0x03, 0, 0, 0, 18, 0], &[]);
    assert_good(&c);
    assert_eq!((d[2], d[12]), (0x05, 0x25));
    // Descriptor format is not supported.
    let (c, _) = f.run(&mut n, 1, &[0x03, 1, 0, 0, 18, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
}

#[test]
fn capacity_changed_ua_reaches_every_nexus() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("a");
    let mut b = f.nexus("b");
    use reservoir_bdev::Bdev;
    f.bdev.resize(reservoir_bdev::BlockCount(2048)).unwrap();
    f.lun.capacity_changed();
    for n in [&mut a, &mut b] {
        let (c, _) = f.run(n, 1, &[0, 0, 0, 0, 0, 0], &[]);
        assert_sense(&c, SenseKey::UnitAttention, 0x2A, 0x09);
        let (c, d) = f.run(n, 1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
        assert_good(&c);
        assert_eq!(&d[0..4], &2047u32.to_be_bytes());
    }
}

#[test]
fn lun_reset_ua_to_every_nexus_and_releases_reservation() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("a");
    let mut b = f.nexus("b");
    let (c, _) = f.run(&mut a, 1, &[0x16, 0, 0, 0, 0, 0], &[]);
    assert_good(&c);
    f.device.lun_reset(1).unwrap();
    assert!(f.device.lun_reset(3).is_err());
    for nexus in [&mut a, &mut b] {
        let (c, _) = f.run(nexus, 1, &[0, 0, 0, 0, 0, 0], &[]);
        assert_sense(&c, SenseKey::UnitAttention, 0x29, 0x03);
    }
    // The reservation is gone.
    let (c, _) = f.run(&mut b, 1, &[0, 0, 0, 0, 0, 0], &[]);
    assert_good(&c);
    f.device.target_reset();
    let (c, _) = f.run(&mut a, 1, &[0, 0, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::UnitAttention, 0x29, 0x03);
}

#[test]
fn spc2_reserve_release() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("a");
    let mut b = f.nexus("b");
    let reserve6 = [0x16, 0, 0, 0, 0, 0];
    let release6 = [0x17, 0, 0, 0, 0, 0];
    let reserve10 = [0x56, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    assert_good(&f.run(&mut a, 1, &reserve6, &[]).0);
    assert_good(&f.run(&mut a, 1, &reserve10, &[]).0);
    assert_eq!(
        f.run(&mut b, 1, &reserve6, &[]).0.status,
        Status::ReservationConflict
    );
    assert_eq!(
        f.run(&mut b, 1, &[0, 0, 0, 0, 0, 0], &[]).0.status,
        Status::ReservationConflict
    );
    assert_eq!(
        f.run(&mut b, 1, &cdb10(0x28, 0, 0, 1), &[]).0.status,
        Status::ReservationConflict
    );
    assert_good(&f.run(&mut b, 1, &[0x12, 0, 0, 0, 36, 0], &[]).0);
    assert_good(
        &f.run(&mut b, 1, &[0xA0, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0], &[])
            .0,
    );
    // RELEASE by a non-holder succeeds without effect.
    assert_good(&f.run(&mut b, 1, &release6, &[]).0);
    assert_eq!(
        f.run(&mut b, 1, &[0, 0, 0, 0, 0, 0], &[]).0.status,
        Status::ReservationConflict
    );
    assert_good(&f.run(&mut a, 1, &[0, 0, 0, 0, 0, 0], &[]).0);
    assert_good(&f.run(&mut a, 1, &release6, &[]).0);
    assert_good(&f.run(&mut b, 1, &[0, 0, 0, 0, 0, 0], &[]).0);
    // Third-party reservations are not supported.
    let (c, _) = f.run(&mut a, 1, &[0x56, 0x10, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    // Nexus loss releases.
    assert_good(&f.run(&mut b, 1, &reserve6, &[]).0);
    drop(b);
    assert_good(&f.run(&mut a, 1, &[0, 0, 0, 0, 0, 0], &[]).0);
}

#[test]
fn mode_sense_pages() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    // MODE SENSE(6), all pages, with block descriptor.
    let (c, d) = f.run(&mut n, 1, &[0x1A, 0, 0x3F, 0, 255, 0], &[]);
    assert_good(&c);
    assert_eq!(d[0] as usize, d.len() - 1);
    assert_eq!(d[2], 0x10, "DPOFUA, not write protected");
    assert_eq!(d[3], 8);
    assert_eq!(&d[4..8], &1024u32.to_be_bytes());
    assert_eq!(&d[9..12], &[0, 2, 0]);
    let pages = &d[12..];
    assert_eq!(&pages[0..3], &[0x08, 0x12, 0x04], "caching, WCE");
    assert_eq!(&pages[20..22], &[0x0A, 0x0A]);
    assert_eq!(&pages[32..34], &[0x1C, 0x0A]);
    assert_eq!(pages.len(), 44);
    // DBD, single page, changeable values.
    let (c, d) = f.run(&mut n, 1, &[0x1A, 0x08, 0x48, 0, 255, 0], &[]);
    assert_good(&c);
    assert_eq!(d[3], 0);
    assert_eq!(&d[4..7], &[0x08, 0x12, 0x04]);
    // MODE SENSE(10) with LLBAA.
    let (c, d) = f.run(&mut n, 1, &[0x5A, 0x10, 0x0A, 0, 0, 0, 0, 0, 255, 0], &[]);
    assert_good(&c);
    assert_eq!(u16::from_be_bytes([d[0], d[1]]) as usize, d.len() - 2);
    assert_eq!(d[4] & 1, 1);
    assert_eq!(&d[6..8], &[0, 16]);
    assert_eq!(&d[8..16], &1024u64.to_be_bytes());
    assert_eq!(&d[24..26], &[0x0A, 0x0A]);
    // Saved values are not supported; nor an unknown page.
    let (c, _) = f.run(&mut n, 1, &[0x1A, 0, 0xC8, 0, 255, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x39, 0);
    let (c, _) = f.run(&mut n, 1, &[0x1A, 0, 0x19, 0, 255, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    // Truncation to the allocation length.
    let (c, d) = f.run(&mut n, 1, &[0x1A, 0, 0x3F, 0, 4, 0], &[]);
    assert_good(&c);
    assert_eq!(d.len(), 4);
}

#[test]
fn mode_sense_read_only_sets_wp() {
    let f = fixture(Opts {
        read_only: true,
        ..Opts::default()
    });
    let mut n = f.nexus("a");
    let (_, d) = f.run(&mut n, 1, &[0x1A, 0x08, 0x3F, 0, 255, 0], &[]);
    assert_eq!(d[2] & 0x80, 0x80);
}

fn caching_select(wce: bool) -> Vec<u8> {
    let mut p = vec![0, 0, 0, 0, 0x08, 0x12];
    p.extend_from_slice(&[0; 18]);
    if wce {
        p[6] = 0x04;
    }
    p
}

#[test]
fn mode_select_toggles_wce_and_tells_other_nexuses() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("a");
    let mut b = f.nexus("b");
    let params = caching_select(false);
    let (c, _) = f.run(
        &mut a,
        1,
        &[0x15, 0x10, 0, 0, params.len() as u8, 0],
        &params,
    );
    assert_good(&c);
    let (_, d) = f.run(&mut a, 1, &[0x1A, 0x08, 0x08, 0, 255, 0], &[]);
    assert_eq!(d[6] & 0x04, 0, "WCE cleared");
    assert_good(&f.run(&mut a, 1, &[0, 0, 0, 0, 0, 0], &[]).0);
    let (c, _) = f.run(&mut b, 1, &[0, 0, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::UnitAttention, 0x2A, 0x01);
    // WCE=0: plain writes become FUA.
    let before = *f.bdev.fua_writes.lock().unwrap();
    assert_good(&f.run(&mut a, 1, &cdb10(0x2A, 0, 0, 1), &[1; BS]).0);
    assert_eq!(*f.bdev.fua_writes.lock().unwrap(), before + 1);
}

#[test]
fn mode_select_rejects_non_changeable_bits() {
    let f = fixture(Opts {
        volatile_cache: false,
        ..Opts::default()
    });
    let mut a = f.nexus("a");
    let params = caching_select(true);
    let (c, _) = f.run(
        &mut a,
        1,
        &[0x15, 0x10, 0, 0, params.len() as u8, 0],
        &params,
    );
    assert_sense(&c, SenseKey::IllegalRequest, 0x26, 0);
    let s = c.sense.unwrap().to_fixed_bytes();
    assert_eq!(s[15], 0x80 | 0x08 | 2);
    assert_eq!(&s[16..18], &[0, 6]);
    // Short parameter list.
    let (c, _) = f.run(&mut a, 1, &[0x15, 0x10, 0, 0, 2, 0], &params[..2]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x1A, 0);
    // SP=1.
    let (c, _) = f.run(&mut a, 1, &[0x15, 0x11, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
}

#[test]
fn report_supported_opcodes() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (c, d) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
        &[],
    );
    assert_good(&c);
    let len = u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize;
    assert_eq!(len % 8, 0);
    assert_eq!(d.len(), len + 4);
    let descs: Vec<_> = d[4..].chunks(8).collect();
    assert!(descs
        .iter()
        .any(|x| x[0] == 0x28 && u16::from_be_bytes([x[6], x[7]]) == 10));
    assert!(descs
        .iter()
        .any(|x| x[0] == 0x9E && x[3] == 0x10 && x[5] & 1 == 1));
    // With timeouts descriptors.
    let (c, d) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0C, 0x80, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
        &[],
    );
    assert_good(&c);
    assert_eq!(&d[4 + 8..4 + 10], &[0, 0x0A]);
    assert_eq!(d[4 + 5] & 0x02, 0x02);
    // One command: READ(10).
    let (c, d) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0C, 1, 0x28, 0, 0, 0, 0, 0, 64, 0, 0],
        &[],
    );
    assert_good(&c);
    assert_eq!(d[1] & 0x07, 3);
    assert_eq!(&d[2..4], &[0, 10]);
    assert_eq!(d[4], 0x28);
    // One command with a service action: READ CAPACITY(16).
    let (c, d) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0C, 2, 0x9E, 0, 0x10, 0, 0, 0, 64, 0, 0],
        &[],
    );
    assert_good(&c);
    assert_eq!(d[1] & 0x07, 3);
    assert_eq!(&d[2..4], &[0, 16]);
    // Option 1 for a command with service actions is invalid.
    let (c, _) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0C, 1, 0x9E, 0, 0, 0, 0, 0, 64, 0, 0],
        &[],
    );
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    // Unsupported opcode: SUPPORT 001b.
    let (c, d) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0C, 1, 0xEE, 0, 0, 0, 0, 0, 64, 0, 0],
        &[],
    );
    assert_good(&c);
    assert_eq!(d[1] & 0x07, 1);
}

#[test]
fn usage_maps_are_truthful() {
    // Setting any bit outside the reported usage map fails; a bit inside
    // never fails as a reserved bit.
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (_, all) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0C, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0],
        &[],
    );
    for desc in all[4..].chunks(8) {
        let (op, sa) = (desc[0], u16::from_be_bytes([desc[2], desc[3]]));
        let opt = if desc[5] & 1 == 1 { 2 } else { 1 };
        let q = [
            0xA3,
            0x0C,
            opt,
            op,
            (sa >> 8) as u8,
            sa as u8,
            0,
            0,
            0,
            64,
            0,
            0,
        ];
        let (c, d) = f.run(&mut n, 1, &q, &[]);
        assert_good(&c);
        let len = u16::from_be_bytes([d[2], d[3]]) as usize;
        let usage = &d[4..4 + len];
        assert_eq!(usage[0], op);
        for byte in 1..len {
            for bit in 0..8 {
                if usage[byte] & (1 << bit) != 0 {
                    continue;
                }
                let mut cdb = vec![0u8; len];
                cdb[0] = op;
                if opt == 2 {
                    cdb[1] = sa as u8;
                }
                cdb[byte] |= 1 << bit;
                let (c, _) = f.run(&mut n, 1, &cdb, &[]);
                assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
                let s = c.sense.unwrap().to_fixed_bytes();
                assert_eq!(
                    &s[16..18],
                    &(byte as u16).to_be_bytes(),
                    "op {op:#x} byte {byte} bit {bit}"
                );
                assert_eq!(s[15] & 0x07, bit, "op {op:#x} byte {byte} bit {bit}");
            }
        }
    }
}

#[test]
fn report_supported_tmfs() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (c, d) = f.run(&mut n, 1, &[0xA3, 0x0D, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0], &[]);
    assert_good(&c);
    assert_eq!(d.len(), 4);
    assert_eq!(d[0] & 0x08, 0x08, "LU reset");
    let (c, d) = f.run(
        &mut n,
        1,
        &[0xA3, 0x0D, 0x80, 0, 0, 0, 0, 0, 0, 16, 0, 0],
        &[],
    );
    assert_good(&c);
    assert_eq!(d.len(), 16);
    assert_eq!(d[3], 0x0C);
}

#[test]
fn unknown_opcode_and_service_action() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (c, _) = f.run(&mut n, 1, &[0xC0, 0, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x20, 0);
    let (c, _) = f.run(&mut n, 1, &cdb16(0x9E, 0x1F, 0, 32), &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    // A pending UA takes precedence over an invalid CDB.
    let mut fresh = f.device.new_nexus(reservoir_scsi::InitiatorPort {
        name: "y".into(),
        isid: [0; 6],
    });
    let (c, _) = f.run(&mut fresh, 1, &[0xC0, 0, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::UnitAttention, 0x29, 0);
}

#[test]
fn start_stop_and_prevent_allow() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    assert_good(&f.run(&mut n, 1, &[0x1B, 1, 0, 0, 0, 0], &[]).0);
    assert_good(&f.run(&mut n, 1, &[0x1B, 0, 0, 0, 1, 0], &[]).0);
    let (c, _) = f.run(&mut n, 1, &[0x1B, 1, 0, 0, 2, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    assert_good(&f.run(&mut n, 1, &[0x1E, 0, 0, 0, 1, 0], &[]).0);
    assert_good(&f.run(&mut n, 1, &[0x1E, 0, 0, 0, 0, 0], &[]).0);
    assert_good(&f.run(&mut n, 1, &[0, 0, 0, 0, 0, 0], &[]).0);
}

#[test]
fn shared_types_cross_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<reservoir_scsi::Device>();
    send_sync::<reservoir_scsi::Lun>();
    send_sync::<reservoir_scsi::Command>();
    send::<reservoir_scsi::Nexus>();
}
