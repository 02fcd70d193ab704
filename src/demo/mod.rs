//! `waybill demo`: the whole story on one machine with nothing else
//! installed. Simulated ERP, WMS and carrier services run on loopback, the
//! sidecar sits in front of them with the shipped `examples/logistics.yaml`,
//! and a driver pushes a stream of orders through release → allocate → pick
//! → pack → label → ship → goods issue → delivery → freight invoice, with
//! the surprises real integrations have (split shipments, carrier 503s,
//! duplicate bookings, a goods issue that never comes, truncated bodies)
//! and, for a few orders, one gap of every kind the example config turns
//! into an exception. The summary sets the exceptions the sidecar reports
//! next to the ones the driver set up.
//!
//! Time is compressed: waits between steps are business durations divided
//! by `speed`, and the sidecar runs on a clock going `speed` times faster
//! (see [`pace`]) so every duration it records is in business time.
//!
//! - [`plan`]: what happens to each order, decided from the seed.
//! - [`erp`], [`wms`], [`carrier`]: the simulated systems (axum routers).
//! - [`driver`]: sends the traffic through the sidecar and tallies it.
//! - [`pace`]: the business clock, compressed while driving, real after.
//! - [`summary`]: the printed report.

pub mod carrier;
pub mod driver;
pub mod erp;
pub mod pace;
pub mod plan;
pub mod summary;
pub mod wms;

pub use driver::{Delivery, Injected, Injection, Tally};
pub use summary::{ExceptionStats, FlowStats, SidecarCounts, Summary};

use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::app::{self, Sidecar};
use crate::config::Config;
use crate::correlate::{ExceptionQuery, ListQuery};
use carrier::{CarrierStats, Outages};
use driver::{Driver, Endpoints, Progress};
use pace::Pace;
use plan::OrderPlan;
use summary::{ExceptionView, Rules, TransactionView};

/// The shipped example config the demo runs with.
pub const EXAMPLE_CONFIG: &str = include_str!("../../examples/logistics.yaml");
/// Business seconds per real second by default: one business day takes
/// two real seconds, so 200 orders (about ten business days from the first
/// release to the last freight invoice) finish in about twenty seconds.
pub const DEFAULT_SPEED: f64 = 43_200.0;
/// The default seed: the same story every run unless asked otherwise.
pub const DEFAULT_SEED: u64 = 2026;
/// Orders driven by default.
pub const DEFAULT_ORDERS: usize = 200;
/// How long (real time) the demo waits for the sidecar to correlate the
/// last exchanges after the orders are done.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often (real time) the demo prints how far the orders have got.
pub const PROGRESS_EVERY: Duration = Duration::from_secs(2);
/// How long in-flight exchanges get to finish when the demo stops.
const DRAIN_GRACE: Duration = Duration::from_secs(5);

/// How the demo runs.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// Orders to drive.
    pub orders: usize,
    /// Time compression: business seconds per real second.
    pub speed: f64,
    /// Seed of every random choice (order contents, durations, surprises).
    pub seed: u64,
    /// Keep the systems, the sidecar and its admin API serving after the
    /// orders are done, until shutdown.
    pub keep_running: bool,
    /// Where the sidecar's admin API and metrics listen.
    pub admin: SocketAddr,
}

impl Default for DemoOptions {
    fn default() -> Self {
        DemoOptions {
            orders: DEFAULT_ORDERS,
            speed: DEFAULT_SPEED,
            seed: DEFAULT_SEED,
            keep_running: false,
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 9901)),
        }
    }
}

/// Runs the demo: starts everything, drives `options.orders` orders,
/// prints the summary to `out`, and with `keep_running` keeps serving until
/// `shutdown` is cancelled. Cancelling `shutdown` earlier stops the orders
/// where they are and still prints what was seen. An order that failed for
/// any other reason (an unexpected answer) makes the run an error, after
/// the summary is printed.
pub async fn run(
    options: DemoOptions,
    shutdown: CancellationToken,
    out: &mut impl Write,
) -> anyhow::Result<Summary> {
    let keep_running = options.keep_running;
    let demo = Demo::start(options).await?;
    let summary = match demo.tell(&shutdown, out).await {
        Ok(summary) => summary,
        Err(e) => {
            demo.shutdown().await?;
            return Err(e);
        }
    };
    if keep_running && !shutdown.is_cancelled() {
        writeln!(
            out,
            "Still serving the simulated systems, the sidecar and its admin API; Ctrl-C to stop."
        )?;
        out.flush()?;
        shutdown.cancelled().await;
    }
    demo.shutdown().await?;
    if let Some(first) = summary.driver.errors.first() {
        // The summary is printed; the exit status still says the run broke.
        bail!("orders failed in the demo; the first: {first}");
    }
    Ok(summary)
}

// === impl Demo ===

/// A running demo: the simulated systems with the sidecar in front of them.
/// [`run`] is the whole story; the steps are public so tests can look at
/// the sidecar between driving and shutting down.
pub struct Demo {
    options: DemoOptions,
    /// The config the sidecar runs, as rewritten for the demo.
    config: Config,
    rules: Rules,
    /// Business time for the sidecar and the payloads.
    pace: Pace,
    systems: Systems,
    sidecar: Sidecar,
}

impl Demo {
    /// Starts the simulated systems and a sidecar in front of them, running
    /// the shipped example config with its listeners moved to free loopback
    /// ports and its upstreams pointed at the simulated systems.
    pub async fn start(options: DemoOptions) -> anyhow::Result<Self> {
        if !(options.speed.is_finite() && options.speed > 0.0) {
            bail!(
                "speed must be a positive number of business seconds per real second, not {}",
                options.speed
            );
        }
        let mut config = Config::from_yaml(EXAMPLE_CONFIG, "examples/logistics.yaml")
            .context("the shipped example config is invalid")?;
        let systems = Systems::start(options.seed)
            .await
            .context("starting the simulated systems")?;
        let pace = Pace::new(options.speed);
        let started = match aim(&mut config, &systems, options.admin) {
            Ok(()) => app::start(config.clone(), pace.clock()).await,
            Err(e) => Err(e),
        };
        let sidecar = match started {
            Ok(sidecar) => sidecar,
            Err(e) => {
                systems.stop().await;
                return Err(e.context("starting the sidecar"));
            }
        };
        Ok(Demo {
            rules: Rules::from(&config),
            config,
            options,
            pace,
            systems,
            sidecar,
        })
    }

    /// The sidecar in front of the simulated systems.
    pub fn sidecar(&self) -> &Sidecar {
        &self.sidecar
    }

    /// The config the sidecar runs: the example, aimed at the simulated systems.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The simulated systems.
    pub fn systems(&self) -> &Systems {
        &self.systems
    }

    /// Prints where everything is, drives the orders, prints the summary.
    pub async fn tell(
        &self,
        shutdown: &CancellationToken,
        out: &mut impl Write,
    ) -> anyhow::Result<Summary> {
        self.write_banner(out)?;
        out.flush()?;
        let start = self.pace.now();
        let orders = self.options.orders;
        let summary = self
            .drive_reporting(shutdown, |progress| {
                let day = self
                    .pace
                    .now()
                    .duration_since(start)
                    .unwrap_or_default()
                    .as_secs_f64()
                    / 86_400.0;
                // Progress is a courtesy: a closed terminal must not stop the demo.
                let _ = writeln!(
                    out,
                    "  business day {day:>4.1}: {:>5} of {orders} orders released, {:>5} shipments shipped, {:>5} invoiced",
                    progress.released, progress.shipped, progress.invoiced
                );
                let _ = out.flush();
            })
            .await?;
        summary.render(out)?;
        // A shipment of a split order shows the most: two shipments, one order.
        let deliveries = &summary.driver.deliveries;
        let split = deliveries.iter().find(|d| {
            deliveries
                .iter()
                .any(|o| o.order_id == d.order_id && o.shipment_id != d.shipment_id)
        });
        let admin = self.sidecar.admin_addr();
        if let Some(delivery) = split.or(deliveries.first()) {
            writeln!(
                out,
                "Look one up by its tracking number alone:\n  curl -s http://{admin}/api/v1/transactions/tracking/{}",
                delivery.tracking_code
            )?;
        }
        writeln!(
            out,
            "The exceptions still open, each with its transaction and evidence:\n  curl -s 'http://{admin}/api/v1/exceptions?state=open'"
        )?;
        out.flush()?;
        Ok(summary)
    }

    /// Drives every order through the sidecar, waits for it to correlate
    /// the last exchanges, and summarises what it saw. Business time runs
    /// at the demo's speed while driving and at real speed afterwards.
    pub async fn drive(&self, shutdown: &CancellationToken) -> anyhow::Result<Summary> {
        self.drive_reporting(shutdown, |_| {}).await
    }

    /// [`Demo::drive`], calling `report` with the driver's progress every
    /// [`PROGRESS_EVERY`] while the orders run.
    async fn drive_reporting(
        &self,
        shutdown: &CancellationToken,
        mut report: impl FnMut(Progress),
    ) -> anyhow::Result<Summary> {
        let options = &self.options;
        let driver = Driver::new(
            self.endpoints()?,
            self.systems.carrier_outages.clone(),
            options.speed,
            self.pace.clock(),
            shutdown.child_token(),
        )?;
        self.pace.shift(options.speed);
        let plans: Vec<OrderPlan> = (0..options.orders)
            .map(|i| OrderPlan::new(options.seed, i))
            .collect();
        let started = tokio::time::Instant::now();
        let driver = Arc::new(driver);
        let drive = Arc::clone(&driver).drive(plans);
        tokio::pin!(drive);
        let mut ticker =
            tokio::time::interval_at(tokio::time::Instant::now() + PROGRESS_EVERY, PROGRESS_EVERY);
        let tally = loop {
            tokio::select! {
                tally = &mut drive => break tally,
                _ = ticker.tick() => report(driver.progress()),
            }
        };
        let elapsed = started.elapsed();
        self.pace.shift(1.0);
        if !self.sidecar.settle(SETTLE_TIMEOUT).await {
            tracing::warn!("the sidecar had not correlated every exchange after {SETTLE_TIMEOUT:?}; the summary may be short");
        }
        // Deadlines that passed since the correlator last looked open their
        // exceptions now, not up to a second (half a business day) later.
        let correlator = self.sidecar.correlator();
        correlator.tick().await;
        let transactions = correlator.list(ListQuery::default()).await;
        let views: Vec<TransactionView> = transactions
            .iter()
            .map(|t| TransactionView::of(t, &self.config))
            .collect();
        let exceptions: Vec<ExceptionView> = correlator
            .exceptions(ExceptionQuery::default())
            .await
            .iter()
            .map(ExceptionView::from)
            .collect();
        let counted = self.counted().await;
        let mut summary = Summary {
            driver: tally,
            seed: options.seed,
            speed: options.speed,
            elapsed,
            ..Summary::default()
        };
        summary.observe(&views, &exceptions, &self.rules, counted);
        Ok(summary)
    }

    /// Stops the sidecar (draining what it holds), then the systems.
    pub async fn shutdown(self) -> anyhow::Result<()> {
        let drained = self.sidecar.shutdown(DRAIN_GRACE).await;
        self.systems.stop().await;
        drained
    }

    fn endpoints(&self) -> anyhow::Result<Endpoints> {
        let url = |name: &str| {
            self.sidecar
                .listener_addr(name)
                .map(|addr| format!("http://{addr}"))
                .with_context(|| format!("the example config has no listener `{name}`"))
        };
        Ok(Endpoints {
            erp: url("erp-inbound")?,
            wms: url("wms-inbound")?,
            carrier: url("carrier-egress")?,
        })
    }

    fn write_banner(&self, out: &mut impl Write) -> std::io::Result<()> {
        let admin = self.sidecar.admin_addr();
        let systems = &self.systems;
        let via = |name: &str| {
            self.sidecar
                .listener_addr(name)
                .map_or_else(|| "-".to_owned(), |a| a.to_string())
        };
        let options = &self.options;
        let day = Duration::from_secs(86_400).div_f64(options.speed.max(f64::MIN_POSITIVE));
        writeln!(out, "waybill demo")?;
        writeln!(out, "  admin API   http://{admin}/api/v1/transactions")?;
        writeln!(out, "  metrics     http://{admin}/metrics")?;
        writeln!(
            out,
            "  traces      one per order, exported when OTEL_EXPORTER_OTLP_ENDPOINT is set"
        )?;
        writeln!(
            out,
            "  ERP         {}  via sidecar listener erp-inbound     {}",
            systems.erp,
            via("erp-inbound")
        )?;
        writeln!(
            out,
            "  WMS         {}  via sidecar listener wms-inbound     {}",
            systems.wms,
            via("wms-inbound")
        )?;
        writeln!(
            out,
            "  carrier     {}  via sidecar listener carrier-egress  {}",
            systems.carrier,
            via("carrier-egress")
        )?;
        writeln!(
            out,
            "Driving {} orders (seed {}, speed x{}: one business day = {:.1} s) ...",
            options.orders,
            options.seed,
            options.speed,
            day.as_secs_f64()
        )
    }

    /// What the sidecar's own metrics count and no transaction carries.
    async fn counted(&self) -> SidecarCounts {
        let url = format!("http://{}/metrics", self.sidecar.admin_addr());
        let text = match reqwest::get(&url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read the sidecar's metrics");
                String::new()
            }
        };
        SidecarCounts::from_metrics(&text)
    }
}

/// Points the example config at the simulated systems: every listener on a
/// free loopback port, each upstream at its system, the admin at `admin`.
fn aim(config: &mut Config, systems: &Systems, admin: SocketAddr) -> anyhow::Result<()> {
    for listener in &mut config.listeners {
        let upstream = match listener.name.as_str() {
            "erp-inbound" => systems.erp,
            "wms-inbound" => systems.wms,
            "carrier-egress" => systems.carrier,
            other => {
                bail!("the example config has a listener `{other}` the demo does not simulate")
            }
        };
        listener.bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        listener.upstream.uri = format!("http://{upstream}")
            .parse()
            .context("simulated system address")?;
    }
    config.admin.bind = admin;
    Ok(())
}

// === impl Systems ===

/// The simulated ERP, WMS and carrier, each on its own loopback port.
pub struct Systems {
    pub erp: SocketAddr,
    pub wms: SocketAddr,
    pub carrier: SocketAddr,
    /// What the carrier counted itself (503s given, bookings replayed).
    pub carrier_stats: CarrierStats,
    /// The carrier's label service outages, which the driver sets off.
    pub carrier_outages: Outages,
    stop: CancellationToken,
    servers: JoinSet<std::io::Result<()>>,
}

impl Systems {
    /// Binds the three systems on `127.0.0.1:0` and serves them.
    pub async fn start(seed: u64) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut servers = JoinSet::new();
        let (carrier_router, carrier_stats, carrier_outages) = carrier::router(seed);
        let erp = serve(erp::router(), &stop, &mut servers).await?;
        let wms = serve(wms::router(), &stop, &mut servers).await?;
        let carrier = serve(carrier_router, &stop, &mut servers).await?;
        Ok(Systems {
            erp,
            wms,
            carrier,
            carrier_stats,
            carrier_outages,
            stop,
            servers,
        })
    }

    /// Stops serving and waits for the servers to finish.
    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.servers.join_next().await.is_some() {}
    }
}

async fn serve(
    router: Router,
    stop: &CancellationToken,
    servers: &mut JoinSet<std::io::Result<()>>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
    let addr = listener.local_addr()?;
    let stop = stop.clone();
    servers.spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_config_is_valid_and_names_the_demo_listeners() {
        let config = match Config::from_yaml(EXAMPLE_CONFIG, "examples/logistics.yaml") {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        };
        let names: Vec<&str> = config.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["erp-inbound", "wms-inbound", "carrier-egress"]);
        assert_eq!(config.root.as_str(), "order");
        assert_eq!(config.flows.len(), 4);
        assert_eq!(config.expectations.len(), 3);
    }

    #[test]
    fn the_driver_injects_every_exception_kind_the_example_config_declares() {
        let config = match Config::from_yaml(EXAMPLE_CONFIG, "examples/logistics.yaml") {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        };
        let mut declared: Vec<String> = config
            .exception_kinds
            .iter()
            .map(ToString::to_string)
            .collect();
        declared.sort();
        let mut injected: Vec<&str> = [
            driver::DUPLICATE_SHIPMENT,
            driver::CARRIER_RETRY_EXHAUSTED,
            driver::MISSING_GOODS_ISSUE,
            driver::OUT_OF_ORDER,
            driver::LABEL_NOT_SHIPPED,
            driver::MISSING_FREIGHT_INVOICE,
            driver::UNMATCHED_FREIGHT_INVOICE,
            driver::FREIGHT_VARIANCE,
        ]
        .to_vec();
        injected.sort_unstable();
        assert_eq!(declared, injected);
        for kind in injected {
            assert!(!driver::how_injected(kind).is_empty(), "{kind}");
        }
    }

    #[test]
    fn the_drivers_patience_and_retries_match_the_example_configs_deadlines() {
        let config = match Config::from_yaml(EXAMPLE_CONFIG, "examples/logistics.yaml") {
            Ok(config) => config,
            Err(errors) => panic!("{errors}"),
        };
        let within = |kind: &str| {
            config
                .expectations
                .iter()
                .find(|e| e.exception.as_str() == kind)
                .map(|e| e.within)
                .unwrap_or_else(|| panic!("no expectation opens {kind}"))
        };
        let stuck_after = config
            .milestone_defs
            .iter()
            .find(|m| m.name.as_str() == "label_created")
            .and_then(|m| m.stuck_after)
            .expect("label_created has stuck_after");
        assert!(plan::UNSHIPPED_PATIENCE > within(driver::LABEL_NOT_SHIPPED));
        assert!(plan::UNSHIPPED_PATIENCE > stuck_after);
        assert!(plan::UNINVOICED_PATIENCE > within(driver::MISSING_FREIGHT_INVOICE));
        let retry = config
            .routes
            .iter()
            .find(|r| r.operation.as_str() == "carrier.buy_label")
            .and_then(|r| r.repeats.as_ref())
            .and_then(|r| r.retry.as_ref())
            .expect("carrier.buy_label has a retry rule");
        assert_eq!(retry.limit, plan::LABEL_ATTEMPTS);
        // A second attempt after the first 503 stays well inside the window.
        assert!(retry.within > std::time::Duration::from_secs(10 * 60));
    }

    #[tokio::test]
    async fn driver_walks_every_order_through_the_bare_systems() {
        let seed = 11;
        let systems = Systems::start(seed).await.expect("systems start");
        let endpoints = Endpoints {
            erp: format!("http://{}", systems.erp),
            wms: format!("http://{}", systems.wms),
            carrier: format!("http://{}", systems.carrier),
        };
        let speed = 5_000_000.0;
        let driver = Driver::new(
            endpoints,
            systems.carrier_outages.clone(),
            speed,
            pace::Pace::new(speed).clock(),
            CancellationToken::new(),
        )
        .expect("driver");
        let plans: Vec<OrderPlan> = (0..60).map(|i| OrderPlan::new(seed, i)).collect();
        let split = plans.iter().filter(|p| p.spans_zones()).count();
        let driver = Arc::new(driver);
        let tally = Arc::clone(&driver).drive(plans).await;
        assert_eq!(driver.progress().released, 60);
        let uninvoiced = tally
            .injected
            .iter()
            .filter(|i| {
                [driver::LABEL_NOT_SHIPPED, driver::MISSING_FREIGHT_INVOICE].contains(&i.kind)
            })
            .count();
        assert_eq!(driver.progress().invoiced, 60 + split - uninvoiced);
        assert_eq!(tally.errors, Vec::<String>::new());
        assert_eq!(tally.finished, 60);
        assert_eq!(tally.split_orders, split);
        assert_eq!(tally.shipments, 60 + split);
        assert_eq!(tally.deliveries.len(), tally.shipments);
        assert_eq!(
            tally.carrier_unavailable as u64,
            systems.carrier_stats.unavailable()
        );
        assert_eq!(
            tally.duplicate_bookings as u64,
            systems.carrier_stats.duplicate_bookings()
        );
        assert!(tally.carrier_unavailable > 0, "{tally:?}");
        systems.stop().await;
    }
}
