//! The crate's one error type. Every message names where the problem is
//! (a file, a TOML line and column, a field path such as `volume[1].size`)
//! and what to do about it.

use std::fmt;
use std::io;
use std::path::PathBuf;

use crate::size::{BlockSizeConfig, ByteSize};
use crate::VolumeName;

/// Where a value sits in the configuration, written the way an operator
/// reads the file: `server.data_dir`, `volume[1].size`, `target[0].luns[2]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FieldPath(String);

impl FieldPath {
    pub(crate) fn new(root: &str) -> Self {
        FieldPath(root.to_owned())
    }

    pub(crate) fn index(&self, index: usize) -> Self {
        FieldPath(format!("{}[{index}]", self.0))
    }

    pub(crate) fn field(&self, name: &str) -> Self {
        FieldPath(format!("{}.{name}", self.0))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A configuration that parses but breaks a rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("required: add `data_dir = \"/var/lib/reservoir\"` under [server]")]
    MissingDataDir,
    #[error("must not be empty: give a path")]
    EmptyPath,
    #[error(
        "an empty list runs no reactor: remove the key to use every core, or list core numbers"
    )]
    NoReactors,
    #[error("core {core} is already listed at reactors[{first}]: list each core once")]
    DuplicateReactor { core: usize, first: usize },
    #[error("io_workers = {got}: give 1 to {max} threads (default {default})", max = crate::config::MAX_IO_WORKERS, default = crate::config::DEFAULT_IO_WORKERS)]
    IoWorkers { got: usize },
    #[error("at least one portal is required: add [[portal]] with `listen = \"0.0.0.0:3260\"`")]
    NoPortals,
    #[error("same address as portal[{first}]: remove one of them")]
    DuplicatePortal { first: usize },
    #[error("name already used by volume[{first}]: give each volume its own name")]
    DuplicateVolume { first: usize },
    #[error("required for a {backend} volume: add `path = \"...\"`")]
    PathRequired { backend: &'static str },
    #[error(
        "a malloc volume lives in memory and has no path: remove `path`, or use backend = \"file\""
    )]
    PathNotAllowed,
    #[error("volume[{first}] uses the same path, and the two would overwrite each other: give each its own file or device")]
    DuplicatePath { first: usize },
    #[error("required for a {backend} volume: add e.g. `size = \"1GiB\"`")]
    SizeRequired { backend: &'static str },
    #[error("must be greater than zero")]
    ZeroSize,
    #[error("{size} is not a multiple of the {block_size}-byte block size: round it to a multiple of {block_size}")]
    SizeNotBlockMultiple {
        size: ByteSize,
        block_size: BlockSizeConfig,
    },
    #[error("{chunk} is not a power of two between 4KiB and 16MiB: use e.g. \"64KiB\"")]
    BadSnapshotChunk { chunk: ByteSize },
    #[error("IQN already used by target[{first}]: give each target its own IQN")]
    DuplicateTarget { first: usize },
    #[error("a target needs at least one LUN: list volume names, e.g. `luns = [\"vol0\"]`")]
    NoLuns,
    #[error("{count} LUNs listed; a target exports at most {max}: split them across targets")]
    TooManyLuns { count: usize, max: usize },
    #[error("no volume named \"{name}\": define it with [[volume]] or fix the name")]
    UnknownVolume { name: VolumeName },
    #[error("volume \"{name}\" is already LUN {first} of this target: list it once")]
    DuplicateLun { name: VolumeName, first: usize },
    #[error(
        "an empty list admits no initiator: remove the key to admit any, or list initiator IQNs"
    )]
    NoInitiators,
    #[error("already listed at allowed_initiators[{first}]: list each initiator once")]
    DuplicateInitiator { first: usize },
    #[error("CHAP user name is {len} bytes: use 1 to 255 bytes")]
    ChapUserLength { len: usize },
    #[error("CHAP secret is {len} bytes: use 12 to 255 bytes (RFC 7143 §12.1.3 asks for at least 96 bits)")]
    ChapSecretLength { len: usize },
    #[error(
        "mutual CHAP needs initiator CHAP too: add `chap = {{ user = \"...\", secret = \"...\" }}`"
    )]
    MutualChapWithoutChap,
    #[error("must differ from chap.secret: one secret in both directions invites reflection attacks (RFC 7143 §12.1.3)")]
    MutualChapSameSecret,
}

/// One broken rule and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub path: FieldPath,
    pub problem: Problem,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.problem)
    }
}

/// A TOML error reduced to what is safe to print.
///
/// `toml::de::Error` keeps the whole input, CHAP secrets included, and shows
/// it in `Debug` and in its source snippet; this keeps only the position and
/// the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TomlError {
    /// 1-based; `None` when the toml crate gave no position.
    pub line: Option<usize>,
    /// 1-based, in characters.
    pub column: Option<usize>,
    pub message: String,
}

impl TomlError {
    pub(crate) fn new(error: &toml::de::Error, text: &str) -> Self {
        let position = error.span().and_then(|span| {
            // An error at end of input points after the final newline;
            // report it at the end of the last line, as the toml crate does.
            let at = if span.start == text.len() && text.ends_with('\n') {
                span.start - 1
            } else {
                span.start
            };
            let before = text.get(..at)?;
            let line_start = before.rfind('\n').map_or(0, |i| i + 1);
            Some((
                before.matches('\n').count() + 1,
                before[line_start..].chars().count() + 1,
            ))
        });
        TomlError {
            line: position.map(|(line, _)| line),
            column: position.map(|(_, column)| column),
            message: error.message().trim().replace('\n', "; "),
        }
    }
}

impl fmt::Display for TomlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let (Some(line), Some(column)) = (self.line, self.column) {
            write!(f, "line {line}, column {column}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// Why a configuration was rejected.
///
/// Messages embed their cause (the TOML error with its line and column, the
/// I/O error) rather than chaining it as `source()`, so that printing the
/// error once shows everything and printing the chain shows nothing twice.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration file {}: {error}", path.display())]
    Read { path: PathBuf, error: io::Error },
    #[error("{}: {error}", path.display())]
    InFile {
        path: PathBuf,
        error: Box<ConfigError>,
    },
    /// Not TOML at all; the message carries line and column.
    #[error("invalid TOML at {0}")]
    Syntax(TomlError),
    /// Valid TOML, but a value has the wrong type or format, a required key
    /// is missing, or a key is unknown. `path` is as deep as the deserializer
    /// got; the message carries line and column.
    #[error("{path}: {error}")]
    Field { path: FieldPath, error: TomlError },
    /// Every rule the configuration breaks, one per line.
    #[error("{}", DisplayViolations(.0))]
    Invalid(Vec<Violation>),
}

impl ConfigError {
    /// The error without the file it came from.
    pub fn innermost(&self) -> &ConfigError {
        match self {
            ConfigError::InFile { error, .. } => error.innermost(),
            other => other,
        }
    }

    /// The broken rules, if the configuration parsed but was invalid.
    pub fn violations(&self) -> &[Violation] {
        match self.innermost() {
            ConfigError::Invalid(violations) => violations,
            _ => &[],
        }
    }
}

struct DisplayViolations<'a>(&'a [Violation]);

impl fmt::Display for DisplayViolations<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, violation) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{violation}")?;
        }
        Ok(())
    }
}
