//! JSON-RPC 2.0 over the daemon's Unix socket (SPDK's convention): one JSON
//! value per line in each direction. The method table lives in
//! [`methods`]; this module only frames and dispatches.

mod backups;
mod client;
mod methods;
mod protocol;
mod server;
mod snapshots;

pub use client::Client;
pub use methods::Api;
pub use server::RpcServer;
