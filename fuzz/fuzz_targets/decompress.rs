//! Fuzz target: arbitrary bytes declared as a compressed body (gzip,
//! deflate, br, zstd or two stacked codings, picked by the first byte),
//! decoded for a regex rule. Bounds on size and ratio must hold and no
//! input may panic.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

const CODINGS: [&str; 7] = [
    "gzip",
    "deflate",
    "br",
    "zstd",
    "gzip, br",
    "zstd, gzip",
    "identity",
];

fuzz_target!(|data: &[u8]| {
    let (selector, body) = common::split(data);
    let coding = CODINGS[usize::from(selector) % CODINGS.len()];
    common::observe(
        "/raw",
        &[("content-encoding", coding)],
        body,
        selector & 0x80 != 0,
    );
});
