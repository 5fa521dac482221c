//! The iSCSI PDU framer and decoder (header first, digests, data segment).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    reservoir_iscsi::fuzzing::decode_pdu(data);
});
