//! The Login/Text key=value parser.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    reservoir_iscsi::fuzzing::parse_login_keys(data);
});
