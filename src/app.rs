//! Wires the stages together and holds no logic of its own:
//! listeners → extraction (run on the connection's task when an exchange
//! ends, see [`Extraction`]) → the correlator's bounded queue → correlator
//! → state and telemetry (the span observer), with the metrics registry
//! shared by every stage and the admin surface beside them.
//! With the embedded store, the correlator recovers the saved state before
//! any listener binds, and the proxy's exchange ids continue after the
//! recovered ones. With the shared store, the correlator applies the
//! shared Redis log (its writer and reader start here). Either store also
//! keeps the idempotency guard's stored responses, when a route is guarded.
//! [`start`] returns a running [`Sidecar`]; [`Sidecar::shutdown`] drains it
//! in flow order so nothing already accepted is lost (the correlator
//! writes a final snapshot as it stops).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio::sync::mpsc::WeakSender;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;

use crate::admin::{self, AdminState, Readiness};
use crate::clock::Clock;
use crate::config::{Config, StoreConfig};
use crate::correlate::{Correlator, CorrelatorHandle, ObservationSender};
use crate::extract::{Extractor, Observation};
use crate::proxy::{
    self, Exchange, ExchangeSink, GuardKeeping, GuardStateMetrics, GuardedRoutes, Handover,
    ListenerOptions, ProxyMetrics, Refused, UninspectedRoutes,
};
use crate::state::durable::Durable;
use crate::state::shared::Shared;
use crate::telemetry::metrics_export::{self, MetricExportMetrics, MetricExporting};
use crate::telemetry::{Metrics, Traces};

/// How often [`Sidecar::settle`] looks at the pipeline's progress.
const SETTLE_POLL: Duration = Duration::from_millis(20);

/// A running sidecar: every listener, the observation pipeline and the
/// admin surface.
pub struct Sidecar {
    listeners: Vec<(String, SocketAddr)>,
    admin: SocketAddr,
    correlator: CorrelatorHandle,
    readiness: Readiness,
    /// Stops the listeners (and through them, the pipeline).
    traffic: CancellationToken,
    /// Stops the admin surface, last.
    admin_stop: CancellationToken,
    proxies: JoinSet<std::io::Result<()>>,
    /// The one strong sender of the correlator's queue ([`Extraction`]
    /// holds weak ones): dropped once the listeners are drained, so the
    /// correlator ends even if a connection outlives the grace period.
    observations: Option<ObservationSender>,
    correlation: JoinHandle<()>,
    admin_task: JoinHandle<std::io::Result<()>>,
    /// Exchanges extraction has handed to the correlator.
    extracted: Arc<AtomicU64>,
    /// The span export pipeline, shut down after the correlator.
    traces: Traces,
    /// OTLP metrics export, if on; sends its last snapshot at shutdown.
    metric_export: Option<MetricExporting>,
    /// Writes the guard's records to the embedded store; ends after the
    /// listeners, once it wrote what they handed it.
    guard_writer: Option<JoinHandle<()>>,
}

/// Binds every listener and the admin surface, and starts the pipeline.
/// Trace export reads the process environment (`OTEL_*`, see
/// [`crate::telemetry::settings`]); [`start_with_env`] takes it explicitly.
pub async fn start(config: Config, clock: Clock) -> anyhow::Result<Sidecar> {
    start_with_env(config, clock, &|name| std::env::var(name).ok()).await
}

/// [`start`] with the environment variables read through `env`.
pub async fn start_with_env(
    config: Config,
    clock: Clock,
    env: crate::telemetry::settings::Env<'_>,
) -> anyhow::Result<Sidecar> {
    let config = Arc::new(config);
    let mut registry = Registry::default();
    crate::telemetry::process::register(&mut registry);

    let extractor = Extractor::new(Arc::clone(&config), &mut registry);
    let (mut correlator, observations, handle, inbox) = Correlator::new(
        Arc::clone(&config),
        clock.clone(),
        config.observation.queue_capacity.max(1),
        &mut registry,
    );
    let extracted = Arc::new(AtomicU64::new(0));
    let extraction = Extraction {
        extractor,
        observations: observations.downgrade(),
        extracted: Arc::clone(&extracted),
    };
    let sink = ExchangeSink::handing_to(extraction, &mut registry);
    let proxy_metrics = ProxyMetrics::new(&mut registry);
    let guarded = config.routes.iter().any(|route| route.guard.is_some());
    let mut guard_keeping = None;
    let mut guard_writer = None;
    if let StoreConfig::Embedded(embedded) = &config.state.store {
        let durable = Durable::open(embedded, &mut registry)?;
        if guarded {
            let metrics = GuardStateMetrics::new(&mut registry);
            let (records, writer) = durable.guard_records(metrics.clone())?;
            guard_keeping = Some(GuardKeeping {
                state: Arc::new(records),
                metrics,
            });
            guard_writer = Some(writer);
        }
        let recovery = correlator
            .recover(durable)
            .with_context(|| format!("state: cannot recover from {}", embedded.path.display()))?;
        sink.continue_after(correlator.last_exchange());
        tracing::info!(
            path = %embedded.path.display(),
            transactions = recovery.snapshot_transactions,
            observations = recovery.observations,
            ticks = recovery.ticks,
            skipped = recovery.skipped,
            "state recovered"
        );
    }
    if let StoreConfig::Redis(redis) = &config.state.store {
        let shared = Shared::start(redis, env("WAYBILL_REDIS_PASSWORD"), &mut registry)?;
        tracing::info!(
            url = %redis.url,
            namespace = %redis.namespace,
            replica = %shared.replica(),
            "state shared through Redis"
        );
        if guarded {
            let metrics = GuardStateMetrics::new(&mut registry);
            guard_keeping = Some(GuardKeeping {
                state: Arc::new(shared.guard_records(metrics.clone())),
                metrics,
            });
        }
        correlator.share_through(shared);
    }
    let (span_observer, traces) = Traces::start(Arc::clone(&config), env, &mut registry)?;
    correlator.observe_with(Box::new(span_observer));
    let export_counters = MetricExportMetrics::new(&mut registry);
    let metrics = Metrics::new(registry);
    let (export_settings, warnings) = metrics_export::resolve(&config.telemetry.metrics, env);
    for warning in warnings {
        tracing::warn!("{warning}");
    }
    let metric_export = match export_settings {
        Some(settings) => {
            tracing::info!(endpoint = %settings.endpoint, protocol = settings.protocol.as_str(), interval = ?settings.interval, "exporting metrics over OTLP");
            Some(metrics_export::start(
                settings,
                metrics.clone(),
                traces.resource().clone(),
                export_counters,
            )?)
        }
        None => None,
    };

    let mut sockets = Vec::with_capacity(config.listeners.len());
    for listener in &config.listeners {
        let socket = TcpListener::bind(listener.bind).await.with_context(|| {
            format!(
                "listener `{}`: cannot bind {}",
                listener.name, listener.bind
            )
        })?;
        sockets.push(socket);
    }
    let admin_socket = TcpListener::bind(config.admin.bind)
        .await
        .with_context(|| format!("admin: cannot bind {}", config.admin.bind))?;
    let admin_addr = admin_socket.local_addr()?;

    let correlation = tokio::spawn(correlator.run(inbox));

    let traffic = CancellationToken::new();
    let mut proxies = JoinSet::new();
    let mut listeners = Vec::with_capacity(sockets.len());
    for (socket, listener) in sockets.into_iter().zip(config.listeners.iter()) {
        listeners.push((listener.name.clone(), socket.local_addr()?));
        let mut guarded = GuardedRoutes::new(listener.id, &config.routes);
        if let Some(keeping) = &guard_keeping {
            guarded = guarded.kept_in(keeping.clone());
        }
        let options = ListenerOptions {
            guarded,
            trace_context: traces.propagation(&config, listener.id),
            uninspected: UninspectedRoutes::new(listener.id, &config.routes),
        };
        proxies.spawn(proxy::serve_with(
            socket,
            Arc::new(listener.clone()),
            options,
            sink.clone(),
            proxy_metrics.clone(),
            clock.clone(),
            traffic.child_token(),
        ));
    }
    drop(sink);
    drop(guard_keeping);

    let readiness = Readiness::default();
    let admin_stop = CancellationToken::new();
    let router = admin::router(AdminState {
        config: Arc::clone(&config),
        correlator: handle.clone(),
        metrics,
        readiness: readiness.clone(),
    });
    let admin_task = {
        let stop = admin_stop.clone();
        tokio::spawn(async move {
            axum::serve(admin_socket, router)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await
        })
    };
    readiness.set(true);
    let runtime = tokio::runtime::Handle::current();
    tracing::info!(
        admin = %admin_addr,
        listeners = ?listeners,
        runtime = ?runtime.runtime_flavor(),
        workers = runtime.metrics().num_workers(),
        "waybill started"
    );

    Ok(Sidecar {
        listeners,
        admin: admin_addr,
        correlator: handle,
        readiness,
        traffic,
        admin_stop,
        proxies,
        observations: Some(observations),
        correlation,
        admin_task,
        extracted,
        traces,
        metric_export,
        guard_writer,
    })
}

impl Sidecar {
    /// The address listener `name` is bound to (useful with port 0).
    pub fn listener_addr(&self, name: &str) -> Option<SocketAddr> {
        self.listeners
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, addr)| *addr)
    }

    /// The admin surface's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Queries to the correlator (what the admin API uses).
    pub fn correlator(&self) -> &CorrelatorHandle {
        &self.correlator
    }

    /// Waits until every exchange seen so far has been correlated: the
    /// pipeline shows no progress over a few polls and extraction and
    /// correlation agree. Returns false if `timeout` passed first.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = (u64::MAX, u64::MAX);
        let mut quiet = 0;
        while tokio::time::Instant::now() < deadline {
            let now = (
                self.extracted.load(Ordering::Acquire),
                self.correlator.applied(),
            );
            if now == last && now.0 == now.1 {
                quiet += 1;
                if quiet >= 3 {
                    return true;
                }
            } else {
                quiet = 0;
            }
            last = now;
            tokio::time::sleep(SETTLE_POLL).await;
        }
        false
    }

    /// Drains the sidecar in flow order: turn unready, stop accepting and
    /// let in-flight exchanges finish (up to `grace`), let extraction and
    /// the correlator apply everything queued, export the queued spans (up
    /// to `grace` more; a missing collector costs at most that), then stop
    /// the admin surface.
    pub async fn shutdown(mut self, grace: Duration) -> anyhow::Result<()> {
        self.readiness.set(false);
        self.traffic.cancel();
        let drained = tokio::time::timeout(grace, async {
            while let Some(result) = self.proxies.join_next().await {
                match result {
                    Ok(Err(e)) => tracing::warn!(error = %e, "listener ended with an error"),
                    Err(e) => tracing::warn!(error = %e, "listener task failed"),
                    Ok(Ok(())) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                ?grace,
                "drain grace period over; closing remaining connections"
            );
            self.proxies.shutdown().await;
        }
        if let Some(writer) = self.guard_writer.take() {
            if tokio::time::timeout(grace, writer).await.is_err() {
                tracing::warn!("the idempotency guard's last records were not written in time");
            }
        }
        // Every exchange of a drained connection is extracted and queued
        // by now; closing the queue lets the correlator apply what is in
        // it and stop (a connection cut off after the grace period only
        // holds weak senders: its exchange is counted as dropped).
        drop(self.observations.take());
        self.correlation.await.context("correlation task")?;
        // The correlator owned the span observer; its end closed the span queue.
        self.traces.shutdown(grace).await;
        if let Some(export) = self.metric_export {
            export.shutdown(grace).await;
        }
        self.admin_stop.cancel();
        self.admin_task.await.context("admin task")??;
        Ok(())
    }
}

/// Extraction where an exchange ends: on the connection's task, after the
/// response body's last frame, straight into the correlator's bounded
/// queue (full: the exchange is dropped and counted by the proxy's sink).
/// The exchange itself ends here: its body taps and the read buffers they
/// share are dropped, and the queued observation carries only its
/// [`ExchangeSummary`](crate::extract::ExchangeSummary).
struct Extraction {
    extractor: Extractor,
    /// Weak: only the [`Sidecar`] keeps the queue open.
    observations: WeakSender<Observation>,
    /// Exchanges handed to the correlator, for [`Sidecar::settle`].
    extracted: Arc<AtomicU64>,
}

impl Handover for Extraction {
    fn take(&self, exchange: Exchange) -> Result<(), Refused> {
        let observations = self.observations.upgrade().ok_or(Refused::Closed)?;
        // A slot first: an exchange the queue has no room for is dropped
        // before any extraction work is spent on it.
        let slot = observations.try_reserve()?;
        slot.send(self.extractor.observe(exchange));
        self.extracted.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// Runs the sidecar until `stop` is cancelled (SIGTERM), then drains it
/// within `grace`.
pub async fn run(config: Config, stop: CancellationToken, grace: Duration) -> anyhow::Result<()> {
    let sidecar = start(config, Clock::system()).await?;
    stop.cancelled().await;
    tracing::info!("shutdown requested; draining");
    sidecar.shutdown(grace).await
}
