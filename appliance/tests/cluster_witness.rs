//! A two-node cluster with a witness LUN, as real processes: the volume
//! owner is killed with SIGKILL and the survivor carries on alone on the
//! witness, its last-surviving flag set; then the survivor stops too, and
//! the dead (stale) node, started alone with its flag false, must not
//! start cluster operations; once the survivor is back, both run and the
//! flags clear. The owner's acknowledged writes are all there afterwards
//! and no write of the fenced node lands.

mod support;

use std::time::{Duration, Instant};

use reservoir_cluster::{failover_bound_ms, NodeId};
use reservoir_initiator::Pattern;
use support::cluster::{
    agreed_owner, registered_nodes, wait_for, Agent, ClusterSpec, LunSpec, NodeSession,
};
use support::{Config, Daemon};

const D: u64 = 1000;
const IQN: &str = "iqn.2026-11.io.reservoir:witness";
const WITNESS_LUN: u16 = 0;
const SHARED_LUN: u16 = 1;

#[test]
fn the_survivor_runs_on_the_witness_and_the_stale_node_stays_down() {
    let daemon = Daemon::start(
        &Config::default()
            .volume("witness", support::Backend::Malloc, 1)
            .volume("shared", support::Backend::Malloc, 8)
            .target(IQN, &["witness", "shared"]),
    );
    let dir = daemon.root().to_owned();
    let mut spec = ClusterSpec::loopback("pair", D, 2, LunSpec::new(IQN, SHARED_LUN));
    spec.witness = Some(LunSpec::new(IQN, WITNESS_LUN));
    let portal = format!("127.0.0.1:{}", daemon.port());
    let mut agents: Vec<Agent> = (1..=2)
        .map(|id| Agent::start(&spec, id, &dir, &portal, None))
        .collect();
    let url = daemon.url(IQN, SHARED_LUN.into());
    let witness = daemon.url(IQN, WITNESS_LUN.into());

    // Both up: one owns the volume, both are members.
    let all: Vec<&Agent> = agents.iter().collect();
    let (owner, formed) = wait_for("two-node formation", Duration::from_secs(30), || {
        let owner = agreed_owner(&all)?;
        all.iter()
            .all(|a| a.status().is_some_and(|s| s.core.record.members.len() == 2))
            .then_some(owner)
    });
    eprintln!("two nodes formed after {formed:?}; node {owner} owns the volume");
    let acknowledged = Pattern::new(0x2a0de);
    NodeSession::login(&url, &spec, owner, SHARED_LUN)
        .write(acknowledged, 0, 32)
        .expect("the owner writes");

    // kill -9 the owner: the survivor takes the witness and the volume.
    let (dead, survivor) = (usize::from(owner) - 1, 2 - usize::from(owner));
    let survivor_id = agents[survivor].id;
    agents[dead].kill_hard();
    let bound = Duration::from_millis(failover_bound_ms(D));
    let (_, failover) = wait_for("the survivor to take over", bound * 3, || {
        agreed_owner(&[&agents[survivor]]).filter(|&o| o == survivor_id)
    });
    eprintln!(
        "FAILOVER witness: node {survivor_id} owns the volume {failover:?} after node {owner} \
         was killed (D = {D} ms)"
    );
    // Twice the documented bound: a busy CI machine may add a round, a
    // failover that never happens or takes rounds more still fails; the
    // measured time is printed above for the record.
    assert!(
        failover <= bound * 2,
        "failover took {failover:?}, documented bound {bound:?}"
    );
    let dead_id = NodeId::new(owner).unwrap();
    wait_for(
        "the survivor to carry on alone with its flag set",
        Duration::from_millis(6 * D),
        || {
            let s = agents[survivor].status()?;
            let alone = s.core.quorate
                && s.core.last_surviving
                && !s.core.record.members.contains_key(&dead_id);
            let gone = !registered_nodes(&url, &spec).contains(&dead_id)
                && !registered_nodes(&witness, &spec).contains(&dead_id);
            (alone && gone && agents[survivor].last_surviving()).then_some(())
        },
    );
    assert!(!agents[dead].last_surviving(), "the dead node's flag");

    // The dead node's nexus is fenced; the survivor has every acknowledged
    // block and none of the fenced ones.
    let refused =
        NodeSession::login(&url, &spec, owner, SHARED_LUN).write(Pattern::new(0xbad), 0, 32);
    assert!(
        refused.as_ref().is_err_and(|e| e.is_reservation_conflict()),
        "the dead node's write was not fenced: {refused:?}"
    );
    let mut session = NodeSession::login(&url, &spec, survivor_id, SHARED_LUN);
    let bs = session.block_size as usize;
    assert_eq!(
        acknowledged.first_mismatch(0, bs, &session.read(0, 32)),
        None
    );
    let alone = Pattern::new(0x1a57);
    session
        .write(alone, 32, 16)
        .expect("the survivor writes alone");
    drop(session);

    // Stop the survivor, then start the stale node alone: its gate stays
    // closed and it takes no registration, for several intervals.
    agents[survivor].kill_hard();
    agents[dead].restart();
    let (stale, _) = wait_for("the stale node's agent", Duration::from_secs(10), || {
        agents[dead].status()
    });
    assert!(!stale.core.gate_open, "{:?}", stale.core);
    let watched = Instant::now();
    while watched.elapsed() < Duration::from_millis(4 * D) {
        let s = agents[dead].status().expect("the stale node answers");
        assert!(
            !s.core.gate_open && !s.core.quorate && !s.core.volumes_active,
            "the stale node started cluster operations: {:?}",
            s.core
        );
        for lun in [&url, &witness] {
            assert!(
                !registered_nodes(lun, &spec).contains(&dead_id),
                "the stale node registered on {lun}"
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    eprintln!("the stale node stayed out for {:?}", watched.elapsed());

    // The survivor comes back: both run, both flags clear.
    agents[survivor].restart();
    let both: Vec<&Agent> = agents.iter().collect();
    let (_, rejoined) = wait_for("both nodes running", Duration::from_secs(30), || {
        let statuses: Vec<_> = both.iter().map(|a| a.status()).collect::<Option<_>>()?;
        let together = statuses.iter().all(|s: &reservoir_cluster::Status| {
            s.core.gate_open
                && s.core.volumes_active
                && !s.core.last_surviving
                && s.core.record.members.len() == 2
        });
        (together && both.iter().all(|a| !a.last_surviving()))
            .then(|| agreed_owner(&both))
            .flatten()
    });
    eprintln!("both nodes run again {rejoined:?} after the survivor restarted");
    let owner = agreed_owner(&both).unwrap();
    let mut session = NodeSession::login(&url, &spec, owner, SHARED_LUN);
    assert_eq!(
        acknowledged.first_mismatch(0, bs, &session.read(0, 32)),
        None
    );
    assert_eq!(alone.first_mismatch(32, bs, &session.read(32, 16)), None);
}
