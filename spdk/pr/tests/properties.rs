//! Property tests: random PERSISTENT RESERVE OUT sequences never panic and
//! keep the table's invariants; codecs never panic on garbage.
mod common;
use common::*;
use proptest::prelude::*;
use reservoir_pr::*;

fn nexus_pool() -> Vec<Nexus> {
    vec![
        Nexus::new(port("a", 1), P1),
        Nexus::new(port("a", 2), P1),
        Nexus::new(port("a", 1), P2),
        Nexus::new(port("b", 1), P1),
        Nexus::new(port("b", 1), P2),
        Nexus::new(port("c", 1), TargetPortId(3)),
        Nexus::new(InitiatorPort::any_isid("iqn.wild"), P1),
    ]
}

fn initiator_pool() -> Vec<InitiatorPort> {
    vec![
        port("a", 1),
        port("b", 2),
        port("d", 1),
        InitiatorPort::any_isid("iqn.2026-01.org.example:e"),
        InitiatorPort::any_isid("iqn.2026-01.org.example:a"),
    ]
}

/// Stand-ins resolved against the table when a step runs, so that random
/// sequences present the right keys often enough to reach deep states.
const OWN_KEY: u64 = u64::MAX;
const HOLDER_KEY: u64 = u64::MAX - 1;

fn key() -> impl Strategy<Value = ReservationKey> {
    prop_oneof![
        1 => Just(0u64),
        2 => Just(1),
        2 => Just(2),
        1 => Just(3),
        4 => Just(OWN_KEY),
        2 => Just(HOLDER_KEY),
    ]
    .prop_map(ReservationKey)
}

/// Replaces the stand-in keys: OWN_KEY by the requester's registered key,
/// HOLDER_KEY by the reservation's (or the first registration's) key.
fn resolve(t: &ReservationTable, who: &Nexus, cmd: ProutCommand) -> ProutCommand {
    let own = t
        .registrations()
        .iter()
        .find(|r| {
            r.nexus.target_port == who.target_port
                && r.nexus
                    .initiator
                    .name
                    .eq_ignore_ascii_case(&who.initiator.name)
                && (r.nexus.initiator.isid.is_none()
                    || r.nexus.initiator.isid == who.initiator.isid)
        })
        .map_or(0, |r| r.key.0);
    let holder = t
        .reservation()
        .map(|v| v.key.0)
        .filter(|k| *k != 0)
        .or_else(|| t.registrations().first().map(|r| r.key.0))
        .unwrap_or(0);
    let fix = |k: ReservationKey| {
        ReservationKey(match k.0 {
            OWN_KEY => own,
            HOLDER_KEY => holder,
            other => other,
        })
    };
    match cmd {
        ProutCommand::Register(mut r) => {
            r.key = fix(r.key);
            r.sa_key = fix(r.sa_key);
            ProutCommand::Register(r)
        }
        ProutCommand::Reserve { key, rtype } => ProutCommand::Reserve {
            key: fix(key),
            rtype,
        },
        ProutCommand::Release {
            key,
            scope,
            type_code,
        } => {
            // Usually release what is held.
            let type_code = match (t.reservation(), type_code) {
                (Some(v), 0) => v.rtype.code(),
                _ => type_code,
            };
            ProutCommand::Release {
                key: fix(key),
                scope,
                type_code,
            }
        }
        ProutCommand::Clear { key } => ProutCommand::Clear { key: fix(key) },
        ProutCommand::Preempt {
            key,
            sa_key,
            scope,
            type_code,
            abort,
        } => ProutCommand::Preempt {
            key: fix(key),
            sa_key: fix(sa_key),
            scope,
            type_code,
            abort,
        },
        ProutCommand::RegisterAndMove {
            key,
            sa_key,
            aptpl,
            unreg,
            target_port,
            destination,
        } => ProutCommand::RegisterAndMove {
            key: fix(key),
            sa_key: fix(sa_key),
            aptpl,
            unreg,
            target_port,
            destination,
        },
    }
}

/// SCOPE and TYPE: mostly valid, sometimes anything.
fn scope_type() -> impl Strategy<Value = (u8, u8)> {
    prop_oneof![
        8 => rtype().prop_map(|t| (0, t.code())),
        1 => (0u8..2, 0u8..10),
    ]
}

/// Requesters: mostly two busy initiators, sometimes any of the pool.
fn who() -> impl Strategy<Value = usize> {
    prop_oneof![3 => Just(0usize), 3 => Just(3usize), 2 => 0usize..7]
}

fn rtype() -> impl Strategy<Value = ReservationType> {
    prop::sample::select(ReservationType::ALL.to_vec())
}

fn command() -> impl Strategy<Value = ProutCommand> {
    let spec = prop::option::of(prop::collection::vec(
        prop::sample::select(initiator_pool()),
        0..3,
    ));
    let register = (
        key(),
        key(),
        any::<bool>(),
        any::<bool>(),
        any::<bool>(),
        spec,
    )
        .prop_map(
            |(key, sa_key, ignore_existing, all_tg_pt, aptpl, spec_i_pt)| {
                ProutCommand::Register(RegisterParams {
                    key,
                    sa_key,
                    ignore_existing,
                    all_tg_pt,
                    aptpl,
                    spec_i_pt,
                })
            },
        );
    let preempt = (key(), key(), scope_type(), any::<bool>()).prop_map(
        |(key, sa_key, (scope, type_code), abort)| ProutCommand::Preempt {
            key,
            sa_key,
            scope,
            type_code,
            abort,
        },
    );
    let register_and_move = (
        key(),
        key(),
        any::<bool>(),
        any::<bool>(),
        prop_oneof![9 => 1u16..4, 1 => Just(9u16)],
        prop::sample::select(initiator_pool()),
    )
        .prop_map(|(key, sa_key, aptpl, unreg, p, destination)| {
            ProutCommand::RegisterAndMove {
                key,
                sa_key,
                aptpl,
                unreg,
                target_port: TargetPortId(p),
                destination,
            }
        });
    prop_oneof![
        3 => register,
        3 => (key(), rtype()).prop_map(|(key, rtype)| ProutCommand::Reserve { key, rtype }),
        2 => (key(), prop_oneof![Just((0u8, 0u8)), scope_type()]).prop_map(
            |(key, (scope, type_code))| ProutCommand::Release {
                key,
                scope,
                type_code
            }
        ),
        1 => key().prop_map(|key| ProutCommand::Clear { key }),
        2 => preempt,
        3 => register_and_move,
    ]
}

fn assert_invariants(t: &ReservationTable) {
    let regs = t.registrations();
    for (i, r) in regs.iter().enumerate() {
        assert!(!r.key.is_zero(), "zero key registered");
        for s in &regs[i + 1..] {
            let overlap = r.nexus.target_port == s.nexus.target_port
                && r.nexus
                    .initiator
                    .name
                    .eq_ignore_ascii_case(&s.nexus.initiator.name)
                && (r.nexus.initiator.isid.is_none()
                    || s.nexus.initiator.isid.is_none()
                    || r.nexus.initiator.isid == s.nexus.initiator.isid);
            assert!(
                !overlap,
                "overlapping registrations {} / {}",
                r.nexus, s.nexus
            );
        }
    }
    if let Some(view) = t.reservation() {
        match &view.holder {
            // A holder is always a registrant.
            Some(h) => {
                assert!(!view.rtype.is_all_registrants());
                let reg = regs
                    .iter()
                    .find(|r| &r.nexus == h)
                    .expect("holder registered");
                assert_eq!(reg.key, view.key);
                assert_eq!(t.check(h, Access::Write), Verdict::Allowed);
            }
            None => {
                assert!(view.rtype.is_all_registrants());
                assert!(
                    !regs.is_empty(),
                    "all-registrants reservation without registrants"
                );
            }
        }
    }
    // Round trip through the APTPL record.
    let back = ReservationTable::decode(&t.encode()).expect("own record decodes");
    if t.aptpl() {
        // The record carries all state but the registration cap (configuration).
        assert_eq!(back.encode(), t.encode());
        assert_eq!(back.registrations(), t.registrations());
        assert_eq!(back.reservation(), t.reservation());
    } else {
        assert!(back.registrations().is_empty() && back.reservation().is_none());
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::WithSource("regressions"),
        )),
        ..ProptestConfig::default()
    })]

    #[test]
    fn random_sequences_keep_invariants(
        steps in prop::collection::vec((who(), command()), 1..40),
        max in 2usize..12,
    ) {
        let pool = nexus_pool();
        let mut t = ReservationTable::new([P1, P2, TargetPortId(3)]).with_max_registrations(max);
        for (who, cmd) in steps {
            let cmd = resolve(&t, &pool[who], cmd);
            let before = t.clone();
            let result = t.execute_out(&pool[who], &cmd);
            let g0 = before.generation().0;
            let g1 = t.generation().0;
            match &result {
                Err(_) => prop_assert_eq!(&t, &before, "failed command changed the table"),
                Ok(fx) => {
                    let bumps = !matches!(cmd, ProutCommand::Reserve { .. } | ProutCommand::Release { .. });
                    prop_assert_eq!(g1, g0.wrapping_add(u32::from(bumps)));
                    prop_assert!(fx.persist == ((before.aptpl() || t.aptpl()) && before != t));
                    let aborting = matches!(cmd, ProutCommand::Preempt { abort: true, .. });
                    prop_assert!(fx.abort_tasks_of.is_empty() || aborting);
                }
            }
            prop_assert!(t.registrations().len() <= max);
            assert_invariants(&t);
            for n in &pool {
                for access in [Access::Unrestricted, Access::Read, Access::Write, Access::LegacyReserveRelease] {
                    let _ = t.check(n, access);
                }
            }
            for sa in 0..4u8 {
                let mut cdb = [0u8; 10];
                cdb[1] = sa;
                cdb[7..9].copy_from_slice(&u16::MAX.to_be_bytes());
                let data = t.execute_in(&PrinCommand::parse(&cdb).unwrap());
                if sa != 2 {
                    let additional = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                    prop_assert_eq!(additional, data.len() - 8);
                }
            }
        }
    }

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = ReservationTable::decode(&bytes);
    }

    #[test]
    fn decode_survives_bit_flips_of_a_real_record(flip in 0usize..2048, bit in 0u8..8) {
        let mut t2 = table();
        let cmd = ProutCommand::Register(RegisterParams {
            key: ReservationKey(0), sa_key: ReservationKey(5), ignore_existing: false,
            all_tg_pt: true, aptpl: true, spec_i_pt: None,
        });
        ok(&mut t2, &a(), cmd);
        let mut bytes = t2.encode();
        let i = flip % bytes.len();
        bytes[i] ^= 1 << bit;
        // The CRC catches every single-bit flip.
        prop_assert!(ReservationTable::decode(&bytes).is_err());
    }

    #[test]
    fn prout_parse_never_panics(
        cdb in prop::collection::vec(any::<u8>(), 0..12),
        data in prop::collection::vec(any::<u8>(), 0..120),
    ) {
        if let Ok(cmd) = ProutCommand::parse(&cdb, &data) {
            let mut t = table();
            let _ = t.execute_out(&a(), &cmd);
            assert_invariants(&t);
        }
    }

    #[test]
    fn prout_parse_of_structured_lists(
        sa in 0u8..8, ty in 0u8..16, flags in any::<u8>(),
        tail in prop::collection::vec(any::<u8>(), 0..80),
        tpdl in 0u32..100,
    ) {
        let mut data = vec![0u8; 24];
        data[20] = flags;
        data[20..24].copy_from_slice(&if sa == 7 { tpdl.to_be_bytes() } else { [flags, 0, 0, 0] });
        if flags & 0x08 != 0 && sa != 7 {
            data.extend_from_slice(&tpdl.to_be_bytes());
        }
        data.extend_from_slice(&tail);
        let mut cdb = [0u8; 10];
        cdb[1] = sa;
        cdb[2] = ty;
        cdb[5..9].copy_from_slice(&(data.len() as u32).to_be_bytes());
        let _ = ProutCommand::parse(&cdb, &data);
    }

    #[test]
    fn prin_parse_never_panics(cdb in prop::collection::vec(any::<u8>(), 0..12)) {
        if let Ok(cmd) = PrinCommand::parse(&cdb) {
            let t = reserved_by_a(ReservationType::WriteExclusive);
            prop_assert!(t.execute_in(&cmd).len() <= usize::from(cmd.allocation_length));
        }
    }
}

/// The random sequences above must reach the interesting states, or their
/// invariants prove little: count successful service actions over a
/// deterministic sample.
#[test]
fn random_sequences_reach_every_service_action() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = prop::collection::vec((who(), command()), 1..40);
    let pool = nexus_pool();
    let mut seen = [0usize; 7];
    for _ in 0..300 {
        let steps = strategy.new_tree(&mut runner).unwrap().current();
        let mut t = ReservationTable::new([P1, P2, TargetPortId(3)]);
        for (who, cmd) in steps {
            let cmd = resolve(&t, &pool[who], cmd);
            let reserved = t.reservation().is_some();
            if t.execute_out(&pool[who], &cmd).is_ok() {
                let slot = match cmd {
                    ProutCommand::Register(_) => 0,
                    ProutCommand::Reserve { .. } => 1,
                    ProutCommand::Release { .. } if reserved && t.reservation().is_none() => 2,
                    ProutCommand::Release { .. } => continue,
                    ProutCommand::Clear { .. } => 3,
                    ProutCommand::Preempt { .. } if reserved => 4,
                    ProutCommand::Preempt { .. } => 5,
                    ProutCommand::RegisterAndMove { .. } => 6,
                };
                seen[slot] += 1;
            }
        }
    }
    assert!(seen.iter().all(|&n| n >= 10), "coverage {seen:?}");
}
