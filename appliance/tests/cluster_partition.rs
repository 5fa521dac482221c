//! A network partition, for real: three `reservoir node run` processes,
//! each in a network namespace of its own, reach the appliance through
//! their own veth pair and each other through a bridge. Cutting the volume
//! owner's heartbeat link isolates it while its iSCSI sessions stay up:
//! it must lose quorum, the other two must take the volume over and
//! preempt its key, its next write must get RESERVATION CONFLICT, the
//! writes it had acknowledged must all be there, and none of its later
//! writes may land. Healing the link brings it back as a member.
//!
//! Needs root and iproute2 (`ip netns`); CI runs scripts/test.sh as root.

mod support;

use std::net::IpAddr;
use std::time::Duration;

use reservoir_cluster::{failover_bound_ms, KeyRole, NodeId};
use reservoir_initiator::Pattern;
use support::cluster::{
    agreed_owner, registered_nodes, wait_for, Agent, ClusterSpec, LunSpec, Network, NodeSession,
};
use support::{Config, Daemon};

const D: u64 = 1000;
const IQN: &str = "iqn.2026-11.io.reservoir:partition";
const SHARED_LUN: u16 = 3;
const HEARTBEAT_PORT: u16 = 7400;

#[test]
fn an_isolated_owner_is_fenced_and_the_majority_carries_on() {
    let net = Network::create(3);
    let mut config = Config::default()
        .volume("q0", support::Backend::Malloc, 1)
        .volume("q1", support::Backend::Malloc, 1)
        .volume("q2", support::Backend::Malloc, 1)
        .volume("shared", support::Backend::Malloc, 8)
        .target(IQN, &["q0", "q1", "q2", "shared"]);
    for i in 1..=3 {
        config = config.listen_also(IpAddr::V4(net.host_addr(i)));
    }
    let daemon = Daemon::start(&config);
    let dir = daemon.root().to_owned();
    let mut spec = ClusterSpec::loopback("part", D, 3, LunSpec::new(IQN, SHARED_LUN));
    // Each namespace has its own port space: one fixed port for all.
    spec.heartbeats = (1..=3)
        .map(|i| format!("{}:{HEARTBEAT_PORT}", net.heartbeat_addr(i)))
        .collect();
    spec.quorum = (0..3).map(|lun| LunSpec::new(IQN, lun)).collect();
    let agents: Vec<Agent> = (1..=3)
        .map(|i| {
            let portal = format!("{}:{}", net.host_addr(i), daemon.port());
            Agent::start(&spec, i, &dir, &portal, Some(net.namespace(i)))
        })
        .collect();
    let all: Vec<&Agent> = agents.iter().collect();
    let (owner, formed) = wait_for("cluster formation", Duration::from_secs(30), || {
        let owner = agreed_owner(&all)?;
        all.iter()
            .all(|a| a.status().is_some_and(|s| s.core.record.members.len() == 3))
            .then_some(owner)
    });
    let quorum_owner = agents[0]
        .status()
        .unwrap()
        .core
        .record
        .owner
        .map(NodeId::get);
    eprintln!(
        "cluster formed in namespaces after {formed:?}: node {owner} owns the volume, \
         node {quorum_owner:?} the quorum"
    );

    // Acknowledged writes of the owner, through its own I_T nexus.
    let url = daemon.url(IQN, SHARED_LUN.into());
    let acknowledged = Pattern::new(0xa11ce);
    NodeSession::login(&url, &spec, owner, SHARED_LUN)
        .write(acknowledged, 0, 32)
        .expect("the owner writes before the partition");

    net.cut(owner);
    let isolated = &agents[usize::from(owner) - 1];
    let others: Vec<&Agent> = agents.iter().filter(|a| a.id != owner).collect();

    let (new_owner, failover) = wait_for(
        "the majority taking the volume over",
        Duration::from_secs(30),
        || agreed_owner(&others).filter(|&o| o != owner),
    );
    eprintln!(
        "FAILOVER partition: node {new_owner} owns the volume {failover:?} after node {owner} \
         (quorum owner: {}) was cut off (D = {D} ms)",
        quorum_owner == Some(owner)
    );
    // reservoir-cluster's documented bound: the volume's challenge runs
    // alongside the quorum's when the cut-off node owned both.
    let bound = Duration::from_millis(failover_bound_ms(D));
    // Twice the documented bound: a busy CI machine may add a round, a
    // failover that never happens or takes rounds more still fails; the
    // measured time is printed above for the record.
    assert!(
        failover <= bound * 2,
        "failover took {failover:?}, documented bound {bound:?}"
    );

    // The isolated node knows it has no quorum and stops using the volume.
    wait_for(
        "the isolated node to give up",
        Duration::from_millis(3 * D),
        || {
            let s = isolated.status()?;
            (!s.core.quorate && !s.core.volumes_active && !s.core.lease).then_some(())
        },
    );
    // Its key is preempted, as the appliance itself says.
    let cut_off = NodeId::new(owner).unwrap();
    wait_for(
        "the isolated node's key to go",
        Duration::from_millis(4 * D),
        || (!registered_nodes(&url, &spec).contains(&cut_off)).then_some(()),
    );

    // Its next write through its own nexus is refused; keep trying for a
    // few intervals, in case it registers again.
    let fenced_pattern = Pattern::new(0xbad);
    for _ in 0..3 {
        let mut fenced = NodeSession::login(&url, &spec, owner, SHARED_LUN);
        let refused = fenced.write(fenced_pattern, 0, 32);
        assert!(
            refused.as_ref().is_err_and(|e| e.is_reservation_conflict()),
            "the isolated node's write was not fenced: {refused:?}"
        );
        drop(fenced);
        std::thread::sleep(Duration::from_millis(D));
    }

    // The others carry on: the new owner writes, and reads back the old
    // owner's acknowledged blocks untouched by the fenced attempts.
    let mut session = NodeSession::login(&url, &spec, new_owner, SHARED_LUN);
    let bs = session.block_size as usize;
    assert_eq!(
        acknowledged.first_mismatch(0, bs, &session.read(0, 32)),
        None
    );
    let after = Pattern::new(0xc0ffee);
    session
        .write(after, 32, 16)
        .expect("the new owner writes after the partition");
    assert_eq!(after.first_mismatch(32, bs, &session.read(32, 16)), None);
    drop(session);

    // Healed, the isolated node rejoins as a member (with a shared key);
    // the volume stays where it is.
    net.heal(owner);
    let (_, rejoined) = wait_for(
        "the isolated node to rejoin",
        Duration::from_secs(20),
        || {
            let s = isolated.status()?;
            let member = s.core.record.members.contains_key(&cut_off) && s.core.volumes_active;
            let key = s.volumes[0]
                .keys
                .iter()
                .any(|k| k.node == Some(cut_off) && k.role == Some(KeyRole::Shared));
            (member && key && agreed_owner(&all) == Some(new_owner)).then_some(())
        },
    );
    eprintln!("node {owner} rejoined {rejoined:?} after the partition healed");
}
