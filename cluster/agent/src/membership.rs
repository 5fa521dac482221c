//! Heartbeats between the agents and the failure detector that turns them
//! into what the quorum and the volume owners need to know.
//!
//! Every node sends a [`Heartbeat`] to every other configured node each
//! [`heartbeat_ms`]. The [`FailureDetector`] of each node answers, at any
//! instant:
//!
//! - **suspected**: configured peers not heard for [`suspect_ms`];
//! - **active**: this node hears a majority of the configured nodes (itself
//!   included), so it may hold or contend for the quorum. A two-node cluster
//!   is always active: the witness LUN breaks the tie instead;
//! - **members**: what the quorum owner proposes to record — itself and every
//!   peer it hears, each with the generation its heartbeat carries;
//! - **lease**: whether a non-owner heard the quorum owner's claim within the
//!   last [`lease_ms`]. A node uses shared volumes only while it is the quorum
//!   owner or holds this lease.
//!
//! # Why the lease is one defense interval (D)
//!
//! A quorum owner that loses its connectivity stops defending its replicas
//! and stops claiming the quorum in its heartbeats at the same instant `t`.
//! A challenge registered before `t - D` would have met a defense round and
//! been removed, so the majority's challenger registered at `t - D` or later
//! and takes the replicas over no earlier than `t - D + 2.5 D = t + 1.5 D`
//! ([`challenge_wait`](crate::challenge_wait)). The deposed owner's last
//! claim reaches a non-owner by `t + delay`, whose lease then ends by
//! `t + delay + lease`. So `delay + lease < 1.5 D` keeps the old partition's
//! leases from overlapping the new quorum: with `lease = D`, any heartbeat
//! delivered within half an interval is safe ([`MAX_DELAY_MS`], 1.5 s at the
//! default interval). Nodes share no clock, so the delay cannot be measured
//! per datagram: it is an assumption, met by a LAN (where a datagram arrives
//! in milliseconds or is lost) and by the runtime reading its socket
//! continuously.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::keys::{Generation, NodeId};
use crate::time::Millis;

/// How often a node heartbeats, for a defense interval `defense_ms`: six
/// per interval, so three can be lost before a peer is suspected.
pub const fn heartbeat_ms(defense_ms: u64) -> u64 {
    defense_ms / 6
}

/// Silence after which a peer is suspected: half a defense interval. A
/// suspected volume owner is challenged at once, so this adds directly to
/// the failover time.
pub const fn suspect_ms(defense_ms: u64) -> u64 {
    defense_ms / 2
}

/// How long a non-owner stays quorate after the quorum owner's last claim.
pub const fn lease_ms(defense_ms: u64) -> u64 {
    defense_ms
}

/// Longest a heartbeat may take to arrive and still count, as a fraction of
/// the defense interval: the lease argument above needs
/// `MAX_DELAY + lease < 1.5 D`.
pub const fn max_delay_ms(defense_ms: u64) -> u64 {
    defense_ms / 2 - 1
}

/// [`max_delay_ms`] at the default interval, for documentation.
pub const MAX_DELAY_MS: u64 = max_delay_ms(crate::DEFAULT_DEFENSE_MS);

/// What one node tells the others every [`heartbeat_ms`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Heartbeat {
    pub node: NodeId,
    /// The sender's current generation: the quorum owner records it, and
    /// volume owners accept only keys of that generation.
    pub generation: Generation,
    /// Epoch of the newest cluster record the sender knows.
    pub epoch: u64,
    /// The sender is the quorum owner right now.
    pub quorum_owner: bool,
    /// The sender lost the quorum because its path to the replicas failed:
    /// the others treat it as gone (suspected, not a member) so that one of
    /// them takes the quorum over, until it heartbeats healthy again.
    #[serde(default)]
    pub degraded: bool,
}

/// What the detector concludes at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Detection {
    pub suspected: BTreeSet<NodeId>,
    pub active: bool,
    /// Heard the quorum owner's claim within the lease.
    pub lease: bool,
    /// When a peer's quorum claim was last heard.
    pub last_claim: Option<Millis>,
    /// The membership the quorum owner should record.
    pub members: BTreeMap<NodeId, Generation>,
}

#[derive(Clone, Copy, Debug)]
struct Heard {
    at: Millis,
    generation: Generation,
    degraded: bool,
}

/// One node's failure detector: a pure function of the heartbeats it was
/// given and the current time.
#[derive(Clone, Debug)]
pub struct FailureDetector {
    me: NodeId,
    generation: Generation,
    peers: BTreeSet<NodeId>,
    defense_ms: u64,
    heard: BTreeMap<NodeId, Heard>,
    owner_claim: Option<Millis>,
}

impl FailureDetector {
    /// `peers`: every other configured node.
    pub fn new(
        me: NodeId,
        generation: Generation,
        peers: impl IntoIterator<Item = NodeId>,
        defense_ms: u64,
    ) -> Self {
        FailureDetector {
            me,
            generation,
            peers: peers.into_iter().filter(|&p| p != me).collect(),
            defense_ms,
            heard: BTreeMap::new(),
            owner_claim: None,
        }
    }

    /// The heartbeat this node sends now.
    pub fn heartbeat(&self, epoch: u64, quorum_owner: bool, degraded: bool) -> Heartbeat {
        Heartbeat {
            node: self.me,
            generation: self.generation,
            epoch,
            quorum_owner,
            degraded,
        }
    }

    /// A heartbeat arrived at `now`. Heartbeats from unconfigured nodes and
    /// from older generations of a node than one already heard are ignored
    /// (a restarted node's previous life may still have packets in flight).
    pub fn heard(&mut self, now: Millis, hb: &Heartbeat) {
        if !self.peers.contains(&hb.node) {
            return;
        }
        if self
            .heard
            .get(&hb.node)
            .is_some_and(|h| h.generation > hb.generation)
        {
            return;
        }
        self.heard.insert(
            hb.node,
            Heard {
                at: now,
                generation: hb.generation,
                degraded: hb.degraded,
            },
        );
        if hb.quorum_owner {
            self.owner_claim = Some(now);
        }
    }

    fn alive(&self, now: Millis, node: NodeId) -> Option<Generation> {
        self.heard
            .get(&node)
            .filter(|h| !h.degraded && now - h.at < suspect_ms(self.defense_ms))
            .map(|h| h.generation)
    }

    /// True once any peer has been heard since this detector started.
    pub fn heard_any_peer(&self) -> bool {
        !self.heard.is_empty()
    }

    pub fn detect(&self, now: Millis) -> Detection {
        let mut members = BTreeMap::from([(self.me, self.generation)]);
        let mut suspected = BTreeSet::new();
        for &peer in &self.peers {
            match self.alive(now, peer) {
                Some(generation) => {
                    members.insert(peer, generation);
                }
                None => {
                    suspected.insert(peer);
                }
            }
        }
        let configured = self.peers.len() + 1;
        Detection {
            active: configured == 2 || members.len() * 2 > configured,
            lease: self
                .owner_claim
                .is_some_and(|t| now - t < lease_ms(self.defense_ms)),
            last_claim: self.owner_claim,
            suspected,
            members,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ownership::challenge_wait;

    const D: u64 = 3000;

    fn id(n: u8) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn gen(n: u32) -> Generation {
        Generation::new(n).unwrap()
    }

    fn hb(node: u8, generation: u32, owner: bool) -> Heartbeat {
        Heartbeat {
            node: id(node),
            generation: gen(generation),
            epoch: 1,
            quorum_owner: owner,
            degraded: false,
        }
    }

    #[test]
    fn a_degraded_peer_counts_as_gone_until_it_heartbeats_healthy() {
        let mut fd = FailureDetector::new(id(1), gen(1), [id(2), id(3)], D);
        fd.heard(Millis(0), &hb(2, 1, false));
        fd.heard(
            Millis(0),
            &Heartbeat {
                degraded: true,
                ..hb(3, 1, false)
            },
        );
        let d = fd.detect(Millis(10));
        assert!(d.suspected.contains(&id(3)) && !d.members.contains_key(&id(3)));
        assert!(d.active, "itself and node 2 are a majority");
        fd.heard(Millis(20), &hb(3, 1, false));
        assert!(fd.detect(Millis(30)).members.contains_key(&id(3)));
    }

    #[test]
    fn a_silent_peer_is_suspected_after_half_an_interval() {
        let mut fd = FailureDetector::new(id(1), gen(1), [id(2), id(3)], D);
        fd.heard(Millis(0), &hb(2, 1, false));
        fd.heard(Millis(0), &hb(3, 1, false));
        let d = fd.detect(Millis(suspect_ms(D) - 1));
        assert!(d.suspected.is_empty() && d.active);
        fd.heard(Millis(suspect_ms(D)), &hb(2, 1, false));
        let d = fd.detect(Millis(suspect_ms(D)));
        assert_eq!(d.suspected, BTreeSet::from([id(3)]));
        assert!(d.active, "two of three is a majority");
        assert_eq!(
            d.members,
            BTreeMap::from([(id(1), gen(1)), (id(2), gen(1))])
        );
    }

    #[test]
    fn a_node_alone_among_three_is_inactive_but_two_nodes_always_are_active() {
        let fd = FailureDetector::new(id(1), gen(1), [id(2), id(3)], D);
        assert!(!fd.detect(Millis(0)).active);
        let fd = FailureDetector::new(id(1), gen(1), [id(2)], D);
        let d = fd.detect(Millis(10 * D));
        assert!(d.active);
        assert_eq!(d.suspected, BTreeSet::from([id(2)]));
    }

    #[test]
    fn a_restarted_peer_is_proposed_with_its_new_generation_and_old_packets_are_ignored() {
        let mut fd = FailureDetector::new(id(1), gen(1), [id(2), id(3)], D);
        fd.heard(Millis(0), &hb(2, 4, false));
        fd.heard(Millis(10), &hb(2, 5, false));
        fd.heard(Millis(20), &hb(2, 4, false));
        fd.heard(Millis(20), &hb(9, 1, false));
        let d = fd.detect(Millis(30));
        assert_eq!(d.members.get(&id(2)), Some(&gen(5)));
        assert!(!d.members.contains_key(&id(9)));
    }

    #[test]
    fn the_lease_lasts_one_interval_from_the_owners_last_claim() {
        let mut fd = FailureDetector::new(id(1), gen(1), [id(2), id(3)], D);
        assert!(!fd.detect(Millis(0)).lease);
        fd.heard(Millis(100), &hb(2, 1, true));
        fd.heard(Millis(200), &hb(2, 1, false));
        assert!(fd.detect(Millis(100 + D - 1)).lease);
        assert!(!fd.detect(Millis(100 + D)).lease);
    }

    /// The argument in the module documentation, with the constants the
    /// code uses: a challenge that started no earlier than one interval
    /// before the owner stopped defending succeeds no earlier than
    /// `challenge_wait - D` after it; every lease in the old partition has
    /// ended by then, for every heartbeat the edge accepts.
    #[test]
    fn leases_end_before_a_new_quorum_owner_can_exist() {
        for d in [300, 1000, D, 10_000] {
            let takeover_after_stop = challenge_wait(d) - d;
            assert_eq!(takeover_after_stop, 3 * d / 2);
            assert!(
                max_delay_ms(d) + lease_ms(d) < takeover_after_stop,
                "D = {d}"
            );
            // A suspected owner is challenged before its lease at others
            // could be renewed by a claim it no longer sends.
            assert!(suspect_ms(d) <= lease_ms(d));
            assert!(3 * heartbeat_ms(d) <= suspect_ms(d));
        }
    }

    /// The same argument as a timeline against the detector itself: the
    /// owner's last claim is sent at the instant it stops defending and
    /// arrives as late as the edge allows; the lease must be gone at the
    /// earliest instant a challenger may preempt.
    #[test]
    fn a_late_last_claim_still_expires_before_the_earliest_takeover() {
        let stop = Millis(50_000);
        let mut fd = FailureDetector::new(id(1), gen(1), [id(2), id(3)], D);
        fd.heard(stop + max_delay_ms(D), &hb(2, 1, true));
        let challenge_registered = Millis(stop.0 - D);
        let earliest_takeover = challenge_registered + challenge_wait(D);
        assert!(!fd.detect(earliest_takeover).lease);
    }
}
