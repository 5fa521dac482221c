//! From TOML text to a validated [`Config`], in three steps:
//!
//! 1. TOML syntax (errors carry line and column);
//! 2. deserialization into the file's own shape (`Raw*` here), which checks
//!    types, value formats (IQNs, sizes) and unknown keys, with the field
//!    path tracked by `serde_path_to_error`;
//! 3. the cross-field rules below, which collect every violation so that an
//!    operator fixes them all in one pass.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::{
    Backend, ChapCredentials, Config, PortalConfig, ServerConfig, SnapshotConfig, TargetConfig,
    VolumeConfig, DEFAULT_IO_WORKERS, MAX_IO_WORKERS,
};
use crate::error::{ConfigError, FieldPath, Problem, TomlError, Violation};
use crate::names::VolumeName;
use crate::size::{BlockSizeConfig, ByteSize};

/// SAM-5 allows far more, but 256 LUNs fit the single-level peripheral
/// device LUN addressing that every initiator handles, and keep REPORT LUNS
/// to one small response.
pub const MAX_LUNS_PER_TARGET: usize = 256;

/// RFC 7143 §12.1.3: CHAP secrets of at least 96 bits. The upper bound
/// keeps secrets within what common initiators' secret buffers hold.
const CHAP_SECRET_LEN: std::ops::RangeInclusive<usize> = 12..=255;
const CHAP_USER_LEN: std::ops::RangeInclusive<usize> = 1..=255;

/// The file's shape: `[[volume]]` rather than `volumes`, `backend` and
/// `path` as two keys.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RawConfig {
    #[serde(default)]
    server: Option<RawServer>,
    #[serde(default, rename = "portal")]
    portals: Vec<PortalConfig>,
    #[serde(default, rename = "volume")]
    volumes: Vec<RawVolume>,
    #[serde(default, rename = "target")]
    targets: Vec<TargetConfig>,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rpc_socket: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reactors: Option<Vec<usize>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    io_workers: Option<usize>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum BackendKind {
    Malloc,
    File,
    Device,
}

impl BackendKind {
    fn name(self) -> &'static str {
        match self {
            BackendKind::Malloc => "malloc",
            BackendKind::File => "file",
            BackendKind::Device => "device",
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVolume {
    name: VolumeName,
    backend: BackendKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    path: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    size: Option<ByteSize>,
    #[serde(default)]
    block_size: BlockSizeConfig,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    snapshot_chunk_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diff_area: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diff_area_size: Option<ByteSize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    diff_area_device: Option<PathBuf>,
}

/// Copy-on-write chunk sizes the snapshot engine accepts.
const SNAPSHOT_CHUNK: std::ops::RangeInclusive<u64> = (4 << 10)..=(16 << 20);

impl From<&Config> for RawConfig {
    fn from(config: &Config) -> Self {
        let ServerConfig {
            data_dir,
            rpc_socket,
            reactors,
            io_workers,
        } = config.server.clone();
        RawConfig {
            server: Some(RawServer {
                data_dir: Some(data_dir),
                rpc_socket,
                reactors,
                io_workers: Some(io_workers),
            }),
            portals: config.portals.clone(),
            volumes: config.volumes.iter().map(RawVolume::from).collect(),
            targets: config.targets.clone(),
        }
    }
}

impl From<&VolumeConfig> for RawVolume {
    fn from(volume: &VolumeConfig) -> Self {
        let (backend, path) = match &volume.backend {
            Backend::Malloc => (BackendKind::Malloc, None),
            Backend::File { path } => (BackendKind::File, Some(path.clone())),
            Backend::Device { path } => (BackendKind::Device, Some(path.clone())),
        };
        RawVolume {
            name: volume.name.clone(),
            backend,
            path,
            size: volume.size,
            block_size: volume.block_size,
            snapshot_chunk_size: volume.snapshots.chunk_size,
            diff_area: volume.snapshots.diff_area.clone(),
            diff_area_size: volume.snapshots.diff_area_size,
            diff_area_device: volume.snapshots.diff_area_device.clone(),
        }
    }
}

pub(crate) fn parse(text: &str) -> Result<Config, ConfigError> {
    // Syntax first, on its own, so that a syntax error is never reported
    // against whatever field the deserializer happened to be in.
    text.parse::<toml::Table>()
        .map_err(|error| ConfigError::Syntax(TomlError::new(&error, text)))?;
    let raw: RawConfig =
        serde_path_to_error::deserialize(toml::Deserializer::new(text)).map_err(|error| {
            let path = error.path().to_string();
            ConfigError::Field {
                path: FieldPath::new(if path == "." { "(top level)" } else { &path }),
                error: TomlError::new(error.inner(), text),
            }
        })?;
    build(raw).map_err(ConfigError::Invalid)
}

/// Collects violations; each rule pushes where and what.
#[derive(Default)]
struct Checker {
    violations: Vec<Violation>,
}

impl Checker {
    fn report(&mut self, path: FieldPath, problem: Problem) {
        self.violations.push(Violation { path, problem });
    }

    /// Reports every repeat of an earlier key: `(index, index of first)`.
    fn repeats<K: Eq + Hash>(items: impl IntoIterator<Item = K>) -> Vec<(usize, usize)> {
        let mut first_seen = HashMap::new();
        items
            .into_iter()
            .enumerate()
            .filter_map(|(i, key)| {
                let first = *first_seen.entry(key).or_insert(i);
                (first != i).then_some((i, first))
            })
            .collect()
    }
}

fn build(raw: RawConfig) -> Result<Config, Vec<Violation>> {
    let mut check = Checker::default();
    let server = check_server(&mut check, raw.server);
    check_portals(&mut check, &raw.portals);
    // Names and paths are checked on the file's volumes, so that a volume
    // with some other mistake still counts as defined for the targets.
    check_volume_uniqueness(&mut check, &raw.volumes);
    let names: Vec<VolumeName> = raw.volumes.iter().map(|v| v.name.clone()).collect();
    let volumes: Vec<VolumeConfig> = raw
        .volumes
        .into_iter()
        .enumerate()
        .filter_map(|(i, volume)| check_volume(&mut check, i, volume))
        .collect();
    check_targets(&mut check, &raw.targets, &names);
    match server {
        Some(server) if check.violations.is_empty() => Ok(Config {
            server,
            portals: raw.portals,
            volumes,
            targets: raw.targets,
        }),
        _ => Err(check.violations),
    }
}

fn check_server(check: &mut Checker, raw: Option<RawServer>) -> Option<ServerConfig> {
    let path = FieldPath::new("server");
    let Some(RawServer {
        data_dir,
        rpc_socket,
        reactors,
        io_workers,
    }) = raw
    else {
        check.report(path.field("data_dir"), Problem::MissingDataDir);
        return None;
    };
    match &data_dir {
        None => check.report(path.field("data_dir"), Problem::MissingDataDir),
        Some(dir) if dir.as_os_str().is_empty() => {
            check.report(path.field("data_dir"), Problem::EmptyPath);
        }
        Some(_) => {}
    }
    if rpc_socket
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        check.report(path.field("rpc_socket"), Problem::EmptyPath);
    }
    if let Some(cores) = &reactors {
        let reactors_path = path.field("reactors");
        if cores.is_empty() {
            check.report(reactors_path.clone(), Problem::NoReactors);
        }
        for (i, first) in Checker::repeats(cores) {
            check.report(
                reactors_path.index(i),
                Problem::DuplicateReactor {
                    core: cores[i],
                    first,
                },
            );
        }
    }
    let io_workers = io_workers.unwrap_or(DEFAULT_IO_WORKERS);
    if !(1..=MAX_IO_WORKERS).contains(&io_workers) {
        check.report(
            path.field("io_workers"),
            Problem::IoWorkers { got: io_workers },
        );
    }
    Some(ServerConfig {
        data_dir: data_dir?,
        rpc_socket,
        reactors,
        io_workers,
    })
}

fn check_portals(check: &mut Checker, portals: &[PortalConfig]) {
    if portals.is_empty() {
        check.report(FieldPath::new("portal"), Problem::NoPortals);
    }
    for (i, first) in Checker::repeats(portals.iter().map(|p| p.listen)) {
        check.report(
            FieldPath::new("portal").index(i).field("listen"),
            Problem::DuplicatePortal { first },
        );
    }
}

/// Turns one `[[volume]]` into a [`VolumeConfig`], or reports why not.
fn check_volume(check: &mut Checker, index: usize, raw: RawVolume) -> Option<VolumeConfig> {
    let path = FieldPath::new("volume").index(index);
    let kind = raw.backend.name();
    let backend = match (raw.backend, raw.path) {
        (BackendKind::Malloc, None) => Some(Backend::Malloc),
        (BackendKind::Malloc, Some(_)) => {
            check.report(path.field("path"), Problem::PathNotAllowed);
            None
        }
        (BackendKind::File | BackendKind::Device, None) => {
            check.report(path.field("path"), Problem::PathRequired { backend: kind });
            None
        }
        (BackendKind::File | BackendKind::Device, Some(p)) if p.as_os_str().is_empty() => {
            check.report(path.field("path"), Problem::EmptyPath);
            None
        }
        (BackendKind::File, Some(path)) => Some(Backend::File { path }),
        (BackendKind::Device, Some(path)) => Some(Backend::Device { path }),
    };
    let size_path = path.field("size");
    match raw.size {
        // A device brings its own size.
        None if matches!(raw.backend, BackendKind::Device) => {}
        None => check.report(size_path, Problem::SizeRequired { backend: kind }),
        Some(size) if size.bytes() == 0 => check.report(size_path, Problem::ZeroSize),
        Some(size) if size.bytes() % u64::from(raw.block_size.bytes()) != 0 => check.report(
            size_path,
            Problem::SizeNotBlockMultiple {
                size,
                block_size: raw.block_size,
            },
        ),
        Some(_) => {}
    }
    if let Some(chunk) = raw.snapshot_chunk_size {
        if !chunk.bytes().is_power_of_two() || !SNAPSHOT_CHUNK.contains(&chunk.bytes()) {
            check.report(
                path.field("snapshot_chunk_size"),
                Problem::BadSnapshotChunk { chunk },
            );
        }
    }
    if raw
        .diff_area
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        check.report(path.field("diff_area"), Problem::EmptyPath);
    }
    if raw
        .diff_area_device
        .as_ref()
        .is_some_and(|p| p.as_os_str().is_empty())
    {
        check.report(path.field("diff_area_device"), Problem::EmptyPath);
    }
    if raw.diff_area_size.is_some_and(|s| s.bytes() == 0) {
        check.report(path.field("diff_area_size"), Problem::ZeroSize);
    }
    Some(VolumeConfig {
        name: raw.name,
        backend: backend?,
        size: raw.size,
        block_size: raw.block_size,
        snapshots: SnapshotConfig {
            chunk_size: raw.snapshot_chunk_size,
            diff_area: raw.diff_area,
            diff_area_size: raw.diff_area_size,
            diff_area_device: raw.diff_area_device,
        },
    })
}

fn check_volume_uniqueness(check: &mut Checker, volumes: &[RawVolume]) {
    for (i, first) in Checker::repeats(volumes.iter().map(|v| &v.name)) {
        check.report(
            FieldPath::new("volume").index(i).field("name"),
            Problem::DuplicateVolume { first },
        );
    }
    // Paths compare as written: resolving links would be I/O, and two
    // spellings of one file are the operator's to avoid.
    let with_path: Vec<(usize, &PathBuf)> = volumes
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.path.as_ref().map(|p| (i, p)))
        .collect();
    for (j, first) in Checker::repeats(with_path.iter().map(|(_, p)| p)) {
        check.report(
            FieldPath::new("volume").index(with_path[j].0).field("path"),
            Problem::DuplicatePath {
                first: with_path[first].0,
            },
        );
    }
}

fn check_targets(check: &mut Checker, targets: &[TargetConfig], volumes: &[VolumeName]) {
    for (i, first) in Checker::repeats(targets.iter().map(|t| &t.iqn)) {
        check.report(
            FieldPath::new("target").index(i).field("iqn"),
            Problem::DuplicateTarget { first },
        );
    }
    for (i, target) in targets.iter().enumerate() {
        check_target(check, FieldPath::new("target").index(i), target, volumes);
    }
}

fn check_target(
    check: &mut Checker,
    path: FieldPath,
    target: &TargetConfig,
    volumes: &[VolumeName],
) {
    let luns_path = path.field("luns");
    if target.luns.is_empty() {
        check.report(luns_path.clone(), Problem::NoLuns);
    }
    if target.luns.len() > MAX_LUNS_PER_TARGET {
        check.report(
            luns_path.clone(),
            Problem::TooManyLuns {
                count: target.luns.len(),
                max: MAX_LUNS_PER_TARGET,
            },
        );
    }
    // A volume may be a LUN of several targets (shared storage), but only
    // once per target.
    for (lun, name) in target.luns.iter().enumerate() {
        if !volumes.contains(name) {
            check.report(
                luns_path.index(lun),
                Problem::UnknownVolume { name: name.clone() },
            );
        }
    }
    for (lun, first) in Checker::repeats(&target.luns) {
        check.report(
            luns_path.index(lun),
            Problem::DuplicateLun {
                name: target.luns[lun].clone(),
                first,
            },
        );
    }
    if let Some(initiators) = &target.allowed_initiators {
        let initiators_path = path.field("allowed_initiators");
        if initiators.is_empty() {
            check.report(initiators_path.clone(), Problem::NoInitiators);
        }
        for (i, first) in Checker::repeats(initiators) {
            check.report(
                initiators_path.index(i),
                Problem::DuplicateInitiator { first },
            );
        }
    }
    if let Some(chap) = &target.chap {
        check_chap(check, path.field("chap"), chap);
    }
    if let Some(mutual) = &target.mutual_chap {
        let mutual_path = path.field("mutual_chap");
        check_chap(check, mutual_path.clone(), mutual);
        match &target.chap {
            None => check.report(mutual_path, Problem::MutualChapWithoutChap),
            Some(chap) if chap.secret == mutual.secret => {
                check.report(mutual_path.field("secret"), Problem::MutualChapSameSecret);
            }
            Some(_) => {}
        }
    }
}

fn check_chap(check: &mut Checker, path: FieldPath, chap: &ChapCredentials) {
    if !CHAP_USER_LEN.contains(&chap.user.len()) {
        check.report(
            path.field("user"),
            Problem::ChapUserLength {
                len: chap.user.len(),
            },
        );
    }
    if !CHAP_SECRET_LEN.contains(&chap.secret.len()) {
        check.report(
            path.field("secret"),
            Problem::ChapSecretLength {
                len: chap.secret.len(),
            },
        );
    }
}
