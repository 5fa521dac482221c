//! Block commands (SBC-4), table-driven where the families share shape.

mod common;

use std::sync::atomic::Ordering;

use common::*;
use reservoir_scsi::{AlignedBuf, DataDirection, SenseKey};

fn pattern(blocks: usize, seed: u8) -> Vec<u8> {
    (0..blocks * BS)
        .map(|i| (i as u8).wrapping_mul(7) ^ seed)
        .collect()
}

/// (name, CDB builder for (lba, blocks)) for every READ and WRITE size.
type Builder = fn(u64, u32, u8) -> Vec<u8>;

fn reads() -> Vec<(&'static str, Builder)> {
    vec![
        ("read6", |lba, n, _| {
            vec![
                0x08,
                (lba >> 16) as u8,
                (lba >> 8) as u8,
                lba as u8,
                n as u8,
                0,
            ]
        }),
        ("read10", |lba, n, f| cdb10(0x28, f, lba as u32, n as u16)),
        ("read12", |lba, n, f| cdb12(0xA8, f, lba as u32, n)),
        ("read16", |lba, n, f| cdb16(0x88, f, lba, n)),
    ]
}

fn writes() -> Vec<(&'static str, Builder)> {
    vec![
        ("write6", |lba, n, _| {
            vec![
                0x0A,
                (lba >> 16) as u8,
                (lba >> 8) as u8,
                lba as u8,
                n as u8,
                0,
            ]
        }),
        ("write10", |lba, n, f| cdb10(0x2A, f, lba as u32, n as u16)),
        ("write12", |lba, n, f| cdb12(0xAA, f, lba as u32, n)),
        ("write16", |lba, n, f| cdb16(0x8A, f, lba, n)),
    ]
}

#[test]
fn read_capacity() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (c, d) = f.run(&mut n, 1, &[0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0], &[]);
    assert_good(&c);
    assert_eq!(d, [0, 0, 3, 0xFF, 0, 0, 2, 0]);
    let (c, d) = f.run(&mut n, 1, &cdb16(0x9E, 0x10, 0, 32), &[]);
    assert_good(&c);
    assert_eq!(&d[0..8], &1023u64.to_be_bytes());
    assert_eq!(&d[8..12], &512u32.to_be_bytes());
    assert_eq!(d[14] & 0xC0, 0xC0, "LBPME, LBPRZ");
    let (c, d) = f.run(&mut n, 1, &cdb16(0x9E, 0x10, 0, 12), &[]);
    assert_good(&c);
    assert_eq!(d.len(), 12);
    // PMI=0 with an LBA.
    let (c, _) = f.run(&mut n, 1, &[0x25, 0, 0, 0, 0, 1, 0, 0, 0, 0], &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
}

#[test]
fn write_then_read_every_size() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    for ((wname, w), (rname, r)) in writes().into_iter().zip(reads()) {
        for (lba, blocks) in [(0u64, 1u32), (10, 3), (BLOCKS - 4, 4)] {
            let data = pattern(blocks as usize, lba as u8);
            let cmd = f.device.parse(1, &w(lba, blocks, 0)).unwrap();
            assert_eq!(cmd.transfer().direction, DataDirection::Out);
            assert_eq!(cmd.transfer().bytes, data.len() as u64);
            let (c, _) = f.run(&mut n, 1, &w(lba, blocks, 0), &data);
            assert_good(&c);
            let (c, back) = f.run(&mut n, 1, &r(lba, blocks, 0), &[]);
            assert_good(&c);
            assert_eq!(back, data, "{wname}/{rname} at {lba}");
        }
    }
}

#[test]
fn read6_write6_zero_means_256() {
    let f = fixture(Opts::default());
    let cmd = f.device.parse(1, &[0x08, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(cmd.transfer().bytes, 256 * BS as u64);
    let cmd = f.device.parse(1, &[0x0A, 0, 0, 0, 0, 0]).unwrap();
    assert_eq!(cmd.transfer().bytes, 256 * BS as u64);
}

#[test]
fn out_of_range_and_zero_blocks() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    for (name, r) in reads().into_iter().chain(writes()) {
        let six = name.ends_with('6');
        let data = pattern(2, 0);
        // Zero blocks at LBA 0 is fine (not for the 6-byte forms, where 0 is 256).
        if !six {
            assert_good(&f.run(&mut n, 1, &r(0, 0, 0), &[]).0);
            let (c, _) = f.run(&mut n, 1, &r(BLOCKS + 1, 0, 0), &[]);
            assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
        }
        let (c, _) = f.run(&mut n, 1, &r(BLOCKS - 1, 2, 0), &data);
        assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
        if name.ends_with("16") {
            let (c, _) = f.run(&mut n, 1, &r(u64::MAX, 1, 0), &data);
            assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
        }
    }
}

#[test]
fn protect_bits_and_flags() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    for (name, b) in reads()
        .into_iter()
        .chain(writes())
        .filter(|(n, _)| !n.ends_with('6'))
    {
        let data = pattern(1, 1);
        for protect in 1..8u8 {
            let (c, _) = f.run(&mut n, 1, &b(0, 1, protect << 5), &data);
            assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
            let s = c.sense.unwrap().to_fixed_bytes();
            assert_eq!(&s[15..18], &[0xC8 | 7, 0, 1], "{name}");
        }
        // DPO, FUA, FUA_NV are accepted.
        for flags in [0x10, 0x08, 0x02, 0x18] {
            assert_good(&f.run(&mut n, 1, &b(0, 1, flags), &data).0);
        }
    }
}

#[test]
fn fua_reaches_the_bdev() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let before = *f.bdev.fua_writes.lock().unwrap();
    assert_good(&f.run(&mut n, 1, &cdb10(0x2A, 0, 0, 1), &pattern(1, 0)).0);
    assert_eq!(*f.bdev.fua_writes.lock().unwrap(), before);
    assert_good(&f.run(&mut n, 1, &cdb10(0x2A, 0x08, 0, 1), &pattern(1, 0)).0);
    assert_eq!(*f.bdev.fua_writes.lock().unwrap(), before + 1);
}

#[test]
fn transfer_over_limit_and_short_data() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let (c, _) = f.run(&mut n, 1, &cdb16(0x88, 0, 0, 65537), &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    // Fewer bytes than the CDB describes: the whole blocks that arrived are
    // written, the transport reports the residual.
    assert_good(
        &f.run(&mut n, 1, &cdb10(0x2A, 0, 0, 2), &vec![b'a'; 2 * BS])
            .0,
    );
    assert_good(
        &f.run(&mut n, 1, &cdb10(0x2A, 0, 0, 2), &vec![b'b'; BS + 200])
            .0,
    );
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 0, 2), &[]);
    assert!(back[..BS].iter().all(|&b| b == b'b'));
    assert!(back[BS..].iter().all(|&b| b == b'a'));
    assert_good(&f.run(&mut n, 1, &cdb10(0x2A, 0, 0, 1), &[]).0);
    // More is fine too: only the CDB's blocks are written.
    assert_good(
        &f.run(&mut n, 1, &cdb10(0x2A, 0, 1, 1), &vec![b'c'; 2 * BS])
            .0,
    );
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 2, 1), &[]);
    assert!(back.iter().all(|&b| b == 0));
}

#[test]
fn read_only_lun_rejects_every_write() {
    let f = fixture(Opts {
        read_only: true,
        ..Opts::default()
    });
    let mut n = f.nexus("a");
    let one = pattern(1, 0);
    let two = pattern(2, 0);
    let unmap = [
        0u8, 22, 0, 16, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0,
    ];
    let cases: Vec<(Vec<u8>, &[u8])> = vec![
        (vec![0x0A, 0, 0, 0, 1, 0], &one),
        (cdb10(0x2A, 0, 0, 1), &one),
        (cdb12(0xAA, 0, 0, 1), &one),
        (cdb16(0x8A, 0, 0, 1), &one),
        (cdb10(0x2E, 0, 0, 1), &one),
        (cdb16(0x8B, 0, 0, 1), &one),
        (cdb10(0x41, 0, 0, 1), &one),
        (cdb16(0x93, 0, 0, 1), &one),
        (cdb16(0x93, 0x08, 0, 1), &one),
        (
            {
                let mut c = cdb16(0x89, 0, 0, 0);
                c[13] = 1;
                c
            },
            &two,
        ),
        (cdb10(0x42, 0, 0, 24), &unmap),
    ];
    for (cdb, data) in cases {
        let (c, _) = f.run(&mut n, 1, &cdb, data);
        assert_sense(&c, SenseKey::DataProtect, 0x27, 0);
    }
    // Reads still work.
    assert_good(&f.run(&mut n, 1, &cdb10(0x28, 0, 0, 1), &[]).0);
    assert_good(&f.run(&mut n, 1, &cdb10(0x35, 0, 0, 0), &[]).0);
}

#[test]
fn medium_errors() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    f.bdev.fail_reads.store(true, Ordering::Relaxed);
    let (c, d) = f.run(&mut n, 1, &cdb10(0x28, 0, 0, 1), &[]);
    assert_sense(&c, SenseKey::MediumError, 0x11, 0);
    assert!(d.is_empty());
    f.bdev.fail_reads.store(false, Ordering::Relaxed);
    f.bdev.fail_writes.store(true, Ordering::Relaxed);
    let (c, _) = f.run(&mut n, 1, &cdb10(0x2A, 0, 0, 1), &pattern(1, 0));
    assert_sense(&c, SenseKey::MediumError, 0x0C, 0);
}

#[test]
fn verify_bytchk() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let data = pattern(4, 9);
    assert_good(&f.run(&mut n, 1, &cdb10(0x2A, 0, 8, 4), &data).0);
    let builders: [Builder; 3] = [
        |lba, n, fl| cdb10(0x2F, fl, lba as u32, n as u16),
        |lba, n, fl| cdb12(0xAF, fl, lba as u32, n),
        |lba, n, fl| cdb16(0x8F, fl, lba, n),
    ];
    for b in builders {
        // BYTCHK=0: medium verification, no data.
        let cmd = f.device.parse(1, &b(8, 4, 0)).unwrap();
        assert_eq!(cmd.transfer().direction, DataDirection::None);
        assert_good(&f.run(&mut n, 1, &b(8, 4, 0), &[]).0);
        // BYTCHK=1 equal.
        assert_good(&f.run(&mut n, 1, &b(8, 4, 0x02), &data).0);
        // BYTCHK=1, mismatch at byte 700.
        let mut bad = data.clone();
        bad[700] ^= 1;
        let (c, _) = f.run(&mut n, 1, &b(8, 4, 0x02), &bad);
        assert_sense(&c, SenseKey::Miscompare, 0x1D, 0);
        assert_eq!(c.sense.unwrap().information(), Some(700));
        let s = c.sense.unwrap().to_fixed_bytes();
        assert_eq!(s[0], 0xF0);
        assert_eq!(&s[3..7], &700u32.to_be_bytes());
        // BYTCHK=2 is reserved.
        let (c, _) = f.run(&mut n, 1, &b(8, 4, 0x04), &data);
        assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
        // Out of range.
        let (c, _) = f.run(&mut n, 1, &b(BLOCKS, 1, 0), &[]);
        assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
        // VRPROTECT.
        let (c, _) = f.run(&mut n, 1, &b(8, 1, 0x20), &[]);
        assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    }
    // BYTCHK=3: one block against each.
    let zeros = vec![0u8; BS];
    assert_good(&f.run(&mut n, 1, &cdb10(0x2F, 0x06, 100, 3), &zeros).0);
    let (c, _) = f.run(&mut n, 1, &cdb10(0x2F, 0x06, 8, 1), &zeros);
    assert_sense(&c, SenseKey::Miscompare, 0x1D, 0);
}

#[test]
fn write_and_verify() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    for (op, b) in [
        (0x2E, cdb10(0x2E, 0x02, 5, 2)),
        (0xAE, cdb12(0xAE, 0x02, 5, 2)),
        (0x8E, cdb16(0x8E, 0x00, 5, 2)),
    ] {
        let data = pattern(2, op);
        assert_good(&f.run(&mut n, 1, &b, &data).0);
        let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 5, 2), &[]);
        assert_eq!(back, data);
    }
    let (c, _) = f.run(&mut n, 1, &cdb10(0x2E, 0x06, 5, 1), &pattern(1, 0));
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
}

fn caw(lba: u64, blocks: u8, flags: u8) -> Vec<u8> {
    let mut c = cdb16(0x89, flags, lba, 0);
    c[13] = blocks;
    c
}

#[test]
fn compare_and_write() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let old = pattern(2, 1);
    let new = pattern(2, 2);
    assert_good(&f.run(&mut n, 1, &cdb10(0x2A, 0, 20, 2), &old).0);
    let cmd = f.device.parse(1, &caw(20, 2, 0)).unwrap();
    assert_eq!(cmd.transfer().bytes, 4 * BS as u64);
    let both = [old.clone(), new.clone()].concat();
    assert_good(&f.run(&mut n, 1, &caw(20, 2, 0x08), &both).0);
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 20, 2), &[]);
    assert_eq!(back, new);
    // Miscompare: nothing written, offset reported.
    let (c, _) = f.run(&mut n, 1, &caw(20, 2, 0), &both);
    assert_sense(&c, SenseKey::Miscompare, 0x1D, 0);
    let off = old.iter().zip(&new).position(|(a, b)| a != b).unwrap();
    assert_eq!(c.sense.unwrap().information(), Some(off as u64));
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 20, 2), &[]);
    assert_eq!(back, new);
    // Zero blocks, out of range, too long, protection.
    assert_good(&f.run(&mut n, 1, &caw(20, 0, 0), &[]).0);
    let (c, _) = f.run(&mut n, 1, &caw(BLOCKS - 1, 2, 0), &both);
    assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
    let (c, _) = f.run(&mut n, 1, &caw(0, 129, 0), &both);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    let (c, _) = f.run(&mut n, 1, &caw(0, 1, 0x20), &both);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    // Data-out must be exactly both halves.
    let (c, _) = f.run(&mut n, 1, &caw(20, 2, 0), &both[..3 * BS]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    let (c, _) = f.run(&mut n, 1, &caw(20, 1, 0), &both);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
}

#[test]
fn orwrite() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    assert_good(&f.run(&mut n, 1, &cdb10(0x2A, 0, 3, 1), &vec![0x0F; BS]).0);
    assert_good(&f.run(&mut n, 1, &cdb16(0x8B, 0, 3, 1), &vec![0xF0; BS]).0);
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 3, 1), &[]);
    assert_eq!(back, vec![0xFF; BS]);
    let (c, _) = f.run(&mut n, 1, &cdb16(0x8B, 0, BLOCKS, 1), &vec![0; BS]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
}

#[test]
fn synchronize_cache_and_prefetch() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    for cdb in [
        cdb10(0x35, 0, 0, 0),
        cdb10(0x35, 0x02, 10, 10),
        cdb16(0x91, 0, 0, 1),
    ] {
        assert_good(&f.run(&mut n, 1, &cdb, &[]).0);
    }
    assert_eq!(*f.bdev.flushes.lock().unwrap(), 3);
    for cdb in [
        cdb10(0x34, 0, 0, 0),
        cdb10(0x34, 0x02, 0, 256),
        cdb16(0x90, 0, 1000, 24),
    ] {
        assert_good(&f.run(&mut n, 1, &cdb, &[]).0);
    }
    for cdb in [
        cdb10(0x35, 0, BLOCKS as u32, 1),
        cdb16(0x90, 0, BLOCKS + 1, 0),
        cdb16(0x91, 0, u64::MAX, 1),
    ] {
        let (c, _) = f.run(&mut n, 1, &cdb, &[]);
        assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
    }
}

fn unmap_list(descs: &[(u64, u32)]) -> Vec<u8> {
    let mut p = vec![0u8; 8];
    p[0..2].copy_from_slice(&((6 + 16 * descs.len()) as u16).to_be_bytes());
    p[2..4].copy_from_slice(&((16 * descs.len()) as u16).to_be_bytes());
    for (lba, n) in descs {
        p.extend_from_slice(&lba.to_be_bytes());
        p.extend_from_slice(&n.to_be_bytes());
        p.extend_from_slice(&[0; 4]);
    }
    p
}

fn lba_status(f: &Fixture, n: &mut reservoir_scsi::Nexus, lba: u64) -> (u64, u32, u8) {
    let (c, d) = f.run(n, 1, &cdb16(0x9E, 0x12, lba, 64), &[]);
    assert_good(&c);
    (
        u64::from_be_bytes(d[8..16].try_into().unwrap()),
        u32::from_be_bytes(d[16..20].try_into().unwrap()),
        d[20] & 0x0F,
    )
}

#[test]
fn unmap_and_get_lba_status() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    assert_eq!(lba_status(&f, &mut n, 0), (0, BLOCKS as u32, 1));
    assert_good(&f.run(&mut n, 1, &cdb10(0x2A, 0, 0, 16), &pattern(16, 3)).0);
    assert_eq!(lba_status(&f, &mut n, 0), (0, 16, 0));
    assert_eq!(lba_status(&f, &mut n, 16), (16, BLOCKS as u32 - 16, 1));
    let list = unmap_list(&[(2, 2), (8, 0), (10, 1)]);
    assert_good(
        &f.run(&mut n, 1, &cdb10(0x42, 0, 0, list.len() as u16), &list)
            .0,
    );
    assert_eq!(lba_status(&f, &mut n, 0), (0, 2, 0));
    assert_eq!(lba_status(&f, &mut n, 2), (2, 2, 1));
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 2, 2), &[]);
    assert!(back.iter().all(|&b| b == 0));
    // Several descriptors in one answer.
    let (_, d) = f.run(&mut n, 1, &cdb16(0x9E, 0x12, 0, 1024), &[]);
    assert_eq!(
        u32::from_be_bytes(d[0..4].try_into().unwrap()) as usize,
        d.len() - 4
    );
    assert!(d.len() >= 8 + 16 * 4);
    // GET LBA STATUS past the end.
    let (c, _) = f.run(&mut n, 1, &cdb16(0x9E, 0x12, BLOCKS, 64), &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
    // Validation.
    let empty: Vec<u8> = Vec::new();
    assert_good(&f.run(&mut n, 1, &cdb10(0x42, 0, 0, 0), &empty).0);
    let (c, _) = f.run(&mut n, 1, &cdb10(0x42, 0, 0, 4), &[0; 4]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x1A, 0);
    let oob = unmap_list(&[(BLOCKS - 1, 2)]);
    let (c, _) = f.run(&mut n, 1, &cdb10(0x42, 0, 0, oob.len() as u16), &oob);
    assert_sense(&c, SenseKey::IllegalRequest, 0x21, 0);
    let (c, _) = f.run(&mut n, 1, &cdb10(0x42, 1, 0, oob.len() as u16), &oob);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0);
    let many = unmap_list(&vec![(0, 1); 257]);
    let (c, _) = f.run(&mut n, 1, &cdb10(0x42, 0, 0, many.len() as u16), &many);
    assert_sense(&c, SenseKey::IllegalRequest, 0x26, 0);
}

#[test]
fn write_same() {
    let f = fixture(Opts::default());
    let mut n = f.nexus("a");
    let block = pattern(1, 5);
    for cdb in [cdb10(0x41, 0, 30, 5), cdb16(0x93, 0, 30, 5)] {
        let cmd = f.device.parse(1, &cdb).unwrap();
        assert_eq!(cmd.transfer().bytes, BS as u64);
        assert_good(&f.run(&mut n, 1, &cdb, &block).0);
        let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, 30, 5), &[]);
        assert_eq!(back, block.repeat(5));
    }
    // UNMAP with a zero block deallocates.
    assert_good(&f.run(&mut n, 1, &cdb16(0x93, 0x08, 30, 5), &vec![0; BS]).0);
    assert_eq!(lba_status(&f, &mut n, 30).2, 1);
    // NDOB: no data, zeroes.
    let cmd = f.device.parse(1, &cdb16(0x93, 0x09, 0, 4)).unwrap();
    assert_eq!(cmd.transfer().direction, DataDirection::None);
    assert_good(&f.run(&mut n, 1, &cdb16(0x93, 0x09, 30, 5), &[]).0);
    // Zero blocks (WSNZ=0) writes to the end of the medium.
    let tail = BLOCKS as u32 - 3;
    assert_good(&f.run(&mut n, 1, &cdb10(0x41, 0, tail, 0), &block).0);
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, tail, 3), &[]);
    assert_eq!(back, block.repeat(3));
    // ... and a zero pattern to the end leaves zeroes, still mapped.
    assert_good(&f.run(&mut n, 1, &cdb10(0x41, 0, tail, 0), &vec![0; BS]).0);
    let (_, back) = f.run(&mut n, 1, &cdb10(0x28, 0, tail, 3), &[]);
    assert_eq!(back, vec![0; 3 * BS]);
    // Out of range (also with zero blocks), too long, anchor.
    for (cdb, asc) in [
        (cdb10(0x41, 0, BLOCKS as u32, 0), 0x21),
        (cdb16(0x93, 0, BLOCKS + 1, 1), 0x21),
        (cdb16(0x93, 0, u64::MAX, 1), 0x21),
        (cdb16(0x93, 0, 0, 0x0100_0000), 0x21),
        (cdb16(0x93, 0x10, 0, 1), 0x24),
    ] {
        let (c, _) = f.run(&mut n, 1, &cdb, &block);
        assert_sense(&c, SenseKey::IllegalRequest, asc, 0);
    }
    // Up to the last block.
    assert_good(
        &f.run(&mut n, 1, &cdb10(0x41, 0, BLOCKS as u32 - 256, 256), &block)
            .0,
    );
}

#[test]
fn four_k_blocks() {
    use reservoir_bdev::BlockSize;
    use reservoir_scsi::{Device, Lun, LunIdentity, LunOptions, TargetPort};
    use std::sync::Arc;
    let bdev = VecBdev::new(BlockSize::B4096, 64, false, false);
    let lun = Arc::new(Lun::new(
        bdev,
        LunOptions {
            read_only: false,
            identity: LunIdentity {
                serial: "4k".into(),
                naa: [0x60; 16],
            },
            reservations: None,
        },
    ));
    let device = Device::new(
        "d",
        vec![(0, lun)],
        TargetPort {
            name: "p".into(),
            relative_id: 1,
        },
    );
    let mut n = device.new_nexus(reservoir_scsi::InitiatorPort {
        name: "i".into(),
        isid: [0; 6],
    });
    let mut run = |cdb: &[u8], out: &[u8]| {
        let cmd = device.parse(0, cdb).unwrap();
        let mut data_in = AlignedBuf::new();
        let c = device.execute(&mut n, &cmd, out, &mut data_in);
        (c, cmd.transfer().bytes, data_in)
    };
    run(&[0, 0, 0, 0, 0, 0], &[]);
    let (c, bytes, d) = run(&cdb16(0x9E, 0x10, 0, 32), &[]);
    assert_good(&c);
    assert_eq!(bytes, 32);
    assert_eq!(&d[8..12], &4096u32.to_be_bytes());
    let data: Vec<u8> = (0..2 * 4096).map(|i| i as u8).collect();
    let (c, bytes, _) = run(&cdb10(0x2A, 0, 62, 2), &data);
    assert_good(&c);
    assert_eq!(bytes, 8192);
    let (c, _, back) = run(&cdb10(0x28, 0, 62, 2), &[]);
    assert_good(&c);
    assert_eq!(back[..], data[..]);
    // No volatile cache: WCE is clear and not changeable.
    let (_, _, d) = run(&[0x1A, 0x08, 0x48, 0, 255, 0], &[]);
    assert_eq!(d[6], 0);
    // Block descriptor with the 4 KiB block length.
    let (_, _, d) = run(&[0x1A, 0, 0x08, 0, 255, 0], &[]);
    assert_eq!(&d[9..12], &[0, 0x10, 0]);
}
