//! Shared fixtures: three initiators on port 1 (A, B, C), a second port.
#![allow(dead_code)]

use reservoir_pr::*;

pub const P1: TargetPortId = TargetPortId(1);
pub const P2: TargetPortId = TargetPortId(2);
pub const KA: u64 = 0xa;
pub const KB: u64 = 0xb;
pub const KC: u64 = 0xc;

pub fn port(name: &str, isid: u8) -> InitiatorPort {
    InitiatorPort::new(
        format!("iqn.2026-01.org.example:{name}"),
        [0x40, 0, 0, 0, 0, isid],
    )
}

pub fn nx(name: &str) -> Nexus {
    Nexus::new(port(name, 1), P1)
}

pub fn a() -> Nexus {
    nx("a")
}
pub fn b() -> Nexus {
    nx("b")
}
pub fn c() -> Nexus {
    nx("c")
}

pub fn table() -> ReservationTable {
    ReservationTable::new([P1, P2])
}

pub fn reg(key: u64, sa: u64) -> ProutCommand {
    ProutCommand::Register(RegisterParams {
        key: ReservationKey(key),
        sa_key: ReservationKey(sa),
        ignore_existing: false,
        all_tg_pt: false,
        aptpl: false,
        spec_i_pt: None,
    })
}

pub fn reg_ignore(sa: u64) -> ProutCommand {
    ProutCommand::Register(RegisterParams {
        key: ReservationKey(0xdead),
        sa_key: ReservationKey(sa),
        ignore_existing: true,
        all_tg_pt: false,
        aptpl: false,
        spec_i_pt: None,
    })
}

pub fn reserve(key: u64, rtype: ReservationType) -> ProutCommand {
    ProutCommand::Reserve {
        key: ReservationKey(key),
        rtype,
    }
}

pub fn release(key: u64, rtype: ReservationType) -> ProutCommand {
    ProutCommand::Release {
        key: ReservationKey(key),
        scope: 0,
        type_code: rtype.code(),
    }
}

pub fn clear(key: u64) -> ProutCommand {
    ProutCommand::Clear {
        key: ReservationKey(key),
    }
}

pub fn preempt(key: u64, sa: u64, rtype: ReservationType, abort: bool) -> ProutCommand {
    ProutCommand::Preempt {
        key: ReservationKey(key),
        sa_key: ReservationKey(sa),
        scope: 0,
        type_code: rtype.code(),
        abort,
    }
}

pub fn ok(t: &mut ReservationTable, n: &Nexus, cmd: ProutCommand) -> Effects {
    t.execute_out(n, &cmd)
        .unwrap_or_else(|e| panic!("{cmd:?} from {n}: {e:?}"))
}

/// A registered on KA, B on KB, C on KC; A reserves `rtype`.
pub fn reserved_by_a(rtype: ReservationType) -> ReservationTable {
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    ok(&mut t, &b(), reg(0, KB));
    ok(&mut t, &c(), reg(0, KC));
    ok(&mut t, &a(), reserve(KA, rtype));
    t
}

/// A and B registered, A reserves; C is a stranger.
pub fn ab_reserved_by_a(rtype: ReservationType) -> ReservationTable {
    let mut t = table();
    ok(&mut t, &a(), reg(0, KA));
    ok(&mut t, &b(), reg(0, KB));
    ok(&mut t, &a(), reserve(KA, rtype));
    t
}

pub fn keys(t: &ReservationTable) -> Vec<u64> {
    t.registrations().iter().map(|r| r.key.0).collect()
}

pub fn uas(fx: &Effects) -> Vec<(String, UnitAttention)> {
    let mut v: Vec<_> = fx
        .unit_attentions
        .iter()
        .map(|(n, ua)| (n.initiator.name.rsplit(':').next().unwrap().to_owned(), *ua))
        .collect();
    v.sort_by(|x, y| x.0.cmp(&y.0));
    v
}

pub fn ua(names: &[&str], ua: UnitAttention) -> Vec<(String, UnitAttention)> {
    names.iter().map(|n| (n.to_string(), ua)).collect()
}
