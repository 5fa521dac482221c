//! One shared volume, several nodes, a membership oracle, random faults:
//! the ownership machine alone against the SPC-4 table.
//!
//! Checked after every 10 ms step:
//! - at most one live node believes it owns the volume while registered,
//!   and that node holds the reservation;
//! - an owner loses to a preemption only if it had a fault (pause, lost
//!   disk path, the LUN dropped its table) in the last four intervals;
//! - once faults stop, some node owns the volume within the bound.

use std::collections::BTreeMap;

use proptest::prelude::*;

use super::{Rng, SimLun};
use crate::disk::{DiskFault, DiskOp};
use crate::keys::{ClusterSignature, Generation, NodeId};
use crate::ownership::{
    challenge_wait, Effect, Input, LossReason, Ownership, Policy, Standing, View,
};
use crate::time::Millis;

const D: u64 = 3000;
const STEP: u64 = 10;
const TICK: u64 = 100;
/// The oracle's failure detection delay.
const DETECT: u64 = 1500;

#[derive(Debug)]
struct SimNode {
    id: NodeId,
    generation: Generation,
    alive: bool,
    died_at: Millis,
    paused_until: Millis,
    path_down_until: Millis,
    last_fault: Option<Millis>,
    sm: Ownership,
    inflight: Option<(Millis, DiskOp)>,
    view_sent: Option<View>,
}

#[derive(Debug)]
struct World {
    now: Millis,
    rng: Rng,
    nodes: Vec<SimNode>,
    lun: SimLun,
    faults: bool,
    /// Failover measurements: (crash of the owner, next owner) in ms.
    failovers: Vec<u64>,
    owner_crashed_at: Option<Millis>,
    log: Vec<String>,
}

fn signature() -> ClusterSignature {
    ClusterSignature::of("sim")
}

impl World {
    fn new(seed: u64, nodes: u8) -> Self {
        let nodes = (1..=nodes)
            .map(|i| {
                let id = NodeId::new(i).unwrap();
                let generation = Generation::new(1).unwrap();
                SimNode {
                    id,
                    generation,
                    alive: true,
                    died_at: Millis(0),
                    paused_until: Millis(0),
                    path_down_until: Millis(0),
                    last_fault: None,
                    sm: Ownership::new(signature(), id, generation, Policy::Volume, D),
                    inflight: None,
                    view_sent: None,
                }
            })
            .collect();
        World {
            now: Millis(0),
            rng: Rng::new(seed),
            nodes,
            lun: SimLun::new(),
            faults: true,
            failovers: Vec::new(),
            owner_crashed_at: None,
            log: Vec::new(),
        }
    }

    fn view(&self) -> View {
        let members: BTreeMap<NodeId, Generation> = self
            .nodes
            .iter()
            .filter(|n| n.alive || self.now - n.died_at < DETECT)
            .map(|n| (n.id, n.generation))
            .collect();
        View {
            standing: Standing::Active,
            members,
            ..View::default()
        }
    }

    fn owner(&self) -> Option<NodeId> {
        self.nodes
            .iter()
            .find(|n| n.alive && n.sm.is_owner() && self.lun.is_registered(n.id))
            .map(|n| n.id)
    }

    fn fault(&mut self, i: usize) {
        self.nodes[i].last_fault = Some(self.now);
    }

    fn inject_faults(&mut self) {
        let now = self.now;
        let n = self.nodes.len();
        let i = self.rng.range(0, n as u64 - 1) as usize;
        let alive = self.nodes.iter().filter(|n| n.alive).count();
        match self.rng.range(0, 999) {
            // Crash (kill -9): in-flight command may or may not land.
            0..=2 if self.nodes[i].alive && alive > 1 => {
                if self.nodes[i].sm.is_owner() && self.owner_crashed_at.is_none() {
                    self.owner_crashed_at = Some(now);
                }
                let node = &mut self.nodes[i];
                node.alive = false;
                node.died_at = now;
                if let Some((_, op)) = node.inflight.take() {
                    if self.rng.chance(500) {
                        let _ = self.lun.execute(node.id, &op);
                    }
                }
                self.log.push(format!("{now:?} crash {}", node.id));
            }
            // Restart with the next generation.
            3..=6 if !self.nodes[i].alive && now - self.nodes[i].died_at > DETECT => {
                let node = &mut self.nodes[i];
                node.generation = node.generation.next().unwrap();
                node.sm = Ownership::new(signature(), node.id, node.generation, Policy::Volume, D);
                node.alive = true;
                node.view_sent = None;
                self.log.push(format!("{now:?} restart {}", node.id));
            }
            // Process pause: stops defending for a while.
            7 if self.nodes[i].alive => {
                let pause = self.rng.range(D / 2, 4 * D);
                self.nodes[i].paused_until = now + pause;
                self.fault(i);
                self.log
                    .push(format!("{now:?} pause {} for {pause}", self.nodes[i].id));
            }
            // The node's path to the LUN goes down.
            8 if self.nodes[i].alive => {
                let down = self.rng.range(D / 2, 3 * D);
                self.nodes[i].path_down_until = now + down;
                self.fault(i);
                self.log
                    .push(format!("{now:?} path down {} for {down}", self.nodes[i].id));
            }
            // The LUN restarts and forgets its reservations.
            9 if self.rng.chance(200) => {
                self.lun.lose_reservations();
                for i in 0..n {
                    self.fault(i);
                }
                self.log.push(format!("{now:?} LUN lost reservations"));
            }
            // Planned move.
            10..=11 => {
                if let Some(owner) = self.nodes.iter().position(|n| n.alive && n.sm.is_owner()) {
                    let target = NodeId::new(self.rng.range(1, n as u64) as u8).unwrap();
                    self.deliver(owner, Input::MoveTo(target));
                }
            }
            _ => {}
        }
    }

    fn deliver(&mut self, i: usize, input: Input) {
        let now = self.now;
        let fx = self.nodes[i].sm.apply(now, input);
        for effect in fx {
            match effect {
                Effect::Issue(op) => {
                    let latency = self.rng.range(1, 40);
                    assert!(self.nodes[i].inflight.is_none(), "two commands in flight");
                    self.nodes[i].inflight = Some((now + latency, op));
                }
                Effect::BecameOwner => {
                    self.log.push(format!("{now:?} {} owns", self.nodes[i].id));
                    if let Some(crashed) = self.owner_crashed_at.take() {
                        self.failovers.push(now - crashed);
                    }
                }
                Effect::LostOwnership(reason) => {
                    self.log
                        .push(format!("{now:?} {} lost ({reason:?})", self.nodes[i].id));
                    if reason == LossReason::Preempted {
                        let fault = self.nodes[i].last_fault;
                        assert!(
                            fault.is_some_and(|f| now - f <= 4 * D + DETECT),
                            "healthy owner {} displaced at {now:?}\n{}",
                            self.nodes[i].id,
                            self.log.join("\n")
                        );
                    }
                }
                Effect::AskToTakeOver(target) => {
                    if let Some(j) = self.nodes.iter().position(|n| n.id == target && n.alive) {
                        self.deliver(j, Input::TakeOver);
                    }
                }
            }
        }
    }

    fn step(&mut self) {
        self.now = self.now + STEP;
        let now = self.now;
        if self.faults {
            self.inject_faults();
        }
        for i in 0..self.nodes.len() {
            let node = &self.nodes[i];
            if !node.alive || now < node.paused_until {
                continue;
            }
            if let Some((at, _)) = &node.inflight {
                if *at <= now {
                    let (_, op) = self.nodes[i].inflight.take().unwrap();
                    let id = self.nodes[i].id;
                    let result = if now < self.nodes[i].path_down_until {
                        // Lost on the way out or on the way back.
                        if self.rng.chance(500) {
                            let _ = self.lun.execute(id, &op);
                        }
                        Err(DiskFault::Unavailable)
                    } else {
                        self.lun.execute(id, &op)
                    };
                    self.deliver(i, Input::Reply(result));
                }
            }
            let view = self.view();
            if self.nodes[i].view_sent.as_ref() != Some(&view) {
                self.nodes[i].view_sent = Some(view.clone());
                self.deliver(i, Input::View(view));
            }
            if (now.0 + 30 * u64::from(self.nodes[i].id.get())).is_multiple_of(TICK) {
                self.deliver(i, Input::Tick);
            }
            // The owner writes data; what lands must come from the holder.
            // (A LUN that lost its table lets anyone write until the owner
            // reserves again; nobody else can own it before then.)
            if self.nodes[i].sm.is_owner() && self.lun.data_write(self.nodes[i].id) {
                if let Some(holder) = self.lun.holder() {
                    assert_eq!(holder, super::nexus(self.nodes[i].id));
                }
            }
        }
        self.check();
    }

    fn check(&self) {
        let owners: Vec<NodeId> = self
            .nodes
            .iter()
            .filter(|n| n.alive && n.sm.is_owner() && self.lun.is_registered(n.id))
            .map(|n| n.id)
            .collect();
        assert!(
            owners.len() <= 1,
            "two owners {owners:?}\n{}",
            self.log.join("\n")
        );
        if let Some(&owner) = owners.first() {
            assert_eq!(
                self.lun.holder(),
                Some(super::nexus(owner)),
                "owner {owner} registered but not holding\n{}",
                self.log.join("\n")
            );
        }
    }

    fn run(&mut self, ms: u64) {
        let end = self.now + ms;
        while self.now < end {
            self.step();
        }
    }
}

/// Longest time from an owner's crash to the next owner: failure detection,
/// one member poll, the challenge wait and one interval of command rounds.
const FAILOVER_BOUND: u64 = DETECT + TICK + challenge_wait(D) + D;

fn run_seed(seed: u64) -> World {
    let mut world = World::new(seed, 3);
    world.run(120_000);
    // Quiet tail: faults stop, everyone recovers, someone must own it.
    world.faults = false;
    for node in &mut world.nodes {
        node.paused_until = Millis(0);
        node.path_down_until = Millis(0);
    }
    world.run(FAILOVER_BOUND + 2 * D);
    assert!(
        world.owner().is_some(),
        "no owner after the quiet tail\n{}",
        world.log.join("\n")
    );
    world
}

#[test]
fn an_owner_emerges_and_stays() {
    let mut world = World::new(1, 3);
    world.faults = false;
    world.run(FAILOVER_BOUND + D);
    let first = world.owner().unwrap_or_else(|| {
        panic!(
            "no owner: {:#?} {:?}",
            world
                .nodes
                .iter()
                .map(|n| (n.sm.role(), &n.inflight))
                .collect::<Vec<_>>(),
            world.lun.table
        )
    });
    world.run(60_000);
    assert_eq!(world.owner(), Some(first));
    assert!(
        world.log.iter().all(|l| !l.contains("lost")),
        "{:?}",
        world.log
    );
    // Every member holds a shared key; nothing else is registered.
    assert_eq!(world.lun.keys().len(), 3);
}

#[test]
fn crash_of_the_owner_fails_over_within_the_bound() {
    let mut world = World::new(2, 3);
    world.faults = false;
    world.run(FAILOVER_BOUND + D);
    let owner = world.owner().unwrap();
    let i = world.nodes.iter().position(|n| n.id == owner).unwrap();
    world.nodes[i].alive = false;
    world.nodes[i].died_at = world.now;
    world.nodes[i].inflight = None;
    world.owner_crashed_at = Some(world.now);
    world.run(FAILOVER_BOUND);
    let next = world.owner().expect("failover within the bound");
    assert_ne!(next, owner);
    assert!(
        world.failovers[0] <= FAILOVER_BOUND,
        "{:?}",
        world.failovers
    );
    // The dead node's registration is gone once the new owner defended.
    world.run(D + TICK);
    assert!(!world.lun.is_registered(owner));
}

#[test]
fn planned_move_hands_over_without_waiting() {
    let mut world = World::new(3, 3);
    world.faults = false;
    world.run(FAILOVER_BOUND + D);
    let owner = world.owner().unwrap();
    let i = world.nodes.iter().position(|n| n.id == owner).unwrap();
    let target = world.nodes[(i + 1) % 3].id;
    let start = world.now;
    world.deliver(i, Input::MoveTo(target));
    world.run(2 * D);
    assert_eq!(world.owner(), Some(target), "{}", world.log.join("\n"));
    assert!(world.log.iter().any(|l| l.contains("lost (Moved)")));
    assert!(world.now - start <= 2 * D);
}

#[test]
fn a_paused_owner_is_fenced_and_rejoins_as_a_member() {
    let mut world = World::new(4, 2);
    world.faults = false;
    world.run(FAILOVER_BOUND + D);
    let owner = world.owner().unwrap();
    let i = world.nodes.iter().position(|n| n.id == owner).unwrap();
    // The oracle still lists it (heartbeats from another thread), but it
    // stopped defending: the challenge survives and the other node takes over.
    world.nodes[i].paused_until = world.now + 3 * D;
    world.nodes[i].last_fault = Some(world.now);
    world.deliver(1 - i, Input::TakeOver);
    world.run(3 * D + D);
    assert_eq!(
        world.owner(),
        Some(world.nodes[1 - i].id),
        "{}",
        world.log.join("\n")
    );
    world.run(2 * D);
    assert!(
        world.lun.is_registered(owner),
        "the old owner re-registered a shared key"
    );
    assert!(!world.nodes[i].sm.is_owner());
}

/// Crashes the owner of a settled cluster at a random moment, one seed per
/// run, and returns the time until another node owns the volume.
fn measure_failover(seed: u64) -> u64 {
    let mut world = World::new(seed, 3);
    world.faults = false;
    let settle = FAILOVER_BOUND + D + world.rng.range(0, D);
    world.run(settle);
    let owner = world.owner().expect("settled");
    let i = world.nodes.iter().position(|n| n.id == owner).unwrap();
    world.nodes[i].alive = false;
    world.nodes[i].died_at = world.now;
    world.nodes[i].inflight = None;
    world.owner_crashed_at = Some(world.now);
    world.run(FAILOVER_BOUND + D);
    assert!(world.owner().is_some_and(|o| o != owner));
    world.failovers[0]
}

#[test]
fn failover_figures_over_many_seeds() {
    let mut all: Vec<u64> = (0..40).map(measure_failover).collect();
    all.sort_unstable();
    assert!(all[all.len() - 1] <= FAILOVER_BOUND, "{all:?}");
    eprintln!(
        "volume failover over {} owner crashes (D = {D} ms, detection {DETECT} ms): \
         min {} ms, median {} ms, max {} ms (bound {FAILOVER_BOUND} ms)",
        all.len(),
        all[0],
        all[all.len() / 2],
        all[all.len() - 1]
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn no_two_owners_and_no_healthy_owner_displaced(seed: u64) {
        run_seed(seed);
    }
}
