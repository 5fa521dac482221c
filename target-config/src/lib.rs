//! Reservoir's configuration: the TOML file `reservoir serve` reads, parsed
//! once into validated types.
//!
//! ```
//! let config = reservoir_target_config::Config::from_toml_str(
//!     reservoir_target_config::example_toml(),
//! )?;
//! assert_eq!(config.volumes.len(), 2);
//! # Ok::<(), reservoir_target_config::ConfigError>(())
//! ```
//!
//! Every rejection names where the problem is — a TOML line and column, or a
//! field path such as `volume[1].size` or `target[0].luns[2]` — and what to
//! change. See [`example_toml`] for every key.

mod config;
mod error;
mod names;
mod size;
mod validate;

pub use config::{
    example_toml, Backend, ChapCredentials, Config, PortalConfig, ServerConfig, SnapshotConfig,
    TargetConfig, VolumeConfig, DEFAULT_IO_WORKERS, ISCSI_PORT, MAX_IO_WORKERS,
};
pub use error::{ConfigError, FieldPath, Problem, TomlError, Violation};
pub use names::{
    Iqn, IqnError, VolumeName, VolumeNameError, MAX_ISCSI_NAME_LEN, MAX_VOLUME_NAME_LEN,
};
pub use size::{BlockSizeConfig, BlockSizeError, ByteSize, ByteSizeError};
pub use validate::MAX_LUNS_PER_TARGET;

#[cfg(test)]
mod tests;
