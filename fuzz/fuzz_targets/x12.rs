//! Fuzz target: arbitrary bytes as a x12 body through the extractor
//! (route conditions and key rules). The first byte picks the charset and
//! whether the tap is truncated.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

/// Charsets the first byte chooses between.
const CHARSETS: [&str; 4] = [
    "",
    "; charset=utf-8",
    "; charset=iso-8859-1",
    "; charset=utf-16",
];

fuzz_target!(|data: &[u8]| {
    let (selector, body) = common::split(data);
    let charset = CHARSETS[usize::from(selector) % CHARSETS.len()];
    let content_type = format!("application/edi-x12{charset}");
    common::observe(
        "/edi",
        &[("content-type", content_type.as_str())],
        body,
        selector & 0x80 != 0,
    );
});
