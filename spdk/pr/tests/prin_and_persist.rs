//! PERSISTENT RESERVE IN data (SPC-4 6.15) end to end from wire-format
//! PR OUT commands, allocation-length truncation, and APTPL persistence.
mod common;
use common::*;
use reservoir_pr::*;
use ReservationType::*;

fn prout(sa: u8, rtype: u8, key: u64, sa_key: u64, flags: u8) -> ProutCommand {
    let mut d = vec![0u8; 24];
    d[0..8].copy_from_slice(&key.to_be_bytes());
    d[8..16].copy_from_slice(&sa_key.to_be_bytes());
    d[20] = flags;
    let mut cdb = [0u8; 10];
    cdb[0] = 0x5f;
    cdb[1] = sa;
    cdb[2] = rtype;
    cdb[8] = 24;
    ProutCommand::parse(&cdb, &d).unwrap()
}

fn prin(t: &ReservationTable, sa: u8, alloc: u16) -> Vec<u8> {
    let mut cdb = [0u8; 10];
    cdb[0] = 0x5e;
    cdb[1] = sa;
    cdb[7..9].copy_from_slice(&alloc.to_be_bytes());
    t.execute_in(&PrinCommand::parse(&cdb).unwrap())
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes(b[..4].try_into().unwrap())
}

#[test]
fn read_keys_lists_every_registered_nexus() {
    let mut t = table();
    assert_eq!(prin(&t, 0, 100), [0, 0, 0, 0, 0, 0, 0, 0]);
    ok(&mut t, &a(), prout(0, 0, 0, KA, 0));
    ok(&mut t, &b(), prout(6, 0, 0, KA, 0)); // same key twice is listed twice
    let data = prin(&t, 0, 100);
    assert_eq!(be32(&data), 2);
    assert_eq!(be32(&data[4..]), 16);
    assert_eq!(&data[8..16], &KA.to_be_bytes());
    assert_eq!(&data[16..24], &KA.to_be_bytes());
}

#[test]
fn truncation_keeps_the_full_additional_length() {
    // libiscsi test_prin_read_keys_truncate: allocation length 8.
    let mut t = table();
    ok(&mut t, &a(), prout(0, 0, 0, KA, 0));
    ok(&mut t, &b(), prout(0, 0, 0, KB, 0));
    for alloc in [0u16, 3, 8, 12, 23] {
        let data = prin(&t, 0, alloc);
        assert_eq!(data.len(), alloc as usize);
        if alloc >= 8 {
            assert_eq!(be32(&data[4..]), 16);
        }
    }
    ok(&mut t, &a(), prout(1, 1, KA, 0, 0));
    assert_eq!(prin(&t, 1, 10).len(), 10);
    assert_eq!(be32(&prin(&t, 1, 8)[4..]), 16);
    assert_eq!(prin(&t, 2, 4), [0, 8, 0x0d, 0xb0]);
    let full = prin(&t, 3, u16::MAX);
    let cut = prin(&t, 3, 30);
    assert_eq!(&full[..30], &cut[..]);
    assert_eq!(be32(&cut[4..]) as usize, full.len() - 8);
}

#[test]
fn read_reservation_per_type() {
    for rtype in ReservationType::ALL {
        let mut t = table();
        ok(&mut t, &a(), prout(0, 0, 0, KA, 0));
        assert_eq!(be32(&prin(&t, 1, 100)[4..]), 0, "not reserved");
        ok(&mut t, &a(), prout(1, rtype.code(), KA, 0, 0));
        let d = prin(&t, 1, 100);
        assert_eq!(d.len(), 24);
        assert_eq!(be32(&d[4..]), 16);
        let key = if rtype.is_all_registrants() { 0 } else { KA };
        assert_eq!(&d[8..16], &key.to_be_bytes(), "{rtype}");
        assert_eq!(d[21], rtype.code()); // scope LU_SCOPE in the high nibble
    }
}

#[test]
fn report_capabilities_reports_ptpl_a() {
    let mut t = table();
    assert_eq!(prin(&t, 2, 8)[3] & 1, 0);
    ok(&mut t, &a(), prout(0, 0, 0, KA, 0x01));
    assert_eq!(prin(&t, 2, 8), [0, 8, 0x0d, 0xb1, 0xea, 0x01, 0, 0]);
}

/// Parses READ FULL STATUS descriptors:
/// (key, all_tg_pt, r_holder, scope/type, rel port, TransportID).
fn full_status(d: &[u8]) -> Vec<(u64, bool, bool, u8, u16, Vec<u8>)> {
    let mut out = Vec::new();
    let mut off = 8;
    while off < d.len() {
        let desc = &d[off..];
        let len = be32(&desc[20..]) as usize;
        out.push((
            u64::from_be_bytes(desc[..8].try_into().unwrap()),
            desc[12] & 2 != 0,
            desc[12] & 1 != 0,
            desc[13],
            u16::from_be_bytes([desc[18], desc[19]]),
            desc[24..24 + len].to_vec(),
        ));
        off += 24 + len;
    }
    out
}

#[test]
fn read_full_status_describes_each_registration() {
    let mut t = ReservationTable::new([P1, P2]);
    ok(&mut t, &a(), prout(0, 0, 0, KA, 0x04)); // ALL_TG_PT
    ok(&mut t, &b(), prout(0, 0, 0, KB, 0));
    ok(&mut t, &a(), prout(1, 5, KA, 0, 0));
    let d = prin(&t, 3, u16::MAX);
    assert_eq!(be32(&d[4..]) as usize, d.len() - 8);
    let s = full_status(&d);
    assert_eq!(s.len(), 3);
    assert_eq!(
        (s[0].0, s[0].1, s[0].2, s[0].3, s[0].4),
        (KA, true, true, 0x05, 1)
    );
    assert_eq!(
        (s[1].0, s[1].1, s[1].2, s[1].3, s[1].4),
        (KA, true, false, 0, 2)
    );
    assert_eq!(
        (s[2].0, s[2].1, s[2].2, s[2].3, s[2].4),
        (KB, false, false, 0, 1)
    );
    // FORMAT CODE 01b iSCSI TransportID with the ISID.
    let tid = &s[2].5;
    assert_eq!(tid[0], 0x45);
    assert_eq!(tid.len() % 4, 0);
    let text = std::str::from_utf8(&tid[4..])
        .unwrap()
        .trim_end_matches('\0');
    assert_eq!(text, "iqn.2026-01.org.example:b,i,0x400000000001");
    // All-registrants: every registrant is R_HOLDER with the type.
    let mut t = ab_reserved_by_a(ExclusiveAccessAllRegistrants);
    ok(&mut t, &b(), prout(0, 0, KB, KB, 0));
    let s = full_status(&prin(&t, 3, u16::MAX));
    assert!(s.iter().all(|d| d.2 && d.3 == 0x08));
}

#[test]
fn aptpl_round_trip_restores_everything() {
    let mut t = ReservationTable::new([P1, P2]);
    let fx = ok(&mut t, &a(), prout(0, 0, 0, KA, 0x01 | 0x04));
    assert!(fx.persist, "APTPL set: persist");
    ok(&mut t, &b(), prout(0, 0, 0, KB, 0x01));
    ok(
        &mut t,
        &Nexus::new(InitiatorPort::any_isid("iqn.wild"), P2),
        prout(0, 0, 0, KC, 0x01),
    );
    let fx = ok(&mut t, &a(), prout(1, 6, KA, 0, 0));
    assert!(fx.persist, "reservation changed under APTPL");
    let bytes = t.encode();
    let back = ReservationTable::decode(&bytes).unwrap();
    assert_eq!(back, t);
    assert_eq!(back.encode(), bytes);
    assert_eq!(back.check(&b(), Access::Write), Verdict::Allowed);
    assert_eq!(back.check(&c(), Access::Read), Verdict::Conflict);
}

#[test]
fn aptpl_clear_means_nothing_survives() {
    let mut t = table();
    let fx = ok(&mut t, &a(), prout(0, 0, 0, KA, 0));
    assert!(!fx.persist, "APTPL never set: nothing to write");
    ok(&mut t, &a(), prout(1, 1, KA, 0, 0));
    let back = ReservationTable::decode(&t.encode()).unwrap();
    assert!(back.registrations().is_empty() && back.reservation().is_none());
    assert_eq!(back.generation(), Generation(0));
    // Turning APTPL off must be written once, so the old record stops counting.
    let mut t = table();
    ok(&mut t, &a(), prout(0, 0, 0, KA, 1));
    let fx = ok(&mut t, &a(), prout(0, 0, KA, KA, 0));
    assert!(fx.persist);
    assert!(!t.aptpl());
    let fx = ok(&mut t, &a(), prout(1, 1, KA, 0, 0));
    assert!(!fx.persist);
    // Failed commands never ask for a write.
    assert!(t.execute_out(&b(), &prout(3, 0, KB, 0, 0)).is_err());
}

#[test]
fn aptpl_is_ignored_outside_register_actions() {
    let mut t = table();
    ok(&mut t, &a(), prout(0, 0, 0, KA, 1));
    ok(&mut t, &a(), prout(1, 1, KA, 0, 1));
    ok(&mut t, &a(), prout(2, 1, KA, 0, 0));
    assert!(t.aptpl());
}

#[test]
fn decode_rejects_inconsistent_records() {
    let mut t2 = table();
    ok(&mut t2, &a(), prout(0, 0, 0, KA, 1));
    ok(&mut t2, &a(), prout(1, 1, KA, 0, 0));
    let good = t2.encode();
    // Corrupt the holder index (last 4 bytes before the CRC) and re-seal.
    let mut body = good[..good.len() - 4].to_vec();
    let n = body.len();
    body[n - 4..].copy_from_slice(&7u32.to_be_bytes());
    let crc = crc32c_of(&body);
    body.extend_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        ReservationTable::decode(&body),
        Err(DecodeError::Inconsistent(_))
    ));
}

/// CRC32C (Castagnoli), bitwise; independent of the crate's implementation.
fn crc32c_of(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}
