//! A stored response as bytes, for the stores that keep it beyond this
//! process's memory (the embedded database, Redis): what [`encode`] writes,
//! [`decode`] reads back byte for byte: status, reason phrase (HTTP/1),
//! headers in order with repeated names, body, trailers, whether it had a
//! `Content-Length`, and when it was stored.
//!
//! Framed like the state journal: `[version u8 = 1][crc32 of the payload
//! u32 LE][payload]`, so a damaged record is recognised and skipped, never
//! replayed. Payload (integers big-endian):
//!
//! ```text
//! stored_at_ms u64 | status u16 | flags u8 (1 sized, 2 reason, 4 trailers)
//! [reason: len u16, bytes] | headers | body: len u32, bytes | [trailers: headers]
//! headers = count u32, then per value: name len u16, name, value len u32, value
//! ```
//!
//! Not kept: the original case of header names (hyper keeps it in a
//! private type), so a response restored from another store replays on
//! HTTP/1 with lower-case names; names are case-insensitive in HTTP.

use std::time::{Duration, SystemTime};

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{HeaderName, HeaderValue};
use http::{Extensions, HeaderMap, StatusCode};
use hyper::ext::ReasonPhrase;

use super::StoredResponse;

const VERSION: u8 = 1;
/// Version byte and checksum.
const HEADER: usize = 5;
const SIZED: u8 = 1;
const REASON: u8 = 2;
const TRAILERS: u8 = 4;

/// Why a record could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Damaged {
    #[error("record of unknown version {0}")]
    Version(u8),
    #[error("record checksum mismatch")]
    Checksum,
    #[error("record ends early")]
    Short,
    #[error("record holds an invalid {0}")]
    Invalid(&'static str),
}

/// The record of `response`, stored at `at`.
pub(crate) fn encode(response: &StoredResponse, at: SystemTime) -> Bytes {
    let reason = response.extensions.get::<ReasonPhrase>();
    let mut flags = 0;
    if response.sized {
        flags |= SIZED;
    }
    if reason.is_some() {
        flags |= REASON;
    }
    if response.trailers.is_some() {
        flags |= TRAILERS;
    }
    let mut payload = BytesMut::with_capacity(64 + response.body.len());
    let millis = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or_default();
    payload.put_u64(millis);
    payload.put_u16(response.status.as_u16());
    payload.put_u8(flags);
    if let Some(reason) = reason {
        // hyper reads at most the status line's length, far below 64 KiB.
        put_short(&mut payload, reason.as_bytes());
    }
    put_headers(&mut payload, &response.headers);
    put_long(&mut payload, &response.body);
    if let Some(trailers) = &response.trailers {
        put_headers(&mut payload, trailers);
    }
    let mut frame = BytesMut::with_capacity(HEADER + payload.len());
    frame.put_u8(VERSION);
    frame.put_u32_le(crc32fast::hash(&payload));
    frame.extend_from_slice(&payload);
    frame.freeze()
}

/// Reads a record: when it was stored, and the response.
pub(crate) fn decode(frame: &[u8]) -> Result<(SystemTime, StoredResponse), Damaged> {
    if frame.len() < HEADER {
        return Err(Damaged::Short);
    }
    if frame[0] != VERSION {
        return Err(Damaged::Version(frame[0]));
    }
    let payload = &frame[HEADER..];
    let crc = u32::from_le_bytes([frame[1], frame[2], frame[3], frame[4]]);
    if crc32fast::hash(payload) != crc {
        return Err(Damaged::Checksum);
    }
    let mut r = Reader(payload);
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(r.u64()?);
    let status = StatusCode::from_u16(r.u16()?).map_err(|_| Damaged::Invalid("status"))?;
    let flags = r.u8()?;
    let mut extensions = Extensions::new();
    if flags & REASON != 0 {
        let len = usize::from(r.u16()?);
        let reason = ReasonPhrase::try_from(r.take(len)?.to_vec())
            .map_err(|_| Damaged::Invalid("reason phrase"))?;
        extensions.insert(reason);
    }
    let headers = r.headers()?;
    let len = r.u32()? as usize;
    let body = Bytes::copy_from_slice(r.take(len)?);
    let trailers = if flags & TRAILERS != 0 {
        Some(r.headers()?)
    } else {
        None
    };
    if !r.0.is_empty() {
        return Err(Damaged::Invalid("length"));
    }
    let response = StoredResponse {
        status,
        headers,
        extensions,
        body,
        trailers,
        sized: flags & SIZED != 0,
    };
    Ok((at, response))
}

fn put_short(out: &mut BytesMut, bytes: &[u8]) {
    out.put_u16(u16::try_from(bytes.len()).unwrap_or(u16::MAX));
    out.extend_from_slice(&bytes[..bytes.len().min(usize::from(u16::MAX))]);
}

fn put_long(out: &mut BytesMut, bytes: &[u8]) {
    // Bodies are bounded by `max_response`, heads by the server's limits.
    out.put_u32(u32::try_from(bytes.len()).unwrap_or(u32::MAX));
    out.extend_from_slice(&bytes[..bytes.len().min(u32::MAX as usize)]);
}

fn put_headers(out: &mut BytesMut, headers: &HeaderMap) {
    out.put_u32(u32::try_from(headers.len()).unwrap_or(u32::MAX));
    for (name, value) in headers {
        put_short(out, name.as_str().as_bytes());
        put_long(out, value.as_bytes());
    }
}

/// The unread rest of a payload.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Damaged> {
        if self.0.len() < n {
            return Err(Damaged::Short);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Damaged> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8, Damaged> {
        Ok(self.array::<1>()?[0])
    }

    fn u16(&mut self) -> Result<u16, Damaged> {
        self.array().map(u16::from_be_bytes)
    }

    fn u32(&mut self) -> Result<u32, Damaged> {
        self.array().map(u32::from_be_bytes)
    }

    fn u64(&mut self) -> Result<u64, Damaged> {
        self.array().map(u64::from_be_bytes)
    }

    fn headers(&mut self) -> Result<HeaderMap, Damaged> {
        let count = self.u32()? as usize;
        // Each value takes at least 6 bytes: a damaged count cannot make
        // us reserve more than the record could hold.
        let mut headers = HeaderMap::with_capacity(count.min(self.0.len() / 6));
        for _ in 0..count {
            let len = usize::from(self.u16()?);
            let name =
                HeaderName::from_bytes(self.take(len)?).map_err(|_| Damaged::Invalid("name"))?;
            let len = self.u32()? as usize;
            let value =
                HeaderValue::from_bytes(self.take(len)?).map_err(|_| Damaged::Invalid("value"))?;
            headers.append(name, value);
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(trailers: Option<HeaderMap>, reason: Option<&'static str>) -> StoredResponse {
        let mut headers = HeaderMap::new();
        headers.append("content-type", HeaderValue::from_static("application/json"));
        headers.append("set-cookie", HeaderValue::from_static("a=1"));
        headers.append("x-label", HeaderValue::from_static("L-1"));
        headers.append("set-cookie", HeaderValue::from_static("b=2"));
        headers.append(
            "x-opaque",
            HeaderValue::from_bytes(b"caf\xe9 \x80").unwrap_or_else(|e| panic!("{e}")),
        );
        let mut extensions = Extensions::new();
        if let Some(reason) = reason {
            extensions.insert(ReasonPhrase::from_static(reason.as_bytes()));
        }
        // Every byte value, so nothing in the body is interpreted.
        let body: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
        StoredResponse {
            status: StatusCode::CREATED,
            headers,
            extensions,
            body: Bytes::from(body),
            trailers,
            sized: true,
        }
    }

    fn same(a: &StoredResponse, b: &StoredResponse) {
        assert_eq!(a.status, b.status);
        let pairs = |h: &HeaderMap| -> Vec<(String, Vec<u8>)> {
            h.iter()
                .map(|(n, v)| (n.to_string(), v.as_bytes().to_vec()))
                .collect()
        };
        assert_eq!(pairs(&a.headers), pairs(&b.headers), "headers in order");
        assert_eq!(a.body, b.body);
        assert_eq!(
            a.trailers.as_ref().map(pairs),
            b.trailers.as_ref().map(pairs)
        );
        assert_eq!(a.sized, b.sized);
        let reason = |r: &StoredResponse| {
            r.extensions
                .get::<ReasonPhrase>()
                .map(|p| p.as_bytes().to_vec())
        };
        assert_eq!(reason(a), reason(b));
    }

    #[test]
    fn a_stored_response_reads_back_byte_for_byte() {
        let at = SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        let mut trailers = HeaderMap::new();
        trailers.append("x-checksum", HeaderValue::from_static("abc"));
        for original in [
            response(None, None),
            response(Some(trailers), Some("Label Bought")),
        ] {
            let (when, back) = decode(&encode(&original, at)).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(when, at);
            same(&original, &back);
        }
    }

    #[test]
    fn an_empty_unsized_response_reads_back() {
        let original = StoredResponse {
            status: StatusCode::NO_CONTENT,
            headers: HeaderMap::new(),
            extensions: Extensions::new(),
            body: Bytes::new(),
            trailers: None,
            sized: false,
        };
        let at = SystemTime::UNIX_EPOCH;
        let (_, back) = decode(&encode(&original, at)).unwrap_or_else(|e| panic!("{e}"));
        same(&original, &back);
    }

    #[test]
    fn a_damaged_record_is_refused_not_replayed() {
        let frame = encode(&response(None, None), SystemTime::UNIX_EPOCH).to_vec();
        let mut flipped = frame.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert_eq!(decode(&flipped).err(), Some(Damaged::Checksum));
        assert_eq!(decode(&frame[..3]).err(), Some(Damaged::Short));
        let mut newer = frame.clone();
        newer[0] = 9;
        assert_eq!(decode(&newer).err(), Some(Damaged::Version(9)));
        // A cut payload with a matching checksum still ends early.
        let mut cut = frame[..frame.len() - 10].to_vec();
        let crc = crc32fast::hash(&cut[HEADER..]);
        cut[1..HEADER].copy_from_slice(&crc.to_le_bytes());
        assert_eq!(decode(&cut).err(), Some(Damaged::Short));
    }
}
