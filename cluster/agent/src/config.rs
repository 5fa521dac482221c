//! The node agent's configuration (TOML), validated once, and the state it
//! keeps between lives: the generation file and the last-surviving flag.
//!
//! ```toml
//! cluster = "alpha"                 # keys carry a signature of this name
//! node = 1                          # this node's id; must be in [[nodes]]
//! state_dir = "/var/lib/reservoir/node"
//! defense_interval_ms = 3000        # optional, default 3000
//! portals = ["192.0.2.10:3260"]     # the appliance(s); LUNs use the first
//!                                   # unless they name their own portal
//! initiator_name = "iqn.2026-11.io.reservoir.node:alpha-1"   # optional
//!
//! [[nodes]]                         # every node, this one included: the
//! id = 1                            # address of its heartbeat port (UDP)
//! address = "192.0.2.21:7400"
//!
//! [[volumes]]                       # shared volumes
//! name = "db"
//! target = "iqn.2026-11.io.reservoir:shared"
//! lun = 0
//!
//! [[quorum]]                        # 3 or 5 replica LUNs, or none with a
//! target = "iqn.2026-11.io.reservoir:quorum"   # witness in a two-node
//! lun = 0                           # cluster
//!
//! [witness]                         # two-node clusters only
//! target = "iqn.2026-11.io.reservoir:witness"
//! lun = 0
//! portal = "192.0.2.11:3260"        # optional, per LUN
//! ```

use std::collections::BTreeSet;
use std::fs;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::error::Error;
use crate::keys::{ClusterSignature, Generation, NodeId};
use crate::ownership::DEFAULT_DEFENSE_MS;
use crate::quorum::MAX_MEMBERS;
use crate::wire::{Secret, MIN_SECRET_LEN};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: String,
    node: u8,
    state_dir: PathBuf,
    defense_interval_ms: Option<u64>,
    portals: Vec<String>,
    initiator_name: Option<String>,
    nodes: Vec<RawNode>,
    #[serde(default)]
    volumes: Vec<RawLun>,
    #[serde(default)]
    quorum: Vec<RawLun>,
    witness: Option<RawLun>,
    secret_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    id: u8,
    address: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLun {
    name: Option<String>,
    target: String,
    lun: u16,
    portal: Option<String>,
}

/// A configured node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeAddress {
    pub id: NodeId,
    pub address: SocketAddr,
}

/// A LUN on the appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LunRef {
    /// The volume's name (shared volumes), or a generated label.
    pub name: String,
    pub portal: SocketAddr,
    pub target: String,
    pub lun: u16,
}

impl LunRef {
    /// The libiscsi URL of this LUN.
    pub fn url(&self) -> String {
        format!("iscsi://{}/{}/{}", self.portal, self.target, self.lun)
    }
}

/// A validated node configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeConfig {
    pub cluster: String,
    pub me: NodeId,
    pub state_dir: PathBuf,
    pub defense_ms: u64,
    pub initiator_name: String,
    /// Every node, this one included, by id.
    pub nodes: Vec<NodeAddress>,
    pub volumes: Vec<LunRef>,
    /// The quorum's replicas: the configured ones, or the witness alone.
    pub quorum: Vec<LunRef>,
    /// Two-node cluster with a witness.
    pub witness: bool,
    /// A file holding the cluster's shared secret: heartbeats and requests
    /// between agents are then authenticated (see `wire`).
    pub secret_file: Option<PathBuf>,
}

fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Invalid {
        field: field.into(),
        reason: reason.into(),
    }
}

fn address(field: &str, text: &str) -> Result<SocketAddr, Error> {
    text.parse()
        .map_err(|_| invalid(field, format!("`{text}` is not an IP:port address")))
}

impl NodeConfig {
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = fs::read_to_string(path).map_err(|source| Error::Io {
            what: format!("read {}", path.display()),
            source,
        })?;
        Self::parse(&text)
    }

    pub fn parse(text: &str) -> Result<Self, Error> {
        let raw: RawConfig = toml::from_str(text).map_err(|e| Error::Parse(Box::new(e)))?;
        if raw.cluster.is_empty() {
            return Err(invalid("cluster", "must not be empty"));
        }
        let me =
            NodeId::new(raw.node).map_err(|_| invalid("node", "0 is reserved; use 1..=255"))?;
        let defense_ms = raw.defense_interval_ms.unwrap_or(DEFAULT_DEFENSE_MS);
        if !(100..=600_000).contains(&defense_ms) {
            return Err(invalid(
                "defense_interval_ms",
                "must be between 100 and 600000",
            ));
        }
        let portals = raw
            .portals
            .iter()
            .enumerate()
            .map(|(i, p)| address(&format!("portals[{i}]"), p))
            .collect::<Result<Vec<_>, _>>()?;
        let first_portal = *portals
            .first()
            .ok_or_else(|| invalid("portals", "name at least one appliance portal"))?;

        let mut ids = BTreeSet::new();
        let mut nodes = Vec::new();
        for (i, n) in raw.nodes.iter().enumerate() {
            let id = NodeId::new(n.id)
                .map_err(|_| invalid(format!("nodes[{i}].id"), "0 is reserved"))?;
            if !ids.insert(id) {
                return Err(invalid(
                    format!("nodes[{i}].id"),
                    format!("duplicate id {}", n.id),
                ));
            }
            nodes.push(NodeAddress {
                id,
                address: address(&format!("nodes[{i}].address"), &n.address)?,
            });
        }
        if !ids.contains(&me) {
            return Err(invalid(
                "node",
                format!("{} is not listed in [[nodes]]", raw.node),
            ));
        }
        if nodes.len() > MAX_MEMBERS {
            return Err(invalid("nodes", format!("at most {MAX_MEMBERS} nodes")));
        }
        if nodes.len() < 2 {
            return Err(invalid("nodes", "a cluster needs at least two nodes"));
        }

        let lun = |field: String, l: &RawLun, default_name: String| -> Result<LunRef, Error> {
            if !l.target.starts_with("iqn.") && !l.target.starts_with("eui.") {
                return Err(invalid(
                    format!("{field}.target"),
                    format!("`{}` is not an iSCSI name (iqn. or eui.)", l.target),
                ));
            }
            Ok(LunRef {
                name: l.name.clone().unwrap_or(default_name),
                portal: match &l.portal {
                    Some(p) => address(&format!("{field}.portal"), p)?,
                    None => first_portal,
                },
                target: l.target.clone(),
                lun: l.lun,
            })
        };
        let mut volumes = Vec::new();
        let mut names = BTreeSet::new();
        for (i, v) in raw.volumes.iter().enumerate() {
            let field = format!("volumes[{i}]");
            if v.name.is_none() {
                return Err(invalid(
                    format!("{field}.name"),
                    "every shared volume needs a name",
                ));
            }
            let v = lun(field.clone(), v, String::new())?;
            if !names.insert(v.name.clone()) {
                return Err(invalid(format!("{field}.name"), "duplicate volume name"));
            }
            volumes.push(v);
        }
        let quorum = raw
            .quorum
            .iter()
            .enumerate()
            .map(|(i, q)| lun(format!("quorum[{i}]"), q, format!("quorum-{i}")))
            .collect::<Result<Vec<_>, _>>()?;
        let (quorum, witness) = match (&raw.witness, nodes.len()) {
            (Some(w), 2) => {
                if !quorum.is_empty() {
                    return Err(invalid(
                        "quorum",
                        "a two-node cluster keeps its quorum on the witness; remove [[quorum]]",
                    ));
                }
                (vec![lun("witness".into(), w, "witness".into())?], true)
            }
            (Some(_), _) => {
                return Err(invalid(
                    "witness",
                    "only a two-node cluster uses a witness; use [[quorum]] replicas",
                ))
            }
            (None, 2) => {
                return Err(invalid(
                    "witness",
                    "a two-node cluster needs a witness LUN to break ties",
                ))
            }
            (None, _) if quorum.len() != 3 && quorum.len() != 5 => {
                return Err(invalid(
                    "quorum",
                    format!("configure 3 or 5 replica LUNs, not {}", quorum.len()),
                ))
            }
            (None, _) => (quorum, false),
        };
        let initiator_name = raw.initiator_name.unwrap_or_else(|| {
            format!("iqn.2026-11.io.reservoir.node:{}-{}", raw.cluster, raw.node)
        });
        Ok(NodeConfig {
            cluster: raw.cluster,
            me,
            state_dir: raw.state_dir,
            defense_ms,
            initiator_name,
            nodes,
            volumes,
            quorum,
            witness,
            secret_file: raw.secret_file,
        })
    }

    /// The shared secret from [`NodeConfig::secret_file`], surrounding
    /// whitespace removed; `None` when none is configured.
    pub fn load_secret(&self) -> Result<Option<Secret>, Error> {
        let Some(path) = &self.secret_file else {
            return Ok(None);
        };
        let text = fs::read(path).map_err(|source| Error::Io {
            what: format!("read secret_file {}", path.display()),
            source,
        })?;
        Secret::new(text.trim_ascii()).map(Some).ok_or_else(|| {
            invalid(
                "secret_file",
                format!("{} holds fewer than {MIN_SECRET_LEN} bytes", path.display()),
            )
        })
    }

    pub fn signature(&self) -> ClusterSignature {
        ClusterSignature::of(&self.cluster)
    }

    /// This node's heartbeat address.
    pub fn address(&self) -> SocketAddr {
        self.nodes
            .iter()
            .find(|n| n.id == self.me)
            .map(|n| n.address)
            .expect("validated: this node is listed")
    }

    pub fn peers(&self) -> impl Iterator<Item = &NodeAddress> {
        self.nodes.iter().filter(|n| n.id != self.me)
    }

    /// The local control socket of `reservoir node status` and `move`.
    pub fn socket_path(&self) -> PathBuf {
        self.state_dir.join("agent.sock")
    }
}

/// Writes `contents` to `dir/name` crash-atomically: a temporary file,
/// fsync, rename, fsync of the directory.
fn write_atomic(dir: &Path, name: &str, contents: &str) -> Result<(), Error> {
    let io = |what: &str| {
        let what = format!("{what} {}", dir.join(name).display());
        move |source| Error::Io { what, source }
    };
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut file = fs::File::create(&tmp).map_err(io("create"))?;
    file.write_all(contents.as_bytes()).map_err(io("write"))?;
    file.sync_all().map_err(io("sync"))?;
    fs::rename(&tmp, dir.join(name)).map_err(io("rename"))?;
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("sync the directory of"))
}

fn read_state(dir: &Path, name: &str) -> Result<Option<String>, Error> {
    match fs::read_to_string(dir.join(name)) {
        Ok(text) => Ok(Some(text.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            what: format!("read {}", dir.join(name).display()),
            source,
        }),
    }
}

/// Starts a new life: reads `state_dir/generation` (0 if absent), writes
/// the next value durably and returns it. Keys of every earlier life carry
/// a lower generation and are removed by the volume owners.
pub fn next_generation(state_dir: &Path) -> Result<Generation, Error> {
    fs::create_dir_all(state_dir).map_err(|source| Error::Io {
        what: format!("create {}", state_dir.display()),
        source,
    })?;
    let current = match read_state(state_dir, "generation")? {
        None => Generation::default(),
        Some(text) => text
            .parse()
            .ok()
            .and_then(|g| Generation::new(g).ok())
            .ok_or_else(|| {
                invalid(
                    "state_dir/generation",
                    format!("`{text}` is not a generation"),
                )
            })?,
    };
    let next = current.next()?;
    write_atomic(state_dir, "generation", &format!("{}\n", next.get()))?;
    Ok(next)
}

/// The persisted last-surviving flag (false if never written).
pub fn load_last_surviving(state_dir: &Path) -> Result<bool, Error> {
    match read_state(state_dir, "last-surviving")?.as_deref() {
        None | Some("0") => Ok(false),
        Some("1") => Ok(true),
        Some(other) => Err(invalid(
            "state_dir/last-surviving",
            format!("`{other}` is neither 0 nor 1"),
        )),
    }
}

pub fn store_last_surviving(state_dir: &Path, flag: bool) -> Result<(), Error> {
    write_atomic(
        state_dir,
        "last-surviving",
        if flag { "1\n" } else { "0\n" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const THREE: &str = r#"
        cluster = "alpha"
        node = 2
        state_dir = "/tmp/x"
        portals = ["127.0.0.1:3260"]
        [[nodes]]
        id = 1
        address = "127.0.0.1:7401"
        [[nodes]]
        id = 2
        address = "127.0.0.1:7402"
        [[nodes]]
        id = 3
        address = "127.0.0.1:7403"
        [[volumes]]
        name = "db"
        target = "iqn.2026-11.io.reservoir:shared"
        lun = 0
        [[quorum]]
        target = "iqn.2026-11.io.reservoir:q"
        lun = 0
        [[quorum]]
        target = "iqn.2026-11.io.reservoir:q"
        lun = 1
        [[quorum]]
        target = "iqn.2026-11.io.reservoir:q"
        lun = 2
        portal = "127.0.0.2:3260"
    "#;

    #[test]
    fn a_three_node_configuration_parses() {
        let c = NodeConfig::parse(THREE).unwrap();
        assert_eq!(c.me.get(), 2);
        assert_eq!(c.defense_ms, DEFAULT_DEFENSE_MS);
        assert_eq!(c.address().port(), 7402);
        assert_eq!(c.peers().count(), 2);
        assert_eq!(c.quorum.len(), 3);
        assert_eq!(
            c.quorum[2].url(),
            "iscsi://127.0.0.2:3260/iqn.2026-11.io.reservoir:q/2"
        );
        assert!(!c.witness);
    }

    fn error_of(text: &str) -> String {
        NodeConfig::parse(text).unwrap_err().to_string()
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (THREE.replace("node = 2", "node = 4"), "node"),
            (THREE.replace("id = 3", "id = 2"), "nodes[2].id"),
            (THREE.replace("127.0.0.1:7403", "here"), "nodes[2].address"),
            (
                THREE.replace(
                    "lun = 2\n",
                    "lun = 2\n[witness]\ntarget = \"iqn.x\"\nlun = 9\n",
                ),
                "witness",
            ),
            (
                THREE.replace("iqn.2026-11.io.reservoir:shared", "shared"),
                "volumes[0].target",
            ),
            (
                THREE.replace("portal = \"127.0.0.2:3260\"", "portal = \"x\""),
                "quorum[2].portal",
            ),
            (
                THREE.replace(
                    "state_dir",
                    "state_dir = \"/a\"\ndefense_interval_ms = 5\nx",
                ),
                "defense_interval_ms",
            ),
        ];
        for (text, field) in cases {
            let e = error_of(&text);
            assert!(e.contains(field), "{e} should name {field}");
        }
        let without_replica = THREE.replace(
            "[[quorum]]\n        target = \"iqn.2026-11.io.reservoir:q\"\n        lun = 0\n",
            "",
        );
        assert!(error_of(&without_replica).contains("quorum"));
        assert!(error_of("cluster = 1").contains("cluster"));
    }

    #[test]
    fn two_nodes_need_a_witness_and_use_it_as_the_quorum() {
        let two = r#"
            cluster = "beta"
            node = 1
            state_dir = "/tmp/y"
            portals = ["127.0.0.1:3260"]
            nodes = [{ id = 1, address = "127.0.0.1:1" }, { id = 2, address = "127.0.0.1:2" }]
        "#;
        assert!(error_of(two).contains("witness"));
        let with = format!("{two}\n[witness]\ntarget = \"iqn.w\"\nlun = 3\n");
        let c = NodeConfig::parse(&with).unwrap();
        assert!(c.witness);
        assert_eq!(c.quorum.len(), 1);
        assert_eq!(c.quorum[0].lun, 3);
    }

    fn secret_from(path: &Path) -> Result<Option<Secret>, Error> {
        let text = format!("secret_file = \"{}\"\n{THREE}", path.display());
        NodeConfig::parse(&text).unwrap().load_secret()
    }

    #[test]
    fn the_secret_file_is_read_trimmed_and_must_be_long_enough() {
        assert!(NodeConfig::parse(THREE)
            .unwrap()
            .load_secret()
            .unwrap()
            .is_none());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.key");
        assert!(matches!(secret_from(&path), Err(Error::Io { .. })));
        fs::write(&path, "a long enough shared secret\n").unwrap();
        assert!(secret_from(&path).unwrap().is_some());
        fs::write(&path, "  short \n").unwrap();
        match secret_from(&path) {
            Err(Error::Invalid { field, .. }) => assert_eq!(field, "secret_file"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn generations_grow_and_the_flag_persists() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_generation(dir.path()).unwrap().get(), 1);
        assert_eq!(next_generation(dir.path()).unwrap().get(), 2);
        assert!(!load_last_surviving(dir.path()).unwrap());
        store_last_surviving(dir.path(), true).unwrap();
        assert!(load_last_surviving(dir.path()).unwrap());
        fs::write(dir.path().join("generation"), "junk").unwrap();
        assert!(next_generation(dir.path())
            .unwrap_err()
            .to_string()
            .contains("generation"));
    }
}
