use std::net::SocketAddr;

#[derive(Debug, thiserror::Error)]
pub enum ReactorError {
    #[error("cannot listen on {addr}: {source} (is another target already using this port?)")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start reactor {index} on core {core}")]
    Spawn {
        index: usize,
        core: usize,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the bdev worker threads")]
    Workers {
        #[source]
        source: std::io::Error,
    },
    #[error("no reactor cores configured")]
    NoCores,
}
