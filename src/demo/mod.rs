//! `waybill demo`: the whole story on one machine with nothing else
//! installed. Simulated ERP, WMS and carrier services run on loopback, the
//! sidecar sits in front of them with the shipped `examples/logistics.yaml`,
//! and a driver pushes a stream of orders through release → allocate → pick
//! → pack → label → ship → goods issue → delivery → freight invoice, with
//! the surprises real integrations have (split shipments, carrier 503s,
//! duplicate bookings, a goods issue that never comes, truncated bodies).
//!
//! Time is compressed: waits between steps are business durations divided
//! by `speed`, and the sidecar runs on [`Clock::scaled`] so every duration
//! it records is in business time.
//!
//! - [`plan`]: what happens to each order, decided from the seed.
//! - [`erp`], [`wms`], [`carrier`]: the simulated systems (axum routers).
//! - [`driver`]: sends the traffic through the sidecar and tallies it.
//! - [`summary`]: the printed report.

pub mod carrier;
pub mod driver;
pub mod erp;
pub mod plan;
pub mod summary;
pub mod wms;

pub use driver::{Delivery, Tally};
pub use summary::{ExpectationStats, FlowStats, Summary};

use std::net::{Ipv4Addr, SocketAddr};

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use carrier::CarrierStats;

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

// === impl Systems ===

/// The simulated ERP, WMS and carrier, each on its own loopback port.
pub struct Systems {
    pub erp: SocketAddr,
    pub wms: SocketAddr,
    pub carrier: SocketAddr,
    /// What the carrier counted itself (503s given, bookings replayed).
    pub carrier_stats: CarrierStats,
    stop: CancellationToken,
    servers: JoinSet<std::io::Result<()>>,
}

impl Systems {
    /// Binds the three systems on `127.0.0.1:0` and serves them.
    pub async fn start(seed: u64) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut servers = JoinSet::new();
        let (carrier_router, carrier_stats) = carrier::router(seed);
        let erp = serve(erp::router(), &stop, &mut servers).await?;
        let wms = serve(wms::router(), &stop, &mut servers).await?;
        let carrier = serve(carrier_router, &stop, &mut servers).await?;
        Ok(Systems {
            erp,
            wms,
            carrier,
            carrier_stats,
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
    use std::sync::Arc;

    use super::driver::{Driver, Endpoints};
    use super::plan::OrderPlan;
    use super::*;
    use crate::clock::Clock;

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
            speed,
            Clock::scaled(speed),
            CancellationToken::new(),
        )
        .expect("driver");
        let plans: Vec<OrderPlan> = (0..60).map(|i| OrderPlan::new(seed, i)).collect();
        let split = plans.iter().filter(|p| p.spans_zones()).count();
        let tally = Arc::new(driver).drive(plans).await;
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
            systems.carrier_stats.replayed_bookings()
        );
        assert!(tally.carrier_unavailable > 0, "{tally:?}");
        systems.stop().await;
    }
}
