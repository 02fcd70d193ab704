//! Raw HTTP/1 over TCP for byte-level tests: a message-length reader
//! (RFC 9112 §6: `Content-Length`, chunked, 1xx, HEAD/204/304, close
//! delimited), an upstream that records the exact bytes of each request it
//! gets and answers with scripted bytes, and a client that writes exact
//! bytes and reads the raw responses. Every read is bounded by [`WAIT`];
//! the upstream's tasks end when it is dropped.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::WAIT;

/// How far a buffer holds one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// The first message ends after this many bytes.
    Complete(usize),
    /// More bytes are needed.
    Partial,
    /// A response whose body runs until the connection closes.
    UntilClose,
    /// Not a message this reader understands.
    Invalid(&'static str),
}

/// The index just past the empty line ending the head, if it arrived.
pub fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|at| at + 4)
}

/// The head (start line and fields, as text) and the bytes after it.
pub fn split_head(message: &[u8]) -> (String, &[u8]) {
    let end = head_end(message).unwrap_or(message.len());
    (
        String::from_utf8_lossy(&message[..end]).into_owned(),
        &message[end..],
    )
}

/// The header fields of a head: names lower-cased, values trimmed.
fn fields(head: &[u8]) -> Vec<(String, String)> {
    String::from_utf8_lossy(head)
        .split("\r\n")
        .skip(1)
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.to_ascii_lowercase(), value.trim().to_owned()))
        .collect()
}

/// The framing of the first request in `buf`.
pub fn request_framing(buf: &[u8]) -> Framing {
    let Some(end) = head_end(buf) else {
        return Framing::Partial;
    };
    body_framing(buf, end, &fields(&buf[..end]), false)
}

/// The framing of the first response in `buf` (any 1xx before it
/// included), to a HEAD request when `head_request`.
pub fn response_framing(buf: &[u8], head_request: bool) -> Framing {
    let mut start = 0;
    loop {
        let Some(end) = head_end(&buf[start..]).map(|end| start + end) else {
            return Framing::Partial;
        };
        let status = buf
            .get(start + 9..start + 12)
            .and_then(|code| std::str::from_utf8(code).ok())
            .and_then(|code| code.parse::<u16>().ok());
        match status {
            None => return Framing::Invalid("status line"),
            Some(100..=199) if status != Some(101) => start = end,
            Some(101 | 204 | 304) => return Framing::Complete(end),
            Some(_) if head_request => return Framing::Complete(end),
            Some(_) => return body_framing(buf, end, &fields(&buf[start..end]), true),
        }
    }
}

fn body_framing(buf: &[u8], start: usize, fields: &[(String, String)], response: bool) -> Framing {
    let field = |name: &str| fields.iter().find(|(n, _)| n == name).map(|(_, v)| v);
    if field("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        return chunked_end(buf, start);
    }
    if let Some(length) = field("content-length") {
        let Ok(length) = length.parse::<usize>() else {
            return Framing::Invalid("content-length");
        };
        return if buf.len() >= start + length {
            Framing::Complete(start + length)
        } else {
            Framing::Partial
        };
    }
    if response {
        Framing::UntilClose
    } else {
        Framing::Complete(start)
    }
}

/// One CRLF-terminated line of `buf` from `at`: its text and the index
/// after its CRLF.
fn line(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = buf.get(at..)?.windows(2).position(|w| w == b"\r\n")?;
    Some((&buf[at..at + len], at + len + 2))
}

fn chunked_end(buf: &[u8], mut at: usize) -> Framing {
    loop {
        let Some((size_line, data)) = line(buf, at) else {
            return Framing::Partial;
        };
        let size = String::from_utf8_lossy(size_line);
        let size = size.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size, 16) else {
            return Framing::Invalid("chunk size");
        };
        if size == 0 {
            // Trailer fields up to the empty line.
            let mut at = data;
            loop {
                match line(buf, at) {
                    None => return Framing::Partial,
                    Some((b"", end)) => return Framing::Complete(end),
                    Some((_, end)) => at = end,
                }
            }
        }
        if buf.len() < data + size + 2 {
            return Framing::Partial;
        }
        if &buf[data + size..data + size + 2] != b"\r\n" {
            return Framing::Invalid("chunk end");
        }
        at = data + size + 2;
    }
}

/// The data and the trailer section (as text) of a chunked body, which
/// [`chunked_end`] accepted.
pub fn dechunk(body: &[u8]) -> (Vec<u8>, String) {
    let (mut data, mut at) = (Vec::new(), 0);
    while let Some((size_line, start)) = line(body, at) {
        let size = String::from_utf8_lossy(size_line);
        let size = size.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size, 16).expect("a chunk size");
        if size == 0 {
            return (data, String::from_utf8_lossy(&body[start..]).into_owned());
        }
        data.extend_from_slice(&body[start..start + size]);
        at = start + size + 2;
    }
    panic!("not a chunked body: {:?}", String::from_utf8_lossy(body));
}

/// What the upstream does for one request.
#[derive(Debug, Clone)]
pub struct Script {
    /// Written in this order, one `write` each.
    pub parts: Vec<Vec<u8>>,
    /// Close the connection after writing.
    pub close: bool,
}

impl Script {
    pub fn bytes(bytes: impl Into<Vec<u8>>) -> Script {
        Script {
            parts: vec![bytes.into()],
            close: false,
        }
    }

    /// These bytes, then the connection closed.
    pub fn then_close(bytes: impl Into<Vec<u8>>) -> Script {
        Script {
            parts: vec![bytes.into()],
            close: true,
        }
    }
}

/// What the upstream got on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Numbered from 0 in the order the upstream accepted them.
    pub connection: usize,
    /// The request, exactly as received.
    pub bytes: Vec<u8>,
    /// `false`: bytes left when the connection closed that were not a
    /// whole request.
    pub complete: bool,
}

impl Seen {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }
}

type Respond = Arc<dyn Fn(&[u8]) -> Script + Send + Sync>;

/// A raw HTTP/1 upstream on a free loopback port.
pub struct RawUpstream {
    pub addr: SocketAddr,
    seen: mpsc::UnboundedReceiver<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl RawUpstream {
    /// Answers each request (its exact bytes) with `respond`.
    pub async fn start(respond: impl Fn(&[u8]) -> Script + Send + Sync + 'static) -> RawUpstream {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = socket.local_addr().expect("upstream addr");
        let (tx, seen) = mpsc::unbounded_channel();
        let respond: Respond = Arc::new(respond);
        let task = tokio::spawn(async move {
            // Dropped (aborting every connection) when the upstream is.
            let mut connections = JoinSet::new();
            let mut next = 0;
            while let Ok((stream, _)) = socket.accept().await {
                connections.spawn(serve(stream, next, Arc::clone(&respond), tx.clone()));
                next += 1;
            }
        });
        RawUpstream { addr, seen, task }
    }

    /// The next request (or leftover) the upstream got.
    pub async fn next(&mut self) -> Seen {
        tokio::time::timeout(WAIT, self.seen.recv())
            .await
            .expect("the upstream got something within the wait")
            .expect("upstream running")
    }

    /// Whatever it got so far and has not been taken yet.
    pub fn pending(&mut self) -> Vec<Seen> {
        std::iter::from_fn(|| self.seen.try_recv().ok()).collect()
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    mut stream: TcpStream,
    connection: usize,
    respond: Respond,
    seen: mpsc::UnboundedSender<Seen>,
) {
    let mut buf = Vec::new();
    loop {
        match request_framing(&buf) {
            Framing::Complete(len) => {
                let bytes: Vec<u8> = buf.drain(..len).collect();
                let answer = respond(&bytes);
                let _ = seen.send(Seen {
                    connection,
                    bytes,
                    complete: true,
                });
                for part in &answer.parts {
                    if stream.write_all(part).await.is_err() {
                        return;
                    }
                }
                if answer.close {
                    let _ = stream.shutdown().await;
                    return;
                }
                continue;
            }
            Framing::Partial => {}
            Framing::UntilClose | Framing::Invalid(_) => break,
        }
        let mut chunk = [0; 16 * 1024];
        match tokio::time::timeout(WAIT, stream.read(&mut chunk)).await {
            Ok(Ok(read)) if read > 0 => buf.extend_from_slice(&chunk[..read]),
            _ => break,
        }
    }
    if !buf.is_empty() {
        let _ = seen.send(Seen {
            connection,
            bytes: buf,
            complete: false,
        });
    }
}

/// A client connection that writes exact bytes and reads raw responses.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RawClient {
    pub async fn connect(addr: SocketAddr) -> RawClient {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        RawClient {
            stream,
            buf: Vec::new(),
        }
    }

    /// Writes `bytes`. A failure is not one: the proxy may close while a
    /// request it refused is still being written; what the client then
    /// reads is what counts.
    pub async fn write(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes).await;
    }

    /// Writes each part with its own `write` (the proxy may still read
    /// them together: nothing here waits between them).
    pub async fn write_parts(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.write(part).await;
        }
    }

    /// Closes the client's sending side (the proxy reads the end of the
    /// stream; the client can still read).
    pub async fn shutdown_write(&mut self) {
        let _ = self.stream.shutdown().await;
    }

    /// Reads more bytes; `false` at the end of the stream (closed or
    /// reset).
    async fn fill(&mut self) -> bool {
        let mut chunk = [0; 16 * 1024];
        match tokio::time::timeout(WAIT, self.stream.read(&mut chunk)).await {
            Err(_) => panic!(
                "neither bytes nor a close within the wait; have {:?}",
                String::from_utf8_lossy(&self.buf)
            ),
            Ok(Ok(0) | Err(_)) => false,
            Ok(Ok(read)) => {
                self.buf.extend_from_slice(&chunk[..read]);
                true
            }
        }
    }

    /// The next head alone (a 1xx, say), as text.
    pub async fn head(&mut self) -> String {
        loop {
            if let Some(end) = head_end(&self.buf) {
                let bytes: Vec<u8> = self.buf.drain(..end).collect();
                return String::from_utf8_lossy(&bytes).into_owned();
            }
            assert!(
                self.fill().await,
                "connection closed before a head: {:?}",
                String::from_utf8_lossy(&self.buf)
            );
        }
    }

    /// The next whole response (with the 1xx before it), as text.
    pub async fn response(&mut self) -> String {
        self.read_response(false).await
    }

    /// The next whole response to a HEAD request.
    pub async fn head_response(&mut self) -> String {
        self.read_response(true).await
    }

    async fn read_response(&mut self, head_request: bool) -> String {
        loop {
            match response_framing(&self.buf, head_request) {
                Framing::Complete(len) => {
                    let bytes: Vec<u8> = self.buf.drain(..len).collect();
                    return String::from_utf8_lossy(&bytes).into_owned();
                }
                Framing::Invalid(what) => panic!(
                    "not a response ({what}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
                Framing::Partial | Framing::UntilClose => {
                    if !self.fill().await {
                        assert!(
                            response_framing(&self.buf, head_request) == Framing::UntilClose,
                            "connection closed mid-response: {:?}",
                            String::from_utf8_lossy(&self.buf)
                        );
                        let bytes = std::mem::take(&mut self.buf);
                        return String::from_utf8_lossy(&bytes).into_owned();
                    }
                }
            }
        }
    }

    /// Everything until the proxy closes the connection (it must, within
    /// the wait), as text.
    pub async fn rest(&mut self) -> String {
        while self.fill().await {}
        let bytes = std::mem::take(&mut self.buf);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}
