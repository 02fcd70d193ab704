//! Fuzz target: arbitrary bytes as a urlencoded or multipart form body
//! (picked by the first byte, with a boundary taken from it too).
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

const TYPES: [&str; 3] = [
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=B",
    "multipart/form-data; boundary=\"----wb7MA4YWxk\"",
];

fuzz_target!(|data: &[u8]| {
    let (selector, body) = common::split(data);
    let content_type = TYPES[usize::from(selector) % TYPES.len()];
    common::observe(
        "/form",
        &[("content-type", content_type)],
        body,
        selector & 0x80 != 0,
    );
});
