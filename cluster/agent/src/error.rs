//! The crate's one error type.

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The node configuration is invalid; the message says which field.
    #[error("invalid node configuration: {0}")]
    Config(String),

    /// A node has restarted 2^20 times; its keys can no longer be told from
    /// older ones. Remove the state file and every registration by hand.
    #[error("node generation exhausted: clear this node's state file and its registrations")]
    GenerationExhausted,
}
