//! Bodies as extraction sees them: the tapped bytes, undone of their
//! `Content-Encoding` (gzip, deflate, br, zstd) and, for text formats, of
//! their charset.
//!
//! Decoding is for extraction only; the forwarded bytes were never touched.
//! It is bounded twice: by `max_decoded_bytes`, and by a ratio of
//! [`MAX_RATIO`] decoded bytes per encoded byte (bodies that decode to less
//! than [`RATIO_FLOOR`] are exempt). The decoder is read in small chunks and
//! the output never grows past the bound, so a bomb costs at most the bound
//! in memory before it is refused as [`Problem::DecodedTooLarge`]. A zstd
//! frame that asks for a window larger than [`ZSTD_MAX_WINDOW`] is refused
//! the same way before its decoder allocates that window.
//!
//! Text (XML, EDI, forms, JSON) is decoded from its charset once asked for:
//! a byte-order mark wins, then the `charset` of `Content-Type`, then (for
//! XML) the `encoding` of the XML declaration, else UTF-8. UTF-8, UTF-16
//! (LE/BE), ISO-8859-1 and the other WHATWG encodings are read (as the web
//! does, `iso-8859-1` is read as its superset windows-1252); an unknown
//! charset is [`Problem::UnsupportedCharset`].

use std::borrow::Cow;
use std::io::Read;

use crate::proxy::Headers;
use encoding_rs::{Encoding, UTF_16BE, UTF_16LE, UTF_8};
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

use crate::proxy::Tapped;

use super::Problem;

/// Bytes read from a decoder at a time.
const CHUNK: usize = 8 * 1024;

/// Most decoded bytes per encoded byte. Business documents compress 5–20×
/// (repetitive XML up to ~50×); a bomb reaches 1000× and more.
pub(super) const MAX_RATIO: usize = 200;

/// Decoded sizes under this bound are never refused for their ratio: a
/// tiny highly compressible body is no threat.
pub(super) const RATIO_FLOOR: usize = 64 * 1024;

/// Largest zstd window accepted: RFC 9659 limits the window of the `zstd`
/// content coding to 8 MiB, and the decoder reserves the whole window up
/// front, so a larger one is refused before it is allocated.
pub(super) const ZSTD_MAX_WINDOW: u64 = 8 * 1024 * 1024;

/// Bytes of the ring buffer the brotli decoder reads through.
const BROTLI_BUFFER: usize = 4096;

/// One body, decoded for extraction.
#[derive(Debug)]
pub(super) struct Body<'e> {
    /// The decoded bytes (borrowed from the tap when nothing was encoded).
    pub bytes: Cow<'e, [u8]>,
    /// The bytes are a prefix of the body (truncated tap or aborted body).
    /// JSON rules do not read a prefix; regex rules do.
    pub partial: bool,
    /// The declared `charset` of the body, if any (as written: charset
    /// labels are read in any case).
    charset: Option<&'e str>,
}

impl<'e> Body<'e> {
    /// Decodes `tapped` as its `headers` describe. Problems that still leave
    /// bytes to read (truncated, incomplete) are pushed on `problems`; the
    /// `Err` ones mean nothing can be read.
    pub fn decode(
        tapped: &'e Tapped,
        headers: Option<&'e Headers>,
        limit: usize,
        problems: &mut Vec<Problem>,
    ) -> Result<Self, Problem> {
        if tapped.truncated {
            problems.push(Problem::Truncated);
        }
        if !tapped.complete {
            problems.push(Problem::Incomplete);
        }
        let partial = tapped.truncated || !tapped.complete;
        let mut bytes = Cow::Borrowed(&tapped.bytes[..]);
        // An empty body (204, 304, HEAD) has nothing to decode whatever its
        // headers say.
        // Most bodies are sent as they are: then nothing is collected.
        let headers_to_undo = headers
            .filter(|_| !bytes.is_empty())
            .filter(|headers| headers.get(&CONTENT_ENCODING).is_some());
        if let Some(headers) = headers_to_undo {
            // Codings are listed in the order they were applied; undo them
            // from the last to the first.
            let codings: Vec<&str> = headers
                .get_all(&CONTENT_ENCODING)
                .map(|v| v.to_str().ok_or(Problem::UnsupportedEncoding))
                .collect::<Result<Vec<_>, _>>()?
                .into_iter()
                .flat_map(|v| v.split(','))
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .collect();
            for coding in codings.iter().rev() {
                let coding = Coding::parse(coding)?;
                if let Some(decoded) = coding.decode(&bytes, limit, partial)? {
                    bytes = Cow::Owned(decoded);
                }
            }
        }
        Ok(Body {
            bytes,
            partial,
            charset: headers.and_then(charset),
        })
    }

    /// The body as text, without a byte-order mark: a BOM wins, then the
    /// declared charset, then (when `xml`) the XML declaration's encoding,
    /// else UTF-8. Borrowed when the body is UTF-8 already. A partial body
    /// cut inside a character loses that character, not the whole text.
    pub fn text(&self, xml: bool) -> Result<Cow<'_, str>, Problem> {
        let (encoding, bytes) = self.encoding(xml)?;
        if encoding != UTF_8 {
            return self.transcode(encoding, bytes).map(Cow::Owned);
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(Cow::Borrowed(text)),
            // Cut inside the last character of a prefix: keep the rest.
            Err(e) if self.partial && e.error_len().is_none() => bytes
                .get(..e.valid_up_to())
                .and_then(|b| std::str::from_utf8(b).ok())
                .map(Cow::Borrowed)
                .ok_or(Problem::InvalidUtf8),
            Err(_) => Err(Problem::InvalidUtf8),
        }
    }

    /// The body as UTF-8 bytes for a reader that validates UTF-8 itself as
    /// it reads (the JSON scan), chosen as [`Body::text`] chooses (not
    /// XML): a body that is UTF-8 already is borrowed as it is, without a
    /// byte-order mark and **not validated** (a partial one keeps its cut
    /// character); a body in another charset is decoded from it (and so
    /// valid).
    pub fn utf8(&self) -> Result<Cow<'_, [u8]>, Problem> {
        let (encoding, bytes) = self.encoding(false)?;
        if encoding == UTF_8 {
            return Ok(Cow::Borrowed(bytes));
        }
        self.transcode(encoding, bytes)
            .map(|text| Cow::Owned(text.into_bytes()))
    }

    /// The encoding of the body's text and its bytes without a byte-order
    /// mark: a BOM wins, then the declared charset, then (when `xml`) the
    /// XML declaration's encoding, else UTF-8.
    fn encoding(&self, xml: bool) -> Result<(&'static Encoding, &[u8]), Problem> {
        let bytes: &[u8] = &self.bytes;
        if let Some((encoding, bom)) = Encoding::for_bom(bytes) {
            return Ok((encoding, bytes.get(bom..).unwrap_or_default()));
        }
        let declared = match self.charset {
            Some(charset) => Some(Cow::Borrowed(charset)),
            None => xml
                .then(|| xml_declared_encoding(bytes))
                .flatten()
                .map(Cow::Owned),
        };
        let encoding = match declared {
            // Labels are matched in any case.
            Some(label) => Encoding::for_label_no_replacement(label.as_bytes())
                .ok_or(Problem::UnsupportedCharset)?,
            None => UTF_8,
        };
        Ok((encoding, bytes))
    }

    /// `bytes` (this body's, without a BOM) decoded from `encoding` (not
    /// UTF-8). A partial UTF-16 body loses its odd last byte.
    fn transcode(&self, encoding: &'static Encoding, bytes: &[u8]) -> Result<String, Problem> {
        let bytes = if self.partial && (encoding == UTF_16LE || encoding == UTF_16BE) {
            bytes.get(..bytes.len() & !1).unwrap_or_default()
        } else {
            bytes
        };
        encoding
            .decode_without_bom_handling_and_without_replacement(bytes)
            .map(Cow::into_owned)
            .ok_or(Problem::InvalidUtf8)
    }
}

/// The `encoding` of an XML declaration (`<?xml version="1.0"
/// encoding="ISO-8859-1"?>`) at the start of an ASCII-compatible body.
fn xml_declared_encoding(bytes: &[u8]) -> Option<String> {
    let head = bytes.get(..bytes.len().min(256))?;
    let head = head.strip_prefix(b"<?xml")?;
    let end = head.windows(2).position(|w| w == b"?>")?;
    let declaration = std::str::from_utf8(head.get(..end)?).ok()?;
    let (_, after) = declaration.split_once("encoding")?;
    let after = after.trim_start().strip_prefix('=')?.trim_start();
    let quote = after.chars().next().filter(|q| *q == '"' || *q == '\'')?;
    let value = after.get(1..)?;
    let close = value.find(quote)?;
    Some(value.get(..close)?.to_ascii_lowercase())
}

/// The media type of `Content-Type` (lower-case `type/subtype`).
pub(super) fn media_type(headers: &Headers) -> Option<String> {
    let content_type = headers.get(&CONTENT_TYPE)?.to_str()?;
    let media = content_type.split(';').next()?.trim();
    (!media.is_empty()).then(|| media.to_ascii_lowercase())
}

/// The value of parameter `name` of `Content-Type` (quotes removed).
pub(super) fn content_type_param<'h>(headers: &'h Headers, name: &str) -> Option<&'h str> {
    let content_type = headers.get(&CONTENT_TYPE)?;
    // Most have no parameter at all: then the value is not read as text.
    if !content_type.as_bytes().contains(&b';') {
        return None;
    }
    content_type.to_str()?.split(';').skip(1).find_map(|param| {
        let (key, value) = param.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case(name)
            .then(|| value.trim().trim_matches('"'))
    })
}

/// The `charset` parameter of `Content-Type`.
fn charset(headers: &Headers) -> Option<&str> {
    content_type_param(headers, "charset")
}

/// A content coding extraction knows about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    Identity,
    Gzip,
    /// `deflate` is zlib-wrapped by the RFC; some servers send it raw.
    Deflate,
    Brotli,
    Zstd,
}

impl Coding {
    fn parse(name: &str) -> Result<Self, Problem> {
        if name.eq_ignore_ascii_case("identity") {
            Ok(Coding::Identity)
        } else if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            Ok(Coding::Gzip)
        } else if name.eq_ignore_ascii_case("deflate") {
            Ok(Coding::Deflate)
        } else if name.eq_ignore_ascii_case("br") {
            Ok(Coding::Brotli)
        } else if name.eq_ignore_ascii_case("zstd") {
            Ok(Coding::Zstd)
        } else {
            // compress, exi, pack200-gzip …: not seen in logistics traffic.
            Err(Problem::UnsupportedEncoding)
        }
    }

    /// Undoes this coding; `None` when there is nothing to undo. The output
    /// is bounded by `limit` and by [`MAX_RATIO`] times the input.
    fn decode(self, input: &[u8], limit: usize, partial: bool) -> Result<Option<Vec<u8>>, Problem> {
        let limit = limit.min(input.len().saturating_mul(MAX_RATIO).max(RATIO_FLOOR));
        match self {
            Coding::Identity => Ok(None),
            Coding::Gzip => {
                // Multi-member: some servers concatenate gzip members.
                bounded_read(MultiGzDecoder::new(input), limit, partial)
            }
            Coding::Deflate if looks_like_zlib(input) => {
                bounded_read(ZlibDecoder::new(input), limit, partial)
            }
            Coding::Deflate => bounded_read(DeflateDecoder::new(input), limit, partial),
            Coding::Brotli => bounded_read(
                brotli_decompressor::Decompressor::new(input, BROTLI_BUFFER),
                limit,
                partial,
            ),
            Coding::Zstd => zstd(input, limit, partial).map(Some),
        }
    }
}

/// Decodes every zstd frame of `input` (a body may hold several), each
/// checked for its window size before its decoder is built.
fn zstd(mut input: &[u8], limit: usize, partial: bool) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::new();
    while !input.is_empty() {
        match zstd_window(input) {
            Some(window) if window > ZSTD_MAX_WINDOW => return Err(Problem::DecodedTooLarge),
            Some(_) => {}
            None if partial => return Ok(out),
            None => return Err(Problem::MalformedEncoding),
        }
        let decoder = match ruzstd::decoding::StreamingDecoder::new(&mut input) {
            Ok(decoder) => decoder,
            Err(_) if partial => return Ok(out),
            Err(_) => return Err(Problem::MalformedEncoding),
        };
        read_into(decoder, limit, partial, &mut out)?;
        if partial {
            return Ok(out);
        }
    }
    Ok(out)
}

/// The window size a zstd frame header declares (RFC 8878 §3.1.1.1), or
/// `None` when `input` does not start with a whole frame header.
fn zstd_window(input: &[u8]) -> Option<u64> {
    const MAGIC: [u8; 4] = [0x28, 0xB5, 0x2F, 0xFD];
    if input.get(..4)? != MAGIC {
        return None;
    }
    let descriptor = *input.get(4)?;
    let single_segment = descriptor & 0x20 != 0;
    if !single_segment {
        let window = *input.get(5)?;
        let log = 10 + u32::from(window >> 3);
        let base = 1u64 << log;
        return Some(base + (base / 8) * u64::from(window & 7));
    }
    // A single-segment frame's window is its content size.
    let dictionary_bytes = [0usize, 1, 2, 4][usize::from(descriptor & 3)];
    let size_bytes = [1usize, 2, 4, 8][usize::from(descriptor >> 6)];
    let start = 5 + dictionary_bytes;
    let field = input.get(start..start + size_bytes)?;
    let mut size = [0u8; 8];
    size.get_mut(..size_bytes)?.copy_from_slice(field);
    let size = u64::from_le_bytes(size);
    Some(if size_bytes == 2 { size + 256 } else { size })
}

/// A zlib stream starts with a two-byte header whose method is 8 (deflate)
/// and whose big-endian value is a multiple of 31.
fn looks_like_zlib(input: &[u8]) -> bool {
    match input {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads `decoder` to its end, bounded by `limit` (see [`read_into`]).
fn bounded_read(
    decoder: impl Read,
    limit: usize,
    partial: bool,
) -> Result<Option<Vec<u8>>, Problem> {
    let mut out = Vec::new();
    read_into(decoder, limit, partial, &mut out)?;
    Ok(Some(out))
}

/// Reads `decoder` to its end into `out`, which never holds (nor reserves)
/// more than `limit` bytes; the decoder is not pulled past `limit + 1`
/// bytes, so a bomb costs bounded time too. For a `partial` input, an
/// early end of the compressed stream is expected: what was decoded so far
/// is kept.
fn read_into(
    mut decoder: impl Read,
    limit: usize,
    partial: bool,
    out: &mut Vec<u8>,
) -> Result<(), Problem> {
    let mut chunk = [0u8; CHUNK];
    // One byte past the limit is enough to know the body is too large.
    let mut budget = (&mut decoder).take(limit.saturating_add(1) as u64);
    loop {
        let n = match budget.read(&mut chunk) {
            Ok(0) => return Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(_) if partial => return Ok(()),
            Err(_) => return Err(Problem::MalformedEncoding),
        };
        let read = chunk.get(..n).ok_or(Problem::MalformedEncoding)?;
        if out.len() + read.len() > limit {
            return Err(Problem::DecodedTooLarge);
        }
        if out.capacity() < out.len() + read.len() {
            let wanted = (out.capacity() * 2).max(out.len() + read.len()).min(limit);
            out.reserve_exact(wanted - out.len());
        }
        out.extend_from_slice(read);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use bytes::Bytes;
    use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
    use flate2::Compression;

    use super::*;

    fn tapped(bytes: Vec<u8>) -> Tapped {
        Tapped {
            total_len: bytes.len() as u64,
            bytes: Bytes::from(bytes),
            truncated: false,
            complete: true,
        }
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> Headers {
        let mut map = http::HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, http::HeaderValue::from_static(value));
        }
        map.into()
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).expect("write to vec");
        encoder.finish().expect("finish to vec")
    }

    #[test]
    fn plain_body_is_borrowed_not_copied() {
        let tap = tapped(b"{}".to_vec());
        let mut problems = Vec::new();
        let body = Body::decode(&tap, None, 1024, &mut problems).expect("decodes");
        assert!(matches!(body.bytes, Cow::Borrowed(b"{}")));
        assert!(problems.is_empty());
    }

    #[test]
    fn gzip_zlib_and_raw_deflate_bodies_are_decoded() {
        let data = b"{\"order\":\"SO-1\"}";
        let mut zlib = ZlibEncoder::new(Vec::new(), Compression::default());
        zlib.write_all(data).expect("write");
        let mut raw = DeflateEncoder::new(Vec::new(), Compression::default());
        raw.write_all(data).expect("write");
        for (coding, encoded) in [
            ("gzip", gzip(data)),
            ("deflate", zlib.finish().expect("finish")),
            ("deflate", raw.finish().expect("finish")),
        ] {
            let tap = tapped(encoded);
            let h = headers(&[("content-encoding", coding)]);
            let body = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
            assert_eq!(&body.bytes[..], data, "{coding}");
        }
    }

    #[test]
    fn concatenated_gzip_members_are_all_decoded() {
        let mut both = gzip(b"first ");
        both.extend(gzip(b"second"));
        let tap = tapped(both);
        let h = headers(&[("content-encoding", "gzip")]);
        let body = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(&body.bytes[..], b"first second");
    }

    #[test]
    fn stacked_codings_are_undone_last_first() {
        let data = b"hello";
        let twice = gzip(&gzip(data));
        let tap = tapped(twice);
        let h = headers(&[
            ("content-encoding", "gzip, identity"),
            ("content-encoding", "GZIP"),
        ]);
        let body = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(&body.bytes[..], data);
    }

    #[test]
    fn gzip_bomb_is_refused_without_growing_past_the_limit() {
        let bomb = gzip(&vec![0u8; 50 * 1024 * 1024]);
        assert!(bomb.len() < 100 * 1024, "the bomb is small: {}", bomb.len());
        let limit = 64 * 1024;
        let mut out = Vec::new();
        let result = read_into(MultiGzDecoder::new(&bomb[..]), limit, false, &mut out);
        assert_eq!(result, Err(Problem::DecodedTooLarge));
        assert!(out.capacity() <= limit, "reserved {} bytes", out.capacity());
        assert!(out.len() > limit / 2, "decoding went on up to the limit");
        let tap = tapped(bomb);
        let h = headers(&[("content-encoding", "gzip")]);
        let result = Body::decode(&tap, Some(&h), limit, &mut Vec::new());
        assert_eq!(result.err(), Some(Problem::DecodedTooLarge));
    }

    #[test]
    fn decoded_buffer_never_reserves_more_than_the_limit() {
        let data = vec![7u8; 100_000];
        let out = bounded_read(&data[..], 100_000, false)
            .expect("fits exactly")
            .expect("decoded");
        assert_eq!(out.len(), 100_000);
        assert!(out.capacity() <= 100_000, "capacity {}", out.capacity());
    }

    #[test]
    fn empty_body_with_an_encoding_header_is_simply_empty() {
        let tap = tapped(Vec::new());
        for coding in ["gzip", "br"] {
            let h = headers(&[("content-encoding", coding)]);
            let body = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
            assert!(body.bytes.is_empty(), "{coding}");
        }
    }

    #[test]
    fn garbage_with_gzip_encoding_is_malformed() {
        let tap = tapped(b"definitely not gzip".to_vec());
        let h = headers(&[("content-encoding", "gzip")]);
        let result = Body::decode(&tap, Some(&h), 1024, &mut Vec::new());
        assert_eq!(result.err(), Some(Problem::MalformedEncoding));
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        {
            let mut writer = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
            writer.write_all(data).expect("write to vec");
        }
        out
    }

    fn zstd(data: &[u8]) -> Vec<u8> {
        ruzstd::encoding::compress_to_vec(data, ruzstd::encoding::CompressionLevel::Fastest)
    }

    #[test]
    fn brotli_and_zstd_bodies_are_decoded() {
        let data = b"ISA*00*~ST*856*0001~BSN*00*SHP-1~SE*3*0001~IEA*1*1~".repeat(20);
        for (coding, encoded) in [("br", brotli(&data)), ("zstd", zstd(&data))] {
            let tap = tapped(encoded);
            let h = headers(&[("content-encoding", coding)]);
            let body = Body::decode(&tap, Some(&h), 1 << 20, &mut Vec::new()).expect("decodes");
            assert_eq!(&body.bytes[..], &data[..], "{coding}");
        }
    }

    #[test]
    fn concatenated_zstd_frames_are_all_decoded() {
        let mut both = zstd(b"first ");
        both.extend(zstd(b"second"));
        let tap = tapped(both);
        let h = headers(&[("content-encoding", "zstd")]);
        let body = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(&body.bytes[..], b"first second");
    }

    #[test]
    fn brotli_and_zstd_bombs_stop_at_the_limit_without_growing_past_it() {
        let zeros = vec![0u8; 16 * 1024 * 1024];
        let limit = 64 * 1024;
        let mut out = Vec::new();
        let bomb = brotli(&zeros);
        let decoder = brotli_decompressor::Decompressor::new(&bomb[..], BROTLI_BUFFER);
        assert_eq!(
            read_into(decoder, limit, false, &mut out),
            Err(Problem::DecodedTooLarge)
        );
        assert!(out.capacity() <= limit, "reserved {} bytes", out.capacity());
        let bomb = zstd(&zeros);
        assert_eq!(zstd_window(&bomb).map(|w| w <= ZSTD_MAX_WINDOW), Some(true));
        assert_eq!(
            super::zstd(&bomb, limit, false),
            Err(Problem::DecodedTooLarge)
        );
    }

    #[test]
    fn a_zstd_frame_asking_for_a_huge_window_is_refused_before_decoding() {
        // Magic, a descriptor without single-segment flag, and a window
        // descriptor of 2^(10+21) = 2 GiB: twenty bytes that would make a
        // decoder reserve gigabytes.
        let mut frame = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 21 << 3];
        frame.extend([0u8; 14]);
        assert_eq!(zstd_window(&frame), Some(1 << 31));
        let tap = tapped(frame);
        let h = headers(&[("content-encoding", "zstd")]);
        let result = Body::decode(&tap, Some(&h), 1 << 20, &mut Vec::new());
        assert_eq!(result.err(), Some(Problem::DecodedTooLarge));
    }

    #[test]
    fn the_decoded_size_is_bounded_by_a_ratio_of_the_encoded_size() {
        // 1 MiB of zeros gzips to about 1 KiB: within the size limit, but
        // over 200 times its encoded size.
        let encoded = gzip(&vec![0u8; 1024 * 1024]);
        assert!(encoded.len() * MAX_RATIO < 1024 * 1024);
        let tap = tapped(encoded);
        let h = headers(&[("content-encoding", "gzip")]);
        let result = Body::decode(&tap, Some(&h), 4 << 20, &mut Vec::new());
        assert_eq!(result.err(), Some(Problem::DecodedTooLarge));
        // A small body is exempt up to the floor, whatever its ratio.
        let small = tapped(gzip(&vec![b'a'; RATIO_FLOOR]));
        let body = Body::decode(&small, Some(&h), 4 << 20, &mut Vec::new()).expect("decodes");
        assert_eq!(body.bytes.len(), RATIO_FLOOR);
    }

    #[test]
    fn xml_text_follows_the_bom_then_the_charset_then_the_declaration() {
        let latin = b"<?xml version='1.0' encoding='ISO-8859-1'?><a>K\xF6ln</a>".to_vec();
        let tap = tapped(latin);
        let body = Body::decode(&tap, None, 1024, &mut Vec::new()).expect("decodes");
        assert!(body.text(true).expect("declared").ends_with("<a>Köln</a>"));
        assert_eq!(body.text(false).err(), Some(Problem::InvalidUtf8));

        let mut utf16 = vec![0xFE, 0xFF];
        utf16.extend("<a>Köln</a>".encode_utf16().flat_map(u16::to_be_bytes));
        let tap = tapped(utf16);
        // The BOM wins over a wrong declared charset.
        let h = headers(&[("content-type", "text/xml; charset=iso-8859-1")]);
        let body = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(body.text(true).as_deref(), Ok("<a>Köln</a>"));
    }

    #[test]
    fn a_partial_body_cut_inside_a_character_loses_only_that_character() {
        let mut tap = tapped("<a>Kö".as_bytes()[..5].to_vec());
        tap.truncated = true;
        let body = Body::decode(&tap, None, 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(body.text(true).as_deref(), Ok("<a>K"));
        let mut odd = vec![0xFF, 0xFE, b'<', 0, b'a'];
        odd.truncate(5);
        let mut tap = tapped(odd);
        tap.truncated = true;
        let body = Body::decode(&tap, None, 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(body.text(true).as_deref(), Ok("<"));
    }

    #[test]
    fn codings_nobody_sends_any_more_are_unsupported() {
        for coding in ["compress", "exi"] {
            let tap = tapped(b"xx".to_vec());
            let h = headers(&[("content-encoding", coding)]);
            let result = Body::decode(&tap, Some(&h), 1024, &mut Vec::new());
            assert_eq!(result.err(), Some(Problem::UnsupportedEncoding), "{coding}");
        }
    }

    #[test]
    fn truncated_gzip_gives_its_decoded_prefix() {
        let data: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
        let full = gzip(&data);
        let mut tap = tapped(full.get(..full.len() / 2).expect("half").to_vec());
        tap.truncated = true;
        let h = headers(&[("content-encoding", "gzip")]);
        let mut problems = Vec::new();
        let body = Body::decode(&tap, Some(&h), 1 << 20, &mut problems).expect("prefix decodes");
        assert!(body.partial);
        assert!(!body.bytes.is_empty());
        assert!(data.starts_with(&body.bytes));
        assert_eq!(problems, vec![Problem::Truncated]);
    }

    #[test]
    fn incomplete_body_is_partial_and_reported() {
        let mut tap = tapped(b"{\"a\":".to_vec());
        tap.complete = false;
        let mut problems = Vec::new();
        let body = Body::decode(&tap, None, 1024, &mut problems).expect("decodes");
        assert!(body.partial);
        assert_eq!(problems, vec![Problem::Incomplete]);
    }

    #[test]
    fn text_follows_the_declared_charset() {
        let tap = tapped(b"\xEF\xBB\xBF{\"a\":1}".to_vec());
        let body = Body::decode(&tap, None, 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(body.text(false).as_deref(), Ok("{\"a\":1}"));

        let tap = tapped(b"{\"a\":\"M\xFCller\"}".to_vec());
        let utf8 = Body::decode(&tap, None, 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(utf8.text(false).err(), Some(Problem::InvalidUtf8));
        let h = headers(&[("content-type", "application/json; Charset=\"ISO-8859-1\"")]);
        let latin = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(latin.text(false).as_deref(), Ok("{\"a\":\"Müller\"}"));

        let h = headers(&[("content-type", "application/json; charset=ebcdic-cp-us")]);
        let other = Body::decode(&tap, Some(&h), 1024, &mut Vec::new()).expect("decodes");
        assert_eq!(other.text(false).err(), Some(Problem::UnsupportedCharset));
    }
}
