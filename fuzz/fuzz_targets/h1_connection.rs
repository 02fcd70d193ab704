//! Fuzz target: arbitrary client bytes through the native HTTP/1 engine as
//! it runs, on loopback. Started once per process: four real listeners
//! (`engine: native`, served by `waybill::proxy::serve_with`; plain,
//! `header_case: lowercase`, `forwarded: append` with `host_header:
//! upstream`, an upstream base path), and a tiny upstream that reads each
//! request the proxy forwards and answers it with the response bytes the
//! input chose. Per input: one client connection to the listener the
//! input picks, the client bytes written and the write side closed, the
//! answer read until the proxy closes.
//!
//! Input: byte 0 selects the listener (bits 0–1) and whether the upstream
//! closes after each response (bit 2); byte 1 is the response's length,
//! the response follows it, the client bytes after that.
//!
//! Invariants (beyond no panic): the client connection ends within
//! [`DEADLINE`]; what the client gets parses, with the project's own
//! codec, as HTTP/1 responses (each final one framed for the method of
//! the request it answers), the last possibly cut short after its head;
//! what the upstream receives parses as requests, each framed as its head
//! says; the upstream never gets more whole requests than the client
//! sent (parsed by the same codec: no smuggled request).
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;
use waybill::clock::Clock;
use waybill::config::Config;
use waybill::proxy::h1::{
    decode_split, request_framing, response_framing, BodyLength, MethodKind, Parsed, RequestHead,
    ResponseFraming, ResponseHead,
};
use waybill::proxy::{serve_with, ExchangeSink, ListenerOptions, ProxyMetrics, UninspectedRoutes};

/// The longest a client connection may take, start to end.
const DEADLINE: Duration = Duration::from_secs(10);

/// How long the upstream waits for the next bytes of a connection before
/// closing it (ends a response the proxy reads until close, and any wait
/// for bytes the input's response does not hold).
const UPSTREAM_IDLE: Duration = Duration::from_millis(100);

/// The HTTP/2 preface: such a connection is hyper's, not the engine's.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// The listeners and routes; `{upstream}` is the upstream's address.
const ROUTES: &str = r#"
admin: { bind: 127.0.0.1:0 }
systems: [wms]
keys: [order]
root: order
listeners:
  - { name: plain, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: wms, engine: native, timeout: 2s, connect_timeout: 1s }
  - { name: lower, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: wms, engine: native, header_case: lowercase, timeout: 2s, connect_timeout: 1s }
  - { name: forwarded, bind: 127.0.0.1:0, upstream: "http://{upstream}", system: wms, engine: native, forwarded: append, host_header: upstream, timeout: 2s, connect_timeout: 1s }
  - { name: based, bind: 127.0.0.1:0, upstream: "http://{upstream}/base", system: wms, engine: native, timeout: 2s, connect_timeout: 1s }
milestones: []
routes:
  - name: orders
    system: wms
    listeners: [plain, lower, forwarded, based]
    match: { method: POST, path: /orders }
    keys:
      order: { request_json: "$.id" }
  - name: plain
    system: wms
    listeners: [plain, lower, forwarded, based]
    match: { path: /plain }
    inspect: false
"#;

/// What one input's exchange did, as the upstream saw it.
#[derive(Default)]
struct Round {
    /// The response the upstream answers every request with.
    response: Vec<u8>,
    /// The upstream closes its connection after each response.
    close: bool,
    /// Whole requests the upstream received.
    requests: usize,
    /// Broken invariants seen by the upstream.
    violations: Vec<String>,
}

/// The proxy and upstream, started once.
struct Harness {
    runtime: Runtime,
    proxies: Vec<SocketAddr>,
    round: Arc<Mutex<Round>>,
}

fn lock(round: &Mutex<Round>) -> std::sync::MutexGuard<'_, Round> {
    round.lock().unwrap_or_else(PoisonError::into_inner)
}

fn harness() -> &'static Harness {
    static HARNESS: OnceLock<Harness> = OnceLock::new();
    HARNESS.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        let round = Arc::new(Mutex::new(Round::default()));
        let proxies = runtime.block_on(start(Arc::clone(&round)));
        Harness {
            runtime,
            proxies,
            round,
        }
    })
}

/// Starts the upstream and the proxy's listeners; their addresses.
async fn start(round: Arc<Mutex<Round>>) -> Vec<SocketAddr> {
    let upstream = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let upstream_addr = upstream.local_addr().expect("upstream addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = upstream.accept().await {
            tokio::spawn(serve_upstream(stream, Arc::clone(&round)));
        }
    });
    let yaml = ROUTES.replace("{upstream}", &upstream_addr.to_string());
    let config = match Config::from_yaml(&yaml, "h1_connection.yaml") {
        Ok(config) => config,
        Err(errors) => panic!("the fuzz routes file is invalid:\n{errors}"),
    };
    let mut registry = Registry::default();
    let (tx, mut exchanges) = tokio::sync::mpsc::channel(1024);
    tokio::spawn(async move { while exchanges.recv().await.is_some() {} });
    let sink = ExchangeSink::new(tx, &mut registry);
    let metrics = ProxyMetrics::new(&mut registry);
    let mut proxies = Vec::new();
    for listener in &config.listeners {
        let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        proxies.push(socket.local_addr().expect("proxy addr"));
        let options = ListenerOptions {
            uninspected: UninspectedRoutes::new(listener.id, &config.routes),
            ..ListenerOptions::default()
        };
        let serving = serve_with(
            socket,
            Arc::new(listener.clone()),
            options,
            sink.clone(),
            metrics.clone(),
            Clock::system(),
            CancellationToken::new(),
        );
        tokio::spawn(async move {
            if let Err(error) = serving.await {
                panic!("the listener failed: {error}");
            }
        });
    }
    proxies
}

/// One upstream connection: each whole request (by the codec) is counted
/// and answered with the round's response; closed after [`UPSTREAM_IDLE`]
/// without bytes, when the round says so, or when the response cannot be
/// followed by another on the same connection.
async fn serve_upstream(mut stream: TcpStream, round: Arc<Mutex<Round>>) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let read = match tokio::time::timeout(UPSTREAM_IDLE, stream.read(&mut chunk)).await {
            Ok(Ok(read)) if read > 0 => read,
            _ => return,
        };
        buf.extend_from_slice(&chunk[..read]);
        loop {
            let (len, method) = match next_request(&buf) {
                Message::Whole(len, method) => (len, method),
                Message::Partial => break,
                Message::Broken(why) => {
                    let mut round = lock(&round);
                    round.violations.push(format!(
                        "the upstream got a request it cannot parse ({why}): {:?}",
                        String::from_utf8_lossy(&buf)
                    ));
                    return;
                }
            };
            buf.drain(..len);
            let (response, close) = {
                let mut round = lock(&round);
                round.requests += 1;
                (round.response.clone(), round.close)
            };
            if stream.write_all(&response).await.is_err() {
                return;
            }
            if close || !reusable(&response, method) {
                return;
            }
        }
    }
}

/// One message at the start of a buffer, by the codec.
enum Message {
    /// Whole, this long; for a request, with its method.
    Whole(usize, MethodKind),
    /// Not all there yet.
    Partial,
    /// Not a message (why).
    Broken(String),
}

/// The body of a message framed `body` that starts `head` bytes into
/// `buf`: its end, or whether it is incomplete or broken.
fn body_end(buf: &[u8], head: usize, body: BodyLength) -> Result<Option<usize>, String> {
    let rest = &buf[head..];
    match body {
        BodyLength::Empty => Ok(Some(head)),
        BodyLength::Length(length) => Ok(usize::try_from(length)
            .ok()
            .filter(|&length| length <= rest.len())
            .map(|length| head + length)),
        BodyLength::Chunked => match decode_split(rest, &[]) {
            Ok((_, _, end)) => Ok(end.map(|end| head + end)),
            Err(error) => Err(format!("chunked body: {error:?}")),
        },
        BodyLength::UntilClose => Ok(None),
    }
}

/// The request at the start of `buf`.
fn next_request(buf: &[u8]) -> Message {
    let mut head = RequestHead::default();
    let len = match head.parse(buf) {
        Ok(Parsed::Complete(len)) => len,
        Ok(Parsed::Partial) => return Message::Partial,
        Err(error) => return Message::Broken(format!("head: {error:?}")),
    };
    let framing = match request_framing(buf, &head) {
        Ok(framing) => framing,
        Err(error) => return Message::Broken(format!("framing: {error:?}")),
    };
    match body_end(buf, len, framing.body) {
        Ok(Some(end)) => Message::Whole(end, framing.method),
        Ok(None) => Message::Partial,
        Err(why) => Message::Broken(why),
    }
}

/// Whether `response`, answering a request of `method`, is whole and
/// lets its connection carry another (else the upstream closes after it,
/// as a real server would for a response framed by the close).
fn reusable(response: &[u8], method: MethodKind) -> bool {
    let mut at = 0;
    loop {
        let mut head = ResponseHead::default();
        let Ok(Parsed::Complete(len)) = head.parse(&response[at..]) else {
            return false;
        };
        let buf = &response[at..];
        match response_framing(buf, &head, method) {
            Ok(ResponseFraming::Interim) => at += len,
            Ok(ResponseFraming::Final { body, keep_alive }) => {
                return keep_alive && body_end(buf, len, body) == Ok(Some(buf.len()));
            }
            Ok(ResponseFraming::Switch) | Err(_) => return false,
        }
    }
}

/// The methods of the whole requests at the start of `client` (up to the
/// first that is not whole).
fn client_requests(client: &[u8]) -> Vec<MethodKind> {
    let mut methods = Vec::new();
    let mut at = 0;
    while let Message::Whole(len, method) = next_request(&client[at..]) {
        methods.push(method);
        at += len;
    }
    methods
}

/// Checks that `answer` is HTTP/1 responses to requests of `methods` in
/// order (a refusal may follow them); the last may be cut short after its
/// head. Returns the number of final responses.
fn check_answer(answer: &[u8], methods: &[MethodKind]) -> Result<usize, String> {
    let mut at = 0;
    let mut finals = 0;
    while at < answer.len() {
        let buf = &answer[at..];
        let mut head = ResponseHead::default();
        let len = match head.parse(buf) {
            Ok(Parsed::Complete(len)) => len,
            Ok(Parsed::Partial) => return Err(format!("a response head cut short at {at}")),
            Err(error) => return Err(format!("a response head at {at} does not parse: {error:?}")),
        };
        let method = methods.get(finals).copied().unwrap_or(MethodKind::Other);
        match response_framing(buf, &head, method) {
            Ok(ResponseFraming::Interim) => at += len,
            // The connection is no longer HTTP/1 after it.
            Ok(ResponseFraming::Switch) => return Ok(finals + 1),
            Ok(ResponseFraming::Final { body, .. }) => {
                finals += 1;
                match body_end(buf, len, body) {
                    Ok(Some(end)) => at += end,
                    // Until close, or cut short: the rest is its body.
                    Ok(None) => return Ok(finals),
                    Err(why) => return Err(format!("the response at {at}: {why}")),
                }
            }
            Err(error) => return Err(format!("the response at {at} is not framed: {error:?}")),
        }
    }
    Ok(finals)
}

/// Writes `client` to `proxy`, closes the write side, and reads the
/// answer until the proxy closes (a reset ends it too).
async fn exchange(proxy: SocketAddr, client: &[u8]) -> Vec<u8> {
    let mut answer = Vec::new();
    let Ok(mut stream) = TcpStream::connect(proxy).await else {
        panic!("cannot connect to the proxy at {proxy}");
    };
    let (mut reader, mut writer) = stream.split();
    let write = async {
        // The proxy may close before reading everything: not a fault.
        let _ = writer.write_all(client).await;
        let _ = writer.shutdown().await;
    };
    let read = async {
        let mut chunk = [0u8; 8192];
        while let Ok(read) = reader.read(&mut chunk).await {
            if read == 0 {
                break;
            }
            answer.extend_from_slice(&chunk[..read]);
        }
    };
    let ended = tokio::time::timeout(DEADLINE, async { tokio::join!(write, read) }).await;
    if ended.is_err() {
        panic!(
            "the client connection did not end within {DEADLINE:?}; so far: {:?}",
            String::from_utf8_lossy(&answer)
        );
    }
    answer
}

fuzz_target!(|data: &[u8]| {
    let [selector, response_len, rest @ ..] = data else { return };
    let (response, client) = rest.split_at(usize::from(*response_len).min(rest.len()));
    let harness = harness();
    {
        let mut round = lock(&harness.round);
        *round = Round {
            response: response.to_vec(),
            close: selector & 4 != 0,
            ..Round::default()
        };
    }
    let proxy = harness.proxies[usize::from(selector & 3) % harness.proxies.len()];
    let answer = harness.runtime.block_on(exchange(proxy, client));

    let round = lock(&harness.round);
    assert!(round.violations.is_empty(), "{:?}", round.violations);
    let methods = client_requests(client);
    assert!(
        round.requests <= methods.len(),
        "the upstream got {} whole requests, the client sent {}",
        round.requests,
        methods.len()
    );
    if client.starts_with(H2_PREFACE) {
        return;
    }
    match check_answer(&answer, &methods) {
        Ok(finals) => assert!(
            finals <= methods.len() + 1,
            "{finals} final responses to {} requests",
            methods.len()
        ),
        Err(why) => panic!("{why}; the client got {:?}", String::from_utf8_lossy(&answer)),
    }
});
