//! The extraction stage: reads an [`Exchange`](crate::proxy::Exchange)
//! through the routes file into an [`Observation`]: which route it matched,
//! which keys it carries, which milestone it marks, and why any part of it
//! could not be read. Never panics on hostile bodies.

mod observation;

pub use observation::{Key, Observation, Problem};

use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::config::Config;
use crate::proxy::Exchange;

/// Turns exchanges into observations using the validated config.
pub struct Extractor {
    config: Arc<Config>,
}

impl Extractor {
    /// Builds the extractor and registers its metrics in `registry`.
    pub fn new(config: Arc<Config>, _registry: &mut Registry) -> Self {
        Extractor { config }
    }

    /// Reads one exchange.
    pub fn observe(&self, exchange: Exchange) -> Observation {
        let _ = &self.config;
        Observation {
            exchange,
            route: None,
            operation: None,
            keys: Vec::new(),
            milestone: None,
            problems: Vec::new(),
        }
    }
}
