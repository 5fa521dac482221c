//! A Vec-backed bdev and helpers to drive a `Device` like a transport would.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use reservoir_bdev::{
    Bdev, BdevError, BlockCount, BlockSize, Durability, ErrorKind, Geometry, Lba, Provisioning,
};
use reservoir_scsi::{
    AlignedBuf, Completion, Device, InitiatorPort, Lun, LunIdentity, LunOptions, Nexus, SenseKey,
    Status, TargetPort,
};

#[derive(Debug)]
pub struct VecBdev {
    pub data: Mutex<Vec<u8>>,
    pub mapped: Mutex<Vec<bool>>,
    pub geometry: Mutex<Geometry>,
    pub fail_reads: AtomicBool,
    pub fail_writes: AtomicBool,
    pub fua_writes: Mutex<u32>,
    pub flushes: Mutex<u32>,
    /// Reported as `prefers_offload`, like a file bdev.
    pub offload: AtomicBool,
    /// While set, a write that has started waits (a slow device).
    pub stall_writes: AtomicBool,
    /// Writes that have started.
    pub writes_started: AtomicU32,
}

impl VecBdev {
    pub fn new(block_size: BlockSize, blocks: u64, thin: bool, volatile_cache: bool) -> Arc<Self> {
        let bs = block_size.bytes() as usize;
        Arc::new(VecBdev {
            data: Mutex::new(vec![0; bs * blocks as usize]),
            mapped: Mutex::new(vec![!thin; blocks as usize]),
            geometry: Mutex::new(Geometry {
                block_size,
                block_count: BlockCount(blocks),
                thin_provisioned: thin,
                volatile_cache,
            }),
            fail_reads: AtomicBool::new(false),
            fail_writes: AtomicBool::new(false),
            fua_writes: Mutex::new(0),
            flushes: Mutex::new(0),
            offload: AtomicBool::new(false),
            stall_writes: AtomicBool::new(false),
            writes_started: AtomicU32::new(0),
        })
    }

    fn bs(&self) -> usize {
        self.geometry.lock().unwrap().block_size.bytes() as usize
    }

    fn check(&self, lba: Lba, len: usize) -> Result<(), BdevError> {
        let g = *self.geometry.lock().unwrap();
        let count = (len / self.bs()) as u64;
        if lba.0 + count > g.block_count.0 {
            return Err(BdevError::OutOfRange {
                lba,
                count: BlockCount(count),
                capacity: g.block_count,
            });
        }
        Ok(())
    }

    fn io_error(op: &'static str, kind: ErrorKind) -> BdevError {
        BdevError::Io {
            op,
            kind,
            source: std::io::Error::other("injected"),
        }
    }
}

impl Bdev for VecBdev {
    fn name(&self) -> &str {
        "vec"
    }

    fn geometry(&self) -> Geometry {
        *self.geometry.lock().unwrap()
    }

    fn read(&self, lba: Lba, buf: &mut [u8]) -> Result<(), BdevError> {
        if self.fail_reads.load(Ordering::Relaxed) {
            return Err(Self::io_error("read", ErrorKind::ReadFailed));
        }
        self.check(lba, buf.len())?;
        let start = lba.0 as usize * self.bs();
        buf.copy_from_slice(&self.data.lock().unwrap()[start..start + buf.len()]);
        Ok(())
    }

    fn write(&self, lba: Lba, buf: &[u8], durability: Durability) -> Result<(), BdevError> {
        if self.fail_writes.load(Ordering::Relaxed) {
            return Err(Self::io_error("write", ErrorKind::WriteFailed));
        }
        self.writes_started.fetch_add(1, Ordering::SeqCst);
        while self.stall_writes.load(Ordering::SeqCst) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        self.check(lba, buf.len())?;
        let bs = self.bs();
        let start = lba.0 as usize * bs;
        self.data.lock().unwrap()[start..start + buf.len()].copy_from_slice(buf);
        let mut mapped = self.mapped.lock().unwrap();
        for b in lba.0 as usize..lba.0 as usize + buf.len() / bs {
            mapped[b] = true;
        }
        if durability == Durability::Fua {
            *self.fua_writes.lock().unwrap() += 1;
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), BdevError> {
        *self.flushes.lock().unwrap() += 1;
        Ok(())
    }

    fn unmap(&self, lba: Lba, count: BlockCount) -> Result<(), BdevError> {
        let bs = self.bs();
        self.check(lba, count.0 as usize * bs)?;
        let start = lba.0 as usize * bs;
        self.data.lock().unwrap()[start..start + count.0 as usize * bs].fill(0);
        let mut mapped = self.mapped.lock().unwrap();
        for b in lba.0..lba.0 + count.0 {
            mapped[b as usize] = false;
        }
        Ok(())
    }

    fn provisioning(&self, lba: Lba) -> Result<(Provisioning, BlockCount), BdevError> {
        let mapped = self.mapped.lock().unwrap();
        let state = *mapped
            .get(lba.0 as usize)
            .ok_or(BdevError::Unsupported { what: "lba" })?;
        let run = mapped[lba.0 as usize..]
            .iter()
            .take_while(|&&m| m == state)
            .count();
        let p = if state {
            Provisioning::Mapped
        } else {
            Provisioning::Deallocated
        };
        Ok((p, BlockCount(run as u64)))
    }

    fn resize(&self, blocks: BlockCount) -> Result<(), BdevError> {
        let bs = self.bs();
        self.data.lock().unwrap().resize(bs * blocks.0 as usize, 0);
        self.mapped.lock().unwrap().resize(blocks.0 as usize, false);
        self.geometry.lock().unwrap().block_count = blocks;
        Ok(())
    }

    fn prefers_offload(&self) -> bool {
        self.offload.load(Ordering::Relaxed)
    }
}

pub const BLOCKS: u64 = 1024;
pub const BS: usize = 512;

pub struct Fixture {
    pub bdev: Arc<VecBdev>,
    pub lun: Arc<Lun>,
    pub device: Device,
}

pub struct Opts {
    pub thin: bool,
    pub volatile_cache: bool,
    pub read_only: bool,
    pub blocks: u64,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            thin: true,
            volatile_cache: true,
            read_only: false,
            blocks: BLOCKS,
        }
    }
}

pub fn fixture(opts: Opts) -> Fixture {
    fixture_with(opts, false)
}

/// A fixture whose bdev asks for its transfers to be offloaded.
pub fn offloaded_fixture(opts: Opts) -> Fixture {
    fixture_with(opts, true)
}

fn fixture_with(opts: Opts, offload: bool) -> Fixture {
    let bdev = VecBdev::new(BlockSize::B512, opts.blocks, opts.thin, opts.volatile_cache);
    bdev.offload.store(offload, Ordering::Relaxed);
    let lun = Arc::new(device_lun(bdev.clone(), opts.read_only));
    let device = device_with(lun.clone());
    Fixture { bdev, lun, device }
}

/// A LUN on `bdev` with a fixed identity.
pub fn device_lun(bdev: Arc<dyn Bdev>, read_only: bool) -> Lun {
    Lun::new(
        bdev,
        LunOptions {
            read_only,
            identity: LunIdentity {
                serial: "SER0001".into(),
                naa: [0x60, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
            },
            reservations: None,
        },
    )
}

/// A device with `lun` as LUN 1.
pub fn device_with(lun: Arc<Lun>) -> Device {
    Device::new(
        "iqn.2026-01.test:dev",
        vec![(1, lun)],
        TargetPort {
            name: "iqn.2026-01.test:dev,t,0x0001".into(),
            relative_id: 1,
        },
    )
}

impl Fixture {
    /// A nexus with its power-on unit attention already consumed.
    pub fn nexus(&self, name: &str) -> Nexus {
        let mut n = self.device.new_nexus(InitiatorPort {
            name: name.into(),
            isid: [0x80, 0, 0, 0, 0, 1],
        });
        let (c, _) = self.run(&mut n, 1, &[0, 0, 0, 0, 0, 0], &[]);
        assert_eq!(c.status, Status::CheckCondition);
        let (c, _) = self.run(&mut n, 1, &[0, 0, 0, 0, 0, 0], &[]);
        assert_eq!(c, Completion::good());
        n
    }

    pub fn run(
        &self,
        n: &mut Nexus,
        lun: u64,
        cdb: &[u8],
        data_out: &[u8],
    ) -> (Completion, Vec<u8>) {
        let mut data_in = AlignedBuf::new();
        let c = match self.device.parse(lun, cdb) {
            Ok(cmd) => {
                let c = self.device.execute(n, &cmd, data_out, &mut data_in);
                assert!(data_in.len() as u64 <= cmd.transfer().bytes);
                c
            }
            Err(c) => c,
        };
        (c, data_in.to_vec())
    }
}

#[track_caller]
pub fn assert_sense(c: &Completion, key: SenseKey, asc: u8, ascq: u8) {
    assert_eq!(c.status, Status::CheckCondition, "{c:?}");
    let s = c.sense.expect("sense data");
    assert_eq!((s.key(), s.asc_ascq()), (key, (asc, ascq)), "{c:?}");
}

#[track_caller]
pub fn assert_good(c: &Completion) {
    assert_eq!(*c, Completion::good());
}

pub fn cdb10(op: u8, flags: u8, lba: u32, len: u16) -> Vec<u8> {
    let mut c = vec![0u8; 10];
    c[0] = op;
    c[1] = flags;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[7..9].copy_from_slice(&len.to_be_bytes());
    c
}

pub fn cdb16(op: u8, flags: u8, lba: u64, len: u32) -> Vec<u8> {
    let mut c = vec![0u8; 16];
    c[0] = op;
    c[1] = flags;
    c[2..10].copy_from_slice(&lba.to_be_bytes());
    c[10..14].copy_from_slice(&len.to_be_bytes());
    c
}

pub fn cdb12(op: u8, flags: u8, lba: u32, len: u32) -> Vec<u8> {
    let mut c = vec![0u8; 12];
    c[0] = op;
    c[1] = flags;
    c[2..6].copy_from_slice(&lba.to_be_bytes());
    c[6..10].copy_from_slice(&len.to_be_bytes());
    c
}
