//! An HTTP/1.1 codec of the proxy's own, the first part of an engine to
//! replace hyper on HTTP/1 listeners (not wired in yet: the listener,
//! `forward.rs` and `dedicated.rs` still serve every connection with
//! hyper). It keeps each head **as bytes**: parsing yields ranges of the
//! caller's buffer, the few headers the proxy acts on are recognised while
//! parsing, and the head for the other hop is written by copying the
//! header lines that go on. Pure and synchronous; no allocation per
//! message (a [`RequestHead`]/[`ResponseHead`] is reused, the output
//! `Vec` too).
//!
//! # Files
//! - `head.rs`: request and response heads (httparse), [`Fields`] read typed.
//! - `framing.rs`: body length and persistence (RFC 9112 §6.1–6.3, §9.3),
//!   the smuggling defences.
//! - `chunked.rs`: the incremental chunked decoder.
//! - `rewrite.rs`: the heads written for the other hop.
//!
//! # What it promises
//! - A head is accepted only when httparse accepts it with its default
//!   (strict) configuration, it has at most [`MAX_HEADERS`] lines and at
//!   most [`MAX_HEAD_LEN`] bytes; a partial head is [`Parsed::Partial`]
//!   until it is complete or too large.
//! - A message's body length is never ambiguous: every framing that two
//!   parsers could read two ways is a [`FramingError`] (the connection is
//!   then closed: the next message cannot be found).
//! - A chunked body is decoded the same at any split point of its bytes;
//!   extensions and trailers are bounded ([`MAX_EXTENSIONS_LEN`],
//!   [`MAX_TRAILERS_LEN`], [`MAX_TRAILERS`]).
//! - The head written for the other hop is what `headers.rs` and hyper
//!   write today, except as listed below.
//!
//! `differential.rs` (tests) holds the codec to hyper: on a corpus of
//! requests with every smuggling vector it never accepts what hyper's
//! server refuses and reads the same body where both accept (the requests
//! where it is stricter are listed there, `STRICTER`), and its written
//! heads are byte for byte those of `headers.rs` + hyper: request heads as
//! hyper's client writes them, response heads as its server does (the two
//! differ: an empty value goes out `Name:` upstream, `Name: ` to clients).
//!
//! # Where it is stricter than hyper (deliberately)
//! - Head size: at most 64 KiB (hyper reads up to ~400 KiB of head).
//! - `Transfer-Encoding` with `Content-Length` in a request: refused
//!   (hyper drops the `Content-Length`, decodes chunked and closes after
//!   the response; RFC 9112 §6.3 item 3 allows either).
//! - `Content-Length` repeated with the same value in a request: refused
//!   (hyper accepts identical repeats; nginx refuses them too). In a
//!   response identical repeats and lists (`7, 7`) are accepted, as hyper's
//!   client does.
//! - Request `Transfer-Encoding` must be exactly one `chunked`: hyper
//!   accepts any list ending in `chunked` (`gzip, chunked`, also over two
//!   lines) and forwards the body still gzip-coded without saying so; here
//!   it is [`FramingError::UnsupportedCoding`] (501). `chunked, chunked`
//!   (which hyper accepts) is [`FramingError::ChunkedTwice`]; an empty
//!   element (`chunked,`, which hyper refuses too) is
//!   [`FramingError::EmptyCoding`].
//! - Response `Transfer-Encoding` other than exactly `chunked`: refused
//!   (hyper reads a body whose codings do not end in `chunked` until close
//!   and forwards it without its codings).
//! - Chunk extensions: control bytes other than HTAB are refused (hyper
//!   refuses only a bare LF); trailer fields are checked byte by byte
//!   (token name, colon, text value, CRLF) where hyper runs httparse on them.
//!
//! # Where the written head differs from hyper's (deliberately)
//! - Header order: exactly the client's. hyper's `HeaderMap` groups
//!   repeated names at their first place (`A, B, A` goes out `A, A, B`).
//! - A `TE` line named by `Connection` is dropped; `headers.rs` keeps or
//!   drops it depending on where it stands.
//! - Headers the proxy adds are written in lower case unless the client
//!   sent a line of that name (hyper reuses the spelling of a line it saw
//!   even when that line was dropped).
//! - `header_case: lowercase` listeners are not covered yet (names go out
//!   as the client spelled them).
//!
//! # What the engine still has to do
//! The connection loop around the codec: reading into a buffer until a
//! head parses, answering [`HeadError`]s with 400/431 and framing errors
//! with 400/501 (502 toward the client for an upstream's), forwarding
//! bodies by length or through the [`ChunkedDecoder`] (re-chunked or
//! copied), `Expect: 100-continue`, pipelined requests (one at a time,
//! the next head already in the buffer), refusing upgrades and `CONNECT`,
//! read/idle/header timeouts, graceful drain on shutdown, upstream
//! connection reuse (only after a response whose framing allows it), and
//! 502/504 on upstream failures; then wiring into `listener.rs` behind the
//! conformance suite.

mod body;
mod chunked;
mod connection;
#[cfg(test)]
mod differential;
mod framing;
mod handoff;
mod head;
mod rewrite;
mod upstream;

pub(crate) use connection::Engine;

pub use chunked::{
    decode_split, ChunkedDecoder, ChunkedError, Decoded, Piece, Progress, MAX_EXTENSIONS_LEN,
    MAX_TRAILERS, MAX_TRAILERS_LEN,
};
pub use framing::{
    parse_content_length, request as request_framing, response as response_framing, BodyLength,
    FramingError, MethodKind, RequestFraming, ResponseFraming,
};
pub use head::{
    lists_trailers, tokens, ConnectionTokens, Fields, HeadError, Line, Lines, Name, Parsed,
    RequestHead, ResponseHead, Span, Version, MAX_HEADERS, MAX_HEAD_LEN,
};
pub use rewrite::{
    write_request, write_response, HostRewrite, RequestRewrite, ResponseRewrite, RewriteError,
};
