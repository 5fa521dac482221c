//! `Device::parse` and `execute` never panic, whatever the CDB and data.

mod common;

use common::*;
use proptest::prelude::*;
use reservoir_scsi::{AlignedBuf, Status};

/// Opcodes the device implements, so the generator reaches past the opcode
/// check most of the time.
const OPCODES: &[u8] = &[
    0x00, 0x03, 0x08, 0x0A, 0x12, 0x15, 0x16, 0x17, 0x1A, 0x1B, 0x1E, 0x25, 0x28, 0x2A, 0x2E, 0x2F,
    0x34, 0x35, 0x41, 0x42, 0x55, 0x56, 0x57, 0x5A, 0x88, 0x89, 0x8A, 0x8B, 0x8E, 0x8F, 0x90, 0x91,
    0x93, 0x9E, 0xA0, 0xA3, 0xA8, 0xAA, 0xAE, 0xAF,
];

fn cdb() -> impl Strategy<Value = Vec<u8>> {
    (
        prop_oneof![prop::sample::select(OPCODES), any::<u8>()],
        prop::collection::vec(any::<u8>(), 5..16),
        any::<u8>(),
    )
        .prop_map(|(op, mut rest, sa)| {
            // Keep small values in the length/LBA bytes half of the time so
            // that commands reach execution, not only range checks.
            if sa & 1 == 0 {
                for b in rest.iter_mut().skip(1) {
                    *b &= 0x03;
                }
            }
            if op == 0x9E || op == 0xA3 {
                rest[0] = (rest[0] & 0xE0) | [0x10, 0x12, 0x0C, 0x0D][(sa >> 1) as usize % 4];
            }
            let mut v = vec![op];
            v.extend(rest);
            v
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn parse_and_execute_never_panic(
        cdbs in prop::collection::vec(cdb(), 1..4),
        data in prop::collection::vec(any::<u8>(), 0..2048),
        lun in prop_oneof![Just(1u64), Just(0u64), any::<u64>()],
    ) {
        let f = fixture(Opts { blocks: 64, ..Opts::default() });
        let mut n = f.device.new_nexus(reservoir_scsi::InitiatorPort { name: "p".into(), isid: [0; 6] });
        let mut other = f.device.new_nexus(reservoir_scsi::InitiatorPort { name: "q".into(), isid: [1; 6] });
        for cdb in cdbs {
            for nexus in [&mut n, &mut other] {
                let mut data_in = AlignedBuf::new();
                match f.device.parse(lun, &cdb) {
                    Ok(cmd) => {
                        let c = f.device.execute(nexus, &cmd, &data, &mut data_in);
                        prop_assert!(data_in.len() as u64 <= cmd.transfer().bytes);
                        prop_assert_eq!(c.status == Status::CheckCondition, c.sense.is_some());
                        if let Some(s) = c.sense {
                            prop_assert!(s.to_fixed_bytes().len() >= 18);
                        }
                    }
                    Err(c) => prop_assert_eq!(c.status, Status::CheckCondition),
                }
            }
        }
    }
}
