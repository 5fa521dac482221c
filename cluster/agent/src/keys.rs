//! Reservation keys that say who registered them.
//!
//! Every registration a node makes carries an 8-byte key (SPC-4 §5.14.3)
//! that any other node can decode without asking anyone:
//!
//! ```text
//!  63            32 31      24 23  20 19             0
//! +----------------+----------+------+----------------+
//! | cluster sig    | node id  | role | generation     |
//! +----------------+----------+------+----------------+
//! ```
//!
//! - The signature (CRC32C of the cluster name) tells our keys from another
//!   cluster's or a stray initiator's, which a volume owner removes.
//! - The role says what the registration is for: the owner's key, a member's
//!   shared key, or a challenge. Role codes start at 1 so a key is never zero
//!   (zero means "no key" on the wire).
//! - The generation grows every time a node starts, so the keys of a node's
//!   previous life are recognisably stale and are removed.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::error::Error;

/// A node's identity in the cluster, 1..=255 (0 is reserved: Lamport's
/// arbitration uses it for "nobody").
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub struct NodeId(u8);

impl NodeId {
    pub fn new(id: u8) -> Result<Self, Error> {
        if id == 0 {
            return Err(Error::Invalid {
                field: "node id".into(),
                reason: "0 is reserved; use 1..=255".into(),
            });
        }
        Ok(NodeId(id))
    }

    pub fn get(self) -> u8 {
        self.0
    }
}

impl TryFrom<u8> for NodeId {
    type Error = Error;
    fn try_from(id: u8) -> Result<Self, Error> {
        NodeId::new(id)
    }
}

impl From<NodeId> for u8 {
    fn from(id: NodeId) -> u8 {
        id.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "node {}", self.0)
    }
}

/// How many times a node has started; 20 bits on the wire.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
pub struct Generation(u32);

impl Generation {
    /// Largest generation a key can carry.
    pub const MAX: u32 = (1 << 20) - 1;

    pub fn new(value: u32) -> Result<Self, Error> {
        if value > Self::MAX {
            return Err(Error::GenerationExhausted);
        }
        Ok(Generation(value))
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The generation of the next start.
    pub fn next(self) -> Result<Self, Error> {
        Generation::new(self.0 + 1)
    }
}

/// 32 bits derived from the cluster name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterSignature(u32);

impl ClusterSignature {
    pub fn of(cluster_name: &str) -> Self {
        ClusterSignature(crc32c::crc32c(cluster_name.as_bytes()))
    }
}

/// What a registration is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyRole {
    /// The key of the node that holds (or is taking) the reservation.
    Owner,
    /// A member's key: registered, so it may write under Write Exclusive –
    /// Registrants Only.
    Shared,
    /// "I want ownership": survives only if the owner stopped defending.
    Challenge,
}

impl KeyRole {
    fn code(self) -> u64 {
        match self {
            KeyRole::Owner => 1,
            KeyRole::Shared => 2,
            KeyRole::Challenge => 3,
        }
    }

    fn from_code(code: u64) -> Option<Self> {
        match code {
            1 => Some(KeyRole::Owner),
            2 => Some(KeyRole::Shared),
            3 => Some(KeyRole::Challenge),
            _ => None,
        }
    }
}

/// A decoded cluster reservation key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClusterKey {
    pub signature: ClusterSignature,
    pub node: NodeId,
    pub role: KeyRole,
    pub generation: Generation,
}

impl ClusterKey {
    pub fn encode(self) -> u64 {
        (u64::from(self.signature.0) << 32)
            | (u64::from(self.node.0) << 24)
            | (self.role.code() << 20)
            | u64::from(self.generation.0)
    }

    /// Decodes `raw` if it is one of this cluster's keys.
    pub fn decode(raw: u64, signature: ClusterSignature) -> Option<Self> {
        if (raw >> 32) as u32 != signature.0 {
            return None;
        }
        let node = NodeId::new(((raw >> 24) & 0xff) as u8).ok()?;
        let role = KeyRole::from_code((raw >> 20) & 0xf)?;
        Some(ClusterKey {
            signature,
            node,
            role,
            generation: Generation((raw & u64::from(Generation::MAX)) as u32),
        })
    }

    /// The same node and generation in another role.
    pub fn with_role(self, role: KeyRole) -> Self {
        ClusterKey { role, ..self }
    }
}

impl fmt::Display for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} key of {} gen {} (0x{:016x})",
            self.role,
            self.node,
            self.generation.0,
            self.encode()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn role() -> impl Strategy<Value = KeyRole> {
        prop_oneof![
            Just(KeyRole::Owner),
            Just(KeyRole::Shared),
            Just(KeyRole::Challenge)
        ]
    }

    proptest! {
        #[test]
        fn keys_round_trip_and_are_never_zero(
            name in ".{0,20}", node in 1u8.., role in role(), generation in 0..=Generation::MAX
        ) {
            let signature = ClusterSignature::of(&name);
            let key = ClusterKey {
                signature,
                node: NodeId::new(node).unwrap(),
                role,
                generation: Generation::new(generation).unwrap(),
            };
            prop_assert_ne!(key.encode(), 0);
            prop_assert_eq!(ClusterKey::decode(key.encode(), signature), Some(key));
        }

        #[test]
        fn foreign_keys_do_not_decode(raw: u64) {
            let signature = ClusterSignature::of("alpha");
            if let Some(key) = ClusterKey::decode(raw, signature) {
                prop_assert_eq!(key.encode(), raw);
            }
        }
    }

    #[test]
    fn another_clusters_key_is_foreign() {
        let key = ClusterKey {
            signature: ClusterSignature::of("alpha"),
            node: NodeId::new(3).unwrap(),
            role: KeyRole::Shared,
            generation: Generation::new(7).unwrap(),
        };
        assert_eq!(
            ClusterKey::decode(key.encode(), ClusterSignature::of("beta")),
            None
        );
    }

    #[test]
    fn node_zero_and_huge_generations_are_refused() {
        assert!(NodeId::new(0).is_err());
        assert!(Generation::new(Generation::MAX).unwrap().next().is_err());
    }
}
