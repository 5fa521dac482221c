//! Target nodes and their registry. Read at login and discovery only, so a
//! `RwLock` around the map costs nothing on the I/O path.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use reservoir_scsi::{Device, Lun, TargetPort};

/// One iSCSI target node: a name, its logical units, who may log in.
pub struct TargetNode {
    pub iqn: String,
    pub device: Arc<Device>,
    pub access: Access,
}

impl TargetNode {
    /// Target `iqn` serving `luns` (LUN number, unit) through one SCSI
    /// target port, named the way RFC 7143 names an iSCSI target port:
    /// the iSCSI name, ",t,0x" and the portal group tag in hex.
    pub fn new(
        iqn: impl Into<String>,
        luns: Vec<(u64, Arc<Lun>)>,
        access: Access,
        portal_group_tag: u16,
    ) -> TargetNode {
        let iqn = iqn.into();
        let port = TargetPort {
            name: format!("{iqn},t,0x{portal_group_tag:04x}"),
            relative_id: 1,
        };
        TargetNode {
            device: Arc::new(Device::new(&iqn, luns, port)),
            iqn,
            access,
        }
    }
}

impl fmt::Debug for TargetNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TargetNode")
            .field("iqn", &self.iqn)
            .field("access", &self.access)
            .finish_non_exhaustive()
    }
}

/// Who may use a target (or a portal's discovery sessions).
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Initiator names allowed to log in; `None` allows everyone.
    pub allowed_initiators: Option<Vec<String>>,
    /// When set, initiators must authenticate with CHAP as this user.
    pub chap: Option<Credentials>,
    /// When set, the target answers an initiator's CHAP challenge as this user.
    pub mutual_chap: Option<Credentials>,
}

impl Access {
    /// iSCSI names compare case-insensitively: RFC 7143 §4.2.7.1 has them
    /// normalised (stringprep) to lower case.
    pub fn allows(&self, initiator: &str) -> bool {
        match &self.allowed_initiators {
            None => true,
            Some(list) => list.iter().any(|n| n.eq_ignore_ascii_case(initiator)),
        }
    }
}

/// A CHAP user and secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub user: String,
    pub secret: Vec<u8>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("secret", &"<hidden>")
            .finish()
    }
}

/// The registry of target nodes, shared by every portal and reactor.
#[derive(Debug, Default)]
pub struct Targets {
    nodes: RwLock<BTreeMap<String, Arc<TargetNode>>>,
}

impl Targets {
    pub fn new() -> Targets {
        Targets::default()
    }

    /// Adds or replaces the node named `node.iqn`. Sessions already logged in
    /// keep the node they logged in to.
    pub fn insert(&self, node: TargetNode) {
        let key = node.iqn.to_ascii_lowercase();
        self.write().insert(key, Arc::new(node));
    }

    pub fn remove(&self, iqn: &str) -> Option<Arc<TargetNode>> {
        self.write().remove(&iqn.to_ascii_lowercase())
    }

    pub fn get(&self, iqn: &str) -> Option<Arc<TargetNode>> {
        self.read().get(&iqn.to_ascii_lowercase()).cloned()
    }

    /// All nodes, ordered by name.
    pub fn list(&self) -> Vec<Arc<TargetNode>> {
        self.read().values().cloned().collect()
    }

    // A writer that panicked left a map that is still a valid map: recover it.
    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, Arc<TargetNode>>> {
        self.nodes.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, Arc<TargetNode>>> {
        self.nodes.write().unwrap_or_else(|e| e.into_inner())
    }
}
