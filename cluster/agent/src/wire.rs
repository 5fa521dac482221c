//! The datagrams agents exchange: a JSON envelope naming the cluster, the
//! sender, its generation and a sequence number, sealed with HMAC-SHA256
//! when the cluster has a shared secret.
//!
//! Heartbeats decide failover, so a forged or replayed one could keep a
//! dead owner "alive" and stall the cluster. With a secret, a datagram is
//! `MAC (32 bytes) || envelope`, the MAC covering the envelope's exact
//! bytes; the receiver drops it unless the MAC verifies (in constant time),
//! the sender is a configured peer, and `(generation, seq)` is newer than
//! the last it accepted from that peer. Generations grow with every restart
//! ([`next_generation`](crate::config::next_generation)), so a restarted
//! sender starts a fresh sequence that still sorts after its old one.
//! Without a secret the envelope travels alone and only the cluster name,
//! the sender and the order are checked.

use std::collections::{BTreeMap, BTreeSet};

use hmac::{Hmac, Mac};
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::Sha256;

use crate::keys::{Generation, NodeId};

type HmacSha256 = Hmac<Sha256>;

const MAC_LEN: usize = 32;

/// Shortest secret accepted: 128 bits, as hex or text.
pub const MIN_SECRET_LEN: usize = 16;

/// A cluster's shared secret.
#[derive(Clone)]
pub struct Secret(Vec<u8>);

impl Secret {
    /// `None` when shorter than [`MIN_SECRET_LEN`] bytes.
    pub fn new(bytes: &[u8]) -> Option<Self> {
        (bytes.len() >= MIN_SECRET_LEN).then(|| Secret(bytes.to_vec()))
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.0).expect("HMAC takes keys of any length")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

#[derive(Serialize, Deserialize)]
struct Envelope<T> {
    cluster: String,
    from: NodeId,
    generation: Generation,
    seq: u64,
    message: T,
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("too short to carry a MAC")]
    Short,
    #[error("MAC does not verify (wrong secret or altered)")]
    Mac,
    #[error("not a valid envelope")]
    Malformed,
    #[error("another cluster's")]
    OtherCluster,
    #[error("from a node that is not configured")]
    UnknownSender,
    #[error("not newer than one already accepted (a replay or reordering)")]
    Stale,
}

/// Seals this node's outgoing datagrams.
#[derive(Debug)]
pub struct Sealer {
    cluster: String,
    me: NodeId,
    generation: Generation,
    secret: Option<Secret>,
    seq: u64,
}

impl Sealer {
    pub fn new(cluster: &str, me: NodeId, generation: Generation, secret: Option<Secret>) -> Self {
        Sealer {
            cluster: cluster.to_owned(),
            me,
            generation,
            secret,
            seq: 0,
        }
    }

    pub fn seal<T: Serialize>(&mut self, message: &T) -> Vec<u8> {
        self.seq += 1;
        let body = serde_json::to_vec(&Envelope {
            cluster: self.cluster.clone(),
            from: self.me,
            generation: self.generation,
            seq: self.seq,
            message,
        })
        .expect("messages serialize");
        match &self.secret {
            None => body,
            Some(secret) => {
                let mut mac = secret.mac();
                mac.update(&body);
                let mut out = mac.finalize().into_bytes().to_vec();
                out.extend_from_slice(&body);
                out
            }
        }
    }
}

/// Checks incoming datagrams and remembers what it accepted.
#[derive(Debug)]
pub struct Opener {
    cluster: String,
    peers: BTreeSet<NodeId>,
    secret: Option<Secret>,
    newest: BTreeMap<NodeId, (Generation, u64)>,
}

impl Opener {
    pub fn new(
        cluster: &str,
        peers: impl IntoIterator<Item = NodeId>,
        secret: Option<Secret>,
    ) -> Self {
        Opener {
            cluster: cluster.to_owned(),
            peers: peers.into_iter().collect(),
            secret,
            newest: BTreeMap::new(),
        }
    }

    /// The sender and the message, or why the datagram is dropped.
    pub fn open<T: DeserializeOwned>(&mut self, datagram: &[u8]) -> Result<(NodeId, T), Rejected> {
        let body = match &self.secret {
            None => datagram,
            Some(secret) => {
                if datagram.len() < MAC_LEN {
                    return Err(Rejected::Short);
                }
                let (tag, body) = datagram.split_at(MAC_LEN);
                let mut mac = secret.mac();
                mac.update(body);
                mac.verify_slice(tag).map_err(|_| Rejected::Mac)?;
                body
            }
        };
        let envelope: Envelope<T> =
            serde_json::from_slice(body).map_err(|_| Rejected::Malformed)?;
        if envelope.cluster != self.cluster {
            return Err(Rejected::OtherCluster);
        }
        if !self.peers.contains(&envelope.from) {
            return Err(Rejected::UnknownSender);
        }
        let order = (envelope.generation, envelope.seq);
        if self
            .newest
            .get(&envelope.from)
            .is_some_and(|&seen| order <= seen)
        {
            return Err(Rejected::Stale);
        }
        self.newest.insert(envelope.from, order);
        Ok((envelope.from, envelope.message))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::new(n).unwrap()
    }

    fn gen(n: u32) -> Generation {
        Generation::new(n).unwrap()
    }

    fn secret(text: &str) -> Option<Secret> {
        Secret::new(text.as_bytes())
    }

    const KEY: &str = "0123456789abcdef-cluster";

    #[test]
    fn sealed_messages_open_in_order_and_only_once() {
        let mut tx = Sealer::new("c", id(2), gen(1), secret(KEY));
        let mut rx = Opener::new("c", [id(2), id(3)], secret(KEY));
        let first = tx.seal(&"one");
        let second = tx.seal(&"two");
        assert_eq!(rx.open::<String>(&first), Ok((id(2), "one".into())));
        assert_eq!(rx.open::<String>(&second), Ok((id(2), "two".into())));
        assert_eq!(rx.open::<String>(&second), Err(Rejected::Stale));
        assert_eq!(rx.open::<String>(&first), Err(Rejected::Stale));
    }

    #[test]
    fn a_restarted_sender_is_newer_and_its_old_life_is_stale() {
        let mut old = Sealer::new("c", id(2), gen(1), secret(KEY));
        let mut new = Sealer::new("c", id(2), gen(2), secret(KEY));
        let mut rx = Opener::new("c", [id(2)], secret(KEY));
        let late = old.seal(&1u8);
        assert!(rx.open::<u8>(&new.seal(&2u8)).is_ok());
        assert_eq!(rx.open::<u8>(&late), Err(Rejected::Stale));
    }

    #[test]
    fn wrong_secret_altered_bytes_and_bare_envelopes_are_dropped() {
        let mut rx = Opener::new("c", [id(2)], secret(KEY));
        let mut forger = Sealer::new("c", id(2), gen(9), secret("another secret, long"));
        assert_eq!(rx.open::<u8>(&forger.seal(&1u8)), Err(Rejected::Mac));
        let mut bare = Sealer::new("c", id(2), gen(9), None);
        assert_eq!(rx.open::<u8>(&bare.seal(&1u8)), Err(Rejected::Mac));
        assert_eq!(rx.open::<u8>(b"short"), Err(Rejected::Short));
        let mut tx = Sealer::new("c", id(2), gen(1), secret(KEY));
        let mut datagram = tx.seal(&1u8);
        let last = datagram.len() - 2;
        datagram[last] ^= 1;
        assert_eq!(rx.open::<u8>(&datagram), Err(Rejected::Mac));
    }

    #[test]
    fn other_clusters_and_unknown_senders_are_dropped() {
        let mut rx = Opener::new("c", [id(2)], None);
        let mut other = Sealer::new("d", id(2), gen(1), None);
        assert_eq!(
            rx.open::<u8>(&other.seal(&1u8)),
            Err(Rejected::OtherCluster)
        );
        let mut stranger = Sealer::new("c", id(7), gen(1), None);
        assert_eq!(
            rx.open::<u8>(&stranger.seal(&1u8)),
            Err(Rejected::UnknownSender)
        );
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(Secret::new(b"too short").is_none());
        assert!(Secret::new(&[7u8; MIN_SECRET_LEN]).is_some());
    }

    proptest! {
        #[test]
        fn arbitrary_datagrams_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut sealed = Opener::new("c", [id(2)], secret(KEY));
            let mut open = Opener::new("c", [id(2)], None);
            let _ = sealed.open::<u8>(&bytes);
            let _ = open.open::<u8>(&bytes);
        }
    }
}
