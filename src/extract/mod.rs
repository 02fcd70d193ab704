//! The extraction stage: reads an [`Exchange`](crate::proxy::Exchange)
//! through the routes file into an [`Observation`]: which route it matched,
//! which keys it carries, which milestone it marks, and why any part of it
//! could not be read. Never panics on hostile bodies.
//!
//! One exchange is read in this order:
//! 1. `route`: the first route (in priority order) that serves the
//!    listener, matches method and path, and whose content conditions
//!    (`content`: media type, SOAP action, X12 set or segment, EDIFACT
//!    message or segment, JSON field value) hold. Conditions are asked
//!    only of routes that matched on everything else. None: an
//!    observation with no route, keys or milestone, still counted as
//!    `unmatched`.
//! 2. `reading`: each body that a condition or rule reads is decoded once
//!    (`body`: `Content-Encoding` gzip, deflate, br, zstd, bounded in size
//!    and ratio; charset) however many read it, and parsed once per
//!    format: an X12 (`x12`) or EDIFACT (`edifact`) envelope into segments
//!    (`edi`), a form into fields (`form`); JSON rules of one side share
//!    one `json` scan, XML rules one `xml` walk. A body nothing reads is
//!    not looked at (its truncation is no problem of extraction). The
//!    JSON paths of every route (rules per side, and JSON conditions) are
//!    compiled once, when the extractor is built (`plan`).
//! 3. Key rules in their order (`request` head sources, `json`, `xml`,
//!    `x12`, `edifact`, `form`, `regex`): keys are deduplicated, kept in
//!    rule order (then document order), and empty values are skipped.
//! 4. The milestone, only when the upstream answered 2xx.
//! 5. `measure`: with the milestone, the route's measure rules read their
//!    values (and units) from the same sources, scans and walks as the
//!    keys (one list, [`crate::config::Route::sources`]), parsed as exact
//!    decimals; an unreadable value is counted by reason, never fatal.
//! 6. `metrics`: the exchange, its duration, body sizes and problems are counted.
//!
//! Problems are a set per exchange (each reason at most once), so
//! `waybill_extraction_failures_total` counts exchanges by reason. A rule
//! that ran and found nothing is [`Problem::KeyMissing`]; a rule that could
//! not run because its body was unreadable (undecodable, a truncated prefix
//! for JSON, malformed JSON or XML, a bad EDI envelope, a value behind a DTD
//! entity) is covered by that problem instead, and a rule over the response
//! of a failed (non-2xx) exchange owes nothing: an error page without the
//! tracking number is not a missing key. An empty body is read as "no
//! document", not as a malformed one. A body read only to rule a route out
//! (an X12 interchange tested for an EDIFACT condition) reports nothing;
//! when no route matched, every problem met while trying is reported.
//!
//! Metrics registered by [`Extractor::new`] (labels are bounded sets; a
//! business key is never a label):
//! - `waybill_exchanges_total{system, operation, status_class}`: operation
//!   is the route name or `unmatched`; status class `1xx`…`5xx`, `other`
//!   (a status outside 100–599), or `error` when the upstream failed.
//! - `waybill_exchange_duration_seconds{system, operation}`: histogram.
//! - `waybill_exchange_request_body_size_bytes{system, operation}` and
//!   `waybill_exchange_response_body_size_bytes{system, operation}`:
//!   histograms of the body bytes that streamed (see `metrics.rs`).
//! - `waybill_extraction_failures_total{system, reason}`: reason is
//!   [`Problem::as_str`].
//! - `waybill_measure_unparseable_total{measure, reason}`: measure values
//!   that could not be read; reason is [`Unreadable::as_str`].
//!
//! `system` is the matched route's system, or the listener's when unmatched.

mod body;
mod content;
mod edi;
mod edifact;
mod form;
#[cfg(test)]
mod format_tests;
mod json;
mod measure;
mod metrics;
mod observation;
mod plan;
mod reading;
mod regex;
mod request;
mod route;
mod summary;
#[cfg(test)]
mod testkit;
mod x12;
mod xml;

pub use json::JsonPaths;
pub use measure::{MeasureValue, Measures, Unreadable};
pub use observation::{Key, Observation, Problem};
pub use request::head_value;
pub use summary::ExchangeSummary;

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::registry::Registry;
use smallvec::{smallvec, SmallVec};

use crate::config::{Config, KeyKind, KeySource, Side, Sources};
use crate::proxy::{Exchange, Outcome};

use metrics::Metrics;
use plan::{Plans, RoutePlan};
use reading::Reading;
use route::Matched;

/// The values one rule finds: most rules find one, kept inline (no
/// allocation besides the value's own).
type Values = SmallVec<[Arc<str>; 1]>;

/// Turns exchanges into observations using the validated config.
pub struct Extractor {
    config: Arc<Config>,
    /// Handles resolved at start-up for every route and system.
    metrics: Metrics,
    /// Every route's JSON paths, compiled at start-up.
    plans: Plans,
}

impl Extractor {
    /// Builds the extractor and registers its metrics in `registry`.
    pub fn new(config: Arc<Config>, registry: &mut Registry) -> Self {
        let metrics = Metrics::new(&config, registry);
        let plans = Plans::new(&config.routes);
        Extractor {
            config,
            metrics,
            plans,
        }
    }

    /// Reads one exchange. Never panics: whatever cannot be read is a
    /// [`Problem`] on the observation.
    pub fn observe(&self, exchange: Exchange) -> Observation {
        let mut problems = Vec::new();
        let mut keys = Keys::default();
        let succeeded = matches!(
            &exchange.outcome,
            Outcome::Response { status, .. } if status.is_success()
        );
        let mut reading = Reading::new(&exchange, self.config.observation.max_decoded_bytes);
        let found = route::find(
            &self.config.routes,
            exchange.listener,
            &exchange.method,
            exchange.uri.path(),
            |route| {
                self.plans
                    .route(route.id)
                    .is_some_and(|plan| content::all_hold(&route.conditions, plan, &mut reading))
            },
        );
        // What is read from here on is read for the matched route; its
        // conditions are asked again (from the cache) to claim what they read.
        reading.claim();
        let matched_any = found.is_some();
        let mut measures = Measures::default();
        // The match owns the route's params (they borrow the path), so
        // they are dropped with it, before the exchange moves on.
        let (route, operation, milestone) =
            match found.and_then(|matched| Some((self.plans.route(matched.route.id)?, matched))) {
                Some((plan, matched)) => {
                    content::all_hold(&matched.route.conditions, plan, &mut reading);
                    keys.list.reserve_exact(matched.route.keys.len());
                    let sources = matched.route.sources();
                    extract(
                        &exchange,
                        &matched,
                        (plan, sources),
                        succeeded,
                        &mut reading,
                        &mut keys,
                        &mut problems,
                    );
                    let route = matched.route;
                    let milestone = route.milestone.clone().filter(|_| succeeded);
                    if milestone.is_some() {
                        measures = measure::read(
                            &self.config,
                            &exchange,
                            &matched,
                            (plan, sources),
                            &mut reading,
                            &mut problems,
                        );
                    }
                    (Some(route.id), Some(route.operation.clone()), milestone)
                }
                None => (None, None, None),
            };
        problems.extend(reading.into_problems(matched_any));
        problems.sort_unstable();
        problems.dedup();
        self.metrics.record(route, &exchange, &problems);
        self.metrics.record_unreadable(&measures.unreadable);
        let idempotency_header = route
            .map(|id| self.config.route(id))
            .and_then(|route| route.repeats.as_ref())
            .map(|rule| &rule.idempotency_header);
        Observation {
            exchange: ExchangeSummary::new(exchange, &self.config, idempotency_header),
            route,
            operation,
            keys: keys.list,
            milestone,
            problems,
            measures,
        }
    }
}

/// Runs the matched route's key rules over the exchange.
fn extract(
    exchange: &Exchange,
    matched: &Matched<'_, '_>,
    (plan, sources): (&RoutePlan, Sources<'_>),
    succeeded: bool,
    reading: &mut Reading<'_>,
    keys: &mut Keys,
    problems: &mut Vec<Problem>,
) {
    for (index, rule) in matched.route.keys.iter().enumerate() {
        let before = problems.len();
        let Some(values) =
            rule_values(exchange, matched, (plan, sources), index, reading, problems)
        else {
            // The rule could not run; its problem says why.
            continue;
        };
        let found = keys.add(&rule.kind, values);
        // A rule whose only values were unreadable has its problem
        // already; a failed exchange's response owes no keys.
        let owed = succeeded || rule.source.body_side() != Some(Side::Response);
        if !found && problems.len() == before && owed {
            problems.push(Problem::KeyMissing);
        }
    }
}

/// The values source number `index` of the route's `sources` finds, in
/// order; `None` when it could not run (an unreadable header or parameter,
/// an unreadable body).
fn rule_values(
    exchange: &Exchange,
    matched: &Matched<'_, '_>,
    (plan, sources): (&RoutePlan, Sources<'_>),
    index: usize,
    reading: &mut Reading<'_>,
    problems: &mut Vec<Problem>,
) -> Option<Values> {
    match sources.get(index)? {
        KeySource::Header(name) => match request::header(&exchange.request_headers, name) {
            Ok(value) => Some(value.map(Arc::from).into_iter().collect()),
            Err(problem) => {
                problems.push(problem);
                None
            }
        },
        KeySource::Query(name) => {
            let query = exchange.uri.query().unwrap_or_default();
            let values = request::query(query, name, problems);
            Some(values.iter().map(|v| Arc::from(v.as_ref())).collect())
        }
        KeySource::PathParam { index, .. } => {
            let Some(raw) = matched.params.get(*index) else {
                return Some(Values::new());
            };
            match request::path_param(raw) {
                Ok(value) => Some(smallvec![Arc::from(value.as_ref())]),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            }
        }
        KeySource::Json { side, .. } => take_hits(
            reading.json_hits(*side, plan.json(*side)?)?,
            index,
            problems,
        ),
        KeySource::Xml { side, .. } => {
            take_hits(reading.xml_hits(*side, sources)?, index, problems)
        }
        KeySource::Regex { side, regex } => {
            let body = reading.body(*side)?;
            let mut values = Values::new();
            regex::values(regex, &body.bytes, problems, |v| values.push(Arc::from(v)));
            Some(values)
        }
        KeySource::X12 { side, address } => {
            let (document, body) = reading.x12(*side)?;
            Some(
                document
                    .values(body, address)
                    .into_iter()
                    .map(Arc::from)
                    .collect(),
            )
        }
        KeySource::Edifact { side, address } => {
            let (document, body) = reading.edifact(*side)?;
            Some(
                document
                    .values(body, address)
                    .into_iter()
                    .map(Arc::from)
                    .collect(),
            )
        }
        KeySource::Form { side, field } => {
            let mut values = Values::new();
            let mut unreadable = false;
            for (_, value) in reading
                .form(*side)?
                .iter()
                .filter(|(name, _)| name == field)
            {
                match value {
                    Ok(value) => values.push(Arc::from(value.as_str())),
                    Err(problem) => {
                        problems.push(*problem);
                        unreadable = true;
                    }
                }
            }
            (!values.is_empty() || !unreadable).then_some(values)
        }
    }
}

/// Takes rule `index`'s values out of a one-pass scan (each rule reads its
/// own once), reporting a value it could not read; `None` when that left
/// it with nothing.
fn take_hits(
    hits: &mut reading::Hits,
    index: usize,
    problems: &mut Vec<Problem>,
) -> Option<Values> {
    let hit = std::mem::take(hits.get_mut(index)?);
    if let Some(problem) = hit.problem {
        problems.push(problem);
        if hit.values.is_empty() {
            return None;
        }
    }
    Some(hit.values)
}

/// Keys found so far: deduplicated, in the order they were first found.
/// An exchange carries a handful, so a new key is looked for in the list;
/// past [`Keys::LINEAR`] keys (a rule over a long array) a hash set takes
/// over, so a large set is not compared pairwise.
#[derive(Default)]
struct Keys {
    list: Vec<Key>,
    /// The keys of `list`, once it outgrew a linear search.
    seen: Option<HashSet<Key>>,
}

impl Keys {
    /// Keys looked up by linear search before a hash set is built.
    const LINEAR: usize = 16;

    /// Adds the non-empty `values` as keys of `kind`; true when the
    /// rule found at least one non-empty value (even one already known).
    fn add(&mut self, kind: &KeyKind, values: Values) -> bool {
        let mut found = false;
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            found = true;
            let key = Key::new(kind.clone(), value);
            if self.first_time(&key) {
                self.list.push(key);
            }
        }
        found
    }

    /// True when `key` is not yet in the list (and records it in the
    /// hash set once there is one).
    fn first_time(&mut self, key: &Key) -> bool {
        if let Some(seen) = &mut self.seen {
            return seen.insert(key.clone());
        }
        if self.list.contains(key) {
            return false;
        }
        if self.list.len() >= Self::LINEAR {
            let seen = self.list.iter().chain(std::iter::once(key)).cloned();
            self.seen = Some(seen.collect());
        }
        true
    }
}

#[cfg(test)]
mod tests;
