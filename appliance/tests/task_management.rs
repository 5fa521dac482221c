//! Task management across initiators, on the wire: a LOGICAL UNIT RESET
//! from one initiator ends another initiator's commands in flight on that
//! LUN (SAM-5 7.7, TAS = 1), which then learns of the reset from a unit
//! attention.

#[allow(dead_code)] // only the held writes and plain commands are used here
mod raw_iscsi;
mod support;

use std::net::SocketAddr;

use raw_iscsi::{Outcome, RawSession};
use support::{connect, Config, Daemon, INITIATOR_1, INITIATOR_2};

const IQN: &str = "iqn.2026-11.io.reservoir:tmf";
const BLOCK: u32 = 512;

#[test]
fn a_lun_reset_aborts_another_initiators_commands_in_flight() {
    let daemon = Daemon::start(&Config::single_malloc("vol0", 8, IQN));
    let mut resetter = connect(&daemon.url(IQN, 0), INITIATOR_1);
    let old = vec![0x11; 16 * BLOCK as usize];
    resetter
        .write(0, &old, BLOCK, false)
        .expect("WRITE the old data");

    let portal = SocketAddr::from(([127, 0, 0, 1], daemon.port()));
    let isid = [0x80, 0, 0, 0, 0x53, 1];
    let mut other = RawSession::login(portal, INITIATOR_2, isid, IQN).expect("raw login");
    other.clear_unit_attentions().expect("unit attentions");
    // Two WRITE (10)s held at their R2Ts: in flight on the target.
    let new = vec![0xee; 8 * BLOCK as usize];
    let first = other
        .start_write(0, new.clone(), BLOCK)
        .expect("first WRITE");
    let second = other.start_write(8, new, BLOCK).expect("second WRITE");

    resetter.lun_reset().expect("LOGICAL UNIT RESET");

    for (which, held) in [("first", first), ("second", second)] {
        let outcome = other.finish(held).expect("Data-Out");
        assert_eq!(
            outcome.status,
            Outcome::TASK_ABORTED,
            "{which} write: {outcome:?}"
        );
    }
    // BUS DEVICE RESET FUNCTION OCCURRED (29h/03h), then the old data.
    let read = raw_iscsi::read10(0, 16);
    let outcome = other.execute(&read, 16 * BLOCK).expect("READ (10)");
    assert_eq!(outcome.sense, Some((0x6, 0x29, 0x03)), "{outcome:?}");
    let outcome = other.execute(&read, 16 * BLOCK).expect("READ (10)");
    assert_eq!(outcome.status, Outcome::GOOD, "{outcome:?}");
    assert!(outcome.data_in == old, "the aborted writes wrote nothing");
    // The reset ends tasks, not the session: a new write lands.
    let outcome = other
        .write(0, &[0x22; BLOCK as usize], BLOCK)
        .expect("WRITE");
    assert_eq!(outcome.status, Outcome::GOOD, "{outcome:?}");
}
