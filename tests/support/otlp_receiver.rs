//! An in-process OTLP trace and metrics receiver for tests: a tonic server
//! built from the official `opentelemetry-proto` service definitions
//! (OTLP/gRPC), or an axum route decoding the same messages (OTLP/HTTP
//! protobuf), listening on a free loopback port and keeping every
//! `ExportTraceServiceRequest` and (over gRPC) `ExportMetricsServiceRequest`.
//! Also the two kinds of broken collector: a closed port and one that
//! accepts connections and never answers.
//!
//! A receiver started with [`Keeping::CountOnly`] decodes every trace
//! request as a collector does, counts its spans and keeps nothing: the
//! export benchmark (`benches/export.rs`, which includes this file) pushes
//! millions of spans through it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, KeyValue};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;

/// A received span with the `service.name` of the resource that sent it.
#[derive(Debug, Clone)]
pub struct Received {
    pub service: String,
    pub span: Span,
}

impl Received {
    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    /// The span attribute `name`, if present.
    pub fn attribute(&self, name: &str) -> Option<&any_value::Value> {
        attribute(&self.span.attributes, name)
    }

    /// The string attribute `name`; panics with the span when absent.
    pub fn text(&self, name: &str) -> String {
        match self.attribute(name) {
            Some(any_value::Value::StringValue(s)) => s.clone(),
            other => panic!("attribute {name} is {other:?} in span {:#?}", self.span),
        }
    }

    /// The integer attribute `name`; panics with the span when absent.
    pub fn int(&self, name: &str) -> i64 {
        match self.attribute(name) {
            Some(any_value::Value::IntValue(i)) => *i,
            other => panic!("attribute {name} is {other:?} in span {:#?}", self.span),
        }
    }

    /// The string-array attribute `name` (empty when absent).
    pub fn strings(&self, name: &str) -> Vec<String> {
        match self.attribute(name) {
            Some(any_value::Value::ArrayValue(array)) => array
                .values
                .iter()
                .filter_map(|v| match &v.value {
                    Some(any_value::Value::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The span's duration in nanoseconds.
    pub fn duration_nanos(&self) -> u64 {
        self.span
            .end_time_unix_nano
            .saturating_sub(self.span.start_time_unix_nano)
    }
}

/// The attribute `name` among `attributes`.
pub fn attribute<'a>(attributes: &'a [KeyValue], name: &str) -> Option<&'a any_value::Value> {
    attributes
        .iter()
        .find(|kv| kv.key == name)
        .and_then(|kv| kv.value.as_ref())
        .and_then(|AnyValue { value }| value.as_ref())
}

/// Lowercase hex, as trace and span IDs are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What a receiver does with the trace requests it decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeping {
    /// Keeps every request, for [`OtlpReceiver::spans`] (tests).
    Everything,
    /// Counts requests and spans only ([`OtlpReceiver::span_count`]), so
    /// memory stays flat under a sustained load (benchmarks).
    CountOnly,
}

#[derive(Clone)]
struct Collector {
    keeping: Keeping,
    requests: Arc<Mutex<Vec<ExportTraceServiceRequest>>>,
    /// Trace requests and the spans in them, received so far.
    received: Arc<(AtomicU64, AtomicU64)>,
    metrics: Arc<Mutex<Vec<ExportMetricsServiceRequest>>>,
}

impl Collector {
    fn new(keeping: Keeping) -> Self {
        Collector {
            keeping,
            requests: Arc::default(),
            received: Arc::default(),
            metrics: Arc::default(),
        }
    }

    /// One decoded trace export request: counted, and kept unless counting only.
    fn trace_request(&self, request: ExportTraceServiceRequest) {
        let spans: usize = request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .map(|s| s.spans.len())
            .sum();
        self.received.0.fetch_add(1, Ordering::Relaxed);
        self.received.1.fetch_add(spans as u64, Ordering::Relaxed);
        if self.keeping == Keeping::Everything {
            if let Ok(mut requests) = self.requests.lock() {
                requests.push(request);
            }
        }
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        if let Ok(mut metrics) = self.metrics.lock() {
            metrics.push(request.into_inner());
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.trace_request(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running receiver.
pub struct OtlpReceiver {
    addr: SocketAddr,
    collector: Collector,
    server: tokio::task::JoinHandle<()>,
    http: bool,
}

impl OtlpReceiver {
    /// Starts an OTLP/HTTP (protobuf) receiver on a free loopback port,
    /// answering `POST /v1/traces`, keeping every request.
    pub async fn start_http() -> Self {
        Self::http(Keeping::Everything).await
    }

    /// [`OtlpReceiver::start_http`], keeping what `keeping` says.
    pub async fn http(keeping: Keeping) -> Self {
        use prost::Message;
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = socket.local_addr().expect("receiver addr");
        let collector = Collector::new(keeping);
        let received = collector.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let Ok(request) = ExportTraceServiceRequest::decode(body) else {
                        return (http::StatusCode::BAD_REQUEST, Vec::new());
                    };
                    received.trace_request(request);
                    let response = ExportTraceServiceResponse {
                        partial_success: None,
                    };
                    (http::StatusCode::OK, response.encode_to_vec())
                }
            }),
        );
        // Answers go out at once (TCP_NODELAY), as a collector's do.
        let socket = axum::serve::ListenerExt::tap_io(socket, |tcp| {
            let _ = tcp.set_nodelay(true);
        });
        let server = tokio::spawn(async move {
            let _ = axum::serve(socket, app).await;
        });
        OtlpReceiver {
            addr,
            collector,
            server,
            http: true,
        }
    }

    /// Starts the (OTLP/gRPC) receiver on a free loopback port, keeping
    /// every request.
    pub async fn start() -> Self {
        Self::grpc(Keeping::Everything).await
    }

    /// [`OtlpReceiver::start`], keeping what `keeping` says.
    pub async fn grpc(keeping: Keeping) -> Self {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind receiver");
        let addr = socket.local_addr().expect("receiver addr");
        let collector = Collector::new(keeping);
        let service = TraceServiceServer::new(collector.clone());
        let metrics = MetricsServiceServer::new(collector.clone());
        let server = tokio::spawn(async move {
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .add_service(metrics)
                .serve_with_incoming(
                    // Answers go out at once (TCP_NODELAY), as a collector's
                    // do: without it, the response's frames wait for the
                    // client's delayed ACK (~40 ms per export).
                    tonic::transport::server::TcpIncoming::from(socket).with_nodelay(Some(true)),
                )
                .await;
        });
        OtlpReceiver {
            addr,
            collector,
            server,
            http: false,
        }
    }

    /// The URL for `telemetry.traces.endpoint`: `http://127.0.0.1:PORT`
    /// (gRPC) or `http://127.0.0.1:PORT/v1/traces` (HTTP).
    pub fn endpoint(&self) -> String {
        if self.http {
            format!("http://{}/v1/traces", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Trace export requests received so far (kept or not).
    pub fn request_count(&self) -> u64 {
        self.collector.received.0.load(Ordering::Relaxed)
    }

    /// Spans received so far (kept or not).
    pub fn span_count(&self) -> u64 {
        self.collector.received.1.load(Ordering::Relaxed)
    }

    /// Every span received so far (none when counting only).
    pub fn spans(&self) -> Vec<Received> {
        let requests = self
            .collector
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        let mut spans = Vec::new();
        for request in requests {
            for resource_spans in request.resource_spans {
                let service = resource_spans
                    .resource
                    .as_ref()
                    .and_then(|r| attribute(&r.attributes, "service.name"))
                    .map(|v| match v {
                        any_value::Value::StringValue(s) => s.clone(),
                        other => format!("{other:?}"),
                    })
                    .unwrap_or_default();
                for scope in resource_spans.scope_spans {
                    for span in scope.spans {
                        spans.push(Received {
                            service: service.clone(),
                            span,
                        });
                    }
                }
            }
        }
        spans
    }

    /// Every metrics export request received so far (gRPC receiver).
    pub fn metric_requests(&self) -> Vec<ExportMetricsServiceRequest> {
        self.collector
            .metrics
            .lock()
            .map(|m| m.clone())
            .unwrap_or_default()
    }

    /// The value of counter `name` with exactly the attributes `labels`
    /// in the latest metrics export that has it.
    pub fn counter(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        use opentelemetry_proto::tonic::metrics::v1::{metric, number_data_point};
        self.metric_requests().iter().rev().find_map(|request| {
            request
                .resource_metrics
                .iter()
                .flat_map(|r| &r.scope_metrics)
                .flat_map(|s| &s.metrics)
                .filter(|m| m.name == name)
                .find_map(|m| match &m.data {
                    Some(metric::Data::Sum(sum)) if sum.is_monotonic => {
                        sum.data_points.iter().find_map(|point| {
                            let same = point.attributes.len() == labels.len()
                                && labels.iter().all(|(k, v)| {
                                    matches!(attribute(&point.attributes, k),
                                        Some(any_value::Value::StringValue(s)) if s == v)
                                });
                            match (same, &point.value) {
                                (true, Some(number_data_point::Value::AsDouble(v))) => Some(*v),
                                (true, Some(number_data_point::Value::AsInt(v))) => Some(*v as f64),
                                _ => None,
                            }
                        })
                    }
                    _ => None,
                })
        })
    }

    /// Resource attributes of the first request from `service`.
    pub fn resource_of(&self, service: &str) -> HashMap<String, String> {
        let requests = self
            .collector
            .requests
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default();
        for request in requests {
            for resource_spans in request.resource_spans {
                let Some(resource) = resource_spans.resource else {
                    continue;
                };
                let attributes: HashMap<String, String> = resource
                    .attributes
                    .iter()
                    .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                        any_value::Value::StringValue(s) => Some((kv.key.clone(), s.clone())),
                        _ => None,
                    })
                    .collect();
                if attributes.get("service.name").map(String::as_str) == Some(service) {
                    return attributes;
                }
            }
        }
        HashMap::new()
    }

    /// Polls every 50 ms, for at most `timeout`, until `ready` holds for
    /// the spans received; returns them either way (the caller asserts).
    pub async fn wait_for(
        &self,
        timeout: Duration,
        ready: impl Fn(&[Received]) -> bool,
    ) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let spans = self.spans();
            if ready(&spans) || tokio::time::Instant::now() >= deadline {
                return spans;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// An address where nothing listens: bound, then released.
pub async fn closed_port() -> SocketAddr {
    let socket = TcpListener::bind("127.0.0.1:0").await.expect("bind probe");
    let addr = socket.local_addr().expect("probe addr");
    drop(socket);
    addr
}

/// A "collector" that accepts TCP connections and never reads or answers.
pub struct HangingReceiver {
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl HangingReceiver {
    pub async fn start() -> Self {
        let socket = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind hanging receiver");
        let addr = socket.local_addr().expect("hanging addr");
        let task = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((stream, _)) = socket.accept().await {
                held.push(stream);
            }
        });
        HangingReceiver { addr, task }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for HangingReceiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}
