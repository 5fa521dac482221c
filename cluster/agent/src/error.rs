//! The crate's one error type.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node configuration is invalid; the message says which field.
    #[error("invalid node configuration: {0}")]
    Config(String),

    #[error("cannot parse node configuration {path}: {source}")]
    ConfigSyntax {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },

    /// A node has restarted 2^20 times; its keys can no longer be told from
    /// older ones. Remove the state file and every registration by hand.
    #[error("node generation exhausted: clear this node's state file and its registrations")]
    GenerationExhausted,

    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("corrupt node state file {path}: {source}")]
    State {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    #[error("cannot attach {lun}: {source}")]
    Attach {
        lun: String,
        #[source]
        source: reservoir_initiator::Error,
    },

    #[error("heartbeat socket: {0}")]
    Network(#[source] std::io::Error),
}
