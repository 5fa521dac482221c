//! The appliance's volumes: the bdevs it opened, where they came from, and
//! the identity each one shows initiators.
//!
//! Volumes come from the config file (fixed for the daemon's life) or from
//! `volume create` at run time; the latter are recorded in
//! `<data_dir>/volumes.json` so they are back after a restart. Each
//! volume's identity (the unit serial number and NAA designator of
//! SPC-4 VPD pages 80h/83h) is generated once and kept in
//! `<data_dir>/volumes/<name>.id`, so initiators see the same device after
//! a restart.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context, Result};
use reservoir_bdev::{Bdev, BlockCount, BlockSize, FileBdev, MallocBdev};
use reservoir_scsi::{Lun, LunIdentity};
use reservoir_snapshot::{ChunkSize, SnapshotEngine, SnapshotOptions, TrackingState};
use reservoir_target_config::{BlockSizeConfig, ByteSize, VolumeConfig, VolumeName};
use serde::{Deserialize, Serialize};

use crate::store;

/// Where a volume's definition lives, which decides what may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    Config,
    Runtime,
}

#[derive(Debug)]
pub struct Volume {
    pub spec: VolumeSpec,
    pub origin: Origin,
    /// What LUNs present: the snapshot origin stacked on the backend, so
    /// every write is seen by copy-on-write and change tracking.
    pub bdev: Arc<dyn Bdev>,
    pub snapshots: Arc<SnapshotEngine>,
    pub identity: LunIdentity,
    /// LUNs that present this volume; told when its capacity changes.
    luns: Mutex<Vec<Arc<Lun>>>,
}

/// A volume's definition in the form both the config file and
/// `volumes.json` can give it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VolumeSpec {
    pub name: String,
    pub backend: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    pub size_bytes: Option<u64>,
    pub block_size: u32,
    /// Copy-on-write chunk in bytes; `None`: the engine's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_chunk_size: Option<u32>,
    /// Parent directory of the volume's snapshot state; `None`:
    /// `<data_dir>/snapshots`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_area: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_area_size: Option<u64>,
    /// A block device holding the differential area instead of a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff_area_device: Option<PathBuf>,
}

impl From<&VolumeConfig> for VolumeSpec {
    fn from(config: &VolumeConfig) -> Self {
        Self {
            name: config.name.to_string(),
            backend: config.backend.kind().to_owned(),
            path: config.backend.path().map(Path::to_owned),
            size_bytes: config.size.map(ByteSize::bytes),
            block_size: config.block_size.bytes(),
            // The config file's rules keep the chunk within u32.
            snapshot_chunk_size: config.snapshots.chunk_size.map(|c| c.bytes() as u32),
            diff_area: config.snapshots.diff_area.clone(),
            diff_area_size: config.snapshots.diff_area_size.map(ByteSize::bytes),
            diff_area_device: config.snapshots.diff_area_device.clone(),
        }
    }
}

impl VolumeSpec {
    /// Checks a spec that arrived over RPC with the config file's rules.
    pub fn validate(&self) -> Result<()> {
        self.name
            .parse::<VolumeName>()
            .with_context(|| format!("invalid volume name {:?}", self.name))?;
        let block_size = BlockSizeConfig::try_from(u64::from(self.block_size))
            .context("block_size must be 512 or 4096")?;
        match (self.backend.as_str(), &self.path) {
            ("malloc", None) => {}
            ("malloc", Some(_)) => bail!("a malloc volume has no path"),
            ("file" | "device", Some(_)) => {}
            ("file" | "device", None) => bail!("a {} volume needs a path", self.backend),
            (other, _) => bail!("unknown backend {other:?}: use malloc, file or device"),
        }
        if let Some(chunk) = self.snapshot_chunk_size {
            ChunkSize::new(chunk).context("snapshot_chunk_size")?;
        }
        if self.diff_area_size == Some(0) {
            bail!("diff_area_size must not be zero");
        }
        match self.size_bytes {
            None if self.backend != "device" => bail!("a {} volume needs a size", self.backend),
            Some(0) => bail!("size must not be zero"),
            Some(size) if size % u64::from(block_size.bytes()) != 0 => bail!(
                "size {} is not a multiple of the {}-byte block size",
                ByteSize::from_bytes(size),
                block_size.bytes()
            ),
            _ => Ok(()),
        }
    }

    fn block_size(&self) -> BlockSize {
        BlockSize::from_bytes(self.block_size).unwrap_or_default()
    }
}

impl Volume {
    pub fn attach_lun(&self, lun: Arc<Lun>) {
        self.luns.lock().expect("lun list lock").push(lun);
    }

    pub fn exported(&self) -> bool {
        !self.luns.lock().expect("lun list lock").is_empty()
    }
}

#[derive(Debug)]
pub struct Volumes {
    data_dir: PathBuf,
    volumes: Mutex<BTreeMap<String, Arc<Volume>>>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct RuntimeVolumes {
    volumes: Vec<VolumeSpec>,
}

#[derive(Debug, Serialize, Deserialize)]
struct StoredIdentity {
    serial: String,
    naa: String,
}

impl Volumes {
    /// Opens every volume of the config file and every volume created at
    /// run time before the last stop.
    pub fn open(data_dir: &Path, configured: &[VolumeConfig]) -> Result<Self> {
        let registry = Self {
            data_dir: data_dir.to_owned(),
            volumes: Mutex::new(BTreeMap::new()),
        };
        for config in configured {
            registry.insert(VolumeSpec::from(config), Origin::Config, false)?;
        }
        for spec in registry.load_runtime()?.volumes {
            if registry.get(&spec.name).is_some() {
                bail!(
                    "volume {:?} is in the config file and was also created with `volume create`; \
                     remove one of them (the latter from {})",
                    spec.name,
                    registry.runtime_path().display()
                );
            }
            registry.insert(spec, Origin::Runtime, false)?;
        }
        Ok(registry)
    }

    pub fn get(&self, name: &str) -> Option<Arc<Volume>> {
        self.volumes.lock().expect("volume lock").get(name).cloned()
    }

    pub fn list(&self) -> Vec<Arc<Volume>> {
        self.volumes
            .lock()
            .expect("volume lock")
            .values()
            .cloned()
            .collect()
    }

    /// `volume create`: opens (creating if needed) and records a new volume.
    pub fn create(&self, spec: VolumeSpec) -> Result<Arc<Volume>> {
        spec.validate()?;
        if self.get(&spec.name).is_some() {
            bail!("a volume named {:?} already exists", spec.name);
        }
        let volume = self.insert(spec, Origin::Runtime, true)?;
        self.save_runtime()?;
        Ok(volume)
    }

    /// `volume delete`: forgets a run-time volume. Backing files and
    /// devices are left as they are; their data belongs to the operator.
    pub fn delete(&self, name: &str) -> Result<()> {
        let volume = self
            .get(name)
            .with_context(|| format!("no volume named {name:?}"))?;
        if volume.origin == Origin::Config {
            bail!("volume {name:?} comes from the config file; remove it there and restart");
        }
        if volume.exported() {
            bail!("volume {name:?} is exported by a target; remove it from the target first");
        }
        if !volume.snapshots.list().is_empty() {
            bail!("volume {name:?} has snapshots; delete them first");
        }
        volume.bdev.flush().context("cannot flush the volume")?;
        volume
            .snapshots
            .close()
            .context("cannot close the volume's snapshot metadata")?;
        self.volumes.lock().expect("volume lock").remove(name);
        self.save_runtime()?;
        let _ = std::fs::remove_file(self.identity_path(name));
        let _ = std::fs::remove_dir_all(self.snapshot_dir(&volume.spec));
        Ok(())
    }

    /// `volume resize`: grows or shrinks the device and tells every LUN that
    /// presents it (CAPACITY DATA HAS CHANGED).
    pub fn resize(&self, name: &str, size_bytes: u64) -> Result<Arc<Volume>> {
        let volume = self
            .get(name)
            .with_context(|| format!("no volume named {name:?}"))?;
        let block = u64::from(volume.bdev.geometry().block_size.bytes());
        if size_bytes == 0 || !size_bytes.is_multiple_of(block) {
            bail!("size must be a non-zero multiple of the {block}-byte block size");
        }
        volume
            .bdev
            .resize(BlockCount(size_bytes / block))
            .with_context(|| format!("cannot resize volume {name:?}"))?;
        for lun in volume.luns.lock().expect("lun list lock").iter() {
            lun.capacity_changed();
        }
        if volume.origin == Origin::Runtime {
            self.save_runtime()?;
        }
        Ok(volume)
    }

    /// Flushes every volume and closes its snapshot metadata cleanly (so
    /// change tracking is trusted after the restart); used on shutdown.
    pub fn close_all(&self) -> Vec<(String, anyhow::Error)> {
        self.list()
            .into_iter()
            .filter_map(|v| {
                let flushed = v.bdev.flush().map_err(anyhow::Error::new);
                let closed = v.snapshots.close().map_err(anyhow::Error::new);
                flushed.and(closed).err().map(|e| (v.spec.name.clone(), e))
            })
            .collect()
    }

    fn insert(&self, spec: VolumeSpec, origin: Origin, create: bool) -> Result<Arc<Volume>> {
        let base = open_bdev(&spec, create || origin == Origin::Config)
            .with_context(|| format!("cannot open volume {:?}", spec.name))?;
        let snapshot_dir = self.snapshot_dir(&spec);
        if spec.backend == "malloc" {
            // A RAM volume starts empty: snapshots of its previous life
            // describe content that no longer exists.
            match std::fs::remove_dir_all(&snapshot_dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e)
                        .with_context(|| format!("cannot clear {}", snapshot_dir.display()))
                }
                _ => {}
            }
        }
        let options = SnapshotOptions {
            chunk_size: match spec.snapshot_chunk_size {
                Some(bytes) => ChunkSize::new(bytes)
                    .with_context(|| format!("volume {:?}: snapshot chunk size", spec.name))?,
                None => ChunkSize::default(),
            },
            diff_area_capacity: spec.diff_area_size,
            diff_area_device: spec.diff_area_device.clone(),
        };
        let (snapshots, report) = SnapshotEngine::open(&spec.name, base, &snapshot_dir, options)
            .with_context(|| format!("cannot open the snapshots of volume {:?}", spec.name))?;
        if let TrackingState::Untrusted { reason } = &report.tracking {
            tracing::warn!(
                volume = %spec.name,
                %reason,
                "change tracking is not trusted after an unclean stop; \
                 changed-block sets will be computed by full compare"
            );
        }
        let identity = self.identity(&spec.name)?;
        let volume = Arc::new(Volume {
            spec,
            origin,
            bdev: snapshots.origin(),
            snapshots,
            identity,
            luns: Mutex::new(Vec::new()),
        });
        self.volumes
            .lock()
            .expect("volume lock")
            .insert(volume.spec.name.clone(), volume.clone());
        Ok(volume)
    }

    /// The volume's stable identity, generated on first sight.
    fn identity(&self, name: &str) -> Result<LunIdentity> {
        let path = self.identity_path(name);
        if let Some(stored) = store::read_record::<StoredIdentity>(&path)? {
            return decode_identity(&stored)
                .with_context(|| format!("{} holds an invalid identity", path.display()));
        }
        let random: [u8; 16] = rand_bytes();
        let identity = LunIdentity {
            serial: hex(&random[..8]),
            naa: naa_from_random(random),
        };
        std::fs::create_dir_all(path.parent().expect("identity path has a parent"))?;
        store::write_record(
            &path,
            &StoredIdentity {
                serial: identity.serial.clone(),
                naa: hex(&identity.naa),
            },
        )?;
        Ok(identity)
    }

    /// The volume's own directory of snapshot state, under its configured
    /// differential-area directory or `<data_dir>/snapshots`.
    fn snapshot_dir(&self, spec: &VolumeSpec) -> PathBuf {
        spec.diff_area
            .clone()
            .unwrap_or_else(|| self.data_dir.join("snapshots"))
            .join(&spec.name)
    }

    fn identity_path(&self, name: &str) -> PathBuf {
        self.data_dir.join("volumes").join(format!("{name}.id"))
    }

    fn runtime_path(&self) -> PathBuf {
        self.data_dir.join("volumes.json")
    }

    fn load_runtime(&self) -> Result<RuntimeVolumes> {
        Ok(store::read_record(&self.runtime_path())?.unwrap_or_default())
    }

    fn save_runtime(&self) -> Result<()> {
        let volumes = self
            .list()
            .into_iter()
            .filter(|v| v.origin == Origin::Runtime)
            .map(|v| {
                let mut spec = v.spec.clone();
                spec.size_bytes = Some(v.bdev.geometry().size_bytes());
                spec
            })
            .collect();
        store::write_record(&self.runtime_path(), &RuntimeVolumes { volumes })
    }
}

fn open_bdev(spec: &VolumeSpec, create: bool) -> Result<Arc<dyn Bdev>> {
    let block_size = spec.block_size();
    let blocks = |bytes: u64| BlockCount(bytes / u64::from(block_size.bytes()));
    Ok(match (spec.backend.as_str(), &spec.path) {
        ("malloc", _) => Arc::new(MallocBdev::new(
            &spec.name,
            block_size,
            blocks(spec.size_bytes.unwrap_or_default()),
        )?),
        ("file", Some(path)) => Arc::new(FileBdev::open_file(
            &spec.name,
            path,
            block_size,
            spec.size_bytes,
            create,
        )?),
        ("device", Some(path)) => Arc::new(FileBdev::open_device(&spec.name, path, block_size)?),
        (backend, _) => bail!("backend {backend:?} needs a path"),
    })
}

/// An NAA IEEE Registered Extended designator (SPC-4 7.8.6.6.5, NAA 6h).
/// The IEEE company id is left zero: Reservoir has none registered, and
/// the 100 random bits that follow keep designators unique.
fn naa_from_random(random: [u8; 16]) -> [u8; 16] {
    let mut naa = random;
    naa[0] = 0x60;
    naa[1] = 0;
    naa[2] = 0;
    naa[3] &= 0x0f;
    naa
}

fn decode_identity(stored: &StoredIdentity) -> Result<LunIdentity> {
    let naa = unhex(&stored.naa)
        .and_then(|bytes| <[u8; 16]>::try_from(bytes).ok())
        .context("NAA designator must be 32 hex digits")?;
    Ok(LunIdentity {
        serial: stored.serial.clone(),
        naa,
    })
}

fn rand_bytes() -> [u8; 16] {
    let mut bytes = [0u8; 16];
    // getrandom(2) never fails for 16 bytes once the pool is initialised;
    // fall back to time and pid entropy rather than refuse to start.
    // SAFETY: the pointer and length describe `bytes`, which we own.
    let n = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    if n != bytes.len() as isize {
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default()
            ^ u128::from(std::process::id());
        bytes = seed.to_le_bytes();
    }
    bytes
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
