//! waybill watches the HTTP traffic between ERP, warehouse, transport and
//! carrier systems and turns it into end-to-end business transactions.
//!
//! The modules follow the data flow, one stage each; data moves one way:
//!
//! - [`config`]: the routes file, parsed once and validated into typed domain values.
//! - [`clock`]: the wall clock every stage reads, passed in so the demo can compress time.
//! - [`proxy`]: listeners that forward bytes untouched and tap each [`proxy::Exchange`]; opt-in per route, the idempotency guard answers repeats from a bounded store (kept in the state store, if any, across restarts and replicas) and `propagate: trace_context` sends a W3C `traceparent`.
//! - [`extract`]: config rules turn an exchange into an [`extract::Observation`] (keys, milestone,
//!   business measures such as freight cost, read from the same sources as keys).
//! - [`correlate`]: links keys into transactions, records milestones and flows, and
//!   reconciles: expectations, order rules, retries vs duplicates, stuck transactions.
//! - [`state`]: where transactions live (in memory, bounded by TTL and count), with their
//!   milestones, measures, flows, exceptions and attempts; optionally durable on disk
//!   ([`state::durable`]: a journal of accepted observations plus snapshots) or
//!   shared by several sidecars ([`state::shared`]: a replicated log in Redis, with an optional
//!   on-disk spill for Redis outages).
//! - [`telemetry`]: OTLP spans (trace ID derived from the root key), flow histograms with
//!   trace exemplars, the frozen Prometheus registry every stage registers in, and its
//!   optional periodic OTLP metrics export.
//! - [`admin`]: `/healthz`, `/readyz`, `/metrics` and the transaction JSON API.
//! - [`app`]: wires the stages together; holds no logic of its own.
//! - [`demo`]: simulated ERP, WMS and carrier behind sidecars, driven by a stream of orders.
#![forbid(unsafe_code)]

pub mod admin;
pub mod app;
pub mod clock;
pub mod config;
pub mod correlate;
pub mod demo;
pub mod extract;
pub mod proxy;
pub mod state;
pub mod telemetry;
#[cfg(test)]
mod test_rng;
