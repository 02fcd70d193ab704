//! The native engine's body pump: copies one message body from a reader
//! (whose first bytes may already sit in the connection's buffer) to a
//! writer, framed for the next hop, and shows every data piece to an
//! [`Observer`] (the tap) without copying it: the buffer is a `BytesMut`,
//! each piece is `split_to(n).freeze()`, a reference-counted slice the tap
//! may keep.
//!
//! Framing toward the writer: a `Content-Length` body goes on as it came; a
//! chunked one is decoded with the [`ChunkedDecoder`] and re-chunked (so
//! chunk extensions never travel, and the trailer section is filtered: only
//! the fields the message declared in `Trailer`, names in lower case, as
//! hyper forwards them) or, toward an HTTP/1.0 client, written as raw data
//! delimited by the close; a close-delimited one is read until the reader's
//! end and re-chunked or copied the same way. Chunks go out as hyper writes
//! them: upper-case hexadecimal size, no extensions.

use std::io;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

use super::chunked::{ChunkedDecoder, ChunkedError, Piece, Progress};
use super::framing::BodyLength;
use super::head::{tokens, trim, Lines};
use crate::proxy::tap::Observer;

/// Room made in a buffer before each read (client and upstream buffers).
pub(crate) const READ_CHUNK: usize = 16 * 1024;

/// Why a body could not be copied to its end.
#[derive(Debug, Error)]
pub(crate) enum PumpError {
    #[error("reading the body failed: {0}")]
    Read(io::Error),
    #[error("the body ended before its declared end")]
    CutShort,
    #[error("malformed chunked body: {0}")]
    Malformed(ChunkedError),
    #[error("no body bytes arrived in time")]
    TimedOut,
    #[error("writing the body failed: {0}")]
    Write(io::Error),
}

impl PumpError {
    /// The reading side's fault (malformed, cut short, gone, too slow),
    /// not the writing side's.
    pub(crate) fn of_reader(&self) -> bool {
        !matches!(self, PumpError::Write(_))
    }
}

/// The trailer fields that go on: the names a message declared in its
/// `Trailer` lines (lower case), or none at all.
#[derive(Debug, Default)]
pub(crate) struct Trailers(Option<Vec<Vec<u8>>>);

impl Trailers {
    /// No trailer fields go on.
    pub(crate) fn none() -> Self {
        Trailers(None)
    }

    /// The fields declared by the `Trailer` lines of a head in `buf`.
    pub(crate) fn declared(buf: &[u8], lines: &Lines) -> Self {
        let mut names = Vec::new();
        for line in lines.as_slice() {
            if line.name.of(buf).eq_ignore_ascii_case(b"trailer") {
                names.extend(
                    tokens(line.value.of(buf))
                        .filter(|name| !name.is_empty())
                        .map(<[u8]>::to_ascii_lowercase),
                );
            }
        }
        Trailers(Some(names))
    }

    /// Writes the fields of `section` (whole `name: value` CRLF lines, as
    /// the decoder checked them) that go on into `out`.
    fn write(&self, section: &[u8], out: &mut Vec<u8>) {
        let Some(names) = &self.0 else { return };
        for line in section.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let name = trim(line.get(..colon).unwrap_or_default());
            let value = line.get(colon + 1..).unwrap_or_default();
            let value = trim(value.strip_suffix(b"\r").unwrap_or(value));
            if names.iter().any(|known| known.eq_ignore_ascii_case(name)) {
                out.extend(name.iter().map(u8::to_ascii_lowercase));
                out.extend_from_slice(b": ");
                out.extend_from_slice(value);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

/// How far a body got.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pumped {
    /// Copied to its end.
    Whole,
    /// The writer spoke first (its bytes are in the `answer` buffer): an
    /// upstream answering before the request body ended. The body was not
    /// copied to its end.
    Answered,
}

/// How one body is copied.
pub(crate) struct Pump<'t> {
    /// How the body is delimited on the reader's side.
    pub(crate) length: BodyLength,
    /// Re-chunk it toward the writer (else copy the data as it is).
    pub(crate) chunked_out: bool,
    /// The trailer fields that go on (chunked toward the writer only).
    pub(crate) trailers: &'t Trailers,
    /// The longest wait for the reader's next bytes; `None`: no limit.
    pub(crate) read_timeout: Option<Duration>,
}

/// Reads more bytes from `reader` into `buf`: how many (0 at its end).
pub(crate) async fn read_more<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut BytesMut,
    timeout: Option<Duration>,
) -> Result<usize, PumpError> {
    buf.reserve(READ_CHUNK);
    let read = reader.read_buf(buf);
    let read = match timeout {
        Some(limit) => tokio::time::timeout(limit, read)
            .await
            .map_err(|_| PumpError::TimedOut)?,
        None => read.await,
    };
    read.map_err(PumpError::Read)
}

/// Appends `data` to `out` as one chunk, or as it is.
fn put_data(out: &mut Vec<u8>, data: &[u8], chunked: bool) {
    if data.is_empty() {
        return;
    }
    if chunked {
        use std::io::Write as _;
        let _ = write!(out, "{:X}\r\n", data.len());
        out.extend_from_slice(data);
        out.extend_from_slice(b"\r\n");
    } else {
        out.extend_from_slice(data);
    }
}

impl Pump<'_> {
    /// Copies the body from `reader` (its first bytes in `buf`) to
    /// `writer`, after whatever `out` already holds (a head: it goes out
    /// with the body's first bytes, in one write). Leaves in `buf` the
    /// bytes after the body (the next message); `out` is left empty.
    ///
    /// With an `answer` buffer, while it waits for the reader it also
    /// reads the writer into it, and stops as soon as the writer sends
    /// anything ([`Pumped::Answered`]).
    pub(crate) async fn run<R, W, O>(
        &self,
        reader: &mut R,
        buf: &mut BytesMut,
        writer: &mut W,
        out: &mut Vec<u8>,
        observer: &mut O,
        mut answer: Option<&mut BytesMut>,
    ) -> Result<Pumped, PumpError>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + AsyncRead + Unpin,
        O: Observer,
    {
        let mut remaining = match self.length {
            BodyLength::Length(length) => length,
            _ => 0,
        };
        let mut decoder = ChunkedDecoder::new();
        let mut trailer_section = Vec::new();
        let mut pieces: Vec<Piece> = Vec::new();
        let mut done = self.length == BodyLength::Empty;
        // A piece going on as it is: written after `out` without being
        // copied into it (one vectored write).
        let mut data = Bytes::new();
        loop {
            if !done && !buf.is_empty() {
                match self.length {
                    BodyLength::Empty => {}
                    BodyLength::Length(_) => {
                        let take =
                            usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
                        data = buf.split_to(take).freeze();
                        observer.data(&data);
                        if self.chunked_out {
                            put_data(out, &std::mem::take(&mut data), true);
                        }
                        remaining -= take as u64;
                        done = remaining == 0;
                    }
                    BodyLength::UntilClose => {
                        data = buf.split().freeze();
                        observer.data(&data);
                        if self.chunked_out {
                            put_data(out, &std::mem::take(&mut data), true);
                        }
                    }
                    BodyLength::Chunked => {
                        pieces.clear();
                        let progress = decoder
                            .feed(&buf[..], |piece| pieces.push(piece))
                            .map_err(PumpError::Malformed)?;
                        let used = match progress {
                            Progress::More => buf.len(),
                            Progress::Done(used) => used,
                        };
                        let fed = buf.split_to(used).freeze();
                        for piece in pieces.drain(..) {
                            match piece {
                                Piece::Data(range) => {
                                    let data = slice(&fed, range);
                                    observer.data(&data);
                                    put_data(out, &data, self.chunked_out);
                                }
                                Piece::Trailers(range) => {
                                    trailer_section.extend_from_slice(&slice(&fed, range));
                                }
                            }
                        }
                        done = decoder.is_done();
                    }
                }
            }
            if done {
                if self.chunked_out && self.length != BodyLength::Empty {
                    out.extend_from_slice(b"0\r\n");
                    self.trailers.write(&trailer_section, out);
                    out.extend_from_slice(b"\r\n");
                }
                return flush_with(writer, out, &std::mem::take(&mut data))
                    .await
                    .map(|()| Pumped::Whole);
            }
            flush_with(writer, out, &std::mem::take(&mut data)).await?;
            let read = match answer.as_deref_mut() {
                None => read_more(reader, buf, self.read_timeout).await?,
                Some(answer) => {
                    answer.reserve(READ_CHUNK);
                    tokio::select! {
                        read = read_more(reader, buf, self.read_timeout) => read?,
                        _ = writer.read_buf(answer) => return Ok(Pumped::Answered),
                    }
                }
            };
            if read == 0 {
                if self.length != BodyLength::UntilClose {
                    return Err(PumpError::CutShort);
                }
                done = true;
            }
        }
    }
}

fn slice(bytes: &Bytes, range: std::ops::Range<usize>) -> Bytes {
    if range.end <= bytes.len() && range.start <= range.end {
        bytes.slice(range)
    } else {
        Bytes::new()
    }
}

/// Writes out what `out` holds, then `data`, and empties `out`: both in
/// vectored writes (no copy of `data`) where the writer takes them.
async fn flush_with<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut Vec<u8>,
    data: &[u8],
) -> Result<(), PumpError> {
    if data.is_empty() {
        return flush(writer, out).await;
    }
    if !writer.is_write_vectored() {
        out.extend_from_slice(data);
        return flush(writer, out).await;
    }
    let written = write_two(writer, out, data).await;
    out.clear();
    written.map_err(PumpError::Write)
}

/// Writes `first` then `second` with vectored writes.
async fn write_two<W: AsyncWrite + Unpin>(
    writer: &mut W,
    first: &[u8],
    second: &[u8],
) -> io::Result<()> {
    let (mut first, mut second) = (first, second);
    while !first.is_empty() {
        let parts = [io::IoSlice::new(first), io::IoSlice::new(second)];
        let n = writer.write_vectored(&parts).await?;
        if n == 0 {
            return Err(io::ErrorKind::WriteZero.into());
        }
        let in_first = n.min(first.len());
        first = first.get(in_first..).unwrap_or_default();
        second = second.get(n - in_first..).unwrap_or_default();
    }
    writer.write_all(second).await
}

/// Writes out what `out` holds and empties it.
pub(crate) async fn flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &mut Vec<u8>,
) -> Result<(), PumpError> {
    if out.is_empty() {
        return Ok(());
    }
    let written = writer.write_all(out).await;
    out.clear();
    written.map_err(PumpError::Write)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proxy::h1::head::{Parsed, RequestHead};

    /// Counts what it is shown.
    #[derive(Default)]
    struct Seen {
        data: Vec<u8>,
        pieces: usize,
    }

    impl Observer for Seen {
        fn data(&mut self, data: &Bytes) {
            self.data.extend_from_slice(data);
            self.pieces += 1;
        }
        fn end(&mut self, _complete: bool) {}
    }

    /// Pumps `input` arriving `step` bytes per read (after `buffered`
    /// bytes already in the buffer) and returns what was written, what
    /// the observer saw and what was left in the buffer.
    async fn pump(
        pump: &Pump<'_>,
        input: &[u8],
        buffered: usize,
        step: usize,
    ) -> (Result<(), PumpError>, Vec<u8>, Vec<u8>, Vec<u8>) {
        let (mut feeder, mut reader) = tokio::io::duplex(64);
        let later = input[buffered.min(input.len())..].to_vec();
        let feeding = tokio::spawn(async move {
            for part in later.chunks(step.max(1)) {
                if feeder.write_all(part).await.is_err() {
                    return;
                }
                feeder.flush().await.ok();
                tokio::task::yield_now().await;
            }
        });
        let mut buf = BytesMut::from(&input[..buffered.min(input.len())]);
        let mut written = Written::default();
        let mut out = b"HEAD|".to_vec();
        let mut seen = Seen::default();
        let result = pump
            .run(
                &mut reader,
                &mut buf,
                &mut written,
                &mut out,
                &mut seen,
                None,
            )
            .await
            .map(|pumped| assert_eq!(pumped, Pumped::Whole));
        feeding.abort();
        (result, written.0, seen.data, buf.to_vec())
    }

    const CHUNKED: &[u8] = b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\nX-U: 2\r\n\r\nNEXT";

    fn declared_t() -> Trailers {
        let text = b"POST / HTTP/1.1\r\nTrailer: X-T\r\n\r\n";
        let mut head = RequestHead::default();
        assert!(matches!(head.parse(text), Ok(Parsed::Complete(_))));
        Trailers::declared(text, &head.lines)
    }

    #[tokio::test]
    async fn a_chunked_body_is_rechunked_at_every_split_point_one_byte_per_read() {
        let trailers = declared_t();
        let rechunk = untimed(BodyLength::Chunked, true, &trailers);
        let body_len = CHUNKED.len() - 4;
        for buffered in 0..=body_len {
            // The rest arrives one byte per read: nothing past the body is
            // read, so nothing is left over.
            let (result, written, data, _) =
                pump(&rechunk, &CHUNKED[..body_len], buffered, 1).await;
            assert!(result.is_ok(), "{buffered}: {result:?}");
            let written = String::from_utf8_lossy(&written).into_owned();
            assert!(written.starts_with("HEAD|"), "{written}");
            let body = written.trim_start_matches("HEAD|");
            let (dechunked, trailer) = decode(body.as_bytes());
            assert_eq!(dechunked, b"hello world", "{buffered}: {body:?}");
            assert_eq!(trailer, "x-t: 1\r\n", "{buffered}");
            assert_eq!(data, b"hello world");
        }
        // All buffered at once: the next message stays in the buffer.
        let (result, _, _, left) = pump(&rechunk, CHUNKED, CHUNKED.len(), 1).await;
        assert!(result.is_ok());
        assert_eq!(left, b"NEXT");
    }

    /// A pump with no read timeout.
    fn untimed(length: BodyLength, chunked_out: bool, trailers: &Trailers) -> Pump<'_> {
        Pump {
            length,
            chunked_out,
            trailers,
            read_timeout: None,
        }
    }

    /// Decodes a chunked body as a client would: data and trailer lines.
    fn decode(body: &[u8]) -> (Vec<u8>, String) {
        let (data, trailers, end) =
            super::super::chunked::decode_split(body, &[]).expect("valid chunked");
        assert_eq!(end, Some(body.len()), "one whole body");
        (data, String::from_utf8_lossy(&trailers).into_owned())
    }

    #[tokio::test]
    async fn a_length_body_goes_on_as_it_came_at_every_split_point() {
        let none = Trailers::none();
        let copy = untimed(BodyLength::Length(5), false, &none);
        let input = b"helloGET";
        for buffered in 0..=input.len() {
            let upto = if buffered > 5 { input.len() } else { 5 };
            let (result, written, data, left) = pump(&copy, &input[..upto], buffered, 1).await;
            assert!(result.is_ok(), "{buffered}");
            assert_eq!(written, b"HEAD|hello", "{buffered}");
            assert_eq!(data, b"hello");
            // Nothing is read past the body: what is left is what was
            // buffered beyond it.
            assert_eq!(left, &input[5..buffered.max(5)], "{buffered}");
        }
    }

    #[tokio::test]
    async fn a_body_cut_short_or_malformed_is_the_readers_fault() {
        let none = Trailers::none();
        let copy = untimed(BodyLength::Length(10), false, &none);
        let (result, written, data, _) = pump(&copy, b"hello", 2, 1).await;
        assert!(matches!(result, Err(PumpError::CutShort)), "{result:?}");
        assert!(result.as_ref().err().is_some_and(PumpError::of_reader));
        assert_eq!(written, b"HEAD|hello", "the prefix went on");
        assert_eq!(data, b"hello");

        let dechunk = untimed(BodyLength::Chunked, true, &none);
        let (result, _, _, _) = pump(&dechunk, b"5\r\nhelloX0\r\n\r\n", 0, 1).await;
        assert!(matches!(result, Err(PumpError::Malformed(_))), "{result:?}");
    }

    #[tokio::test]
    async fn a_close_delimited_body_ends_with_the_reader() {
        let none = Trailers::none();
        for chunked_out in [false, true] {
            let until_close = untimed(BodyLength::UntilClose, chunked_out, &none);
            let (result, written, data, _) = pump(&until_close, b"until close", 3, 2).await;
            assert!(result.is_ok());
            assert_eq!(data, b"until close");
            let body = &written[b"HEAD|".len()..];
            if chunked_out {
                assert_eq!(decode(body).0, b"until close");
            } else {
                assert_eq!(body, b"until close");
            }
        }
    }

    #[tokio::test]
    async fn a_silent_reader_times_out() {
        let none = Trailers::none();
        let copy = Pump {
            length: BodyLength::Length(10),
            chunked_out: false,
            trailers: &none,
            read_timeout: Some(Duration::from_millis(50)),
        };
        let (_feeder, mut reader) = tokio::io::duplex(64);
        let mut buf = BytesMut::new();
        let result = copy
            .run(
                &mut reader,
                &mut buf,
                &mut Written::default(),
                &mut Vec::new(),
                &mut Seen::default(),
                None,
            )
            .await;
        assert!(matches!(result, Err(PumpError::TimedOut)), "{result:?}");
    }

    #[tokio::test]
    async fn a_writer_answering_before_the_body_ends_stops_the_pump() {
        let none = Trailers::none();
        let copy = untimed(BodyLength::Length(10), false, &none);
        let (_feeder, mut reader) = tokio::io::duplex(64);
        let (mut upstream, mut peer) = tokio::io::duplex(64);
        let mut buf = BytesMut::from(&b"first"[..]);
        let mut answer = BytesMut::new();
        let answering = tokio::spawn(async move {
            let mut got = [0u8; 16];
            let n = peer.read(&mut got).await.expect("the body's start");
            peer.write_all(b"HTTP/1.1 202").await.expect("answer");
            (got[..n].to_vec(), peer)
        });
        let pumped = copy
            .run(
                &mut reader,
                &mut buf,
                &mut upstream,
                &mut Vec::new(),
                &mut Seen::default(),
                Some(&mut answer),
            )
            .await
            .expect("stopped, not failed");
        assert_eq!(pumped, Pumped::Answered);
        assert_eq!(&answer[..], b"HTTP/1.1 202");
        let (got, _peer) = answering.await.expect("peer");
        assert_eq!(got, b"first");
    }

    /// A writer that keeps what it gets and never answers; its vectored
    /// writes take at most 7 bytes each (so a head and a body piece are
    /// written across several, split anywhere).
    #[derive(Default)]
    struct Written(Vec<u8>);

    impl AsyncWrite for Written {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            self.0.extend_from_slice(buf);
            std::task::Poll::Ready(Ok(buf.len()))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            bufs: &[io::IoSlice<'_>],
        ) -> std::task::Poll<io::Result<usize>> {
            let mut taken = 0;
            for buf in bufs {
                let take = buf.len().min(7 - taken);
                self.0.extend_from_slice(&buf[..take]);
                taken += take;
            }
            std::task::Poll::Ready(Ok(taken))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    impl AsyncRead for Written {
        fn poll_read(
            self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
            _buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::task::Poll::Pending
        }
    }
}
