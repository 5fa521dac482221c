//! PERSISTENT RESERVE OUT/IN parsing and the APTPL record decoder: the
//! first 10 bytes are the CDB, the rest the parameter list or record.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (cdb, rest) = data.split_at(data.len().min(10));
    let _ = reservoir_pr::ProutCommand::parse(cdb, rest);
    let _ = reservoir_pr::PrinCommand::parse(cdb);
    let _ = reservoir_pr::ReservationTable::decode(rest);
});
