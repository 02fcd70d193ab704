//! An HTTP/1.1 codec of the proxy's own and the engine around it
//! (`engine: native` on a listener, and the default `engine: auto` on
//! every listener it can serve: see `Listener::serving`). The
//! codec keeps each head **as bytes**: parsing yields ranges of the
//! caller's buffer, the few headers the proxy acts on are recognised while
//! parsing, and the head for the other hop is written by copying the
//! header lines that go on. Pure and synchronous; no allocation per
//! message (a [`RequestHead`]/[`ResponseHead`] is reused, the output
//! `Vec` too). The engine serves a client connection on one task with it:
//! no hyper on the HTTP/1 path (h2c clients are handed to hyper).
//!
//! # Files
//! - `head.rs`: request and response heads, [`Fields`] read typed: a plain
//!   head (CRLF lines, ASCII text) in one pass of its own, any other by
//!   httparse (the authority; the tests hold the two to each other).
//! - `framing.rs`: body length and persistence (RFC 9112 §6.1–6.3, §9.3),
//!   the smuggling defences.
//! - `chunked.rs`: the incremental chunked decoder.
//! - `rewrite.rs`: the heads written for the other hop.
//! - `connection.rs`: the engine's client connection loop.
//! - `body.rs`: the body pump (re-framing, the tap).
//! - `upstream.rs`: the engine's upstream connection.
//! - `handoff.rs`: h2c prior knowledge on an engine's port, to hyper.
//! - `shutdown.rs`: a connection's view of the shutdown (a flag).
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
//! - Head size: at most 256 KiB (hyper reads up to ~400 KiB of head).
//! - Request `Transfer-Encoding` must end in `chunked`, with only
//!   `chunked` or `identity` before it (read as one chunked coding, as
//!   hyper reads them): any other coding before it (`gzip, chunked`,
//!   which hyper's parser accepts, forwarding the body still gzip-coded
//!   without saying so) is [`FramingError::UnsupportedCoding`] (501, as
//!   the hyper path's `reject.rs` answers it too). An empty element
//!   (`chunked,`, which hyper refuses too) is [`FramingError::EmptyCoding`].
//! - Response `Transfer-Encoding` likewise (hyper reads a body whose
//!   codings do not end in `chunked` until close and forwards it without
//!   its codings).
//! - Chunk extensions: control bytes other than HTAB are refused (hyper
//!   refuses only a bare LF); trailer fields are checked byte by byte
//!   (token name, colon, text value, CRLF) where hyper runs httparse on them.
//!
//! Read as hyper reads them (session 8, so the conformance suite passes
//! unchanged): a request with both `Transfer-Encoding` and
//! `Content-Length` is chunked (the `Content-Length` is not forwarded) and
//! its connection closes after the response; identical `Content-Length`
//! repeats are one length (the first line is forwarded).
//!
//! # Where the written head differs from hyper's (deliberately)
//! - Header order: exactly the client's. hyper's `HeaderMap` groups
//!   repeated names at their first place (`A, B, A` goes out `A, A, B`).
//! - A `TE` line named by `Connection` is dropped; `headers.rs` keeps or
//!   drops it depending on where it stands.
//! - Headers the proxy adds are written in lower case unless the client
//!   sent a line of that name (hyper reuses the spelling of a line it saw
//!   even when that line was dropped).
//! - On `header_case: lowercase` listeners every written head's names are
//!   lower-cased ([`lowercase_names`]); chunked trailer names go on in
//!   lower case on every listener (`body.rs`, as hyper forwards them).
//!
//! # The engine (`connection.rs`, session 8)
//! Reads into one buffer until a head parses, answers [`HeadError`]s with
//! 400/431 (414 for a target over 65 534 bytes, `http::Uri`'s limit, as
//! hyper) and framing errors with 400/501, forwards bodies by length or
//! through the [`ChunkedDecoder`] (re-chunked), relays `Expect:
//! 100-continue` as hyper did (its own 100, the upstream's swallowed) and
//! other 1xx (103 Early Hints), serves pipelined requests one at a time,
//! forwards upgrade requests without upgrading, times out head reads and
//! idle connections (30 s), stalled request bodies (30 s) and stalled
//! response bodies (the listener's `timeout` between reads), drains on
//! shutdown, reuses its upstream connection only after a response whose
//! framing allows it, and answers upstream failures with 502/504. See
//! `connection.rs` for the details, docs/http1.md for the contract.

mod body;
mod chunked;
mod connection;
#[cfg(test)]
mod differential;
mod framing;
mod handoff;
mod head;
mod rewrite;
mod shutdown;
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
    lowercase_names, write_request, write_response, HostRewrite, RequestRewrite, ResponseRewrite,
    RewriteError,
};
