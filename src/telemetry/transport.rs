//! The connection to an OTLP collector, shared by the span and the metrics
//! exporter: they encode their own request messages, this sends the bytes.
//!
//! - gRPC: a tonic channel (TLS with the webpki roots for `https://`),
//!   unary calls to the signal's `Export` method with a codec that writes
//!   the encoded message as is and ignores the (empty or partial-success)
//!   response; the headers travel as metadata.
//! - HTTP/protobuf: `POST` to the endpoint as written (plain `http://`
//!   only), `Content-Type: application/x-protobuf`, headers as given; any
//!   non-2xx answer is a failure.
//!
//! Both bound each call by the export timeout (and the connection by it).

use std::time::Duration;

use bytes::{Buf as _, BufMut as _, Bytes};
use http::uri::PathAndQuery;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::{MetadataKey, MetadataMap, MetadataValue};

use super::settings::Signal;
use crate::config::OtlpProtocol;

/// Where encoded export requests go. Clones share the connection (gRPC:
/// one HTTP/2 connection, requests multiplexed; HTTP: a connection pool),
/// so several requests can be in flight at once.
#[derive(Debug, Clone)]
pub struct Collector {
    route: Route,
}

#[derive(Debug, Clone)]
enum Route {
    Grpc {
        grpc: tonic::client::Grpc<tonic::transport::Channel>,
        path: PathAndQuery,
        metadata: MetadataMap,
    },
    Http {
        client: reqwest::Client,
        endpoint: String,
        headers: http::HeaderMap,
    },
}

impl Collector {
    /// A client for `endpoint` (connects lazily; needs a Tokio runtime);
    /// `Err` with a reason for a bad endpoint.
    pub(super) fn new(
        signal: Signal,
        endpoint: &str,
        protocol: OtlpProtocol,
        timeout: Duration,
        headers: http::HeaderMap,
    ) -> Result<Self, String> {
        let route = match protocol {
            OtlpProtocol::Grpc => {
                let mut channel = tonic::transport::Endpoint::from_shared(endpoint.to_owned())
                    .map_err(|e| e.to_string())?
                    .timeout(timeout)
                    .connect_timeout(timeout);
                if endpoint.starts_with("https://") {
                    channel = channel
                        .tls_config(tonic::transport::ClientTlsConfig::new().with_enabled_roots())
                        .map_err(|e| e.to_string())?;
                }
                let mut metadata = MetadataMap::new();
                for (name, value) in &headers {
                    if let (Ok(key), Ok(value)) = (
                        MetadataKey::from_bytes(name.as_str().as_bytes()),
                        MetadataValue::try_from(value.as_bytes()),
                    ) {
                        metadata.append(key, value);
                    }
                }
                Route::Grpc {
                    grpc: tonic::client::Grpc::new(channel.connect_lazy()),
                    path: PathAndQuery::from_static(signal.grpc_path()),
                    metadata,
                }
            }
            OtlpProtocol::HttpProtobuf if endpoint.starts_with("https://") => {
                return Err(
                    "OTLP/HTTP over https is not supported yet; use protocol grpc for a TLS collector"
                        .to_owned(),
                );
            }
            OtlpProtocol::HttpProtobuf => {
                let client = reqwest::Client::builder()
                    .timeout(timeout)
                    .build()
                    .map_err(|e| e.to_string())?;
                // Checked now so a bad URL is a start-up error.
                reqwest::Url::parse(endpoint).map_err(|e| format!("endpoint: {e}"))?;
                Route::Http {
                    client,
                    endpoint: endpoint.to_owned(),
                    headers,
                }
            }
        };
        Ok(Collector { route })
    }

    /// Sends one encoded export request; `Err` with the collector's answer
    /// or the transport error.
    pub async fn send(&mut self, message: Bytes) -> Result<(), String> {
        match &mut self.route {
            Route::Grpc {
                grpc,
                path,
                metadata,
            } => {
                grpc.ready().await.map_err(|e| e.to_string())?;
                let mut request = tonic::Request::new(message);
                *request.metadata_mut() = metadata.clone();
                grpc.unary(request, path.clone(), EncodedCodec)
                    .await
                    .map(|_| ())
                    .map_err(|status| status.to_string())
            }
            Route::Http {
                client,
                endpoint,
                headers,
            } => {
                let response = client
                    .post(endpoint.as_str())
                    .headers(headers.clone())
                    .header(http::header::CONTENT_TYPE, "application/x-protobuf")
                    .body(message)
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                if response.status().is_success() {
                    Ok(())
                } else {
                    Err(format!("collector answered {}", response.status()))
                }
            }
        }
    }
}

/// A gRPC codec for messages already encoded; the response is skipped.
#[derive(Debug, Clone, Copy, Default)]
struct EncodedCodec;

impl Codec for EncodedCodec {
    type Encode = Bytes;
    type Decode = ();
    type Encoder = EncodedCodec;
    type Decoder = EncodedCodec;

    fn encoder(&mut self) -> Self::Encoder {
        EncodedCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        EncodedCodec
    }
}

impl Encoder for EncodedCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for EncodedCodec {
    type Item = ();
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<()>, Self::Error> {
        let len = src.remaining();
        src.advance(len);
        Ok(Some(()))
    }
}
