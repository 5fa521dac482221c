//! One node's whole decision logic: the failure detector, the quorum (over
//! replica LUNs, or over the witness in a two-node cluster), the startup
//! gate and last-surviving flag, and one [`Ownership`] per shared volume.
//! Pure like its parts: [`NodeCore::apply`] takes the time and an input and
//! returns effects for the runtime to carry out.
//!
//! ```text
//!  heartbeats ──► FailureDetector ──active, suspected──► Quorum ──record──┐
//!                       │  └── members (if quorum owner) ──► Propose      │
//!                       └─ lease ──┐                                      ▼
//!                                  └──► volume View { active, members, suspected }
//!                                             └──► Ownership per shared volume
//! ```
//!
//! A node uses shared volumes only while its view is active: it is the
//! quorum owner or holds the lease, the gate is open, and the committed
//! record lists it with its current generation (a volume owner would remove
//! its key otherwise).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::disk::{DiskOp, DiskResult};
use crate::keys::{ClusterSignature, Generation, NodeId};
use crate::membership::{heartbeat_ms, suspect_ms, Detection, FailureDetector, Heartbeat};
use crate::ownership::{self, Ownership, Policy, Role, Standing, View};
use crate::quorum::{ClusterRecord, Quorum, QuorumEffect, QuorumInput};
use crate::time::Millis;
use crate::witness::{LastSurviving, StartupGate};

/// How soon a volume whose owner died has a new owner: detection, the
/// challenge wait, one round of commands. It holds when the dead node also
/// owned the quorum, because the volume's challenge waits alongside the
/// replicas' ([`Standing::Waiting`]) and one survivor, the leader, contends
/// for the replicas first.
pub const fn failover_bound_ms(defense_ms: u64) -> u64 {
    suspect_ms(defense_ms) + ownership::challenge_wait(defense_ms) + defense_ms
}

/// Block size of the records the quorum writes. LUNs with larger blocks
/// get them zero-padded by the edge; every decoder reads a prefix.
pub const RECORD_BLOCK: usize = 512;

/// What a [`NodeCore`] is built from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CoreConfig {
    pub signature: ClusterSignature,
    pub me: NodeId,
    pub generation: Generation,
    /// Every other configured node.
    pub peers: Vec<NodeId>,
    /// Quorum replica LUNs; one (the witness) in a two-node cluster.
    pub replicas: usize,
    pub volumes: usize,
    pub defense_ms: u64,
    /// The persisted last-surviving flag (two-node clusters).
    pub last_surviving: bool,
}

impl CoreConfig {
    fn two_node(&self) -> bool {
        self.peers.len() == 1
    }
}

/// A LUN as the core names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum Lun {
    /// Quorum replica `i` (the witness is replica 0 of a two-node cluster).
    Replica(usize),
    /// Shared volume `i`.
    Volume(usize),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreInput {
    Tick,
    Heartbeat(Heartbeat),
    Reply {
        lun: Lun,
        result: DiskResult,
    },
    /// `reservoir node move`: hand `volume` to `to`.
    Move {
        volume: usize,
        to: NodeId,
    },
    /// The owner of `volume` asks us to challenge now (a planned move).
    TakeOver {
        volume: usize,
    },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CoreEffect {
    Issue {
        lun: Lun,
        op: DiskOp,
    },
    /// Send to every peer.
    Heartbeat(Heartbeat),
    /// Tell `node` to take `volume` over now.
    AskToTakeOver {
        volume: usize,
        node: NodeId,
    },
    /// We do not own `volume`: pass the move on to the peers; its owner acts.
    ForwardMove {
        volume: usize,
        to: NodeId,
    },
    /// Persist the last-surviving flag before carrying on.
    PersistLastSurviving(bool),
    Quorate(bool),
    Record(ClusterRecord),
    VolumeOwner {
        volume: usize,
        owner: bool,
    },
}

/// A snapshot of the core's state for `reservoir node status`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CoreStatus {
    pub node: NodeId,
    pub generation: Generation,
    /// Hears a majority of the configured nodes (always, with two).
    pub active: bool,
    /// This node holds the quorum.
    pub quorate: bool,
    /// Heard the quorum owner within the lease.
    pub lease: bool,
    /// May use shared volumes.
    pub volumes_active: bool,
    pub gate_open: bool,
    pub last_surviving: bool,
    pub suspected: BTreeSet<NodeId>,
    pub record: ClusterRecord,
    pub replicas: Vec<Role>,
    pub volumes: Vec<Role>,
}

#[derive(Debug, Clone)]
pub struct NodeCore {
    config: CoreConfig,
    detector: FailureDetector,
    quorum: Quorum,
    volumes: Vec<Ownership>,
    gate: StartupGate,
    flag: LastSurviving,
    detection: Detection,
    connectivity: Option<(bool, BTreeSet<NodeId>)>,
    volume_view: Option<View>,
    next_heartbeat: Millis,
}

impl NodeCore {
    pub fn new(config: CoreConfig) -> Self {
        let max_node = config
            .peers
            .iter()
            .chain(std::iter::once(&config.me))
            .map(|n| n.get())
            .max()
            .unwrap_or(1);
        let quorum = Quorum::new(
            config.signature,
            config.me,
            config.generation,
            config.replicas,
            max_node,
            RECORD_BLOCK,
            config.defense_ms,
        );
        let volumes = (0..config.volumes)
            .map(|_| {
                Ownership::new(
                    config.signature,
                    config.me,
                    config.generation,
                    Policy::Volume,
                    config.defense_ms,
                )
            })
            .collect();
        // Only a two-node cluster can revive an old partition alone; with
        // three or more, a majority of heartbeats is needed anyway.
        let gate = StartupGate::new(!config.two_node() || config.last_surviving);
        NodeCore {
            detector: FailureDetector::new(
                config.me,
                config.generation,
                config.peers.iter().copied(),
                config.defense_ms,
            ),
            quorum,
            volumes,
            gate,
            flag: LastSurviving::new(config.me, config.last_surviving),
            detection: Detection::default(),
            connectivity: None,
            volume_view: None,
            next_heartbeat: Millis(0),
            config,
        }
    }

    pub fn is_quorate(&self) -> bool {
        self.quorum.is_quorate()
    }

    pub fn owns(&self, volume: usize) -> bool {
        self.volumes[volume].is_owner()
    }

    pub fn record(&self) -> &ClusterRecord {
        self.quorum.record()
    }

    /// May this node use shared volumes right now?
    pub fn volume_active(&self) -> bool {
        self.volume_view
            .as_ref()
            .is_some_and(|v| v.standing == Standing::Active)
    }

    /// Lost the quorum because defenses of replicas lapsed (a failed path)
    /// within the last few intervals: the peers should take the quorum over.
    fn is_degraded(&self, now: Millis) -> bool {
        !self.quorum.is_quorate() && self.quorum.lapsed_within(now, 3 * self.config.defense_ms)
    }

    pub fn status(&self) -> CoreStatus {
        CoreStatus {
            node: self.config.me,
            generation: self.config.generation,
            active: self.detection.active,
            quorate: self.quorum.is_quorate(),
            lease: self.detection.lease,
            volumes_active: self.volume_active(),
            gate_open: self.gate.is_open(),
            last_surviving: self.flag.get(),
            suspected: self.detection.suspected.clone(),
            record: self.quorum.record().clone(),
            replicas: self.quorum.roles(),
            volumes: self.volumes.iter().map(Ownership::role).collect(),
        }
    }

    pub fn apply(&mut self, now: Millis, input: CoreInput) -> Vec<CoreEffect> {
        let mut fx = Vec::new();
        match input {
            CoreInput::Tick => {}
            CoreInput::Heartbeat(hb) => self.detector.heard(now, &hb),
            CoreInput::Reply {
                lun: Lun::Replica(replica),
                result,
            } => {
                let out = self
                    .quorum
                    .apply(now, QuorumInput::Reply { replica, result });
                self.quorum_effects(out, &mut fx);
            }
            CoreInput::Reply {
                lun: Lun::Volume(v),
                result,
            } => {
                let out = self.volumes[v].apply(now, ownership::Input::Reply(result));
                volume_effects(v, out, &mut fx);
            }
            CoreInput::Move { volume, to } => {
                if self.volumes[volume].is_owner() {
                    let out = self.volumes[volume].apply(now, ownership::Input::MoveTo(to));
                    volume_effects(volume, out, &mut fx);
                } else {
                    fx.push(CoreEffect::ForwardMove { volume, to });
                }
            }
            CoreInput::TakeOver { volume } => {
                let out = self.volumes[volume].apply(now, ownership::Input::TakeOver);
                volume_effects(volume, out, &mut fx);
            }
        }
        self.step(now, &mut fx);
        fx
    }

    /// The periodic part of every input: detection, the quorum, the
    /// volumes' view, heartbeats.
    fn step(&mut self, now: Millis, fx: &mut Vec<CoreEffect>) {
        self.detection = self.detector.detect(now);
        if self.detector.heard_any_peer() {
            self.gate.heard_peer();
        }
        let connectivity = (
            self.gate.is_open() && self.detection.active,
            self.detection.suspected.clone(),
        );
        if self.connectivity.as_ref() != Some(&connectivity) {
            self.connectivity = Some(connectivity.clone());
            let (active, suspected) = connectivity;
            let heard = self
                .detection
                .members
                .keys()
                .copied()
                .filter(|&n| n != self.config.me)
                .collect();
            let out = self.quorum.apply(
                now,
                QuorumInput::Connectivity {
                    active,
                    suspected,
                    heard,
                },
            );
            self.quorum_effects(out, fx);
        }
        self.quorum.heard_claim(self.detection.last_claim);
        let mut out = self.quorum.apply(now, QuorumInput::Tick);
        if self.quorum.is_quorate() {
            let members = self.detection.members.clone();
            out.extend(self.quorum.apply(now, QuorumInput::Propose(members)));
        }
        self.quorum_effects(out, fx);

        let record = self.quorum.record();
        let listed = record.members.get(&self.config.me) == Some(&self.config.generation);
        let standing = if !self.gate.is_open() || !listed {
            Standing::Fenced
        } else if self.quorum.is_quorate() || self.detection.lease {
            Standing::Active
        } else if self.detection.active {
            Standing::Waiting
        } else {
            Standing::Fenced
        };
        let view = View {
            standing,
            members: record.members.clone(),
            suspected: self.detection.suspected.clone(),
            contend: false,
        };
        let changed = self.volume_view.as_ref() != Some(&view);
        if changed {
            self.volume_view = Some(view.clone());
        }
        for v in 0..self.volumes.len() {
            let input = if changed {
                ownership::Input::View(view.clone())
            } else {
                ownership::Input::Tick
            };
            let out = self.volumes[v].apply(now, input);
            volume_effects(v, out, fx);
        }

        if now >= self.next_heartbeat {
            self.next_heartbeat = now + heartbeat_ms(self.config.defense_ms);
            fx.push(CoreEffect::Heartbeat(self.detector.heartbeat(
                self.quorum.record().epoch,
                self.quorum.is_quorate(),
                self.is_degraded(now),
            )));
        }
    }

    fn quorum_effects(&mut self, out: Vec<QuorumEffect>, fx: &mut Vec<CoreEffect>) {
        for effect in out {
            match effect {
                QuorumEffect::Issue { replica, op } => fx.push(CoreEffect::Issue {
                    lun: Lun::Replica(replica),
                    op,
                }),
                QuorumEffect::Quorate(q) => fx.push(CoreEffect::Quorate(q)),
                QuorumEffect::Record(record) => {
                    if self.config.two_node() {
                        if let Some(flag) = self.flag.on_record(&record.members) {
                            fx.push(CoreEffect::PersistLastSurviving(flag));
                        }
                    }
                    fx.push(CoreEffect::Record(record));
                }
            }
        }
    }
}

fn volume_effects(volume: usize, out: Vec<ownership::Effect>, fx: &mut Vec<CoreEffect>) {
    for effect in out {
        fx.push(match effect {
            ownership::Effect::Issue(op) => CoreEffect::Issue {
                lun: Lun::Volume(volume),
                op,
            },
            ownership::Effect::BecameOwner => CoreEffect::VolumeOwner {
                volume,
                owner: true,
            },
            ownership::Effect::LostOwnership(_) => CoreEffect::VolumeOwner {
                volume,
                owner: false,
            },
            ownership::Effect::AskToTakeOver(node) => CoreEffect::AskToTakeOver { volume, node },
        });
    }
}
