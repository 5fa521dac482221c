//! Shared test fixtures: a server on a free port, volumes with random
//! writes, and image comparison.

#![allow(dead_code)]

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;

use rand::{Rng, SeedableRng};
use reservoir_backup::{
    BackupServer, ChangedChunks, ChunkBytes, Client, ServerHandle, ServerOptions, Token,
};
use reservoir_bdev::{Bdev, BlockCount, BlockSize, Durability, Lba, MallocBdev};
use reservoir_snapshot::{ChangeMethod, ChangedExtent, ChangedSet, ChunkSize};

pub const CHUNK: u32 = 64 << 10;

pub fn token() -> Token {
    Token::new(b"test-token-0123456789").unwrap()
}

/// Checkpoints every 256 KiB so small test volumes have several.
pub fn options() -> ServerOptions {
    ServerOptions {
        checkpoint_bytes: 256 << 10,
    }
}

pub fn server(repo: &Path) -> ServerHandle {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    BackupServer::spawn(listener, repo, token(), options()).unwrap()
}

pub fn client(s: &ServerHandle) -> Client {
    Client::new(s.local_addr(), token()).unwrap()
}

pub fn malloc(name: &str, bytes: u64) -> Arc<dyn Bdev> {
    Arc::new(MallocBdev::new(name, BlockSize::B512, BlockCount(bytes / 512)).unwrap())
}

pub fn read_all(b: &dyn Bdev) -> Vec<u8> {
    let mut v = vec![0u8; b.geometry().size_bytes() as usize];
    b.read(Lba(0), &mut v).unwrap();
    v
}

/// Writes random data into `n` random chunks (some left sparse, some
/// overwritten with zeroes); returns the chunk offsets written, sorted.
pub fn scribble(b: &dyn Bdev, seed: u64, n: usize) -> Vec<u64> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let size = b.geometry().size_bytes();
    let chunks = size / u64::from(CHUNK);
    let mut written = Vec::new();
    for _ in 0..n {
        let c = rng.gen_range(0..chunks);
        let mut buf = vec![0u8; CHUNK as usize];
        if rng.gen_bool(0.8) {
            rng.fill(&mut buf[..]);
            // Partly zero chunks must not be taken for zero ones.
            let z = rng.gen_range(0..CHUNK as usize);
            buf[..z].fill(0);
        }
        b.write(Lba(c * u64::from(CHUNK) / 512), &buf, Durability::Cached)
            .unwrap();
        written.push(c * u64::from(CHUNK));
    }
    written.sort();
    written.dedup();
    written
}

pub fn changed(offsets: &[u64]) -> ChangedChunks {
    let set = ChangedSet {
        extents: offsets
            .iter()
            .map(|&offset| ChangedExtent {
                offset,
                len: u64::from(CHUNK),
            })
            .collect(),
        chunk_size: ChunkSize::new(CHUNK).unwrap(),
        total_bytes: offsets.len() as u64 * u64::from(CHUNK),
        method: ChangeMethod::Tracked,
    };
    ChangedChunks::from_changed_set(&set).unwrap()
}

pub fn full(b: &dyn Bdev) -> ChangedChunks {
    ChangedChunks::full(b.geometry().size_bytes(), ChunkBytes::new(CHUNK).unwrap())
}

pub fn assert_same(a: &[u8], b: &[u8], what: &str) {
    assert_eq!(a.len(), b.len(), "{what}: sizes differ");
    if let Some(i) = a.iter().zip(b).position(|(x, y)| x != y) {
        panic!("{what}: first difference at byte {i}");
    }
}

pub fn no_progress() -> impl FnMut(&reservoir_backup::Progress) + Send {
    |_| {}
}
