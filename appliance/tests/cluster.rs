//! The cluster node agent as operators run it: one `reservoir serve` and
//! three `reservoir node run` processes on loopback sharing a volume and
//! three quorum replica LUNs. The owner of the shared volume is killed with
//! SIGKILL; another node must own it within the documented bound, the dead
//! node's registration must be gone, and its I_T nexus must be fenced.

mod support;

use std::time::Duration;

use reservoir_cluster::{failover_bound_ms, NodeId};
use reservoir_initiator::Pattern;
use support::cluster::{agreed_owner, wait_for, Agent, ClusterSpec, LunSpec, NodeSession};
use support::{Config, Daemon};

/// Defense interval: short, so the test takes seconds, not minutes.
const D: u64 = 1000;
const IQN: &str = "iqn.2026-11.io.reservoir:cluster";
const SHARED_LUN: u16 = 3;

#[test]
fn killing_the_owner_hands_the_volume_to_another_node() {
    let config = Config::default()
        .volume("q0", support::Backend::Malloc, 1)
        .volume("q1", support::Backend::Malloc, 1)
        .volume("q2", support::Backend::Malloc, 1)
        .volume("shared", support::Backend::Malloc, 8)
        .target(IQN, &["q0", "q1", "q2", "shared"]);
    let daemon = Daemon::start(&config);
    let dir = daemon.root().to_owned();
    let mut spec = ClusterSpec::loopback("test", D, 3, LunSpec::new(IQN, SHARED_LUN));
    spec.quorum = (0..3).map(|lun| LunSpec::new(IQN, lun)).collect();
    let portal = format!("127.0.0.1:{}", daemon.port());
    let mut agents: Vec<Agent> = (1..=3)
        .map(|id| Agent::start(&spec, id, &dir, &portal, None))
        .collect();

    let all: Vec<&Agent> = agents.iter().collect();
    let (owner, formed) = wait_for("cluster formation", Duration::from_secs(30), || {
        agreed_owner(&all)
    });
    eprintln!("cluster formed, node {owner} owns the volume after {formed:?}");

    // The owner's acknowledged writes, through its own I_T nexus.
    let url = daemon.url(IQN, SHARED_LUN.into());
    let acknowledged = Pattern::new(0x0c1u64 << 8 | u64::from(owner));
    NodeSession::login(&url, &spec, owner, SHARED_LUN)
        .write(acknowledged, 0, 16)
        .expect("the owner writes");

    // SIGKILL: nothing is released; the survivors must take over.
    agents
        .iter_mut()
        .find(|a| a.id == owner)
        .unwrap()
        .kill_hard();
    let survivors: Vec<&Agent> = agents.iter().filter(|a| a.id != owner).collect();
    // Detection, the challenge wait and one defense round; the volume's
    // challenge runs alongside the quorum's when the victim owned both
    // (reservoir-cluster's documented bound).
    let bound = Duration::from_millis(failover_bound_ms(D));
    let (new_owner, failover) = wait_for("failover", bound * 3, || {
        agreed_owner(&survivors).filter(|&o| o != owner)
    });
    eprintln!("FAILOVER kill -9: node {new_owner} owns the volume {failover:?} after node {owner} was killed (D = {D} ms)");
    // Twice the documented bound: a busy CI machine may add a round, a
    // failover that never happens or takes rounds more still fails; the
    // measured time is printed above for the record.
    assert!(
        failover <= bound * 2,
        "failover took {failover:?}, documented bound {bound:?}"
    );

    // The dead node's key is gone (give the new owner one defense round).
    let dead = NodeId::new(owner).unwrap();
    wait_for(
        "removal of the dead node's key",
        Duration::from_millis(4 * D),
        || {
            let s = survivors[0].status()?;
            let volume = s.volumes.iter().find(|v| v.name == "shared")?;
            volume
                .keys
                .iter()
                .all(|k| k.node != Some(dead))
                .then_some(())
        },
    );

    // Its I_T nexus is fenced: a write through it gets RESERVATION CONFLICT
    // and lands nowhere.
    let mut fenced = NodeSession::login(&url, &spec, owner, SHARED_LUN);
    let refused = fenced.write(Pattern::new(0xdead), 0, 16);
    assert!(
        refused.as_ref().is_err_and(|e| e.is_reservation_conflict()),
        "the dead node's write was not fenced: {refused:?}"
    );
    drop(fenced);

    // The new owner reads every acknowledged block back.
    let mut session = NodeSession::login(&url, &spec, new_owner, SHARED_LUN);
    let bs = session.block_size as usize;
    let data = session.read(0, 16);
    assert_eq!(acknowledged.first_mismatch(0, bs, &data), None);
}
