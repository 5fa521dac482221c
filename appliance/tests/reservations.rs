//! Persistent reservations end to end: the real daemon, several initiators
//! (distinct iSCSI names and ISIDs) through reservoir-initiator, and the
//! operator's `reservoir reservation` commands.

mod raw_iscsi;
mod support;

use raw_iscsi::{Outcome, RawSession};
use reservoir_initiator::{
    ConnectOptions, Error, Initiator, Isid, PrOutAction, PrOutFlags, ReservationKey,
    ReservationType, SenseKey, TransportId,
};
use serde_json::Value;
use support::{Backend, Config, Daemon, INITIATOR_1, INITIATOR_2};

const IQN: &str = "iqn.2026-11.io.reservoir:pr";
const INITIATOR_3: &str = "iqn.2026-11.io.reservoir.test:initiator-3";
const BLOCK: u32 = 512;

const KEY_A: ReservationKey = ReservationKey(0xa0a0_0000_0000_000a);
const KEY_B: ReservationKey = ReservationKey(0xb0b0_0000_0000_000b);
const KEY_C: ReservationKey = ReservationKey(0xc0c0_0000_0000_000c);
const NONE: ReservationKey = ReservationKey::ZERO;

fn connect(daemon: &Daemon, name: &str, isid: &str) -> Initiator {
    let mut options = ConnectOptions::new(name);
    options.isid = Some(isid.parse::<Isid>().expect("valid ISID"));
    let mut lu = Initiator::connect(&daemon.url(IQN, 0), options).expect("login");
    drain_unit_attentions(&mut lu);
    lu
}

/// Runs TEST UNIT READY until no unit attention is pending (a new nexus
/// starts with POWER ON OCCURRED).
fn drain_unit_attentions(lu: &mut Initiator) -> Vec<(u8, u8)> {
    let mut seen = Vec::new();
    for _ in 0..8 {
        match lu.test_unit_ready() {
            Ok(()) => return seen,
            Err(e) => match e.sense() {
                Some(s) if s.key == SenseKey::UnitAttention => seen.push((s.asc, s.ascq)),
                _ => panic!("TEST UNIT READY: {e}"),
            },
        }
    }
    panic!("unit attentions never cleared: {seen:?}");
}

fn out(
    lu: &mut Initiator,
    action: PrOutAction,
    key: ReservationKey,
    sa_key: ReservationKey,
    kind: ReservationType,
) -> Result<(), Error> {
    lu.pr_out(action, key, sa_key, kind, PrOutFlags::default())
}

fn register(lu: &mut Initiator, key: ReservationKey) {
    out(
        lu,
        PrOutAction::RegisterAndIgnoreExistingKey,
        NONE,
        key,
        ReservationType::WriteExclusive,
    )
    .expect("REGISTER AND IGNORE EXISTING KEY");
}

/// Whether READ and WRITE pass: `Some(true)` GOOD, `Some(false)` RESERVATION
/// CONFLICT; anything else fails the test.
fn access(lu: &mut Initiator) -> (bool, bool) {
    let verdict = |r: Result<(), Error>, what: &str| match r {
        Ok(()) => true,
        Err(e) if e.is_reservation_conflict() => false,
        Err(e) => panic!("{what}: {e}"),
    };
    let read = verdict(lu.read(8, 1, BLOCK).map(drop), "READ");
    let write = verdict(lu.write(8, &[0x5a; BLOCK as usize], BLOCK, false), "WRITE");
    (read, write)
}

fn volume_config() -> Config {
    Config::single_malloc("vol0", 16, IQN)
}

/// SPC-4 5.13.1 / SBC-4 4.17 for READ and WRITE, for the holder (A), a
/// registered non-holder (B) and an unregistered nexus (C), every type.
#[test]
fn every_type_enforces_its_access_rules() {
    let daemon = Daemon::start(&volume_config());
    let mut a = connect(&daemon, INITIATOR_1, "800000000001");
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    let mut c = connect(&daemon, INITIATOR_3, "800000000003");
    use ReservationType::*;
    // (type, registrant (read, write), non-registrant (read, write))
    let table = [
        (WriteExclusive, (true, false), (true, false)),
        (ExclusiveAccess, (false, false), (false, false)),
        (WriteExclusiveRegistrantsOnly, (true, true), (true, false)),
        (ExclusiveAccessRegistrantsOnly, (true, true), (false, false)),
        (WriteExclusiveAllRegistrants, (true, true), (true, false)),
        (ExclusiveAccessAllRegistrants, (true, true), (false, false)),
    ];
    for (kind, registrant, stranger) in table {
        register(&mut a, KEY_A);
        register(&mut b, KEY_B);
        out(&mut a, PrOutAction::Reserve, KEY_A, NONE, kind).expect("RESERVE");
        assert_eq!(access(&mut a), (true, true), "{kind:?} holder");
        assert_eq!(access(&mut b), registrant, "{kind:?} registrant");
        assert_eq!(access(&mut c), stranger, "{kind:?} non-registrant");
        let status = c.pr_read_reservation().expect("READ RESERVATION");
        let holder_key = if matches!(
            kind,
            WriteExclusiveAllRegistrants | ExclusiveAccessAllRegistrants
        ) {
            NONE
        } else {
            KEY_A
        };
        assert_eq!(status.reservation, Some((holder_key, kind)));
        // A non-holder's RESERVE of another type conflicts (SPC-4 5.13.9)
        // unless it holds an all-registrants reservation already.
        if !kind.is_all_registrants() {
            let e = out(&mut b, PrOutAction::Reserve, KEY_B, NONE, WriteExclusive).unwrap_err();
            assert!(e.is_reservation_conflict(), "{kind:?}: {e}");
        }
        out(&mut a, PrOutAction::Clear, KEY_A, NONE, kind).expect("CLEAR");
        // CLEAR: RESERVATIONS PREEMPTED to every other registrant (SPC-4 5.13.11.6).
        assert_eq!(drain_unit_attentions(&mut b), vec![(0x2a, 0x03)]);
        assert_eq!(drain_unit_attentions(&mut c), vec![]);
        assert_eq!(access(&mut c), (true, true), "{kind:?} after CLEAR");
    }
}

/// fence_scsi: every node registers (ignoring any old key), the first
/// reserves Write Exclusive – Registrants Only, and a survivor fences a
/// node with PREEMPT AND ABORT of its key.
#[test]
fn fence_scsi_sequence_cuts_off_the_victim() {
    let daemon = Daemon::start(&volume_config());
    let mut victim = connect(&daemon, INITIATOR_1, "800000000001");
    let mut fencer = connect(&daemon, INITIATOR_2, "800000000002");
    let kind = ReservationType::WriteExclusiveRegistrantsOnly;
    register(&mut victim, KEY_A);
    register(&mut fencer, KEY_B);
    out(&mut victim, PrOutAction::Reserve, KEY_A, NONE, kind).expect("RESERVE");
    assert_eq!(access(&mut victim), (true, true));
    assert_eq!(access(&mut fencer), (true, true));

    out(
        &mut fencer,
        PrOutAction::PreemptAndAbort,
        KEY_B,
        KEY_A,
        kind,
    )
    .expect("PREEMPT AND ABORT");
    let keys = fencer.pr_read_keys().expect("READ KEYS");
    assert_eq!(keys.keys, vec![KEY_B]);
    let status = fencer.pr_read_reservation().expect("READ RESERVATION");
    assert_eq!(status.reservation, Some((KEY_B, kind)));
    assert!(status.generation >= 2, "{status:?}");

    // The victim first learns it was preempted (SPC-4 5.13.11.4.3), then
    // its writes conflict while reads pass (WE-RO: reads are unrestricted).
    let e = victim
        .write(0, &[1; BLOCK as usize], BLOCK, false)
        .unwrap_err();
    let sense = e.sense().expect("UNIT ATTENTION");
    assert_eq!(
        (sense.key, sense.asc, sense.ascq),
        (SenseKey::UnitAttention, 0x2a, 0x05)
    );
    assert_eq!(access(&mut victim), (true, false));
    // Its old key is gone: it cannot act on the reservation any more.
    let e = out(&mut victim, PrOutAction::Release, KEY_A, NONE, kind).unwrap_err();
    assert!(e.is_reservation_conflict(), "{e}");
    assert_eq!(access(&mut fencer), (true, true));
}

/// A new ISID is a new I_T nexus; the same ISID after logout is the same one.
#[test]
fn registrations_follow_the_nexus_across_logins() {
    let daemon = Daemon::start(&volume_config());
    let mut a = connect(&daemon, INITIATOR_1, "800000000001");
    register(&mut a, KEY_A);
    out(
        &mut a,
        PrOutAction::Reserve,
        KEY_A,
        NONE,
        ReservationType::WriteExclusive,
    )
    .expect("RESERVE");
    drop(a);
    let mut again = connect(&daemon, INITIATOR_1, "800000000001");
    assert_eq!(
        access(&mut again),
        (true, true),
        "same ISID keeps the reservation"
    );
    let mut other_isid = connect(&daemon, INITIATOR_1, "800000000009");
    assert_eq!(
        access(&mut other_isid),
        (true, false),
        "new ISID is a new nexus"
    );
}

#[test]
fn read_full_status_names_every_nexus() {
    let daemon = Daemon::start(&volume_config());
    let mut a = connect(&daemon, INITIATOR_1, "800000000001");
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    register(&mut a, KEY_A);
    register(&mut b, KEY_B);
    out(
        &mut b,
        PrOutAction::Reserve,
        KEY_B,
        NONE,
        ReservationType::ExclusiveAccess,
    )
    .expect("RESERVE");
    let status = a.pr_read_full_status().expect("READ FULL STATUS");
    assert_eq!(status.entries.len(), 2, "{status:?}");
    let by_key = |k| status.entries.iter().find(|e| e.key == k).expect("entry");
    let ea = by_key(KEY_A);
    assert_eq!(ea.initiator_name(), Some(INITIATOR_1));
    assert!(!ea.holder);
    let eb = by_key(KEY_B);
    assert_eq!(eb.initiator_name(), Some(INITIATOR_2));
    assert!(eb.holder);
    assert_eq!(eb.kind, Some(ReservationType::ExclusiveAccess));
    assert_eq!(eb.relative_target_port, 1);
}

fn file_config() -> Config {
    Config::default()
        .volume(
            "vol0",
            Backend::File {
                file_name: "vol0.img".into(),
            },
            16,
        )
        .target(IQN, &["vol0"])
}

fn aptpl(lu: &mut Initiator, key: ReservationKey, on: bool) {
    lu.pr_out(
        PrOutAction::RegisterAndIgnoreExistingKey,
        NONE,
        key,
        ReservationType::WriteExclusive,
        PrOutFlags {
            aptpl: on,
            all_tg_pt: false,
        },
    )
    .expect("REGISTER AND IGNORE EXISTING KEY");
}

#[test]
fn aptpl_state_survives_kill_and_restart() {
    let mut daemon = Daemon::start(&file_config());
    {
        let mut a = connect(&daemon, INITIATOR_1, "800000000001");
        let mut b = connect(&daemon, INITIATOR_2, "800000000002");
        aptpl(&mut a, KEY_A, true);
        // The last REGISTER's APTPL applies to the whole LU (SPC-4 5.13.5).
        aptpl(&mut b, KEY_B, true);
        out(
            &mut a,
            PrOutAction::Reserve,
            KEY_A,
            NONE,
            ReservationType::WriteExclusive,
        )
        .expect("RESERVE");
    }
    daemon.kill_hard();
    daemon.restart();
    let mut a = connect(&daemon, INITIATOR_1, "800000000001");
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    let mut keys = a.pr_read_keys().expect("READ KEYS").keys;
    keys.sort();
    assert_eq!(keys, vec![KEY_A, KEY_B]);
    assert_eq!(
        a.pr_read_reservation()
            .expect("READ RESERVATION")
            .reservation,
        Some((KEY_A, ReservationType::WriteExclusive))
    );
    assert_eq!(access(&mut a), (true, true));
    assert_eq!(access(&mut b), (true, false));

    // A clean stop keeps it too.
    drop((a, b));
    daemon.stop();
    daemon.restart();
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    assert_eq!(access(&mut b), (true, false));
}

#[test]
fn state_without_aptpl_is_gone_after_restart() {
    let mut daemon = Daemon::start(&file_config());
    {
        let mut a = connect(&daemon, INITIATOR_1, "800000000001");
        // APTPL set, then cleared by the last REGISTER: nothing survives (SPC-4 5.13.5).
        aptpl(&mut a, KEY_A, true);
        aptpl(&mut a, KEY_A, false);
        out(
            &mut a,
            PrOutAction::Reserve,
            KEY_A,
            NONE,
            ReservationType::ExclusiveAccess,
        )
        .expect("RESERVE");
        let mut b = connect(&daemon, INITIATOR_2, "800000000002");
        assert_eq!(access(&mut b), (false, false));
    }
    daemon.kill_hard();
    daemon.restart();
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    assert!(b.pr_read_keys().expect("READ KEYS").keys.is_empty());
    assert_eq!(access(&mut b), (true, true));
}

fn cli_json(daemon: &Daemon, args: &[&str]) -> Value {
    let output = daemon.cli(args);
    assert!(
        output.status.success(),
        "reservoir {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("JSON")
}

#[test]
fn operator_shows_and_clears_reservations() {
    let daemon = Daemon::start(&volume_config());
    let mut a = connect(&daemon, INITIATOR_1, "800000000001");
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    register(&mut a, KEY_A);
    register(&mut b, KEY_B);
    out(
        &mut a,
        PrOutAction::Reserve,
        KEY_A,
        NONE,
        ReservationType::WriteExclusiveRegistrantsOnly,
    )
    .expect("RESERVE");

    let shown = cli_json(&daemon, &["reservation", "show", "vol0", "--json"]);
    let lun = &shown[0];
    assert_eq!(lun["target"], IQN, "{shown}");
    assert_eq!(lun["generation"], 2);
    assert_eq!(lun["aptpl"], false);
    assert_eq!(lun["reservation"]["type"], "WE-RO");
    let regs = lun["registrations"].as_array().expect("registrations");
    assert_eq!(regs.len(), 2);
    assert_eq!(regs[0]["initiator"], INITIATOR_1);
    assert_eq!(regs[0]["isid"], "800000000001");
    assert_eq!(regs[0]["target_port"], 1);
    assert_eq!(regs[0]["key"], "0xa0a000000000000a");
    assert_eq!(regs[0]["holder"], true);
    assert_eq!(regs[1]["holder"], false);
    let table = daemon.cli(&["reservation", "show", "vol0"]);
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(
        table.contains("WE-RO") && table.contains(INITIATOR_2),
        "{table}"
    );

    let cleared = cli_json(&daemon, &["reservation", "clear", "vol0", "--json"]);
    assert_eq!(
        cleared[0]["registrations"],
        Value::Array(vec![]),
        "{cleared}"
    );
    assert!(cleared[0]["reservation"].is_null());
    // Both former registrants hear of it, then have unrestricted access.
    assert_eq!(drain_unit_attentions(&mut a), vec![(0x2a, 0x03)]);
    assert_eq!(drain_unit_attentions(&mut b), vec![(0x2a, 0x03)]);
    assert_eq!(access(&mut b), (true, true));

    let missing = daemon.cli(&["reservation", "show", "nosuch"]);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("not exported"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}

/// The one target port every portal of the daemon presents (READ FULL STATUS).
const TARGET_PORT: u16 = 1;

fn port(name: &str, isid: &str) -> TransportId {
    TransportId::new(name, Some(isid.parse().expect("valid ISID"))).expect("TransportID")
}

fn holder_of(status: &reservoir_initiator::FullStatus) -> Option<(TransportId, ReservationKey)> {
    let holders: Vec<_> = status.entries.iter().filter(|e| e.holder).collect();
    assert!(
        holders.len() <= 1,
        "one holder outside all-registrants types: {status:?}"
    );
    holders
        .first()
        .map(|e| (e.initiator_port().expect("iSCSI TransportID"), e.key))
}

/// REGISTER AND MOVE (SPC-4 5.13.8): the holder hands its reservation to
/// another initiator's nexus, first staying registered, then with UNREG. A
/// third initiator watches through READ FULL STATUS and READ RESERVATION.
#[test]
fn register_and_move_hands_the_reservation_over() {
    let daemon = Daemon::start(&volume_config());
    let mut a = connect(&daemon, INITIATOR_1, "800000000001");
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    let mut c = connect(&daemon, INITIATOR_3, "800000000003");
    let kind = ReservationType::WriteExclusive;
    register(&mut a, KEY_A);
    out(&mut a, PrOutAction::Reserve, KEY_A, NONE, kind).expect("RESERVE");
    let before = c
        .pr_read_reservation()
        .expect("READ RESERVATION")
        .generation;

    // B is not registered yet: the move registers it with the SA key.
    a.register_and_move(
        KEY_A,
        KEY_B,
        TARGET_PORT,
        &port(INITIATOR_2, "800000000002"),
        false,
        false,
    )
    .expect("REGISTER AND MOVE");
    let status = c.pr_read_reservation().expect("READ RESERVATION");
    assert_eq!(
        status.reservation,
        Some((KEY_B, kind)),
        "same type, new key"
    );
    assert_eq!(status.generation, before + 1, "one PRgeneration step");
    let full = c.pr_read_full_status().expect("READ FULL STATUS");
    assert_eq!(full.entries.len(), 2, "{full:?}");
    assert_eq!(
        holder_of(&full),
        Some((port(INITIATOR_2, "800000000002"), KEY_B))
    );
    let moved = full.entries.iter().find(|e| e.holder).expect("holder");
    assert_eq!(moved.kind, Some(kind));
    assert_eq!(moved.relative_target_port, TARGET_PORT);
    let stayed = full.entries.iter().find(|e| !e.holder).expect("old holder");
    assert_eq!(
        stayed.initiator_port(),
        Some(port(INITIATOR_1, "800000000001"))
    );
    assert_eq!(
        stayed.key, KEY_A,
        "without UNREG the mover stays registered"
    );
    // Write Exclusive now lets B write and stops A.
    assert_eq!(access(&mut b), (true, true));
    assert_eq!(access(&mut a), (true, false));
    assert_eq!(access(&mut c), (true, false));

    // B moves it on to C's nexus and leaves (UNREG).
    b.register_and_move(
        KEY_B,
        KEY_C,
        TARGET_PORT,
        &port(INITIATOR_3, "800000000003"),
        true,
        false,
    )
    .expect("REGISTER AND MOVE with UNREG");
    let full = a.pr_read_full_status().expect("READ FULL STATUS");
    assert_eq!(
        holder_of(&full),
        Some((port(INITIATOR_3, "800000000003"), KEY_C))
    );
    let mut keys: Vec<_> = full.entries.iter().map(|e| e.key).collect();
    keys.sort();
    assert_eq!(keys, vec![KEY_A, KEY_C], "B unregistered: {full:?}");
    assert_eq!(
        a.pr_read_reservation()
            .expect("READ RESERVATION")
            .reservation,
        Some((KEY_C, kind))
    );
    assert_eq!(access(&mut c), (true, true));
    assert_eq!(access(&mut b), (true, false));
    // B's key is gone: it cannot touch the reservation any more.
    let e = out(&mut b, PrOutAction::Release, KEY_B, NONE, kind).unwrap_err();
    assert!(e.is_reservation_conflict(), "{e}");

    // Onto a nexus that is already registered: it keeps the registration
    // under the new key (SPC-4 5.13.8 d)).
    c.register_and_move(
        KEY_C,
        KEY_B,
        TARGET_PORT,
        &port(INITIATOR_1, "800000000001"),
        true,
        false,
    )
    .expect("REGISTER AND MOVE to a registrant");
    let keys = b.pr_read_keys().expect("READ KEYS").keys;
    assert_eq!(keys, vec![KEY_B], "A re-keyed, C gone");
    assert_eq!(
        b.pr_read_reservation()
            .expect("READ RESERVATION")
            .reservation,
        Some((KEY_B, kind))
    );
    assert_eq!(access(&mut a), (true, true));
}

/// REGISTER AND MOVE refusals (SPC-4 5.13.8): only the holder may move, and
/// never onto its own initiator port.
#[test]
fn register_and_move_refusals() {
    let daemon = Daemon::start(&volume_config());
    let mut a = connect(&daemon, INITIATOR_1, "800000000001");
    let mut b = connect(&daemon, INITIATOR_2, "800000000002");
    let mut c = connect(&daemon, INITIATOR_3, "800000000003");
    let kind = ReservationType::ExclusiveAccess;
    register(&mut a, KEY_A);
    register(&mut b, KEY_B);
    out(&mut a, PrOutAction::Reserve, KEY_A, NONE, kind).expect("RESERVE");
    let before = c.pr_read_reservation().expect("READ RESERVATION");

    // A registrant that does not hold the reservation.
    let e = b
        .register_and_move(
            KEY_B,
            KEY_C,
            TARGET_PORT,
            &port(INITIATOR_3, "800000000003"),
            false,
            false,
        )
        .unwrap_err();
    assert!(e.is_reservation_conflict(), "non-holder: {e}");
    // An unregistered nexus.
    let e = c
        .register_and_move(
            NONE,
            KEY_C,
            TARGET_PORT,
            &port(INITIATOR_2, "800000000002"),
            false,
            false,
        )
        .unwrap_err();
    assert!(e.is_reservation_conflict(), "unregistered: {e}");
    // The holder naming its own initiator port, with and without the ISID:
    // INVALID FIELD IN PARAMETER LIST (26h/00h).
    for own in [
        port(INITIATOR_1, "800000000001"),
        TransportId::new(INITIATOR_1, None).expect("TransportID"),
    ] {
        let e = a
            .register_and_move(KEY_A, KEY_C, TARGET_PORT, &own, false, false)
            .unwrap_err();
        let sense = e.sense().unwrap_or_else(|| panic!("move to {own}: {e}"));
        assert_eq!(
            (sense.key, sense.asc, sense.ascq),
            (SenseKey::IllegalRequest, 0x26, 0x00),
            "move to {own}"
        );
    }
    // Nothing changed.
    assert_eq!(c.pr_read_reservation().expect("READ RESERVATION"), before);
    let mut keys = c.pr_read_keys().expect("READ KEYS").keys;
    keys.sort();
    assert_eq!(keys, vec![KEY_A, KEY_B]);
}

/// PREEMPT AND ABORT while the victim has writes in flight (SPC-4
/// 5.13.11.4.4, 5.13.11.5): the victim's WRITEs wait on the target for their
/// solicited data while the fencer preempts and aborts the victim's key.
/// When the data finally arrives the tasks end with TASK ABORTED (TAS = 1)
/// and write nothing; the victim's next command gets REGISTRATIONS
/// PREEMPTED, and its writes then meet RESERVATION CONFLICT.
#[test]
fn preempt_and_abort_ends_the_victims_commands_in_flight() {
    const VICTIM_ISID: &str = "800000000001";
    let daemon = Daemon::start(&volume_config());
    let kind = ReservationType::WriteExclusiveRegistrantsOnly;
    let mut fencer = connect(&daemon, INITIATOR_2, "800000000002");
    register(&mut fencer, KEY_B);
    let old = vec![0x11; 16 * BLOCK as usize];
    fencer
        .write(0, &old, BLOCK, true)
        .expect("WRITE the old data");
    {
        // The victim's nexus registers and reserves; the raw session below
        // logs in as the same nexus (same name and ISID).
        let mut victim = connect(&daemon, INITIATOR_1, VICTIM_ISID);
        register(&mut victim, KEY_A);
        out(&mut victim, PrOutAction::Reserve, KEY_A, NONE, kind).expect("RESERVE");
    }
    let portal = std::net::SocketAddr::from(([127, 0, 0, 1], daemon.port()));
    let isid = VICTIM_ISID.parse::<Isid>().expect("ISID").bytes();
    let mut victim = RawSession::login(portal, INITIATOR_1, isid, IQN).expect("raw login");
    victim.clear_unit_attentions().expect("unit attentions");

    // Two WRITE (10)s, each held at its R2T: in flight on the target.
    let new = vec![0xee; 8 * BLOCK as usize];
    let first = victim
        .start_write(0, new.clone(), BLOCK)
        .expect("first WRITE");
    let second = victim.start_write(8, new, BLOCK).expect("second WRITE");

    out(
        &mut fencer,
        PrOutAction::PreemptAndAbort,
        KEY_B,
        KEY_A,
        kind,
    )
    .expect("PREEMPT AND ABORT");

    for (which, held) in [("first", first), ("second", second)] {
        let outcome = victim.finish(held).expect("Data-Out");
        assert_eq!(
            outcome.status,
            Outcome::TASK_ABORTED,
            "{which} write: {outcome:?}"
        );
    }
    // Next command: UNIT ATTENTION, REGISTRATIONS PREEMPTED (2Ah/05h).
    let outcome = victim
        .write(0, &[0xdd; BLOCK as usize], BLOCK)
        .expect("WRITE");
    assert_eq!(outcome.status, Outcome::CHECK_CONDITION, "{outcome:?}");
    assert_eq!(outcome.sense, Some((0x6, 0x2a, 0x05)), "{outcome:?}");
    // Then the reservation (now the fencer's) refuses its writes...
    let outcome = victim
        .write(0, &[0xdd; BLOCK as usize], BLOCK)
        .expect("WRITE");
    assert_eq!(outcome.status, Outcome::RESERVATION_CONFLICT, "{outcome:?}");
    // ...while reads pass (Write Exclusive – Registrants Only), and no
    // block the aborted or refused writes targeted has changed.
    let outcome = victim
        .execute(&raw_iscsi::read10(0, 16), 16 * BLOCK)
        .expect("READ (10)");
    assert_eq!(outcome.status, Outcome::GOOD, "{outcome:?}");
    assert!(outcome.data_in == old, "victim reads the old data");
    assert_eq!(fencer.read(0, 16, BLOCK).expect("READ"), old);

    assert_eq!(fencer.pr_read_keys().expect("READ KEYS").keys, vec![KEY_B]);
    assert_eq!(
        fencer
            .pr_read_reservation()
            .expect("READ RESERVATION")
            .reservation,
        Some((KEY_B, kind))
    );
}
