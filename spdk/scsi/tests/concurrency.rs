//! COMPARE AND WRITE is atomic against other writers (SBC-4 5.3).

mod common;

use std::sync::Arc;
use std::thread;

use common::*;
use reservoir_scsi::{SenseKey, Status};

fn caw(lba: u64) -> Vec<u8> {
    let mut c = cdb16(0x89, 0, lba, 0);
    c[13] = 1;
    c
}

fn block_with(counter: u64) -> Vec<u8> {
    let mut b = vec![0u8; BS];
    b[..8].copy_from_slice(&counter.to_be_bytes());
    b
}

/// Threads increment a counter in block 0 with read + COMPARE AND WRITE.
/// A lost update would let two threads succeed from the same value, and
/// the final counter would be lower than the number of successes.
#[test]
fn compare_and_write_increments_are_never_lost() {
    let f = Arc::new(fixture(Opts::default()));
    const THREADS: usize = 4;
    const ATTEMPTS: usize = 300;
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let f = Arc::clone(&f);
            thread::spawn(move || {
                let mut n = f.nexus(&format!("t{t}"));
                let mut wins = 0u64;
                for i in 0..ATTEMPTS {
                    let (c, cur) = f.run(&mut n, 1, &cdb10(0x28, 0, 0, 1), &[]);
                    assert_eq!(c.status, Status::Good);
                    let value = u64::from_be_bytes(cur[..8].try_into().unwrap());
                    let data = [cur.clone(), block_with(value + 1)].concat();
                    let (c, _) = f.run(&mut n, 1, &caw(0), &data);
                    match c.status {
                        Status::Good => wins += 1,
                        _ => assert_sense(&c, SenseKey::Miscompare, 0x1D, 0),
                    }
                    // Plain writes to a neighbouring block in the same stripe.
                    let (c, _) = f.run(
                        &mut n,
                        1,
                        &cdb10(0x2A, 0, 1 + t as u32, 1),
                        &block_with(i as u64),
                    );
                    assert_eq!(c.status, Status::Good);
                }
                wins
            })
        })
        .collect();
    let wins: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let mut n = f.nexus("check");
    let (_, d) = f.run(&mut n, 1, &cdb10(0x28, 0, 0, 1), &[]);
    assert_eq!(u64::from_be_bytes(d[..8].try_into().unwrap()), wins);
    assert!(wins > 0);
}
