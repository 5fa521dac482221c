//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is invalid; `field` is its path in the file.
    #[error("invalid node configuration: {field}: {reason}")]
    Invalid { field: String, reason: String },

    /// The configuration file is not valid TOML or has wrong types.
    #[error("invalid node configuration: {0}")]
    Parse(#[source] Box<toml::de::Error>),

    /// A node has restarted 2^20 times; its keys can no longer be told from
    /// older ones. Remove the state file and every registration by hand.
    #[error("node generation exhausted: clear this node's state file and its registrations")]
    GenerationExhausted,

    #[error("cannot {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    /// The agent's control socket answered something unexpected.
    #[error("node agent: {0}")]
    Agent(String),
}
