//! The HTTP/1 codec of `src/proxy/h1/` on the heads of `bench/proxy.sh`
//! (issue 9, targets 1–3: the proxy's CPU per request, where hyper's two
//! HTTP/1 connections spend 11.8 k instructions reading and parsing the
//! two heads and 5.5 k writing them; docs/performance.md):
//!
//! - `h1/request_read`: parse + framing of wrk's request head
//!   (`bench/post.lua`: `POST /api/orders`, `Host`, `Content-Type`,
//!   `Content-Length: 840`).
//! - `h1/request_write`: writing its upstream head (`X-Forwarded-*` and a
//!   `traceparent` added, as a route with `forwarded: append` and
//!   `propagate: trace_context` does).
//! - `h1/response_read`, `h1/response_write`: the same for nginx's reply
//!   (`return 200` with `default_type application/json`).
//! - `h1/exchange`: all four, the codec's share of one proxied exchange.
//!
//! `cargo bench --bench h1`; CI only builds it (`--no-run`).
//!
//! Instructions per exchange (independent of the machine's load): with
//! `H1_ITERATIONS=N` set the binary runs the exchange N times and exits
//! without criterion, so under callgrind
//! `(Ir(N=100000) − Ir(N=0)) / 100000` is the cost of one:
//!
//! ```text
//! H1_ITERATIONS=100000 valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/deps/h1-* --bench
//! ```

use std::hint::black_box;
use std::net::IpAddr;

use criterion::{criterion_group, Criterion};
use waybill::proxy::h1::{
    request_framing, response_framing, write_request, write_response, HostRewrite, MethodKind,
    Parsed, RequestHead, RequestRewrite, ResponseHead, ResponseRewrite, Version,
};

#[path = "../src/global_alloc.rs"]
mod global_alloc;

const REQUEST: &[u8] = b"POST /api/orders HTTP/1.1\r\nHost: 127.0.0.1:18090\r\nContent-Type: application/json\r\nContent-Length: 840\r\n\r\n";
const RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Sat, 28 Nov 2026 02:20:39 GMT\r\nContent-Type: application/json\r\nContent-Length: 840\r\nConnection: keep-alive\r\n\r\n";
const TRACEPARENT: &[u8] = b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

/// The per-connection state the codec reuses: both heads and the output.
struct Codec {
    request: RequestHead,
    response: ResponseHead,
    out: Vec<u8>,
    rewrite: RequestRewrite<'static>,
}

impl Codec {
    fn new() -> Self {
        let ip: IpAddr = [127, 0, 0, 1].into();
        Codec {
            request: RequestHead::default(),
            response: ResponseHead::default(),
            out: Vec::with_capacity(1024),
            rewrite: RequestRewrite {
                base_path: b"",
                host: HostRewrite::Preserve {
                    fallback: b"127.0.0.1:18080",
                },
                forwarded_for: Some(ip),
                traceparent: Some(TRACEPARENT),
                chunked: false,
            },
        }
    }

    fn request_read(&mut self, buf: &[u8]) -> bool {
        matches!(self.request.parse(buf), Ok(Parsed::Complete(_)))
            && request_framing(buf, &self.request).is_ok()
    }

    fn request_write(&mut self, buf: &[u8]) -> usize {
        self.out.clear();
        let _ = write_request(buf, &self.request, &self.rewrite, &mut self.out);
        self.out.len()
    }

    fn response_read(&mut self, buf: &[u8]) -> bool {
        matches!(self.response.parse(buf), Ok(Parsed::Complete(_)))
            && response_framing(buf, &self.response, MethodKind::Other).is_ok()
    }

    fn response_write(&mut self, buf: &[u8]) -> usize {
        self.out.clear();
        let rewrite = ResponseRewrite::bare(Version::Http11);
        write_response(buf, &self.response, &rewrite, &mut self.out);
        self.out.len()
    }

    #[inline(never)]
    fn exchange(&mut self, request: &[u8], response: &[u8]) -> usize {
        let read = self.request_read(request) && self.response_read(response);
        usize::from(read) + self.request_write(request) + self.response_write(response)
    }
}

fn heads(c: &mut Criterion) {
    let mut codec = Codec::new();
    let mut group = c.benchmark_group("h1");
    group.bench_function("request_read", |b| {
        b.iter(|| codec.request_read(black_box(REQUEST)))
    });
    group.bench_function("request_write", |b| {
        b.iter(|| codec.request_write(black_box(REQUEST)))
    });
    group.bench_function("response_read", |b| {
        b.iter(|| codec.response_read(black_box(RESPONSE)))
    });
    group.bench_function("response_write", |b| {
        b.iter(|| codec.response_write(black_box(RESPONSE)))
    });
    group.bench_function("exchange", |b| {
        b.iter(|| codec.exchange(black_box(REQUEST), black_box(RESPONSE)))
    });
    group.finish();
    eprintln!("allocator: {}", global_alloc::NAME);
}

criterion_group!(benches, heads);

fn main() {
    if let Some(iterations) = std::env::var("H1_ITERATIONS")
        .ok()
        .and_then(|n| n.parse::<u64>().ok())
    {
        let mut codec = Codec::new();
        let mut total = 0;
        for _ in 0..iterations {
            total += codec.exchange(black_box(REQUEST), black_box(RESPONSE));
        }
        println!("{iterations} exchanges, {total} bytes");
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
