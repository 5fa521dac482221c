//! Persistent reservations through `Device::execute`: the gate's command
//! classes, SPC-2 interplay, unit attentions and abort epochs, REGISTER AND
//! MOVE, and APTPL through a `ReservationStore`.

mod common;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use reservoir_bdev::BlockSize;
use reservoir_scsi::{
    Completion, Device, Lun, LunIdentity, LunOptions, ReservationStore, SenseKey, Status,
    TargetPort,
};

const KEY_A: u64 = 0xaaaa;
const KEY_B: u64 = 0xbbbb;
const WE: u8 = 0x1;
const EA: u8 = 0x3;

fn pr_out(sa: u8, rtype: u8, params: &[u8]) -> Vec<u8> {
    let mut c = vec![0x5F, sa, rtype, 0, 0, 0, 0, 0, 0, 0];
    c[5..9].copy_from_slice(&(params.len() as u32).to_be_bytes());
    c
}

fn basic(key: u64, sa_key: u64, aptpl: bool) -> Vec<u8> {
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&key.to_be_bytes());
    p[8..16].copy_from_slice(&sa_key.to_be_bytes());
    p[20] = u8::from(aptpl);
    p
}

fn pr_in(sa: u8) -> Vec<u8> {
    vec![0x5E, sa, 0, 0, 0, 0, 0, 0x10, 0, 0]
}

fn out(f: &Fixture, n: &mut reservoir_scsi::Nexus, sa: u8, rtype: u8, p: &[u8]) -> Completion {
    f.run(n, 1, &pr_out(sa, rtype, p), p).0
}

fn keys(f: &Fixture, n: &mut reservoir_scsi::Nexus) -> Vec<u64> {
    let (c, data) = f.run(n, 1, &pr_in(0), &[]);
    assert_good(&c);
    data[8..]
        .chunks(8)
        .map(|k| u64::from_be_bytes(k.try_into().unwrap()))
        .collect()
}

fn conflict(c: &Completion) -> bool {
    c.status == Status::ReservationConflict
}

#[test]
fn gate_classes_follow_the_spc4_and_sbc4_tables() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    let mut b = f.nexus("iqn.b");
    assert_good(&out(&f, &mut a, 0, 0, &basic(0, KEY_A, false)));
    assert_good(&out(&f, &mut a, 1, EA, &basic(KEY_A, 0, false)));
    let tur = [0u8; 6];
    let read_capacity = cdb10(0x25, 0, 0, 0);
    let inquiry = [0x12, 0, 0, 0, 36, 0];
    let mode_sense = [0x1A, 0, 0x3F, 0, 0xFF, 0];
    let read = cdb10(0x28, 0, 0, 1);
    let sync = cdb10(0x35, 0, 0, 0);
    let mode_select = [0x15, 0x10, 0, 0, 0, 0];
    // Exclusive Access: only the unrestricted class passes for B.
    for cdb in [&tur[..], &read_capacity, &inquiry, &pr_in(2)] {
        assert!(!conflict(&f.run(&mut b, 1, cdb, &[]).0), "{cdb:02x?}");
    }
    for cdb in [&mode_sense[..], &read, &sync, &mode_select] {
        assert!(conflict(&f.run(&mut b, 1, cdb, &[]).0), "{cdb:02x?}");
    }
    // Write Exclusive: the read class passes too (ALLOW COMMANDS = 011b).
    assert_good(&out(&f, &mut a, 2, EA, &basic(KEY_A, 0, false)));
    assert_good(&out(&f, &mut a, 1, WE, &basic(KEY_A, 0, false)));
    for cdb in [&mode_sense[..], &read] {
        assert!(!conflict(&f.run(&mut b, 1, cdb, &[]).0), "{cdb:02x?}");
    }
    for cdb in [&sync[..], &cdb10(0x2A, 0, 0, 1)] {
        assert!(conflict(&f.run(&mut b, 1, cdb, &[0; BS]).0), "{cdb:02x?}");
    }
    assert_good(&f.run(&mut a, 1, &sync, &[]).0);
}

#[test]
fn spc2_and_persistent_reservations_exclude_each_other() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    let mut b = f.nexus("iqn.b");
    assert_good(&f.run(&mut a, 1, &[0x16, 0, 0, 0, 0, 0], &[]).0);
    // PERSISTENT RESERVE OUT while another nexus holds RESERVE (SPC-4 5.13.3).
    assert!(conflict(&out(&f, &mut b, 0, 0, &basic(0, KEY_B, false))));
    assert_good(&f.run(&mut a, 1, &[0x17, 0, 0, 0, 0, 0], &[]).0);
    assert_good(&out(&f, &mut b, 0, 0, &basic(0, KEY_B, false)));
    // RESERVE and RELEASE while a registration exists, for everybody.
    assert!(conflict(&f.run(&mut a, 1, &[0x16, 0, 0, 0, 0, 0], &[]).0));
    assert!(conflict(&f.run(&mut b, 1, &[0x17, 0, 0, 0, 0, 0], &[]).0));
}

#[test]
fn preempt_and_abort_moves_the_victims_epoch_and_tells_it() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    let mut b = f.nexus("iqn.b");
    let mut c = f.nexus("iqn.c");
    assert_good(&out(&f, &mut a, 0, 0, &basic(0, KEY_A, false)));
    assert_good(&out(&f, &mut b, 0, 0, &basic(0, KEY_B, false)));
    assert_good(&out(&f, &mut a, 1, WE, &basic(KEY_A, 0, false)));
    let (ea, eb, ec) = (a.abort_epoch(1), b.abort_epoch(1), c.abort_epoch(1));
    assert_good(&out(&f, &mut b, 5, WE, &basic(KEY_B, KEY_A, false)));
    assert_ne!(a.abort_epoch(1), ea, "the victim's held tasks are aborted");
    assert_eq!((b.abort_epoch(1), c.abort_epoch(1)), (eb, ec));
    assert_eq!(keys(&f, &mut b), vec![KEY_B]);
    // REGISTRATIONS PREEMPTED to the victim only (SPC-4 5.13.11.4.3).
    assert_sense(
        &f.run(&mut a, 1, &[0; 6], &[]).0,
        SenseKey::UnitAttention,
        0x2A,
        0x05,
    );
    assert_good(&f.run(&mut a, 1, &[0; 6], &[]).0);
    assert_good(&f.run(&mut c, 1, &[0; 6], &[]).0);
    assert!(conflict(
        &f.run(&mut a, 1, &cdb10(0x2A, 0, 0, 1), &[0; BS]).0
    ));
}

/// iSCSI TransportID with ISID (SPC-4 7.6.4.6, FORMAT CODE 01b).
fn transport_id(name: &str, isid: [u8; 6]) -> Vec<u8> {
    let mut text = format!("{name},i,0x").into_bytes();
    text.extend(isid.iter().flat_map(|b| format!("{b:02x}").into_bytes()));
    text.push(0);
    text.resize(text.len().div_ceil(4) * 4, 0);
    let mut id = vec![0x40 | 0x05, 0];
    id.extend_from_slice(&(text.len() as u16).to_be_bytes());
    id.extend(text);
    id
}

#[test]
fn register_and_move_hands_the_reservation_over() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    let mut b = f.nexus("iqn.b");
    assert_good(&out(&f, &mut a, 0, 0, &basic(0, KEY_A, false)));
    assert_good(&out(&f, &mut a, 1, WE, &basic(KEY_A, 0, false)));
    let tid = transport_id("iqn.b", [0x80, 0, 0, 0, 0, 1]);
    let mut p = vec![0u8; 24];
    p[0..8].copy_from_slice(&KEY_A.to_be_bytes());
    p[8..16].copy_from_slice(&KEY_B.to_be_bytes());
    p[17] = 0x02; // UNREG: the source goes away
    p[18..20].copy_from_slice(&1u16.to_be_bytes());
    p[20..24].copy_from_slice(&(tid.len() as u32).to_be_bytes());
    p.extend(tid);
    assert_good(&out(&f, &mut a, 7, 0, &p));
    assert_eq!(keys(&f, &mut b), vec![KEY_B]);
    assert_good(&f.run(&mut b, 1, &cdb10(0x2A, 0, 0, 1), &[0; BS]).0);
    assert!(conflict(
        &f.run(&mut a, 1, &cdb10(0x2A, 0, 0, 1), &[0; BS]).0
    ));
    let (c, data) = f.run(&mut b, 1, &pr_in(1), &[]);
    assert_good(&c);
    assert_eq!(&data[8..16], &KEY_B.to_be_bytes());
}

#[derive(Debug, Default)]
struct MemStore {
    record: Mutex<Option<Vec<u8>>>,
    fail: AtomicBool,
}

impl ReservationStore for MemStore {
    fn load(&self) -> io::Result<Option<Vec<u8>>> {
        Ok(self.record.lock().unwrap().clone())
    }

    fn save(&self, record: &[u8]) -> io::Result<()> {
        if self.fail.load(Ordering::Relaxed) {
            return Err(io::Error::other("disk full"));
        }
        *self.record.lock().unwrap() = Some(record.to_vec());
        Ok(())
    }
}

fn stored_fixture(store: &Arc<MemStore>) -> Fixture {
    let bdev = VecBdev::new(BlockSize::B512, BLOCKS, false, false);
    let lun = Arc::new(
        Lun::open(
            bdev.clone(),
            LunOptions {
                read_only: false,
                identity: LunIdentity {
                    serial: "PR".into(),
                    naa: [0x60; 16],
                },
                reservations: Some(store.clone()),
            },
        )
        .expect("restore"),
    );
    let device = Device::new(
        "iqn.2026-01.test:pr",
        vec![(1, lun.clone())],
        TargetPort {
            name: "iqn.2026-01.test:pr,t,0x0001".into(),
            relative_id: 1,
        },
    );
    Fixture { bdev, lun, device }
}

#[test]
fn aptpl_is_saved_before_completion_and_restored() {
    let store = Arc::new(MemStore::default());
    let f = stored_fixture(&store);
    let mut a = f.nexus("iqn.a");
    store.fail.store(true, Ordering::Relaxed);
    let c = out(&f, &mut a, 0, 0, &basic(0, KEY_A, true));
    assert_sense(&c, SenseKey::HardwareError, 0x44, 0x00);
    assert!(keys(&f, &mut a).is_empty(), "a failed save changes nothing");
    store.fail.store(false, Ordering::Relaxed);
    assert_good(&out(&f, &mut a, 0, 0, &basic(0, KEY_A, true)));
    assert_good(&out(&f, &mut a, 1, EA, &basic(KEY_A, 0, false)));
    drop((a, f));

    let f = stored_fixture(&store);
    let mut a = f.nexus("iqn.a");
    let mut b = f.nexus("iqn.b");
    assert_eq!(keys(&f, &mut a), vec![KEY_A]);
    assert_good(&f.run(&mut a, 1, &cdb10(0x28, 0, 0, 1), &[]).0);
    assert!(conflict(&f.run(&mut b, 1, &cdb10(0x28, 0, 0, 1), &[]).0));
    // REPORT CAPABILITIES: PTPL_C and PTPL_A.
    let (_, caps) = f.run(&mut a, 1, &pr_in(2), &[]);
    assert_eq!(caps[2] & 0x01, 0x01);
    assert_eq!(caps[3] & 0x01, 0x01);

    // The administrator's clear is saved too: nothing comes back.
    f.lun.clear_reservations().unwrap();
    drop((a, b, f));
    let f = stored_fixture(&store);
    let mut a = f.nexus("iqn.a");
    assert!(keys(&f, &mut a).is_empty());
}

#[test]
fn without_a_store_aptpl_is_refused_and_not_advertised() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    let c = out(&f, &mut a, 0, 0, &basic(0, KEY_A, true));
    assert_sense(&c, SenseKey::IllegalRequest, 0x26, 0x00);
    let (_, caps) = f.run(&mut a, 1, &pr_in(2), &[]);
    assert_eq!(caps[2] & 0x01, 0, "PTPL_C");
    assert!(keys(&f, &mut a).is_empty());
}

#[test]
fn report_supported_opcodes_lists_the_pr_service_actions() {
    let f = fixture(Opts::default());
    let mut a = f.nexus("iqn.a");
    for (op, sa) in [(0x5Eu8, 3u16), (0x5F, 7)] {
        let mut cdb = vec![0xA3, 0x0C, 0x02, op, 0, 0, 0, 0, 1, 0, 0, 0];
        cdb[4..6].copy_from_slice(&sa.to_be_bytes());
        let (c, data) = f.run(&mut a, 1, &cdb, &[]);
        assert_good(&c);
        assert_eq!(data[1] & 0x07, 0x03, "{op:#x}/{sa}: supported");
    }
    let (c, _) = f.run(&mut a, 1, &pr_in(4), &[]);
    assert_sense(&c, SenseKey::IllegalRequest, 0x24, 0x00);
}
