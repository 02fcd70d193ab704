//! The admin surface, on its own port (never on a traffic listener):
//!
//! | endpoint | what it answers |
//! |---|---|
//! | `GET /healthz` | `200 ok` while the process serves (liveness) |
//! | `GET /readyz` | `200 ready` once every listener is bound; `503` before that and while draining |
//! | `GET /metrics` | every metric: OpenMetrics text (with exemplars) when `Accept` names it, as Prometheus does; else the classic text format 0.0.4 |
//! | `GET /api/v1/transactions/{kind}/{value}` | the transaction any key belongs to: all its keys, milestones, measures (per object and role, amounts as exact decimal strings), flows and exchanges in time order; `404` when unknown, `400` for an undeclared key kind |
//! | `GET /api/v1/transactions?status=open\|complete\|stuck\|all&limit=N` | recent transactions, most recently updated first (default limit 100, at most 1000) |
//! | `GET /api/v1/exceptions?kind=K&owner=S&state=open\|resolved\|all&limit=N` | exceptions, most recently opened first, each with its transaction's name |
//!
//! Errors are JSON `{"error": CODE, "message": TEXT}`, mapped in one place ([`ApiError`]).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::config::Config;
use crate::correlate::{CorrelatorHandle, ExceptionQuery, ListQuery};
use crate::extract::Key;
use crate::state::{Names, Status, Transaction};
use crate::telemetry::{Exposition, Metrics};

/// Default and maximum number of transactions a listing returns.
const DEFAULT_LIMIT: usize = 100;
const MAX_LIMIT: usize = 1000;

/// Whether the sidecar should receive traffic: set once listeners are
/// bound, cleared when the SIGTERM drain starts.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    /// Marks the sidecar ready (true) or not (false).
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::Release);
    }

    /// Is the sidecar ready?
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// What the admin handlers read.
#[derive(Clone)]
pub struct AdminState {
    pub config: Arc<Config>,
    pub correlator: CorrelatorHandle,
    pub metrics: Metrics,
    pub readiness: Readiness,
}

/// The admin router.
pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/api/v1/transactions", get(list))
        .route("/api/v1/transactions/{kind}/{value}", get(lookup))
        .route("/api/v1/exceptions", get(exceptions))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> Response {
    if state.readiness.is_ready() {
        (StatusCode::OK, "ready\n").into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n").into_response()
    }
}

async fn metrics(State(state): State<AdminState>, headers: axum::http::HeaderMap) -> Response {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok());
    let format = Exposition::negotiate(accept);
    // Rendering thousands of series takes milliseconds: on a blocking
    // thread, so a scrape never holds a proxy worker.
    let metrics = state.metrics.clone();
    match tokio::task::spawn_blocking(move || metrics.render_as(format)).await {
        Ok(text) => ([(header::CONTENT_TYPE, format.content_type())], text).into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A transaction found for the API, with the config that names what its
/// records keep as ids.
struct Found {
    tx: Transaction,
    config: Arc<Config>,
}

impl serde::Serialize for Found {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.tx.json(Names::of(&self.config)).serialize(s)
    }
}

async fn lookup(
    State(state): State<AdminState>,
    Path((kind, value)): Path<(String, String)>,
) -> Result<Json<Found>, ApiError> {
    let Some(kind) = state.config.key_kinds.get(&kind) else {
        return Err(ApiError::UnknownKind {
            kind,
            declared: state.config.key_kinds.names(),
        });
    };
    let key = Key::new(kind, value);
    match state.correlator.lookup(key.clone()).await {
        Some(tx) => Ok(Json(Found {
            tx,
            config: Arc::clone(&state.config),
        })),
        None => Err(ApiError::NotFound(key.to_string())),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    status: Option<String>,
    limit: Option<usize>,
}

async fn list(
    State(state): State<AdminState>,
    params: Result<Query<ListParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let (status, stuck) = match params.status.as_deref() {
        None | Some("all") => (None, false),
        Some("open") => (Some(Status::Open), false),
        Some("complete") => (Some(Status::Complete), false),
        Some("stuck") => (Some(Status::Open), true),
        Some(other) => {
            return Err(ApiError::BadQuery(format!(
                "status `{other}`: expected open, complete, stuck or all"
            )))
        }
    };
    let limit = params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let query = ListQuery {
        status,
        stuck,
        limit,
    };
    let transactions = state.correlator.list(query).await;
    let summaries: Vec<Value> = transactions
        .iter()
        .map(|tx| summary(tx, &state.config))
        .collect();
    Ok(Json(json!({ "transactions": summaries })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionParams {
    kind: Option<String>,
    owner: Option<String>,
    state: Option<String>,
    limit: Option<usize>,
}

async fn exceptions(
    State(state): State<AdminState>,
    params: Result<Query<ExceptionParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<Value>, ApiError> {
    let Query(params) = params.map_err(|e| ApiError::BadQuery(e.body_text()))?;
    let open = match params.state.as_deref() {
        None | Some("all") => None,
        Some("open") => Some(true),
        Some("resolved") => Some(false),
        Some(other) => {
            return Err(ApiError::BadQuery(format!(
                "state `{other}`: expected open, resolved or all"
            )))
        }
    };
    let config = &state.config;
    if let Some(kind) = &params.kind {
        if config.exception_kinds.get(kind).is_none() {
            return Err(ApiError::BadQuery(format!(
                "kind `{kind}`: expected one of {}",
                config.exception_kinds.names()
            )));
        }
    }
    if let Some(owner) = &params.owner {
        if config.systems.get(owner).is_none() {
            return Err(ApiError::BadQuery(format!(
                "owner `{owner}`: expected one of {}",
                config.systems.names()
            )));
        }
    }
    let query = ExceptionQuery {
        kind: params.kind,
        owner: params.owner,
        open,
        limit: params.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT),
    };
    let found = state.correlator.exceptions(query).await;
    Ok(Json(json!({ "exceptions": found })))
}

/// The listing's view of a transaction: enough to pick one to look up.
fn summary(tx: &Transaction, config: &Config) -> Value {
    let time = |t| humantime::format_rfc3339_millis(t).to_string();
    json!({
        "name": tx.name(),
        "status": tx.status,
        "keys": tx.keys_json(Names::of(config)),
        "last_milestone": tx.last_milestone().map(|m| json!({
            "milestone": m.milestone().get(&config.milestones),
            "object": tx.milestone_object(m).map(|k| k.json(&config.key_kinds)),
            "at": time(m.at()),
        })),
        "milestones": tx.milestones.len(),
        "stuck_at": tx.stuck(),
        "open_exceptions": tx.exceptions().iter().filter(|e| e.is_open()).count(),
        "exchanges": tx.exchanges.len() as u64 + u64::from(tx.exchanges_dropped()),
        "first_seen": time(tx.first_seen.time()),
        "last_updated": time(tx.last_updated.time()),
    })
}

/// Every error the API answers with, mapped to a status in one place.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("key kind `{kind}` is not declared; declared kinds: {declared}")]
    UnknownKind { kind: String, declared: String },
    #[error("no transaction has the key {0}")]
    NotFound(String),
    #[error("bad query: {0}")]
    BadQuery(String),
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = match &self {
            ApiError::UnknownKind { .. } => (StatusCode::BAD_REQUEST, "unknown_key_kind"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::BadQuery(_) => (StatusCode::BAD_REQUEST, "bad_query"),
        };
        let body = json!({ "error": code, "message": self.to_string() });
        (status, Json(body)).into_response()
    }
}
