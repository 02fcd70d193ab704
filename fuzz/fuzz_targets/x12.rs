//! Fuzz target: arbitrary bytes as an X12 body through the extractor
//! (route conditions and key rules). The first byte picks the charset and
//! whether the tap is truncated.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::observe_text("/edi", "application/edi-x12", data);
});
