//! Two-node clusters: the witness LUN and the last-surviving flag.
//!
//! Two nodes cannot form a majority of themselves, so a two-node cluster
//! keeps its quorum on one extra LUN, the *witness*: the quorum is a
//! [`Quorum`](crate::Quorum) over that single replica, and whoever holds
//! its reservation is the quorum owner. Both nodes are always
//! [active](crate::Detection::active); a survivor whose peer went silent
//! challenges the witness and, after the usual wait, takes it.
//!
//! That alone would let a *partition in time* happen: A carries on alone
//! and writes; A stops; B, which stopped earlier, starts alone, takes the
//! witness and serves data that is older than A's. So each node persists a
//! *last-surviving* flag ([`LastSurviving`]): set when the quorum record
//! lists it alone, cleared when the record lists both nodes. A node that
//! starts, hears no peer, and finds its flag false keeps out of contention
//! ([`StartupGate`]) until its peer shows up.

use std::collections::BTreeMap;

use crate::keys::{Generation, NodeId};

/// How a committed record changes this node's persisted flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LastSurviving {
    me: NodeId,
    flag: bool,
}

impl LastSurviving {
    /// `flag`: the value persisted by this node's previous life (false if
    /// it never ran).
    pub fn new(me: NodeId, flag: bool) -> Self {
        LastSurviving { me, flag }
    }

    pub fn get(&self) -> bool {
        self.flag
    }

    /// A record became known (committed by us, or read from the witness).
    /// Returns the new value when it changed: the caller persists it before
    /// acting on the record any further.
    pub fn on_record(&mut self, members: &BTreeMap<NodeId, Generation>) -> Option<bool> {
        let flag = match members.len() {
            1 if members.contains_key(&self.me) => true,
            n if n >= 2 && members.contains_key(&self.me) => false,
            // A record without us says nothing about our own survival.
            _ => return None,
        };
        (flag != self.flag).then(|| {
            self.flag = flag;
            flag
        })
    }
}

/// Keeps a node that starts alone with its flag false out of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StartupGate {
    open: bool,
}

impl StartupGate {
    /// `last_surviving`: the persisted flag at start.
    pub fn new(last_surviving: bool) -> Self {
        StartupGate {
            open: last_surviving,
        }
    }

    /// The peer was heard: it is either the one that carried on (and holds
    /// the newer data) or it was down too; either way the two decide
    /// together from here on. Stays open for the rest of this life.
    pub fn heard_peer(&mut self) {
        self.open = true;
    }

    /// May this node contend for the witness and use shared volumes?
    pub fn is_open(&self) -> bool {
        self.open
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn members(ids: &[u8]) -> BTreeMap<NodeId, Generation> {
        ids.iter()
            .map(|&n| (id(n), Generation::new(1).unwrap()))
            .collect()
    }

    #[test]
    fn the_flag_follows_the_record() {
        let mut flag = LastSurviving::new(id(1), false);
        assert_eq!(flag.on_record(&members(&[1, 2])), None);
        assert_eq!(flag.on_record(&members(&[1])), Some(true));
        assert_eq!(flag.on_record(&members(&[1])), None);
        assert_eq!(flag.on_record(&members(&[2])), None, "not about us");
        assert!(flag.get());
        assert_eq!(flag.on_record(&members(&[1, 2])), Some(false));
    }

    #[test]
    fn the_gate_opens_on_the_flag_or_the_peer() {
        assert!(StartupGate::new(true).is_open());
        let mut gate = StartupGate::new(false);
        assert!(!gate.is_open());
        gate.heard_peer();
        assert!(gate.is_open());
    }
}
