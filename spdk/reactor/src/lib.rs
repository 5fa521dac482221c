//! Reactors in SPDK's model: one thread per configured core, each running
//! its own poll loop over the sockets of the connections it owns.
//!
//! A connection is accepted by whichever reactor owns the listening socket,
//! handed to the reactor with the fewest connections, and lives there for the
//! whole of its life. Reactors share nothing on the I/O path: each owns its
//! `mio::Poll`, its connections and their buffers; the only cross-reactor
//! traffic is the hand-off message and a wake-up.
//!
//! Block I/O on a LUN whose bdev blocks (a file or a device) runs on a
//! shared pool of worker threads instead, and comes back to the owning
//! reactor through the same inbox and wake-up; RAM LUNs run inline.

mod affinity;
mod error;
mod pool;
mod reactor;
mod workers;

pub use error::ReactorError;
pub use pool::{ReactorPool, ReactorStats};
