//! Whole nodes ([`NodeCore`]) on a simulated network: heartbeats and
//! take-over requests travel as messages with random delays (within the
//! bound the lease argument allows), get dropped, and stop at partitions;
//! nodes crash and restart with a new generation and their persisted
//! last-surviving flag. Replica, witness and volume LUNs decide with the
//! appliance's SPC-4 table.
//!
//! Checked after every step:
//! - at most one node is the quorum owner while holding a majority of the
//!   replicas (in a two-node cluster: the witness), and the record never
//!   forks;
//! - at most one node owns a volume while registered, and it holds the
//!   reservation;
//! - no two quorate partitions: a node that uses volumes on the strength of
//!   a lease got it from the current quorum owner, never from a deposed one.

use std::collections::BTreeMap;

use super::{nexus, Rng, SimLun};
use crate::core::{failover_bound_ms, CoreConfig, CoreEffect, CoreInput, Lun, NodeCore};
use crate::disk::{DiskFault, DiskOp};
use crate::keys::{ClusterSignature, Generation, NodeId};
use crate::membership::max_delay_ms;
use crate::ownership::{challenge_wait, lapse_ms};
use crate::quorum::ClusterRecord;
use crate::time::Millis;

const D: u64 = 1000;
const STEP: u64 = 10;
const TICK: u64 = 50;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Msg {
    Input(CoreInput),
    Move { volume: usize, to: NodeId },
}

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    generation: Generation,
    alive: bool,
    group: u8,
    /// The persisted last-surviving flag: survives crashes.
    flag: bool,
    core: NodeCore,
    inflight: BTreeMap<Lun, (Millis, DiskOp)>,
    /// The last quorum owner whose claim reached this node.
    claim_from: Option<NodeId>,
    /// This node's path to the appliance failed: every command it issues is
    /// Unavailable (the others still reach the LUNs).
    path_down: bool,
}

#[derive(Debug)]
struct World {
    now: Millis,
    rng: Rng,
    nodes: Vec<SimNode>,
    replicas: Vec<SimLun>,
    /// Replicas whose appliance is down: every command is Unavailable.
    down: Vec<bool>,
    volumes: Vec<SimLun>,
    /// (deliver at, from, to, message)
    network: Vec<(Millis, usize, usize, Msg)>,
    committed: BTreeMap<u64, ClusterRecord>,
    faults: bool,
    drop_per_mille: u64,
    /// Volume 0's owners: (when it became owner, who).
    owners: Vec<(Millis, NodeId)>,
    log: Vec<String>,
}

fn core(id: NodeId, generation: Generation, nodes: u8, replicas: usize, flag: bool) -> NodeCore {
    NodeCore::new(CoreConfig {
        signature: ClusterSignature::of("cluster"),
        me: id,
        generation,
        peers: (1..=nodes)
            .map(|n| NodeId::new(n).unwrap())
            .filter(|&n| n != id)
            .collect(),
        replicas,
        volumes: 1,
        defense_ms: D,
        last_surviving: flag,
    })
}

impl World {
    /// `nodes` nodes; three replicas, or the witness alone with two nodes.
    fn new(seed: u64, nodes: u8) -> Self {
        let replicas = if nodes == 2 { 1 } else { 3 };
        World {
            now: Millis(0),
            rng: Rng::new(seed),
            nodes: (1..=nodes)
                .map(|n| {
                    let id = NodeId::new(n).unwrap();
                    let generation = Generation::new(1).unwrap();
                    SimNode {
                        id,
                        generation,
                        alive: true,
                        group: 0,
                        flag: false,
                        core: core(id, generation, nodes, replicas, false),
                        inflight: BTreeMap::new(),
                        claim_from: None,
                        path_down: false,
                    }
                })
                .collect(),
            replicas: (0..replicas).map(|_| SimLun::new()).collect(),
            down: vec![false; replicas],
            volumes: vec![SimLun::new()],
            network: Vec::new(),
            committed: BTreeMap::new(),
            faults: false,
            drop_per_mille: 0,
            owners: Vec::new(),
            log: Vec::new(),
        }
    }

    fn n(&self) -> u8 {
        self.nodes.len() as u8
    }

    fn index(&self, id: NodeId) -> usize {
        self.nodes.iter().position(|n| n.id == id).unwrap()
    }

    fn crash(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        node.alive = false;
        node.inflight.clear();
        self.log.push(format!("{:?} crash {}", self.now, node.id));
    }

    fn restart(&mut self, i: usize) {
        let (n, replicas) = (self.n(), self.replicas.len());
        let node = &mut self.nodes[i];
        node.generation = node.generation.next().unwrap();
        node.core = core(node.id, node.generation, n, replicas, node.flag);
        node.alive = true;
        node.claim_from = None;
        self.log.push(format!(
            "{:?} restart {} (flag {})",
            self.now, node.id, node.flag
        ));
    }

    /// Puts node `i` alone in group 1, or heals the network.
    fn isolate(&mut self, i: Option<usize>) {
        for (j, node) in self.nodes.iter_mut().enumerate() {
            node.group = u8::from(Some(j) == i);
        }
        self.log.push(format!("{:?} isolate {i:?}", self.now));
    }

    fn inject(&mut self) {
        let i = self.rng.range(0, u64::from(self.n()) - 1) as usize;
        match self.rng.range(0, 1999) {
            0..=1 if self.nodes[i].alive => self.crash(i),
            2..=5 if !self.nodes[i].alive => self.restart(i),
            6..=7 => {
                let heal = self.rng.chance(500);
                self.isolate((!heal).then_some(i));
            }
            8 => {
                let r = self.rng.range(0, self.replicas.len() as u64 - 1) as usize;
                self.replicas[r].lose_reservations();
                self.log.push(format!("{:?} replica {r} reset", self.now));
            }
            _ => {}
        }
    }

    fn send(&mut self, from: usize, to: usize, msg: Msg) {
        if self.rng.chance(self.drop_per_mille) {
            return;
        }
        // Within the delay the lease argument allows; the edge discards
        // later heartbeats.
        let at = self.now + self.rng.range(1, max_delay_ms(D) / 2);
        self.network.push((at, from, to, msg));
    }

    fn apply(&mut self, i: usize, input: CoreInput) {
        let now = self.now;
        if let CoreInput::Heartbeat(hb) = &input {
            if hb.quorum_owner {
                self.nodes[i].claim_from = Some(hb.node);
            }
        }
        let fx = self.nodes[i].core.apply(now, input);
        let id = self.nodes[i].id;
        for effect in fx {
            match effect {
                CoreEffect::Issue { lun, op } => {
                    let at = now + self.rng.range(1, 20);
                    let old = self.nodes[i].inflight.insert(lun, (at, op));
                    assert!(old.is_none(), "two commands in flight on {lun:?}");
                }
                CoreEffect::Heartbeat(hb) => {
                    for j in 0..self.nodes.len() {
                        if j != i {
                            self.send(i, j, Msg::Input(CoreInput::Heartbeat(hb.clone())));
                        }
                    }
                }
                CoreEffect::AskToTakeOver { volume, node } => {
                    let j = self.index(node);
                    self.send(i, j, Msg::Input(CoreInput::TakeOver { volume }));
                }
                CoreEffect::ForwardMove { volume, to } => {
                    for j in 0..self.nodes.len() {
                        if j != i {
                            self.send(i, j, Msg::Move { volume, to });
                        }
                    }
                }
                CoreEffect::PersistLastSurviving(flag) => {
                    self.nodes[i].flag = flag;
                    self.log.push(format!("{now:?} {id} last-surviving {flag}"));
                }
                CoreEffect::Quorate(q) => self.log.push(format!("{now:?} {id} quorate {q}")),
                CoreEffect::Record(record) => {
                    self.log.push(format!("{now:?} {id} record {record:?}"));
                    let seen = self.committed.entry(record.epoch).or_insert(record.clone());
                    assert_eq!(seen, &record, "record forked\n{}", self.log.join("\n"));
                }
                CoreEffect::VolumeOwner { volume, owner } => {
                    self.log
                        .push(format!("{now:?} {id} volume {volume} owner {owner}"));
                    if owner {
                        self.owners.push((now, id));
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        self.now = self.now + STEP;
        let now = self.now;
        if self.faults {
            self.inject();
        }
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.network)
            .into_iter()
            .partition(|(at, ..)| *at <= now);
        self.network = later;
        for (_, from, to, msg) in due {
            let (a, b) = (&self.nodes[from], &self.nodes[to]);
            if !b.alive || a.group != b.group {
                continue;
            }
            match msg {
                Msg::Input(input) => self.apply(to, input),
                Msg::Move { volume, to: target } => {
                    if self.nodes[to].core.owns(volume) {
                        self.apply(to, CoreInput::Move { volume, to: target });
                    }
                }
            }
        }
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            let done: Vec<Lun> = self.nodes[i]
                .inflight
                .iter()
                .filter(|(_, (at, _))| *at <= now)
                .map(|(lun, _)| *lun)
                .collect();
            for lun in done {
                let (_, op) = self.nodes[i].inflight.remove(&lun).unwrap();
                let id = self.nodes[i].id;
                let result = match lun {
                    _ if self.nodes[i].path_down => Err(DiskFault::Unavailable),
                    Lun::Replica(r) if self.down[r] => Err(DiskFault::Unavailable),
                    Lun::Replica(r) => self.replicas[r].execute(id, &op),
                    Lun::Volume(v) => self.volumes[v].execute(id, &op),
                };
                self.apply(i, CoreInput::Reply { lun, result });
            }
            if (now.0 + 20 * u64::from(self.nodes[i].id.get())).is_multiple_of(TICK) {
                self.apply(i, CoreInput::Tick);
            }
        }
        self.check();
    }

    fn holds_majority(&self, id: NodeId) -> bool {
        self.replicas
            .iter()
            .filter(|l| l.holder() == Some(nexus(id)))
            .count()
            > self.replicas.len() / 2
    }

    fn quorum_owner(&self) -> Option<NodeId> {
        let owners: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.alive && n.core.is_quorate() && self.holds_majority(n.id))
            .map(|n| n.id)
            .collect();
        assert!(
            owners.len() <= 1,
            "two quorum owners {owners:?}\n{}",
            self.log.join("\n")
        );
        owners.first().copied()
    }

    fn check(&self) {
        let quorum_owner = self.quorum_owner();
        for (v, lun) in self.volumes.iter().enumerate() {
            let owners: Vec<NodeId> = self
                .nodes
                .iter()
                .filter(|n| n.alive && n.core.owns(v) && lun.is_registered(n.id))
                .map(|n| n.id)
                .collect();
            assert!(
                owners.len() <= 1,
                "two owners of volume {v}: {owners:?}\n{}",
                self.log.join("\n")
            );
            if let Some(&owner) = owners.first() {
                assert_eq!(lun.holder(), Some(nexus(owner)), "{}", self.log.join("\n"));
            }
        }
        if let Some(q) = quorum_owner {
            for n in self.nodes.iter().filter(|n| n.alive) {
                if n.core.volume_active() && !n.core.is_quorate() {
                    assert_eq!(
                        n.claim_from,
                        Some(q),
                        "{} uses volumes on a deposed owner's lease while {q} holds the quorum\n{}",
                        n.id,
                        self.log.join("\n")
                    );
                }
            }
        }
    }

    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.step();
        }
    }

    fn volume_owner(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|n| n.alive && n.core.owns(0) && self.volumes[0].is_registered(n.id))
            .map(|n| n.id)
    }

    fn dump(&self) -> String {
        let nodes: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("{} alive {} {:?}", n.id, n.alive, n.core.status()))
            .collect();
        format!("{}\n{}", self.log.join("\n"), nodes.join("\n"))
    }
}

/// From a healthy network to a quorum owner and a volume owner: the
/// arbitration and challenge on the replicas, then on the volume, with a
/// few intervals of command rounds.
const SETTLE: u64 = 3 * challenge_wait(D) + 10 * D;

/// The documented bound, plus the simulation's tick.
const VOLUME_FAILOVER: u64 = failover_bound_ms(D) + TICK;

fn id(n: u8) -> NodeId {
    NodeId::new(n).unwrap()
}

#[test]
fn three_nodes_form_a_cluster_and_one_owns_the_volume() {
    let mut world = World::new(1, 3);
    world.run(SETTLE);
    world
        .quorum_owner()
        .unwrap_or_else(|| panic!("{}", world.dump()));
    let live: BTreeMap<NodeId, Generation> =
        world.nodes.iter().map(|n| (n.id, n.generation)).collect();
    for n in &world.nodes {
        assert_eq!(n.core.record().members, live, "{}", world.dump());
        assert!(n.core.volume_active());
    }
    assert!(world.volume_owner().is_some(), "{}", world.dump());
}

#[test]
fn a_crashed_volume_owner_is_replaced_within_the_bound() {
    let mut world = World::new(2, 3);
    world.run(SETTLE);
    // The case this bound was first written for; the next test covers the
    // quorum owner's crash.
    let owner = volume_owner_apart_from_quorum_owner(&mut world);
    let crashed_at = world.now;
    let i = world.index(owner);
    world.crash(i);
    world.run(VOLUME_FAILOVER);
    let next = world
        .volume_owner()
        .unwrap_or_else(|| panic!("{}", world.dump()));
    let (at, who) = *world.owners.last().unwrap();
    assert_eq!(who, next);
    assert!(at - crashed_at <= VOLUME_FAILOVER, "{}", world.dump());
    // The dead node's registration is gone once it leaves the record.
    world.run(3 * D);
    assert!(!world.volumes[0].is_registered(owner), "{}", world.dump());
}

/// The quorum owner also owns the volume and crashes. The volume's
/// challenge runs alongside the quorum's, and only the leader contends for
/// the replicas at first (two survivors splitting them would need a second
/// round), so every failover stays within [`VOLUME_FAILOVER`].
#[test]
fn losing_the_quorum_owner_and_volume_owner_at_once_recovers_within_the_bound() {
    let mut times: Vec<u64> = (3..30)
        .map(|seed| {
            let mut world = World::new(seed, 3);
            world.run(SETTLE);
            let q = world.quorum_owner().unwrap();
            let i = world.index(q);
            if world.volume_owner() != Some(q) {
                let owner = world.volume_owner().unwrap();
                let j = world.index(owner);
                world.apply(j, CoreInput::Move { volume: 0, to: q });
                world.run(2 * D);
                assert_eq!(world.volume_owner(), Some(q), "{}", world.dump());
            }
            let crashed_at = world.now;
            world.crash(i);
            world.run(VOLUME_FAILOVER);
            let next = world
                .volume_owner()
                .unwrap_or_else(|| panic!("seed {seed}\n{}", world.dump()));
            assert_ne!(next, q);
            assert!(world.quorum_owner().is_some());
            let (at, _) = *world.owners.last().unwrap();
            at - crashed_at
        })
        .collect();
    times.sort_unstable();
    println!("volume and quorum owner failover, ms: {times:?}");
    assert!(times.iter().all(|&t| t <= VOLUME_FAILOVER), "{times:?}");
}

/// Makes a node other than the quorum owner own volume 0.
fn volume_owner_apart_from_quorum_owner(world: &mut World) -> NodeId {
    let q = world.quorum_owner().unwrap();
    let owner = world.volume_owner().unwrap();
    if owner != q {
        return owner;
    }
    let other = world.nodes.iter().find(|n| n.id != q).unwrap().id;
    let i = world.index(owner);
    world.apply(
        i,
        CoreInput::Move {
            volume: 0,
            to: other,
        },
    );
    world.run(2 * D);
    world
        .volume_owner()
        .filter(|&o| o != q)
        .unwrap_or_else(|| panic!("{}", world.dump()))
}

#[test]
fn an_owner_that_loses_its_path_hands_the_volume_over_and_rejoins() {
    let mut world = World::new(8, 3);
    world.run(SETTLE);
    let owner = volume_owner_apart_from_quorum_owner(&mut world);
    let i = world.index(owner);
    let lost_at = world.now;
    world.nodes[i].path_down = true;
    world.run(lapse_ms(D) + VOLUME_FAILOVER);
    assert!(!world.nodes[i].core.owns(0), "{}", world.dump());
    let next = world
        .volume_owner()
        .unwrap_or_else(|| panic!("{}", world.dump()));
    assert_ne!(next, owner);
    let (at, _) = *world.owners.last().unwrap();
    println!("path lost: new owner after {} ms", at - lost_at);
    // Its writes are fenced by the target, and once the path is back it is
    // an ordinary member again.
    assert!(!world.volumes[0].data_write(owner));
    world.nodes[i].path_down = false;
    world.run(SETTLE);
    assert!(world.nodes[i].core.volume_active(), "{}", world.dump());
    assert!(world.volumes[0].is_registered(owner), "{}", world.dump());
    assert_eq!(world.volume_owner(), Some(next), "{}", world.dump());
}

#[test]
fn a_quorum_owner_that_loses_its_path_is_replaced() {
    let mut world = World::new(9, 3);
    world.run(SETTLE);
    let q = world.quorum_owner().unwrap();
    let i = world.index(q);
    world.nodes[i].path_down = true;
    world.run(lapse_ms(D) + 2 * VOLUME_FAILOVER);
    let next = world
        .quorum_owner()
        .unwrap_or_else(|| panic!("{}", world.dump()));
    assert_ne!(next, q);
    let owner = world
        .volume_owner()
        .unwrap_or_else(|| panic!("{}", world.dump()));
    assert_ne!(owner, q);
    assert!(!world.nodes[i].core.is_quorate(), "{}", world.dump());
    world.nodes[i].path_down = false;
    world.run(SETTLE);
    assert!(world.nodes[i].core.volume_active(), "{}", world.dump());
}

#[test]
fn an_isolated_node_stops_using_volumes_and_loses_its_registration() {
    let mut world = World::new(4, 3);
    world.run(SETTLE);
    let owner = world.volume_owner().unwrap();
    let i = world.index(owner);
    world.isolate(Some(i));
    world.run(SETTLE);
    assert!(!world.nodes[i].core.volume_active(), "{}", world.dump());
    let next = world
        .volume_owner()
        .unwrap_or_else(|| panic!("{}", world.dump()));
    assert_ne!(next, owner);
    assert!(!world.volumes[0].is_registered(owner), "{}", world.dump());
    assert!(!world.volumes[0].data_write(owner), "fenced write landed");
    // Healing brings it back as a member.
    world.isolate(None);
    world.run(SETTLE);
    assert!(world.nodes[i].core.volume_active(), "{}", world.dump());
}

#[test]
fn planned_move_goes_to_the_named_node() {
    let mut world = World::new(5, 3);
    world.run(SETTLE);
    let owner = world.volume_owner().unwrap();
    let target = world.nodes.iter().find(|n| n.id != owner).unwrap().id;
    // Asked of a node that is not the owner: forwarded.
    let k = world
        .nodes
        .iter()
        .position(|n| n.id != owner && n.id != target)
        .unwrap();
    world.apply(
        k,
        CoreInput::Move {
            volume: 0,
            to: target,
        },
    );
    world.run(2 * D);
    assert_eq!(world.volume_owner(), Some(target), "{}", world.dump());
}

#[test]
fn random_faults_never_break_the_invariants_and_the_cluster_returns() {
    for seed in 0..40 {
        for nodes in [2, 3] {
            let mut world = World::new(100 + seed, nodes);
            world.faults = true;
            world.drop_per_mille = 50;
            world.run(60_000);
            world.faults = false;
            world.drop_per_mille = 0;
            world.isolate(None);
            for i in 0..world.nodes.len() {
                if !world.nodes[i].alive {
                    world.restart(i);
                }
            }
            world.run(2 * SETTLE);
            assert!(world.quorum_owner().is_some(), "{}", world.dump());
            assert!(world.volume_owner().is_some(), "{}", world.dump());
        }
    }
}

// Two nodes and a witness.

#[test]
fn the_survivor_keeps_running_on_the_witness() {
    let mut world = World::new(10, 2);
    world.run(SETTLE);
    assert!(world.quorum_owner().is_some(), "{}", world.dump());
    for victim in [0, 1] {
        let mut world = World::new(10, 2);
        world.run(SETTLE);
        world.crash(victim);
        world.run(SETTLE);
        let survivor = 1 - victim;
        let sid = world.nodes[survivor].id;
        assert_eq!(world.quorum_owner(), Some(sid), "{}", world.dump());
        assert_eq!(world.volume_owner(), Some(sid), "{}", world.dump());
        assert!(world.nodes[survivor].flag, "last-surviving flag not set");
        assert_eq!(
            world.nodes[survivor]
                .core
                .record()
                .members
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            vec![sid]
        );
    }
}

#[test]
fn a_stale_node_started_alone_stays_down_until_its_peer_returns() {
    let mut world = World::new(11, 2);
    world.run(SETTLE);
    // B stops; A carries on alone and sets its flag; then A stops too.
    world.crash(1);
    world.run(SETTLE);
    assert!(world.nodes[0].flag && !world.nodes[1].flag);
    world.crash(0);
    world.run(D);
    // B starts alone with its flag false: it must not revive the cluster.
    world.restart(1);
    world.run(3 * SETTLE);
    let b = &world.nodes[1];
    assert!(!b.core.is_quorate(), "{}", world.dump());
    assert!(!b.core.volume_active());
    assert!(!b.core.status().gate_open);
    assert_eq!(world.volume_owner(), None);
    // A returns: both run again and both flags end cleared.
    world.restart(0);
    world.run(2 * SETTLE);
    assert!(world.quorum_owner().is_some(), "{}", world.dump());
    assert!(world.nodes.iter().all(|n| n.core.volume_active()));
    assert!(world.nodes.iter().all(|n| !n.flag), "{}", world.dump());
}

#[test]
fn the_survivor_restarts_alone_on_its_flag() {
    let mut world = World::new(12, 2);
    world.run(SETTLE);
    world.crash(1);
    world.run(SETTLE);
    world.crash(0);
    world.restart(0);
    world.run(SETTLE);
    assert_eq!(world.quorum_owner(), Some(id(1)), "{}", world.dump());
    assert_eq!(world.volume_owner(), Some(id(1)));
}

#[test]
fn a_cut_between_two_nodes_leaves_one_quorate_partition() {
    for seed in 20..26 {
        let mut world = World::new(seed, 2);
        world.run(SETTLE);
        let q = world.quorum_owner().unwrap();
        let other = world.index(if q == id(1) { id(2) } else { id(1) });
        world.isolate(Some(other));
        // The invariants are checked every step while the cut lasts.
        world.run(2 * SETTLE);
        assert_eq!(world.quorum_owner(), Some(q), "{}", world.dump());
        assert!(!world.nodes[other].core.volume_active(), "{}", world.dump());
        assert_eq!(world.volume_owner(), Some(q), "{}", world.dump());
    }
}

/// A replica's appliance goes down (every command Unavailable) and the
/// membership changes meanwhile: the quorum owner commits on the other
/// two and stays quorate; back up, the replica gets the new record.
#[test]
fn a_replica_down_misses_a_change_and_is_brought_up_to_date() {
    let mut world = World::new(30, 3);
    world.run(SETTLE);
    let q = world.quorum_owner().unwrap();
    world.down[2] = true;
    let leaver = world.nodes.iter().find(|n| n.id != q).unwrap().id;
    let i = world.index(leaver);
    world.crash(i);
    world.run(SETTLE);
    assert_eq!(world.quorum_owner(), Some(q), "{}", world.dump());
    let record = world.nodes[world.index(q)].core.record().clone();
    assert!(!record.members.contains_key(&leaver), "{}", world.dump());
    world.down[2] = false;
    world.run(SETTLE);
    let on_replica = world.replicas[2].block(crate::quorum::LBA_RECORD);
    assert_eq!(
        on_replica.and_then(|b| ClusterRecord::decode(&b)),
        Some(record),
        "{}",
        world.dump()
    );
}
