//! Fuzz target: arbitrary bytes through the HTTP/1 codec
//! (`waybill::proxy::h1`): a request head (or, when the first byte is odd,
//! a response head) parsed, framed and rewritten, and what follows it fed
//! to the chunked decoder whole and again cut at two points taken from
//! the input. Invariants: no panic; every range the codec reports lies
//! inside its input; the chunked decoder gives the same data, trailers,
//! end and error at any split.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waybill::proxy::h1::{
    decode_split, request_framing, response_framing, write_request, write_response, HostRewrite,
    MethodKind, Parsed, RequestHead, RequestRewrite, ResponseHead, ResponseRewrite, Version,
};

/// Parses, frames and rewrites a request head at the start of `input`:
/// its length, 0 when there is none.
fn request(selector: u8, input: &[u8]) -> usize {
    let mut head = RequestHead::default();
    let Ok(Parsed::Complete(len)) = head.parse(input) else { return 0 };
    for line in head.lines.as_slice() {
        assert!(line.name.end as usize <= len && line.value.end as usize <= len);
    }
    let _ = request_framing(input, &head);
    let rewrite = RequestRewrite {
        base_path: b"/base",
        host: HostRewrite::Preserve { fallback: b"up:80" },
        forwarded_for: Some([192, 0, 2, 1].into()),
        traceparent: (selector & 2 != 0).then_some(&b"00-01-02-01"[..]),
        chunked: selector & 4 != 0,
    };
    let _ = write_request(input, &head, &rewrite, &mut Vec::new());
    len
}

/// The same for a response head.
fn response(input: &[u8]) -> usize {
    let mut head = ResponseHead::default();
    let Ok(Parsed::Complete(len)) = head.parse(input) else { return 0 };
    let _ = response_framing(input, &head, MethodKind::Other);
    let rewrite = ResponseRewrite {
        version: Version::Http11,
        chunked: true,
        drop_content_length: true,
        connection: None,
    };
    write_response(input, &head, &rewrite, &mut Vec::new());
    len
}

fuzz_target!(|data: &[u8]| {
    let Some((&selector, input)) = data.split_first() else { return };
    // The chunked decoder gets what follows a head, or the whole input.
    let len = if selector & 1 == 0 { request(selector, input) } else { response(input) };
    let body = &input[len..];
    let whole = decode_split(body, &[]);
    let cut = |at: u8| usize::from(at) * body.len() / 256;
    let mut splits = [cut(selector), cut(selector.rotate_left(3))];
    splits.sort_unstable();
    let split = decode_split(body, &splits);
    if let Ok((_, _, Some(end))) = &whole {
        assert!(*end <= body.len());
    }
    assert_eq!(whole, split);
});
