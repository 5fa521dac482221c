//! A quorum replica's appliance goes away and comes back: two `reservoir
//! serve` processes, one holding two replicas and the shared volume, the
//! other the third replica on a `file` volume. The second is SIGKILLed;
//! while it is down the membership changes (a node is killed), so its
//! replica falls behind. The cluster must stay quorate on the other two
//! replicas throughout, with the volume where it was; once the appliance
//! is back (same data directory), the replica must hold the majority's
//! record again.

mod support;

use std::time::{Duration, Instant};

use reservoir_cluster::{ClusterRecord, NodeId, LBA_RECORD};
use support::cluster::{agreed_owner, read_block, wait_for, Agent, ClusterSpec, LunSpec};
use support::{Backend, Config, Daemon};

const D: u64 = 1000;
const IQN: &str = "iqn.2026-11.io.reservoir:replicas";
const IQN_B: &str = "iqn.2026-11.io.reservoir:replica-b";

/// The record on the replica at `url`, if it decodes.
fn replica_record(url: &str) -> Option<ClusterRecord> {
    ClusterRecord::decode(&read_block(url, LBA_RECORD))
}

#[test]
fn a_restarted_replica_is_reconciled_while_the_cluster_stays_quorate() {
    let a = Daemon::start(
        &Config::default()
            .volume("q0", Backend::Malloc, 1)
            .volume("q1", Backend::Malloc, 1)
            .volume("shared", Backend::Malloc, 8)
            .target(IQN, &["q0", "q1", "shared"]),
    );
    let mut b = Daemon::start(
        &Config::default()
            .volume(
                "q2",
                Backend::File {
                    file_name: "q2.img".into(),
                },
                1,
            )
            .target(IQN_B, &["q2"]),
    );
    let dir = a.root().to_owned();
    let mut spec = ClusterSpec::loopback("replicas", D, 3, LunSpec::new(IQN, 2));
    spec.quorum = vec![
        LunSpec::new(IQN, 0),
        LunSpec::new(IQN, 1),
        LunSpec::new(IQN_B, 0).on(&format!("127.0.0.1:{}", b.port())),
    ];
    let portal = format!("127.0.0.1:{}", a.port());
    let mut agents: Vec<Agent> = (1..=3)
        .map(|id| Agent::start(&spec, id, &dir, &portal, None))
        .collect();
    let q2 = b.url(IQN_B, 0);

    let all: Vec<&Agent> = agents.iter().collect();
    let ((owner, record), formed) = wait_for("cluster formation", Duration::from_secs(30), || {
        let owner = agreed_owner(&all)?;
        let record = all[0].status()?.core.record;
        (record.members.len() == 3 && replica_record(&q2).as_ref() == Some(&record))
            .then_some((owner, record))
    });
    let quorum_owner = record.owner.expect("a quorum owner").get();
    eprintln!(
        "formed after {formed:?}: node {owner} owns the volume, node {quorum_owner} the quorum, \
         record epoch {} on all three replicas",
        record.epoch
    );

    b.kill_hard();
    // A node that owns neither leaves: a new record, which the dead
    // replica misses.
    let leaver = (1..=3)
        .find(|&n| n != owner && n != quorum_owner)
        .unwrap_or_else(|| (1..=3).find(|&n| n != owner).unwrap());
    agents[usize::from(leaver) - 1].kill_hard();
    let gone = NodeId::new(leaver).unwrap();
    let live: Vec<&Agent> = agents.iter().filter(|a| a.id != leaver).collect();

    // Quorate throughout: every sample finds the quorum owner quorate and
    // the volume where it was, until the new record is committed on the
    // two remaining replicas.
    let check = |what: &str| {
        let quorate = live
            .iter()
            .filter_map(|a| a.status())
            .any(|s| s.core.quorate);
        assert!(quorate, "no node was quorate {what}");
        assert_eq!(agreed_owner(&live), Some(owner), "the volume moved {what}");
    };
    let start = Instant::now();
    let stale = loop {
        check("while the replica's appliance was down");
        let record = live[0].status().unwrap().core.record;
        if !record.members.contains_key(&gone) {
            break record;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "node {leaver} never left the record: {:#?}",
            live.iter().map(|a| a.status()).collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    eprintln!(
        "node {leaver} left the record (epoch {}) {:?} after the replica's appliance died",
        stale.epoch,
        start.elapsed()
    );
    for _ in 0..(2 * D / 100) {
        check("while the replica's appliance was down");
        std::thread::sleep(Duration::from_millis(100));
    }

    // Behind, as its backing file says while its appliance is down (the
    // record block sits at LBA_RECORD in 512-byte blocks).
    let image = std::fs::read(b.root().join("q2.img")).expect("read q2's backing file");
    let offset = LBA_RECORD as usize * 512;
    let behind = ClusterRecord::decode(&image[offset..offset + 512]).expect("a record on q2");
    assert!(
        behind.epoch < stale.epoch && behind.members.contains_key(&gone),
        "q2 should be behind: {behind:?} vs {stale:?}"
    );

    b.restart();
    let restarted = Instant::now();
    let (_, reconciled) = wait_for(
        "the replica to be reconciled",
        Duration::from_secs(20),
        || {
            check("after the replica came back");
            let record = live[0].status()?.core.record;
            (replica_record(&q2).as_ref() == Some(&record)).then_some(())
        },
    );
    eprintln!(
        "replica reconciled {reconciled:?} after its appliance restarted ({:?} since)",
        restarted.elapsed()
    );
    // Every node's status sees the replica available again.
    wait_for(
        "the replica to show as available",
        Duration::from_millis(4 * D),
        || {
            live.iter()
                .all(|a| a.status().is_some_and(|s| !s.replicas[2].unavailable))
                .then_some(())
        },
    );
}
