//! PERSISTENT RESERVE OUT service actions × reservation type × role of the
//! requesting nexus, against SPC-4 5.13.7–5.13.11.
mod common;
use common::*;
use reservoir_pr::*;
use ReservationType::*;
use UnitAttention::*;

const CONFLICT: Result<Effects, PrError> = Err(PrError::Conflict);

fn holder_of(t: &ReservationTable) -> Option<String> {
    t.reservation()
        .and_then(|v| v.holder)
        .map(|n| n.initiator.name.rsplit(':').next().unwrap().to_owned())
}

#[test]
fn register_table() {
    // SPC-4 5.13.7 "Register behaviors for a REGISTER service action".
    let mut t = table();
    // Unregistered, RK ≠ 0: conflict, nothing changes.
    assert_eq!(t.execute_out(&a(), &reg(5, KA)), CONFLICT);
    assert_eq!(t.generation(), Generation(0));
    // Unregistered, RK = 0, SA = 0: GOOD, nothing registered.
    ok(&mut t, &a(), reg(0, 0));
    assert!(t.registrations().is_empty());
    // Unregistered, RK = 0, SA ≠ 0: registered.
    ok(&mut t, &a(), reg(0, KA));
    assert_eq!(keys(&t), [KA]);
    // Registered, RK ≠ registered key: conflict.
    assert_eq!(t.execute_out(&a(), &reg(0, KB)), CONFLICT);
    assert_eq!(t.execute_out(&a(), &reg(KB, KB)), CONFLICT);
    // Registered, RK matches: new key (same key again is fine too).
    ok(&mut t, &a(), reg(KA, KA));
    ok(&mut t, &a(), reg(KA, KB));
    assert_eq!(keys(&t), [KB]);
    // Registered, SA = 0: unregistered.
    ok(&mut t, &a(), reg(KB, 0));
    assert!(t.registrations().is_empty());
}

#[test]
fn register_and_ignore_existing_key_table() {
    let mut t = table();
    ok(&mut t, &a(), reg_ignore(0)); // unregistered, SA 0: nothing
    assert!(t.registrations().is_empty());
    ok(&mut t, &a(), reg_ignore(KA));
    ok(&mut t, &a(), reg_ignore(KB));
    assert_eq!(keys(&t), [KB]);
    ok(&mut t, &a(), reg_ignore(0));
    assert!(t.registrations().is_empty());
}

#[test]
fn register_with_spec_i_pt_from_registered_nexus_is_invalid() {
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    let cmd = ProutCommand::Register(RegisterParams {
        key: ReservationKey(KA),
        sa_key: ReservationKey(KB),
        ignore_existing: false,
        all_tg_pt: false,
        aptpl: false,
        spec_i_pt: Some(vec![port("b", 1)]),
    });
    assert!(matches!(
        t.execute_out(&a(), &cmd),
        Err(PrError::IllegalRequest(
            IllegalRequest::InvalidFieldInParameterList(_)
        ))
    ));
    assert_eq!(keys(&t), [KA]);
}

#[test]
fn reserve_by_role_and_type() {
    for rtype in ReservationType::ALL {
        // Non-registrant: conflict, with or without a reservation.
        let mut t = table();
        assert_eq!(t.execute_out(&c(), &reserve(0, rtype)), CONFLICT);
        // Wrong key: conflict.
        ok(&mut t, &a(), reg(0, KA));
        assert_eq!(t.execute_out(&a(), &reserve(KB, rtype)), CONFLICT);
        // Reserving never bumps PRgeneration (SPC-4 6.15.2).
        let t = reserved_by_a(rtype);
        assert_eq!(t.generation(), Generation(3), "{rtype}");
        let view = t.reservation().unwrap();
        assert_eq!(view.rtype, rtype);
        if rtype.is_all_registrants() {
            // READ RESERVATION key is zero for AR (SPC-4 6.15.3).
            assert_eq!((view.key, view.holder), (ReservationKey(0), None));
        } else {
            assert_eq!(view.key, ReservationKey(KA));
        }
        for other in ReservationType::ALL {
            // Holder: same type is GOOD, another type conflicts.
            let mut t2 = t.clone();
            let r = t2.execute_out(&a(), &reserve(KA, other));
            assert_eq!(r.is_ok(), other == rtype, "holder {rtype} -> {other}");
            // Registrant: a holder only under AR, and then only the same type.
            let mut t2 = t.clone();
            let r = t2.execute_out(&b(), &reserve(KB, other));
            assert_eq!(
                r.is_ok(),
                rtype.is_all_registrants() && other == rtype,
                "registrant {rtype} -> {other}"
            );
            // Stranger.
            let mut t2 = t.clone();
            t2.execute_out(&c(), &reg(KC, 0)).unwrap();
            assert_eq!(t2.execute_out(&c(), &reserve(0, other)), CONFLICT);
        }
    }
}

#[test]
fn release_by_role_and_type() {
    for rtype in ReservationType::ALL {
        let t = ab_reserved_by_a(rtype);
        // Holder, right type: released; RO/AR tell the other registrants.
        let mut t1 = t.clone();
        let fx = ok(&mut t1, &a(), release(KA, rtype));
        assert!(t1.reservation().is_none());
        let expect = if rtype.registrants_have_access() {
            ua(&["b"], ReservationsReleased)
        } else {
            vec![]
        };
        assert_eq!(uas(&fx), expect, "{rtype}");
        assert_eq!(t1.generation(), t.generation());
        assert_eq!(keys(&t1), [KA, KB]);
        // Holder, wrong type or scope: INVALID RELEASE OF PERSISTENT RESERVATION.
        for other in ReservationType::ALL.into_iter().filter(|o| *o != rtype) {
            let mut t1 = t.clone();
            assert_eq!(
                t1.execute_out(&a(), &release(KA, other)),
                Err(IllegalRequest::InvalidReleaseOfPersistentReservation.into())
            );
            assert_eq!(t1, t);
        }
        let mut t1 = t.clone();
        let bad_scope = ProutCommand::Release {
            key: ReservationKey(KA),
            scope: 1,
            type_code: rtype.code(),
        };
        assert_eq!(
            t1.execute_out(&a(), &bad_scope),
            Err(IllegalRequest::InvalidReleaseOfPersistentReservation.into())
        );
        // Registrant: releases an AR reservation (it is a holder), otherwise
        // GOOD without effect.
        let mut t1 = t.clone();
        let fx = ok(&mut t1, &b(), release(KB, rtype));
        if rtype.is_all_registrants() {
            assert!(t1.reservation().is_none());
            assert_eq!(uas(&fx), ua(&["a"], ReservationsReleased));
        } else {
            assert_eq!(t1, t);
            assert!(fx.unit_attentions.is_empty());
        }
        // Registrant with a wrong key, and a stranger: conflict.
        let mut t1 = t.clone();
        assert_eq!(t1.execute_out(&b(), &release(KA, rtype)), CONFLICT);
        assert_eq!(t1.execute_out(&c(), &release(0, rtype)), CONFLICT);
        assert_eq!(t1, t);
    }
    // No reservation: GOOD, nothing.
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    let fx = ok(&mut t, &a(), release(KA, WriteExclusive));
    assert_eq!(fx, Effects::default());
}

#[test]
fn clear_by_role_and_type() {
    for rtype in ReservationType::ALL {
        let t = reserved_by_a(rtype);
        for (who, key) in [(a(), KA), (b(), KB)] {
            let mut t1 = t.clone();
            let fx = ok(&mut t1, &who, clear(key));
            assert!(t1.registrations().is_empty() && t1.reservation().is_none());
            assert_eq!(t1.generation().0, t.generation().0 + 1);
            let others: Vec<&str> = ["a", "b", "c"]
                .into_iter()
                .filter(|n| nx(n) != who)
                .collect();
            assert_eq!(uas(&fx), ua(&others, ReservationsPreempted), "{rtype}");
        }
        let mut t1 = t.clone();
        assert_eq!(t1.execute_out(&b(), &clear(KA)), CONFLICT);
        assert_eq!(t1.execute_out(&nx("d"), &clear(0)), CONFLICT);
        assert_eq!(t1, t);
    }
    // CLEAR without a reservation still removes registrations and notifies.
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    ok(&mut t, &b(), reg(0, KB));
    let fx = ok(&mut t, &a(), clear(KA));
    assert_eq!(uas(&fx), ua(&["b"], ReservationsPreempted));
}

#[test]
fn unregistering_the_holder_by_type() {
    for rtype in ReservationType::ALL {
        let mut t = reserved_by_a(rtype);
        let fx = ok(&mut t, &a(), reg(KA, 0));
        if rtype.is_all_registrants() {
            // AR: the reservation lasts while any registrant remains.
            assert!(t.reservation().is_some());
            assert!(fx.unit_attentions.is_empty());
            ok(&mut t, &b(), reg(KB, 0));
            assert!(t.reservation().is_some());
            ok(&mut t, &c(), reg(KC, 0));
            assert!(t.reservation().is_none());
        } else {
            assert!(t.reservation().is_none(), "{rtype}");
            let expect = if rtype.registrants_have_access() {
                ua(&["b", "c"], ReservationsReleased)
            } else {
                vec![]
            };
            assert_eq!(uas(&fx), expect, "{rtype}");
        }
    }
}

#[test]
fn unregistering_a_non_holder_keeps_the_reservation() {
    for rtype in ReservationType::ALL {
        let mut t = reserved_by_a(rtype);
        let fx = ok(&mut t, &b(), reg(KB, 0));
        assert_eq!(t.reservation().unwrap().rtype, rtype);
        assert!(fx.unit_attentions.is_empty());
    }
}

#[test]
fn reregistering_the_holder_keeps_the_reservation_under_the_new_key() {
    let mut t = reserved_by_a(WriteExclusive);
    ok(&mut t, &a(), reg(KA, 0x77));
    assert_eq!(t.reservation().unwrap().key, ReservationKey(0x77));
    ok(&mut t, &a(), reg_ignore(0x78));
    assert_eq!(t.reservation().unwrap().key, ReservationKey(0x78));
}

#[test]
fn preempt_the_holder_of_single_holder_types() {
    for rtype in [
        WriteExclusive,
        ExclusiveAccess,
        WriteExclusiveRegistrantsOnly,
        ExclusiveAccessRegistrantsOnly,
    ] {
        for new in ReservationType::ALL {
            for abort in [false, true] {
                let mut t = reserved_by_a(rtype);
                let gen = t.generation().0;
                let fx = ok(&mut t, &b(), preempt(KB, KA, new, abort));
                // a) release, b) remove A, c) reserve for B with the new type.
                assert_eq!(keys(&t), [KB, KC]);
                let view = t.reservation().unwrap();
                assert_eq!(view.rtype, new);
                if new.is_all_registrants() {
                    assert_eq!(view.holder, None);
                } else {
                    assert_eq!(holder_of(&t).as_deref(), Some("b"));
                }
                // e) REGISTRATIONS PREEMPTED to A; f) RESERVATIONS RELEASED to
                // survivors other than B when the type changed.
                let mut expect = ua(&["a"], RegistrationsPreempted);
                if new != rtype {
                    expect.extend(ua(&["c"], ReservationsReleased));
                }
                assert_eq!(uas(&fx), expect, "{rtype} -> {new}");
                assert_eq!(fx.abort_tasks_of, if abort { vec![a()] } else { vec![] });
                assert_eq!(t.generation().0, gen + 1);
            }
        }
    }
}

#[test]
fn preempt_removes_every_registration_with_the_holders_key_but_the_requesters() {
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    ok(&mut t, &b(), reg(0, KA)); // B shares A's key
    ok(&mut t, &c(), reg(0, KC));
    ok(&mut t, &a(), reserve(KA, WriteExclusive));
    // B preempts with SA = its own key = the holder's key.
    let fx = ok(&mut t, &b(), preempt(KA, KA, WriteExclusive, true));
    assert_eq!(keys(&t), [KA, KC]);
    assert_eq!(holder_of(&t).as_deref(), Some("b"));
    assert_eq!(uas(&fx), ua(&["a"], RegistrationsPreempted));
    // PREEMPT AND ABORT aborts the requester's other tasks too: its key was named.
    assert_eq!(fx.abort_tasks_of, vec![a(), b()]);
}

#[test]
fn preempt_of_non_holder_keys_removes_registrations_only() {
    for rtype in ReservationType::ALL {
        let mut t = reserved_by_a(rtype);
        let fx = ok(&mut t, &b(), preempt(KB, KC, WriteExclusive, false));
        assert_eq!(keys(&t), [KA, KB]);
        assert_eq!(t.reservation().unwrap().rtype, rtype, "reservation stays");
        assert_eq!(uas(&fx), ua(&["c"], RegistrationsPreempted));
    }
}

#[test]
fn preempt_without_reservation_removes_registrations() {
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    ok(&mut t, &b(), reg(0, KB));
    let fx = ok(&mut t, &a(), preempt(KA, KB, WriteExclusive, false));
    assert_eq!(keys(&t), [KA]);
    assert!(t.reservation().is_none());
    assert_eq!(uas(&fx), ua(&["b"], RegistrationsPreempted));
    // Naming one's own key removes oneself, without a unit attention.
    let fx = ok(&mut t, &a(), preempt(KA, KA, WriteExclusive, false));
    assert!(t.registrations().is_empty());
    assert!(fx.unit_attentions.is_empty());
}

#[test]
fn preempt_errors() {
    for rtype in [
        None,
        Some(WriteExclusive),
        Some(ExclusiveAccessRegistrantsOnly),
    ] {
        let mut t = table();
        ok(&mut t, &a(), reg(0, KA));
        ok(&mut t, &b(), reg(0, KB));
        if let Some(r) = rtype {
            ok(&mut t, &a(), reserve(KA, r));
        }
        let before = t.clone();
        // SA key zero without an all-registrants reservation.
        assert_eq!(
            t.execute_out(&b(), &preempt(KB, 0, WriteExclusive, false)),
            Err(PrError::IllegalRequest(
                IllegalRequest::InvalidFieldInParameterList(FieldPointer { byte: 8, bit: None })
            ))
        );
        // SA key naming nobody; wrong key; stranger.
        assert_eq!(
            t.execute_out(&b(), &preempt(KB, 0x99, WriteExclusive, false)),
            CONFLICT
        );
        assert_eq!(
            t.execute_out(&b(), &preempt(KA, KA, WriteExclusive, false)),
            CONFLICT
        );
        assert_eq!(
            t.execute_out(&c(), &preempt(0, KA, WriteExclusive, false)),
            CONFLICT
        );
        assert_eq!(t, before);
    }
}

#[test]
fn preempt_all_registrants_with_zero_key() {
    for rtype in [WriteExclusiveAllRegistrants, ExclusiveAccessAllRegistrants] {
        for new in ReservationType::ALL {
            let mut t = reserved_by_a(rtype);
            let fx = ok(&mut t, &b(), preempt(KB, 0, new, true));
            // Everybody but the requester goes; the requester reserves `new`.
            assert_eq!(keys(&t), [KB]);
            assert_eq!(t.reservation().unwrap().rtype, new);
            assert_eq!(
                uas(&fx),
                ua(&["a", "c"], RegistrationsPreempted),
                "{rtype} -> {new}"
            );
            assert_eq!(fx.abort_tasks_of, vec![a(), c()]);
        }
    }
}

#[test]
fn preempt_all_registrants_with_a_key_removes_those_registrations() {
    let mut t = reserved_by_a(ExclusiveAccessAllRegistrants);
    let fx = ok(
        &mut t,
        &b(),
        preempt(KB, KA, ExclusiveAccessAllRegistrants, false),
    );
    assert_eq!(keys(&t), [KB, KC]);
    assert_eq!(
        t.reservation().unwrap().rtype,
        ExclusiveAccessAllRegistrants
    );
    assert_eq!(uas(&fx), ua(&["a"], RegistrationsPreempted));
    // Removing the last other registrants leaves the requester holding it.
    ok(&mut t, &b(), preempt(KB, KC, WriteExclusive, false));
    assert_eq!(keys(&t), [KB]);
    assert!(t.reservation().is_some());
    // Removing oneself, the last registrant, ends it.
    ok(&mut t, &b(), preempt(KB, KB, WriteExclusive, false));
    assert!(t.reservation().is_none());
}

#[test]
fn cluster_fencing_scenario() {
    // Owner holds WE-RO, members register a shared key, owner fences one
    // with PREEMPT AND ABORT; a challenger later takes over.
    let owner = a();
    let (m1, m2) = (b(), c());
    let mut t = table();
    ok(&mut t, &owner, reg(0, 0x0100));
    ok(&mut t, &m1, reg(0, 0x0201));
    ok(&mut t, &m2, reg(0, 0x0202));
    ok(
        &mut t,
        &owner,
        reserve(0x0100, WriteExclusiveRegistrantsOnly),
    );
    assert_eq!(t.check(&m2, Access::Write), Verdict::Allowed);
    let fx = ok(
        &mut t,
        &owner,
        preempt(0x0100, 0x0202, WriteExclusiveRegistrantsOnly, true),
    );
    assert_eq!(fx.abort_tasks_of, vec![m2.clone()]);
    assert_eq!(t.check(&m2, Access::Write), Verdict::Conflict);
    assert_eq!(t.check(&m2, Access::Read), Verdict::Allowed);
    let fx = ok(
        &mut t,
        &m1,
        preempt(0x0201, 0x0100, WriteExclusiveRegistrantsOnly, true),
    );
    assert_eq!(holder_of(&t).as_deref(), Some("b"));
    assert_eq!(uas(&fx), ua(&["a"], RegistrationsPreempted));
    assert_eq!(t.check(&owner, Access::Write), Verdict::Conflict);
}

#[test]
fn preempt_checks_scope_and_type_only_when_preempting_a_reservation() {
    let raw = |sa: u64, scope: u8, type_code: u8| ProutCommand::Preempt {
        key: ReservationKey(KB),
        sa_key: ReservationKey(sa),
        scope,
        type_code,
        abort: false,
    };
    let field = |bit| {
        Err(PrError::IllegalRequest(IllegalRequest::InvalidFieldInCdb(
            FieldPointer {
                byte: 2,
                bit: Some(bit),
            },
        )))
    };
    // Preempting the holder: TYPE 0 and element scope are invalid fields.
    let t0 = reserved_by_a(WriteExclusive);
    let mut t = t0.clone();
    assert_eq!(t.execute_out(&b(), &raw(KA, 0, 0)), field(3));
    assert_eq!(t.execute_out(&b(), &raw(KA, 1, 1)), field(7));
    assert_eq!(t, t0);
    // Removing registrations ignores them (SPC-4 5.13.11.4.4 b).
    ok(&mut t, &b(), raw(KC, 1, 0));
    assert_eq!(keys(&t), [KA, KB]);
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    ok(&mut t, &b(), reg(0, KB));
    ok(&mut t, &b(), raw(KA, 0, 0));
    assert_eq!(keys(&t), [KB]);
}
