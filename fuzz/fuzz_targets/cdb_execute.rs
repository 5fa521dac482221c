//! The CDB parser and every command behind it: the first byte picks the CDB
//! length (6, 10, 12 or 16), the CDB follows, the rest is data-out. Runs
//! against a small RAM LUN, as one nexus, so state carries across commands
//! within a run.
#![no_main]

use std::sync::{Arc, OnceLock};

use reservoir_bdev::{BlockCount, BlockSize, MallocBdev};
use reservoir_scsi::{Device, InitiatorPort, Lun, LunIdentity, LunOptions, TargetPort};

fn device() -> &'static Device {
    static DEVICE: OnceLock<Device> = OnceLock::new();
    DEVICE.get_or_init(|| {
        let bdev = MallocBdev::new("fuzz", BlockSize::B512, BlockCount(2048)).expect("malloc");
        let lun = Lun::new(
            Arc::new(bdev),
            LunOptions {
                read_only: false,
                identity: LunIdentity {
                    serial: "fuzz".into(),
                    naa: [0x60; 16],
                },
                reservations: None,
            },
        );
        let port = TargetPort {
            name: "iqn.2026-11.io.reservoir:fuzz,t,0x0001".into(),
            relative_id: 1,
        };
        Device::new("fuzz", vec![(0, Arc::new(lun))], port)
    })
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    let len = [6, 10, 12, 16][usize::from(selector % 4)];
    if rest.len() < len {
        return;
    }
    let (cdb, data_out) = rest.split_at(len);
    let device = device();
    let mut nexus = device.new_nexus(InitiatorPort {
        name: "iqn.2026-11.io.reservoir:fuzzer".into(),
        isid: [0x80, 0, 0, 0, 0, 1],
    });
    let mut data_in = reservoir_scsi::AlignedBuf::new();
    if let Ok(command) = device.parse(u64::from(selector >> 7), cdb) {
        let _ = device.execute(&mut nexus, &command, data_out, &mut data_in);
    }
});
