//! The validated configuration. Values of these types have passed every
//! rule in `validate.rs`; the rest of the appliance trusts them.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize, Serializer};

use crate::error::ConfigError;
use crate::names::{Iqn, VolumeName};
use crate::size::{BlockSizeConfig, ByteSize};
use crate::validate::{self, RawConfig};

/// The whole appliance configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub server: ServerConfig,
    pub portals: Vec<PortalConfig>,
    pub volumes: Vec<VolumeConfig>,
    pub targets: Vec<TargetConfig>,
}

/// `[server]`: where the appliance keeps its state and how it runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Root of everything persistent. A relative path is kept as given
    /// and resolves against the daemon's working directory.
    pub data_dir: PathBuf,
    /// The JSON-RPC control socket; `None` means `<data_dir>/rpc.sock`.
    pub rpc_socket: Option<PathBuf>,
    /// Cores to run reactors on; `None` means every core.
    pub reactors: Option<Vec<usize>>,
    /// Threads that run file and device I/O for the reactors, shared by
    /// every such LUN: the queue depth those devices see at most.
    pub io_workers: usize,
}

/// `io_workers` when the config does not say: a queue depth of 32 on one
/// LUN keeps every command of the initiator on the device at once.
pub const DEFAULT_IO_WORKERS: usize = 32;

/// The most `io_workers` a config may ask for (threads, each with a stack).
pub const MAX_IO_WORKERS: usize = 1024;

impl ServerConfig {
    pub fn rpc_socket_path(&self) -> PathBuf {
        self.rpc_socket
            .clone()
            .unwrap_or_else(|| self.data_dir.join("rpc.sock"))
    }
}

/// `[[portal]]`: an address the iSCSI target listens on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortalConfig {
    pub listen: SocketAddr,
}

/// The iSCSI well-known port, TCP 3260 (IANA, RFC 7143).
pub const ISCSI_PORT: u16 = 3260;

/// `[[volume]]`: one block device the appliance serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeConfig {
    pub name: VolumeName,
    pub backend: Backend,
    /// Always set for malloc and file; for a device, `None` means the
    /// device's own size.
    pub size: Option<ByteSize>,
    pub block_size: BlockSizeConfig,
    pub snapshots: SnapshotConfig,
}

/// How a volume's snapshots are kept. Every field has a default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SnapshotConfig {
    /// Copy-on-write unit; `None` is the engine's default (64 KiB).
    pub chunk_size: Option<ByteSize>,
    /// Directory under which the volume's differential area and snapshot
    /// metadata are kept (in `<diff_area>/<volume>/`); `None` is
    /// `<data_dir>/snapshots`.
    pub diff_area: Option<PathBuf>,
    /// Upper bound of the differential area; `None` grows until the file
    /// system is full.
    pub diff_area_size: Option<ByteSize>,
    /// A block device for the differential area instead of a file (its
    /// size bounds the area; its content is overwritten).
    pub diff_area_device: Option<PathBuf>,
}

/// Where a volume's blocks live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// RAM; contents are lost when the appliance stops.
    Malloc,
    /// A regular file, created at the volume's size if missing.
    File { path: PathBuf },
    /// A block device such as `/dev/nvme0n1`.
    Device { path: PathBuf },
}

impl Backend {
    /// The name used for `backend = "..."` in the file.
    pub fn kind(&self) -> &'static str {
        match self {
            Backend::Malloc => "malloc",
            Backend::File { .. } => "file",
            Backend::Device { .. } => "device",
        }
    }

    pub fn path(&self) -> Option<&Path> {
        match self {
            Backend::Malloc => None,
            Backend::File { path } | Backend::Device { path } => Some(path),
        }
    }
}

/// `[[target]]`: an iSCSI target node and the volumes it exports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetConfig {
    pub iqn: Iqn,
    /// Volume names; the index in this list is the LUN number.
    pub luns: Vec<VolumeName>,
    /// `None` admits any initiator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_initiators: Option<Vec<Iqn>>,
    /// Initiators must authenticate with these credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chap: Option<ChapCredentials>,
    /// The target authenticates itself to initiators with these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mutual_chap: Option<ChapCredentials>,
    #[serde(default)]
    pub read_only: bool,
}

/// A CHAP user name and secret (RFC 7143 §12.1.3).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChapCredentials {
    pub user: String,
    pub secret: String,
}

impl fmt::Debug for ChapCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Debug output lands in logs; the secret must not.
        f.debug_struct("ChapCredentials")
            .field("user", &self.user)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl Config {
    /// Parses and validates a configuration.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        validate::parse(text)
    }

    /// Reads, parses and validates a configuration file. Every error names
    /// the file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
            path: path.to_owned(),
            error,
        })?;
        Config::from_toml_str(&text).map_err(|error| ConfigError::InFile {
            path: path.to_owned(),
            error: Box::new(error),
        })
    }

    /// What `reservoir serve` runs without a file: one 1 GiB RAM volume
    /// `vol0`, exported as LUN 0 of `iqn.2026-11.io.reservoir:vol0` on
    /// 127.0.0.1:3260, state under `./reservoir-data`.
    pub fn default_appliance() -> Config {
        let vol0: VolumeName = "vol0".parse().expect("literal volume name is valid");
        Config {
            server: ServerConfig {
                data_dir: PathBuf::from("./reservoir-data"),
                rpc_socket: None,
                reactors: None,
                io_workers: DEFAULT_IO_WORKERS,
            },
            portals: vec![PortalConfig {
                listen: SocketAddr::from((Ipv4Addr::LOCALHOST, ISCSI_PORT)),
            }],
            volumes: vec![VolumeConfig {
                name: vol0.clone(),
                backend: Backend::Malloc,
                size: Some(ByteSize::gib(1)),
                block_size: BlockSizeConfig::B512,
                snapshots: SnapshotConfig::default(),
            }],
            targets: vec![TargetConfig {
                iqn: "iqn.2026-11.io.reservoir:vol0"
                    .parse()
                    .expect("literal IQN is valid"),
                luns: vec![vol0],
                allowed_initiators: None,
                chap: None,
                mutual_chap: None,
                read_only: false,
            }],
        }
    }

    /// The configuration as TOML that [`Config::from_toml_str`] reads back
    /// to an equal value. It includes CHAP secrets: write it only where the
    /// configuration file itself may go.
    pub fn to_toml_string(&self) -> String {
        toml::to_string(self).expect("the configuration always serializes to TOML")
    }

    pub fn volume(&self, name: &VolumeName) -> Option<&VolumeConfig> {
        self.volumes.iter().find(|volume| &volume.name == name)
    }

    pub fn target(&self, iqn: &Iqn) -> Option<&TargetConfig> {
        self.targets.iter().find(|target| &target.iqn == iqn)
    }
}

impl Serialize for Config {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        RawConfig::from(self).serialize(serializer)
    }
}

/// A complete, commented configuration: the shape of every key, with the
/// defaults noted. `reservoir` prints it and the docs ship it; a test makes
/// sure it parses.
pub fn example_toml() -> &'static str {
    include_str!("example.toml")
}
