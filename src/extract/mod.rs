//! The extraction stage: reads an [`Exchange`](crate::proxy::Exchange)
//! through the routes file into an [`Observation`]: which route it matched,
//! which keys it carries, which milestone it marks, and why any part of it
//! could not be read. Never panics on hostile bodies.
//!
//! One exchange is read in this order:
//! 1. `route`: the first route (in priority order) that serves the
//!    listener and matches method and path. None: an observation with no
//!    route, keys or milestone, still counted as `unmatched`.
//! 2. `body`: each body that a rule reads is decoded once
//!    (`Content-Encoding`, bounded) however many rules read it; JSON rules
//!    of one side share one `json` scan. A body no rule reads is not
//!    looked at (its truncation is no problem of extraction).
//! 3. Key rules in their order (`request` head sources, `json`,
//!    `regex`): keys are deduplicated, kept in rule order (then document
//!    order), and empty values are skipped.
//! 4. The milestone, only when the upstream answered 2xx.
//! 5. `metrics`: the exchange, its duration and its problems are counted.
//!
//! Problems are a set per exchange (each reason at most once), so
//! `waybill_extraction_failures_total` counts exchanges by reason. A rule
//! that ran and found nothing is [`Problem::KeyMissing`]; a rule that could
//! not run because its body was unreadable (undecodable, a truncated prefix
//! for JSON, malformed JSON) is covered by that body's problem instead, and
//! a rule over the response of a failed (non-2xx) exchange owes nothing: an
//! error page without the tracking number is not a missing key. An empty
//! body is read as "no document", not as malformed JSON.
//!
//! Metrics registered by [`Extractor::new`] (labels are bounded sets; a
//! business key is never a label):
//! - `waybill_exchanges_total{system, operation, status_class}`: operation
//!   is the route name or `unmatched`; status class `1xx`…`5xx`, `other`
//!   (a status outside 100–599), or `error` when the upstream failed.
//! - `waybill_exchange_duration_seconds{system, operation}`: histogram.
//! - `waybill_extraction_failures_total{system, reason}`: reason is
//!   [`Problem::as_str`].
//!
//! `system` is the matched route's system, or the listener's when unmatched.

mod body;
mod json;
mod metrics;
mod observation;
mod regex;
mod request;
mod route;
#[cfg(test)]
mod testkit;

pub use observation::{Key, Observation, Problem};

use std::collections::HashSet;
use std::sync::Arc;

use prometheus_client::registry::Registry;

use crate::config::{Config, JsonPath, KeyRule, KeySource, Side};
use crate::proxy::{Exchange, Outcome};

use body::Body;
use metrics::Metrics;
use route::Matched;

/// Turns exchanges into observations using the validated config.
pub struct Extractor {
    config: Arc<Config>,
    /// Handles resolved at start-up for every route and system.
    metrics: Metrics,
}

impl Extractor {
    /// Builds the extractor and registers its metrics in `registry`.
    pub fn new(config: Arc<Config>, registry: &mut Registry) -> Self {
        let metrics = Metrics::new(&config, registry);
        Extractor { config, metrics }
    }

    /// Reads one exchange. Never panics: whatever cannot be read is a
    /// [`Problem`] on the observation.
    pub fn observe(&self, exchange: Exchange) -> Observation {
        let mut problems = Vec::new();
        let mut keys = Keys::default();
        let found = route::find(
            &self.config.routes,
            exchange.listener,
            &exchange.method,
            exchange.uri.path(),
        );
        let succeeded = matches!(
            &exchange.outcome,
            Outcome::Response { status, .. } if status.is_success()
        );
        let (route, operation, milestone) = match found {
            Some(matched) => {
                self.extract(&exchange, &matched, succeeded, &mut keys, &mut problems);
                let route = matched.route;
                (
                    Some(route.id),
                    Some(route.operation.clone()),
                    route.milestone.clone().filter(|_| succeeded),
                )
            }
            None => (None, None, None),
        };
        problems.sort_unstable();
        problems.dedup();
        self.metrics.record(
            route,
            &exchange.system,
            &exchange.outcome,
            exchange.duration,
            &problems,
        );
        Observation {
            exchange,
            route,
            operation,
            keys: keys.list,
            milestone,
            problems,
        }
    }

    /// Runs the matched route's key rules over the exchange.
    fn extract(
        &self,
        exchange: &Exchange,
        matched: &Matched<'_, '_>,
        succeeded: bool,
        keys: &mut Keys,
        problems: &mut Vec<Problem>,
    ) {
        let rules = &matched.route.keys;
        let limit = self.config.observation.max_decoded_bytes;
        let mut sides = [
            SideReading::read(exchange, Side::Request, rules, limit, problems),
            SideReading::read(exchange, Side::Response, rules, limit, problems),
        ];
        for (index, rule) in rules.iter().enumerate() {
            let before = problems.len();
            let Some(values) = rule_values(exchange, matched, rule, index, &mut sides, problems)
            else {
                // The rule could not run; its problem says why.
                continue;
            };
            let found = keys.add(rule, values);
            // A rule whose only values were unreadable has its problem
            // already; a failed exchange's response owes no keys.
            let owed = succeeded || !reads_side(rule, Side::Response);
            if !found && problems.len() == before && owed {
                problems.push(Problem::KeyMissing);
            }
        }
    }
}

/// The values rule number `index` finds, in order; `None` when it could not
/// run (an unreadable header or parameter, an unreadable body).
fn rule_values(
    exchange: &Exchange,
    matched: &Matched<'_, '_>,
    rule: &KeyRule,
    index: usize,
    sides: &mut [SideReading<'_>; 2],
    problems: &mut Vec<Problem>,
) -> Option<Vec<Arc<str>>> {
    let side = |side: &Side| usize::from(*side == Side::Response);
    match &rule.source {
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
                return Some(Vec::new());
            };
            match request::path_param(raw) {
                Ok(value) => Some(vec![Arc::from(value.as_ref())]),
                Err(problem) => {
                    problems.push(problem);
                    None
                }
            }
        }
        KeySource::Json { side: s, .. } => {
            let hits = sides.get_mut(side(s))?.json_hits.as_mut()?;
            // Each rule's hits are read once: take them rather than copy.
            hits.get_mut(index).map(std::mem::take)
        }
        KeySource::Regex { side: s, regex } => {
            let body = sides.get(side(s))?.body.as_ref()?;
            let mut values = Vec::new();
            regex::values(regex, &body.bytes, problems, |v| values.push(Arc::from(v)));
            Some(values)
        }
    }
}

/// What one side (request or response) of an exchange gave the rules that
/// read its body: the body decoded once, and the answers of the one JSON
/// scan of it.
#[derive(Default)]
struct SideReading<'e> {
    /// `None` when no rule reads this body or it could not be decoded.
    body: Option<Body<'e>>,
    /// Values per rule index (only JSON rules of this side have any);
    /// `None` when the JSON rules could not run.
    json_hits: Option<Vec<Vec<Arc<str>>>>,
}

impl<'e> SideReading<'e> {
    fn read(
        exchange: &'e Exchange,
        side: Side,
        rules: &[KeyRule],
        limit: usize,
        problems: &mut Vec<Problem>,
    ) -> Self {
        if !rules.iter().any(|rule| reads_side(rule, side)) {
            return SideReading::default();
        }
        let (tapped, headers) = match (side, exchange.outcome.response_headers()) {
            (Side::Request, _) => (&exchange.request_body, &exchange.request_headers),
            (Side::Response, Some(headers)) => (&exchange.response_body, headers),
            // The upstream never answered: there is no response body to
            // read, and nothing to report about it.
            (Side::Response, None) => return SideReading::default(),
        };
        let body = match Body::decode(tapped, Some(headers), limit, problems) {
            Ok(body) => body,
            Err(problem) => {
                problems.push(problem);
                return SideReading::default();
            }
        };
        let json_hits = json_values(&body, side, rules, problems);
        SideReading {
            body: Some(body),
            json_hits,
        }
    }
}

/// Does `rule` read the body of `side`?
fn reads_side(rule: &KeyRule, side: Side) -> bool {
    match &rule.source {
        KeySource::Json { side: s, .. } | KeySource::Regex { side: s, .. } => *s == side,
        _ => false,
    }
}

/// Runs every JSON rule of `side` over `body` in one scan.
fn json_values(
    body: &Body<'_>,
    side: Side,
    rules: &[KeyRule],
    problems: &mut Vec<Problem>,
) -> Option<Vec<Vec<Arc<str>>>> {
    let mut paths: Vec<&JsonPath> = Vec::new();
    let mut rule_of: Vec<usize> = Vec::new();
    for (index, rule) in rules.iter().enumerate() {
        if let KeySource::Json { side: s, path } = &rule.source {
            if *s == side {
                paths.push(path);
                rule_of.push(index);
            }
        }
    }
    if paths.is_empty() || body.partial {
        // A prefix of a JSON document is not JSON; the truncation or
        // abort is already reported.
        return None;
    }
    let text = match body.json_text() {
        Ok(text) => text,
        Err(problem) => {
            problems.push(problem);
            return None;
        }
    };
    let mut hits: Vec<Vec<Arc<str>>> = vec![Vec::new(); rules.len()];
    if text.trim_ascii().is_empty() {
        // No body at all (a 204, a bare error): nothing to find, which the
        // rules report as missing keys rather than as malformed JSON.
        return Some(hits);
    }
    let scanned = json::scan(&text, &paths, |path, value| {
        if let Some(found) = rule_of.get(path).and_then(|&rule| hits.get_mut(rule)) {
            found.push(Arc::from(value));
        }
    });
    match scanned {
        Ok(()) => Some(hits),
        Err(problem) => {
            // Values seen before the document went bad are not trusted.
            problems.push(problem);
            None
        }
    }
}

/// Keys found so far: deduplicated, in the order they were first found.
#[derive(Default)]
struct Keys {
    list: Vec<Key>,
    seen: HashSet<Key>,
}

impl Keys {
    /// Adds the non-empty `values` as keys of `rule`'s kind; true when the
    /// rule found at least one non-empty value (even one already known).
    fn add(&mut self, rule: &KeyRule, values: Vec<Arc<str>>) -> bool {
        let mut found = false;
        for value in values.into_iter().filter(|v| !v.is_empty()) {
            found = true;
            let key = Key::new(rule.kind.clone(), value);
            if self.seen.insert(key.clone()) {
                self.list.push(key);
            }
        }
        found
    }
}

#[cfg(test)]
mod tests;
