//! The reservation gate for every Access × type × role, PRgeneration
//! counting, SPEC_I_PT, ALL_TG_PT and REGISTER AND MOVE.
mod common;
use common::*;
use reservoir_pr::*;
use ReservationType::*;
use Verdict::{Allowed as A, Conflict as C};

/// Expected verdicts for (holder A, registrant B, stranger C) per SPC-4
/// 5.13.1 / SBC-4 4.17 tables.
fn expected(rtype: ReservationType, access: Access) -> [Verdict; 3] {
    match (access, rtype) {
        (Access::LegacyReserveRelease, _) => [C, C, C],
        (Access::Unrestricted, _) => [A, A, A],
        (Access::Read, WriteExclusive) => [A, A, A],
        (Access::Read, ExclusiveAccess) => [A, C, C],
        (Access::Read, WriteExclusiveRegistrantsOnly | WriteExclusiveAllRegistrants) => [A, A, A],
        (Access::Read, ExclusiveAccessRegistrantsOnly | ExclusiveAccessAllRegistrants) => [A, A, C],
        (Access::Write, WriteExclusive | ExclusiveAccess) => [A, C, C],
        (Access::Write, _) => [A, A, C],
    }
}

#[test]
fn gate_table_every_access_type_and_role() {
    let accesses = [
        Access::Unrestricted,
        Access::Read,
        Access::Write,
        Access::LegacyReserveRelease,
    ];
    for rtype in ReservationType::ALL {
        let t = ab_reserved_by_a(rtype);
        for access in accesses {
            let got = [a(), b(), c()].map(|n| t.check(&n, access));
            assert_eq!(got, expected(rtype, access), "{rtype} {access:?}");
        }
    }
}

#[test]
fn gate_matches_libiscsi_access_tests() {
    // libiscsi test_prout_reserve_access_*: (registered init2 can read,
    // can write, unregistered init2 can read, can write).
    for (rtype, reg_r, reg_w, unreg_r, unreg_w) in [
        (ExclusiveAccess, false, false, false, false),
        (WriteExclusive, true, false, true, false),
        (ExclusiveAccessRegistrantsOnly, true, true, false, false),
        (WriteExclusiveRegistrantsOnly, true, true, true, false),
        (ExclusiveAccessAllRegistrants, true, true, false, false),
        (WriteExclusiveAllRegistrants, true, true, true, false),
    ] {
        let mut t = ab_reserved_by_a(rtype);
        let allowed = |t: &ReservationTable, acc| t.check(&b(), acc) == A;
        assert_eq!(allowed(&t, Access::Read), reg_r, "{rtype}");
        assert_eq!(allowed(&t, Access::Write), reg_w, "{rtype}");
        assert_eq!(t.check(&a(), Access::Write), A);
        ok(&mut t, &b(), reg(KB, 0));
        assert_eq!(allowed(&t, Access::Read), unreg_r, "{rtype}");
        assert_eq!(allowed(&t, Access::Write), unreg_w, "{rtype}");
    }
}

#[test]
fn gate_without_reservation() {
    let mut t = table();
    for access in [
        Access::Unrestricted,
        Access::Read,
        Access::Write,
        Access::LegacyReserveRelease,
    ] {
        assert_eq!(t.check(&a(), access), A);
    }
    ok(&mut t, &a(), reg(0, KA));
    assert!(t.has_registrations());
    // SPC-4 5.13.3: registrations alone make RESERVE/RELEASE(6/10) conflict.
    assert_eq!(t.check(&b(), Access::LegacyReserveRelease), C);
    assert_eq!(t.check(&b(), Access::Write), A);
}

#[test]
fn holder_is_the_exact_initiator_port() {
    // Same name, another ISID (another session): not the holder.
    let mut t = ab_reserved_by_a(ExclusiveAccess);
    let sibling = Nexus::new(port("a", 2), P1);
    assert_eq!(t.check(&sibling, Access::Read), C);
    // Same initiator port through another target port: not the holder either.
    assert_eq!(t.check(&Nexus::new(port("a", 1), P2), Access::Read), C);
    // Name case does not matter.
    let upper = Nexus::new(
        InitiatorPort::new("IQN.2026-01.ORG.EXAMPLE:A", [0x40, 0, 0, 0, 0, 1]),
        P1,
    );
    assert_eq!(t.check(&upper, Access::Write), A);
    ok(&mut t, &upper, release(KA, ExclusiveAccess));
}

#[test]
fn generation_counts_exactly_the_spc4_service_actions() {
    // SPC-4 6.15.2: REGISTER, REGISTER AND IGNORE EXISTING KEY, CLEAR,
    // PREEMPT, PREEMPT AND ABORT and REGISTER AND MOVE increment it;
    // RESERVE, RELEASE and failed commands do not.
    let mut t = table();
    let mut g = 0;
    let mut step = |t: &mut ReservationTable, n: &Nexus, cmd: ProutCommand, bump: bool| {
        let r = t.execute_out(n, &cmd);
        if bump {
            assert!(r.is_ok(), "{cmd:?}");
            g += 1;
        }
        assert_eq!(t.generation(), Generation(g), "{cmd:?} -> {r:?}");
    };
    step(&mut t, &a(), reg(0, 0), true); // no-op REGISTER still counts
    step(&mut t, &a(), reg(0, KA), true);
    step(&mut t, &a(), reg(1, KA), false); // conflict
    step(&mut t, &b(), reg_ignore(KB), true);
    step(&mut t, &a(), reserve(KA, WriteExclusive), false);
    step(&mut t, &a(), reserve(KA, WriteExclusive), false);
    step(&mut t, &b(), release(KB, WriteExclusive), false);
    step(&mut t, &a(), release(KA, WriteExclusive), false);
    step(&mut t, &a(), reserve(KA, WriteExclusive), false);
    step(&mut t, &c(), reg(0, KC), true);
    step(&mut t, &b(), preempt(KB, KC, WriteExclusive, false), true);
    step(&mut t, &b(), preempt(KB, KA, ExclusiveAccess, true), true);
    step(&mut t, &b(), clear(KB), true);
    step(&mut t, &b(), clear(KB), false); // no longer registered
}

fn spec_i_pt(key: u64, sa: u64, ports: Vec<InitiatorPort>, all_tg_pt: bool) -> ProutCommand {
    ProutCommand::Register(RegisterParams {
        key: ReservationKey(key),
        sa_key: ReservationKey(sa),
        ignore_existing: false,
        all_tg_pt,
        aptpl: false,
        spec_i_pt: Some(ports),
    })
}

#[test]
fn spec_i_pt_registers_the_listed_initiator_ports() {
    let mut t = table();
    ok(
        &mut t,
        &a(),
        spec_i_pt(
            0,
            KA,
            vec![port("b", 1), InitiatorPort::any_isid("iqn.x")],
            false,
        ),
    );
    assert_eq!(keys(&t), [KA, KA, KA]);
    // B is registered with A's key; a name-only registration covers every ISID.
    assert_eq!(t.registrations()[1].nexus, b());
    let x7 = Nexus::new(InitiatorPort::new("iqn.x", [7; 6]), P1);
    ok(&mut t, &x7, reserve(KA, ExclusiveAccess));
    assert_eq!(
        t.check(
            &Nexus::new(InitiatorPort::new("IQN.X", [9; 6]), P1),
            Access::Write
        ),
        A
    );
    assert_eq!(t.check(&a(), Access::Read), C);
}

#[test]
fn spec_i_pt_is_all_or_nothing() {
    let mut t = table();
    ok(&mut t, &c(), reg(0, KC));
    let before = t.clone();
    // One TransportID names an already registered I_T nexus.
    let r = t.execute_out(
        &a(),
        &spec_i_pt(0, KA, vec![port("b", 1), port("c", 1)], false),
    );
    assert!(matches!(
        r,
        Err(PrError::IllegalRequest(
            IllegalRequest::InvalidFieldInParameterList(_)
        ))
    ));
    assert_eq!(t, before);
    // Name-only TransportID overlapping a registered port of that name.
    let r = t.execute_out(
        &a(),
        &spec_i_pt(
            0,
            KA,
            vec![InitiatorPort::any_isid(c().initiator.name)],
            false,
        ),
    );
    assert!(r.is_err());
    assert_eq!(t, before);
    // Not enough room for all of them.
    let mut small = table().with_max_registrations(2);
    let r = small.execute_out(
        &a(),
        &spec_i_pt(0, KA, vec![port("b", 1), port("c", 1)], false),
    );
    assert_eq!(
        r,
        Err(IllegalRequest::InsufficientRegistrationResources.into())
    );
    assert!(small.registrations().is_empty());
    // The requester's own port and duplicates are registered once.
    let r = ok(
        &mut small,
        &a(),
        spec_i_pt(0, KA, vec![port("a", 1), port("b", 1), port("b", 1)], false),
    );
    assert_eq!(keys(&small), [KA, KA]);
    assert!(r.unit_attentions.is_empty());
}

#[test]
fn spec_i_pt_with_zero_service_action_key_does_nothing() {
    let mut t = table();
    ok(&mut t, &a(), spec_i_pt(0, 0, vec![port("b", 1)], false));
    assert!(t.registrations().is_empty());
}

fn all_tg_pt(key: u64, sa: u64, ignore: bool) -> ProutCommand {
    ProutCommand::Register(RegisterParams {
        key: ReservationKey(key),
        sa_key: ReservationKey(sa),
        ignore_existing: ignore,
        all_tg_pt: true,
        aptpl: false,
        spec_i_pt: None,
    })
}

#[test]
fn all_tg_pt_registers_on_every_known_port() {
    let mut t = ReservationTable::new([P1, P2, TargetPortId(3)]);
    ok(&mut t, &a(), all_tg_pt(0, KA, false));
    let ports: Vec<u16> = t
        .registrations()
        .iter()
        .map(|r| r.nexus.target_port.0)
        .collect();
    assert_eq!(ports, [1, 2, 3]);
    assert!(t.registrations().iter().all(|r| r.all_tg_pt));
    let a2 = Nexus::new(a().initiator, P2);
    // Registered through every port: a key change or unregister through one
    // applies to all of them.
    ok(&mut t, &a2, reg(KA, KB));
    assert_eq!(keys(&t), [KB, KB, KB]);
    ok(&mut t, &a(), reserve(KB, WriteExclusive));
    ok(&mut t, &a2, reg(KB, 0));
    assert!(t.registrations().is_empty());
    assert!(t.reservation().is_none());
    // With SPEC_I_PT: every listed port on every target port.
    ok(&mut t, &a(), spec_i_pt(0, KA, vec![port("b", 1)], true));
    assert_eq!(t.registrations().len(), 6);
}

#[test]
fn all_tg_pt_over_an_existing_registration() {
    // As if sent through each port: REGISTER's zero key conflicts with the
    // registration on P2; REGISTER AND IGNORE EXISTING KEY replaces it.
    let mut t = table();
    let a2 = Nexus::new(a().initiator, P2);
    ok(&mut t, &a2, reg(0, KB));
    let before = t.clone();
    assert_eq!(
        t.execute_out(&a(), &all_tg_pt(0, KA, false)),
        Err(PrError::Conflict)
    );
    assert_eq!(t, before);
    ok(&mut t, &a(), all_tg_pt(0, KA, true));
    assert_eq!(keys(&t), [KA, KA]);
    assert!(t.registrations().iter().all(|r| r.all_tg_pt));
}

fn mv(key: u64, sa: u64, unreg: bool, port: TargetPortId, dest: InitiatorPort) -> ProutCommand {
    ProutCommand::RegisterAndMove {
        key: ReservationKey(key),
        sa_key: ReservationKey(sa),
        aptpl: false,
        unreg,
        target_port: port,
        destination: dest,
    }
}

#[test]
fn register_and_move_to_an_unregistered_nexus() {
    for rtype in [WriteExclusive, ExclusiveAccessRegistrantsOnly] {
        for unreg in [false, true] {
            let mut t = ab_reserved_by_a(rtype);
            let g = t.generation().0;
            let fx = ok(&mut t, &a(), mv(KA, KC, unreg, P2, port("c", 1)));
            let c2 = Nexus::new(port("c", 1), P2);
            let view = t.reservation().unwrap();
            // SPC-4 5.13.8 g): same scope and type as before.
            assert_eq!(
                (view.holder, view.key, view.rtype),
                (Some(c2.clone()), ReservationKey(KC), rtype)
            );
            assert_eq!(t.registrations().iter().any(|r| r.nexus == a()), !unreg);
            assert_eq!(t.generation().0, g + 1);
            assert!(fx.unit_attentions.is_empty());
            assert_eq!(t.check(&c2, Access::Write), A);
            let a_writes = t.check(&a(), Access::Write);
            assert_eq!(
                a_writes,
                if rtype == WriteExclusive || unreg {
                    C
                } else {
                    A
                }
            );
        }
    }
}

#[test]
fn register_and_move_to_a_registered_nexus_rekeys_it() {
    let mut t = ab_reserved_by_a(WriteExclusiveRegistrantsOnly);
    ok(&mut t, &a(), mv(KA, 0x55, false, P1, port("b", 1)));
    assert_eq!(keys(&t), [KA, 0x55]);
    assert_eq!(t.reservation().unwrap().holder, Some(b()));
}

#[test]
fn register_and_move_errors() {
    let param = |byte| {
        Err(PrError::IllegalRequest(
            IllegalRequest::InvalidFieldInParameterList(FieldPointer { byte, bit: None }),
        ))
    };
    let conflict = Err(PrError::Conflict);
    let d1 = || port("d", 1);
    let t0 = ab_reserved_by_a(WriteExclusive);
    let cases: Vec<(Nexus, ProutCommand, Result<Effects, PrError>)> = vec![
        // Unregistered requester; wrong key.
        (c(), mv(0, KC, false, P1, d1()), conflict.clone()),
        (a(), mv(KB, KC, false, P1, d1()), conflict.clone()),
        // A registrant that does not hold the reservation.
        (b(), mv(KB, KC, false, P1, d1()), conflict.clone()),
        // SA key zero.
        (a(), mv(KA, 0, false, P1, d1()), param(8)),
        // Unknown relative target port.
        (a(), mv(KA, KC, false, TargetPortId(9), d1()), param(18)),
        // The requester's own initiator port, through any target port.
        (a(), mv(KA, KC, false, P1, port("a", 1)), param(24)),
        (a(), mv(KA, KC, false, P2, port("a", 1)), param(24)),
        (
            a(),
            mv(
                KA,
                KC,
                false,
                P1,
                InitiatorPort::any_isid(a().initiator.name),
            ),
            param(24),
        ),
    ];
    for (who, cmd, want) in cases {
        let mut t = t0.clone();
        assert_eq!(t.execute_out(&who, &cmd), want, "{cmd:?}");
        assert_eq!(t, t0);
    }
    // No reservation at all.
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    assert_eq!(t.execute_out(&a(), &mv(KA, KC, false, P1, d1())), conflict);
    // SPC-4 5.13.8: an all-registrants reservation cannot be moved.
    for rtype in [WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants] {
        let mut t = ab_reserved_by_a(rtype);
        let before = t.clone();
        assert_eq!(t.execute_out(&a(), &mv(KA, KC, false, P1, d1())), conflict);
        assert_eq!(t, before);
    }
    // No room for the destination's registration.
    let mut t = ab_reserved_by_a(WriteExclusive).with_max_registrations(2);
    assert_eq!(
        t.execute_out(&a(), &mv(KA, KC, false, P1, d1())),
        Err(IllegalRequest::InsufficientRegistrationResources.into())
    );
}

#[test]
fn registration_resources_are_bounded() {
    let mut t = table().with_max_registrations(2);
    ok(&mut t, &a(), reg(0, KA));
    ok(&mut t, &b(), reg(0, KB));
    assert_eq!(
        t.execute_out(&c(), &reg(0, KC)),
        Err(IllegalRequest::InsufficientRegistrationResources.into())
    );
    // Re-registering an existing nexus needs no new resources.
    ok(&mut t, &b(), reg(KB, KC));
}

#[test]
fn clear_all_is_administrator_recovery() {
    let mut t = reserved_by_a(ExclusiveAccessRegistrantsOnly);
    let fx = t.clear_all();
    assert!(t.registrations().is_empty() && t.reservation().is_none());
    assert_eq!(fx.unit_attentions.len(), 3);
    assert!(!fx.persist);
    assert_eq!(t.check(&c(), Access::LegacyReserveRelease), A);
}
