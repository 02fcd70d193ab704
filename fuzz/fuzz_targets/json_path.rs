//! Fuzz target: arbitrary bytes as a JSON body through the extractor
//! (route conditions and key rules). The first byte picks the charset and
//! whether the tap is truncated.
#![no_main]

mod common;

use libfuzzer_sys::fuzz_target;

use waybill::extract::Problem;

fuzz_target!(|data: &[u8]| {
    let (sent, observation) = common::observe_text("/json", "application/json", data);
    let Some(observation) = observation else {
        return;
    };
    // A whole body read as UTF-8 (no charset or `utf-8`, no UTF-16
    // byte-order mark) that is not UTF-8 gives no key, and says why: the
    // scan checks UTF-8 as it classifies, so a byte it let through would
    // show here.
    let utf16_bom = sent.body.starts_with(&[0xFF, 0xFE]) || sent.body.starts_with(&[0xFE, 0xFF]);
    let read_as_utf8 = matches!(sent.charset, "" | "; charset=utf-8") && !utf16_bom;
    if read_as_utf8 && !sent.truncated && std::str::from_utf8(sent.body).is_err() {
        assert!(
            observation.keys.is_empty(),
            "keys {:?} from a body that is not UTF-8",
            observation.keys
        );
        assert!(
            observation.problems.contains(&Problem::InvalidUtf8),
            "problems {:?} for a body that is not UTF-8",
            observation.problems
        );
    }
});
